//! The Kinesis Data Streams HTTP API: the JSON 1.1 protocol (`X-Amz-Target:
//! Kinesis_20131202.<Operation>`) over HTTP/1.1, so that boto3, the AWS CLI and other AWS
//! SDKs work against a Riffle node unchanged, and its CBOR variant (`cbor`), the AWS Java SDKs'
//! default; over HTTPS when configured (`tls`).
//!
//! Boundaries: this module only translates. Requests become [`crate::service::StreamService`]
//! calls on the same proto types the gRPC API uses; every rule about streams, records and
//! iterators lives in the service. What is AWS's and lives here: member names and JSON types,
//! the order of protocol checks, error bodies, ARNs.
//!
//! Invariants: every response carries `x-amzn-RequestId`; no response body holds a JSON
//! `null`; a request body above [`REQUEST_BYTES_MAX`] is never buffered whole.
//!
//! Requests are authenticated with AWS Signature Version 4 against the configured access keys
//! (`auth`), before any operation runs.
//!
//! See `docs/kinesis-api.md` for what is supported, and how it differs from AWS.

mod arn;
mod auth;
mod cbor;
mod error;
mod operations;
mod request;
pub(crate) mod response;
mod server;
mod tls;

pub use auth::{
    authorization_header, signature, validate_credentials, KinesisCredential, Scope, SignedRequest, CLOCK_SKEW_MAX_MS,
};
pub use server::{
    serve, KinesisApi, KinesisSettings, BODY_READ_TIMEOUT_MS, CONNECTIONS_MAX, HEADER_READ_TIMEOUT_MS,
    REQUEST_BYTES_MAX, SHUTDOWN_DRAIN_TIMEOUT_MS,
};
pub use tls::server_config as tls_server_config;
