//! ON_DEMAND capacity: the metadata leader reshapes an on-demand stream from the write load its
//! shard leaders report (see `shard::load`). A shard whose offered load stays above the split
//! threshold for a whole split window is split at the middle of its hash range; two adjacent
//! shards whose combined load stays below the merge threshold for a whole merge window are
//! merged, never below the minimum shard count. One step at a time per stream: a step makes the
//! stream UPDATING, and the children start measuring afresh, which spaces steps apart.
//!
//! Pure: the decision is a function of the stream's open shards and the latest reports, so it
//! is tested here and runs unchanged in the simulator.

use serde::{Deserialize, Serialize};

use crate::control::scaling::ScalingStep;

/// The `[on_demand]` section of the node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnDemandSettings {
    /// Streams in ON_DEMAND mode the account may have (DescribeLimits'
    /// OnDemandStreamCountLimit). Default 50.
    pub streams_max: u32,
    /// Shards an on-demand stream starts with and is never merged below. Default 4.
    pub shards_min: u32,
    /// Open shards an on-demand stream grows to at most (also bounded by `stream_shards_max`
    /// and the account's shard limit). Default 200.
    pub shards_max: u32,
    /// A shard is split when its offered writes average at least this many bytes per second
    /// over `split_after_ms`. Default 1048576 (a provisioned shard's write limit).
    pub split_write_bytes_per_s: u64,
    /// … or at least this many records per second. Default 1000.
    pub split_write_records_per_s: u64,
    /// The split window. Default 30000.
    pub split_after_ms: u64,
    /// Two adjacent shards are merged when together they average fewer bytes per second than
    /// this over `merge_after_ms`. Default 262144.
    pub merge_write_bytes_per_s: u64,
    /// … and fewer records per second than this. Default 250.
    pub merge_write_records_per_s: u64,
    /// The merge window. Default 600000.
    pub merge_after_ms: u64,
    /// How often shard leaders report their load to the metadata leader. Default 1000.
    pub report_interval_ms: u64,
}

impl Default for OnDemandSettings {
    fn default() -> Self {
        OnDemandSettings {
            streams_max: 50,
            shards_min: 4,
            shards_max: 200,
            split_write_bytes_per_s: 1 << 20,
            split_write_records_per_s: 1_000,
            split_after_ms: 30_000,
            merge_write_bytes_per_s: 256 << 10,
            merge_write_records_per_s: 250,
            merge_after_ms: 600_000,
            report_interval_ms: 1_000,
        }
    }
}

/// The longest window a setting may name (the meter keeps that much history per led shard).
pub const WINDOW_MS_MAX: u64 = 3_600_000;

impl OnDemandSettings {
    /// Checks every value; the message names the key. Merging must stay well clear of
    /// splitting, or a merged shard would split again at once.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.streams_max) {
            return Err(format!("on_demand.streams_max: {} is outside 1..=1000000", self.streams_max));
        }
        if !(1..=10_000).contains(&self.shards_min) {
            return Err(format!("on_demand.shards_min: {} is outside 1..=10000", self.shards_min));
        }
        if self.shards_max < self.shards_min || self.shards_max > 10_000 {
            return Err(format!("on_demand.shards_max: {} is outside on_demand.shards_min..=10000", self.shards_max));
        }
        for (key, value) in [
            ("split_write_bytes_per_s", self.split_write_bytes_per_s),
            ("split_write_records_per_s", self.split_write_records_per_s),
            ("merge_write_bytes_per_s", self.merge_write_bytes_per_s),
            ("merge_write_records_per_s", self.merge_write_records_per_s),
        ] {
            if !(1..=1 << 40).contains(&value) {
                return Err(format!("on_demand.{key}: {value} is outside 1..=2^40"));
            }
        }
        if self.merge_write_bytes_per_s.saturating_mul(2) > self.split_write_bytes_per_s {
            return Err("on_demand.merge_write_bytes_per_s: must be at most half of split_write_bytes_per_s".into());
        }
        if self.merge_write_records_per_s.saturating_mul(2) > self.split_write_records_per_s {
            return Err("on_demand.merge_write_records_per_s: must be at most half of split_write_records_per_s".into());
        }
        for (key, value) in [("split_after_ms", self.split_after_ms), ("merge_after_ms", self.merge_after_ms)] {
            if !(1_000..=WINDOW_MS_MAX).contains(&value) {
                return Err(format!("on_demand.{key}: {value} is outside 1000..={WINDOW_MS_MAX}"));
            }
        }
        if !(10..=60_000).contains(&self.report_interval_ms) {
            return Err(format!("on_demand.report_interval_ms: {} is outside 10..=60000", self.report_interval_ms));
        }
        Ok(())
    }

    /// History a shard leader keeps: the longest window.
    pub fn horizon_ms(&self) -> u64 {
        self.split_after_ms.max(self.merge_after_ms)
    }
}

/// An open shard of an on-demand stream with its latest load report, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardView {
    pub index: u32,
    pub start: u128,
    pub end: u128,
    pub load: Option<Observed>,
}

/// A shard leader's report, as the decision reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub measured_ms: u64,
    pub split_bytes_per_s: u64,
    pub split_records_per_s: u64,
    pub merge_bytes_per_s: u64,
    pub merge_records_per_s: u64,
}

/// The next step for an on-demand stream whose open shards are `open` (any order), or `None`.
/// `room` is how many more open shards the stream and the account allow.
pub fn next_step(open: &[ShardView], settings: &OnDemandSettings, room: u32) -> Option<ScalingStep> {
    let mut open = open.to_vec();
    open.sort_by_key(|shard| shard.start);
    let count = open.len() as u32;
    // Splits first: a hot shard is refusing or about to refuse writes.
    if count < settings.shards_max && room > 0 {
        let heat = |load: &Observed| {
            (u128::from(load.split_bytes_per_s) * 1_000_000 / u128::from(settings.split_write_bytes_per_s))
                .max(u128::from(load.split_records_per_s) * 1_000_000 / u128::from(settings.split_write_records_per_s))
        };
        let hottest = open
            .iter()
            .filter_map(|shard| shard.load.map(|load| (shard, load)))
            .filter(|(shard, load)| {
                load.measured_ms >= settings.split_after_ms
                    && (load.split_bytes_per_s >= settings.split_write_bytes_per_s
                        || load.split_records_per_s >= settings.split_write_records_per_s)
                    && shard.end - shard.start >= 1
            })
            .max_by_key(|(shard, load)| (heat(load), std::cmp::Reverse(shard.start)));
        if let Some((shard, _)) = hottest {
            let middle = shard.start + (shard.end - shard.start) / 2 + 1;
            return Some(ScalingStep {
                closing: vec![shard.index],
                children: vec![
                    ((shard.start, middle - 1), vec![shard.index]),
                    ((middle, shard.end), vec![shard.index]),
                ],
            });
        }
    }
    if count <= settings.shards_min {
        return None;
    }
    let coldest = open
        .windows(2)
        .filter(|pair| pair[0].end.checked_add(1) == Some(pair[1].start))
        .filter_map(|pair| {
            let (low, high) = (pair[0].load?, pair[1].load?);
            let whole = |load: &Observed| load.measured_ms >= settings.merge_after_ms;
            let bytes = low.merge_bytes_per_s.saturating_add(high.merge_bytes_per_s);
            let records = low.merge_records_per_s.saturating_add(high.merge_records_per_s);
            (whole(&low)
                && whole(&high)
                && bytes < settings.merge_write_bytes_per_s
                && records < settings.merge_write_records_per_s)
                .then_some((pair[0], pair[1], bytes))
        })
        .min_by_key(|(low, _, bytes)| (*bytes, low.start));
    coldest.map(|(low, high, _)| ScalingStep {
        closing: vec![low.index, high.index],
        children: vec![((low.start, high.end), vec![low.index, high.index])],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::even_ranges;

    fn settings() -> OnDemandSettings {
        OnDemandSettings {
            split_write_bytes_per_s: 1_000,
            split_write_records_per_s: 100,
            split_after_ms: 10_000,
            merge_write_bytes_per_s: 200,
            merge_write_records_per_s: 20,
            merge_after_ms: 60_000,
            ..OnDemandSettings::default()
        }
    }

    fn load(measured_ms: u64, bytes: u64, records: u64) -> Option<Observed> {
        Some(Observed {
            measured_ms,
            split_bytes_per_s: bytes,
            split_records_per_s: records,
            merge_bytes_per_s: bytes,
            merge_records_per_s: records,
        })
    }

    fn shards(count: u32, loads: &[Option<Observed>]) -> Vec<ShardView> {
        even_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(index, (start, end))| ShardView {
                index: index as u32,
                start,
                end,
                load: loads.get(index).copied().flatten(),
            })
            .collect()
    }

    #[test]
    fn the_hottest_shard_over_a_whole_window_splits_at_its_middle() {
        let open =
            shards(4, &[load(60_000, 10, 1), load(60_000, 5_000, 5), load(60_000, 10, 500), load(60_000, 10, 1)]);
        let step = next_step(&open, &settings(), 10).expect("a split");
        assert_eq!(step.closing, vec![1]);
        let (start, end) = (open[1].start, open[1].end);
        let middle = start + (end - start) / 2 + 1;
        assert_eq!(step.children, vec![((start, middle - 1), vec![1]), ((middle, end), vec![1])]);
        // Records alone make a shard hot too.
        let open = shards(4, &[None, load(60_000, 0, 100), None, None]);
        assert_eq!(next_step(&open, &settings(), 10).expect("a split").closing, vec![1]);
    }

    #[test]
    fn no_split_before_a_whole_window_without_room_or_at_the_stream_maximum() {
        let open = shards(4, &[load(9_999, 5_000, 0), None, None, None]);
        assert_eq!(next_step(&open, &settings(), 10), None);
        let open = shards(4, &[load(10_000, 5_000, 0), None, None, None]);
        assert_eq!(next_step(&open, &settings(), 0), None);
        let capped = OnDemandSettings { shards_max: 4, ..settings() };
        assert_eq!(next_step(&open, &capped, 10), None);
        assert!(next_step(&open, &settings(), 1).is_some());
    }

    #[test]
    fn the_coldest_adjacent_pair_merges_above_the_minimum_only() {
        let cold = |bytes| load(60_000, bytes, 1);
        let open = shards(6, &[cold(150), cold(40), cold(20), cold(30), cold(150), cold(150)]);
        let step = next_step(&open, &settings(), 10).expect("a merge");
        // Pairs (1,2) = 60 and (2,3) = 50 bytes/s qualify; (2,3) is colder.
        assert_eq!(step.closing, vec![2, 3]);
        assert_eq!(step.children, vec![((open[2].start, open[3].end), vec![2, 3])]);
        let open = shards(4, &[cold(0), cold(0), cold(0), cold(0)]);
        assert_eq!(next_step(&open, &settings(), 10), None);
        // A pair needs both reports over a whole merge window.
        let open = shards(6, &[cold(190), load(59_999, 0, 0), cold(20), cold(190), cold(190), cold(190)]);
        assert_eq!(next_step(&open, &settings(), 10), None);
    }

    #[test]
    fn the_defaults_are_valid_and_merging_stays_clear_of_splitting() {
        assert_eq!(OnDemandSettings::default().validate(), Ok(()));
        let close = OnDemandSettings { merge_write_bytes_per_s: 600_000, ..OnDemandSettings::default() };
        assert!(close.validate().unwrap_err().contains("merge_write_bytes_per_s"));
    }
}
