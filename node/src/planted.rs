//! Planted bugs: deliberate defects that the simulator's checks must catch, behind a test-only
//! switch (a check that has never failed proves nothing).
//!
//! Compiled only with the `planted-bugs` feature (the simulator enables it); without it
//! [`active`] is a constant `false` and every planted branch compiles away. Even with the
//! feature, a bug is active only on a thread that planted it with [`plant`] — the simulator
//! runs each seed on one thread, so seeds with and without a bug can run side by side.

/// A deliberate defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Nothing is fsynced: the raft log (entries, votes) and the shard segment files report
    /// writes durable as soon as they are written.
    AckBeforeFsync,
    /// A GetRecords that continues from a sequence number drops the second record it found.
    SkipRecordOnRead,
    /// Reads are served by whichever replica believes it leads, without confirming the
    /// leadership with a quorum or waiting for the commit index.
    StaleRead,
    /// A shard applies appends committed after its seal (a parent takes writes after a reshard
    /// closed it).
    WriteAfterSeal,
    /// A record's arrival timestamp is the leader's clock as it is, not raised to the shard's
    /// newest timestamp: a leader whose clock is behind makes timestamps go back.
    TimestampRegress,
    /// A GetRecords on a closed shard that returns records says the shard ended there, even
    /// when records remain before its seal (a consumer moves on to the children too early).
    EndShardEarly,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::AckBeforeFsync,
        Bug::SkipRecordOnRead,
        Bug::StaleRead,
        Bug::WriteAfterSeal,
        Bug::TimestampRegress,
        Bug::EndShardEarly,
    ];

    /// The name `riffle-sim --plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::SkipRecordOnRead => "skip-record-on-read",
            Bug::StaleRead => "stale-read",
            Bug::WriteAfterSeal => "write-after-seal",
            Bug::TimestampRegress => "timestamp-regress",
            Bug::EndShardEarly => "end-shard-early",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) on the calling thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|planted| planted.set(bug));
}

/// Whether `bug` is planted on the calling thread.
#[cfg(feature = "planted-bugs")]
pub fn active(bug: Bug) -> bool {
    PLANTED.with(|planted| planted.get() == Some(bug))
}

/// Whether `bug` is planted: never, without the `planted-bugs` feature.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub fn active(_bug: Bug) -> bool {
    false
}
