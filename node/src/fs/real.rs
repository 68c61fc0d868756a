//! The real file system: std files, io_uring for batched writes with fdatasync.
