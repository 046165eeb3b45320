//! `pubsub://PROJECT`: Google Cloud Pub/Sub through the official `google-cloud-pubsub` crate.
//!
//! | cloudstream | Pub/Sub |
//! |---|---|
//! | stream | topic `projects/P/topics/NAME`, message retention = horizon (10 min to 31 days) |
//! | partitions | one: Pub/Sub has none; order comes from ordering keys |
//! | event key | ordering key (subscriptions deliver a key's messages in order) |
//! | headers, event time | message attributes (`cloudstream-time` for the event time) |
//! | position | partition 0 and the numeric message id (an identifier, not a read position) |
//! | consumer | subscription `NAME~CONSUMER`, created on the first fetch, ordered, never expiring, with a dead-letter policy to topic `NAME.dlq` |
//! | implicit checkpoint | acknowledging the previous fetch's messages |
//!
//! What Pub/Sub cannot do is said in [`Capabilities`]: there is no read by position or time
//! (`replay_by_position` and `replay_by_time` are false; `read` is `Unsupported`), a new
//! consumer sees what is published after its subscription exists (`consumers_see_history`
//! is false), and the provider numbers nothing densely.
//!
//! The admin calls (topics, subscriptions) go over REST, publishing and the streaming pull
//! over gRPC. Against the emulator (`endpoint=` or `PUBSUB_EMULATOR_HOST`), credentials are
//! anonymous; otherwise Application Default Credentials apply.

mod options;
mod subscriptions;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_pubsub::client::{
    BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin,
};
use google_cloud_pubsub::model::{DeadLetterPolicy, ExpirationPolicy, Message};
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::MessageStream;

pub use self::options::PubSubOptions;
use self::subscriptions::Pulled;
use super::{
    Backend, Capabilities, Checkpoint, ConsumerInfo, Consumption, Delivery, PartitionInfo,
    PartitionStart, ReadOptions, StreamConfig, StreamInfo, Subscriptions,
};
use crate::event::{from_millis, to_millis};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result, Sequence};

/// Attribute carrying an event's time (ms since the Unix epoch).
const TIME_ATTRIBUTE: &str = "cloudstream-time";
/// Largest message Pub/Sub takes is 10 MB; room is kept for attributes and key.
const MAX_RECORD: usize = 10_000_000 - 64 * 1024;
/// Most attributes on a message is 100; one is kept for the event time.
const MAX_ATTRIBUTES: usize = 99;
/// Most messages and bytes in one publish request.
const MAX_BATCH_RECORDS: usize = 1000;
const MAX_BATCH_BYTES: usize = 9_000_000;
/// Messages a consumer's streaming pull holds (leased) ahead of its fetches.
const MAX_OUTSTANDING: i64 = 1000;
/// After the first message of a pull, how long to wait for more to arrive.
const LINGER: Duration = Duration::from_millis(20);

/// Google Cloud Pub/Sub as a backend.
pub struct PubSubBackend {
    project: String,
    options: PubSubOptions,
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
    base: BasePublisher,
    subscriber: Subscriber,
    publishers: Mutex<HashMap<String, Publisher>>,
    pulls: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Pulled>>>>,
}

impl std::fmt::Debug for PubSubBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBackend")
            .field("project", &self.project)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A Pub/Sub error as the crate's error; `what` names the topic or subscription.
fn pubsub_error(e: &google_cloud_pubsub::Error, what: &str) -> Error {
    let code = e.status().map(|s| s.code);
    let http = e.http_status_code();
    if code == Some(Code::NotFound) || http == Some(404) {
        return Error::StreamNotFound {
            stream: what.to_owned(),
        };
    }
    if code == Some(Code::AlreadyExists) || http == Some(409) {
        return Error::StreamExists {
            stream: what.to_owned(),
        };
    }
    let message = format!("{what}: {e}");
    match code {
        Some(Code::InvalidArgument) => Error::InvalidArgument(message),
        Some(Code::Unauthenticated) => Error::Unauthenticated(message),
        Some(Code::PermissionDenied) => Error::Forbidden(message),
        Some(Code::ResourceExhausted) => Error::Throttled(message.into()),
        Some(Code::Unavailable | Code::DeadlineExceeded) => Error::Unavailable(message.into()),
        Some(Code::Unimplemented) => Error::Unsupported {
            operation: "this call on this Pub/Sub server".into(),
            backend: "pubsub",
        },
        _ => Error::Backend(message.into()),
    }
}

fn builder_error(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("cannot build a Pub/Sub client: {e}").into())
}

impl PubSubBackend {
    /// Connects with the settings of a `pubsub://` URL.
    pub async fn connect(options: PubSubOptions) -> Result<Self> {
        let endpoint = options.endpoint.clone().or_else(|| {
            std::env::var("PUBSUB_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .map(|h| {
                    if h.starts_with("http") {
                        h
                    } else {
                        format!("http://{h}")
                    }
                })
        });
        macro_rules! build {
            ($builder:expr) => {{
                let b = $builder;
                match &endpoint {
                    Some(e) => {
                        b.with_endpoint(e.clone())
                            .with_credentials(
                                google_cloud_auth::credentials::anonymous::Builder::new().build(),
                            )
                            .build()
                            .await
                    }
                    None => b.build().await,
                }
                .map_err(builder_error)?
            }};
        }
        Ok(PubSubBackend {
            project: format!("projects/{}", options.project),
            topics: build!(TopicAdmin::builder()),
            subscriptions: build!(SubscriptionAdmin::builder()),
            base: build!(BasePublisher::builder()),
            subscriber: build!(Subscriber::builder()),
            options,
            publishers: Mutex::default(),
            pulls: tokio::sync::Mutex::default(),
        })
    }

    fn topic(&self, stream: &str) -> String {
        format!("{}/topics/{stream}", self.project)
    }

    fn subscription(&self, stream: &str, consumer: &str) -> String {
        format!("{}/subscriptions/{stream}~{consumer}", self.project)
    }

    fn publisher(&self, stream: &str) -> Publisher {
        let topic = self.topic(stream);
        let mut all = self.publishers.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(topic.clone())
            .or_insert_with(|| {
                self.base
                    .publisher(topic)
                    .set_message_count_threshold(MAX_BATCH_RECORDS as u32)
                    .set_delay_threshold(Duration::from_millis(1))
                    .build()
            })
            .clone()
    }

    /// The topic's subscriptions made by this crate: consumer name → subscription path.
    async fn consumers_of(&self, stream: &str) -> Result<BTreeMap<String, String>> {
        let prefix = format!("{}/subscriptions/{stream}~", self.project);
        let mut names = self
            .topics
            .list_topic_subscriptions()
            .set_topic(self.topic(stream))
            .by_item();
        let mut out = BTreeMap::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| pubsub_error(&e, stream))?;
            if let Some(consumer) = name.strip_prefix(&prefix) {
                out.insert(consumer.to_owned(), name.clone());
            }
        }
        Ok(out)
    }

    async fn describe_topic(&self, stream: &str) -> Result<google_cloud_pubsub::model::Topic> {
        cloudstream_log::validate_name("stream", stream)?;
        self.topics
            .get_topic()
            .set_topic(self.topic(stream))
            .send()
            .await
            .map_err(|e| pubsub_error(&e, stream))
    }

    fn to_record(message: Message) -> Result<Record> {
        let sequence: Sequence = message.message_id.parse().map_err(|e| {
            Error::Backend(format!("Pub/Sub message id is not numeric: {e}").into())
        })?;
        let append_time = message
            .publish_time
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut headers: BTreeMap<String, String> = message.attributes.into_iter().collect();
        let time = headers
            .remove(TIME_ATTRIBUTE)
            .and_then(|ms| ms.parse().ok())
            .map(from_millis);
        Ok(Record {
            position: Position::new(0, sequence),
            append_time,
            event: Event {
                payload: message.data,
                key: (!message.ordering_key.is_empty()).then_some(message.ordering_key),
                headers,
                time,
            },
        })
    }
}

#[async_trait]
impl Backend for PubSubBackend {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            replay_by_position: false,
            replay_by_time: false,
            dense_sequences: false,
            consumers_see_history: false,
            server_side_checkpoints: true,
            durable: true,
            leases: false,
            max_record_bytes: MAX_RECORD,
            max_headers: MAX_ATTRIBUTES,
            max_header_name_bytes: 256,
            max_header_value_bytes: 1024,
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_partitions: 1,
            horizon_range: (
                Duration::from_secs(10 * 60),
                Duration::from_secs(31 * 24 * 3600),
            ),
            // Publishing does not deduplicate (exactly-once delivery is a subscription setting).
            dedup_window: None,
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Subscriptions(self)
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        let retention = google_cloud_wkt::Duration::try_from(config.horizon)
            .map_err(|e| Error::InvalidArgument(format!("horizon: {e}")))?;
        self.topics
            .create_topic()
            .set_name(self.topic(name))
            .set_message_retention_duration(retention)
            .send()
            .await
            .map_err(|e| pubsub_error(&e, name))?;
        self.describe_stream(name).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        let topic = self.describe_topic(name).await?;
        let horizon = topic
            .message_retention_duration
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        let consumers = self.consumers_of(name).await?;
        let details = BTreeMap::from([
            ("retention".to_owned(), format!("{} s", horizon.as_secs())),
            ("subscriptions".to_owned(), consumers.len().to_string()),
        ]);
        Ok(StreamInfo {
            name: name.to_owned(),
            horizon_ms: horizon.as_millis() as u64,
            partitions: vec![PartitionInfo {
                partition: 0,
                id: topic.name.clone(),
                earliest: None,
                next: None,
                bytes: None,
            }],
            resource: topic.name,
            details,
        })
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        let prefix = format!("{}/topics/", self.project);
        let mut topics = self
            .topics
            .list_topics()
            .set_project(&self.project)
            .by_item();
        let mut out = Vec::new();
        while let Some(topic) = topics.next().await {
            let topic = topic.map_err(|e| pubsub_error(&e, &self.project))?;
            if let Some(name) = topic.name.strip_prefix(&prefix) {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.describe_topic(name).await?;
        for consumer in self.consumers_of(name).await?.into_keys() {
            self.delete_consumer(name, &consumer).await?;
        }
        self.topics
            .delete_topic()
            .set_topic(self.topic(name))
            .send()
            .await
            .map_err(|e| pubsub_error(&e, name))?;
        self.publishers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.topic(name));
        Ok(())
    }

    async fn append(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        if partition != 0 {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions: 1,
            });
        }
        cloudstream_log::validate_name("stream", stream)?;
        let publisher = self.publisher(stream);
        let pending: Vec<_> = events
            .iter()
            .map(|event| {
                let mut attributes: Vec<(String, String)> = event
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some(t) = event.time {
                    attributes.push((TIME_ATTRIBUTE.to_owned(), to_millis(t).to_string()));
                }
                let message = Message::new()
                    .set_data(event.payload.clone())
                    .set_attributes(attributes)
                    .set_ordering_key(event.key.clone().unwrap_or_default());
                publisher.publish(message)
            })
            .collect();
        let mut receipts = Vec::with_capacity(events.len());
        let mut failure = None;
        for (event, result) in events.iter().zip(futures::future::join_all(pending).await) {
            match result {
                Ok(id) => receipts.push(Position::new(0, id.parse::<Sequence>()?)),
                Err(e) => {
                    if let Some(key) = &event.key {
                        publisher.resume_publish(key.clone());
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(receipts),
            Some(google_cloud_pubsub::error::PublishError::Rpc(e)) => Err(pubsub_error(&e, stream)),
            Some(e) => Err(Error::Unavailable(
                format!("publish to {stream}: {e}").into(),
            )),
        }
    }

    async fn read(
        &self,
        stream: &str,
        _partition: u32,
        _start: PartitionStart,
        _options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        self.describe_topic(stream).await?;
        Err(Error::Unsupported {
            operation: "reading by position or time (Pub/Sub delivers through subscriptions: use a consumer)".into(),
            backend: "pubsub",
        })
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.describe_topic(stream).await?;
        Ok(self
            .consumers_of(stream)
            .await?
            .into_keys()
            .map(|name| ConsumerInfo {
                name,
                committed: Checkpoint::new(),
                lag: None,
            })
            .collect())
    }

    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        let name = self.subscription(stream, consumer);
        self.pulls.lock().await.remove(&name);
        match self
            .subscriptions
            .delete_subscription()
            .set_subscription(&name)
            .send()
            .await
        {
            Ok(()) => Ok(true),
            Err(e) => match pubsub_error(&e, &name) {
                Error::StreamNotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

/// Checks a `pubsub` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    PubSubOptions::from_url(url).map(drop)
}

/// Connects to what a `pubsub` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<std::sync::Arc<dyn Backend>> {
    Ok(std::sync::Arc::new(
        PubSubBackend::connect(PubSubOptions::from_url(&url)?).await?,
    ))
}
