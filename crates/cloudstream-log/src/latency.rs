//! A latency histogram with fixed buckets, updated without locks: how long fdatasync takes,
//! shared by every partition of a log so that a monitoring system sees the disk's figures
//! (`/metrics` of the server renders it as a Prometheus histogram).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 1 s.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Counts of observed durations by bucket.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or under each bound (not cumulative); the last slot is the overflow.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    count: AtomicU64,
    total_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `(bound, observations at or under it)`, cumulative, for each of [`LATENCY_BOUNDS_US`].
    pub cumulative: Vec<(Duration, u64)>,
    /// Every observation.
    pub count: u64,
    /// Their sum.
    pub total: Duration,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let cumulative = LATENCY_BOUNDS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                running += n.load(Ordering::Relaxed);
                (Duration::from_micros(bound), running)
            })
            .collect();
        LatencySnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = LatencyHistogram::default();
        for us in [10, 50, 51, 3_000, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.cumulative[0], (Duration::from_micros(50), 2));
        assert_eq!(s.cumulative[1], (Duration::from_micros(100), 3));
        assert_eq!(s.cumulative[6].1, 4); // 5 ms
        assert_eq!(s.cumulative.last().map(|c| c.1), Some(4)); // 2 s overflows
        assert_eq!(s.total, Duration::from_micros(2_003_111));
    }
}
