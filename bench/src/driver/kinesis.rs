//! Any Kinesis HTTP endpoint — Riffle's Kinesis API, kinesalite, AWS — through the official
//! AWS SDK (`aws-sdk-kinesis`, rustls on ring).
//!
//! The SDK's own retries are off, so every counted failure is a first attempt. Workers and
//! readers spread over the endpoints in order (one SDK client, with its connection pool, per
//! endpoint). Stream state is read with DescribeStream, which every Kinesis implementation
//! serves. The SDK's request types own their data, so each record is copied once into the
//! request; that copy is part of what this driver measures, as it is for any SDK user.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, ShardIteratorType, StreamStatus};

use super::{Entry, ReadState, Sent, StartAt, StreamInfo, Target};

/// Pause between polls while waiting for the endpoint or the stream.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls while waiting for a new stream to become ACTIVE.
const STREAM_POLLS_MAX: u32 = 240;

/// Pages of DescribeStream one listing of shards follows at most.
const DESCRIBE_PAGES_MAX: u32 = 1_000;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct KinesisDriver {
    target: Target,
    /// One client per endpoint, in order.
    clients: Vec<aws_sdk_kinesis::Client>,
}

impl KinesisDriver {
    pub async fn connect(target: &Target) -> Result<KinesisDriver> {
        let clients = target.endpoints.iter().map(|endpoint| sdk_client(target, endpoint)).collect();
        let driver = KinesisDriver { target: target.clone(), clients };
        driver.wait_ready().await?;
        Ok(driver)
    }

    fn client(&self, index: usize) -> &aws_sdk_kinesis::Client {
        &self.clients[index % self.clients.len()]
    }

    /// Polls ListStreams until the first endpoint answers, for at most the target's wait.
    async fn wait_ready(&self) -> Result<()> {
        let polls = (self.target.wait_ready.as_millis() / POLL_INTERVAL.as_millis()).max(1);
        let mut last_error = String::new();
        for _ in 0..polls {
            match self.client(0).list_streams().send().await {
                Ok(_) => return Ok(()),
                Err(error) => last_error = aws_sdk_kinesis::error::DisplayErrorContext(&error).to_string(),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!(
            "the Kinesis endpoint {} did not answer within {} s (last error: {last_error})",
            self.target.endpoints[0],
            self.target.wait_ready.as_secs()
        )
    }

    pub async fn prepare(&mut self, create: bool) -> Result<StreamInfo> {
        let stream = &self.target.stream;
        let client = self.client(0);
        match client.describe_stream().stream_name(stream).limit(1).send().await {
            Ok(_) => {}
            Err(error) if error_code(&error) == Some("ResourceNotFoundException") && create => {
                let shards = i32::try_from(self.target.shards).context("--shards is too large")?;
                match client.create_stream().stream_name(stream).shard_count(shards).send().await {
                    Ok(_) => {}
                    Err(error) if error_code(&error) == Some("ResourceInUseException") => {}
                    Err(error) => bail!("creating stream {stream}: {}", describe(&error)),
                }
            }
            Err(error) => bail!("describing stream {stream}: {}", describe(&error)),
        }
        let mut last = String::new();
        for _ in 0..STREAM_POLLS_MAX {
            match client.describe_stream().stream_name(stream).limit(1).send().await {
                Ok(output) => {
                    let status = output.stream_description().map(|description| description.stream_status().clone());
                    if status == Some(StreamStatus::Active) {
                        let open = self.list_shards().await?.iter().filter(|shard| is_open(shard)).count();
                        return Ok(StreamInfo {
                            shards: u32::try_from(open).unwrap_or(u32::MAX),
                            durability: "as the endpoint provides (kinesalite: in memory, one process)".to_string(),
                        });
                    }
                    last = status.map_or_else(|| "no description".to_string(), |status| status.as_str().to_string());
                }
                Err(error) if error_code(&error) == Some("ResourceNotFoundException") => last = describe(&error),
                Err(error) => bail!("waiting for stream {stream}: {}", describe(&error)),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!("stream {stream} is not ACTIVE after {STREAM_POLLS_MAX} polls (last: {last})")
    }

    /// Every shard, following DescribeStream's pages.
    async fn list_shards(&self) -> Result<Vec<Shard>> {
        let mut shards: Vec<Shard> = Vec::new();
        for _ in 0..DESCRIBE_PAGES_MAX {
            let mut request = self.client(0).describe_stream().stream_name(&self.target.stream);
            if let Some(last) = shards.last() {
                request = request.exclusive_start_shard_id(last.shard_id());
            }
            let output =
                request.send().await.map_err(|error| anyhow::anyhow!("describing the stream: {}", describe(&error)))?;
            let Some(description) = output.stream_description else {
                bail!("DescribeStream answered without a description");
            };
            let more = description.has_more_shards;
            shards.extend(description.shards);
            if !more {
                return Ok(shards);
            }
        }
        bail!("DescribeStream has more than {DESCRIBE_PAGES_MAX} pages of shards")
    }

    pub fn producer(&self, worker: usize, keys: Arc<[String]>) -> KinesisProducer {
        KinesisProducer { client: self.client(worker).clone(), stream: self.target.stream.clone(), keys }
    }

    pub async fn shards(&self) -> Result<Vec<String>> {
        Ok(self.list_shards().await?.into_iter().map(|shard| shard.shard_id).collect())
    }

    pub async fn reader(&self, index: usize, shard: &str, start: StartAt) -> Result<KinesisReader> {
        let mut reader = KinesisReader {
            client: self.client(index).clone(),
            stream: self.target.stream.clone(),
            shard: shard.to_string(),
            iterator: None,
            start,
            last_sequence: None,
        };
        reader.open().await.map_err(anyhow::Error::msg).with_context(|| format!("opening shard {shard}"))?;
        Ok(reader)
    }

    pub async fn delete_stream(&self) -> Result<()> {
        match self.client(0).delete_stream().stream_name(&self.target.stream).send().await {
            Ok(_) => Ok(()),
            Err(error) => bail!("deleting the stream: {}", describe(&error)),
        }
    }
}

fn is_open(shard: &Shard) -> bool {
    shard.sequence_number_range().is_none_or(|range| range.ending_sequence_number().is_none())
}

/// The SDK client for one endpoint: static credentials, no retries, bounded calls.
fn sdk_client(target: &Target, endpoint: &str) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use aws_sdk_kinesis::config::timeout::TimeoutConfig;
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let credentials = Credentials::new(&target.access_key, &target.secret_key, None, None, "riffle-bench");
    let timeouts =
        TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).operation_timeout(target.request_timeout).build();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(target.region.clone()))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

pub struct KinesisProducer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    keys: Arc<[String]>,
}

impl KinesisProducer {
    pub async fn send(&mut self, entries: &[Entry], sent: &mut Sent) {
        let records: Result<Vec<PutRecordsRequestEntry>, _> = entries
            .iter()
            .map(|entry| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(entry.data.to_vec()))
                    .partition_key(&self.keys[entry.key as usize])
                    .build()
            })
            .collect();
        let records = match records {
            Ok(records) => records,
            Err(_) => {
                sent.request_failed = true;
                sent.failed = entries.len() as u64;
                sent.failures.add("request: building the request", 1);
                return;
            }
        };
        match self.client.put_records().stream_name(&self.stream).set_records(Some(records)).send().await {
            Ok(output) if output.records.len() == entries.len() => {
                for (record, entry) in output.records.iter().zip(entries) {
                    match record.error_code() {
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
            Ok(_) => {
                sent.request_failed = true;
                sent.failed = entries.len() as u64;
                sent.failures.add("request: malformed PutRecords response", 1);
            }
            Err(error) => {
                sent.request_failed = true;
                sent.failed = entries.len() as u64;
                sent.failures.add(&error_kind(&error), 1);
            }
        }
    }
}

pub struct KinesisReader {
    client: aws_sdk_kinesis::Client,
    stream: String,
    shard: String,
    iterator: Option<String>,
    start: StartAt,
    last_sequence: Option<String>,
}

impl KinesisReader {
    async fn open(&mut self) -> Result<(), String> {
        let request = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(&self.shard);
        let request = match (&self.last_sequence, self.start) {
            (Some(sequence), _) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence)
            }
            (None, StartAt::Oldest) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            (None, StartAt::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
        };
        let output = request.send().await.map_err(|error| error_kind(&error))?;
        self.iterator = output.shard_iterator;
        self.start = StartAt::Oldest;
        Ok(())
    }

    pub async fn read(&mut self, limit: usize, on_record: &mut (dyn FnMut(&[u8]) + Send)) -> Result<ReadState, String> {
        let Some(iterator) = &self.iterator else {
            return Ok(ReadState { caught_up: true, ended: true });
        };
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        match self.client.get_records().shard_iterator(iterator).limit(limit).send().await {
            Ok(output) => {
                for record in &output.records {
                    on_record(record.data().as_ref());
                }
                if let Some(last) = output.records.last() {
                    self.last_sequence = Some(last.sequence_number().to_string());
                }
                let ended = output.next_shard_iterator.is_none();
                let caught_up = output.millis_behind_latest.unwrap_or(0) == 0 && (output.records.len() as i32) < limit;
                self.iterator = output.next_shard_iterator;
                Ok(ReadState { caught_up: caught_up || ended, ended })
            }
            Err(error) => {
                let kind = error_kind(&error);
                if error_code(&error) == Some("ExpiredIteratorException") {
                    self.open().await?;
                }
                Err(kind)
            }
        }
    }
}

fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// A short, low-cardinality name for a failed call, for the error table.
fn error_kind<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> String {
    match error {
        SdkError::ServiceError(service) => {
            format!("request: {}", service.err().code().unwrap_or("unknown service error"))
        }
        SdkError::TimeoutError(_) => "request: timeout".to_string(),
        SdkError::DispatchFailure(_) => "request: dispatch (connection)".to_string(),
        SdkError::ResponseError(_) => "request: unreadable response".to_string(),
        SdkError::ConstructionFailure(_) => "request: construction".to_string(),
        _ => "request: other SDK error".to_string(),
    }
}

fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws_sdk_kinesis::error::DisplayErrorContext(error).to_string()
}
