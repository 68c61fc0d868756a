//! Client APIs on every node: the native gRPC API and (later) the Kinesis HTTP API, both over
//! [`crate::service::StreamService`].

pub mod error;
pub mod grpc;

pub use error::ApiError;
