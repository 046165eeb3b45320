//! Deterministic reads: a non-durable reader (a subscription of its own, with a unique name)
//! of one partition topic, started at the asked position. A read that stops before the end
//! leaves its reader in [`Readers`], so the next read starting right after it goes on from
//! there; a reader not reused is closed and its subscription removed (pulsar-lite keeps
//! every subscription, even a non-durable one, until it is removed).
//!
//! A read ends at the end the topic had when it began. That end is asked of a *probe*, a
//! consumer of the topic from its end kept for the purpose, never of the reader: the pulsar
//! crate's consumer answers requests from the task that fills its queue, which waits while
//! the queue is full, so a reader with a full queue would never answer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use futures::StreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::{ConsumerOptions, SubType};

use super::errors::pulsar_error;
use super::{
    consumer_id, is_marker, sequence_of, start_id, PulsarBackend, PulsarConsumer,
    CATALOG_FRESHNESS, UNSUBSCRIBE_WAIT,
};
use crate::backend::{PartitionStart, ReadOptions};
use crate::event::from_millis;
use crate::{Error, Event, Position, Record, Result, Sequence};

/// Most idle readers kept.
const MAX_IDLE: usize = 32;
/// Messages a reader is sent ahead of the reads that take them.
pub(super) const READ_PREFETCH: u32 = 1000;
/// Most probes kept (one per topic).
const MAX_PROBES: usize = 64;

/// A reader of one partition topic, and where it stands.
pub(super) struct Cursor {
    topic: String,
    consumer: PulsarConsumer,
    /// The last message handed out (or skipped).
    after: Option<Sequence>,
    /// A message taken from the reader but not handed out (it did not fit the last read).
    pending: Option<Message<Vec<u8>>>,
}

/// Closes a reader and removes its subscription, in the background.
fn retire(cursor: Cursor) {
    unsubscribe(cursor.consumer);
}

/// Closes a consumer and removes its subscription, in the background; its queue is emptied
/// first, so that it can answer.
fn unsubscribe(mut consumer: PulsarConsumer) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            super::drain(&mut consumer);
            let _ = tokio::time::timeout(UNSUBSCRIBE_WAIT, consumer.unsubscribe()).await;
        });
    }
}

/// Idle readers, oldest first, and the probes of the topics read.
#[derive(Default)]
pub(super) struct Readers {
    idle: Mutex<VecDeque<Cursor>>,
    probes: Mutex<HashMap<String, PulsarConsumer>>,
}

impl Readers {
    /// A reader of `topic` whose last message handed out is `after`.
    fn take(&self, topic: &str, after: Sequence) -> Option<Cursor> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = idle
            .iter()
            .position(|c| c.topic == topic && c.after == Some(after))?;
        idle.remove(at)
    }

    fn keep(&self, cursor: Cursor) {
        let old = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push_back(cursor);
            (idle.len() > MAX_IDLE).then(|| idle.pop_front()).flatten()
        };
        old.into_iter().for_each(retire);
    }

    /// Drops the readers of these topics (their stream was deleted).
    pub(super) fn forget(&self, topics: &[String]) {
        let gone: VecDeque<Cursor> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                idle.drain(..).partition(|c| topics.contains(&c.topic));
            *idle = kept;
            gone
        };
        gone.into_iter().for_each(retire);
        let probes: Vec<PulsarConsumer> = {
            let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
            topics.iter().filter_map(|t| probes.remove(t)).collect()
        };
        probes.into_iter().for_each(unsubscribe);
    }
}

/// The record of a message of partition `partition`.
pub(super) fn to_record(partition: u32, m: &Message<Vec<u8>>) -> Record {
    let meta = m.metadata();
    Record {
        position: Position::new(partition, sequence_of(m.message_id())),
        append_time: from_millis(i64::try_from(meta.publish_time).unwrap_or(i64::MAX)),
        event: Event {
            payload: bytes::Bytes::copy_from_slice(&m.payload.data),
            key: meta.partition_key.clone(),
            headers: meta
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect::<BTreeMap<_, _>>(),
            time: meta
                .event_time
                .filter(|&ms| ms > 0)
                .map(|ms| from_millis(i64::try_from(ms).unwrap_or(i64::MAX))),
        },
    }
}

/// Which messages of a reader a read hands out.
#[derive(Clone, Copy)]
enum Skip {
    Nothing,
    Below(Sequence),
    Through(Sequence),
    Before(SystemTime),
}

impl Skip {
    fn keeps(self, record: &Record) -> bool {
        match self {
            Skip::Nothing => true,
            Skip::Below(s) => record.position.sequence >= s,
            Skip::Through(s) => record.position.sequence > s,
            Skip::Before(t) => record.append_time >= t,
        }
    }
}

impl PulsarBackend {
    /// The (ledger, entry) of the last message of `topic`, asked of its probe.
    pub(super) async fn end_of(&self, topic: &str) -> Result<Option<(u64, u64)>> {
        let held = self
            .readers
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
        let mut probe = match held {
            Some(p) => p,
            // A queue as large as a reader's: it is emptied before each question, and one
            // that filled between the emptying and the answer would stop the answer.
            None => {
                self.subscribe_reader(topic, PartitionStart::Latest, READ_PREFETCH)
                    .await?
            }
        };
        // What the probe was sent since it was last asked is of no use: take it out of its
        // queue so that it can answer.
        super::drain(&mut probe);
        let asked = tokio::time::timeout(self.options.op_timeout, probe.get_last_message_id());
        let ids = match asked.await {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                unsubscribe(probe);
                return Err(pulsar_error(e));
            }
            Err(_) => {
                unsubscribe(probe);
                return Err(Error::Unavailable(
                    format!("Pulsar did not tell the end of {topic} in time").into(),
                ));
            }
        };
        let dropped: Vec<PulsarConsumer> = {
            let mut probes = self
                .readers
                .probes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mut dropped: Vec<_> = probes.insert(topic.to_owned(), probe).into_iter().collect();
            // A probe receives everything appended to its topic: keep those of the topics
            // read lately only.
            while probes.len() > MAX_PROBES {
                let Some(other) = probes.keys().find(|t| *t != topic).cloned() else {
                    break;
                };
                dropped.extend(probes.remove(&other));
            }
            dropped
        };
        dropped.into_iter().for_each(unsubscribe);
        Ok(ids
            .first()
            .filter(|id| id.ledger_id != u64::MAX && id.entry_id != u64::MAX)
            .map(|id| (id.ledger_id, id.entry_id)))
    }

    /// A new reader of `topic` starting at `start`.
    async fn open_cursor(&self, topic: &str, start: PartitionStart) -> Result<Cursor> {
        Ok(Cursor {
            topic: topic.to_owned(),
            consumer: self.subscribe_reader(topic, start, READ_PREFETCH).await?,
            after: None,
            pending: None,
        })
    }

    /// A non-durable consumer of `topic` on a subscription of its own, from `start`.
    async fn subscribe_reader(
        &self,
        topic: &str,
        start: PartitionStart,
        prefetch: u32,
    ) -> Result<PulsarConsumer> {
        let options = ConsumerOptions::default()
            .durable(false)
            .with_receiver_queue_size(prefetch);
        let options = match start {
            PartitionStart::At(s) | PartitionStart::After(s) => {
                options.starting_on_message(start_id(s)?)
            }
            PartitionStart::Latest => options.with_initial_position(InitialPosition::Latest),
            PartitionStart::Earliest | PartitionStart::AtTime(_) => {
                options.with_initial_position(InitialPosition::Earliest)
            }
        };
        self.client
            .consumer()
            .with_topic(topic)
            .with_subscription(format!("cloudstream-read-{:016x}", rand::random::<u64>()))
            .with_subscription_type(SubType::Failover)
            .with_consumer_id(consumer_id())
            .with_batch_size(prefetch)
            .with_options(options)
            .build()
            .await
            .map_err(pulsar_error)
    }

    /// Reads one partition (the `Backend::read` primitive).
    pub(super) async fn read_partition(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let live = self.live(stream, CATALOG_FRESHNESS).await?;
        let topic = self.partition_topic(stream, &live, partition)?;
        if start == PartitionStart::Latest && options.wait.is_none() {
            return Ok(Vec::new());
        }
        // The end first: what is appended after it is what a read from `Latest` returns.
        let end = self.end_of(&topic).await?;
        let start = match (start, end) {
            (PartitionStart::Latest, Some((ledger, entry))) => {
                PartitionStart::After(Sequence::from_limbs([0, ledger, entry, 0]))
            }
            (start, _) => start,
        };
        let (mut cursor, skip) = match start {
            PartitionStart::After(s) => match self.readers.take(&topic, s) {
                Some(c) => (c, Skip::Nothing),
                None => (self.open_cursor(&topic, start).await?, Skip::Through(s)),
            },
            PartitionStart::At(s) => (self.open_cursor(&topic, start).await?, Skip::Below(s)),
            PartitionStart::AtTime(t) => (self.open_cursor(&topic, start).await?, Skip::Before(t)),
            PartitionStart::Earliest | PartitionStart::Latest => {
                (self.open_cursor(&topic, start).await?, Skip::Nothing)
            }
        };
        let records = self
            .read_cursor(&mut cursor, partition, skip, end, options)
            .await;
        match records {
            Ok(_) => self.readers.keep(cursor),
            Err(_) => retire(cursor),
        }
        records
    }

    /// The messages of a reader up to the end its topic had when the read began (or, when
    /// there were none, the first to come within the read's wait).
    async fn read_cursor(
        &self,
        cursor: &mut Cursor,
        partition: u32,
        skip: Skip,
        end: Option<(u64, u64)>,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut consumed = None;
        let mut repeats = 0;
        let wait_until = options.wait.map(|w| tokio::time::Instant::now() + w);
        while out.len() < options.max_records.max(1) {
            let caught_up = match (end, cursor.after) {
                (None, _) => true,
                (Some(end), Some(after)) => {
                    let [_, ledger, entry, _] = after.limbs();
                    (ledger, entry) >= end
                }
                (Some(_), None) => false,
            };
            let deadline = match (caught_up, out.is_empty(), wait_until) {
                (false, _, _) => tokio::time::Instant::now() + self.options.op_timeout,
                (true, true, Some(until)) => until,
                (true, _, _) => break,
            };
            let message = match cursor.pending.take() {
                Some(m) => m,
                None => match tokio::time::timeout_at(deadline, cursor.consumer.next()).await {
                    Err(_) if caught_up => break,
                    Err(_) => {
                        return Err(Error::Unavailable(
                            format!("Pulsar did not send {} in time", cursor.topic).into(),
                        ))
                    }
                    Ok(None) => return Err(Error::Unavailable("a Pulsar reader closed".into())),
                    Ok(Some(m)) => m.map_err(pulsar_error)?,
                },
            };
            consumed = Some(message.message_id().clone());
            let record = to_record(partition, &message);
            if cursor.after.is_some_and(|a| record.position.sequence <= a) {
                // Delivered again (pulsar-lite redelivers what is not acknowledged): a read
                // that meets only such messages ends, and acknowledges them below.
                repeats += 1;
                if repeats > READ_PREFETCH as usize {
                    break;
                }
                continue;
            }
            if is_marker(&message) || !skip.keeps(&record) {
                cursor.after = Some(record.position.sequence);
                continue;
            }
            let size = record.event.payload.len();
            if !out.is_empty() && bytes + size > options.max_bytes {
                cursor.pending = Some(message);
                break;
            }
            bytes += size;
            cursor.after = Some(record.position.sequence);
            out.push(record);
        }
        // Acknowledged, so that pulsar-lite neither sends them again nor keeps track of
        // them (a stashed message is acknowledged too; the reader holds it for the next
        // read).
        if let Some(id) = consumed {
            let topic = cursor.topic.clone();
            let _ = cursor.consumer.cumulative_ack_with_id(&topic, id).await;
        }
        Ok(out)
    }
}
