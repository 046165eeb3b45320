//! Backends: the few primitives every provider implements ([`Backend`]), what they take and
//! return, and the registry that maps URL schemes to them ([`providers`]). Everything else
//! (batch splitting, partitioning by key, consumers, triggers) is written once on top, in
//! [`crate::Stream`] and the consumer runtime.
//!
//! A new backend is one module here plus one line in [`providers`]; `docs/backends.md` has
//! the whole checklist.

#[cfg(feature = "eventhubs")]
mod eventhubs;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kinesis")]
mod kinesis;
mod log;
#[cfg(feature = "nats")]
mod nats;
mod primitives;
#[cfg(feature = "pubsub")]
mod pubsub;
#[cfg(feature = "pulsar")]
mod pulsar;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod registry;
#[cfg(any(feature = "nats", feature = "redis", feature = "pulsar"))]
mod settle;
mod types;

#[cfg(feature = "eventhubs")]
pub use self::eventhubs::{
    options_from_url as eventhubs_options, ConnectionString, CONNECTION_STRING_VAR,
};
#[cfg(feature = "http")]
pub use self::http::{HttpBackend, HttpOptions};
#[cfg(feature = "kafka")]
pub use self::kafka::{EventHubsTier, KafkaBackend, KafkaOptions, Service as KafkaService};
#[cfg(feature = "kinesis")]
pub use self::kinesis::{CapacityMode, KinesisBackend, KinesisMetrics, KinesisOptions};
pub use self::log::{LocalOptions, LogBackend, DEFAULT_MAX_RECORD_BYTES};
#[cfg(feature = "nats")]
pub use self::nats::{NatsBackend, NatsOptions};
pub use self::primitives::{Acker, Backend, Consumption, Delivery, Subscriptions};
#[cfg(feature = "pubsub")]
pub use self::pubsub::{PubSubBackend, PubSubOptions};
#[cfg(feature = "pulsar")]
pub use self::pulsar::{PulsarBackend, PulsarOptions, Retention as PulsarRetention};
#[cfg(feature = "redis")]
pub use self::redis::{RedisBackend, RedisConsumers, RedisOptions};
use self::registry::built_with;
pub use self::registry::Provider;
use self::registry::{Build, Constructor};
pub use self::types::{
    Capabilities, ConsumerInfo, PartitionInfo, PartitionStart, ReadOptions, StreamConfig,
    StreamInfo,
};
pub use crate::checkpoint::{Checkpoint, CheckpointStore};
pub use cloudstream_log::LatencySnapshot;

/// Runs a blocking call (file I/O, a librdkafka call) on a blocking thread; one that did not
/// finish (it panicked) is [`crate::Error::Unavailable`].
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::Error::Unavailable(Box::new(e)))?
}

/// Every provider cloudstream knows, by URL scheme, with the feature that builds each.
pub fn providers() -> Vec<Provider> {
    vec![
        Provider {
            schemes: &["local"],
            describes: "the embedded engine, durable, in a directory",
            build: Build::Always(Constructor {
                check: log::check_local,
                open: |url| Box::pin(log::open_local_url(url)),
            }),
        },
        Provider {
            schemes: &["memory"],
            describes: "the embedded engine in memory",
            build: Build::Always(Constructor {
                check: log::check_memory,
                open: |url| Box::pin(log::open_memory_url(url)),
            }),
        },
        Provider {
            schemes: &["http", "https"],
            describes: "a remote cloudstream serve",
            build: built_with!("http", http),
        },
        Provider {
            schemes: &["kinesis"],
            describes: "AWS Kinesis Data Streams",
            build: built_with!("kinesis", kinesis),
        },
        Provider {
            schemes: &["pubsub"],
            describes: "Google Cloud Pub/Sub",
            build: built_with!("pubsub", pubsub),
        },
        Provider {
            schemes: &["eventhubs"],
            describes: "Azure Event Hubs, through its Kafka endpoint",
            build: built_with!("eventhubs", eventhubs),
        },
        Provider {
            schemes: &["kafka"],
            describes: "Apache Kafka (and brokers speaking its protocol)",
            build: built_with!("kafka", kafka),
        },
        Provider {
            schemes: &["pulsar"],
            describes: "Apache Pulsar (binary protocol)",
            build: built_with!("pulsar", pulsar),
        },
        Provider {
            schemes: &["nats"],
            describes: "NATS JetStream (2.9 or later)",
            build: built_with!("nats", nats),
        },
        Provider {
            schemes: &["redis"],
            describes: "Redis Streams (7.0 or later)",
            build: built_with!("redis", redis),
        },
    ]
}
