//! Per-shard throughput limits, as Kinesis documents them for a provisioned shard: writes of at
//! most 1 MiB/s (data plus partition keys) and 1,000 records/s, and at most 5 GetRecords calls/s.
//!
//! Enforced on the shard's leader, where every write and read of the shard passes, with token
//! buckets over the node's wall [`Clock`](crate::seam::Clock) (so the simulator stays
//! deterministic). A bucket holds at most one second's budget and refills continuously at its
//! rate. A throttled request takes nothing from any bucket. A single request larger than a whole
//! second's budget (a 5 MiB PutRecords to one shard) passes when the bucket is full and empties
//! it, so it is never refused forever. Off by default.

use serde::{Deserialize, Serialize};

/// The `[throttling]` section of the node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSettings {
    /// Whether the limits are enforced. Default false.
    pub enabled: bool,
    /// Bytes of data plus partition keys one shard accepts per second. Default 1048576.
    pub shard_write_bytes_per_s: u64,
    /// Records one shard accepts per second. Default 1000.
    pub shard_write_records_per_s: u64,
    /// GetRecords calls one shard serves per second. Default 5.
    pub shard_get_records_per_s: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            enabled: false,
            shard_write_bytes_per_s: 1 << 20,
            shard_write_records_per_s: 1_000,
            shard_get_records_per_s: 5,
        }
    }
}

/// Largest rate accepted for any limit (keeps the bucket arithmetic far from overflow).
pub const RATE_MAX: u64 = 1 << 40;

impl ThrottleSettings {
    /// Checks every rate; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("shard_write_bytes_per_s", self.shard_write_bytes_per_s),
            ("shard_write_records_per_s", self.shard_write_records_per_s),
            ("shard_get_records_per_s", self.shard_get_records_per_s),
        ] {
            if !(1..=RATE_MAX).contains(&value) {
                return Err(format!("throttling.{key}: {value} is outside 1..={RATE_MAX}"));
            }
        }
        Ok(())
    }
}

/// A token bucket holding at most one second's budget, refilled continuously.
///
/// Tokens are kept in thousandths so that a refill over whole milliseconds is exact.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: u64,
    /// Thousandths of a token.
    milli_tokens: u128,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate_per_s: u64, now_ms: i64) -> TokenBucket {
        let rate_per_s = rate_per_s.max(1);
        TokenBucket { rate_per_s, milli_tokens: u128::from(rate_per_s) * 1000, last_ms: now_ms }
    }

    fn capacity(&self) -> u128 {
        u128::from(self.rate_per_s) * 1000
    }

    /// Adds what accrued since the last refill. A clock that steps back adds nothing.
    fn refill(&mut self, now_ms: i64) {
        if now_ms > self.last_ms {
            let elapsed = u128::from((now_ms - self.last_ms) as u64);
            self.milli_tokens = (self.milli_tokens + elapsed * u128::from(self.rate_per_s)).min(self.capacity());
            self.last_ms = now_ms;
        }
    }

    /// The cost, in thousandths, of `amount` tokens: never more than a full bucket.
    fn cost(&self, amount: u64) -> u128 {
        (u128::from(amount) * 1000).min(self.capacity())
    }

    /// Whether `amount` tokens are available at `now_ms` (refilling, taking nothing).
    pub fn can_take(&mut self, now_ms: i64, amount: u64) -> bool {
        self.refill(now_ms);
        self.milli_tokens >= self.cost(amount)
    }

    /// Takes `amount` tokens if available at `now_ms`; otherwise takes nothing.
    pub fn try_take(&mut self, now_ms: i64, amount: u64) -> bool {
        if !self.can_take(now_ms, amount) {
            return false;
        }
        self.milli_tokens -= self.cost(amount);
        true
    }
}

/// The buckets of one shard.
#[derive(Debug)]
pub struct ShardThrottle {
    write_bytes: TokenBucket,
    write_records: TokenBucket,
    get_records: TokenBucket,
}

impl ShardThrottle {
    /// Full buckets at `now_ms`.
    pub fn new(settings: &ThrottleSettings, now_ms: i64) -> ShardThrottle {
        ShardThrottle {
            write_bytes: TokenBucket::new(settings.shard_write_bytes_per_s, now_ms),
            write_records: TokenBucket::new(settings.shard_write_records_per_s, now_ms),
            get_records: TokenBucket::new(settings.shard_get_records_per_s, now_ms),
        }
    }

    /// Admits a write of `records` records and `bytes` bytes, or refuses it taking nothing.
    pub fn admit_write(&mut self, now_ms: i64, records: u64, bytes: u64) -> bool {
        if !self.write_records.can_take(now_ms, records) || !self.write_bytes.can_take(now_ms, bytes) {
            return false;
        }
        self.write_records.try_take(now_ms, records) && self.write_bytes.try_take(now_ms, bytes)
    }

    /// Admits one GetRecords call, or refuses it.
    pub fn admit_get_records(&mut self, now_ms: i64) -> bool {
        self.get_records.try_take(now_ms, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_one_seconds_burst_then_refills_at_its_rate() {
        let mut bucket = TokenBucket::new(5, 1_000);
        for _ in 0..5 {
            assert!(bucket.try_take(1_000, 1));
        }
        assert!(!bucket.try_take(1_000, 1));
        assert!(!bucket.try_take(1_199, 1), "one token accrues every 200 ms");
        assert!(bucket.try_take(1_200, 1));
        assert!(!bucket.try_take(1_200, 1));
        // A long idle time refills to one second's budget, no more.
        assert!(bucket.try_take(60_000, 5));
        assert!(!bucket.try_take(60_000, 1));
    }

    #[test]
    fn a_refused_take_takes_nothing() {
        let mut bucket = TokenBucket::new(1_000, 0);
        assert!(bucket.try_take(0, 600));
        assert!(!bucket.try_take(0, 500));
        assert!(bucket.try_take(0, 400));
        assert!(!bucket.try_take(0, 1));
    }

    #[test]
    fn a_request_larger_than_the_budget_passes_only_from_a_full_bucket() {
        let mut bucket = TokenBucket::new(1 << 20, 0);
        assert!(bucket.try_take(0, 5 << 20));
        assert!(!bucket.try_take(500, 5 << 20));
        assert!(bucket.try_take(1_000, 5 << 20));
    }

    #[test]
    fn a_clock_stepping_back_adds_nothing() {
        let mut bucket = TokenBucket::new(10, 10_000);
        assert!(bucket.try_take(10_000, 10));
        assert!(!bucket.try_take(5_000, 1));
        assert!(!bucket.try_take(10_050, 1));
        assert!(bucket.try_take(10_100, 1));
    }

    #[test]
    fn a_write_needs_both_budgets_and_a_refused_one_takes_from_neither() {
        let settings = ThrottleSettings { enabled: true, ..ThrottleSettings::default() };
        let mut shard = ShardThrottle::new(&settings, 0);
        assert!(shard.admit_write(0, 999, 100));
        // Records would fit bytes but not the record budget: nothing is taken from bytes.
        assert!(!shard.admit_write(0, 2, 10));
        assert!(shard.admit_write(0, 1, (1 << 20) - 100));
        assert!(!shard.admit_write(0, 1, 1));
        assert!(shard.admit_write(1_000, 1_000, 1 << 20));
    }

    #[test]
    fn get_records_is_five_per_second() {
        let mut shard = ShardThrottle::new(&ThrottleSettings::default(), 0);
        assert_eq!((0..10).filter(|_| shard.admit_get_records(0)).count(), 5);
        assert!(shard.admit_get_records(200));
        assert!(!shard.admit_get_records(200));
    }

    #[test]
    fn settings_default_off_and_are_validated() {
        let settings = ThrottleSettings::default();
        assert!(!settings.enabled);
        settings.validate().expect("defaults are valid");
        let zero = ThrottleSettings { shard_get_records_per_s: 0, ..settings.clone() };
        assert!(zero.validate().expect_err("refused").starts_with("throttling.shard_get_records_per_s"));
        let parsed: ThrottleSettings = toml::from_str("enabled = true").expect("parses");
        assert_eq!(parsed, ThrottleSettings { enabled: true, ..settings });
        assert!(toml::from_str::<ThrottleSettings>("enable = true").is_err());
    }
}
