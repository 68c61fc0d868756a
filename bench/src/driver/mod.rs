//! The systems a run can drive, behind one narrow interface: prepare a stream, send batches of
//! records, read every shard.
//!
//! What it is: three drivers — Riffle's native gRPC API ([`grpc`]), any Kinesis HTTP endpoint
//! through the official AWS SDK ([`kinesis`]), NATS JetStream ([`nats`]) — dispatched through
//! the enums [`Driver`], [`Producer`] and [`ShardReader`], so the workloads are written once.
//!
//! What it is not: a client library. Nothing here retries a send: a failed request or record is
//! counted by its error type and the run goes on, so every figure is for first attempts. Reads
//! may be retried by the workloads, since reading twice changes nothing.
//!
//! Invariants: every call is bounded by the target's request timeout; a [`Sent`] accounts for
//! every entry of its batch exactly once (`acked + failed == entries`).

pub mod grpc;
pub mod kinesis;
pub mod nats;

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use serde::Serialize;

/// Which kind of system a run drives (`--system`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Riffle's native gRPC API through `riffle-client`.
    Riffle,
    /// Any Kinesis HTTP endpoint (Riffle's, kinesalite, AWS) through `aws-sdk-kinesis`.
    Kinesis,
    /// NATS JetStream through `async-nats`.
    Nats,
}

impl System {
    /// The name reports use (`system.name`).
    pub fn name(self) -> &'static str {
        match self {
            System::Riffle => "riffle",
            System::Kinesis => "kinesis",
            System::Nats => "nats",
        }
    }

    /// The driver reports name (`system.driver`).
    pub fn driver_name(self) -> &'static str {
        match self {
            System::Riffle => "riffle-grpc",
            System::Kinesis => "kinesis-http",
            System::Nats => "nats-jetstream",
        }
    }

    /// The endpoint used when none is given.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            System::Riffle => "http://127.0.0.1:50051",
            System::Kinesis => "http://127.0.0.1:4567",
            System::Nats => "nats://127.0.0.1:4222",
        }
    }
}

/// Where a run connects and which stream it uses; checked by the command line before use.
#[derive(Clone, Debug)]
pub struct Target {
    pub system: System,
    /// At least one; workers spread over them in order.
    pub endpoints: Vec<String>,
    pub stream: String,
    /// Shards (Kinesis) or subjects (NATS) of a stream this run creates.
    pub shards: u32,
    /// Kinesis only.
    pub region: String,
    /// Kinesis only.
    pub access_key: String,
    /// Kinesis only.
    pub secret_key: String,
    /// NATS only: replicas of a stream this run creates.
    pub nats_replicas: usize,
    /// Longest wait for one call.
    pub request_timeout: Duration,
    /// How long to wait for the system to answer at all before giving up.
    pub wait_ready: Duration,
}

/// The stream as a run found or made it.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// Open shards (Kinesis) or subjects (NATS).
    pub shards: u32,
    /// What an acknowledgement promises, as far as the system says.
    pub durability: String,
}

/// Where a reader starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept (TRIM_HORIZON; NATS: deliver all).
    Oldest,
    /// After the newest record at the time the reader opens (LATEST; NATS: deliver new).
    Latest,
}

/// One record to send: an index into the run's partition keys and the data.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: u32,
    pub data: Bytes,
}

/// Counts by error type, allocating only the first time a type is seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failures(Vec<(String, u64)>);

impl Failures {
    pub fn add(&mut self, kind: &str, count: u64) {
        match self.0.iter_mut().find(|(known, _)| known == kind) {
            Some((_, total)) => *total += count,
            None => self.0.push((kind.to_string(), count)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(kind, count)| (kind.as_str(), *count))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// What came of one batch; reused between batches by a worker.
#[derive(Debug, Default)]
pub struct Sent {
    /// Records the system acknowledged.
    pub acked: u64,
    /// Bytes of record data acknowledged.
    pub acked_bytes: u64,
    /// Records not acknowledged (refused, or part of a failed request).
    pub failed: u64,
    /// The request as a whole failed (no per-record answers came back).
    pub request_failed: bool,
    /// Failed requests (`request: <type>`) and failed records (`<type>`) by type.
    pub failures: Failures,
    /// When each acknowledged record's acknowledgement arrived, with its size in bytes, for
    /// systems that acknowledge records one by one (NATS); empty when the request's answer
    /// acknowledges them all.
    pub ack_times: Vec<(Instant, u64)>,
}

impl Sent {
    pub fn clear(&mut self) {
        self.acked = 0;
        self.acked_bytes = 0;
        self.failed = 0;
        self.request_failed = false;
        self.failures.clear();
        self.ack_times.clear();
    }
}

/// How a read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The read returned every record there was (nothing more to read right now).
    pub caught_up: bool,
    /// The shard is closed and read to its end; no later read returns anything.
    pub ended: bool,
}

/// A connection to one system for one stream.
pub enum Driver {
    Riffle(grpc::GrpcDriver),
    Kinesis(kinesis::KinesisDriver),
    Nats(nats::NatsDriver),
}

impl Driver {
    /// Connects (lazily where the client allows) and waits up to `target.wait_ready` for an
    /// answer.
    pub async fn connect(target: &Target) -> Result<Driver> {
        Ok(match target.system {
            System::Riffle => Driver::Riffle(grpc::GrpcDriver::connect(target).await?),
            System::Kinesis => Driver::Kinesis(kinesis::KinesisDriver::connect(target).await?),
            System::Nats => Driver::Nats(nats::NatsDriver::connect(target).await?),
        })
    }

    /// Finds the stream, creating it first when `create` is set and it is missing, and waits
    /// until it takes writes (ACTIVE, and for Riffle every shard has a leader on every endpoint).
    pub async fn prepare(&mut self, create: bool) -> Result<StreamInfo> {
        match self {
            Driver::Riffle(driver) => driver.prepare(create).await,
            Driver::Kinesis(driver) => driver.prepare(create).await,
            Driver::Nats(driver) => driver.prepare(create).await,
        }
    }

    /// A producer for worker `worker` with its own connection where the system has them.
    /// `keys` are the run's partition keys; entries name them by index.
    pub async fn producer(&self, worker: usize, keys: &std::sync::Arc<[String]>) -> Result<Producer> {
        Ok(match self {
            Driver::Riffle(driver) => Producer::Riffle(driver.producer(worker, keys.clone()).await?),
            Driver::Kinesis(driver) => Producer::Kinesis(driver.producer(worker, keys.clone())),
            Driver::Nats(driver) => Producer::Nats(driver.producer(worker, keys).await?),
        })
    }

    /// Every shard of the stream (NATS: every subject), closed ones included.
    pub async fn shards(&self) -> Result<Vec<String>> {
        match self {
            Driver::Riffle(driver) => driver.shards().await,
            Driver::Kinesis(driver) => driver.shards().await,
            Driver::Nats(driver) => driver.shards().await,
        }
    }

    /// A reader of one shard; reader `index` uses endpoint `index` modulo their number.
    pub async fn reader(&self, index: usize, shard: &str, start: StartAt) -> Result<ShardReader> {
        Ok(match self {
            Driver::Riffle(driver) => ShardReader::Riffle(driver.reader(index, shard, start).await?),
            Driver::Kinesis(driver) => ShardReader::Kinesis(driver.reader(index, shard, start).await?),
            Driver::Nats(driver) => ShardReader::Nats(Box::new(driver.reader(index, shard, start).await?)),
        })
    }

    /// Deletes the stream (`--delete-after`).
    pub async fn delete_stream(&self) -> Result<()> {
        match self {
            Driver::Riffle(driver) => driver.delete_stream().await,
            Driver::Kinesis(driver) => driver.delete_stream().await,
            Driver::Nats(driver) => driver.delete_stream().await,
        }
    }
}

/// One worker's sending side.
pub enum Producer {
    Riffle(grpc::GrpcProducer),
    Kinesis(kinesis::KinesisProducer),
    Nats(nats::NatsProducer),
}

impl Producer {
    /// Sends `entries` as one batch (NATS: publishes them all, then awaits every ack) and
    /// fills `sent`, which the caller cleared.
    pub async fn send(&mut self, entries: &[Entry], sent: &mut Sent) {
        debug_assert!(sent.acked == 0 && sent.failed == 0, "the caller clears `sent`");
        match self {
            Producer::Riffle(producer) => producer.send(entries, sent).await,
            Producer::Kinesis(producer) => producer.send(entries, sent).await,
            Producer::Nats(producer) => producer.send(entries, sent).await,
        }
        assert_eq!(sent.acked + sent.failed, entries.len() as u64, "every entry is accounted for once");
    }
}

/// One shard's reading side.
pub enum ShardReader {
    Riffle(grpc::GrpcReader),
    Kinesis(kinesis::KinesisReader),
    // A pull consumer is large; readers are few (one per shard), so it is boxed for the
    // enum's sake, not for speed.
    Nats(Box<nats::NatsReader>),
}

impl ShardReader {
    /// Reads at most `limit` records, handing each record's data to `on_record`. An error is
    /// the error's type; the reader stays usable (it reopens its position if it must).
    pub async fn read(&mut self, limit: usize, on_record: &mut (dyn FnMut(&[u8]) + Send)) -> Result<ReadState, String> {
        match self {
            ShardReader::Riffle(reader) => reader.read(limit, on_record).await,
            ShardReader::Kinesis(reader) => reader.read(limit, on_record).await,
            ShardReader::Nats(reader) => reader.read(limit, on_record).await,
        }
    }
}
