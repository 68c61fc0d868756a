//! [`Client`]: every RPC of the gRPC API, with failover between endpoints.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::v1::riffle_client::RiffleClient;
use riffle_proto::v1::{
    CreateStreamRequest, CreateStreamResponse, DeleteStreamRequest, DeleteStreamResponse, DescribeStreamRequest,
    DescribeStreamSummaryRequest, GetRecordsRequest, GetRecordsResponse, GetShardIteratorRequest,
    GetShardIteratorResponse, ListShardsRequest, ListStreamsRequest, ListStreamsResponse, PutRecordRequest,
    PutRecordResponse, PutRecordsRequest, PutRecordsResponse, Shard, StreamDescription, StreamStatus, StreamSummary,
};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::ClientError;

/// Most pages one paginated listing (DescribeStream, ListShards, ListStreams) follows.
pub const PAGES_MAX: u32 = 10_000;

/// Most retries a [`ClientConfig`] may ask for.
pub const RETRIES_MAX_LIMIT: u32 = 100;

/// Tunables of a [`Client`], checked once by [`Client::connect_with_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Retries of one call after transport errors, each on the next endpoint.
    /// Default 3; at most [`RETRIES_MAX_LIMIT`].
    pub retries_max: u32,
    /// Wait before the first retry; doubles per retry up to `backoff_max_ms`.
    /// Default 50; at most `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    /// Longest wait between retries. Default 1000.
    pub backoff_max_ms: u64,
    /// How long establishing a connection may take. Default 3000; at least 1.
    pub connect_timeout_ms: u64,
    /// How long one call may take before it fails with `Cancelled`. Default 30000; at least 1.
    pub request_timeout_ms: u64,
    /// Wait between polls in [`Client::wait_for_stream_active`]. Default 200.
    pub stream_active_poll_interval_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retries_max: 3,
            backoff_initial_ms: 50,
            backoff_max_ms: 1000,
            connect_timeout_ms: 3000,
            request_timeout_ms: 30_000,
            stream_active_poll_interval_ms: 200,
        }
    }
}

impl ClientConfig {
    fn validate(&self) -> Result<(), ClientError> {
        let invalid = |reason: String| Err(ClientError::InvalidConfig(reason));
        if self.retries_max > RETRIES_MAX_LIMIT {
            return invalid(format!("retries_max {} is above {RETRIES_MAX_LIMIT}", self.retries_max));
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return invalid(format!(
                "backoff_initial_ms {} is above backoff_max_ms {}",
                self.backoff_initial_ms, self.backoff_max_ms
            ));
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return invalid("connect_timeout_ms and request_timeout_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The wait before retry number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64 << retry.saturating_sub(1).min(20);
        let ms = self.backoff_initial_ms.saturating_mul(factor).min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// Whether sending a request twice can do something twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idempotence {
    /// Reads: retried after any transport error.
    Idempotent,
    /// Puts, creates, deletes: retried only when the request was never sent.
    NotIdempotent,
}

#[derive(Clone, Debug)]
struct Node {
    endpoint: String,
    rpc: RiffleClient<Channel>,
}

/// A handle on a Riffle cluster through one or more node endpoints.
///
/// Any node serves any request (a node that does not lead a shard forwards to the one that
/// does). Calls go to one endpoint at a time; after a transport error the client moves to the
/// next endpoint and retries, at most [`ClientConfig::retries_max`] times with doubling backoff.
///
/// Retries and duplicates: PutRecord, PutRecords, CreateStream and DeleteStream are retried only
/// when the connection could not be established, so the request was never sent. Any other
/// failure is returned, because the request may have been applied. Even so, callers that retry
/// a put themselves after a transport error may append the record twice.
///
/// Cloning is cheap; clones share connections and the current endpoint.
#[derive(Clone, Debug)]
pub struct Client {
    nodes: Arc<[Node]>,
    current: Arc<AtomicUsize>,
    config: ClientConfig,
}

impl Client {
    /// A client for `endpoints` (`http://host:port`, or `host:port`) with the default config.
    ///
    /// Connections are made on first use, so this fails only on bad input, not on an
    /// unreachable node. Must be called inside a tokio runtime.
    pub async fn connect(endpoints: Vec<String>) -> Result<Client, ClientError> {
        Client::connect_with_config(endpoints, ClientConfig::default()).await
    }

    /// A client for `endpoints` with `config` (validated here).
    pub async fn connect_with_config(endpoints: Vec<String>, config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "at least one endpoint is needed".into(),
            });
        }
        let nodes = endpoints
            .into_iter()
            .map(|endpoint| {
                let uri = if endpoint.contains("://") { endpoint.clone() } else { format!("http://{endpoint}") };
                let channel = Endpoint::from_shared(uri)
                    .map_err(|error| ClientError::InvalidEndpoint {
                        endpoint: endpoint.clone(),
                        reason: error.to_string(),
                    })?
                    .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                    .timeout(Duration::from_millis(config.request_timeout_ms))
                    .connect_lazy();
                Ok(Node { endpoint, rpc: RiffleClient::new(channel) })
            })
            .collect::<Result<Vec<Node>, ClientError>>()?;
        Ok(Client { nodes: nodes.into(), current: Arc::new(AtomicUsize::new(0)), config })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates a stream with `shard_count` shards. The stream starts CREATING; see
    /// [`Client::wait_for_stream_active`].
    pub async fn create_stream(
        &self,
        stream_name: &str,
        shard_count: u32,
        retention_period_hours: Option<u32>,
    ) -> Result<CreateStreamResponse, ClientError> {
        let request = CreateStreamRequest {
            stream_name: stream_name.to_owned(),
            shard_count,
            retention_period_hours,
            ..Default::default()
        };
        self.call(Idempotence::NotIdempotent, |mut rpc| {
            let request = request.clone();
            async move { rpc.create_stream(request).await }
        })
        .await
    }

    /// Deletes a stream and its records.
    pub async fn delete_stream(&self, stream_name: &str) -> Result<DeleteStreamResponse, ClientError> {
        let request = DeleteStreamRequest { stream_name: stream_name.to_owned() };
        self.call(Idempotence::NotIdempotent, |mut rpc| {
            let request = request.clone();
            async move { rpc.delete_stream(request).await }
        })
        .await
    }

    /// Describes a stream with all its shards, following DescribeStream's pagination (at most
    /// [`PAGES_MAX`] pages). The result has `has_more_shards == false`.
    pub async fn describe_stream(&self, stream_name: &str) -> Result<StreamDescription, ClientError> {
        const RPC: &str = "DescribeStream";
        let mut shards: Vec<Shard> = Vec::new();
        for _ in 0..PAGES_MAX {
            let request = DescribeStreamRequest {
                stream_name: stream_name.to_owned(),
                limit: None,
                exclusive_start_shard_id: shards.last().map(|shard| shard.shard_id.clone()),
            };
            let response = self
                .call(Idempotence::Idempotent, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.describe_stream(request).await }
                })
                .await?;
            let mut page = response.stream_description.ok_or_else(|| malformed(RPC, "no stream_description"))?;
            if page.has_more_shards && page.shards.is_empty() {
                return Err(malformed(RPC, "has_more_shards with an empty page"));
            }
            shards.append(&mut page.shards);
            if !page.has_more_shards {
                page.shards = shards;
                return Ok(page);
            }
        }
        Err(malformed(RPC, &format!("more than {PAGES_MAX} pages")))
    }

    /// Describes a stream without its shards.
    pub async fn describe_stream_summary(&self, stream_name: &str) -> Result<StreamSummary, ClientError> {
        let request = DescribeStreamSummaryRequest { stream_name: stream_name.to_owned() };
        let response = self
            .call(Idempotence::Idempotent, |mut rpc| {
                let request = request.clone();
                async move { rpc.describe_stream_summary(request).await }
            })
            .await?;
        response
            .stream_description_summary
            .ok_or_else(|| malformed("DescribeStreamSummary", "no stream_description_summary"))
    }

    /// The cluster's nodes, zones, health, leaders and replicas per node, and lagging replicas,
    /// as the node reached gathers them.
    pub async fn cluster_status(&self) -> Result<crate::proto::ClusterStatusResponse, ClientError> {
        self.call(Idempotence::Idempotent, |mut rpc| async move {
            rpc.cluster_status(crate::proto::ClusterStatusRequest {}).await
        })
        .await
    }

    /// Moves every replica off a node, then removes it from the cluster (it keeps running and
    /// can be stopped once `cluster_status` shows it removed). Idempotent.
    pub async fn decommission_node(&self, node_id: u64) -> Result<(), ClientError> {
        self.call(Idempotence::Idempotent, |mut rpc| async move {
            rpc.decommission_node(crate::proto::DecommissionNodeRequest { node_id }).await
        })
        .await
        .map(|_| ())
    }

    /// Lists all streams, following ListStreams' pagination (at most [`PAGES_MAX`] pages).
    /// The result has `has_more_streams == false`.
    pub async fn list_streams(&self) -> Result<ListStreamsResponse, ClientError> {
        const RPC: &str = "ListStreams";
        let mut all = ListStreamsResponse::default();
        for _ in 0..PAGES_MAX {
            let request =
                ListStreamsRequest { limit: None, exclusive_start_stream_name: all.stream_names.last().cloned() };
            let mut page = self
                .call(Idempotence::Idempotent, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.list_streams(request).await }
                })
                .await?;
            if page.has_more_streams && page.stream_names.is_empty() {
                return Err(malformed(RPC, "has_more_streams with an empty page"));
            }
            all.stream_names.append(&mut page.stream_names);
            all.stream_summaries.append(&mut page.stream_summaries);
            if !page.has_more_streams {
                return Ok(all);
            }
        }
        Err(malformed(RPC, &format!("more than {PAGES_MAX} pages")))
    }

    /// Lists all shards of a stream, following ListShards' `next_token` (at most [`PAGES_MAX`]
    /// pages).
    pub async fn list_shards(&self, stream_name: &str) -> Result<Vec<Shard>, ClientError> {
        const RPC: &str = "ListShards";
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..PAGES_MAX {
            // Kinesis takes either the stream name (first page) or the token (later pages).
            let request = ListShardsRequest {
                filter_type: None,
                filter_timestamp_ms: None,
                stream_name: if next_token.is_some() { String::new() } else { stream_name.to_owned() },
                max_results: None,
                exclusive_start_shard_id: None,
                next_token: next_token.take(),
            };
            let mut page = self
                .call(Idempotence::Idempotent, |mut rpc| {
                    let request = request.clone();
                    async move { rpc.list_shards(request).await }
                })
                .await?;
            shards.append(&mut page.shards);
            match page.next_token.filter(|token| !token.is_empty()) {
                Some(token) => next_token = Some(token),
                None => return Ok(shards),
            }
        }
        Err(malformed(RPC, &format!("more than {PAGES_MAX} pages")))
    }

    /// Appends one record. Retried only when the request was never sent (see [`Client`]).
    pub async fn put_record(&self, request: PutRecordRequest) -> Result<PutRecordResponse, ClientError> {
        self.call(Idempotence::NotIdempotent, |mut rpc| {
            let request = request.clone();
            async move { rpc.put_record(request).await }
        })
        .await
    }

    /// Appends up to 500 records in one request. Individual records may fail while others
    /// succeed: check `failed_record_count` and each entry's `error_code`. Retried only when the
    /// request was never sent (see [`Client`]); see [`crate::PutRecordsBatcher`] for batching.
    pub async fn put_records(&self, request: PutRecordsRequest) -> Result<PutRecordsResponse, ClientError> {
        let response = self
            .call(Idempotence::NotIdempotent, |mut rpc| {
                let request = request.clone();
                async move { rpc.put_records(request).await }
            })
            .await?;
        if response.records.len() != request.records.len() {
            return Err(malformed(
                "PutRecords",
                &format!("{} results for {} records", response.records.len(), request.records.len()),
            ));
        }
        Ok(response)
    }

    /// Gets an iterator for reading a shard from a position.
    pub async fn get_shard_iterator(
        &self,
        request: GetShardIteratorRequest,
    ) -> Result<GetShardIteratorResponse, ClientError> {
        self.call(Idempotence::Idempotent, |mut rpc| {
            let request = request.clone();
            async move { rpc.get_shard_iterator(request).await }
        })
        .await
    }

    /// Reads records at `shard_iterator`, at most `limit` of them (service default if `None`).
    /// A missing `next_shard_iterator` means the shard is closed and fully read.
    pub async fn get_records(
        &self,
        shard_iterator: &str,
        limit: Option<u32>,
    ) -> Result<GetRecordsResponse, ClientError> {
        let request = GetRecordsRequest { shard_iterator: shard_iterator.to_owned(), limit };
        self.call(Idempotence::Idempotent, |mut rpc| {
            let request = request.clone();
            async move { rpc.get_records(request).await }
        })
        .await
    }

    /// Polls DescribeStreamSummary until the stream is ACTIVE, at most `attempts_max` times
    /// (at least once), [`ClientConfig::stream_active_poll_interval_ms`] apart.
    pub async fn wait_for_stream_active(
        &self,
        stream_name: &str,
        attempts_max: u32,
    ) -> Result<StreamSummary, ClientError> {
        let attempts_max = attempts_max.max(1);
        let mut status = StreamStatus::Unspecified;
        for attempt in 1..=attempts_max {
            let summary = self.describe_stream_summary(stream_name).await?;
            status = StreamStatus::try_from(summary.stream_status).unwrap_or_default();
            if status == StreamStatus::Active {
                return Ok(summary);
            }
            if attempt < attempts_max {
                let interval = self.config.stream_active_poll_interval_ms;
                tokio::time::sleep(Duration::from_millis(interval)).await;
            }
        }
        Err(ClientError::StreamNotActive {
            stream_name: stream_name.to_owned(),
            status: stream_status_name(status).to_owned(),
            attempts: attempts_max,
        })
    }

    /// Sends with `send` to the current endpoint, moving on to the next endpoint and retrying
    /// after transport errors that `idempotence` allows to retry.
    async fn call<Response, Send, SendFuture>(
        &self,
        idempotence: Idempotence,
        mut send: Send,
    ) -> Result<Response, ClientError>
    where
        Send: FnMut(RiffleClient<Channel>) -> SendFuture,
        SendFuture: Future<Output = Result<tonic::Response<Response>, Status>>,
    {
        let node_count = self.nodes.len();
        let mut retry = 0;
        loop {
            let index = self.current.load(Ordering::Relaxed) % node_count;
            let node = &self.nodes[index];
            let status = match send(node.rpc.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            let error = ClientError::from_status(&status, &node.endpoint);
            let retryable = match idempotence {
                Idempotence::Idempotent => error.is_transport(),
                Idempotence::NotIdempotent => error.is_before_request(),
            };
            if !retryable || retry >= self.config.retries_max {
                return Err(error);
            }
            retry += 1;
            // Another call may have moved on already; only move from the endpoint that failed.
            let _ =
                self.current.compare_exchange(index, (index + 1) % node_count, Ordering::Relaxed, Ordering::Relaxed);
            tracing::debug!(%error, retry, "retrying on the next endpoint");
            tokio::time::sleep(self.config.backoff(retry)).await;
        }
    }
}

/// `ACTIVE` for [`StreamStatus::Active`], and so on.
pub fn stream_status_name(status: StreamStatus) -> &'static str {
    let name = status.as_str_name();
    name.strip_prefix("STREAM_STATUS_").unwrap_or(name)
}

fn malformed(rpc: &'static str, reason: &str) -> ClientError {
    ClientError::MalformedResponse { rpc, reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ClientConfig::default();
        let waits: Vec<u64> = (1..=7).map(|retry| config.backoff(retry).as_millis() as u64).collect();
        assert_eq!(waits, vec![50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(config.backoff(u32::MAX).as_millis(), 1000);
    }

    #[test]
    fn status_names_drop_the_prefix() {
        assert_eq!(stream_status_name(StreamStatus::Active), "ACTIVE");
        assert_eq!(stream_status_name(StreamStatus::Creating), "CREATING");
    }

    #[tokio::test]
    async fn connect_rejects_bad_input() {
        let no_endpoints = Client::connect(Vec::new()).await;
        assert!(matches!(no_endpoints, Err(ClientError::InvalidEndpoint { .. })));

        let bad_uri = Client::connect(vec!["http://bad host:1".into()]).await;
        assert!(matches!(bad_uri, Err(ClientError::InvalidEndpoint { .. })));

        let config = ClientConfig { retries_max: RETRIES_MAX_LIMIT + 1, ..ClientConfig::default() };
        let too_many_retries = Client::connect_with_config(vec!["127.0.0.1:1".into()], config).await;
        assert!(matches!(too_many_retries, Err(ClientError::InvalidConfig(_))));
    }

    /// Port 1 on loopback refuses connections, so every attempt fails before sending and even a
    /// put is retried on every endpoint until `retries_max` runs out.
    #[tokio::test]
    async fn refused_connections_are_retried_then_reported() {
        let config =
            ClientConfig { retries_max: 2, backoff_initial_ms: 1, backoff_max_ms: 1, ..ClientConfig::default() };
        let client = Client::connect_with_config(vec!["127.0.0.1:1".into(), "http://127.0.0.1:1".into()], config)
            .await
            .expect("valid endpoints");

        let error = client
            .put_record(PutRecordRequest {
                stream_name: "s".into(),
                data: "d".into(),
                partition_key: "k".into(),
                ..PutRecordRequest::default()
            })
            .await
            .expect_err("nothing listens on port 1");

        assert!(error.is_transport(), "{error:?}");
        assert!(error.is_before_request(), "{error:?}");
        assert_eq!(error.error_type(), None);
        // Two retries moved from endpoint 0 to 1 and back to 0.
        assert_eq!(client.current.load(Ordering::Relaxed) % 2, 0);
    }
}
