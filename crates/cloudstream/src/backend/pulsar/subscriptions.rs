//! Named consumers as Failover subscriptions of every partition topic, with individual
//! acknowledgements (the implicit checkpoint). Each consumer name has one Pulsar consumer
//! per partition topic in a process (each with a random consumer id: see
//! [`super::consumer_id`]); a pull takes what they have delivered. Acknowledgements are queued by the
//! synchronous [`Acker`] and sent by whoever holds the Pulsar consumer next (a pull, a
//! settle, or a task started for them). A record given back makes the next pull subscribe
//! again, so the broker delivers every unacknowledged record again, in order: a Failover
//! subscription has no redelivery of single messages (pulsar-lite ignores the request).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{ConsumerOptions, SubType};
use tokio::sync::Notify;

use super::catalog::{Change, Live, Start};
use super::errors::pulsar_error;
use super::read::to_record;
use super::{
    consumer_id, is_marker, PulsarBackend, PulsarConsumer, Registry, CATALOG_FRESHNESS,
    UNSUBSCRIBE_WAIT,
};
use crate::backend::settle::{Settling, SETTLE_WAIT};
use crate::backend::{Acker, Delivery, Subscriptions};
use crate::consumer::StartAt;
use crate::event::{from_millis, to_millis};
use crate::{Error, Result};

/// How long a pull that has records waits for the next before it answers.
const BURST_GAP: Duration = Duration::from_millis(20);

/// One consumer name's subscription, as this process holds it.
pub(super) struct Subscriber {
    name: String,
    /// The stream's generation these consumers read (see `catalog.rs`).
    base: String,
    /// This process's name among the subscription's consumers, the same on every
    /// subscribe, so Failover keeps its choice of active consumer across them.
    member: String,
    /// The full names of the stream's partition topics.
    topics: Vec<String>,
    /// Records appended before this are acknowledged unseen (a consumer made at a time).
    skip_before: Option<SystemTime>,
    initial: InitialPosition,
    /// One consumer per partition topic, by partition; empty until subscribed.
    consumer: tokio::sync::Mutex<Vec<PulsarConsumer>>,
    /// Acknowledgements (`true`) and records given back (`false`) not yet sent.
    acks: Mutex<VecDeque<(String, MessageIdData, bool)>>,
    /// Wakes a pull that waits, to send the queued acknowledgements.
    queued: Notify,
    /// A task to send them is on its way.
    flushing: AtomicBool,
    /// A record was given back: subscribe again before the next pull.
    reopen: AtomicBool,
    /// The last record delivered of each partition since the consumers were made: one
    /// delivered again (pulsar-lite redelivers what is not acknowledged yet) is skipped.
    delivered: Mutex<HashMap<u32, crate::Sequence>>,
    settling: Arc<Settling>,
}

/// The subscriptions of this process, by stream and consumer name.
#[derive(Default)]
pub(super) struct Subscribers {
    map: Registry<Subscriber>,
    settling: Arc<Settling>,
}

fn key(stream: &str, consumer: &str) -> String {
    format!("{stream}\n{consumer}")
}

impl Subscribers {
    fn get(&self, stream: &str, consumer: &str) -> Option<Arc<Subscriber>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(stream, consumer))
            .cloned()
    }

    fn remove(&self, stream: &str, consumer: &str) -> Option<Arc<Subscriber>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(stream, consumer))
    }

    fn all(&self) -> Vec<Arc<Subscriber>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Forgets the subscriptions of a deleted stream.
    pub(super) fn forget_stream(&self, stream: &str) {
        let prefix = key(stream, "");
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

/// The partition a partition topic's name ends with.
fn partition_of(topic: &str) -> Option<u32> {
    topic.rsplit_once("-partition-")?.1.parse().ok()
}

impl Subscriber {
    /// Subscribes (again). The consumers held before are closed first, so the broker hands
    /// their unacknowledged records to the new ones (a Failover subscription delivers to
    /// one consumer at a time); each is emptied before its close, which it could not answer
    /// with a full queue, and dropped if the close takes longer than `op_timeout`.
    async fn open(&self, backend: &PulsarBackend, held: &mut Vec<PulsarConsumer>) -> Result<()> {
        let closing = held.drain(..).map(|mut old| async move {
            super::drain(&mut old);
            let _ = tokio::time::timeout(backend.options.op_timeout, old.close()).await;
        });
        futures::future::join_all(closing).await;
        let mut made = Vec::with_capacity(self.topics.len());
        for topic in &self.topics {
            let consumer = backend
                .client
                .consumer()
                .with_topic(topic)
                .with_subscription(&self.name)
                .with_subscription_type(SubType::Failover)
                .with_consumer_name(&self.member)
                .with_consumer_id(consumer_id())
                .with_options(
                    ConsumerOptions::default()
                        .durable(true)
                        .with_initial_position(self.initial.clone()),
                )
                .with_unacked_message_resend_delay(None)
                .build()
                .await
                .map_err(pulsar_error)?;
            made.push(consumer);
        }
        drop(std::mem::replace(held, made));
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    /// Sends the queued acknowledgements through the consumers of their partitions, in
    /// order. Each leaves the queue only once sent, so a flush cancelled part way loses none
    /// (one may be sent twice, which the broker ignores).
    async fn flush(&self, consumers: &mut [PulsarConsumer]) {
        self.flushing.store(false, Ordering::Release);
        loop {
            let next = self
                .acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .front()
                .cloned();
            let Some((topic, id, ok)) = next else { break };
            let sent = if !ok {
                self.reopen.store(true, Ordering::Release);
                Ok(())
            } else {
                match partition_of(&topic).and_then(|p| consumers.get_mut(p as usize)) {
                    Some(consumer) => consumer
                        .ack_with_id(&topic, id)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no consumer of {topic} to acknowledge with")),
                }
            };
            self.acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match sent {
                Ok(()) => self.settling.end(1),
                Err(why) => {
                    tracing::warn!(error = %why, "a Pulsar acknowledgement was not sent; the record comes again");
                    self.settling.failed(1, why);
                }
            }
        }
    }

    /// Queues an acknowledgement, and starts a task to send it unless one is on its way.
    fn queue(self: &Arc<Self>, topic: String, id: MessageIdData, ok: bool) {
        self.settling.begin();
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((topic, id, ok));
        self.queued.notify_waiters();
        if !self.flushing.swap(true, Ordering::AcqRel) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let me = self.clone();
                runtime.spawn(async move {
                    let mut held = me.consumer.lock().await;
                    me.flush(&mut held).await;
                });
            }
        }
    }

    fn delivery(self: &Arc<Self>, message: &Message<Vec<u8>>) -> Result<Option<Delivery>> {
        let partition = partition_of(&message.topic).ok_or_else(|| {
            Error::Backend(format!("a message of an unknown topic {}", message.topic).into())
        })?;
        let record = to_record(partition, message);
        {
            let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            if delivered
                .get(&partition)
                .is_some_and(|last| *last >= record.position.sequence)
            {
                return Ok(None);
            }
            delivered.insert(partition, record.position.sequence);
        }
        let (topic, id) = (message.topic.clone(), message.message_id().clone());
        if is_marker(message) || self.skip_before.is_some_and(|t| record.append_time < t) {
            self.queue(topic, id, true);
            return Ok(None);
        }
        let me = self.clone();
        let ack = Acker::new(Box::new(move |ok| me.queue(topic, id, ok)));
        Ok(Some(Delivery { record, ack }))
    }
}

impl PulsarBackend {
    /// This process's subscriber for `consumer` of `stream`, the consumer recorded in the
    /// catalog (starting at `start`) and subscribed on first use.
    async fn subscriber(
        &self,
        stream: &str,
        consumer: &str,
        start: StartAt,
    ) -> Result<Arc<Subscriber>> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let mut live = self.live(stream, CATALOG_FRESHNESS).await?;
        if let Some(s) = self.subscriptions.get(stream, consumer) {
            if s.base == live.base {
                return Ok(s);
            }
            // The stream was deleted and made again (by another process): a subscriber of
            // the new generation replaces it.
            self.subscriptions.remove(stream, consumer);
        }
        if !live.consumers.contains_key(consumer) {
            let start = match start {
                StartAt::Earliest => Start::Earliest,
                StartAt::Latest => Start::Latest,
                StartAt::AtTime(t) => Start::Time(to_millis(t)),
            };
            let mut catalog = self.catalog.lock().await;
            catalog
                .append(Change::Subscribe {
                    stream: stream.to_owned(),
                    base: live.base.clone(),
                    consumer: consumer.to_owned(),
                    start,
                })
                .await?;
            live =
                catalog
                    .streams
                    .live
                    .get(stream)
                    .cloned()
                    .ok_or_else(|| Error::StreamNotFound {
                        stream: stream.to_owned(),
                    })?;
        }
        let (start, _) =
            live.consumers
                .get(consumer)
                .copied()
                .ok_or_else(|| Error::ConsumerNotFound {
                    stream: stream.to_owned(),
                    consumer: consumer.to_owned(),
                })?;
        let topics = (0..live.partitions)
            .map(|p| self.partition_topic(stream, &live, p))
            .collect::<Result<Vec<_>>>()?;
        let subscriber = Arc::new(Subscriber {
            name: consumer.to_owned(),
            base: live.base.clone(),
            member: format!("cloudstream-{:016x}", rand::random::<u64>()),
            topics,
            skip_before: match start {
                Start::Time(ms) => Some(from_millis(ms)),
                _ => None,
            },
            initial: match start {
                Start::Latest => InitialPosition::Latest,
                _ => InitialPosition::Earliest,
            },
            consumer: tokio::sync::Mutex::new(Vec::new()),
            acks: Mutex::default(),
            queued: Notify::new(),
            flushing: AtomicBool::new(false),
            reopen: AtomicBool::new(false),
            delivered: Mutex::default(),
            settling: self.subscriptions.settling.clone(),
        });
        {
            let mut held = subscriber.consumer.lock().await;
            subscriber.open(self, &mut held).await?;
        }
        let mut map = self
            .subscriptions
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(map
            .entry(key(stream, consumer))
            .or_insert(subscriber)
            .clone())
    }

    /// Forgets a consumer: its catalog entry and its subscription (the `delete_consumer`
    /// primitive); whether it existed.
    pub(super) async fn forget_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let live = self.live(stream, std::time::Duration::ZERO).await?;
        if !live.consumers.contains_key(consumer) {
            return Ok(false);
        }
        // The subscription goes first, so a failure leaves the consumer listed, for a retry.
        self.unsubscribe_everywhere(stream, &live, consumer).await?;
        self.catalog
            .lock()
            .await
            .append(Change::Unsubscribe {
                stream: stream.to_owned(),
                base: live.base.clone(),
                consumer: consumer.to_owned(),
            })
            .await?;
        Ok(true)
    }

    /// Removes subscription `consumer` from every partition topic of a stream, dropping
    /// this process's consumers of it first.
    pub(super) async fn unsubscribe_everywhere(
        &self,
        stream: &str,
        live: &Live,
        consumer: &str,
    ) -> Result<()> {
        if let Some(s) = self.subscriptions.remove(stream, consumer) {
            drop(std::mem::take(&mut *s.consumer.lock().await));
        }
        for p in 0..live.partitions {
            let topic = self.partition_topic(stream, live, p)?;
            // One permit: the consumer's queue cannot fill, so it answers the unsubscribe.
            let mut c = self
                .client
                .consumer()
                .with_topic(topic)
                .with_subscription(consumer)
                .with_subscription_type(SubType::Failover)
                .with_consumer_id(consumer_id())
                .with_batch_size(1)
                .build::<Vec<u8>>()
                .await
                .map_err(pulsar_error)?;
            tokio::time::timeout(UNSUBSCRIBE_WAIT, c.unsubscribe())
                .await
                .map_err(|_| {
                    Error::Unavailable("Pulsar did not remove the subscription in time".into())
                })?
                .map_err(pulsar_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriptions for PulsarBackend {
    async fn settle(&self) -> Result<()> {
        let wait = self.subscriptions.settling.wait(SETTLE_WAIT);
        for s in self.subscriptions.all() {
            s.queued.notify_waiters();
            if let Ok(mut held) = s.consumer.try_lock() {
                s.flush(&mut held).await;
            }
        }
        wait.await
    }

    async fn subscribe(&self, stream: &str, consumer: &str, start: StartAt) -> Result<()> {
        self.subscriber(stream, consumer, start).await.map(drop)
    }

    async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        start: StartAt,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let sub = self.subscriber(stream, consumer, start).await?;
        let mut held = sub.consumer.lock().await;
        sub.flush(&mut held).await;
        if held.is_empty() || sub.reopen.swap(false, Ordering::AcqRel) {
            sub.open(self, &mut held).await?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        // Messages taken that were not handed out (markers, records before the start, copies
        // pulsar-lite sent again): a pull that meets only those still ends at its deadline,
        // and after a queue's worth of them.
        let mut passed = 0;
        while out.len() < max.max(1) {
            if tokio::time::Instant::now() >= deadline && passed > 0
                || passed > super::read::READ_PREFETCH as usize
            {
                break;
            }
            let next = if out.is_empty() {
                let woken = sub.queued.notified();
                let mut all = futures::stream::select_all(held.iter_mut());
                tokio::select! {
                    biased;
                    m = all.next() => Some(m),
                    _ = woken => None,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            } else {
                // More of what is waiting: the broker sends a consumer's permits' worth in
                // bursts, so a short pause in them is not the end of what is there.
                let gap = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(BURST_GAP);
                let mut all = futures::stream::select_all(held.iter_mut());
                match tokio::time::timeout(gap, all.next()).await {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            let message = match next {
                None => {
                    sub.flush(&mut held).await;
                    continue;
                }
                Some(None) => {
                    // Every consumer ended (the client gave up reconnecting): the next pull
                    // subscribes again.
                    held.clear();
                    return Err(Error::Unavailable("the Pulsar consumers closed".into()));
                }
                Some(Some(m)) => m.map_err(pulsar_error)?,
            };
            match sub.delivery(&message)? {
                Some(delivery) => out.push(delivery),
                None => passed += 1,
            }
        }
        sub.flush(&mut held).await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_read_off_topic_names() {
        assert_eq!(
            partition_of("persistent://public/default/a-b-partition-12"),
            Some(12)
        );
        assert_eq!(
            partition_of("persistent://public/default/a=g2-partition-0"),
            Some(0)
        );
        assert_eq!(partition_of("persistent://public/default/a"), None);
    }
}
