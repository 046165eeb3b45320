//! Streams as topics: create (the horizon as `retention.ms`), describe (the topic's own
//! view: partitions, leaders, replicas, retention, watermarks), list and delete.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;

use super::errors::kafka_error;
use super::options::Service;
use super::{KafkaBackend, CALL_TIMEOUT};
use crate::backend::blocking;
use crate::backend::{PartitionInfo, StreamConfig, StreamInfo};
use crate::{Error, Result};

/// How long a created or deleted topic may take to show in the cluster's metadata.
const PROPAGATION: Duration = Duration::from_secs(15);

/// The topic's settings shown by describe.
const SHOWN_CONFIGS: [&str; 4] = [
    "retention.ms",
    "cleanup.policy",
    "message.timestamp.type",
    "min.insync.replicas",
];

/// A topic's metadata (a blocking call).
fn topic_metadata(meta: &BaseConsumer, topic: &str) -> Result<Metadata> {
    let metadata = meta
        .fetch_metadata(Some(topic), CALL_TIMEOUT)
        .map_err(|e| kafka_error(e, topic))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::StreamNotFound {
            stream: topic.to_owned(),
        });
    };
    if let Some(e) = t.error() {
        return Err(kafka_error(
            KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)),
            topic,
        ));
    }
    if t.partitions().is_empty() {
        return Err(Error::StreamNotFound {
            stream: topic.to_owned(),
        });
    }
    Ok(metadata)
}

/// A topic's partition count (a blocking call).
pub(super) fn partition_count(meta: &BaseConsumer, topic: &str) -> Result<u32> {
    let metadata = topic_metadata(meta, topic)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len() as u32))
}

/// One partition as describe reads it with blocking calls.
struct PartitionLayout {
    id: i32,
    leader: i32,
    replicas: usize,
    /// Low and high watermarks.
    marks: (i64, i64),
}

/// What describe reads with blocking calls.
struct Layout {
    partitions: Vec<PartitionLayout>,
}

fn layout(meta: &BaseConsumer, topic: &str) -> Result<Layout> {
    let metadata = topic_metadata(meta, topic)?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| Error::StreamNotFound {
            stream: topic.to_owned(),
        })?;
    let mut partitions = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let marks = meta
            .fetch_watermarks(topic, p.id(), CALL_TIMEOUT)
            .map_err(|e| kafka_error(e, topic))?;
        partitions.push(PartitionLayout {
            id: p.id(),
            leader: p.leader(),
            replicas: p.replicas().len(),
            marks,
        });
    }
    partitions.sort_by_key(|p| p.id);
    Ok(Layout { partitions })
}

impl KafkaBackend {
    pub(super) fn admin_options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(CALL_TIMEOUT))
            .operation_timeout(Some(CALL_TIMEOUT))
    }

    /// Creates the topic of a stream.
    pub(super) async fn create_topic(
        &self,
        name: &str,
        config: &StreamConfig,
    ) -> Result<StreamInfo> {
        self.check_topic(name)?;
        self.limits
            .check_create(self.options.service, config.horizon, config.partitions)?;
        self.make_topic(name, config).await
    }

    /// Makes a topic (a stream's, or the lease claims'), and waits until the cluster's
    /// metadata shows it.
    pub(super) async fn make_topic(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        let retention = config.horizon.as_millis().to_string();
        let replication = TopicReplication::Fixed(self.options.replication.unwrap_or(-1));
        let mut topic = NewTopic::new(name, config.partitions as i32, replication)
            .set("retention.ms", &retention);
        if self.options.service == Service::Kafka {
            topic = topic.set("message.timestamp.type", "LogAppendTime");
        }
        let results = self
            .admin
            .create_topics([&topic], &Self::admin_options())
            .await
            .map_err(|e| kafka_error(e, name))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(kafka_error(KafkaError::AdminOp(code), name));
            }
        }
        self.forget(name);
        self.await_topic(name, config.partitions).await
    }

    /// Waits until the cluster's metadata shows topic `name` with `partitions` partitions
    /// (a new topic reaches every broker's metadata a little later); its view then.
    pub(super) async fn await_topic(&self, name: &str, partitions: u32) -> Result<StreamInfo> {
        let config = StreamConfig {
            partitions,
            ..StreamConfig::default()
        };
        let deadline = tokio::time::Instant::now() + PROPAGATION;
        loop {
            match self.topic_view(name).await {
                Ok(info) if info.partitions.len() == config.partitions as usize => return Ok(info),
                Ok(_) | Err(Error::StreamNotFound { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    self.forget(name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(info) => return Ok(info),
                Err(e) => return Err(e),
            }
        }
    }

    /// The topic's own view of itself.
    pub(super) async fn describe_topic(&self, name: &str) -> Result<StreamInfo> {
        self.check_topic(name)?;
        self.topic_view(name).await
    }

    /// [`KafkaBackend::describe_topic`] of any topic, the lease claims' too.
    async fn topic_view(&self, name: &str) -> Result<StreamInfo> {
        let meta = self.meta.clone();
        let topic = name.to_owned();
        let layout = blocking(move || layout(&meta, &topic))
            .await
            .inspect_err(|e| {
                if matches!(e, Error::StreamNotFound { .. }) {
                    self.forget(name);
                }
            })?;
        let configs = self.topic_configs(name).await?;
        self.lock_topics()
            .insert(name.to_owned(), layout.partitions.len() as u32);
        let mut details: BTreeMap<String, String> = configs
            .iter()
            .filter(|(k, _)| SHOWN_CONFIGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let leaders: Vec<String> = layout
            .partitions
            .iter()
            .map(|p| format!("{}:{}", p.id, p.leader))
            .collect();
        details.insert("leaders".to_owned(), leaders.join(" "));
        if let Some(p) = layout.partitions.first() {
            details.insert("replication".to_owned(), p.replicas.to_string());
        }
        details.insert("brokers".to_owned(), self.options.brokers.clone());
        let horizon_ms = match configs.get("retention.ms").map(|v| v.parse::<i64>()) {
            Some(Ok(ms)) if ms >= 0 => ms as u64,
            Some(Ok(_)) => u64::MAX, // -1: kept for ever
            _ => 0,
        };
        Ok(StreamInfo {
            name: name.to_owned(),
            horizon_ms,
            partitions: layout
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.id as u32,
                    id: format!("{name}-{}", p.id),
                    earliest: Some((p.marks.0.max(0) as u64).into()),
                    next: Some((p.marks.1.max(0) as u64).into()),
                    bytes: None,
                })
                .collect(),
            resource: format!("{}/{name}", self.options.brokers),
            details,
        })
    }

    /// The topic's settings as the broker reports them (`DescribeConfigs`).
    pub(super) async fn topic_configs(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &Self::admin_options())
            .await
            .map_err(|e| kafka_error(e, name))?;
        let mut out = BTreeMap::new();
        for result in results {
            let resource = result.map_err(|code| kafka_error(KafkaError::AdminOp(code), name))?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }

    /// Every topic but the cluster's own (`__consumer_offsets`, ...) and the lease claims'.
    pub(super) async fn list_topics(&self) -> Result<Vec<String>> {
        let meta = self.meta.clone();
        let only = self.options.only_topic.clone();
        let claims = self.leases.as_ref().map(|l| l.topic().to_owned());
        blocking(move || {
            let metadata = meta
                .fetch_metadata(None, CALL_TIMEOUT)
                .map_err(|e| kafka_error(e, "topics"))?;
            let mut names: Vec<String> = metadata
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .filter(|n| !n.starts_with("__") && claims.as_ref() != Some(n))
                .filter(|n| only.as_ref().is_none_or(|o| o == n))
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Deletes the topic of a stream and its consumers' groups.
    pub(super) async fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_topic(name)?;
        self.readers.close_topic(name).await;
        let results = self
            .admin
            .delete_topics(&[name], &Self::admin_options())
            .await
            .map_err(|e| kafka_error(e, name))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(kafka_error(KafkaError::AdminOp(code), name));
            }
        }
        // Readers whose read ran meanwhile went back to the pool: close them too.
        self.readers.close_topic(name).await;
        self.forget(name);
        // Kafka drops the deleted topic's committed offsets itself; the groups left empty
        // are removed here, best effort (a broker that cannot list them keeps them).
        if let Err(e) = crate::checkpoint::CheckpointStore::delete_stream(self, name).await {
            tracing::warn!(stream = name, error = %e, "the consumer groups of a deleted stream were not removed");
        }
        // Deletion reaches every broker's metadata a little later: wait until the name is
        // free, so a stream of that name can be made again at once.
        let deadline = tokio::time::Instant::now() + PROPAGATION;
        while tokio::time::Instant::now() < deadline {
            let meta = self.meta.clone();
            let topic = name.to_owned();
            match blocking(move || partition_count(&meta, &topic)).await {
                Err(Error::StreamNotFound { .. }) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.forget(name);
        Ok(())
    }
}
