//! Riffle's native gRPC API through `riffle-client`.
//!
//! Each producer and reader has its own [`Client`] whose endpoint list starts at a different
//! node, so load and forwarding spread over the cluster. Clients retry a put only when it was
//! never sent (the client's own rule), so a counted failure was a first attempt that failed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use riffle_client::proto::{
    GetShardIteratorRequest, PutRecordsRequest, PutRecordsRequestEntry, ShardIteratorType, StreamStatus,
};
use riffle_client::{stream_status_name, Client, ClientConfig, ClientError};

use super::{Entry, ReadState, Sent, StartAt, StreamInfo, Target};

/// Pause between polls while waiting for the cluster or the stream.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls while waiting for a new stream to become ACTIVE and for its shard leaders.
const STREAM_POLLS_MAX: u32 = 240;

/// Largest gRPC message the client decodes (tonic's default); a GetRecords answer above it
/// fails with `OutOfRange`, after which a reader asks for half as many records.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

pub struct GrpcDriver {
    target: Target,
    admin: Client,
}

impl GrpcDriver {
    pub async fn connect(target: &Target) -> Result<GrpcDriver> {
        let admin =
            Client::connect_with_config(target.endpoints.clone(), client_config(target)).await.context("connecting")?;
        wait_ready(&admin, target.wait_ready).await?;
        Ok(GrpcDriver { target: target.clone(), admin })
    }

    /// A client whose first endpoint is `index` modulo the endpoints.
    async fn client_from(&self, index: usize) -> Result<Client> {
        let mut endpoints = self.target.endpoints.clone();
        let first = index % endpoints.len();
        endpoints.rotate_left(first);
        Client::connect_with_config(endpoints, client_config(&self.target)).await.context("connecting a worker")
    }

    pub async fn prepare(&mut self, create: bool) -> Result<StreamInfo> {
        let stream = &self.target.stream;
        let shards = ensure_stream(&self.admin, stream, self.target.shards, create).await?;
        // Every node must know the stream and its leaders, or the first requests through it
        // would measure its catching up rather than the steady state.
        let mut replicas = 0;
        for endpoint in &self.target.endpoints {
            let node = Client::connect_with_config(vec![endpoint.clone()], client_config(&self.target))
                .await
                .with_context(|| format!("connecting {endpoint}"))?;
            replicas = wait_for_leaders(&node, stream).await?;
        }
        Ok(StreamInfo { shards, durability: format!("{replicas} replicas, fsync on a quorum before ack") })
    }

    pub async fn producer(&self, worker: usize, keys: Arc<[String]>) -> Result<GrpcProducer> {
        Ok(GrpcProducer { client: self.client_from(worker).await?, stream: self.target.stream.clone(), keys })
    }

    pub async fn shards(&self) -> Result<Vec<String>> {
        let shards = self.admin.list_shards(&self.target.stream).await.context("listing shards")?;
        Ok(shards.into_iter().map(|shard| shard.shard_id).collect())
    }

    pub async fn reader(&self, index: usize, shard: &str, start: StartAt) -> Result<GrpcReader> {
        let mut reader = GrpcReader {
            client: self.client_from(index).await?,
            stream: self.target.stream.clone(),
            shard: shard.to_string(),
            iterator: None,
            start,
            last_sequence: None,
            limit_max: u32::MAX,
        };
        reader.open().await.map_err(anyhow::Error::msg).with_context(|| format!("opening shard {shard}"))?;
        Ok(reader)
    }

    pub async fn delete_stream(&self) -> Result<()> {
        self.admin.delete_stream(&self.target.stream).await.context("deleting the stream")?;
        Ok(())
    }
}

fn client_config(target: &Target) -> ClientConfig {
    let request_timeout_ms = u64::try_from(target.request_timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    ClientConfig { request_timeout_ms, ..ClientConfig::default() }
}

pub struct GrpcProducer {
    client: Client,
    stream: String,
    keys: Arc<[String]>,
}

impl GrpcProducer {
    pub async fn send(&mut self, entries: &[Entry], sent: &mut Sent) {
        // The request owns its keys as `String`s (the generated type), so each record costs one
        // key copy; the data is shared.
        let records = entries
            .iter()
            .map(|entry| PutRecordsRequestEntry {
                data: entry.data.clone(),
                partition_key: self.keys[entry.key as usize].clone(),
                explicit_hash_key: None,
            })
            .collect();
        let request = PutRecordsRequest { stream_name: self.stream.clone(), records };
        match self.client.put_records(request).await {
            Ok(response) => {
                for (record, entry) in response.records.iter().zip(entries) {
                    match &record.error_code {
                        Some(code) => {
                            sent.failed += 1;
                            sent.failures.add(code, 1);
                        }
                        None => {
                            sent.acked += 1;
                            sent.acked_bytes += entry.data.len() as u64;
                        }
                    }
                }
            }
            Err(error) => {
                sent.request_failed = true;
                sent.failed = entries.len() as u64;
                sent.failures.add(&error_kind(&error), 1);
            }
        }
    }
}

pub struct GrpcReader {
    client: Client,
    stream: String,
    shard: String,
    iterator: Option<String>,
    start: StartAt,
    /// The last record read, so an expired iterator reopens right after it.
    last_sequence: Option<String>,
    /// Most records one read asks for: halved each time an answer was too large to decode.
    limit_max: u32,
}

impl GrpcReader {
    async fn open(&mut self) -> Result<(), String> {
        let (iterator_type, starting_sequence_number) = match (&self.last_sequence, self.start) {
            (Some(sequence), _) => (ShardIteratorType::AfterSequenceNumber, Some(sequence.clone())),
            (None, StartAt::Oldest) => (ShardIteratorType::TrimHorizon, None),
            (None, StartAt::Latest) => (ShardIteratorType::Latest, None),
        };
        let request = GetShardIteratorRequest {
            stream_name: self.stream.clone(),
            shard_id: self.shard.clone(),
            shard_iterator_type: iterator_type as i32,
            starting_sequence_number,
            timestamp_ms: None,
        };
        let response = self.client.get_shard_iterator(request).await.map_err(|error| error_kind(&error))?;
        self.iterator = Some(response.shard_iterator);
        // After a LATEST iterator is taken, later reopenings must not skip what came since.
        self.start = StartAt::Oldest;
        Ok(())
    }

    pub async fn read(&mut self, limit: usize, on_record: &mut (dyn FnMut(&[u8]) + Send)) -> Result<ReadState, String> {
        let Some(iterator) = &self.iterator else {
            return Ok(ReadState { caught_up: true, ended: true });
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(self.limit_max);
        match self.client.get_records(iterator, Some(limit)).await {
            Ok(response) => {
                for record in &response.records {
                    on_record(&record.data);
                }
                if let Some(last) = response.records.last() {
                    self.last_sequence = Some(last.sequence_number.clone());
                }
                let ended = response.next_shard_iterator.is_none();
                let caught_up = response.millis_behind_latest == 0 && (response.records.len() as u32) < limit;
                self.iterator = response.next_shard_iterator;
                Ok(ReadState { caught_up: caught_up || ended, ended })
            }
            Err(error) => {
                let kind = error_kind(&error);
                if error.error_type() == Some("ExpiredIteratorException") {
                    self.open().await?;
                }
                if matches!(error, ClientError::Status { code: tonic::Code::OutOfRange, .. }) {
                    self.limit_max = (limit / 2).max(1);
                }
                Err(kind)
            }
        }
    }
}

/// A short, low-cardinality name for a failed call, for the error table.
fn error_kind(error: &ClientError) -> String {
    match error {
        ClientError::Service { error_type, .. } => format!("request: {error_type}"),
        ClientError::Status { code, .. } => format!("request: gRPC {code:?}"),
        ClientError::Transport { .. } => "request: transport".to_string(),
        ClientError::MalformedResponse { rpc, .. } => format!("request: malformed {rpc} response"),
        ClientError::StreamNotActive { .. } => "request: stream not active".to_string(),
        ClientError::InvalidEndpoint { .. } | ClientError::InvalidConfig(_) => "request: invalid client".to_string(),
    }
}

/// Polls ListStreams until a node answers, for at most `wait`.
async fn wait_ready(client: &Client, wait: Duration) -> Result<()> {
    let polls = (wait.as_millis() / POLL_INTERVAL.as_millis()).max(1);
    let mut last_error = None;
    for _ in 0..polls {
        match client.list_streams().await {
            Ok(_) => return Ok(()),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!(
        "the cluster did not answer within {} s (last error: {})",
        wait.as_secs(),
        last_error.map_or_else(|| "none".to_string(), |error| error.to_string())
    )
}

/// Creates the stream if it is missing and `create` is set, and waits until it is ACTIVE;
/// returns its open shard count.
async fn ensure_stream(client: &Client, stream: &str, shards: u32, create: bool) -> Result<u32> {
    match client.describe_stream_summary(stream).await {
        Ok(summary) => {
            if create && summary.open_shard_count != shards {
                eprintln!(
                    "note: stream {stream} exists with {} open shards; using it as it is",
                    summary.open_shard_count
                );
            }
        }
        Err(error) if error.error_type() == Some("ResourceNotFoundException") && create => {
            match client.create_stream(stream, shards, None).await {
                Ok(_) => {}
                // Another run created it meanwhile.
                Err(error) if error.error_type() == Some("ResourceInUseException") => {}
                Err(error) => return Err(error).context(format!("creating stream {stream}")),
            }
        }
        Err(error) => return Err(error).context(format!("describing stream {stream}")),
    }
    // A node may answer from metadata that has not yet applied the create, so "not found"
    // right after creating means "not yet", for a bounded number of polls.
    let mut last = String::new();
    for _ in 0..STREAM_POLLS_MAX {
        match client.describe_stream_summary(stream).await {
            Ok(summary) if summary.stream_status == StreamStatus::Active as i32 => return Ok(summary.open_shard_count),
            Ok(summary) => {
                last = stream_status_name(StreamStatus::try_from(summary.stream_status).unwrap_or_default()).to_string()
            }
            Err(error) if error.error_type() == Some("ResourceNotFoundException") => last = error.to_string(),
            Err(error) => return Err(error).context(format!("waiting for stream {stream}")),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("stream {stream} is not ACTIVE after {STREAM_POLLS_MAX} polls (last: {last})")
}

/// Polls DescribeStream until every open shard has a leader, so the first requests do not
/// measure an election; returns the replica count of the first shard.
async fn wait_for_leaders(client: &Client, stream: &str) -> Result<usize> {
    let mut shards_without_leader = 0;
    for _ in 0..STREAM_POLLS_MAX {
        let description =
            client.describe_stream(stream).await.with_context(|| format!("describing stream {stream}"))?;
        let open = description.shards.iter().filter(|shard| {
            shard.sequence_number_range.as_ref().is_none_or(|range| range.ending_sequence_number.is_none())
        });
        shards_without_leader = open.clone().filter(|shard| shard.leader_node.is_none()).count();
        if shards_without_leader == 0 {
            return Ok(open.map(|shard| shard.replica_nodes.len()).max().unwrap_or(0));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("{shards_without_leader} shards of {stream} still have no leader after {STREAM_POLLS_MAX} polls")
}
