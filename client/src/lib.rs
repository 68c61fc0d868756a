//! Rust client for Riffle's native gRPC API, and the `riffle` command-line tool built on it.
//!
//! What it is: [`Client`], one method per RPC of `riffle.v1.Riffle` returning the generated
//! protobuf types, talking to one or more nodes with bounded failover on transport errors;
//! [`ClientError`], which carries the Kinesis error type (`ResourceNotFoundException`, …) the
//! node sent; and [`PutRecordsBatcher`], which groups records within PutRecords' limits.
//!
//! What it is not (yet): a producer with background batching, aggregation and automatic
//! retries of failed records, a KCL-style consumer with leases and checkpoints, or an enhanced
//! fan-out subscriber. It speaks only the gRPC API, not the Kinesis HTTP API.
//!
//! Invariants:
//! - Every retry loop is bounded (`ClientConfig::retries_max`, [`client::PAGES_MAX`],
//!   `attempts_max` of [`Client::wait_for_stream_active`]).
//! - A put is retried automatically only when its connection could not be made, so it was never
//!   sent. Puts that callers retry after other failures may be appended twice.

pub mod batch;
pub mod client;
mod error;

pub use batch::{PutRecordsBatcher, PUT_RECORDS_BYTES_MAX, PUT_RECORDS_RECORDS_MAX};
pub use client::{stream_status_name, Client, ClientConfig};
pub use error::{ClientError, ERROR_TYPE_METADATA_KEY};
pub use riffle_proto::v1 as proto;
