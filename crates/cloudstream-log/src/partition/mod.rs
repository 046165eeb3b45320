//! A partition: an ordered sequence of segments with one writer thread and many readers.

mod recovery;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::format::{EncodedBatch, LogRecord};
use crate::segment::{ReadLimits, Segment};
use crate::{Clock, LogError, Result, Storage, SyncPolicy};

pub use writer::Completion;
use writer::{Command, Writer};

/// Settings a partition runs with.
#[derive(Debug, Clone)]
pub(crate) struct PartitionConfig {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sync: SyncPolicy,
    pub(crate) segment_bytes: u64,
    pub(crate) segment_max_age_ms: i64,
    pub(crate) index_interval: u64,
    pub(crate) sync_latency: Arc<crate::LatencyHistogram>,
}

/// What an acknowledged append got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the batch's first record; the others follow one by one.
    pub base_offset: u64,
    /// Number of records appended.
    pub count: u32,
    /// The append time given to every record of the batch.
    pub append_time_ms: i64,
}

/// Called with the new end offset each time records become visible.
pub type AppendListener = Arc<dyn Fn(u64) + Send + Sync>;

/// State shared by the writer thread and the readers.
pub(crate) struct PartitionShared {
    pub(crate) dir: PathBuf,
    pub(crate) config: PartitionConfig,
    segments: RwLock<Vec<Arc<Segment>>>,
    poisoned: Mutex<Option<String>>,
    listener: RwLock<Option<AppendListener>>,
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
}

impl PartitionShared {
    pub(crate) fn segments(&self) -> RwLockReadGuard<'_, Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn segments_mut(&self) -> RwLockWriteGuard<'_, Vec<Arc<Segment>>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn poison(&self, why: String) {
        self.poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }
    pub(crate) fn notify(&self, next_offset: u64) {
        let listener = self
            .listener
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(listener) = listener {
            listener(next_offset);
        }
    }
    pub(crate) fn record_sync(&self, took: Duration) {
        self.config.sync_latency.record(took);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PartitionShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionShared")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a partition's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    /// The partition number.
    pub partition: u32,
    /// Offset of the oldest record still held.
    pub earliest_offset: u64,
    /// Offset the next record will get.
    pub next_offset: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Number of segment files.
    pub segments: usize,
    /// fdatasync calls made since open.
    pub syncs: u64,
    /// Total time spent in fdatasync since open.
    pub sync_time: Duration,
    /// Bytes cut from a torn tail when the partition was opened.
    pub truncated_on_open: u64,
}

/// One partition of a stream.
#[derive(Debug)]
pub struct Partition {
    id: u32,
    shared: Arc<PartitionShared>,
    tx: Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    truncated_on_open: u64,
}

impl Partition {
    pub(crate) fn open(id: u32, dir: &Path, config: PartitionConfig) -> Result<Partition> {
        let recovered = recovery::recover(&config.storage, dir, config.index_interval)?;
        let active = recovered.segments.last().cloned().ok_or(LogError::Closed)?;
        let shared = Arc::new(PartitionShared {
            dir: dir.to_path_buf(),
            config,
            segments: RwLock::new(recovered.segments),
            poisoned: Mutex::new(None),
            listener: RwLock::new(None),
            syncs: AtomicU64::new(0),
            sync_nanos: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), active)?;
        let thread = std::thread::Builder::new()
            .name(format!("cloudstream-p{id}"))
            .spawn(move || writer.run(rx))
            .map_err(|source| LogError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Partition {
            id,
            shared,
            tx,
            thread: Mutex::new(Some(thread)),
            truncated_on_open: recovered.truncated_bytes,
        })
    }

    /// The partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues a batch; `done` is called once it is acknowledged (durable by the sync policy)
    /// or failed. Never blocks on I/O, so async callers can await a channel in `done`. A
    /// batch of no record is refused: it would be a synced frame that holds nothing, and a
    /// segment of only such frames never rolls.
    pub fn append(&self, batch: EncodedBatch, done: Completion) {
        if batch.count() == 0 {
            return done(Err(LogError::InvalidConfig(
                "an append needs at least one record".into(),
            )));
        }
        if let Err(mpsc::SendError(Command::Append(_, done))) =
            self.tx.send(Command::Append(batch, done))
        {
            done(Err(LogError::Closed));
        }
    }

    /// Appends a batch and waits for its acknowledgement.
    pub fn append_blocking(&self, batch: EncodedBatch) -> Result<AppendResult> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.append(
            batch,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().map_err(|_| LogError::Closed)?
    }

    /// Reads up to `max_records` records (and about `max_bytes`, but always at least one
    /// record when one is available) starting at `from`.
    ///
    /// `from` older than the earliest record is [`LogError::Expired`]; `from` equal to the
    /// end returns nothing; beyond the end is [`LogError::BeyondEnd`].
    pub fn read(&self, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<LogRecord>> {
        // Only the segments from the one holding `from` on are taken from under the lock.
        let segments: Vec<Arc<Segment>> = {
            let all = self.shared.segments();
            let (earliest, next) = extent(&all);
            if from < earliest {
                return Err(LogError::Expired {
                    requested: from,
                    earliest,
                });
            }
            if from > next {
                return Err(LogError::BeyondEnd {
                    requested: from,
                    next,
                });
            }
            let first = all
                .partition_point(|s| s.base_offset <= from)
                .saturating_sub(1);
            all[first..].to_vec()
        };
        let mut out = Vec::new();
        let mut limits = ReadLimits {
            records: max_records.max(1),
            bytes: max_bytes,
        };
        for segment in &segments {
            match segment.read(from, &mut limits, &mut out) {
                Ok(true) => break,
                Ok(false) => {}
                // A sealed segment is opened per read: retention may have deleted it since
                // the list was taken. What it held expired, as a read a moment later says.
                Err(LogError::Io { source, .. })
                    if out.is_empty() && source.kind() == std::io::ErrorKind::NotFound =>
                {
                    let (earliest, _) = extent(&self.shared.segments());
                    return Err(LogError::Expired {
                        requested: from,
                        earliest,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The offset of the first record appended at or after `time_ms`, or the end offset.
    pub fn offset_for_time(&self, time_ms: i64) -> Result<u64> {
        let segments: Vec<Arc<Segment>> = self.shared.segments().clone();
        for segment in &segments {
            if let Some(offset) = segment.offset_for_time(time_ms)? {
                return Ok(offset);
            }
        }
        Ok(extent(&segments).1)
    }

    /// Offset of the oldest record still held.
    pub fn earliest_offset(&self) -> u64 {
        extent(&self.shared.segments()).0
    }

    /// Offset the next appended record will get (end of what readers can see).
    pub fn next_offset(&self) -> u64 {
        extent(&self.shared.segments()).1
    }

    /// Size and extent of the partition.
    pub fn stats(&self) -> PartitionStats {
        let segments = self.shared.segments();
        let (earliest_offset, next_offset) = extent(&segments);
        PartitionStats {
            partition: self.id,
            earliest_offset,
            next_offset,
            bytes: segments.iter().map(|s| s.state().visible_len).sum(),
            segments: segments.len(),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            sync_time: Duration::from_nanos(self.shared.sync_nanos.load(Ordering::Relaxed)),
            truncated_on_open: self.truncated_on_open,
        }
    }

    /// Sets the function called with the new end offset whenever records become visible.
    pub fn set_listener(&self, listener: Option<AppendListener>) {
        *self
            .shared
            .listener
            .write()
            .unwrap_or_else(|e| e.into_inner()) = listener;
    }

    /// Deletes the segments whose records are all older than `horizon`; returns how many.
    pub fn enforce_retention(&self, horizon: Duration) -> Result<usize> {
        let (done, rx) = mpsc::channel();
        let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
        self.tx
            .send(Command::Retain { horizon_ms, done })
            .map_err(|_| LogError::Closed)?;
        rx.recv().map_err(|_| LogError::Closed)?
    }

    /// The reason the partition stopped acknowledging writes, if it did.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned()
    }

    /// Finishes queued appends, marks the log clean and stops the writer thread.
    pub fn close(&self) -> Result<()> {
        let (done, rx) = mpsc::channel();
        let sent = self.tx.send(Command::Close(done)).is_ok();
        let result = if sent {
            rx.recv().unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        result
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn extent(segments: &[Arc<Segment>]) -> (u64, u64) {
    let earliest = segments.first().map_or(0, |s| s.base_offset);
    let next = segments.last().map_or(0, |s| s.state().next_offset);
    (earliest, next)
}
