//! Appends: one producer per partition topic, kept for the next append. An append sends its
//! events without waiting, up to [`IN_FLIGHT`] unanswered, so a batch costs about one round
//! trip's wait, not one per event; the receipts' message ids are the positions.

use std::sync::Arc;

use std::collections::VecDeque;

use pulsar::{producer, CommandSendReceipt, Producer, ProducerOptions, TokioExecutor};

use super::errors::pulsar_error;
use super::{sequence_of, PulsarBackend, Registry, CATALOG_FRESHNESS};
use crate::event::to_millis;
use crate::{Error, Event, Position, Result};

/// Most events in one append.
pub(super) const MAX_BATCH_RECORDS: usize = 10_000;
/// Most bytes in one append.
pub(super) const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Most sends of one append awaiting their receipts.
pub(super) const IN_FLIGHT: usize = 1_000;

type Shared = tokio::sync::Mutex<Producer<TokioExecutor>>;

/// The producers of the partition topics appended to, by topic.
#[derive(Default)]
pub(super) struct Producers(Registry<Shared>);

impl Producers {
    /// Drops the producers of these topics (their stream was deleted).
    pub(super) fn forget(&self, topics: &[String]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for topic in topics {
            map.remove(topic);
        }
    }

    fn get(&self, topic: &str) -> Option<Arc<Shared>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned()
    }

    fn put(&self, topic: &str, producer: Arc<Shared>) -> Arc<Shared> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_owned())
            .or_insert(producer)
            .clone()
    }

    fn drop_if(&self, topic: &str, producer: &Arc<Shared>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(topic).is_some_and(|p| Arc::ptr_eq(p, producer)) {
            map.remove(topic);
        }
    }
}

/// The message of an event: its key as the partition key, its time as the event time, its
/// headers as properties.
fn message(event: &Event) -> producer::Message {
    producer::Message {
        payload: event.payload.to_vec(),
        properties: event
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        partition_key: event.key.clone(),
        event_time: event
            .time
            .map(to_millis)
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|&ms| ms > 0),
        ..Default::default()
    }
}

impl PulsarBackend {
    /// Sends every event and awaits every receipt, keeping at most [`IN_FLIGHT`] unanswered.
    /// The producer stays locked until the last send is queued (awaiting the oldest receipts
    /// in between past [`IN_FLIGHT`]), so an append's events are stored in order; the last
    /// receipts are awaited unlocked.
    async fn send_all(
        &self,
        producer: &Shared,
        events: &[Event],
    ) -> std::result::Result<Vec<CommandSendReceipt>, pulsar::Error> {
        let mut receipts = Vec::with_capacity(events.len());
        let mut pending = VecDeque::new();
        {
            let mut p = producer.lock().await;
            for event in events {
                pending.push_back(p.send_non_blocking(message(event)).await?);
                if pending.len() >= IN_FLIGHT {
                    if let Some(oldest) = pending.pop_front() {
                        receipts.push(self.receipt(oldest).await?);
                    }
                }
            }
        }
        for receipt in pending {
            receipts.push(self.receipt(receipt).await?);
        }
        Ok(receipts)
    }

    /// A send's receipt, or an error once `op_timeout` passed without one (a broker that
    /// stopped answering a producer must not hold the append for good).
    async fn receipt(
        &self,
        sent: pulsar::producer::SendFuture,
    ) -> std::result::Result<CommandSendReceipt, pulsar::Error> {
        tokio::time::timeout(self.options.op_timeout, sent)
            .await
            .unwrap_or_else(|_| {
                Err(pulsar::Error::Custom(format!(
                    "no receipt from the broker within {:?}",
                    self.options.op_timeout
                )))
            })
    }

    async fn producer(&self, topic: &str) -> Result<Arc<Shared>> {
        if let Some(p) = self.producers.get(topic) {
            return Ok(p);
        }
        let producer = self
            .client
            .producer()
            .with_topic(topic)
            .with_options(ProducerOptions {
                // Batching off: a message is an entry, acknowledged on its own (pulsar-lite
                // acknowledges a whole batch when one of its messages is).
                batch_size: None,
                // A full queue to the broker waits for room rather than failing the send.
                block_queue_if_full: true,
                ..Default::default()
            })
            .build()
            .await
            .map_err(pulsar_error)?;
        Ok(self
            .producers
            .put(topic, Arc::new(tokio::sync::Mutex::new(producer))))
    }

    /// Writes the marker that begins every partition topic of a stream (see
    /// [`super::MARKER`]).
    /// A marker whose receipt does not come is sent again, on a new producer (a second
    /// marker is skipped like the first).
    pub(super) async fn mark(&self, topic: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            let producer = self.producer(topic).await?;
            let marker = producer::Message {
                properties: [(super::MARKER.to_owned(), "1".to_owned())].into(),
                ..Default::default()
            };
            let sent = producer.lock().await.send_non_blocking(marker).await;
            let stored = match sent {
                Ok(sent) => self.receipt(sent).await.map(drop),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 3 => return Err(pulsar_error(e)),
                Err(_) => self.producers.drop_if(topic, &producer),
            }
        }
    }

    /// Appends events to one partition (the `Backend::append` primitive). Pulsar has no
    /// atomic write of several messages without transactions: when an append fails part
    /// way, some of its events may be stored (those sent before the failure).
    pub(super) async fn produce(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        let live = self.live(stream, CATALOG_FRESHNESS).await?;
        let topic = self.partition_topic(stream, &live, partition)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(e) = events
            .iter()
            .find(|e| e.headers.contains_key(super::MARKER))
        {
            return Err(Error::InvalidArgument(format!(
                "header {} is cloudstream's own on Pulsar (it marks the start of a topic), found on an event of {} bytes",
                super::MARKER,
                e.payload.len()
            )));
        }
        let producer = self.producer(&topic).await?;
        let receipts = match self.send_all(&producer, events).await {
            Ok(r) => r,
            Err(e) => {
                self.producers.drop_if(&topic, &producer);
                return Err(pulsar_error(e));
            }
        };
        receipts
            .into_iter()
            .map(|r| {
                let id = r
                    .message_id
                    .ok_or_else(|| Error::Unavailable("the broker sent no message id".into()))?;
                Ok(Position::new(partition, sequence_of(&id)))
            })
            .collect()
    }
}
