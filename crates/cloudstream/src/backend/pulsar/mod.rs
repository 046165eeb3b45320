//! `pulsar://`: Apache Pulsar, over its binary protocol (the `pulsar` crate).
//!
//! | cloudstream | Pulsar |
//! |---|---|
//! | stream `S` | the topics `S-partition-0` .. `S-partition-(P-1)` of the URL's namespace, laid out as the partitions of a Pulsar partitioned topic `S` (`S=gN-partition-..` for the N-th stream of that name made after deletes) |
//! | what streams exist, their partitions and horizon, their consumers | entries of the topic `__cloudstream_streams`, replayed by every process (`catalog.rs`): the binary protocol cannot list topics or hold these |
//! | horizon | with `admin=URL`: the partitioned topic made through the admin REST API, its retention set to the horizon there (not verified against a broker); with `retention=broker`: recorded, and the namespace's retention policy keeps the records |
//! | append to partition N | one producer per partition topic, without batching: one message per event, all sent before any is awaited, every receipt awaited before the call answers |
//! | event key, time, headers | the message's partition key, event time (ms) and properties |
//! | (none) | a marker message (property `cloudstream-marker`) first in every partition topic, so no topic of a stream is empty: reads skip it, consumers acknowledge it unseen |
//! | sequence | the message id within its partition topic: (ledger, entry, batch index + 1), as three limbs of the 256-bit sequence, so sequences rise with the topic's ledgers |
//! | `Earliest` / `At` / `After` | a non-durable reader of the partition topic starting at the oldest message / at the message id, records before the asked position skipped |
//! | `AtTime` | a reader from the oldest message, records published before the time skipped (the binary protocol's seek by time is not used: pulsar-lite does not dispatch after it) |
//! | `Latest` | a reader at the topic's end |
//! | consumer `NAME` | a Failover subscription `NAME` of every partition topic (each partition is read by one process at a time, in order), individual acknowledgements: acknowledging is the checkpoint |
//!
//! A read keeps its reader for the next read that continues where it stopped, so a
//! catch-up read costs one reader, not one per call. Durability is the broker's: a message
//! is acknowledged to cloudstream once the broker has persisted it (BookKeeper's quorum on
//! Pulsar, RocksDB on pulsar-lite).

mod admin;
mod catalog;
mod errors;
mod options;
mod produce;
mod read;
mod subscriptions;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pulsar::{ConnectionRetryOptions, OperationRetryOptions, Pulsar, TokioExecutor};

use self::catalog::{Catalog, Change, Live};
pub use self::options::{PulsarOptions, Retention};
use super::{
    Backend, Capabilities, ConsumerInfo, Consumption, PartitionInfo, PartitionStart, ReadOptions,
    StreamConfig, StreamInfo,
};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result};

/// Most partitions of a stream.
pub(super) const MAX_PARTITIONS: u32 = 256;
/// Shortest and longest horizon (Pulsar's retention is set in minutes).
const HORIZONS: (Duration, Duration) = (
    Duration::from_secs(60),
    Duration::from_secs(10 * 365 * 24 * 3600),
);
/// Largest message the broker takes by default (`maxMessageSize`, 5 MiB), less room for the
/// message's metadata.
const MAX_MESSAGE_BYTES: usize = 5 * 1024 * 1024 - 64 * 1024;
/// How fresh the catalog must be for appends and reads (lifecycle calls always catch up).
const CATALOG_FRESHNESS: Duration = Duration::from_secs(1);

/// A Pulsar broker (or cluster) as a backend.
pub struct PulsarBackend {
    options: PulsarOptions,
    client: Pulsar<TokioExecutor>,
    catalog: tokio::sync::Mutex<Catalog>,
    /// The admin REST API, where the URL names it.
    admin: Option<admin::Admin>,
    producers: produce::Producers,
    readers: read::Readers,
    subscriptions: subscriptions::Subscribers,
}

impl std::fmt::Debug for PulsarBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PulsarBackend {
    /// Connects, and replays the namespace's stream catalog.
    pub async fn connect(options: PulsarOptions) -> Result<Self> {
        let client = Pulsar::builder(options.connect.as_str(), TokioExecutor)
            .with_operation_retry_options(OperationRetryOptions {
                operation_timeout: options.op_timeout,
                retry_delay: Duration::from_millis(200),
                max_retries: Some(3),
            })
            // Room for a full window of one append's sends (and a little more) on the way.
            .with_outbound_channel_size(2 * produce::IN_FLIGHT)
            .with_connection_retry_options(ConnectionRetryOptions {
                connection_timeout: Duration::from_secs(5),
                max_retries: 3,
                ..Default::default()
            })
            .build()
            .await
            .map_err(|e| Error::Unavailable(format!("pulsar://{}: {e}", options.host).into()))?;
        let catalog = Catalog::open(&client, &options).await?;
        let admin = match &options.retention {
            Retention::Admin(base) => Some(admin::Admin::new(base, options.op_timeout)?),
            _ => None,
        };
        Ok(PulsarBackend {
            catalog: tokio::sync::Mutex::new(catalog),
            admin,
            producers: produce::Producers::default(),
            readers: read::Readers::default(),
            subscriptions: subscriptions::Subscribers::default(),
            options,
            client,
        })
    }

    /// Stream `stream` as the catalog has it, caught up within `freshness`;
    /// [`Error::StreamNotFound`] if it is not live.
    async fn live(&self, stream: &str, freshness: Duration) -> Result<Live> {
        cloudstream_log::validate_name("stream", stream)?;
        let mut catalog = self.catalog.lock().await;
        if catalog.synced.elapsed() > freshness || !catalog.streams.live.contains_key(stream) {
            catalog.sync().await?;
        }
        catalog
            .streams
            .live
            .get(stream)
            .cloned()
            .ok_or_else(|| Error::StreamNotFound {
                stream: stream.to_owned(),
            })
    }

    /// The full name of partition `partition`'s topic; [`Error::PartitionNotFound`] if the
    /// stream has no such partition.
    fn partition_topic(&self, stream: &str, live: &Live, partition: u32) -> Result<String> {
        if partition >= live.partitions {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions: live.partitions,
            });
        }
        Ok(self
            .options
            .topic(&format!("{}-partition-{partition}", live.base)))
    }

    fn info(&self, name: &str, live: &Live) -> StreamInfo {
        StreamInfo {
            name: name.to_owned(),
            horizon_ms: live.horizon_ms,
            partitions: (0..live.partitions)
                .map(|p| PartitionInfo {
                    partition: p,
                    id: format!("{}-partition-{p}", live.base),
                    earliest: None,
                    next: None,
                    bytes: None,
                })
                .collect(),
            resource: self.options.topic(&live.base),
            details: BTreeMap::from([
                ("broker".to_owned(), self.options.host.clone()),
                (
                    "retention".to_owned(),
                    match self.admin {
                        Some(_) => "the topic's, set through the admin API",
                        None => "the namespace's retention policy",
                    }
                    .to_owned(),
                ),
                ("consumers".to_owned(), live.consumers.len().to_string()),
            ]),
        }
    }

    async fn create(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        config.check("Pulsar", HORIZONS, MAX_PARTITIONS)?;
        if self.options.retention == Retention::Unset {
            return Err(Error::Unsupported {
                operation: "setting a stream's horizon as the topics' retention: Pulsar's binary protocol cannot; name the admin REST API (admin=http://HOST:8080), or add retention=broker to the URL to let the namespace's retention policy keep the records".into(),
                backend: "pulsar",
            });
        }
        // A create whose base went stale (another process made and deleted the name in the
        // meantime) is ignored by the catalog's rule, and one whose receipt was lost may or
        // may not be stored: catch up and try again, a few times. The nonce tells whether
        // the stream that is live is this create's.
        let nonce = rand::random::<u64>();
        let mut last_error = None;
        for _ in 0..3 {
            let base = {
                let mut catalog = self.catalog.lock().await;
                catalog.sync().await?;
                if let Some(live) = catalog.streams.live.get(name).cloned() {
                    drop(catalog);
                    return self.created(name, &live, nonce, config).await;
                }
                catalog.streams.next_base(name)
            };
            self.prepare_topics(&base, config).await?;
            let appended = self
                .catalog
                .lock()
                .await
                .append(Change::Create {
                    stream: name.to_owned(),
                    base: base.clone(),
                    partitions: config.partitions,
                    horizon_ms: config.horizon.as_millis() as u64,
                    nonce,
                })
                .await;
            let live = self.catalog.lock().await.streams.live.get(name).cloned();
            match (appended, live) {
                (_, Some(live)) => return self.created(name, &live, nonce, config).await,
                (Err(e), None) => last_error = Some(e),
                (Ok(_), None) => {
                    // A stale base is never live: its topics go.
                    if let Some(admin) = &self.admin {
                        let (tenant, namespace) = (&self.options.tenant, &self.options.namespace);
                        let _ = admin.delete_partitioned(tenant, namespace, &base).await;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::Unavailable(
                format!("stream {name} was made and deleted by others while this process made it")
                    .into(),
            )
        }))
    }

    /// The answer to a create that found stream `name` live: made by this create (its
    /// `nonce`), after which only the winner sets the horizon, or `StreamExists`.
    async fn created(
        &self,
        name: &str,
        live: &Live,
        nonce: u64,
        config: &StreamConfig,
    ) -> Result<StreamInfo> {
        if live.nonce != nonce {
            return Err(Error::StreamExists {
                stream: name.to_owned(),
            });
        }
        if let Some(admin) = &self.admin {
            let (tenant, namespace) = (&self.options.tenant, &self.options.namespace);
            admin
                .set_retention(tenant, namespace, &live.base, config.horizon)
                .await?;
        }
        Ok(self.info(name, live))
    }

    /// Makes the topics of a stream's generation `base` ready before the catalog names them:
    /// the partitioned topic through the admin API (where there is one; its retention is set
    /// once the create won), and a marker first in every partition topic, so no reader ever
    /// asks for the last message id of an empty topic.
    async fn prepare_topics(&self, base: &str, config: &StreamConfig) -> Result<()> {
        if let Some(admin) = &self.admin {
            let (tenant, namespace) = (&self.options.tenant, &self.options.namespace);
            admin
                .create_partitioned(tenant, namespace, base, config.partitions)
                .await?;
        }
        let topics: Vec<String> = (0..config.partitions)
            .map(|p| self.options.topic(&format!("{base}-partition-{p}")))
            .collect();
        let marked = futures::future::try_join_all(topics.iter().map(|t| self.mark(t))).await;
        self.producers.forget(&topics);
        marked.map(drop)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let live = self.live(name, Duration::ZERO).await?;
        let mut catalog = self.catalog.lock().await;
        catalog
            .append(Change::Delete {
                stream: name.to_owned(),
                base: live.base.clone(),
            })
            .await?;
        drop(catalog);
        // Durable subscriptions would keep the records of dead topics for good.
        for consumer in live.consumers.keys() {
            if let Err(e) = self.unsubscribe_everywhere(name, &live, consumer).await {
                tracing::warn!(stream = name, consumer, error = %e, "a subscription of a deleted stream was left on the broker");
            }
        }
        if let Some(admin) = &self.admin {
            admin
                .delete_partitioned(&self.options.tenant, &self.options.namespace, &live.base)
                .await?;
        }
        let topics: Vec<String> = (0..live.partitions)
            .filter_map(|p| self.partition_topic(name, &live, p).ok())
            .collect();
        self.producers.forget(&topics);
        self.readers.forget(&topics);
        self.subscriptions.forget_stream(name);
        Ok(())
    }
}

#[async_trait]
impl Backend for PulsarBackend {
    fn name(&self) -> &'static str {
        "pulsar"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: false,
            consumers_see_history: true,
            server_side_checkpoints: true,
            durable: true,
            // A Failover subscription gives each partition to one process at a time.
            leases: false,
            max_record_bytes: MAX_MESSAGE_BYTES,
            max_headers: MAX_HEADERS,
            max_header_name_bytes: MAX_HEADER_NAME_BYTES,
            max_header_value_bytes: usize::MAX,
            max_batch_records: produce::MAX_BATCH_RECORDS,
            max_batch_bytes: produce::MAX_BATCH_BYTES,
            max_partitions: MAX_PARTITIONS,
            horizon_range: HORIZONS,
            dedup_window: None,
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Subscriptions(self)
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        self.create(name, config).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        let live = self.live(name, Duration::ZERO).await?;
        let mut info = self.info(name, &live);
        // Where the next record of each partition goes: after its last message, so a
        // consumer or tail pinned to `Latest` starts there rather than at a time.
        let topics = (0..live.partitions)
            .map(|p| self.partition_topic(name, &live, p))
            .collect::<Result<Vec<_>>>()?;
        let ends = futures::future::try_join_all(topics.iter().map(|t| self.end_of(t))).await?;
        for (p, end) in info.partitions.iter_mut().zip(ends) {
            p.next = end.map(|(ledger, entry)| crate::Sequence::from_limbs([0, ledger, entry, 1]));
        }
        Ok(info)
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        let mut catalog = self.catalog.lock().await;
        catalog.sync().await?;
        Ok(catalog.streams.live.keys().cloned().collect())
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.delete(name).await
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        self.produce(stream, partition, events).await
    }

    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        self.read_partition(stream, partition, start, options).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let live = self.live(stream, Duration::ZERO).await?;
        // The binary protocol tells no subscription's position (and pulsar-lite never
        // answers the request for a consumer's stats): names only.
        Ok(live
            .consumers
            .keys()
            .map(|name| ConsumerInfo {
                name: name.clone(),
                committed: Default::default(),
                lag: None,
            })
            .collect())
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        self.forget_consumer(stream, consumer).await
    }
}

/// A consumer of the `pulsar` crate, of raw payloads.
type PulsarConsumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;

/// Takes out what a consumer's queue holds now, and no more than a queue can hold (a
/// consumer whose connection failed yields errors without end).
fn drain(consumer: &mut PulsarConsumer) {
    use futures::{FutureExt, StreamExt};
    for _ in 0..=read::READ_PREFETCH {
        match consumer.next().now_or_never() {
            Some(Some(Ok(_))) => {}
            _ => break,
        }
    }
}

/// How long the removal of a subscription may take.
const UNSUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// Most headers of an event: each is a property in the message's metadata, which must fit
/// the broker's frame with the payload.
const MAX_HEADERS: usize = 1024;

/// Longest header name: a property's key, kept short as metadata keys are (pulsar-lite was
/// seen to stop answering a producer after a message with a 64 KiB key).
const MAX_HEADER_NAME_BYTES: usize = 1024;

/// The sequence of a message id: (ledger, entry, batch index + 1).
fn sequence_of(id: &pulsar::proto::MessageIdData) -> crate::Sequence {
    let batch = id
        .batch_index
        .map_or(0, |b| u64::try_from(b).map_or(0, |b| b + 1));
    crate::Sequence::from_limbs([0, id.ledger_id, id.entry_id, batch])
}

/// The message id a reader starts at to see the record of `sequence` first. A batch index
/// is given so that a Pulsar broker, which starts a non-durable reader after the id it is
/// given, steps back to the entry that holds it; pulsar-lite starts at the id itself.
fn start_id(sequence: crate::Sequence) -> Result<pulsar::proto::MessageIdData> {
    let [high, ledger, entry, batch] = sequence.limbs();
    let batch_index = i32::try_from(batch.saturating_sub(1)).ok();
    match batch_index {
        Some(batch_index) if high == 0 && ledger != u64::MAX && entry != u64::MAX => {
            Ok(pulsar::proto::MessageIdData {
                ledger_id: ledger,
                entry_id: entry,
                batch_index: Some(batch_index),
                ..Default::default()
            })
        }
        _ => Err(Error::InvalidArgument(format!(
            "{sequence} is not a position of a Pulsar stream (ledger, entry and batch index as its limbs)"
        ))),
    }
}

/// The property of the marker message that begins every partition topic: pulsar-lite
/// breaks the connection that asks for the last message id of an empty topic, so no topic of
/// a stream is ever empty. Reads skip markers; consumers acknowledge them unseen.
const MARKER: &str = "cloudstream-marker";

/// Whether a message is a partition topic's marker.
fn is_marker(m: &pulsar::consumer::Message<Vec<u8>>) -> bool {
    m.metadata().properties.iter().any(|kv| kv.key == MARKER)
}

/// A consumer id for a new consumer. The pulsar crate numbers consumers from 0 in every
/// process, and pulsar-lite refuses a consumer whose id another connection's consumer of the
/// topic has, so ids are drawn at random instead.
fn consumer_id() -> u64 {
    rand::random()
}

/// Checks a `pulsar` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    PulsarOptions::from_url(url).map(drop)
}

/// Connects to what a `pulsar` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        PulsarBackend::connect(PulsarOptions::from_url(&url)?).await?,
    ))
}

/// A map of shared things by name (producers, subscribers), built on first use.
type Registry<T> = Mutex<HashMap<String, Arc<T>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_follow_ledger_entry_and_batch() {
        let id = |l, e, b| pulsar::proto::MessageIdData {
            ledger_id: l,
            entry_id: e,
            batch_index: b,
            ..Default::default()
        };
        let s = |l, e, b| sequence_of(&id(l, e, b));
        assert!(s(1, 5, None) < s(1, 6, None));
        assert!(s(1, 6, Some(0)) < s(1, 6, Some(1)));
        assert!(s(1, 9999, Some(7)) < s(2, 0, None));
        let start = start_id(s(3, 4, Some(2))).expect("a position");
        assert_eq!(
            (start.ledger_id, start.entry_id, start.batch_index),
            (3, 4, Some(2))
        );
        assert_eq!(
            start_id(s(3, 4, None)).expect("a position").batch_index,
            Some(0)
        );
        assert!(start_id(crate::Sequence::MAX).is_err());
        assert!(
            start_id(crate::Sequence::from_u128(7)).is_ok(),
            "ledger 0, entry 0, batch index 6: pulsar-lite's first topic is ledger 0"
        );
    }
}
