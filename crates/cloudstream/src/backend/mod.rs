//! The backend trait: the few primitives every provider implements. Everything else (batch
//! splitting, partitioning by key, consumers, triggers) is written once on top, in
//! [`crate::Stream`].

mod log;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{Event, Position, Record, Result};

pub use self::log::{LogBackend, DEFAULT_MAX_RECORD_BYTES};

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

/// One partition as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// Sequence of the oldest record still held.
    pub earliest: u64,
    /// Sequence the next record will get.
    pub next: u64,
    /// Bytes stored, when the backend knows.
    pub bytes: Option<u64>,
}

/// A stream as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Retention horizon, in milliseconds.
    pub horizon_ms: u64,
    /// Per-partition extent.
    pub partitions: Vec<PartitionInfo>,
    /// The provider's own name for the resource (a path, an ARN, a topic).
    pub resource: String,
}

impl StreamInfo {
    /// The retention horizon.
    pub fn horizon(&self) -> Duration {
        Duration::from_millis(self.horizon_ms)
    }
    /// Records held across partitions.
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.next - p.earliest).sum()
    }
}

/// A consumer's committed position and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// Partition → next sequence to read.
    pub committed: BTreeMap<u32, u64>,
    /// Records between the checkpoint and the end, summed over partitions.
    pub lag: u64,
}

/// Where a read starts within one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStart {
    /// The oldest record held.
    Earliest,
    /// After the newest record: only records written from now on.
    Latest,
    /// The record with this sequence.
    At(u64),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Reads start at any retained sequence number.
    pub replay_by_position: bool,
    /// Reads start at a time.
    pub replay_by_time: bool,
    /// Checkpoints are stored by the provider itself.
    pub server_side_checkpoints: bool,
    /// Data survives a restart of the process.
    pub durable: bool,
    /// Largest event (payload, key and headers).
    pub max_record_bytes: usize,
    /// Most events in one append call.
    pub max_batch_records: usize,
    /// Most bytes in one append call.
    pub max_batch_bytes: usize,
    /// Most partitions per stream.
    pub max_partitions: u32,
    /// Shortest and longest horizon the provider can hold.
    pub horizon_range: (Duration, Duration),
}

/// The primitives a provider implements. Use [`crate::Client`] and [`crate::Stream`] rather
/// than calling these directly.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// Short name of the backend ("local", "memory", ...).
    fn name(&self) -> &'static str;
    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;
    /// Creates a stream; [`crate::Error::StreamExists`] if it exists.
    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo>;
    /// Describes a stream.
    async fn describe_stream(&self, name: &str) -> Result<StreamInfo>;
    /// Names of all streams.
    async fn list_streams(&self) -> Result<Vec<String>>;
    /// Deletes a stream with its records and consumers.
    async fn delete_stream(&self, name: &str) -> Result<()>;
    /// Appends events, in order, to one partition. All or nothing: the receipts, one per
    /// event, come back only once every event is durable.
    async fn append(&self, stream: &str, partition: u32, events: &[Event])
        -> Result<Vec<Position>>;
    /// Reads records of one partition from `start`.
    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>>;
    /// A consumer's committed positions (partition → next sequence), if it ever committed.
    async fn load_checkpoint(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<Option<BTreeMap<u32, u64>>>;
    /// Durably sets the next sequence of the given partitions for a consumer.
    async fn commit_checkpoint(
        &self,
        stream: &str,
        consumer: &str,
        next: &[(u32, u64)],
    ) -> Result<()>;
    /// Every consumer of a stream, with its lag.
    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>>;
    /// Forgets a consumer; returns whether it existed.
    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool>;
}
