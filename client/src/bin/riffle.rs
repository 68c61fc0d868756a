//! `riffle`: the command-line tool for a Riffle cluster over its gRPC API.
//!
//! What it is: one subcommand per everyday operation (create, delete, list and describe streams;
//! put records from an argument or from stdin lines; read a shard), built on `riffle_client`.
//! What it is not: an admin tool for the cluster itself (nodes, placement), nor a replacement
//! for the AWS CLI, which works against Riffle's Kinesis HTTP API.
//!
//! Exit status is 0 on success, 1 on any failure (with `error: <Kinesis error type>: <message>`
//! on stderr, including puts where some records failed), 2 on bad usage.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use riffle_client::proto::{
    GetShardIteratorRequest, PutRecordRequest, PutRecordsRequest, PutRecordsRequestEntry, PutRecordsResultEntry,
    Record, Shard, ShardIteratorType, StreamDescription, StreamStatus,
};
use riffle_client::{stream_status_name, Client, ClientConfig, PutRecordsBatcher};
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

/// Longest stdin line `put` accepts: the Kinesis limit on one record's data.
const LINE_BYTES_MAX: usize = 1024 * 1024;

/// Wait between GetRecords calls that returned nothing.
const EMPTY_POLL_INTERVAL_MS: u64 = 200;

/// Most records one GetRecords call may ask for (the Kinesis limit).
const GET_RECORDS_LIMIT_MAX: u32 = 10_000;

#[derive(Debug, Parser)]
#[command(name = "riffle", version, about = "Command-line client for a Riffle cluster")]
struct Cli {
    /// Node to talk to (repeat for failover between nodes).
    #[arg(long = "endpoint", global = true, default_value = "http://127.0.0.1:50051", value_name = "URL")]
    endpoints: Vec<String>,

    /// Retries of a call after transport errors, each on the next endpoint.
    #[arg(long, global = true, default_value_t = 3)]
    retries_max: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Nodes (zone, reachable, replicas, leaders), groups without a leader, lagging replicas.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Move every replica off a node, then remove it from the cluster. Returns at once; watch
    /// `riffle cluster status` until the node shows `removed` (then stop its process).
    Decommission {
        /// The node's id.
        node_id: u64,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a stream and wait until it is ACTIVE.
    CreateStream {
        name: String,
        #[arg(long)]
        shard_count: u32,
        /// Retention in hours (24 to 8760; server default 24).
        #[arg(long)]
        retention_hours: Option<u32>,
        /// Return as soon as the stream is created, without waiting for ACTIVE.
        #[arg(long)]
        no_wait: bool,
        /// Most status polls (200 ms apart) while waiting for ACTIVE.
        #[arg(long, default_value_t = 150)]
        wait_attempts_max: u32,
    },
    /// Delete a stream and its records.
    DeleteStream { name: String },
    /// List stream names, one per line.
    ListStreams,
    /// The cluster: `riffle cluster status`.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Describe a stream and its shards.
    DescribeStream {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the shards of a stream.
    ListShards {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put DATA as one record, or each stdin line as a record (batched with PutRecords).
    #[command(group(
        ArgGroup::new("key").required(true).args(["partition_key", "key_from_line", "random_key"])
    ))]
    Put {
        stream: String,
        /// Record data; without it, records are read from stdin, one per line.
        data: Option<String>,
        /// Partition key for every record.
        #[arg(long, value_name = "KEY")]
        partition_key: Option<String>,
        /// Use each line (or DATA) as its own partition key.
        #[arg(long)]
        key_from_line: bool,
        /// Use a random partition key for each record.
        #[arg(long)]
        random_key: bool,
        /// Print only a summary instead of `shardId sequenceNumber` per record.
        #[arg(long)]
        quiet: bool,
        /// Send a partial batch after stdin has been idle this long.
        #[arg(long, default_value_t = 200)]
        linger_ms: u64,
    },
    /// Read records from a shard: `sequence<TAB>partition key<TAB>data` per line.
    Get {
        stream: String,
        /// Shard id (`shardId-000000000000`, or just its number).
        #[arg(long)]
        shard_id: String,
        #[arg(long, value_enum, ignore_case = true, default_value = "TRIM_HORIZON")]
        iterator_type: IteratorType,
        /// Required by AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER.
        #[arg(long, required_if_eq_any = [
            ("iterator_type", "AT_SEQUENCE_NUMBER"),
            ("iterator_type", "AFTER_SEQUENCE_NUMBER"),
        ])]
        sequence_number: Option<String>,
        /// Milliseconds since the Unix epoch; required by AT_TIMESTAMP.
        #[arg(long, required_if_eq("iterator_type", "AT_TIMESTAMP"))]
        timestamp_ms: Option<i64>,
        /// Most records per GetRecords call.
        #[arg(long)]
        limit: Option<u32>,
        /// Keep polling for new records until Ctrl-C (or --max-records).
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max_records: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum IteratorType {
    #[value(name = "TRIM_HORIZON")]
    TrimHorizon,
    #[value(name = "LATEST")]
    Latest,
    #[value(name = "AT_SEQUENCE_NUMBER")]
    AtSequenceNumber,
    #[value(name = "AFTER_SEQUENCE_NUMBER")]
    AfterSequenceNumber,
    #[value(name = "AT_TIMESTAMP")]
    AtTimestamp,
}

impl From<IteratorType> for ShardIteratorType {
    fn from(value: IteratorType) -> Self {
        match value {
            IteratorType::TrimHorizon => ShardIteratorType::TrimHorizon,
            IteratorType::Latest => ShardIteratorType::Latest,
            IteratorType::AtSequenceNumber => ShardIteratorType::AtSequenceNumber,
            IteratorType::AfterSequenceNumber => ShardIteratorType::AfterSequenceNumber,
            IteratorType::AtTimestamp => ShardIteratorType::AtTimestamp,
        }
    }
}

/// Where each record's partition key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeySource {
    Fixed(String),
    FromLine,
    Random,
}

impl KeySource {
    fn key_for(&self, data: &[u8]) -> String {
        match self {
            KeySource::Fixed(key) => key.clone(),
            KeySource::FromLine => String::from_utf8_lossy(data).into_owned(),
            KeySource::Random => format!("{:032x}", rand::random::<u128>()),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A reader that went away (`riffle get … | head`) is not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.downcast_ref::<io::Error>().is_some_and(|error| error.kind() == io::ErrorKind::BrokenPipe)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = ClientConfig { retries_max: cli.retries_max, ..ClientConfig::default() };
    let client = Client::connect_with_config(cli.endpoints, config).await?;
    let mut out = io::stdout().lock();
    match cli.command {
        Command::CreateStream { name, shard_count, retention_hours, no_wait, wait_attempts_max } => {
            client.create_stream(&name, shard_count, retention_hours).await?;
            if no_wait {
                writeln!(out, "stream {name} created")?;
            } else {
                let summary = client.wait_for_stream_active(&name, wait_attempts_max).await?;
                writeln!(out, "stream {name} is ACTIVE with {} shards", summary.open_shard_count)?;
            }
        }
        Command::DeleteStream { name } => {
            client.delete_stream(&name).await?;
            writeln!(out, "stream {name} deleted")?;
        }
        Command::ListStreams => {
            for name in client.list_streams().await?.stream_names {
                writeln!(out, "{name}")?;
            }
        }
        Command::Cluster { command: ClusterCommand::Decommission { node_id } } => {
            client.decommission_node(node_id).await?;
            writeln!(out, "node {node_id} is decommissioning: its replicas move to other nodes, then it is removed")?;
        }
        Command::Cluster { command: ClusterCommand::Status { json } } => {
            let status = client.cluster_status().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&cluster_status_json(&status))?)?;
            } else {
                write!(out, "{}", format_cluster_status(&status))?;
            }
        }
        Command::DescribeStream { name, json } => {
            let description = client.describe_stream(&name).await?;
            if json {
                let value = stream_description_json(&description);
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                write!(out, "{}", format_stream_description(&description))?;
            }
        }
        Command::ListShards { name, json } => {
            let shards = client.list_shards(&name).await?;
            if json {
                let value = json!({ "Shards": shards.iter().map(shard_json).collect::<Vec<_>>() });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                write!(out, "{}", format_shard_table(&shards))?;
            }
        }
        Command::Put { stream, data, partition_key, key_from_line, random_key, quiet, linger_ms } => {
            let key_source = match (partition_key, key_from_line, random_key) {
                (Some(key), _, _) => KeySource::Fixed(key),
                (None, true, _) => KeySource::FromLine,
                (None, false, _) => KeySource::Random,
            };
            match data {
                Some(data) => {
                    let response = client
                        .put_record(PutRecordRequest {
                            stream_name: stream,
                            partition_key: key_source.key_for(data.as_bytes()),
                            data: data.into_bytes().into(),
                            ..PutRecordRequest::default()
                        })
                        .await?;
                    if !quiet {
                        writeln!(out, "{}", format_put_result(&response.shard_id, &response.sequence_number))?;
                    }
                }
                None => {
                    let stdin = BufReader::new(tokio::io::stdin());
                    let linger = Duration::from_millis(linger_ms);
                    let options = PutLinesOptions { stream: &stream, key_source: &key_source, quiet, linger };
                    put_lines(&client, stdin, &options, &mut out).await?;
                }
            }
        }
        Command::Get { stream, shard_id, iterator_type, sequence_number, timestamp_ms, limit, follow, max_records } => {
            let request = GetShardIteratorRequest {
                stream_name: stream,
                shard_id: normalize_shard_id(&shard_id),
                shard_iterator_type: ShardIteratorType::from(iterator_type).into(),
                starting_sequence_number: sequence_number,
                timestamp_ms,
            };
            let reading = read_shard(&client, request, limit, follow, max_records, &mut out);
            tokio::select! {
                result = reading => result?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    out.flush()?;
    Ok(())
}

struct PutLinesOptions<'a> {
    stream: &'a str,
    key_source: &'a KeySource,
    quiet: bool,
    linger: Duration,
}

/// Sends each line of `input` as a record, batched with PutRecords; fails if any record failed.
async fn put_lines(
    client: &Client,
    input: impl AsyncBufRead + Unpin,
    options: &PutLinesOptions<'_>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut lines = LineReader::new(input);
    let mut batcher = PutRecordsBatcher::default();
    let mut tally = PutTally::default();
    loop {
        let line = if batcher.is_empty() {
            lines.next_line().await?
        } else {
            // Cancelling `next_line` keeps what it read, so the next call continues the line.
            match tokio::time::timeout(options.linger, lines.next_line()).await {
                Ok(line) => line?,
                Err(_idle) => {
                    let batch = batcher.take().expect("the batcher is not empty");
                    send_batch(client, options, batch, &mut tally, out).await?;
                    continue;
                }
            }
        };
        let Some(line) = line else { break };
        let entry = PutRecordsRequestEntry {
            partition_key: options.key_source.key_for(&line),
            data: line.into(),
            explicit_hash_key: None,
        };
        if let Some(batch) = batcher.push(entry) {
            send_batch(client, options, batch, &mut tally, out).await?;
        }
    }
    if let Some(batch) = batcher.take() {
        send_batch(client, options, batch, &mut tally, out).await?;
    }
    if options.quiet {
        writeln!(out, "{}", tally.summary())?;
    }
    if tally.failed > 0 {
        bail!("{}", tally.summary());
    }
    Ok(())
}

/// Counts of records sent by `put`.
#[derive(Debug, Default, PartialEq, Eq)]
struct PutTally {
    sent: u64,
    failed: u64,
}

impl PutTally {
    fn summary(&self) -> String {
        format!("put {} records, {} failed", self.sent - self.failed, self.failed)
    }
}

async fn send_batch(
    client: &Client,
    options: &PutLinesOptions<'_>,
    batch: Vec<PutRecordsRequestEntry>,
    tally: &mut PutTally,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let first_line = tally.sent + 1;
    let count = batch.len() as u64;
    let response = client
        .put_records(PutRecordsRequest { stream_name: options.stream.to_owned(), records: batch })
        .await
        .with_context(|| format!("PutRecords of lines {first_line}..{}", first_line + count - 1))?;
    for (line, result) in (first_line..).zip(&response.records) {
        match put_result_line(result) {
            Ok(text) if !options.quiet => writeln!(out, "{text}")?,
            Ok(_) => {}
            Err(failure) => {
                tally.failed += 1;
                eprintln!("line {line}: {failure}");
            }
        }
    }
    tally.sent += count;
    out.flush()?;
    Ok(())
}

/// Reads `\n`-terminated lines (a `\r` before the `\n` is dropped), at most [`LINE_BYTES_MAX`]
/// bytes each. Cancel-safe: a partly read line stays buffered for the next call.
struct LineReader<R> {
    input: R,
    buffer: Vec<u8>,
    line_number: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    fn new(input: R) -> Self {
        LineReader { input, buffer: Vec::new(), line_number: 0 }
    }

    async fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        // Room for the longest line plus "\r\n"; one byte more proves the line is too long.
        let room = (LINE_BYTES_MAX + 3).saturating_sub(self.buffer.len()) as u64;
        let read = (&mut self.input).take(room).read_until(b'\n', &mut self.buffer).await.context("reading stdin")?;
        let terminated = self.buffer.last() == Some(&b'\n');
        if read == 0 && self.buffer.is_empty() {
            return Ok(None);
        }
        self.line_number += 1;
        let mut line = std::mem::take(&mut self.buffer);
        if terminated {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if line.len() > LINE_BYTES_MAX {
            bail!("line {} is longer than {LINE_BYTES_MAX} bytes, the most one record holds", self.line_number);
        }
        Ok(Some(line))
    }
}

/// Reads a shard until it is drained (or forever with `follow`), at most `max_records` records.
async fn read_shard(
    client: &Client,
    request: GetShardIteratorRequest,
    limit: Option<u32>,
    follow: bool,
    max_records: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut iterator = client.get_shard_iterator(request).await?.shard_iterator;
    let mut printed: u64 = 0;
    loop {
        let remaining = max_records.map(|max| max - printed);
        if remaining == Some(0) {
            return Ok(());
        }
        let call_limit = match (limit, remaining) {
            (limit, Some(remaining)) => {
                let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
                Some(limit.unwrap_or(GET_RECORDS_LIMIT_MAX).min(remaining))
            }
            (limit, None) => limit,
        };
        let response = client.get_records(&iterator, call_limit).await?;
        let count = response.records.len();
        for record in response.records.iter().take(remaining.map_or(count, |r| r as usize)) {
            writeln!(out, "{}", format_record(record))?;
            printed += 1;
        }
        out.flush()?;
        let Some(next) = response.next_shard_iterator else {
            eprintln!("shard is closed and fully read");
            return Ok(());
        };
        iterator = next;
        if count == 0 {
            if !follow && response.millis_behind_latest == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(EMPTY_POLL_INTERVAL_MS)).await;
        }
    }
}

/// `shardId-000000000007` from `7`; anything else unchanged.
fn normalize_shard_id(shard_id: &str) -> String {
    match shard_id.parse::<u64>() {
        Ok(number) if !shard_id.is_empty() => format!("shardId-{number:012}"),
        _ => shard_id.to_owned(),
    }
}

/// `shardId sequenceNumber` for a stored record.
fn format_put_result(shard_id: &str, sequence_number: &str) -> String {
    format!("{shard_id} {sequence_number}")
}

/// The output line for a PutRecords result, or the failure to report.
fn put_result_line(result: &PutRecordsResultEntry) -> Result<String, String> {
    match (&result.error_code, &result.shard_id, &result.sequence_number) {
        (None, Some(shard_id), Some(sequence_number)) => Ok(format_put_result(shard_id, sequence_number)),
        (error_code, _, _) => Err(format!(
            "{}: {}",
            error_code.as_deref().unwrap_or("UnknownError"),
            result.error_message.as_deref().unwrap_or("no error message")
        )),
    }
}

/// `<sequence>\t<partition key>\t<data>` with data as UTF-8, or `base64:<data>` when it is not
/// valid UTF-8.
fn format_record(record: &Record) -> String {
    format!("{}\t{}\t{}", record.sequence_number, record.partition_key, render_data(&record.data))
}

fn render_data(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(data)),
    }
}

fn status_name(status: i32) -> &'static str {
    stream_status_name(StreamStatus::try_from(status).unwrap_or_default())
}

fn format_stream_description(description: &StreamDescription) -> String {
    format!(
        "Stream:     {}\nARN:        {}\nStatus:     {}\nRetention:  {} hours\nCreated at: {} ms\nShards:     {}\n\n{}",
        description.stream_name,
        description.stream_arn,
        status_name(description.stream_status),
        description.retention_period_hours,
        description.stream_creation_timestamp_ms,
        description.shards.len(),
        format_shard_table(&description.shards)
    )
}

fn format_shard_table(shards: &[Shard]) -> String {
    let header = ["SHARD ID", "HASH KEY RANGE", "STARTING SEQUENCE", "ENDING SEQUENCE", "PARENT", "LEADER", "REPLICAS"];
    let rows: Vec<Vec<String>> = shards
        .iter()
        .map(|shard| {
            let hash_range = shard
                .hash_key_range
                .as_ref()
                .map_or("-".to_owned(), |range| format!("{}-{}", range.starting_hash_key, range.ending_hash_key));
            let sequence_range = shard.sequence_number_range.as_ref();
            let replicas: Vec<String> = shard.replica_nodes.iter().map(u64::to_string).collect();
            vec![
                shard.shard_id.clone(),
                hash_range,
                sequence_range.map_or("-".to_owned(), |r| r.starting_sequence_number.clone()),
                sequence_range.and_then(|r| r.ending_sequence_number.clone()).unwrap_or_else(|| "-".to_owned()),
                shard.parent_shard_id.clone().unwrap_or_else(|| "-".to_owned()),
                shard.leader_node.map_or("-".to_owned(), |node| node.to_string()),
                if replicas.is_empty() { "-".to_owned() } else { replicas.join(",") },
            ]
        })
        .collect();
    render_table(&header, &rows)
}

/// Left-aligned columns two spaces apart, no trailing spaces.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Kinesis-style (AWS CLI) JSON for a stream description.
fn cluster_status_json(status: &riffle_client::proto::ClusterStatusResponse) -> Value {
    json!({
        "AnsweredBy": status.answered_by,
        "Nodes": status.nodes.iter().map(|node| json!({
            "NodeId": node.node_id,
            "Zone": node.zone,
            "State": node.state,
            "Reachable": node.reachable,
            "Replicas": node.replicas,
            "Leaders": node.leaders,
        })).collect::<Vec<_>>(),
        "Groups": status.groups.iter().map(|group| json!({
            "GroupId": group.group_id,
            "Name": group.name,
            "Replicas": group.replicas,
            "Leader": group.leader,
            "LastLogIndex": group.last_log_index,
            "Lagging": group.lagging.iter().map(|lag| json!({
                "NodeId": lag.node_id,
                "BehindEntries": lag.behind_entries,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Nodes as a table, then the groups that need attention: no leader, or replicas behind.
fn format_cluster_status(status: &riffle_client::proto::ClusterStatusResponse) -> String {
    let mut text =
        format!("{:<6} {:<12} {:<16} {:<12} {:>9} {:>8}\n", "node", "zone", "state", "health", "replicas", "leaders");
    for node in &status.nodes {
        let health = match (node.reachable, node.state.as_str()) {
            (_, "removed") => "-",
            (true, _) => "up",
            (false, _) => "UNREACHABLE",
        };
        let state = if node.state.is_empty() { "active" } else { node.state.as_str() };
        text += &format!(
            "{:<6} {:<12} {:<16} {:<12} {:>9} {:>8}\n",
            node.node_id, node.zone, state, health, node.replicas, node.leaders
        );
    }
    let leaderless: Vec<&str> =
        status.groups.iter().filter(|group| group.leader.is_none()).map(|group| group.name.as_str()).collect();
    text += &format!("groups: {}, without a leader: {}\n", status.groups.len(), leaderless.len());
    for name in leaderless {
        text += &format!("  no leader: {name}\n");
    }
    let lagging: Vec<String> = status
        .groups
        .iter()
        .flat_map(|group| {
            group.lagging.iter().map(move |lag| {
                format!("  {} on node {}: {} entries behind", group.name, lag.node_id, lag.behind_entries)
            })
        })
        .collect();
    text += &format!("lagging replicas: {}\n", lagging.len());
    for line in lagging {
        text += &line;
        text += "\n";
    }
    text
}

/// Kinesis' name of a capacity mode.
fn mode_name(mode: i32) -> &'static str {
    match riffle_client::proto::StreamMode::try_from(mode) {
        Ok(riffle_client::proto::StreamMode::OnDemand) => "ON_DEMAND",
        _ => "PROVISIONED",
    }
}

fn stream_description_json(description: &StreamDescription) -> Value {
    json!({
        "StreamDescription": {
            "StreamName": description.stream_name,
            "StreamARN": description.stream_arn,
            "StreamStatus": status_name(description.stream_status),
            "StreamModeDetails": {"StreamMode": mode_name(description.stream_mode)},
            "RetentionPeriodHours": description.retention_period_hours,
            "StreamCreationTimestampMs": description.stream_creation_timestamp_ms,
            "HasMoreShards": description.has_more_shards,
            "Shards": description.shards.iter().map(shard_json).collect::<Vec<_>>(),
        }
    })
}

fn shard_json(shard: &Shard) -> Value {
    let mut value = json!({
        "ShardId": shard.shard_id,
        "ReplicaNodes": shard.replica_nodes,
    });
    let fields = value.as_object_mut().expect("json! of an object is an object");
    if let Some(parent) = &shard.parent_shard_id {
        fields.insert("ParentShardId".into(), json!(parent));
    }
    if let Some(parent) = &shard.adjacent_parent_shard_id {
        fields.insert("AdjacentParentShardId".into(), json!(parent));
    }
    if let Some(range) = &shard.hash_key_range {
        fields.insert(
            "HashKeyRange".into(),
            json!({
                "StartingHashKey": range.starting_hash_key,
                "EndingHashKey": range.ending_hash_key,
            }),
        );
    }
    if let Some(range) = &shard.sequence_number_range {
        let mut sequence = json!({ "StartingSequenceNumber": range.starting_sequence_number });
        if let Some(ending) = &range.ending_sequence_number {
            sequence["EndingSequenceNumber"] = json!(ending);
        }
        fields.insert("SequenceNumberRange".into(), sequence);
    }
    if let Some(leader) = shard.leader_node {
        fields.insert("LeaderNode".into(), json!(leader));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_client::proto::{HashKeyRange, SequenceNumberRange};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("riffle").chain(args.iter().copied()))
    }

    #[test]
    fn endpoints_default_and_repeat() {
        let cli = parse(&["list-streams"]).expect("valid arguments");
        assert_eq!(cli.endpoints, vec!["http://127.0.0.1:50051"]);
        assert_eq!(cli.retries_max, 3);

        let cli = parse(&["list-streams", "--endpoint", "http://a:1", "--endpoint", "b:2"]).expect("valid arguments");
        assert_eq!(cli.endpoints, vec!["http://a:1", "b:2"]);
    }

    #[test]
    fn create_stream_arguments() {
        let cli = parse(&["create-stream", "orders", "--shard-count", "4", "--retention-hours", "48"])
            .expect("valid arguments");
        match cli.command {
            Command::CreateStream { name, shard_count, retention_hours, no_wait, wait_attempts_max } => {
                assert_eq!(name, "orders");
                assert_eq!(shard_count, 4);
                assert_eq!(retention_hours, Some(48));
                assert!(!no_wait);
                assert_eq!(wait_attempts_max, 150);
            }
            other => panic!("parsed as {other:?}"),
        }

        let missing_count = parse(&["create-stream", "orders"]).expect_err("needs --shard-count");
        assert_eq!(missing_count.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn put_needs_exactly_one_key_source() {
        let cli = parse(&["put", "s", "--partition-key", "k", "hello"]).expect("valid arguments");
        match cli.command {
            Command::Put { stream, data, partition_key, .. } => {
                assert_eq!(stream, "s");
                assert_eq!(data.as_deref(), Some("hello"));
                assert_eq!(partition_key.as_deref(), Some("k"));
            }
            other => panic!("parsed as {other:?}"),
        }
        parse(&["put", "s", "--key-from-line"]).expect("stdin with line keys");
        parse(&["put", "s", "--random-key", "--quiet"]).expect("stdin with random keys");

        let none = parse(&["put", "s", "data"]).expect_err("a key source is required");
        assert_eq!(none.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let two =
            parse(&["put", "s", "--random-key", "--partition-key", "k"]).expect_err("key sources exclude each other");
        assert_eq!(two.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn get_iterator_types_and_their_required_positions() {
        let cli = parse(&["get", "s", "--shard-id", "0"]).expect("valid arguments");
        match cli.command {
            Command::Get { iterator_type, follow, max_records, .. } => {
                assert_eq!(iterator_type, IteratorType::TrimHorizon);
                assert!(!follow);
                assert_eq!(max_records, None);
            }
            other => panic!("parsed as {other:?}"),
        }

        let cli = parse(&[
            "get",
            "s",
            "--shard-id",
            "shardId-000000000001",
            "--iterator-type",
            "AFTER_SEQUENCE_NUMBER",
            "--sequence-number",
            "42",
            "--follow",
            "--max-records",
            "10",
            "--limit",
            "5",
        ])
        .expect("valid arguments");
        match cli.command {
            Command::Get { iterator_type, sequence_number, follow, max_records, limit, .. } => {
                assert_eq!(iterator_type, IteratorType::AfterSequenceNumber);
                assert_eq!(sequence_number.as_deref(), Some("42"));
                assert!(follow);
                assert_eq!(max_records, Some(10));
                assert_eq!(limit, Some(5));
            }
            other => panic!("parsed as {other:?}"),
        }

        let no_sequence = parse(&["get", "s", "--shard-id", "0", "--iterator-type", "AT_SEQUENCE_NUMBER"])
            .expect_err("AT_SEQUENCE_NUMBER needs --sequence-number");
        assert_eq!(no_sequence.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let no_timestamp = parse(&["get", "s", "--shard-id", "0", "--iterator-type", "AT_TIMESTAMP"])
            .expect_err("AT_TIMESTAMP needs --timestamp-ms");
        assert_eq!(no_timestamp.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        parse(&["get", "s", "--shard-id", "0", "--iterator-type", "latest"]).expect("iterator types ignore case");
        let unknown =
            parse(&["get", "s", "--shard-id", "0", "--iterator-type", "OLDEST"]).expect_err("unknown iterator type");
        assert_eq!(unknown.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn shard_ids_from_numbers() {
        assert_eq!(normalize_shard_id("7"), "shardId-000000000007");
        assert_eq!(normalize_shard_id("shardId-000000000003"), "shardId-000000000003");
    }

    #[test]
    fn key_sources() {
        assert_eq!(KeySource::Fixed("k".into()).key_for(b"line"), "k");
        assert_eq!(KeySource::FromLine.key_for(b"line"), "line");
        let first = KeySource::Random.key_for(b"line");
        assert_eq!(first.len(), 32);
        assert_ne!(first, KeySource::Random.key_for(b"line"));
    }

    #[test]
    fn records_print_as_tab_separated_lines() {
        let text = Record {
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            approximate_arrival_timestamp_ms: 1,
            data: "hello world".into(),
            partition_key: "user-1".into(),
        };
        assert_eq!(
            format_record(&text),
            "49590338271490256608559692538361571095921575989136588898\tuser-1\thello world"
        );

        let binary = Record {
            sequence_number: "5".into(),
            data: vec![0xff, 0x00, 0x01].into(),
            partition_key: "k".into(),
            ..Record::default()
        };
        assert_eq!(format_record(&binary), "5\tk\tbase64:/wAB");
    }

    #[test]
    fn put_results_and_failures() {
        let stored = PutRecordsResultEntry {
            sequence_number: Some("12".into()),
            shard_id: Some("shardId-000000000000".into()),
            error_code: None,
            error_message: None,
        };
        assert_eq!(put_result_line(&stored), Ok("shardId-000000000000 12".to_owned()));

        let throttled = PutRecordsResultEntry {
            error_code: Some("ProvisionedThroughputExceededException".into()),
            error_message: Some("Rate exceeded for shard shardId-000000000000".into()),
            ..PutRecordsResultEntry::default()
        };
        assert_eq!(
            put_result_line(&throttled),
            Err("ProvisionedThroughputExceededException: Rate exceeded for shard shardId-000000000000".to_owned())
        );

        let tally = PutTally { sent: 10, failed: 3 };
        assert_eq!(tally.summary(), "put 7 records, 3 failed");
    }

    fn shard(id: &str, leader: Option<u64>) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            hash_key_range: Some(HashKeyRange {
                starting_hash_key: "0".into(),
                ending_hash_key: "340282366920938463463374607431768211455".into(),
            }),
            sequence_number_range: Some(SequenceNumberRange {
                starting_sequence_number: "1".into(),
                ending_sequence_number: None,
            }),
            replica_nodes: vec![1, 2, 3],
            leader_node: leader,
        }
    }

    #[test]
    fn shard_table_aligns_columns() {
        let table = format_shard_table(&[shard("shardId-000000000000", Some(2)), shard("shardId-000000000001", None)]);

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SHARD ID              HASH KEY RANGE"), "{table}");
        assert_eq!(
            lines[1],
            "shardId-000000000000  0-340282366920938463463374607431768211455  1                  -                -       2       1,2,3"
        );
        assert!(lines[2].ends_with("-       -       1,2,3"), "{table}");
        assert!(table.lines().all(|line| line == line.trim_end()));
    }

    #[test]
    fn cluster_status_lists_nodes_and_what_needs_attention() {
        use riffle_client::proto::{ClusterStatusResponse, GroupStatus, NodeStatus, ReplicaLag};
        let node = |node_id, zone: &str, reachable, leaders| NodeStatus {
            node_id,
            zone: zone.into(),
            reachable,
            replicas: 3,
            leaders,
            state: "active".into(),
        };
        let status = ClusterStatusResponse {
            answered_by: 1,
            nodes: vec![node(1, "a", true, 2), node(2, "b", false, 0), node(3, "c", true, 0)],
            groups: vec![
                GroupStatus {
                    group_id: 0,
                    name: "metadata".into(),
                    replicas: vec![1, 2, 3],
                    leader: Some(1),
                    last_log_index: 9,
                    lagging: vec![ReplicaLag { node_id: 2, behind_entries: 4 }],
                },
                GroupStatus {
                    group_id: 1,
                    name: "s/shardId-000000000000".into(),
                    replicas: vec![1, 2, 3],
                    leader: None,
                    last_log_index: 0,
                    lagging: vec![],
                },
            ],
        };
        let text = format_cluster_status(&status);
        assert!(text.contains("2      b            active           UNREACHABLE"), "{text}");
        assert!(text.contains("groups: 2, without a leader: 1\n  no leader: s/shardId-000000000000"), "{text}");
        assert!(text.contains("lagging replicas: 1\n  metadata on node 2: 4 entries behind"), "{text}");
        let value = cluster_status_json(&status);
        assert_eq!(value["Nodes"][1]["Reachable"], json!(false));
        assert_eq!(value["Groups"][0]["Lagging"][0]["BehindEntries"], json!(4));
    }

    #[test]
    fn description_json_follows_kinesis_names() {
        let description = StreamDescription {
            stream_name: "orders".into(),
            stream_arn: "arn:aws:kinesis:local:000000000000:stream/orders".into(),
            stream_status: StreamStatus::Active.into(),
            shards: vec![shard("shardId-000000000000", Some(2))],
            has_more_shards: false,
            retention_period_hours: 24,
            stream_creation_timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        };

        let value = stream_description_json(&description);

        let stream = &value["StreamDescription"];
        assert_eq!(stream["StreamName"], "orders");
        assert_eq!(stream["StreamStatus"], "ACTIVE");
        assert_eq!(stream["RetentionPeriodHours"], 24);
        let shard = &stream["Shards"][0];
        assert_eq!(shard["ShardId"], "shardId-000000000000");
        assert_eq!(shard["HashKeyRange"]["StartingHashKey"], "0");
        assert_eq!(shard["SequenceNumberRange"]["StartingSequenceNumber"], "1");
        assert!(shard["SequenceNumberRange"].get("EndingSequenceNumber").is_none());
        assert_eq!(shard["LeaderNode"], 2);
        assert_eq!(shard["ReplicaNodes"], json!([1, 2, 3]));
        assert!(shard.get("ParentShardId").is_none());

        let text = format_stream_description(&description);
        assert!(text.starts_with("Stream:     orders\n"), "{text}");
        assert!(text.contains("Status:     ACTIVE\n"), "{text}");
    }

    #[tokio::test]
    async fn line_reader_splits_lines_and_bounds_their_length() {
        let input: &[u8] = b"one\r\ntwo\n\nlast";
        let mut lines = LineReader::new(input);
        let mut read = Vec::new();
        while let Some(line) = lines.next_line().await.expect("in-memory input") {
            read.push(String::from_utf8(line).expect("ASCII input"));
        }
        assert_eq!(read, vec!["one", "two", "", "last"]);

        let mut exact = vec![b'x'; LINE_BYTES_MAX];
        exact.extend_from_slice(b"\r\n");
        let mut lines = LineReader::new(exact.as_slice());
        let line = lines.next_line().await.expect("a line at the limit is fine");
        assert_eq!(line.map(|line| line.len()), Some(LINE_BYTES_MAX));
        assert_eq!(lines.next_line().await.expect("end of input"), None);

        let too_long = vec![b'x'; LINE_BYTES_MAX + 1];
        let mut lines = LineReader::new(too_long.as_slice());
        let error = lines.next_line().await.expect_err("a line over the limit");
        assert!(error.to_string().contains("line 1 is longer"), "{error}");
    }
}
