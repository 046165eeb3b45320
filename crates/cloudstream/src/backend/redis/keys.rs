//! Where a stream lives in Redis (key names), and Redis stream ids as [`Sequence`]s.
//!
//! Every key of stream `S` carries the hash tag `{S}` (names cannot hold braces), so a
//! stream's keys share one slot.

use crate::{Error, Result, Sequence};

/// The set of every stream's name.
pub(super) const STREAMS: &str = "cloudstream:streams";

/// The hash of a stream's settings (`horizon_ms`, `partitions`, `created_ms`).
pub(super) fn meta(stream: &str) -> String {
    format!("cloudstream:{{{stream}}}")
}

/// The Redis stream of partition `p`.
pub(super) fn partition(stream: &str, p: u32) -> String {
    format!("cloudstream:{{{stream}}}:{p}")
}

/// Every partition's key, in order.
pub(super) fn partitions(stream: &str, count: u32) -> Vec<String> {
    (0..count).map(|p| partition(stream, p)).collect()
}

/// The hash of consumer group `group`'s leases: lease name → `member|expiry ms`.
pub(super) fn leases(stream: &str, group: &str) -> String {
    format!("cloudstream:{{{stream}}}:leases:{group}")
}

/// The set of the groups that keep leases (so that deleting the stream finds them).
pub(super) fn lease_groups(stream: &str) -> String {
    format!("cloudstream:{{{stream}}}:lease-groups")
}

/// A Redis stream id `MS-SEQ`, as a number: milliseconds in the high 64 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId(pub(super) u128);

impl EntryId {
    /// The smallest id (`0-0`).
    pub(super) const ZERO: EntryId = EntryId(0);

    /// The first id of millisecond `ms`.
    pub(super) fn at_millis(ms: u64) -> EntryId {
        EntryId(u128::from(ms) << 64)
    }

    /// Parses `MS-SEQ` (or `MS`, sequence 0).
    pub(super) fn parse(text: &str) -> Result<EntryId> {
        let bad = || Error::Corrupt(format!("{text:?} is not a Redis stream id").into());
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let ms: u64 = ms.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        Ok(EntryId((u128::from(ms) << 64) | u128::from(seq)))
    }

    /// The id a sequence stands for; an error for one no Redis id can be.
    pub(super) fn of(sequence: Sequence) -> Result<EntryId> {
        sequence.as_u128().map(EntryId).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sequence {sequence} is beyond what a Redis stream id can be"
            ))
        })
    }

    /// The sequence of this id.
    pub(super) fn sequence(self) -> Sequence {
        Sequence::from_u128(self.0)
    }

    /// Milliseconds since the Unix epoch (the id's first part).
    pub(super) fn millis(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The id before this one (`ZERO` stays).
    pub(super) fn previous(self) -> EntryId {
        EntryId(self.0.saturating_sub(1))
    }

    /// The id after this one.
    pub(super) fn next(self) -> EntryId {
        EntryId(self.0.saturating_add(1))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0 >> 64, self.0 as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_as_redis_orders_them() {
        for text in [
            "0-0",
            "1-0",
            "1700000000000-7",
            "18446744073709551615-18446744073709551615",
        ] {
            let id = EntryId::parse(text).expect("id");
            assert_eq!(id.to_string(), text);
            assert_eq!(EntryId::of(id.sequence()).expect("back"), id);
        }
        let a = EntryId::parse("5-18446744073709551615").expect("a");
        let b = EntryId::parse("6-0").expect("b");
        assert!(a < b && a.next() == b && b.previous() == a);
        assert_eq!(EntryId::parse("42").expect("ms"), EntryId::at_millis(42));
        assert_eq!(EntryId::at_millis(42).millis(), 42);
        assert!(EntryId::parse("x-1").is_err() && EntryId::parse("1-").is_err());
        assert_eq!(EntryId::ZERO.previous(), EntryId::ZERO);
    }

    #[test]
    fn keys_share_the_streams_slot() {
        assert_eq!(meta("s"), "cloudstream:{s}");
        assert_eq!(
            partitions("s", 2),
            ["cloudstream:{s}:0", "cloudstream:{s}:1"]
        );
        assert_eq!(leases("s", "g"), "cloudstream:{s}:leases:g");
    }
}
