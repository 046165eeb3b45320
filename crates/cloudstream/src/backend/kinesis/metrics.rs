//! [`KinesisMetrics`]: what the backend had to retry or work around, counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the backend had to retry: throttling is visible here, not only in logs.
#[derive(Debug, Default)]
pub struct KinesisMetrics {
    /// Calls refused with `ProvisionedThroughputExceeded` or another throttling error.
    pub throttled_calls: AtomicU64,
    /// Records a `PutRecords` call did not take (and that were sent again).
    pub failed_records: AtomicU64,
    /// Records sent again to keep a key's order after an earlier record of it failed.
    pub reordered_resends: AtomicU64,
    /// Calls retried after a network failure or a 5xx.
    pub transient_errors: AtomicU64,
    /// Shard iterators replaced because they had expired.
    pub iterator_refreshes: AtomicU64,
}

impl KinesisMetrics {
    /// The counters by name, as [`Backend::metrics`] reports them.
    pub(super) fn snapshot(&self) -> BTreeMap<String, u64> {
        [
            ("kinesis_throttled_calls", &self.throttled_calls),
            ("kinesis_failed_records", &self.failed_records),
            ("kinesis_reordered_resends", &self.reordered_resends),
            ("kinesis_transient_errors", &self.transient_errors),
            ("kinesis_iterator_refreshes", &self.iterator_refreshes),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.load(Ordering::Relaxed)))
        .collect()
    }
}
