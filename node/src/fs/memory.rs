//! In-memory file system with crash semantics.
