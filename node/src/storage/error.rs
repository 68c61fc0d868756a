//! The storage layer's one error type.

use std::io;
use std::path::PathBuf;

/// What can go wrong in raft-engine or the segment store.
///
/// `Corruption` is fatal for the replica: it must stop serving and voting with the damaged
/// data and repair from peers. The other variants are operating errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system call failed; `context` says which call on which path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Stored bytes fail their checksum or do not parse, somewhere other than a torn tail.
    #[error("corruption in {} at offset {offset}: {reason}", file.display())]
    Corruption { file: PathBuf, offset: u64, reason: String },
    /// raft-engine reported an error.
    #[error("raft-engine: {0}")]
    Engine(#[from] raft_engine::Error),
    /// A configuration value is out of its bounds.
    #[error("invalid storage config: {0}")]
    InvalidConfig(String),
    /// Input that the caller should never produce (e.g. a snapshot that does not parse).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store's writer has stopped (shut down, or failed earlier with the error it logged).
    #[error("storage closed")]
    Closed,
    /// The data a caller waited on was replaced by a snapshot import before it became durable.
    #[error("the shard's contents were replaced by a snapshot import")]
    Replaced,
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io { context: context.into(), source }
    }

    /// Whether the data waited on was replaced by an import (see [`StorageError::Replaced`]).
    pub fn is_replaced(&self) -> bool {
        matches!(self, StorageError::Replaced)
    }

    /// Whether this error means stored data is damaged (the replica must stop serving).
    pub fn is_corruption(&self) -> bool {
        matches!(self, StorageError::Corruption { .. })
    }
}

/// Attaches context to an I/O result.
pub(crate) trait IoResultExt<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StorageError>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::io(context(), source))
    }
}
