//! The primitives a provider implements ([`Backend`]), and how its consumers get records
//! ([`Consumption`]: a checkpoint store, or the provider's subscriptions with their
//! acknowledgements).

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Capabilities, ConsumerInfo, LatencySnapshot, PartitionStart, ReadOptions, StreamConfig,
    StreamInfo,
};
use crate::checkpoint::CheckpointStore;
use crate::{Error, Event, Position, Record, Result};

/// How a backend's consumers get records (see [`Backend::consumption`]). Where a provider
/// offers both, its module says which one it uses and why.
#[derive(Clone, Copy)]
pub enum Consumption<'a> {
    /// Consumers read partitions by position and keep checkpoints in this store (the
    /// embedded engine, Kinesis with DynamoDB, a remote `cloudstream serve`).
    Checkpoints(&'a dyn CheckpointStore),
    /// The provider delivers records through subscriptions and takes acknowledgements
    /// (Pub/Sub); it keeps each consumer's place itself.
    Subscriptions(&'a dyn Subscriptions),
}

impl Debug for Consumption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consumption::Checkpoints(store) => write!(f, "Checkpoints({})", store.kind()),
            Consumption::Subscriptions(_) => f.write_str("Subscriptions"),
        }
    }
}

/// The primitives a provider implements. Use [`crate::Client`] and [`crate::Stream`] rather
/// than calling these directly.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// Short name of the backend ("local", "memory", ...).
    fn name(&self) -> &'static str;
    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;
    /// How this backend's consumers get their records: partition reads from checkpoints
    /// kept by a [`CheckpointStore`], or the provider's own subscriptions. Consumers,
    /// triggers and the server go through the consumer runtime, which asks this and never
    /// which backend it is.
    fn consumption(&self) -> Consumption<'_>;
    /// Counters of what the backend had to retry or work around (throttling, failed records,
    /// refreshed iterators), by name; empty where there is nothing to count.
    fn metrics(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    /// Latency histograms of what the backend waits on (the engine's fdatasync), by name;
    /// empty where there is nothing to time.
    fn latencies(&self) -> BTreeMap<String, LatencySnapshot> {
        BTreeMap::new()
    }
    /// Creates a stream; [`crate::Error::StreamExists`] if it exists.
    async fn create_stream(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo>;
    /// Describes a stream.
    async fn describe_stream(&self, name: &str) -> Result<StreamInfo>;
    /// Names of all streams.
    async fn list_streams(&self) -> Result<Vec<String>>;
    /// Deletes a stream with its records and consumers.
    async fn delete_stream(&self, name: &str) -> Result<()>;
    /// Appends events, in order, to one partition. All or nothing: the receipts, one per
    /// event, come back only once every event is durable.
    async fn append(&self, stream: &str, partition: u32, events: &[Event])
        -> Result<Vec<Position>>;
    /// Reads records of one partition from `start`. Backends that cannot read by position
    /// or time (`replay_by_position` and `replay_by_time` false) keep this default.
    async fn read(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let _ = (stream, partition, start, options);
        Err(Error::Unsupported {
            operation: "reading by position or time".into(),
            backend: self.name(),
        })
    }
    /// Every consumer of a stream, with its lag.
    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>>;
    /// Forgets a consumer; returns whether it existed.
    async fn delete_consumer(&self, stream: &str, consumer: &str) -> Result<bool>;
}

/// Acknowledges one delivered record, or gives it back. Dropped without either, it gives the
/// record back, so the provider delivers it again.
pub struct Acker(Option<Box<dyn FnOnce(bool) + Send>>);

impl Acker {
    /// An acker calling `f(true)` to acknowledge and `f(false)` to give back.
    pub fn new(f: Box<dyn FnOnce(bool) + Send>) -> Self {
        Acker(Some(f))
    }

    /// Acknowledges: the record is done and is not delivered again.
    pub fn ack(mut self) {
        if let Some(f) = self.0.take() {
            f(true);
        }
    }

    /// Gives the record back for redelivery.
    pub fn nack(mut self) {
        if let Some(f) = self.0.take() {
            f(false);
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(false);
        }
    }
}

impl Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acker")
    }
}

/// A record delivered through a subscription, with the means to acknowledge it.
#[derive(Debug)]
pub struct Delivery {
    /// The record.
    pub record: Record,
    /// Acknowledges or gives back the record.
    pub ack: Acker,
}

/// Consumers as subscriptions the provider tracks (see [`Consumption::Subscriptions`]).
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// Creates consumer `consumer`'s subscription if it does not exist yet, starting at
    /// `start`: from then on it retains what is published, whether or not anyone pulls.
    async fn subscribe(&self, stream: &str, consumer: &str, start: crate::StartAt) -> Result<()>;
    /// Waits until the acknowledgements made so far (records acknowledged or given back) are
    /// on the provider; an error if they could not all be sent. A consumer's commit waits
    /// for this. Providers whose acknowledgements are sent before they return keep this
    /// default.
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// Up to `max` records for consumer `consumer` of `stream`, waiting up to `wait` for the
    /// first; the consumer's subscription is created on first use, starting at `start`.
    /// Records stay leased to this process (their deadline extended) until acknowledged or
    /// given back.
    async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        start: crate::StartAt,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;
}
