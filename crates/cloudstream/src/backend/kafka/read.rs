//! Reads by position and time: a pool of consumers assigned to one partition each (no
//! group), reused by the read that goes on where the last one stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::kafka_error;
use super::produce::TIME_HEADER;
use super::{client_config, KafkaBackend, KafkaOptions};
use crate::backend::blocking;
use crate::backend::{PartitionStart, ReadOptions};
use crate::event::{from_millis, to_millis};
use crate::{Error, Event, Position, Record, Result, Sequence};

/// Settings of the consumer that answers metadata, watermark and time lookups.
pub(super) const META_SETTINGS: [(&str, &str); 1] = [("enable.auto.commit", "false")];

/// Settings of a reader: assigned partitions only (librdkafka wants a group id even so; no
/// member ever joins it), no commits (checkpoints are committed by the consumer runtime),
/// an event at the end of the partition, an error rather than a silent jump when an offset
/// is out of range, and a bounded prefetch.
const READER_SETTINGS: [(&str, &str); 6] = [
    ("group.id", "cloudstream-readers"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "error"),
    ("queued.max.messages.kbytes", "8192"),
];

/// Longest wait for a fetch to answer when records are known to be there: two of
/// librdkafka's request timeouts (a broker still building a large answer is waited for; one
/// that never answers is an error).
const FETCH_WAIT: Duration = Duration::from_secs(120);

/// Where a reader stands: the next offset it hands out of a topic's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    topic: String,
    partition: u32,
    next: i64,
}

/// One consumer, assigned to at most one partition.
struct Reader {
    consumer: StreamConsumer,
    at: Option<Place>,
    /// The partition's end was the last thing this reader saw.
    at_end: bool,
    /// A record fetched but over the last read's byte budget: the next read's first.
    pending: Option<Record>,
    /// The partition's end as a watermark said it before this read (-1: not known): a
    /// read that reaches it stops there, instead of waiting for a fetch that finds nothing
    /// (a broker may hold that one for its whole `fetch.wait.max.ms`).
    known_end: i64,
}

/// The pool of readers. An idle reader keeps its place and goes on prefetching (up to its
/// queue's 8 MiB), so the read that goes on from there finds its records fetched. (Pausing
/// idle readers would cost a new fetch per read: librdkafka drops what it prefetched when a
/// partition is resumed.)
pub(super) struct Readers {
    config: ClientConfig,
    idle: Mutex<Vec<Reader>>,
    permits: Arc<Semaphore>,
}

/// A reader taken from the pool, given back when dropped: at its place if the read
/// finished, else with its place unknown (a read cancelled midway, as a long poll across
/// partitions cancels the others), so the next read assigns it anew rather than making a
/// new librdkafka client.
struct Lease<'a> {
    pool: &'a Readers,
    reader: Option<Reader>,
    finished: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease<'_> {
    fn reader(&mut self) -> &mut Reader {
        self.reader
            .as_mut()
            .expect("a lease holds its reader until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut reader) = self.reader.take() {
            if !self.finished {
                // Cancelled or failed: its place is unknown, and it fetches nothing more (its
                // topic may be gone).
                reader.unassign();
            }
            self.pool.lock().push(reader);
        }
    }
}

impl Readers {
    pub(super) fn new(options: &KafkaOptions) -> Self {
        Readers {
            config: client_config(options, &READER_SETTINGS),
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(options.readers)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Reader>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reader standing at `place` if one is idle, else another (or a new one) to assign.
    async fn take(&self, place: Option<&Place>) -> Result<Lease<'_>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the Kafka reader pool is closed".into()))?;
        let lease = |reader: Reader| Lease {
            pool: self,
            reader: Some(reader),
            finished: false,
            _permit: permit,
        };
        let mut idle = self.lock();
        if let Some(i) = place.and_then(|p| idle.iter().position(|r| r.at.as_ref() == Some(p))) {
            let reader = idle.remove(i);
            drop(idle);
            return Ok(lease(reader));
        }
        // The reader used longest ago (the front) is the one repositioned.
        if !idle.is_empty() {
            let mut reader = idle.remove(0);
            drop(idle);
            reader.at = None;
            reader.pending = None;
            return Ok(lease(reader));
        }
        drop(idle);
        let consumer: StreamConsumer = self
            .config
            .create()
            .map_err(|e| super::setting_error("a reader", &e))?;
        Ok(lease(Reader {
            consumer,
            at: None,
            at_end: false,
            pending: None,
            known_end: -1,
        }))
    }

    /// Takes out of the pool the readers assigned to a topic (deleted, or found missing).
    fn take_topic(&self, topic: &str) -> Vec<Reader> {
        let mut idle = self.lock();
        let (gone, keep) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|r: &Reader| r.is_on(topic));
        *idle = keep;
        gone
    }

    /// Drops the readers assigned to a topic found missing; closing a librdkafka client
    /// blocks, so it happens on a blocking thread.
    pub(super) fn forget(&self, topic: &str) {
        close_later(self.take_topic(topic));
    }

    /// Closes the readers assigned to a topic about to be deleted, and waits until they are
    /// closed: none may fetch from it once it is gone (a fetch of an unknown topic whose
    /// answer names a leader crashes librdkafka 2.12's metadata cache).
    pub(super) async fn close_topic(&self, topic: &str) {
        let gone = self.take_topic(topic);
        if !gone.is_empty() {
            let _ = tokio::task::spawn_blocking(move || drop(gone)).await;
        }
    }
}

/// Closes librdkafka clients off the async threads.
pub(super) fn close_later<T: Send + 'static>(clients: Vec<T>) {
    if clients.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(clients));
        }
        Err(_) => drop(clients),
    }
}

impl Reader {
    /// Whether the reader is assigned to a partition of `topic`.
    fn is_on(&self, topic: &str) -> bool {
        self.at.as_ref().is_some_and(|p| p.topic == topic)
            || self
                .consumer
                .assignment()
                .is_ok_and(|tpl| tpl.elements().iter().any(|e| e.topic() == topic))
    }

    fn assign(&mut self, place: Place, at_end: bool) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(
            &place.topic,
            place.partition as i32,
            Offset::Offset(place.next),
        )
        .map_err(|e| kafka_error(e, &place.topic))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_error(e, &place.topic))?;
        self.at = Some(place);
        self.at_end = at_end;
        self.pending = None;
        Ok(())
    }

    /// Hands out records from where the reader stands, within the read's limits.
    async fn fill(
        &mut self,
        options: &ReadOptions,
    ) -> std::result::Result<Vec<Record>, KafkaError> {
        let Some(place) = self.at.clone() else {
            return Ok(Vec::new());
        };
        let mut next = place.next;
        let mut out = Vec::new();
        let mut bytes = 0;
        if let Some(r) = self.pending.take() {
            bytes += r.event.size();
            next = offset_after(&r);
            out.push(r);
        }
        let started = Instant::now();
        // One deadline for the whole read, whatever events arrive meanwhile.
        let longest = FETCH_WAIT.max(options.wait.unwrap_or_default());
        let deadline = started
            .checked_add(longest)
            .unwrap_or(started + Duration::from_secs(86_400));
        let mut stopped = false;
        let waited = |now: Instant| {
            options
                .wait
                .is_none_or(|w| started.checked_add(w).is_some_and(|end| now >= end))
        };
        while out.len() < options.max_records && bytes < options.max_bytes {
            let now = Instant::now();
            // At the end: take what is already queued, then wait only as long as asked, and
            // not at all once something is in hand.
            let timeout = if self.at_end {
                if !out.is_empty() || waited(now) {
                    Duration::from_millis(1)
                } else {
                    options
                        .wait
                        .unwrap_or_default()
                        .saturating_sub(now - started)
                }
            } else {
                deadline.saturating_duration_since(now)
            };
            let message = match tokio::time::timeout(timeout, self.consumer.recv()).await {
                // Records are known to be there (the end was not reached) but no fetch
                // brought them: an error, never an empty answer that reads as "no more".
                Err(_) if !self.at_end && out.is_empty() => {
                    return Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::OperationTimedOut,
                    ))
                }
                Err(_) => break,
                Ok(Err(KafkaError::PartitionEOF(p))) if p == place.partition as i32 => {
                    self.at_end = true;
                    if !out.is_empty() || waited(Instant::now()) {
                        break;
                    }
                    continue;
                }
                Ok(Err(e)) if is_partition_error(&e) => {
                    if out.is_empty() {
                        return Err(e);
                    }
                    // librdkafka stopped fetching the partition: the next read starts anew
                    // from where this one ends, and meets the error itself.
                    stopped = true;
                    break;
                }
                // A client-level event (a broker connection lost and found again): the
                // client reconnects by itself; the read goes on until its deadline.
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, topic = place.topic, "Kafka reader event");
                    if Instant::now() >= deadline && out.is_empty() && !self.at_end {
                        return Err(e);
                    }
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            if message.topic() != place.topic
                || message.partition() != place.partition as i32
                || message.offset() < next
            {
                continue; // left over from an earlier assignment
            }
            self.at_end = false;
            let record = to_record(place.partition, &message);
            next = offset_after(&record);
            let size = record.event.size();
            if !out.is_empty() && bytes + size > options.max_bytes {
                self.pending = Some(record);
                next = message.offset();
                break;
            }
            bytes += size;
            out.push(record);
            if self.known_end >= 0 && next >= self.known_end {
                self.at_end = true;
                break;
            }
        }
        self.known_end = -1;
        self.at = Some(Place { next, ..place });
        if stopped {
            self.unassign();
        }
        Ok(out)
    }

    /// Stops fetching and forgets the place, keeping the client for another read.
    fn unassign(&mut self) {
        let _ = self.consumer.unassign();
        self.at = None;
        self.at_end = false;
        self.pending = None;
        self.known_end = -1;
    }
}

/// Whether a consumer error concerns the partition being read (its offset out of range,
/// the topic gone, access refused, a fatal client error) rather than the connection.
fn is_partition_error(e: &KafkaError) -> bool {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        return true;
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OffsetOutOfRange
                | RDKafkaErrorCode::AutoOffsetReset
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

/// The offset after a record's.
fn offset_after(record: &Record) -> i64 {
    record
        .position
        .sequence
        .as_u64()
        .map_or(i64::MAX, |s| (s as i64).saturating_add(1))
}

/// The position of an offset in a partition.
fn position_at(partition: u32, offset: i64) -> Position {
    Position::new(partition, offset.max(0) as u64)
}

/// A Kafka offset for a sequence; `None` past what an offset can be.
pub(super) fn offset_of(sequence: Sequence) -> Option<i64> {
    sequence.as_u64().and_then(|s| i64::try_from(s).ok())
}

/// The record a message holds: its key, its headers (the time header taken out as the
/// event time), and the broker's timestamp as the append time. Keys and header values
/// that are not UTF-8 (written by other clients) are read lossily.
pub(super) fn to_record(partition: u32, message: &BorrowedMessage<'_>) -> Record {
    let mut headers = BTreeMap::new();
    let mut time = None;
    if let Some(h) = message.headers() {
        for header in h.iter() {
            let value = String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned();
            if header.key == TIME_HEADER {
                if let Ok(ms) = value.parse::<i64>() {
                    time = Some(from_millis(ms));
                    continue;
                }
            }
            headers.insert(header.key.to_owned(), value);
        }
    }
    let append_time = message
        .timestamp()
        .to_millis()
        .map_or(SystemTime::UNIX_EPOCH, from_millis);
    Record {
        position: Position::new(partition, message.offset().max(0) as u64),
        append_time,
        event: Event {
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            time,
        },
    }
}

impl KafkaBackend {
    /// Reads one partition from `start` (the `Backend::read` primitive).
    pub(super) async fn read_partition(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        self.check_partition(stream, partition).await?;
        let position = |offset| position_at(partition, offset);
        let beyond_offsets = |s: Sequence| {
            Error::InvalidArgument(format!("sequence {s} is beyond what a Kafka offset can be"))
        };
        let asked = match start {
            PartitionStart::At(s) => Some(offset_of(s).ok_or_else(|| beyond_offsets(s))?),
            PartitionStart::After(s) => Some(
                offset_of(s)
                    .and_then(|o| o.checked_add(1))
                    .ok_or_else(|| beyond_offsets(s))?,
            ),
            _ => None,
        };
        let wanted = asked.map(|next| Place {
            topic: stream.to_owned(),
            partition,
            next,
        });
        let mut lease = self.readers.take(wanted.as_ref()).await?;
        if lease.reader().at_end && lease.reader().at == wanted && options.wait.is_none() {
            // The reader last saw the end; records appended since may not be fetched yet,
            // and a read without a wait must still find them.
            let (_, high) = self.watermarks(stream, partition).await?;
            if asked.is_some_and(|next| next < high) {
                lease.reader().at_end = false;
                lease.reader().known_end = high;
            }
        }
        // Where the read starts, once known: an out-of-range answer is judged against it.
        let mut requested = asked;
        if lease.reader().at.is_none() || lease.reader().at != wanted {
            let (low, high) = self.watermarks(stream, partition).await?;
            let next = match start {
                PartitionStart::Earliest => low,
                PartitionStart::Latest => high,
                PartitionStart::AtTime(t) => self
                    .offset_for_time(stream, partition, t)
                    .await?
                    .unwrap_or(high),
                PartitionStart::At(_) | PartitionStart::After(_) => {
                    let next = asked.unwrap_or(high);
                    if next < low {
                        return Err(Error::Expired {
                            requested: position(next),
                            earliest: position(low),
                        });
                    }
                    if next > high {
                        return Err(Error::BeyondEnd {
                            requested: position(next),
                            next: position(high),
                        });
                    }
                    next
                }
            };
            let place = Place {
                topic: stream.to_owned(),
                partition,
                next,
            };
            requested = Some(next);
            lease.reader().assign(place, next >= high)?;
            lease.reader().known_end = high;
        }
        match lease.reader().fill(options).await {
            Ok(mut records) => {
                lease.finished = true;
                if let PartitionStart::AtTime(t) = start {
                    // A broker that answers a time lookup with an earlier offset (tansu 0.6
                    // answers 0 for a time after every record) must not make older records
                    // count as appended at or after `t`.
                    let t = to_millis(t);
                    let older = records
                        .iter()
                        .take_while(|r| to_millis(r.append_time) < t)
                        .count();
                    records.drain(..older);
                }
                Ok(records)
            }
            // The reader goes back with its place unknown.
            Err(e) => Err(self.read_error(stream, partition, requested, e).await),
        }
    }

    /// The error of a failed fetch: `Expired` or `BeyondEnd` when the offset fell out of
    /// the partition's range (retention ran meanwhile), else the error itself.
    async fn read_error(
        &self,
        stream: &str,
        partition: u32,
        asked: Option<i64>,
        e: KafkaError,
    ) -> Error {
        let out_of_range = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
        );
        if let (true, Some(next)) = (out_of_range, asked) {
            if let Ok((low, high)) = self.watermarks(stream, partition).await {
                let position = |offset| position_at(partition, offset);
                if next < low {
                    return Error::Expired {
                        requested: position(next),
                        earliest: position(low),
                    };
                }
                if next > high {
                    return Error::BeyondEnd {
                        requested: position(next),
                        next: position(high),
                    };
                }
            }
        }
        self.stream_error(stream, e)
    }

    /// The first offset appended at or after `time`; `None` when there is none yet.
    pub(super) async fn offset_for_time(
        &self,
        stream: &str,
        partition: u32,
        time: SystemTime,
    ) -> Result<Option<i64>> {
        let meta = self.meta.clone();
        let topic = stream.to_owned();
        blocking(move || super::offsets::time_offset(&meta, &topic, partition, time)).await
    }
}
