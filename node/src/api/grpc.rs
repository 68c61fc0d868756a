//! The native gRPC API (tonic). Errors carry the Kinesis error type in the status message
//! prefix and in the `riffle-error-type` metadata key.

use riffle_proto::v1::riffle_server::{Riffle, RiffleServer};
use riffle_proto::v1::*;
use tonic::{Request, Response, Status};

use super::ApiError;
use crate::service::StreamService;

/// The gRPC service over [`StreamService`].
pub struct GrpcApi {
    service: StreamService,
}

impl GrpcApi {
    pub fn server(service: StreamService) -> RiffleServer<GrpcApi> {
        RiffleServer::new(GrpcApi { service }).max_decoding_message_size(8 << 20).max_encoding_message_size(16 << 20)
    }
}

/// Maps an API error to a gRPC status.
pub fn status(error: ApiError) -> Status {
    let code = match &error {
        ApiError::ResourceNotFound(_) => tonic::Code::NotFound,
        ApiError::ResourceInUse(_) => tonic::Code::AlreadyExists,
        ApiError::InvalidArgument(_) | ApiError::Validation(_) => tonic::Code::InvalidArgument,
        ApiError::ExpiredIterator(_) => tonic::Code::FailedPrecondition,
        ApiError::LimitExceeded(_) | ApiError::ProvisionedThroughputExceeded(_) => tonic::Code::ResourceExhausted,
        ApiError::Internal(_) => tonic::Code::Unavailable,
    };
    let mut status = Status::new(code, format!("{}: {}", error.error_type(), error.message()));
    if let Ok(value) = error.error_type().parse() {
        status.metadata_mut().insert("riffle-error-type", value);
    }
    status
}

type Reply<T> = Result<Response<T>, Status>;

fn cluster_node(node: &crate::control::membership::NodeMeta) -> ClusterNode {
    ClusterNode {
        node_id: node.id,
        zone: node.zone.clone(),
        peer_address: node.peer_address.clone(),
        grpc_address: node.grpc_address.clone(),
        state: node.state.as_str().to_string(),
    }
}

#[tonic::async_trait]
impl Riffle for GrpcApi {
    async fn create_stream(&self, request: Request<CreateStreamRequest>) -> Reply<CreateStreamResponse> {
        self.service.create_stream(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn delete_stream(&self, request: Request<DeleteStreamRequest>) -> Reply<DeleteStreamResponse> {
        self.service.delete_stream(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn describe_stream(&self, request: Request<DescribeStreamRequest>) -> Reply<DescribeStreamResponse> {
        self.service.describe_stream(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn describe_stream_summary(
        &self,
        request: Request<DescribeStreamSummaryRequest>,
    ) -> Reply<DescribeStreamSummaryResponse> {
        self.service.describe_stream_summary(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn list_streams(&self, request: Request<ListStreamsRequest>) -> Reply<ListStreamsResponse> {
        self.service.list_streams(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn cluster_status(&self, _request: Request<ClusterStatusRequest>) -> Reply<ClusterStatusResponse> {
        Ok(Response::new(self.service.node().cluster_status().await))
    }

    async fn join_cluster(&self, request: Request<JoinClusterRequest>) -> Reply<JoinClusterResponse> {
        let node = request
            .into_inner()
            .node
            .ok_or_else(|| status(ApiError::InvalidArgument("JoinCluster needs a node".into())))?;
        let info = riffle_proto::peer::NodeInfo {
            id: node.node_id,
            zone: node.zone,
            peer_address: node.peer_address,
            grpc_address: node.grpc_address,
        };
        let (nodes, rejoined) = self.service.node().admit_node(info).await.map_err(status)?;
        Ok(Response::new(JoinClusterResponse { nodes: nodes.iter().map(cluster_node).collect(), rejoined }))
    }

    async fn list_nodes(&self, _request: Request<ListNodesRequest>) -> Reply<ListNodesResponse> {
        let nodes = self.service.node().list_nodes().await.map_err(status)?;
        Ok(Response::new(ListNodesResponse { nodes: nodes.iter().map(cluster_node).collect() }))
    }

    async fn decommission_node(&self, request: Request<DecommissionNodeRequest>) -> Reply<DecommissionNodeResponse> {
        self.service.node().decommission(request.into_inner().node_id).await.map_err(status)?;
        Ok(Response::new(DecommissionNodeResponse {}))
    }

    async fn list_shards(&self, request: Request<ListShardsRequest>) -> Reply<ListShardsResponse> {
        self.service.list_shards(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn put_record(&self, request: Request<PutRecordRequest>) -> Reply<PutRecordResponse> {
        self.service.put_record(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn put_records(&self, request: Request<PutRecordsRequest>) -> Reply<PutRecordsResponse> {
        self.service.put_records(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn get_shard_iterator(&self, request: Request<GetShardIteratorRequest>) -> Reply<GetShardIteratorResponse> {
        self.service.get_shard_iterator(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn get_records(&self, request: Request<GetRecordsRequest>) -> Reply<GetRecordsResponse> {
        self.service.get_records(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn read_replica(&self, request: Request<ReadReplicaRequest>) -> Reply<ReadReplicaResponse> {
        self.service.read_replica(request.into_inner()).await.map(Response::new).map_err(status)
    }
}
