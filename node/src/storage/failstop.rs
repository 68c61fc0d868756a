//! Fail-stop on storage errors.
//!
//! A write, fsync or Raft-log read that fails leaves a node unsure of what its disk holds. After
//! a failed fsync, Linux may drop the dirty pages it could not write and report success to the
//! next fsync of the same file, so a node that retried would acknowledge data its disk never
//! got. Riffle therefore stops a node at its first storage error, as PostgreSQL and
//! TigerBeetle do: the process exits, and when it is started again it recovers from what was
//! synced, while its peers hold every acknowledged write (each was fsynced on a quorum).
//!
//! [`FailStop`] is the node's latch: the raft-engine file system
//! ([`super::engine_fs::EngineFileSystem`]) and the segment writer trip it with the error, the
//! log writer and the segment store refuse to acknowledge anything once it is tripped, and the
//! node shuts its groups down and tells its process to exit ([`crate::node::Node::storage_failure`]).
//! Reads of stored records that fail (a GetRecords) are only reported to the caller: they
//! change nothing.

use std::sync::Arc;

use tokio::sync::watch;

/// A node's storage-failure latch: once tripped it stays tripped, with the first error.
#[derive(Debug, Clone)]
pub struct FailStop(Arc<watch::Sender<Option<String>>>);

impl Default for FailStop {
    fn default() -> Self {
        FailStop(Arc::new(watch::channel(None).0))
    }
}

impl FailStop {
    /// Records a storage error; the first one is kept.
    pub fn trip(&self, reason: impl Into<String>) {
        let reason = reason.into();
        let tripped = self.0.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(reason.clone());
            true
        });
        if tripped {
            tracing::error!(%reason, "storage failed: the node stops (a restart recovers from what was synced)");
        }
    }

    /// The first storage error, if any.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    pub fn is_tripped(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Follows the latch; `wait_for(Option::is_some)` on it ends once it trips.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_error() {
        let latch = FailStop::default();
        assert!(!latch.is_tripped());
        let follower = latch.subscribe();
        latch.trip("fsync of a: EIO");
        latch.trip("write of b: EIO");
        assert_eq!(latch.reason().as_deref(), Some("fsync of a: EIO"));
        assert_eq!(follower.borrow().as_deref(), Some("fsync of a: EIO"));
        assert!(latch.clone().is_tripped());
    }
}
