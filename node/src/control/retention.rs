//! Retention: records older than their stream's retention period expire.
//!
//! Every check interval, each node looks at the shards it leads. When a shard's oldest record
//! arrived before `now - retention`, the leader proposes a `Trim` in the shard's own log, carrying
//! that time; every replica applies it the same way (the first record to keep is found from the
//! replicated arrival timestamps), persists the trim point and removes the segment files that
//! hold only expired records. The decision is the leader's, in the log: no replica ever trims by
//! its own clock. A closed shard whose retention has run out since it closed and which holds no
//! record any more is reported expired to the metadata group, which takes it out of every
//! listing and removes its group.

use std::sync::Arc;
use std::time::Duration;

use riffle_proto::peer::{self as wire, group_command, GroupCommand, MetaCommand};
use serde::{Deserialize, Serialize};

use crate::control::metadata::{ShardState, StreamStatus};
use crate::node::Node;

/// The `[retention]` section of the node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How often a node looks for expired records in the shards it leads. Default 60000.
    pub check_interval_ms: u64,
    /// The length of one retention hour. Default 3600000; shorter only to test expiry
    /// (`riffle-node dev --set retention.hour_ms=100`).
    pub hour_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings { check_interval_ms: 60_000, hour_ms: 3_600_000 }
    }
}

impl RetentionSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(10..=3_600_000).contains(&self.check_interval_ms) {
            return Err(format!("retention.check_interval_ms: {} is outside 10..=3600000", self.check_interval_ms));
        }
        if !(1..=3_600_000).contains(&self.hour_ms) {
            return Err(format!("retention.hour_ms: {} is outside 1..=3600000", self.hour_ms));
        }
        Ok(())
    }
}

impl Node {
    /// Runs retention passes every check interval until the node stops.
    pub(crate) async fn enforce_retention(self: Arc<Self>) {
        let interval = Duration::from_millis(self.options.limits.retention.check_interval_ms);
        while self.rest(interval).await {
            self.retention_pass().await;
        }
    }

    /// One pass over the shards this node leads.
    async fn retention_pass(&self) {
        let state = self.meta_state();
        let now = self.seams.clock.now_ms();
        let hour_ms = self.options.limits.retention.hour_ms as i64;
        let timeout = Duration::from_millis(self.options.limits.append_timeout_ms);
        for stream in state.streams.values().filter(|stream| stream.status != StreamStatus::Deleting) {
            let retention_ms = i64::from(stream.retention_period_hours) * hour_ms;
            let horizon = now.saturating_sub(retention_ms);
            for shard in stream.shards.iter().filter(|shard| !shard.expired) {
                let Some(group) = self.group(shard.group_id) else { continue };
                let Some(shard_group) = &group.shard else { continue };
                if group.raft.metrics().borrow().current_leader != Some(self.id()) {
                    continue;
                }
                let oldest = match shard_group.segments.oldest_timestamp_ms() {
                    Ok(oldest) => oldest,
                    Err(error) => {
                        tracing::warn!(group = group.id, %error, "cannot find the oldest record; no trim this pass");
                        continue;
                    }
                };
                if oldest.is_some_and(|oldest| oldest < horizon) {
                    let trim =
                        GroupCommand { command: Some(group_command::Command::Trim(wire::Trim { before_ms: horizon })) };
                    match tokio::time::timeout(timeout, group.raft.client_write(trim)).await {
                        Ok(Ok(_)) => {
                            tracing::debug!(group = group.id, before_ms = horizon, "expired records trimmed")
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(group = group.id, %error, "a trim was not applied; next pass")
                        }
                        Err(_) => tracing::debug!(group = group.id, "a trim timed out; next pass"),
                    }
                }
                let closed_long_enough = matches!(shard.state, ShardState::Closed { .. })
                    && shard.closed_ms.is_some_and(|closed| closed.saturating_add(retention_ms) <= now);
                if closed_long_enough && matches!(shard_group.segments.oldest_timestamp_ms(), Ok(None)) {
                    let expired = wire::ShardExpired { stream: stream.name.clone(), group_id: shard.group_id };
                    let command = MetaCommand { command: Some(wire::meta_command::Command::ShardExpired(expired)) };
                    if let Err(error) = self.propose_meta(command).await {
                        tracing::debug!(group = group.id, %error, "an expired shard was not reported; next pass");
                    }
                }
            }
        }
    }
}
