//! `cloudstream-log`: the embedded, durable log engine behind cloudstream's `local://` and
//! `memory://` streams.
//!
//! A [`Log`] is a locked data directory of named streams; a stream has partitions; a
//! partition is a sequence of segment files named by their base offset, each starting with
//! magic bytes and a format version and holding record batches framed with their length and a
//! CRC-32C. Each partition has one writer thread doing group commit: appends queued while an
//! fdatasync runs are made durable together by the next one; under small synced rounds it
//! zeroes the file ahead of its writes, so those syncs commit no new file size. Readers see
//! only acknowledged records. Recovery cuts a torn tail (and zeros written ahead) and refuses
//! corruption before the last durable point;
//! an fsync failure stops the partition (fail-stop). Consumer checkpoints are small files
//! replaced atomically. Every file operation goes through the [`Storage`] trait, so tests can
//! run the same engine on [`MemoryStorage`], which simulates power loss.
//!
//! The core has no async runtime: appends take a completion callback, so an async caller
//! awaits a channel while the partition thread does the I/O.
//!
//! ```
//! use cloudstream_log::{BatchBuilder, Log, LogOptions, MemoryStorage, StreamConfig};
//! use std::{sync::Arc, time::Duration};
//!
//! let options = LogOptions { storage: Arc::new(MemoryStorage::new()), ..LogOptions::default() };
//! let log = Log::open("/data", options)?;
//! let stream = log.create_stream("TelemetryIngest", StreamConfig {
//!     partitions: 1,
//!     horizon: Duration::from_secs(48 * 3600),
//! })?;
//! let mut batch = BatchBuilder::default();
//! batch.push(None, std::iter::empty(), b"{\"temp\": 21.5}", None).expect("fits");
//! let ack = stream.partition(0)?.append_blocking(batch.finish())?;
//! let records = stream.partition(0)?.read(ack.base_offset, 10, 1 << 20)?;
//! assert_eq!(&records[0].value[..], b"{\"temp\": 21.5}");
//! # Ok::<(), cloudstream_log::LogError>(())
//! ```

mod checkpoint;
mod clock;
mod error;
pub mod format;
mod framed_file;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod latency;
mod log;
mod name;
mod partition;
mod segment;
pub mod storage;
mod stream;

pub use checkpoint::{CheckpointFiles, SavedCheckpoint};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LogError, Result};
pub use format::{BatchBuilder, EncodeError, EncodedBatch, LogRecord};
pub use latency::{LatencyHistogram, LatencySnapshot, LATENCY_BOUNDS_US};
pub use log::{Log, LogOptions, SyncPolicy};
pub use name::{validate_name, MAX_NAME_LEN};
pub use partition::{AppendListener, AppendResult, Completion, Partition, PartitionStats};
pub use storage::{FileStorage, MemoryStorage, Storage};
pub use stream::{StreamConfig, StreamLog, MAX_HORIZON, MAX_PARTITIONS};
