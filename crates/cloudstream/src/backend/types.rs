//! What the backend primitives take and return: stream settings and descriptions, start
//! points, read limits and capabilities.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::checkpoint::Checkpoint;
use crate::Sequence;

/// How a stream is created: its retention horizon and its number of partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// How long records are kept.
    pub horizon: Duration,
    /// Number of partitions (shards).
    pub partitions: u32,
}

impl Default for StreamConfig {
    /// 24 hours (the Kinesis default) and one partition.
    fn default() -> Self {
        StreamConfig {
            horizon: Duration::from_secs(24 * 3600),
            partitions: 1,
        }
    }
}

impl StreamConfig {
    /// Checks a stream's settings against what `provider` can hold: a horizon within
    /// `horizons`, 1 to `max_partitions` partitions; a clear error naming the range, never
    /// a silent rounding.
    #[cfg(any(feature = "redis", feature = "nats", feature = "pulsar"))]
    pub(crate) fn check(
        &self,
        provider: &str,
        horizons: (Duration, Duration),
        max_partitions: u32,
    ) -> crate::Result<()> {
        let (low, high) = horizons;
        if self.horizon < low || self.horizon > high {
            return Err(crate::Error::InvalidArgument(format!(
                "a {provider} stream's horizon must be between {} and {}, got {}",
                humantime::format_duration(low),
                humantime::format_duration(high),
                humantime::format_duration(self.horizon)
            )));
        }
        if self.partitions == 0 || self.partitions > max_partitions {
            return Err(crate::Error::InvalidArgument(format!(
                "a {provider} stream has 1 to {max_partitions} partitions, got {}",
                self.partitions
            )));
        }
        Ok(())
    }
}

/// One partition as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// The provider's own name for it (a shard id, a directory).
    pub id: String,
    /// Sequence of the oldest record still held, when the provider tells.
    pub earliest: Option<Sequence>,
    /// Sequence the next record will get, when the provider numbers records densely.
    pub next: Option<Sequence>,
    /// Bytes stored, when the backend knows.
    pub bytes: Option<u64>,
}

impl PartitionInfo {
    /// "Latest" pinned to now: the end of the partition where the provider knows it, else
    /// the current time (records appended from now on).
    pub fn latest(&self) -> PartitionStart {
        match self.next {
            Some(next) => PartitionStart::At(next),
            None => PartitionStart::AtTime(SystemTime::now()),
        }
    }

    /// Records held, when the provider numbers records densely (the embedded engine).
    pub fn records(&self) -> Option<u64> {
        let (earliest, next) = (self.earliest?.as_u64()?, self.next?.as_u64()?);
        Some(next.saturating_sub(earliest))
    }
}

/// A stream as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Retention horizon, in milliseconds.
    pub horizon_ms: u64,
    /// Per-partition extent.
    pub partitions: Vec<PartitionInfo>,
    /// The provider's own name for the resource (a path, an ARN, a topic).
    pub resource: String,
    /// What else the provider says about it (status, capacity mode, ...), by name.
    pub details: BTreeMap<String, String>,
}

impl StreamInfo {
    /// The retention horizon.
    pub fn horizon(&self) -> Duration {
        Duration::from_millis(self.horizon_ms)
    }
    /// Records held across partitions, when the provider can count them.
    pub fn records(&self) -> Option<u64> {
        self.partitions.iter().map(PartitionInfo::records).sum()
    }
}

/// A consumer's committed position and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// Partition → where the consumer resumes.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, PartitionStart>))]
    pub committed: Checkpoint,
    /// Records between the checkpoint and the end, summed over partitions, when the provider
    /// can count them.
    pub lag: Option<u64>,
}

/// Where a read starts within one partition; also what a checkpoint holds (where the
/// consumer resumes).
///
/// Printed as `earliest`, `latest`, `at:SEQ`, `after:SEQ` or `time:MS` (ms since the Unix
/// epoch); parsed also with `time:RFC3339` (see [`crate::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStart {
    /// The oldest record held.
    Earliest,
    /// After the newest record: only records written from now on.
    Latest,
    /// The record with this sequence.
    At(Sequence),
    /// The first record after this sequence.
    After(Sequence),
    /// The first record appended at or after this time.
    AtTime(SystemTime),
}

/// Limits of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Most records returned.
    pub max_records: usize,
    /// About this many bytes at most (at least one record is returned when any is there).
    pub max_bytes: usize,
    /// When nothing is there yet, wait up to this long for a record (long poll).
    pub wait: Option<Duration>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_records: 1000,
            max_bytes: 8 * 1024 * 1024,
            wait: None,
        }
    }
}

/// What a backend can do, so callers (and the conformance suite) know what to expect.
/// In JSON (`GET /v1/capabilities` of the server) the horizon range is in milliseconds.
///
/// New capabilities may be added: a backend outside this crate starts from
/// [`Capabilities::new`] and sets what it offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Capabilities {
    /// Reads start at any retained sequence number.
    pub replay_by_position: bool,
    /// Reads start at a time.
    pub replay_by_time: bool,
    /// Sequences are 0, 1, 2, ... within a partition, so the end of a partition, record
    /// counts, consumer lag and reads past the end (`BeyondEnd`) are known. Kinesis
    /// sequence numbers have gaps, so there they are not.
    pub dense_sequences: bool,
    /// A new consumer can start at the oldest record held. Pub/Sub cannot: a subscription
    /// receives what is published after it exists.
    pub consumers_see_history: bool,
    /// Checkpoints are stored by the provider itself.
    pub server_side_checkpoints: bool,
    /// Data survives a restart of the process.
    pub durable: bool,
    /// Consumer groups can share partitions through leases
    /// ([`CheckpointStore::take_lease`](crate::backend::CheckpointStore::take_lease)).
    pub leases: bool,
    /// Largest event (payload, key and headers).
    pub max_record_bytes: usize,
    /// Most headers on one event. In JSON, `null` (or absent) where the backend sets no such limit.
    #[serde(default = "unlimited", with = "limit")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub max_headers: usize,
    /// Longest header name, in bytes. In JSON, `null` (or absent) where the backend sets no such limit.
    #[serde(default = "unlimited", with = "limit")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub max_header_name_bytes: usize,
    /// Longest header value, in bytes. In JSON, `null` (or absent) where the backend sets no such limit.
    #[serde(default = "unlimited", with = "limit")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub max_header_value_bytes: usize,
    /// Most events in one append call.
    pub max_batch_records: usize,
    /// Most bytes in one append call.
    pub max_batch_bytes: usize,
    /// Most partitions per stream.
    pub max_partitions: u32,
    /// Shortest and longest horizon the provider can hold.
    #[serde(rename = "horizon_range_ms", with = "range_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<u64>))]
    pub horizon_range: (Duration, Duration),
    /// How long an event's id ([`crate::Event::with_id`]) is remembered: a copy sent again
    /// within it is stored once. `None` (`null` in JSON): the provider does not deduplicate,
    /// and the id travels as a header for consumers to check.
    #[serde(default, rename = "dedup_window_ms", with = "opt_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub dedup_window: Option<Duration>,
}

impl Capabilities {
    /// A backend that offers nothing beyond appends and consumers: no replay, no leases, not
    /// durable, one partition, 1 MiB records, 500 records or 5 MiB per append, horizons from
    /// one minute to seven days. Set what the backend does offer.
    pub fn new() -> Self {
        Capabilities {
            replay_by_position: false,
            replay_by_time: false,
            dense_sequences: false,
            consumers_see_history: false,
            server_side_checkpoints: false,
            durable: false,
            leases: false,
            max_record_bytes: 1024 * 1024,
            max_headers: usize::MAX,
            max_header_name_bytes: usize::MAX,
            max_header_value_bytes: usize::MAX,
            max_batch_records: 500,
            max_batch_bytes: 5 * 1024 * 1024,
            max_partitions: 1,
            horizon_range: (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600)),
            dedup_window: None,
        }
    }
}

impl Default for Capabilities {
    /// [`Capabilities::new`].
    fn default() -> Self {
        Capabilities::new()
    }
}

/// No limit beyond the record's size (the default of the header limits in JSON).
fn unlimited() -> usize {
    usize::MAX
}

/// A limit in JSON: a number, or `null` for none (kept as `usize::MAX` in Rust), so that no
/// client meets a 64-bit figure it cannot hold.
mod limit {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(max: &usize, s: S) -> Result<S::Ok, S::Error> {
        let limit = (*max != usize::MAX).then_some(*max as u64);
        limit.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let limit = Option::<u64>::deserialize(d)?;
        Ok(limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)))
    }
}

/// An optional duration as milliseconds, for [`Capabilities::dedup_window`].
mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// A pair of durations as milliseconds, for [`Capabilities::horizon_range`].
mod range_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        range: &(Duration, Duration),
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        (ms(range.0), ms(range.1)).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<(Duration, Duration), D::Error> {
        let (low, high) = <(u64, u64)>::deserialize(d)?;
        Ok((Duration::from_millis(low), Duration::from_millis(high)))
    }
}
