//! `kafka://`: Apache Kafka (and any broker speaking its protocol) through librdkafka, the
//! `rdkafka` crate; `eventhubs://` reuses all of it against Azure Event Hubs' Kafka endpoint.
//!
//! | cloudstream | Kafka |
//! |---|---|
//! | stream | topic (`retention.ms` = horizon; created with `message.timestamp.type=LogAppendTime` so reads by time are by broker time) |
//! | partition N | partition N |
//! | append to partition N | an idempotent producer (`enable.idempotence`, `acks=all`) sending to partition N explicitly: our partitioner chose it, so a key lands alike on every backend |
//! | event key, headers, event time | record key, record headers, header `cloudstream-time` (ms) |
//! | sequence | offset (dense: `BeyondEnd`, lag and record counts are known) |
//! | `Earliest` / `Latest` / `At` / `After` / `AtTime` | low watermark / high watermark / offset / offset + 1 / `offsets_for_times` |
//! | consumer `NAME` of stream `S` | consumer group `S:NAME`, its committed offsets the checkpoint (`kafka-consumer-groups --describe --group S:NAME` shows them) |
//! | members of a consumer group (`member(id)`) | leases decided by a claims log, the one-partition topic `__cloudstream_leases`, which every process replays with one rule (`leases.rs`, `ledger.rs`) |
//! | describe | topic metadata (partitions, leaders, replicas), `DescribeConfigs` (retention, cleanup policy) and each partition's watermarks |
//!
//! Reads come from a pool of assigned (not subscribed) consumers: a read that goes on
//! where the last one stopped reuses that consumer and what it has already fetched, so a
//! catch-up read is one stream of fetches, not one per call. A read that starts elsewhere
//! checks the partition's watermarks first, so `Expired` and `BeyondEnd` are told apart
//! whatever the broker answers to an out-of-range fetch.
//!
//! An append is as atomic as Kafka makes one producer's sends to one partition without
//! transactions: in order, without duplicates through the producer's own retries; if one
//! record fails (its delivery timed out, the topic went away) the call fails, and some of
//! its records may be stored. The producer's settings (`acks`, `enable.idempotence`) can be
//! overridden from the URL, at the cost of these promises.

mod errors;
mod leases;
mod ledger;
mod limits;
mod offsets;
mod options;
mod produce;
mod read;
mod topics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;

use self::errors::kafka_error;
use self::leases::LeaseLog;
use self::limits::{Limits, RECORD_ROOM};
use self::offsets::GroupClients;
pub use self::options::{EventHubsTier, KafkaOptions, Service};
use self::read::Readers;
use super::{
    blocking, Backend, Capabilities, ConsumerInfo, Consumption, PartitionStart, ReadOptions,
    StreamConfig, StreamInfo,
};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result};

/// How long a metadata, watermark, offset or admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Kafka cluster (or Event Hubs namespace) as a backend.
pub struct KafkaBackend {
    options: KafkaOptions,
    limits: Limits,
    /// The producer, made anew after a fatal error (an idempotent producer that lost track
    /// of its sequence numbers refuses every send from then on).
    producer: std::sync::RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// A consumer outside any group, for metadata, watermarks and time lookups.
    meta: Arc<BaseConsumer>,
    readers: Readers,
    /// The clients of consumer groups, which read and commit checkpoints.
    groups: GroupClients,
    /// Partition counts of the topics met, so appends and reads need no metadata call.
    topics: Mutex<HashMap<String, u32>>,
    /// The consumer groups' lease claims; `None` for a client limited to one hub.
    leases: Option<LeaseLog>,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("brokers", &self.options.brokers)
            .field("service", &self.options.service)
            .finish_non_exhaustive()
    }
}

impl KafkaBackend {
    /// Makes the clients for these options. librdkafka connects lazily: an unreachable
    /// cluster shows in the first call, as [`Error::Unavailable`].
    pub async fn connect(options: KafkaOptions) -> Result<Self> {
        let limits = options.service.limits(options.message_max_bytes());
        let producer: FutureProducer = client_config(&options, &produce::SETTINGS)
            .create()
            .map_err(|e| setting_error("the producer", &e))?;
        let admin: AdminClient<DefaultClientContext> = client_config(&options, &[])
            .create()
            .map_err(|e| setting_error("the admin client", &e))?;
        let meta: BaseConsumer = client_config(&options, &read::META_SETTINGS)
            .create()
            .map_err(|e| setting_error("the admin client", &e))?;
        let meta = Arc::new(meta);
        let claims = match (&options.leases_topic, &options.only_topic) {
            (Some(topic), _) => Some(topic.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(leases::default_topic(options.service).to_owned()),
        };
        Ok(KafkaBackend {
            leases: claims.map(LeaseLog::new),
            readers: Readers::new(&options),
            groups: GroupClients::new(&options),
            limits,
            producer: std::sync::RwLock::new(producer),
            admin,
            meta,
            options,
            topics: Mutex::default(),
        })
    }

    /// Checks a stream name, and that this client may use it.
    fn check_topic(&self, name: &str) -> Result<()> {
        cloudstream_log::validate_name("stream", name)?;
        if self.leases.as_ref().is_some_and(|l| l.topic() == name) {
            return Err(Error::InvalidName {
                kind: "stream",
                name: name.to_owned(),
                reason: "it is the topic that keeps consumer groups' lease claims".into(),
            });
        }
        match &self.options.only_topic {
            Some(only) if only != name => Err(Error::InvalidArgument(format!(
                "this client is limited to stream {only} (its URL or connection string names that hub); {name} asked"
            ))),
            _ => Ok(()),
        }
    }

    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A topic's partition count (cached); [`Error::StreamNotFound`] if there is no topic.
    async fn partition_count(&self, stream: &str) -> Result<u32> {
        if let Some(&n) = self.lock_topics().get(stream) {
            return Ok(n);
        }
        self.check_topic(stream)?;
        let meta = self.meta.clone();
        let topic = stream.to_owned();
        let n = blocking(move || topics::partition_count(&meta, &topic)).await?;
        self.lock_topics().insert(stream.to_owned(), n);
        Ok(n)
    }

    /// Checks that `partition` is one of the topic's.
    async fn check_partition(&self, stream: &str, partition: u32) -> Result<()> {
        let mut partitions = self.partition_count(stream).await?;
        if partition >= partitions {
            // Partitions may have been added since the count was cached: ask once more.
            self.lock_topics().remove(stream);
            partitions = self.partition_count(stream).await?;
        }
        if partition >= partitions {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    /// Forgets what is cached about a topic (deleted, or found missing).
    fn forget(&self, stream: &str) {
        self.lock_topics().remove(stream);
        self.readers.forget(stream);
    }

    /// [`kafka_error`], forgetting a topic found missing.
    fn stream_error(&self, stream: &str, e: rdkafka::error::KafkaError) -> Error {
        let e = kafka_error(e, stream);
        if matches!(e, Error::StreamNotFound { .. }) {
            self.forget(stream);
        }
        e
    }

    /// Low and high watermarks of a partition.
    async fn watermarks(&self, stream: &str, partition: u32) -> Result<(i64, i64)> {
        let meta = self.meta.clone();
        let topic = stream.to_owned();
        blocking(move || {
            drain(&meta);
            meta.fetch_watermarks(&topic, partition as i32, CALL_TIMEOUT)
                .map_err(|e| kafka_error(e, &topic))
        })
        .await
    }
}

/// A client configuration: the brokers, the service's defaults, the user's settings, then
/// `extra` (what this client needs: the user's own value wins, except for the settings
/// cloudstream owns, `options::OWNED`, which the URL cannot carry anyway).
fn client_config(options: &KafkaOptions, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.brokers);
    // A default gives way to the user's setting, or to the user's setting of its alias
    // (librdkafka applies whichever of two aliases it meets last).
    let alias = |k: &str| match k {
        "message.timeout.ms" => Some("delivery.timeout.ms"),
        "delivery.timeout.ms" => Some("message.timeout.ms"),
        _ => None,
    };
    for (k, v) in defaults(options.service) {
        let overridden = options.settings.contains_key(*k)
            || alias(k).is_some_and(|a| options.settings.contains_key(a));
        if !overridden {
            config.set(*k, *v);
        }
    }
    for (k, v) in &options.settings {
        config.set(k, v);
    }
    for (k, v) in extra {
        if options::is_owned(k) || !options.settings.contains_key(*k) {
            config.set(*k, *v);
        }
    }
    config
}

/// Serves the events a client without assigned partitions has queued (errors, logs,
/// statistics), so they do not pile up: the metadata and group clients are never polled
/// for messages. Call on a blocking thread.
pub(super) fn drain(client: &BaseConsumer) {
    while client.poll(Duration::ZERO).is_some() {}
}

/// Settings every client of a service starts from (the user's own override them).
fn defaults(service: Service) -> &'static [(&'static str, &'static str)] {
    match service {
        Service::Kafka => &[("message.timeout.ms", "30000")],
        // Microsoft's recommendations for librdkafka: Azure closes idle connections after
        // 240 s, and the service needs more than librdkafka's 5 s per request.
        Service::EventHubs(_) => &[
            ("message.timeout.ms", "60000"),
            ("socket.keepalive.enable", "true"),
            ("metadata.max.age.ms", "180000"),
            ("connections.max.idle.ms", "180000"),
            ("request.timeout.ms", "60000"),
        ],
    }
}

/// The error of a client librdkafka would not make: the setting it refused and why, never
/// the setting's value (it may be a password).
fn setting_error(what: &str, e: &rdkafka::error::KafkaError) -> Error {
    use rdkafka::error::KafkaError;
    let why = match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            let desc = if value.is_empty() {
                desc.clone()
            } else {
                desc.replace(value.as_str(), "***")
            };
            format!("setting {key}: {desc}")
        }
        e => e.to_string(),
    };
    Error::InvalidArgument(format!("librdkafka refused the settings of {what}: {why}"))
}

#[async_trait]
impl Backend for KafkaBackend {
    fn name(&self) -> &'static str {
        self.options.service.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: true,
            consumers_see_history: true,
            server_side_checkpoints: true,
            durable: true,
            leases: self.leases.is_some(),
            max_record_bytes: self.limits.message_bytes.saturating_sub(RECORD_ROOM),
            max_headers: usize::MAX,
            max_header_name_bytes: usize::MAX,
            max_header_value_bytes: usize::MAX,
            max_batch_records: produce::MAX_BATCH_RECORDS,
            max_batch_bytes: produce::MAX_BATCH_BYTES,
            max_partitions: self.limits.partitions,
            horizon_range: self.limits.retention,
            // The idempotent producer drops its own retried sends, not an application's.
            dedup_window: None,
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        // The backend is its own checkpoint store: the groups' committed offsets.
        Consumption::Checkpoints(self)
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        self.create_topic(name, config).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        self.describe_topic(name).await
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        self.list_topics().await
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.delete_topic(name).await
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
        self.consumers(stream).await
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        crate::checkpoint::CheckpointStore::delete(self, stream, consumer).await
    }
}

/// Checks a `kafka` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    KafkaOptions::from_url(url).map(drop)
}

/// Connects to what a `kafka` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        KafkaBackend::connect(KafkaOptions::from_url(&url)?).await?,
    ))
}
