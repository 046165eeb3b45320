//! `local://` and `memory://`: the embedded engine of `cloudstream-log` as a [`Backend`].
//!
//! Appends are encoded on the caller's task and handed to the partition's writer thread,
//! whose completion callback fires a oneshot channel, so no async thread blocks on an fsync.
//! Reads and checkpoint writes run on the blocking pool. Long-poll reads wait on a watch
//! channel fed by the partition's append listener.

mod append;
mod dedup;
mod open;
mod options;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::open::{check_local, check_memory, open_local_url, open_memory_url};
pub use self::options::LocalOptions;
use cloudstream_log::{Log, LogError, LogRecord, StreamLog};
use tokio::sync::watch;

use super::{
    blocking, Backend, Capabilities, Checkpoint, CheckpointStore, ConsumerInfo, Consumption,
    PartitionInfo, PartitionStart, ReadOptions, StreamConfig, StreamInfo,
};
use crate::event::{from_millis, to_millis};
use crate::lease::MemoryLeases;
use crate::{Error, Event, Position, Record, Result, Sequence};

/// Largest event accepted by default (1 MiB, as Kinesis).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_BATCH_RECORDS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The embedded engine as a backend.
#[derive(Debug)]
pub struct LogBackend {
    name: &'static str,
    log: Arc<Log>,
    max_record_bytes: usize,
    watchers: Mutex<HashMap<String, Watchers>>,
    leases: MemoryLeases,
    /// The ids of recent events, per stream, for idempotent appends.
    dedup: Arc<dedup::Dedup>,
}

/// The end offset of each partition of one open stream, as watch channels.
#[derive(Debug, Clone)]
struct Watchers {
    stream: Arc<StreamLog>,
    ends: Arc<Vec<watch::Sender<u64>>>,
}

fn log_error(stream: &str, partition: u32, e: LogError) -> Error {
    match e {
        LogError::Expired {
            requested,
            earliest,
        } => Error::Expired {
            requested: Position::new(partition, requested),
            earliest: Position::new(partition, earliest),
        },
        LogError::BeyondEnd { requested, next } => Error::BeyondEnd {
            requested: Position::new(partition, requested),
            next: Position::new(partition, next),
        },
        LogError::PartitionNotFound { partition, count } => Error::PartitionNotFound {
            stream: stream.to_owned(),
            partition,
            partitions: count,
        },
        e => e.into(),
    }
}

/// The engine's offset for a start point that names one (`At`, `After`); `None` for those
/// that need a lookup in the partition.
fn offset_of(partition: u32, start: PartitionStart) -> Result<Option<u64>> {
    let offset = |seq: Sequence| {
        seq.as_u64().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sequence {seq} of partition {partition} is larger than any the embedded engine assigns"
            ))
        })
    };
    Ok(match start {
        PartitionStart::At(seq) => Some(offset(seq)?),
        PartitionStart::After(seq) => Some(offset(seq)?.checked_add(1).ok_or_else(|| {
            Error::InvalidArgument(format!("sequence {seq} is the last possible one"))
        })?),
        _ => None,
    })
}

/// The engine's offset for any start point, looking up the partition where needed.
async fn resolve_offset(
    stream: &Arc<StreamLog>,
    partition: u32,
    start: PartitionStart,
) -> Result<u64> {
    if let Some(offset) = offset_of(partition, start)? {
        return Ok(offset);
    }
    let s = stream.clone();
    blocking(move || {
        let p = s.partition(partition)?;
        Ok(match start {
            PartitionStart::Earliest => p.earliest_offset(),
            PartitionStart::AtTime(t) => p.offset_for_time(to_millis(t))?,
            _ => p.next_offset(),
        })
    })
    .await
}

/// The engine's checkpoint (partition → next offset) as resume points.
fn resume_points(offsets: &BTreeMap<u32, u64>) -> Checkpoint {
    offsets
        .iter()
        .map(|(&p, &next)| (p, PartitionStart::At(next.into())))
        .collect()
}

fn to_record(partition: u32, r: LogRecord) -> Record {
    Record {
        position: Position::new(partition, r.offset),
        append_time: from_millis(r.append_time_ms),
        event: Event {
            payload: r.value,
            key: r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
            headers: r.headers.into_iter().collect(),
            time: r.event_time_ms.map(from_millis),
        },
    }
}

impl LogBackend {
    /// Wraps an open [`Log`]; `name` is "local" or "memory".
    pub fn new(name: &'static str, log: Log, max_record_bytes: usize) -> Self {
        LogBackend {
            name,
            log: Arc::new(log),
            max_record_bytes,
            watchers: Mutex::default(),
            leases: MemoryLeases::default(),
            dedup: Arc::default(),
        }
    }

    /// The engine underneath.
    pub fn log(&self) -> &Log {
        &self.log
    }

    fn stream(&self, name: &str) -> Result<Arc<StreamLog>> {
        Ok(self.log.stream(name)?)
    }

    fn watchers(&self, name: &str) -> Result<Watchers> {
        let stream = self.stream(name)?;
        let mut all = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = all.get(name).filter(|w| Arc::ptr_eq(&w.stream, &stream)) {
            return Ok(w.clone());
        }
        let ends: Vec<watch::Sender<u64>> = stream
            .partitions()
            .iter()
            .map(|p| watch::Sender::new(p.next_offset()))
            .collect();
        let ends = Arc::new(ends);
        for (i, p) in stream.partitions().iter().enumerate() {
            let ends = Arc::downgrade(&ends);
            p.set_listener(Some(Arc::new(move |next| {
                if let Some(ends) = ends.upgrade() {
                    ends[i].send_replace(next);
                }
            })));
        }
        let w = Watchers { stream, ends };
        all.insert(name.to_owned(), w.clone());
        Ok(w)
    }

    fn info(&self, stream: &StreamLog) -> StreamInfo {
        StreamInfo {
            name: stream.name().to_owned(),
            horizon_ms: stream.config().horizon.as_millis() as u64,
            partitions: stream
                .partitions()
                .iter()
                .map(|p| {
                    let s = p.stats();
                    PartitionInfo {
                        partition: s.partition,
                        id: s.partition.to_string(),
                        earliest: Some(s.earliest_offset.into()),
                        next: Some(s.next_offset.into()),
                        bytes: Some(s.bytes),
                    }
                })
                .collect(),
            resource: format!(
                "{}://{}",
                self.name,
                self.log
                    .root()
                    .join("streams")
                    .join(stream.name())
                    .display()
            ),
            details: BTreeMap::new(),
        }
    }
}

#[async_trait]
impl Backend for LogBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Checkpoints(self)
    }

    fn latencies(&self) -> std::collections::BTreeMap<String, super::LatencySnapshot> {
        std::collections::BTreeMap::from([("fsync".to_owned(), self.log.sync_latency())])
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: true,
            consumers_see_history: true,
            server_side_checkpoints: true,
            durable: self.name == "local",
            leases: true,
            max_record_bytes: self.max_record_bytes,
            // The batch format: u16 header count and name lengths.
            max_headers: u16::MAX as usize,
            max_header_name_bytes: u16::MAX as usize,
            max_header_value_bytes: usize::MAX,
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_partitions: cloudstream_log::MAX_PARTITIONS,
            horizon_range: (Duration::from_millis(1), cloudstream_log::MAX_HORIZON),
            dedup_window: Some(dedup::WINDOW),
        }
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        let log = self.log.clone();
        let (name, config) = (name.to_owned(), *config);
        let stream = blocking(move || {
            Ok(log.create_stream(
                &name,
                cloudstream_log::StreamConfig {
                    partitions: config.partitions,
                    horizon: config.horizon,
                },
            )?)
        })
        .await?;
        // A stream of this name deleted before left no ids behind for the new one.
        self.dedup.forget(stream.name());
        Ok(self.info(&stream))
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        Ok(self.info(&*self.stream(name)?))
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        Ok(self.log.list_streams())
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        let log = self.log.clone();
        let owned = name.to_owned();
        blocking(move || Ok(log.delete_stream(&owned)?)).await?;
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.leases.forget_stream(name);
        self.dedup.forget(name);
        Ok(())
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        append::append(self, stream, partition, events).await
    }

    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let watchers = self.watchers(stream)?;
        let part_count = watchers.stream.partitions().len();
        let Some(end) = watchers.ends.get(partition as usize) else {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions: part_count as u32,
            });
        };
        let mut end_rx = end.subscribe();
        let s = watchers.stream.clone();
        let name = stream.to_owned();
        let mut from = resolve_offset(&s, partition, start).await?;
        let deadline = options.wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let s = watchers.stream.clone();
            let (name, opts) = (name.clone(), *options);
            let read = blocking(move || {
                let p = s.partition(partition)?;
                p.read(from, opts.max_records, opts.max_bytes)
                    .map_err(|e| log_error(&name, partition, e))
            })
            .await;
            let records = match read {
                // "From the earliest" means the earliest there is when the read runs:
                // retention moved it meanwhile.
                Err(Error::Expired { earliest, .. })
                    if start == PartitionStart::Earliest
                        && earliest.sequence.as_u64().is_some_and(|e| e > from) =>
                {
                    from = earliest.sequence.as_u64().unwrap_or(from);
                    continue;
                }
                read => read?,
            };
            if !records.is_empty() {
                return Ok(records
                    .into_iter()
                    .map(|r| to_record(partition, r))
                    .collect());
            }
            let Some(deadline) = deadline else {
                return Ok(Vec::new());
            };
            let arrived =
                tokio::time::timeout_at(deadline, end_rx.wait_for(|&next| next > from)).await;
            if !matches!(arrived, Ok(Ok(_))) {
                return Ok(Vec::new());
            }
        }
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let s = self.stream(stream)?;
        let extents: Vec<(u64, u64)> = s
            .partitions()
            .iter()
            .map(|p| (p.earliest_offset(), p.next_offset()))
            .collect();
        Ok(s.checkpoints()
            .list()
            .into_iter()
            .map(|(name, checkpoint)| {
                let lag = extents
                    .iter()
                    .enumerate()
                    .map(|(p, &(earliest, next))| {
                        let at = checkpoint
                            .offsets
                            .get(&(p as u32))
                            .copied()
                            .unwrap_or(earliest);
                        next.saturating_sub(at.max(earliest))
                    })
                    .sum();
                ConsumerInfo {
                    name,
                    committed: resume_points(&checkpoint.offsets),
                    lag: Some(lag),
                }
            })
            .collect())
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        CheckpointStore::delete(self, stream, consumer).await
    }
}

/// The engine keeps checkpoints itself, per stream, as next offsets.
#[async_trait]
impl CheckpointStore for LogBackend {
    fn kind(&self) -> &'static str {
        "engine"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        Ok(self
            .stream(stream)?
            .checkpoints()
            .load(consumer)?
            .map(|c| resume_points(&c.offsets)))
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        let s = self.stream(stream)?;
        let mut next = Vec::with_capacity(resume.len());
        for &(p, start) in resume {
            next.push((p, resolve_offset(&s, p, start).await?));
        }
        let consumer = consumer.to_owned();
        blocking(move || {
            s.checkpoints().commit(&consumer, &next)?;
            Ok(())
        })
        .await
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        Ok(self
            .stream(stream)?
            .checkpoints()
            .list()
            .into_iter()
            .map(|(name, c)| (name, resume_points(&c.offsets)))
            .collect())
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        let s = self.stream(stream)?;
        let consumer = consumer.to_owned();
        blocking(move || Ok(s.checkpoints().delete(&consumer)?)).await
    }

    // One process owns a data directory (its LOCK file), so leases live in its memory.
    async fn take_lease(
        &self,
        stream: &str,
        consumer: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        self.stream(stream)?;
        Ok(self.leases.take_lease(stream, consumer, name, member, ttl))
    }

    async fn release_lease(
        &self,
        stream: &str,
        consumer: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        self.leases.release_lease(stream, consumer, name, member);
        Ok(())
    }

    async fn live_leases(&self, stream: &str, consumer: &str) -> Result<BTreeMap<String, String>> {
        self.stream(stream)?;
        Ok(self.leases.live_leases(stream, consumer))
    }
}

#[cfg(test)]
mod tests;
