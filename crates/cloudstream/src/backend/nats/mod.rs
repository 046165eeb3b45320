//! `nats://`: NATS JetStream (nats-server 2.9 or later), through async-nats.
//!
//! | cloudstream | JetStream |
//! |---|---|
//! | stream `S` | JetStream stream `S` (a `.` in the name becomes `~`: JetStream names cannot hold dots), file storage, description `cloudstream`, one subject per partition: `cloudstream.S.N` |
//! | horizon | `max_age` |
//! | partitions | the stream's subjects (their count is the partition count) |
//! | append to partition N | a publish per event to `cloudstream.S.N`, every one with a `Nats-Msg-Id` (the event's id, else one made for it), all acknowledged before the call answers; the stream's duplicate window (2 minutes, at most the horizon) drops a copy sent again |
//! | event key, time, headers | headers `Cloudstream-Key`, `Cloudstream-Time` (ms), and the event's own |
//! | sequence | the stream sequence: it rises within a partition, with gaps (the other partitions' messages) |
//! | `Earliest` / `Latest` / `At` / `After` / `AtTime` | an ephemeral consumer of the partition's subject with deliver policy `All` / `New` / `ByStartSequence` / `ByStartSequence + 1` / `ByStartTime` |
//! | `Expired` | a position below the stream's first sequence |
//! | consumer `NAME` | a durable pull consumer `NAME` (dots as `~`) of every partition's subject, explicit acknowledgements: acknowledging is the checkpoint |
//!
//! Durability is the server's: with file storage an acknowledged message survives a
//! restart of the server; nats-server 2.9 fsyncs its files every two minutes (`sync_interval`
//! is 2.10's), so a power loss can lose the messages of the last two minutes.

mod consumers;
mod options;
mod publish;
mod read;
mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_trait::async_trait;

pub use self::options::NatsOptions;
use super::settle::Settling;
use super::{
    Backend, Capabilities, ConsumerInfo, Consumption, PartitionStart, ReadOptions, StreamConfig,
    StreamInfo,
};
use crate::url::ProviderUrl;
use crate::{Error, Event, Position, Record, Result};

/// A NATS server (or cluster) with JetStream as a backend.
pub struct NatsBackend {
    options: NatsOptions,
    js: Context,
    /// Largest message the server takes (its `max_payload`).
    max_payload: usize,
    /// Acknowledgements of delivered messages not yet on the server.
    settling: Arc<Settling>,
    /// Where acknowledgements go, to be sent in order (`consumers::settle_in_order`).
    acks: tokio::sync::mpsc::UnboundedSender<(async_nats::jetstream::Message, bool)>,
    /// Partition counts of the streams met, so appends need no stream lookup.
    partitions: Mutex<HashMap<String, u32>>,
    /// Makes the message ids this client gives events without one unique: the process, and
    /// a count of events sent.
    process: String,
    sends: AtomicU64,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a message may carry beside its payload: headers, the id, the key and time.
const HEADER_ROOM: usize = 4 * 1024;

impl NatsBackend {
    /// Connects, and checks that the server has JetStream.
    pub async fn connect(options: NatsOptions) -> Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("cloudstream")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .connect(options.connect.as_str())
            .await
            .map_err(|e| {
                Error::Unavailable(format!("nats://{}: {}", options.host, e.kind()).into())
            })?;
        let max_payload = client.server_info().max_payload;
        // JetStream answers its API's INFO; a server or account without it answers nothing.
        let info = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|e| Error::Unsupported {
                operation: format!(
                    "JetStream on this server or account ({e}): start nats-server with -js"
                )
                .into(),
                backend: "nats",
            })?;
        if let Ok(serde_json::Value::Object(answer)) = serde_json::from_slice(&info.payload) {
            if let Some(error) = answer.get("error") {
                return Err(Error::Unsupported {
                    operation: format!("JetStream for this account ({error})").into(),
                    backend: "nats",
                });
            }
        }
        // Appends keep at most `publish::IN_FLIGHT` unanswered, under async-nats's 5,000.
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client);
        let settling = Arc::new(Settling::default());
        let (acks, to_send) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(consumers::settle_in_order(to_send, settling.clone()));
        Ok(NatsBackend {
            options,
            js,
            max_payload,
            settling,
            acks,
            partitions: Mutex::default(),
            process: format!("cs-{}-{:016x}", std::process::id(), rand::random::<u64>()),
            sends: AtomicU64::new(0),
        })
    }
}

/// A JetStream name (stream or consumer) for a cloudstream name: JetStream names cannot
/// hold `.`, ours cannot hold `~`.
fn js_name(name: &str) -> String {
    name.replace('.', "~")
}

/// The cloudstream name of a JetStream name made by [`js_name`].
fn our_name(js: &str) -> String {
    js.replace('~', ".")
}

/// The subject of partition `p` of stream `stream`.
fn subject(stream: &str, p: u32) -> String {
    format!("cloudstream.{stream}.{p}")
}

/// The partition a subject of stream `stream` names.
fn partition_of(stream: &str, subject: &str) -> Option<u32> {
    subject
        .strip_prefix("cloudstream.")?
        .strip_prefix(stream)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

#[async_trait]
impl Backend for NatsBackend {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        let max_record_bytes = self.max_payload.saturating_sub(HEADER_ROOM);
        Capabilities {
            replay_by_position: true,
            replay_by_time: true,
            dense_sequences: false,
            consumers_see_history: true,
            server_side_checkpoints: true,
            durable: true,
            // A durable consumer shares its messages among the processes that pull from it.
            leases: false,
            max_record_bytes,
            // A message's headers together must stay under the server's 64 KiB.
            max_headers: publish::MAX_HEADERS,
            max_header_name_bytes: publish::MAX_HEADER_NAME_BYTES,
            max_header_value_bytes: publish::MAX_HEADER_VALUE_BYTES,
            max_batch_records: publish::MAX_BATCH_RECORDS,
            max_batch_bytes: publish::MAX_BATCH_BYTES.max(max_record_bytes),
            max_partitions: streams::MAX_PARTITIONS,
            horizon_range: streams::HORIZONS,
            dedup_window: Some(streams::DUPLICATE_WINDOW),
        }
    }

    fn consumption(&self) -> Consumption<'_> {
        Consumption::Subscriptions(self)
    }

    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        self.create(name, config).await
    }

    async fn describe_stream(&self, name: &str) -> Result<StreamInfo> {
        self.describe(name).await
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        self.list().await
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
        self.publish(stream, partition, events).await
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
        self.forget_consumer(stream, consumer).await
    }
}

/// Every header of a message but NATS's own (`Nats-*`), by name (the first value of each).
fn header_map(headers: Option<&async_nats::HeaderMap>) -> BTreeMap<String, String> {
    headers
        .map(|h| {
            h.iter()
                .filter(|(name, _)| !AsRef::<str>::as_ref(name).starts_with("Nats-"))
                .filter_map(|(name, values)| {
                    Some((name.to_string(), values.first()?.as_str().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a `nats` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    NatsOptions::from_url(url).map(drop)
}

/// Connects to what a `nats` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        NatsBackend::connect(NatsOptions::from_url(&url)?).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subjects_map_both_ways() {
        assert_eq!(js_name("TelemetryIngest.dlq"), "TelemetryIngest~dlq");
        assert_eq!(our_name("TelemetryIngest~dlq"), "TelemetryIngest.dlq");
        assert_eq!(subject("a.dlq", 3), "cloudstream.a.dlq.3");
        assert_eq!(partition_of("a.dlq", "cloudstream.a.dlq.3"), Some(3));
        assert_eq!(partition_of("a", "cloudstream.a.dlq.3"), None);
    }
}
