//! Riffle's protobuf definitions: the public gRPC API (`riffle.v1`) and the node-to-node
//! messages (`riffle.peer`: Raft RPCs for many groups and forwarded client requests).
//!
//! Generated with prost/tonic at build time by `protox` (no system `protoc` needed).

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("riffle.v1");
}

pub mod peer {
    tonic::include_proto!("riffle.peer");
}
