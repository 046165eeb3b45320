//! Which partition an event goes to: the same key always to the same partition, events
//! without a key spread round-robin.

use std::sync::atomic::{AtomicU64, Ordering};

/// FNV-1a, 64 bit: stable across versions and platforms, so a key's partition never changes
/// for a stream of a given size.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Picks partitions for one stream.
#[derive(Debug, Default)]
pub(crate) struct Partitioner {
    next_unkeyed: AtomicU64,
}

impl Partitioner {
    /// The partition for a key, or the next one in turn for an unkeyed event.
    pub(crate) fn partition(&self, key: Option<&str>, partitions: u32) -> u32 {
        let n = u64::from(partitions.max(1));
        let h = match key {
            Some(key) => fnv1a(key.as_bytes()),
            None => self.next_unkeyed.fetch_add(1, Ordering::Relaxed),
        };
        (h % n) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_unkeyed_spread() {
        let p = Partitioner::default();
        let a = p.partition(Some("device-7"), 8);
        assert!((0..100).all(|_| p.partition(Some("device-7"), 8) == a));
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[p.partition(None, 4) as usize] += 1;
        }
        assert_eq!(seen, [100; 4]);
    }
}
