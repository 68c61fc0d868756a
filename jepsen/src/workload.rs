//! The clients of a run and the history they record.
//!
//! Producers put unique values (`p<producer>-<n>`) with PutRecord and PutRecords, half of them
//! over the Kinesis HTTP API with the official AWS SDK (its own retries off) and half over
//! gRPC with Riffle's client (one attempt per call); each talks to one node at a time and moves
//! to the next after a failure. A put whose outcome is unknown is sent again with the same value
//! (which may legitimately append it twice); a definite failure is not. Readers follow
//! iterators of every type along the shard lineage over gRPC. Every call is recorded in the
//! [`Recorder`]: the checker's [`History`] plus, per operation, the node contacted and the API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use riffle_check::{History, Outcome, Page, Put, ReadChain, Record, StartPosition};
use riffle_client::proto as v1;
use serde::Serialize;

/// The stream every run writes.
pub const STREAM: &str = "jepsen";
/// Partition keys: few, so that per-key order is checked often.
const PARTITION_KEYS: u32 = 8;
/// Longest wait for one call; an answer later than this is an unknown outcome.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one value whose outcome stays unknown.
const PUT_ATTEMPTS_MAX: u32 = 3;
/// Pages one reader follows from one iterator at most.
const READER_PAGES_MAX: u32 = 8;

/// Which API a call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    Grpc,
    Kinesis,
}

/// One client call as the history file records it.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub process: String,
    /// `put`, `put-batch`, `iterator`, `read`, `probe`.
    pub f: &'static str,
    pub api: Api,
    pub node: u64,
    pub invoked_us: u64,
    pub completed_us: u64,
    /// `ok`, `fail` or `info`.
    pub kind: &'static str,
    /// Values put, or what was read (count), or the error.
    pub detail: String,
}

/// Everything the clients recorded, on one clock.
pub struct Recorder {
    start: Instant,
    puts: Mutex<Vec<Put>>,
    chains: Mutex<Vec<ReadChain>>,
    operations: Mutex<Vec<Operation>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            puts: Mutex::new(Vec::new()),
            chains: Mutex::new(Vec::new()),
            operations: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the run began.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn record(&self, operation: Operation) {
        lock(&self.operations).push(operation);
    }

    pub fn push_put(&self, put: Put) {
        lock(&self.puts).push(put);
    }

    pub fn history(&self) -> History {
        History { puts: lock(&self.puts).clone(), meta: Vec::new(), chains: lock(&self.chains).clone() }
    }

    pub fn operations(&self) -> Vec<Operation> {
        lock(&self.operations).clone()
    }

    fn acknowledged_in(&self, shard: u32) -> Vec<String> {
        lock(&self.puts)
            .iter()
            .filter_map(|put| match &put.outcome {
                Outcome::Ok { shard: at, sequence } if *at == shard => Some(sequence.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The clients of every node, both APIs.
#[derive(Clone)]
pub struct Clients {
    /// (node id, gRPC client, Kinesis SDK client), in node order.
    pub nodes: Vec<(u64, riffle_client::Client, aws_sdk_kinesis::Client)>,
}

impl Clients {
    /// One client per node and API: gRPC with a single attempt per call, the AWS SDK with its
    /// retries off; both give up on a call after [`CALL_TIMEOUT`].
    pub async fn connect(endpoints: &[(u64, String, String)]) -> anyhow::Result<Clients> {
        let mut nodes = Vec::new();
        for (id, grpc, kinesis) in endpoints {
            let config = riffle_client::ClientConfig {
                retries_max: 0,
                connect_timeout_ms: 1_000,
                request_timeout_ms: CALL_TIMEOUT.as_millis() as u64,
                ..riffle_client::ClientConfig::default()
            };
            let grpc = riffle_client::Client::connect_with_config(vec![grpc.clone()], config).await?;
            nodes.push((*id, grpc, kinesis_client(kinesis)));
        }
        Ok(Clients { nodes })
    }

    fn get(&self, position: usize) -> &(u64, riffle_client::Client, aws_sdk_kinesis::Client) {
        &self.nodes[position % self.nodes.len()]
    }
}

/// The AWS SDK's Kinesis client against one node: anonymous, no retries, bounded calls.
pub fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use aws_sdk_kinesis::config::timeout::TimeoutConfig;
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("jepsen", "jepsen", None, None, "riffle-jepsen"))
        .endpoint_url(endpoint)
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder().connect_timeout(Duration::from_secs(1)).operation_timeout(CALL_TIMEOUT).build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// How a failed call completed: `fail` if the request surely did nothing, `info` if unknown.
fn grpc_failure(error: &riffle_client::ClientError) -> Outcome {
    match error {
        riffle_client::ClientError::Service { error_type, message, .. } if error_type != "InternalFailure" => {
            Outcome::Fail(format!("{error_type}: {message}"))
        }
        riffle_client::ClientError::Transport { before_request: true, .. } => Outcome::Fail(error.to_string()),
        _ => Outcome::Info(error.to_string()),
    }
}

fn kinesis_failure<E, R>(error: &aws_sdk_kinesis::error::SdkError<E, R>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_string();
            let message = service.err().message().unwrap_or_default().to_string();
            if code == "InternalFailure" || code == "ServiceUnavailable" {
                Outcome::Info(format!("{code}: {message}"))
            } else {
                Outcome::Fail(format!("{code}: {message}"))
            }
        }
        SdkError::ConstructionFailure(_) => Outcome::Fail(format!("{error:?}")),
        other => Outcome::Info(aws_sdk_kinesis::error::DisplayErrorContext(other).to_string()),
    }
}

fn kind_of(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok { .. } => "ok",
        Outcome::Fail(_) => "fail",
        Outcome::Info(_) => "info",
    }
}

/// Sends one put call (PutRecord for one value, PutRecords for several) to `node` over `api`.
async fn put_call(clients: &Clients, position: usize, api: Api, pending: &[(String, String)]) -> Vec<Outcome> {
    let (_, grpc, kinesis) = clients.get(position);
    let shard_of = |shard_id: &str| riffle_node::keys::parse_shard_id(shard_id).unwrap_or(u32::MAX);
    match (api, pending) {
        (Api::Grpc, [(value, key)]) => {
            let request = v1::PutRecordRequest {
                stream_name: STREAM.into(),
                data: value.clone().into_bytes().into(),
                partition_key: key.clone(),
                explicit_hash_key: None,
                sequence_number_for_ordering: None,
            };
            vec![match tokio::time::timeout(CALL_TIMEOUT, grpc.put_record(request)).await {
                Ok(Ok(response)) => {
                    Outcome::Ok { shard: shard_of(&response.shard_id), sequence: response.sequence_number }
                }
                Ok(Err(error)) => grpc_failure(&error),
                Err(_) => Outcome::Info("timed out".into()),
            }]
        }
        (Api::Grpc, _) => {
            let request = v1::PutRecordsRequest {
                stream_name: STREAM.into(),
                records: pending
                    .iter()
                    .map(|(value, key)| v1::PutRecordsRequestEntry {
                        data: value.clone().into_bytes().into(),
                        partition_key: key.clone(),
                        explicit_hash_key: None,
                    })
                    .collect(),
            };
            match tokio::time::timeout(CALL_TIMEOUT, grpc.put_records(request)).await {
                Ok(Ok(response)) => response
                    .records
                    .into_iter()
                    .map(|entry| {
                        Outcome::of_put_records_entry(
                            entry.shard_id.as_deref().map(shard_of),
                            entry.sequence_number,
                            entry.error_code,
                            entry.error_message,
                        )
                    })
                    .collect(),
                Ok(Err(error)) => vec![grpc_failure(&error); pending.len()],
                Err(_) => vec![Outcome::Info("timed out".into()); pending.len()],
            }
        }
        (Api::Kinesis, [(value, key)]) => {
            let call = kinesis
                .put_record()
                .stream_name(STREAM)
                .data(aws_sdk_kinesis::primitives::Blob::new(value.as_bytes()))
                .partition_key(key)
                .send();
            vec![match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), call).await {
                Ok(Ok(response)) => Outcome::Ok {
                    shard: shard_of(response.shard_id()),
                    sequence: response.sequence_number().to_string(),
                },
                Ok(Err(error)) => kinesis_failure(&error),
                Err(_) => Outcome::Info("timed out".into()),
            }]
        }
        (Api::Kinesis, _) => {
            let mut call = kinesis.put_records().stream_name(STREAM);
            for (value, key) in pending {
                let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(value.as_bytes()))
                    .partition_key(key)
                    .build();
                match entry {
                    Ok(entry) => call = call.records(entry),
                    Err(error) => return vec![Outcome::Fail(format!("building the request: {error}")); pending.len()],
                }
            }
            match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), call.send()).await {
                Ok(Ok(response)) if response.records().len() == pending.len() => response
                    .records()
                    .iter()
                    .map(|entry| {
                        Outcome::of_put_records_entry(
                            entry.shard_id().map(shard_of),
                            entry.sequence_number().map(str::to_string),
                            entry.error_code().map(str::to_string),
                            entry.error_message().map(str::to_string),
                        )
                    })
                    .collect(),
                Ok(Ok(response)) => vec![
                    Outcome::Info(format!(
                        "PutRecords answered {} results for {} records",
                        response.records().len(),
                        pending.len()
                    ));
                    pending.len()
                ],
                Ok(Err(error)) => vec![kinesis_failure(&error); pending.len()],
                Err(_) => vec![Outcome::Info("timed out".into()); pending.len()],
            }
        }
    }
}

/// One producer: puts at `rate` calls per second (open loop: a late call is sent at once, and
/// never makes the next one wait) until `stop`.
pub async fn produce(
    producer: u32,
    clients: Clients,
    recorder: Arc<Recorder>,
    rate: f64,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let api = if producer.is_multiple_of(2) { Api::Grpc } else { Api::Kinesis };
    let mut position = producer as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut next_send = tokio::time::Instant::now();
    let mut number = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next_send).await;
        next_send += interval;
        let batch = if rng.gen_bool(1.0 / 3.0) { rng.gen_range(2..=5) } else { 1 };
        let mut pending: Vec<(String, String)> = (0..batch)
            .map(|offset| {
                (format!("p{producer}-{}", number + offset), format!("k{}", rng.gen_range(0..PARTITION_KEYS)))
            })
            .collect();
        number += batch;
        for attempt in 0..PUT_ATTEMPTS_MAX {
            if attempt > 0 {
                // Paces a retry after an unknown outcome; it synchronises nothing.
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
            }
            let node = clients.get(position).0;
            let invoked_us = recorder.now_us();
            let outcomes = put_call(&clients, position, api, &pending).await;
            let completed_us = recorder.now_us();
            let values: Vec<&str> = pending.iter().map(|(value, _)| value.as_str()).collect();
            let worst = outcomes
                .iter()
                .find(|outcome| matches!(outcome, Outcome::Info(_)))
                .or_else(|| outcomes.iter().find(|outcome| matches!(outcome, Outcome::Fail(_))))
                .or(outcomes.first());
            let detail = match worst {
                Some(Outcome::Fail(reason) | Outcome::Info(reason)) => format!("{values:?}: {reason}"),
                _ => format!("{values:?}"),
            };
            recorder.record(Operation {
                process: format!("producer {producer}"),
                f: if pending.len() > 1 { "put-batch" } else { "put" },
                api,
                node,
                invoked_us,
                completed_us,
                kind: worst.map(kind_of).unwrap_or("info"),
                detail,
            });
            let mut unknown = Vec::new();
            let mut failed = false;
            {
                let mut puts = lock(&recorder.puts);
                for ((value, key), outcome) in pending.into_iter().zip(outcomes) {
                    match outcome {
                        Outcome::Info(_) => unknown.push((value.clone(), key.clone())),
                        Outcome::Fail(_) => failed = true,
                        Outcome::Ok { .. } => {}
                    }
                    puts.push(Put { client: producer, value, key, invoked_us, completed_us, outcome });
                }
            }
            if failed || !unknown.is_empty() {
                // Another node may do better.
                position += 1;
            }
            pending = unknown;
            if pending.is_empty() || stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }
}

fn iterator_request(shard: u32, position: &StartPosition) -> v1::GetShardIteratorRequest {
    let (kind, sequence, timestamp_ms) = match position {
        StartPosition::TrimHorizon => (v1::ShardIteratorType::TrimHorizon, None, None),
        StartPosition::Latest => (v1::ShardIteratorType::Latest, None, None),
        StartPosition::AtSequence(sequence) => (v1::ShardIteratorType::AtSequenceNumber, Some(sequence.clone()), None),
        StartPosition::AfterSequence(sequence) => {
            (v1::ShardIteratorType::AfterSequenceNumber, Some(sequence.clone()), None)
        }
        StartPosition::AtTimestamp(timestamp) => (v1::ShardIteratorType::AtTimestamp, None, Some(*timestamp)),
    };
    v1::GetShardIteratorRequest {
        stream_name: STREAM.into(),
        shard_id: riffle_node::keys::shard_id(shard),
        shard_iterator_type: kind as i32,
        starting_sequence_number: sequence,
        timestamp_ms,
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

/// One reader: picks a shard and an iterator type, follows a few pages (into a child shard at
/// a closed shard's end), over and over until `stop`.
pub async fn read(reader: u32, clients: Clients, recorder: Arc<Recorder>, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shards: Vec<u32> = Vec::new();
    let process = format!("reader {reader}");
    while !stop.load(Ordering::SeqCst) {
        // Paces the reader; it synchronises nothing.
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..300_000))).await;
        let position = rng.gen_range(0..clients.nodes.len());
        let (node, grpc, _) = clients.get(position).clone();
        if shards.is_empty() || rng.gen_bool(0.2) {
            if let Ok(Ok(listed)) = tokio::time::timeout(CALL_TIMEOUT, grpc.list_shards(STREAM)).await {
                shards = listed.iter().filter_map(|shard| riffle_node::keys::parse_shard_id(&shard.shard_id)).collect();
            }
        }
        if shards.is_empty() {
            continue;
        }
        let mut shard = shards[rng.gen_range(0..shards.len())];
        let acknowledged = recorder.acknowledged_in(shard);
        let at = (!acknowledged.is_empty()).then(|| acknowledged[rng.gen_range(0..acknowledged.len())].clone());
        let start = match (rng.gen_range(0..5), at) {
            (1, _) => StartPosition::Latest,
            (2, Some(sequence)) => StartPosition::AtSequence(sequence),
            (3, Some(sequence)) => StartPosition::AfterSequence(sequence),
            (4, _) => StartPosition::AtTimestamp(wall_ms() - rng.gen_range(0..5_000)),
            _ => StartPosition::TrimHorizon,
        };
        let iterator_invoked_us = recorder.now_us();
        let answer = tokio::time::timeout(CALL_TIMEOUT, grpc.get_shard_iterator(iterator_request(shard, &start))).await;
        let iterator_completed_us = recorder.now_us();
        let outcome = match &answer {
            Ok(Ok(_)) => ("ok", format!("shard {shard} from {start:?}")),
            Ok(Err(error)) => ("fail", format!("shard {shard} from {start:?}: {error}")),
            Err(_) => ("info", format!("shard {shard} from {start:?}: timed out")),
        };
        recorder.record(Operation {
            process: process.clone(),
            f: "iterator",
            api: Api::Grpc,
            node,
            invoked_us: iterator_invoked_us,
            completed_us: iterator_completed_us,
            kind: outcome.0,
            detail: outcome.1,
        });
        let Ok(Ok(response)) = answer else { continue };
        let mut index = {
            let mut chains = lock(&recorder.chains);
            chains.push(ReadChain {
                client: reader,
                shard,
                start,
                iterator_invoked_us,
                iterator_completed_us,
                pages: Vec::new(),
                from_parent: None,
            });
            chains.len() - 1
        };
        let mut iterator = response.shard_iterator;
        for _ in 0..rng.gen_range(1..=READER_PAGES_MAX) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let position = rng.gen_range(0..clients.nodes.len());
            let (node, grpc, _) = clients.get(position).clone();
            let limit = rng.gen_range(1..=40u32);
            let invoked_us = recorder.now_us();
            let answer = tokio::time::timeout(CALL_TIMEOUT, grpc.get_records(&iterator, Some(limit))).await;
            let completed_us = recorder.now_us();
            let response = match answer {
                Ok(Ok(response)) => response,
                failed => {
                    let (kind, why) = match failed {
                        Ok(Err(error)) => ("fail", error.to_string()),
                        _ => ("info", "timed out".to_string()),
                    };
                    recorder.record(Operation {
                        process: process.clone(),
                        f: "read",
                        api: Api::Grpc,
                        node,
                        invoked_us,
                        completed_us,
                        kind,
                        detail: format!("shard {shard}: {why}"),
                    });
                    break;
                }
            };
            let records: Vec<Record> = response
                .records
                .iter()
                .map(|record| Record {
                    sequence: record.sequence_number.clone(),
                    value: String::from_utf8_lossy(&record.data).into_owned(),
                    arrival_ms: record.approximate_arrival_timestamp_ms,
                })
                .collect();
            let shard_end = response.next_shard_iterator.is_none();
            let at_tip = shard_end || (records.len() < limit as usize && response.millis_behind_latest == 0);
            recorder.record(Operation {
                process: process.clone(),
                f: "read",
                api: Api::Grpc,
                node,
                invoked_us,
                completed_us,
                kind: "ok",
                detail: format!("shard {shard}: {} record(s){}", records.len(), if at_tip { " (tip)" } else { "" }),
            });
            lock(&recorder.chains)[index].pages.push(Page { invoked_us, completed_us, records, at_tip, shard_end });
            match response.next_shard_iterator {
                Some(next) => iterator = next,
                None => {
                    // A closed shard read to its end: go on with a child from its start.
                    let children: Vec<u32> = response
                        .child_shards
                        .iter()
                        .filter_map(|child| riffle_node::keys::parse_shard_id(&child.shard_id))
                        .collect();
                    let Some(&child) = children.get(rng.gen_range(0..children.len().max(1))) else { break };
                    let iterator_invoked_us = recorder.now_us();
                    let answer = tokio::time::timeout(
                        CALL_TIMEOUT,
                        grpc.get_shard_iterator(iterator_request(child, &StartPosition::TrimHorizon)),
                    )
                    .await;
                    let Ok(Ok(response)) = answer else { break };
                    let mut chains = lock(&recorder.chains);
                    chains.push(ReadChain {
                        client: reader,
                        shard: child,
                        start: StartPosition::TrimHorizon,
                        iterator_invoked_us,
                        iterator_completed_us: recorder.now_us(),
                        pages: Vec::new(),
                        from_parent: Some(shard),
                    });
                    index = chains.len() - 1;
                    shard = child;
                    iterator = response.shard_iterator;
                }
            }
            tokio::time::sleep(Duration::from_micros(rng.gen_range(0..200_000))).await;
        }
    }
}

/// Per-shard counts of what the producers were told, for the report.
pub fn acknowledged_per_shard(history: &History) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for put in &history.puts {
        if let Outcome::Ok { shard, .. } = &put.outcome {
            *counts.entry(*shard).or_insert(0) += 1;
        }
    }
    counts
}
