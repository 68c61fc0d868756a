//! NATS JetStream through `async-nats` (rustls on ring).
//!
//! The Kinesis model maps onto JetStream like this: a run's stream is one JetStream stream
//! (file storage, `--replicas` replicas) over the subjects `NAME.0` … `NAME.<N-1>`, one per
//! "shard"; a record's partition key picks its subject by a fixed hash ([`subject_index`]), so
//! records of one key stay in order as they do in a Kinesis shard. A batch is the async-publish
//! window: a worker publishes every record of its batch, then awaits each acknowledgement, and
//! each record's latency runs until its own acknowledgement arrived. Readers are ephemeral pull
//! consumers, one per subject, that acknowledge nothing.
//!
//! Invariant: the subject count of a stream this tool made is stored in the stream's metadata
//! ([`SUBJECTS_METADATA_KEY`]), so later runs (consume) read every subject without being told.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context as JetStream};
use async_nats::Subject;
use futures::StreamExt;

use super::{Entry, ReadState, Sent, StartAt, StreamInfo, Target};

/// The stream metadata key holding how many subjects the stream is split into.
pub const SUBJECTS_METADATA_KEY: &str = "riffle-bench-subjects";

/// Most publishes a producer keeps unacknowledged (its window, `--batch`). A producer's context
/// admits this many, so a full window never waits for a permit that only its own awaiting of
/// acknowledgements would free.
pub const PUBLISH_WINDOW_MAX: usize = 10_000;

/// Pause between attempts to connect while waiting for the server.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long an ephemeral reader's consumer outlives its last use on the server.
const CONSUMER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// The subject of a partition key: FNV-1a (64 bit) of the key, modulo the subject count.
pub fn subject_index(key: &str, subjects: u32) -> u32 {
    assert!(subjects > 0, "a stream has at least one subject");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(subjects)) as u32
}

/// The name of subject `index` of stream `stream`.
pub fn subject_name(stream: &str, index: u32) -> String {
    format!("{stream}.{index}")
}

pub struct NatsDriver {
    target: Target,
    jetstream: JetStream,
    /// Subjects of the stream, known after [`NatsDriver::prepare`].
    subjects: u32,
}

impl NatsDriver {
    pub async fn connect(target: &Target) -> Result<NatsDriver> {
        if target.stream.contains(['.', '*', '>', ' ', '\t']) {
            bail!("a NATS stream name may not contain '.', '*', '>' or white space: {}", target.stream);
        }
        let polls = (target.wait_ready.as_millis() / POLL_INTERVAL.as_millis()).max(1);
        let mut last_error = String::new();
        for _ in 0..polls {
            match connect(target, 0).await {
                Ok(client) => {
                    return Ok(NatsDriver {
                        target: target.clone(),
                        jetstream: context(target, client, 1),
                        subjects: target.shards,
                    })
                }
                Err(error) => last_error = format!("{error:#}"),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!("no NATS server answered within {} s (last error: {last_error})", target.wait_ready.as_secs())
    }

    pub async fn prepare(&mut self, create: bool) -> Result<StreamInfo> {
        let name = &self.target.stream;
        let stream = if create {
            let config = StreamConfig {
                name: name.clone(),
                subjects: vec![format!("{name}.*")],
                storage: StorageType::File,
                num_replicas: self.target.nats_replicas,
                metadata: HashMap::from([(SUBJECTS_METADATA_KEY.to_string(), self.target.shards.to_string())]),
                ..StreamConfig::default()
            };
            self.jetstream.get_or_create_stream(config).await.with_context(|| format!("creating stream {name}"))?
        } else {
            self.jetstream.get_stream(name).await.with_context(|| format!("finding stream {name}"))?
        };
        let info = stream.get_info().await.with_context(|| format!("reading stream {name}'s configuration"))?;
        if let Some(subjects) = info.config.metadata.get(SUBJECTS_METADATA_KEY).and_then(|text| text.parse().ok()) {
            if subjects != self.target.shards && create {
                eprintln!("note: stream {name} exists with {subjects} subjects; using it as it is");
            }
            self.subjects = subjects;
        }
        if self.subjects == 0 {
            bail!("stream {name} has no subjects");
        }
        let storage = match info.config.storage {
            StorageType::File => "file",
            StorageType::Memory => "memory",
        };
        Ok(StreamInfo {
            shards: self.subjects,
            durability: format!(
                "R{} {storage} storage; fsync before ack only if the servers run with sync_interval: always (set by bench/compare)",
                info.config.num_replicas
            ),
        })
    }

    pub async fn producer(&self, worker: usize, keys: &Arc<[String]>) -> Result<NatsProducer> {
        let client = connect(&self.target, worker).await?;
        let subjects: Vec<Subject> =
            (0..self.subjects).map(|index| Subject::from(subject_name(&self.target.stream, index))).collect();
        let key_subjects =
            keys.iter().map(|key| subjects[subject_index(key, self.subjects) as usize].clone()).collect();
        Ok(NatsProducer {
            jetstream: context(&self.target, client, PUBLISH_WINDOW_MAX),
            key_subjects,
            pending: Vec::new(),
        })
    }

    pub async fn shards(&self) -> Result<Vec<String>> {
        Ok((0..self.subjects).map(|index| subject_name(&self.target.stream, index)).collect())
    }

    pub async fn reader(&self, index: usize, subject: &str, start: StartAt) -> Result<NatsReader> {
        let client = connect(&self.target, index).await?;
        let jetstream = context(&self.target, client, 1);
        let stream = jetstream.get_stream(&self.target.stream).await.context("finding the stream")?;
        let config = PullConfig {
            filter_subject: subject.to_string(),
            deliver_policy: match start {
                StartAt::Oldest => DeliverPolicy::All,
                StartAt::Latest => DeliverPolicy::New,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: CONSUMER_INACTIVE_THRESHOLD,
            ..PullConfig::default()
        };
        let consumer = stream.create_consumer(config).await.with_context(|| format!("reading subject {subject}"))?;
        Ok(NatsReader { consumer })
    }

    pub async fn delete_stream(&self) -> Result<()> {
        self.jetstream.delete_stream(&self.target.stream).await.context("deleting the stream")?;
        Ok(())
    }
}

/// A connection whose first server is endpoint `index` modulo the endpoints.
async fn connect(target: &Target, index: usize) -> Result<async_nats::Client> {
    let mut endpoints = target.endpoints.clone();
    let first = index % endpoints.len();
    endpoints.rotate_left(first);
    async_nats::ConnectOptions::new()
        .connection_timeout(target.request_timeout)
        .request_timeout(Some(target.request_timeout))
        .retain_servers_order()
        .connect(endpoints)
        .await
        .with_context(|| format!("connecting to {}", target.endpoints.join(" ")))
}

/// A JetStream context whose calls and acknowledgements wait at most the request timeout, with
/// at most `inflight_max` publishes unacknowledged.
fn context(target: &Target, client: async_nats::Client, inflight_max: usize) -> JetStream {
    jetstream::ContextBuilder::new()
        .timeout(target.request_timeout)
        .max_ack_inflight(inflight_max.max(1))
        .backpressure_on_inflight(true)
        .build(client)
}

pub struct NatsProducer {
    jetstream: JetStream,
    /// The subject of each partition key, by key index.
    key_subjects: Vec<Subject>,
    /// Acknowledgements of the window in flight; reused between batches.
    pending: Vec<(PublishAckFuture, u64)>,
}

impl NatsProducer {
    pub async fn send(&mut self, entries: &[Entry], sent: &mut Sent) {
        debug_assert!(self.pending.is_empty(), "the previous window was awaited in full");
        for entry in entries {
            let subject = self.key_subjects[entry.key as usize].clone();
            match self.jetstream.publish(subject, entry.data.clone()).await {
                Ok(acknowledgement) => self.pending.push((acknowledgement, entry.data.len() as u64)),
                Err(error) => {
                    sent.failed += 1;
                    sent.failures.add(&format!("publish: {:?}", error.kind()), 1);
                }
            }
        }
        for (acknowledgement, bytes) in self.pending.drain(..) {
            match acknowledgement.await {
                Ok(_) => {
                    sent.acked += 1;
                    sent.acked_bytes += bytes;
                    sent.ack_times.push((Instant::now(), bytes));
                }
                Err(error) => {
                    sent.failed += 1;
                    sent.failures.add(&format!("ack: {:?}", error.kind()), 1);
                }
            }
        }
    }
}

pub struct NatsReader {
    consumer: PullConsumer,
}

impl NatsReader {
    pub async fn read(&mut self, limit: usize, on_record: &mut (dyn FnMut(&[u8]) + Send)) -> Result<ReadState, String> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(limit)
            .messages()
            .await
            .map_err(|error| format!("request: fetch {:?}", error.kind()))?;
        let mut received = 0;
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => {
                    received += 1;
                    on_record(&message.payload);
                }
                Err(error) => return Err(format!("request: fetch: {error}")),
            }
        }
        Ok(ReadState { caught_up: received < limit, ended: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_subjects_stably_and_evenly() {
        assert_eq!(subject_index("bench-key-00000", 1), 0);
        let first: Vec<u32> = (0..8).map(|key| subject_index(&format!("bench-key-{key:05}"), 4)).collect();
        let again: Vec<u32> = (0..8).map(|key| subject_index(&format!("bench-key-{key:05}"), 4)).collect();
        assert_eq!(first, again, "the mapping depends on the key only");
        let mut counts = [0u32; 4];
        for key in 0..4_096 {
            counts[subject_index(&format!("bench-key-{key:05}"), 4) as usize] += 1;
        }
        for count in counts {
            assert!((800..=1_250).contains(&count), "4096 keys over 4 subjects: {counts:?}");
        }
    }

    #[test]
    fn subjects_are_named_after_the_stream() {
        assert_eq!(subject_name("bench", 3), "bench.3");
    }
}
