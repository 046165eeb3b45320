//! The streams of a namespace, kept in one topic of it (`__cloudstream_streams`), because
//! Pulsar's binary protocol can neither list topics (pulsar-lite never answers the request)
//! nor hold a stream's horizon, partition count or consumers anywhere else.
//!
//! Every change is a JSON entry appended to that topic: a stream created or deleted, a
//! consumer subscribed or forgotten. Every process replays the topic with one rule
//! ([`Streams::apply`]), so all agree on what exists: the first `create` of a name that is
//! not live wins (a second creator finds its entry ignored and answers `StreamExists`), and a
//! stream's topics are named by its generation, so one deleted and made again starts empty
//! even where the broker cannot delete topics. A process keeps one reader at the end of the
//! topic and catches up ([`Catalog::sync`]) before it answers from it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, Producer, Pulsar, SubType, TokioExecutor};

use serde::{Deserialize, Serialize};

use super::consumer_id;
use super::errors::pulsar_error;
use super::options::PulsarOptions;
use crate::{Error, Result};

/// The catalog topic of a namespace.
pub(super) const CATALOG_TOPIC: &str = "__cloudstream_streams";

/// The version of the entries this code writes and understands.
const VERSION: u32 = 1;

/// Where a consumer created through the catalog starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Start {
    /// The oldest record.
    Earliest,
    /// What is appended after it was made.
    Latest,
    /// The first record appended at or after this time (ms since the epoch).
    Time(i64),
}

/// One change to the catalog. Every change to a stream names the base of its topics (its
/// generation), so a change meant for a stream since deleted, or not yet made, is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Change {
    /// A stream made, with the base its creator chose ([`Streams::next_base`]).
    Create {
        stream: String,
        base: String,
        partitions: u32,
        horizon_ms: u64,
        /// Chosen by the creator, to know its create won even if its receipt was lost.
        #[serde(default)]
        nonce: u64,
    },
    /// A stream deleted.
    Delete { stream: String, base: String },
    /// A named consumer made.
    Subscribe {
        stream: String,
        base: String,
        consumer: String,
        start: Start,
    },
    /// A named consumer forgotten.
    Unsubscribe {
        stream: String,
        base: String,
        consumer: String,
    },
    /// Changes nothing: appended by a process that found the catalog empty, so that its
    /// last message id is defined (pulsar-lite breaks the connection that asks for the last
    /// message id of an empty topic).
    Hello,
}

/// An entry of the catalog topic.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    v: u32,
    #[serde(flatten)]
    change: Change,
}

/// Where an entry sits in the catalog topic.
pub(super) type EntryId = (u64, u64);

/// A live stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Live {
    /// The base name of its topics (`NAME`, or `NAME=gN` for its N-th generation): its
    /// partitions are `BASE-partition-0` .. as in a Pulsar partitioned topic.
    pub base: String,
    pub partitions: u32,
    pub horizon_ms: u64,
    /// The entry that made it.
    pub made_by: EntryId,
    /// The nonce of the create that made it.
    pub nonce: u64,
    /// Its named consumers, with where each starts.
    pub consumers: BTreeMap<String, (Start, EntryId)>,
}

/// What the catalog holds: the live streams, and how many generations each name had.
#[derive(Debug, Default, Clone)]
pub(super) struct Streams {
    pub live: BTreeMap<String, Live>,
    generations: BTreeMap<String, u32>,
}

impl Streams {
    /// Applies one entry, the rule every process follows: a create wins if the name is not
    /// live and its base is the name's next generation (its creator saw every change
    /// before it); a change to a stream applies to the generation it names.
    pub(super) fn apply(&mut self, at: EntryId, change: Change) {
        match change {
            Change::Create {
                stream,
                base,
                partitions,
                horizon_ms,
                nonce,
            } => {
                if self.live.contains_key(&stream)
                    || base != self.next_base(&stream)
                    || !(1..=super::MAX_PARTITIONS).contains(&partitions)
                {
                    return;
                }
                *self.generations.entry(stream.clone()).or_insert(0) += 1;
                self.live.insert(
                    stream,
                    Live {
                        base,
                        partitions,
                        horizon_ms,
                        made_by: at,
                        nonce,
                        consumers: BTreeMap::new(),
                    },
                );
            }
            Change::Delete { stream, base } => {
                if self.live.get(&stream).is_some_and(|l| l.base == base) {
                    self.live.remove(&stream);
                }
            }
            Change::Subscribe {
                stream,
                base,
                consumer,
                start,
            } => {
                if let Some(live) = self.live.get_mut(&stream).filter(|l| l.base == base) {
                    live.consumers.entry(consumer).or_insert((start, at));
                }
            }
            Change::Unsubscribe {
                stream,
                base,
                consumer,
            } => {
                if let Some(live) = self.live.get_mut(&stream).filter(|l| l.base == base) {
                    live.consumers.remove(&consumer);
                }
            }
            Change::Hello => {}
        }
    }

    /// The base name of the topics of the stream `stream` made next.
    pub(super) fn next_base(&self, stream: &str) -> String {
        match self.generations.get(stream).map_or(1, |g| g + 1) {
            1 => stream.to_owned(),
            generation => format!("{stream}=g{generation}"),
        }
    }
}

/// The catalog as this process sees it: a reader at the end of the catalog topic, and a
/// producer to append to it.
pub(super) struct Catalog {
    reader: Consumer<Vec<u8>, TokioExecutor>,
    /// The reader has not failed (else the next sync makes a new one).
    reader_ok: bool,
    client: Pulsar<TokioExecutor>,
    topic: String,
    /// A consumer of the subscription that keeps the entries (see [`PIN`]), kept connected
    /// so that the broker never counts the subscription as inactive.
    _pin: Consumer<Vec<u8>, TokioExecutor>,
    producer: Producer<TokioExecutor>,
    /// The last entry applied.
    seen: Option<EntryId>,
    /// The message id of the last entry applied, until it is acknowledged.
    last_id: Option<MessageIdData>,
    /// When the reader last caught up.
    pub synced: Instant,
    pub streams: Streams,
    op_timeout: Duration,
    /// An entry this process cannot apply (corrupt, or of a newer version): every later
    /// call fails with it, rather than going on without the entry.
    broken: Option<String>,
}

/// The durable subscription that keeps the catalog's entries: it never acknowledges, so no
/// retention policy of the namespace removes them (a message TTL on the namespace would:
/// the README says to leave the catalog out of one).
const PIN: &str = "cloudstream-catalog-pin";

impl Catalog {
    /// Opens the catalog of the namespace and replays it.
    pub(super) async fn open(
        client: &Pulsar<TokioExecutor>,
        options: &PulsarOptions,
    ) -> Result<Self> {
        let topic = options.topic(CATALOG_TOPIC);
        // A partitioned catalog (a broker making topics partitioned when first used) would
        // spread the entries over partitions, and their order would be lost.
        let partitions = client
            .lookup_partitioned_topic_number(&topic)
            .await
            .map_err(pulsar_error)?;
        if partitions > 0 {
            return Err(Error::Unsupported {
                operation: format!(
                    "a partitioned {CATALOG_TOPIC} ({partitions} partitions): the catalog must be one topic; make it non-partitioned, or turn off partitioned auto-creation"
                )
                .into(),
                backend: "pulsar",
            });
        }
        // One permit: the pin holds at most one entry, and never acknowledges it.
        let pin = client
            .consumer()
            .with_topic(&topic)
            .with_subscription(PIN)
            .with_subscription_type(SubType::Shared)
            .with_consumer_id(consumer_id())
            .with_batch_size(1)
            .with_options(
                ConsumerOptions::default()
                    .durable(true)
                    .with_receiver_queue_size(1)
                    .with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .map_err(pulsar_error)?;
        let producer = client
            .producer()
            .with_topic(&topic)
            .build()
            .await
            .map_err(pulsar_error)?;
        let mut catalog = Catalog {
            reader: Catalog::reader(client, &topic).await?,
            reader_ok: true,
            client: client.clone(),
            topic,
            _pin: pin,
            producer,
            seen: None,
            last_id: None,
            synced: Instant::now(),
            streams: Streams::default(),
            op_timeout: options.op_timeout,
            broken: None,
        };
        // An empty catalog cannot be asked for its last entry (see `Change::Hello`): a
        // catalog that shows no entry soon gets one.
        let first = tokio::time::timeout(Duration::from_millis(500), catalog.reader.next()).await;
        match first {
            Ok(Some(message)) => catalog.apply(message.map_err(pulsar_error)?)?,
            Ok(None) => {
                return Err(Error::Unavailable(
                    "the stream catalog's reader closed".into(),
                ))
            }
            Err(_) => {
                catalog.append(Change::Hello).await?;
            }
        }
        catalog.sync().await?;
        Ok(catalog)
    }

    /// A reader of the catalog topic from its first entry (entries applied already are
    /// skipped by their id).
    async fn reader(
        client: &Pulsar<TokioExecutor>,
        topic: &str,
    ) -> Result<Consumer<Vec<u8>, TokioExecutor>> {
        client
            .consumer()
            .with_topic(topic)
            .with_subscription(format!(
                "cloudstream-catalog-{:016x}",
                rand::random::<u64>()
            ))
            .with_subscription_type(SubType::Failover)
            .with_consumer_id(consumer_id())
            .with_options(
                ConsumerOptions::default()
                    .durable(false)
                    .with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .map_err(pulsar_error)
    }

    /// Catches up with every entry appended before the call.
    pub(super) async fn sync(&mut self) -> Result<()> {
        self.check()?;
        if !self.reader_ok {
            // The last reader failed (a broker gone longer than the client's reconnects):
            // a new one replays from the first entry, skipping what was applied.
            self.reader = Catalog::reader(&self.client, &self.topic).await?;
            self.reader_ok = true;
        }
        let synced = self.catch_up().await;
        if synced.is_err() {
            self.reader_ok = false;
        }
        synced
    }

    async fn catch_up(&mut self) -> Result<()> {
        let asked = Instant::now();
        // Apply what the reader holds first: the pulsar crate's consumer cannot answer while
        // its queue is full (see `read.rs`).
        // At most a queue's worth: pulsar-lite sends what is not acknowledged yet again, so
        // a reader may never run dry.
        for _ in 0..=super::read::READ_PREFETCH {
            match self.reader.next().now_or_never() {
                Some(Some(message)) => self.apply(message.map_err(pulsar_error)?)?,
                _ => break,
            }
        }
        self.acknowledge().await;
        let last = match self.reader.get_last_message_id().await {
            Ok(ids) => ids.first().map(|id| (id.ledger_id, id.entry_id)),
            Err(e) => return Err(pulsar_error(e)),
        };
        if let Some(last) = last.filter(|&(l, e)| l != u64::MAX && e != u64::MAX) {
            self.read_to(last).await?;
        }
        self.synced = asked;
        Ok(())
    }

    /// Applies entries until entry `last` is applied.
    async fn read_to(&mut self, last: EntryId) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.op_timeout;
        let mut repeats = 0u64;
        while self.seen.is_none_or(|seen| seen < last) {
            let message = tokio::time::timeout_at(deadline, self.reader.next())
                .await
                .map_err(|_| {
                    Error::Unavailable("the stream catalog did not answer in time".into())
                })?
                .ok_or_else(|| Error::Unavailable("the stream catalog's reader closed".into()))?
                .map_err(pulsar_error)?;
            let before = self.seen;
            self.apply(message)?;
            if self.seen == before {
                // pulsar-lite sends what is not acknowledged again, as fast as it is taken:
                // acknowledge what was applied, and let other tasks run.
                repeats += 1;
                if repeats % 64 == 1 {
                    self.acknowledge().await;
                    tokio::task::yield_now().await;
                }
            }
        }
        self.acknowledge().await;
        Ok(())
    }

    /// Acknowledges the entries applied, so that pulsar-lite stops sending them again.
    async fn acknowledge(&mut self) {
        if let Some(id) = self.last_id.take() {
            let topic = self.reader.topics().into_iter().next().unwrap_or_default();
            let _ = self.reader.cumulative_ack_with_id(&topic, id).await;
        }
    }

    /// The error of an entry this process could not apply, if there was one.
    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::Corrupt(why.clone().into())),
            None => Ok(()),
        }
    }

    /// Applies one entry of the catalog topic; one that cannot be applied breaks the catalog
    /// for this process (see [`Catalog::broken`]).
    fn apply(&mut self, message: pulsar::consumer::Message<Vec<u8>>) -> Result<()> {
        let applied = self.apply_entry(message);
        if let Err(e) = &applied {
            self.broken = Some(e.to_string());
        }
        applied
    }

    fn apply_entry(&mut self, message: pulsar::consumer::Message<Vec<u8>>) -> Result<()> {
        {
            let id = message.message_id();
            let at = (id.ledger_id, id.entry_id);
            if self.seen.is_some_and(|seen| at <= seen) {
                return Ok(()); // delivered again (pulsar-lite redelivers what is not acknowledged)
            }
            self.last_id = Some(id.clone());
            let entry: Entry = serde_json::from_slice(&message.payload.data).map_err(|e| {
                Error::Corrupt(
                    format!(
                        "entry {at:?} of the Pulsar topic {CATALOG_TOPIC} is not a catalog entry: {e}"
                    )
                    .into(),
                )
            })?;
            if entry.v != VERSION {
                return Err(Error::Unsupported {
                    operation: format!(
                        "catalog entries of version {} (a newer cloudstream wrote them; this one knows {VERSION})",
                        entry.v
                    )
                    .into(),
                    backend: "pulsar",
                });
            }
            self.streams.apply(at, entry.change);
            self.seen = Some(at);
        }
        Ok(())
    }

    /// Appends a change and catches up with it: the entry's id, for the caller to see
    /// whether its change won.
    pub(super) async fn append(&mut self, change: Change) -> Result<EntryId> {
        self.check()?;
        let payload = serde_json::to_vec(&Entry { v: VERSION, change })
            .map_err(|e| Error::Backend(Box::new(e)))?;
        let sent = self
            .producer
            .send_non_blocking(payload)
            .await
            .map_err(pulsar_error)?;
        let receipt = match tokio::time::timeout(self.op_timeout, sent).await {
            Ok(receipt) => receipt.map_err(pulsar_error)?,
            Err(_) => {
                // The entry may be stored or not: the caller finds out by catching up. The
                // producer is made anew, in case it was what stopped.
                self.producer = self
                    .client
                    .producer()
                    .with_topic(&self.topic)
                    .build()
                    .await
                    .map_err(pulsar_error)?;
                return Err(Error::Unavailable(
                    "the stream catalog sent no receipt in time".into(),
                ));
            }
        };
        let id: MessageIdData = receipt
            .message_id
            .ok_or_else(|| Error::Unavailable("the broker sent no message id".into()))?;
        let at = (id.ledger_id, id.entry_id);
        if let Err(e) = self.read_to(at).await {
            self.reader_ok = false;
            return Err(e);
        }
        self.synced = Instant::now();
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(stream: &str, base: &str) -> Change {
        Change::Create {
            stream: stream.into(),
            base: base.into(),
            partitions: 2,
            horizon_ms: 60_000,
            nonce: 7,
        }
    }

    fn delete(stream: &str, base: &str) -> Change {
        Change::Delete {
            stream: stream.into(),
            base: base.into(),
        }
    }

    #[test]
    fn the_first_create_wins_and_generations_name_the_topics() {
        let mut s = Streams::default();
        s.apply((0, 0), create("a", "a"));
        s.apply((0, 1), create("a", "a"));
        assert_eq!(s.live["a"].made_by, (0, 0), "the second create lost");
        assert_eq!(s.live["a"].base, "a");
        s.apply((0, 2), delete("a", "a"));
        assert!(s.live.is_empty());
        assert_eq!(s.next_base("a"), "a=g2");
        s.apply((0, 3), create("a", "a=g2"));
        assert_eq!(
            (s.live["a"].base.as_str(), s.live["a"].made_by),
            ("a=g2", (0, 3))
        );
        s.apply((0, 4), Change::Hello);
        assert_eq!(s.live.len(), 1);
    }

    #[test]
    fn changes_apply_to_the_generation_they_name() {
        let mut s = Streams::default();
        // A creator that did not see a create and a delete of the name chose a stale base.
        s.apply((0, 0), create("a", "a"));
        s.apply((0, 1), delete("a", "a"));
        s.apply((0, 2), create("a", "a"));
        assert!(s.live.is_empty(), "a create with a stale base is ignored");
        s.apply((0, 3), create("a", "a=g2"));
        // A delete meant for the first generation leaves the second alone.
        s.apply((0, 4), delete("a", "a"));
        assert_eq!(s.live["a"].base, "a=g2");
        // Partition counts out of range are ignored.
        s.apply(
            (0, 5),
            Change::Create {
                stream: "b".into(),
                base: "b".into(),
                partitions: u32::MAX,
                horizon_ms: 1,
                nonce: 1,
            },
        );
        assert!(!s.live.contains_key("b"));
    }

    #[test]
    fn consumers_belong_to_a_generation() {
        let mut s = Streams::default();
        let sub = |c: &str, base: &str, start| Change::Subscribe {
            stream: "a".into(),
            base: base.into(),
            consumer: c.into(),
            start,
        };
        s.apply((0, 0), sub("lost", "a", Start::Earliest)); // no such stream yet
        s.apply((0, 1), create("a", "a"));
        s.apply((0, 2), sub("c", "a", Start::Time(5)));
        s.apply((0, 3), sub("c", "a", Start::Latest));
        assert_eq!(s.live["a"].consumers.len(), 1);
        assert_eq!(s.live["a"].consumers["c"], (Start::Time(5), (0, 2)));
        s.apply((0, 4), delete("a", "a"));
        s.apply((0, 5), create("a", "a=g2"));
        assert!(
            s.live["a"].consumers.is_empty(),
            "a new generation has no consumers"
        );
        s.apply((0, 6), sub("c", "a", Start::Earliest));
        assert!(s.live["a"].consumers.is_empty(), "meant for the first");
        s.apply((0, 7), sub("c", "a=g2", Start::Earliest));
        s.apply(
            (0, 8),
            Change::Unsubscribe {
                stream: "a".into(),
                base: "a=g2".into(),
                consumer: "c".into(),
            },
        );
        assert!(s.live["a"].consumers.is_empty());
    }

    #[test]
    fn entries_are_versioned_json() {
        let json = serde_json::to_string(&Entry {
            v: VERSION,
            change: create("a", "a"),
        })
        .expect("json");
        assert_eq!(
            json,
            r#"{"v":1,"op":"create","stream":"a","base":"a","partitions":2,"horizon_ms":60000,"nonce":7}"#
        );
    }
}
