//! Client APIs on every node: the native gRPC API and the Kinesis HTTP API, both over
//! [`crate::service::StreamService`].

pub mod error;
pub mod grpc;
pub mod kinesis;

pub use error::ApiError;
