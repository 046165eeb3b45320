//! What the workloads need of a peer: streams of some partitions, producers that return
//! once an event is acknowledged (at the peer's stated durability), and consumers that
//! follow partitions from the earliest.

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;

use crate::peers::Kind;

/// One peer, started and ready.
#[async_trait]
pub(crate) trait Peer: Send + Sync {
    /// Which peer it is.
    fn kind(&self) -> &'static Kind;
    /// The row's name (`redis-always`).
    fn name(&self) -> &'static str {
        self.kind().name
    }
    /// What an acknowledgement means at this peer's setting.
    fn durability(&self) -> &'static str {
        self.kind().durability
    }
    /// The server process whose CPU and memory are measured; `None` when the peer runs in
    /// this process (its figures then include the harness).
    fn pid(&self) -> Option<u32>;
    /// Whether its consumers follow what is being written (the raw disk's only read a
    /// file back, for (e)).
    fn follows(&self) -> bool {
        true
    }
    /// The workloads it runs (letters): all but where a peer cannot do one in reasonable
    /// time.
    fn workloads(&self) -> &'static str {
        "abcde"
    }
    /// How many producers preload (e) at once (moto loses records written concurrently).
    fn preload_producers(&self) -> usize {
        4
    }
    /// The most events its catch-up (e) preloads, where fewer than the run's.
    fn catch_up_cap(&self) -> Option<u64> {
        None
    }
    /// Creates `stream` with `partitions`.
    async fn create(&self, stream: &str, partitions: u32) -> Result<()>;
    /// A producer to `stream`, connected as the peer's users connect (a connection each
    /// for Redis, NATS and HTTP; one shared librdkafka producer for Kafka, as Kafka
    /// clients share one).
    async fn producer(&self, stream: &str, partitions: u32) -> Result<Box<dyn Producer>>;
    /// A consumer of the partitions `p` of `stream` with `p % of == index`, from the
    /// earliest record.
    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>>;
    /// Stops the peer (its server, if it has one).
    async fn stop(self: Box<Self>) -> Result<()>;
}

/// Sends events; each call returns once the peer acknowledged every event it sent.
#[async_trait]
pub(crate) trait Producer: Send {
    /// One event, with `key` (events of a key stay in one partition) or none (the peer
    /// spreads them its own way).
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()>;
    /// Events as one batch, all with `key` or none.
    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()>;
}

/// Reads what was sent.
#[async_trait]
pub(crate) trait Consumer: Send {
    /// The next payloads, waiting up to about 100 ms for some; empty if none came.
    async fn poll(&mut self) -> Result<Vec<Bytes>>;
}

/// The partitions consumer `index` of `of` reads: those with `p % of == index`.
pub(crate) fn assigned(partitions: u32, index: u32, of: u32) -> impl Iterator<Item = u32> {
    (0..partitions).filter(move |p| p % of == index)
}

/// Where events go, for peers whose client does not place them itself (Redis keys, NATS
/// subjects): a key's partition by FNV-1a, unkeyed events round robin.
#[derive(Debug)]
pub(crate) struct Spread {
    partitions: u32,
    next: u32,
}

impl Spread {
    pub(crate) fn new(partitions: u32) -> Spread {
        Spread {
            partitions: partitions.max(1),
            next: 0,
        }
    }

    /// The partition of the next event with `key` (or none).
    pub(crate) fn partition(&mut self, key: Option<&str>) -> u32 {
        match key {
            Some(key) => {
                let mut hash: u32 = 0x811c_9dc5;
                for byte in key.bytes() {
                    hash ^= u32::from(byte);
                    hash = hash.wrapping_mul(0x0100_0193);
                }
                hash % self.partitions
            }
            None => {
                self.next = (self.next + 1) % self.partitions;
                self.next
            }
        }
    }
}
