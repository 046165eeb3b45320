//! `on_event` and `on_batch`: a consumer loop that calls a handler for every record, or for
//! every batch of up to `batch_size` records gathered until the batch is full or `max_wait`
//! has passed since its first record.
//!
//! One task per partition keeps each partition in order while partitions run in parallel.
//! The checkpoint moves only past records whose handler succeeded (or that were
//! dead-lettered). A failing record is retried with backoff; after the last attempt it goes
//! to the dead-letter stream (`<stream>.dlq` by default) with its payload, key and headers
//! plus the error, and the loop goes on. Shutdown lets the record in hand finish, commits, and
//! returns a report.

mod group;
mod handle;
mod outcome;
#[cfg(feature = "deliver")]
mod stalling;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::watch;

use self::handle::Outcome;
use self::outcome::Observer;
pub use self::outcome::{BatchOutcome, BatchReport, TriggerReport, TriggerTotals};
#[cfg(feature = "deliver")]
pub(crate) use self::stalling::Stalling;
use crate::consume::{self, Lane, Lanes, Take};
use crate::consumer::StartAt;
use crate::lease::Membership;
use crate::retry::Pause;
use crate::{Error, Record, Result, RetryPolicy, Stream};

/// Headers a dead-lettered event carries besides its own.
pub mod dlq_headers {
    /// The handler's last error.
    pub const ERROR: &str = "cloudstream-dlq-error";
    /// The stream the event came from.
    pub const SOURCE_STREAM: &str = "cloudstream-dlq-source-stream";
    /// Its position there.
    pub const SOURCE_POSITION: &str = "cloudstream-dlq-source-position";
    /// How many times the handler was tried.
    pub const ATTEMPTS: &str = "cloudstream-dlq-attempts";
    /// Present when the payload was too large to go with the dead letter.
    pub const PAYLOAD_DROPPED: &str = "cloudstream-dlq-payload-dropped";
    /// Present when the event's own headers did not fit the dead-letter stream's limits
    /// beside these ones.
    pub const HEADERS_DROPPED: &str = "cloudstream-dlq-headers-dropped";
}

/// How a lane's task ended: its own result, or an error if it panicked.
fn joined<T>(done: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    done.unwrap_or_else(|e| Err(Error::Backend(Box::new(e))))
}

/// How the handler is called: once per record, or once per batch.
trait Deliver: Send + Sync {
    fn per_batch(&self) -> bool;
    fn call(&self, records: Vec<Record>) -> BoxFuture<'static, std::result::Result<(), String>>;
}

struct PerRecord<H>(H);
struct PerBatch<H>(H);

impl<H, F, E> Deliver for PerRecord<H>
where
    H: Fn(Record) -> F + Send + Sync,
    F: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    fn per_batch(&self) -> bool {
        false
    }
    fn call(&self, records: Vec<Record>) -> BoxFuture<'static, std::result::Result<(), String>> {
        let futures: Vec<F> = records.into_iter().map(|r| (self.0)(r)).collect();
        async move {
            for f in futures {
                f.await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        .boxed()
    }
}

impl<H, F, E> Deliver for PerBatch<H>
where
    H: Fn(Vec<Record>) -> F + Send + Sync,
    F: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    fn per_batch(&self) -> bool {
        true
    }
    fn call(&self, records: Vec<Record>) -> BoxFuture<'static, std::result::Result<(), String>> {
        let f = (self.0)(records);
        async move { f.await.map_err(|e| e.to_string()) }.boxed()
    }
}

/// A configured trigger; run it with [`Trigger::run_until`].
pub struct Trigger {
    stream: Stream,
    consumer: String,
    deliver: Arc<dyn Deliver>,
    batch_size: usize,
    batch_bytes: usize,
    max_wait: Duration,
    retry: RetryPolicy,
    dead_letter: Option<String>,
    start: StartAt,
    observers: Vec<Observer>,
    membership: Option<Membership>,
    lease_ttl: Duration,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("stream", &self.stream.name())
            .field("consumer", &self.consumer)
            .field("per_batch", &self.deliver.per_batch())
            .field("batch_size", &self.batch_size)
            .field("max_wait", &self.max_wait)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter)
            .field("observers", &self.observers.len())
            .field("membership", &self.membership)
            .finish()
    }
}

impl Trigger {
    pub(crate) fn per_record<H, F, E>(stream: Stream, consumer: &str, handler: H) -> Self
    where
        H: Fn(Record) -> F + Send + Sync + 'static,
        F: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self::new(stream, consumer, Arc::new(PerRecord(handler)))
    }

    pub(crate) fn per_batch<H, F, E>(stream: Stream, consumer: &str, handler: H) -> Self
    where
        H: Fn(Vec<Record>) -> F + Send + Sync + 'static,
        F: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Self::new(stream, consumer, Arc::new(PerBatch(handler)))
    }

    fn new(stream: Stream, consumer: &str, deliver: Arc<dyn Deliver>) -> Self {
        let dead_letter = Some(format!("{}.dlq", stream.name()));
        Trigger {
            stream,
            consumer: consumer.to_owned(),
            deliver,
            batch_size: 100,
            batch_bytes: crate::backend::ReadOptions::default().max_bytes,
            max_wait: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            dead_letter,
            start: StartAt::Earliest,
            observers: Vec::new(),
            membership: None,
            lease_ttl: Duration::from_secs(10),
        }
    }

    /// Most records per batch: read and checkpointed together, and handed together to an
    /// `on_batch` handler (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// About how many bytes of events a batch gathers at most (`on_batch`; default 8 MiB): a
    /// batch ends when it holds this many, or `batch_size` records, or `max_wait` passed.
    /// One event larger than this makes a batch of its own.
    pub fn batch_bytes(mut self, n: usize) -> Self {
        self.batch_bytes = n.max(1);
        self
    }

    /// How long a batch may gather records after its first one (`on_batch`), and the longest
    /// wait for new records before checking for shutdown again (default 1 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Attempts and backoff per record (default 5 attempts, 100 ms doubling to 10 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// The dead-letter stream (default `<stream>.dlq`), created on first run if missing.
    pub fn dead_letter(mut self, stream: &str) -> Self {
        self.dead_letter = Some(stream.to_owned());
        self
    }

    /// Drops records that fail every attempt instead of dead-lettering them (logged).
    pub fn no_dead_letter(mut self) -> Self {
        self.dead_letter = None;
        self
    }

    /// Where to start when the consumer has no checkpoint (default: earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Runs the trigger as member `id` of its consumer's group: the members (in this
    /// process or others) share the stream's partitions through leases, each handling only
    /// the partitions it holds, and take over those of a member that stops or dies (see
    /// [`crate::Consumer::member`]). A member gives a partition back only after committing
    /// what it handled, so a hand-over between members whose leases are current delivers
    /// nothing twice; one that dies (or cannot renew its leases) is replaced once its leases
    /// expire, from the group's last commit, so what it handled after that is handled again.
    /// Member ids must be unique among the processes alive at once: two processes with one
    /// id would both hold every partition.
    pub fn member(mut self, id: impl Into<String>) -> Self {
        self.membership = Some(Membership {
            member: id.into(),
            ttl: self.lease_ttl,
        });
        self
    }

    /// How long a member's leases outlive its last renewal (default 10 s; 100 ms to 1
    /// hour): a member that dies loses its partitions this long after. Renewed every third
    /// of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        if let Some(m) = &mut self.membership {
            m.ttl = ttl;
        }
        self
    }

    /// Tells `observer` of every batch's outcome (handled, retried, dead-lettered, with the
    /// error) as it happens, in order within a partition; see [`BatchReport`]. Sinks and
    /// webhooks count and act on these instead of guessing from attempts.
    pub fn observe(mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Runs until `shutdown` completes, then finishes the records in hand, commits and
    /// returns what it did.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        cloudstream_log::validate_name("consumer", &self.consumer)?;
        if let Some(m) = &self.membership {
            m.check(&self.consumer)?;
            consume::check_group(&self.stream)?;
            let backend = self.stream.backend();
            if !backend.capabilities().leases {
                return Err(Error::Unsupported {
                    operation: "consumer-group leases".into(),
                    backend: backend.name(),
                });
            }
        }
        let dlq = match &self.dead_letter {
            Some(name) => {
                let client = crate::Client::new(self.stream.backend().clone());
                let horizon = self.stream.describe().await?.horizon();
                Some(
                    client
                        .stream(name)
                        .horizon(horizon)
                        .create_if_missing()
                        .await?,
                )
            }
            None => None,
        };
        let counters = Arc::new(TriggerTotals::default());
        if let Some(m) = self.membership.clone() {
            let this = Arc::new(self);
            let ran = this.run_member(m, dlq, counters.clone(), shutdown).await;
            return ran.map(|()| counters.report());
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        // The start is pinned before the first pull: what is sent from now on is kept for
        // this consumer, even if the trigger stops before it reads.
        let lanes =
            consume::open(&self.stream, &self.consumer, self.start, Lanes::All, true).await?;
        let this = Arc::new(self);
        // One task per lane: partitions run in parallel, each in order. A trigger dropped
        // before it returns (its task aborted) aborts its lanes with it.
        let mut tasks = tokio::task::JoinSet::new();
        for lane in lanes {
            let (this, dlq, stop, counters) =
                (this.clone(), dlq.clone(), stop_rx.clone(), counters.clone());
            tasks.spawn(async move { this.run_lane(lane, dlq, stop, &counters).await });
        }
        let mut result = Ok(());
        let mut shutdown = std::pin::pin!(shutdown);
        // Run until shutdown, or until a lane stops on an error no retry can fix.
        tokio::select! {
            _ = &mut shutdown => {}
            Some(done) = tasks.join_next() => result = joined(done),
        }
        let _ = stop_tx.send(true);
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = joined(done) {
                result = result.and(Err(e));
            }
        }
        result.map(|()| counters.report())
    }

    /// Fixes where the trigger starts, now, without running it: creates its subscription, or
    /// commits the start point of every partition that has no checkpoint yet. [`Trigger::run_until`]
    /// does this itself; call it first so that every event sent from now on reaches the
    /// handler, however late the trigger starts.
    pub async fn pin_start(&self) -> Result<()> {
        consume::open(&self.stream, &self.consumer, self.start, Lanes::All, true)
            .await
            .map(drop)
    }

    /// Runs the handler on what one lane delivers, until told to stop: each record (or
    /// batch) is acknowledged once handled or dead-lettered, and the acknowledgements are
    /// made durable after each pull's records and on the way out. What is in hand and not
    /// done when it stops is not acknowledged, so it is delivered again.
    async fn run_lane(
        &self,
        mut lane: Box<dyn Lane>,
        dlq: Option<Stream>,
        mut stop: watch::Receiver<bool>,
        counters: &TriggerTotals,
    ) -> Result<()> {
        let mut pulls = self.retry.unbounded().attempts();
        while !*stop.borrow() {
            let pulled = tokio::select! {
                r = self.gather(&mut *lane) => r,
                _ = stop.changed() => break,
            };
            let records = match pulled {
                Ok(records) => {
                    pulls.reset();
                    if records.is_empty() {
                        lane.ack(0); // a gap met on the way is passed
                    }
                    records
                }
                Err(e) => {
                    lane.give_back();
                    if !e.is_retryable() {
                        self.flush_on_exit(&mut lane).await;
                        return Err(e);
                    }
                    tracing::warn!(stream = self.stream.name(), consumer = self.consumer, error = %e, "pull failed; retrying");
                    match pulls.pause(Some(&mut stop)).await {
                        Pause::Again => continue,
                        Pause::Exhausted | Pause::Stopped => break,
                    }
                }
            };
            let units: Vec<Vec<Record>> = if self.deliver.per_batch() {
                vec![records]
            } else {
                records.into_iter().map(|r| vec![r]).collect()
            };
            for unit in units {
                if *stop.borrow() || unit.is_empty() {
                    break;
                }
                let count = unit.len();
                match self.handle(unit, dlq.as_ref(), &mut stop, counters).await {
                    Outcome::Done => lane.ack(count),
                    Outcome::Stopped => break,
                    Outcome::Fatal(e) => {
                        self.flush_on_exit(&mut lane).await;
                        return Err(e);
                    }
                }
            }
            if let Err(e) = consume::flush(&self.stream, &self.consumer, [&mut lane]).await {
                tracing::warn!(stream = self.stream.name(), consumer = self.consumer, error = %e, "checkpoint commit failed; will retry");
            }
        }
        consume::flush(&self.stream, &self.consumer, [&mut lane]).await
    }

    /// Commits what the lane acknowledged on the way out after an error, so handled records
    /// are not delivered again; a failure here is logged, the error that stopped the lane is
    /// the one reported.
    async fn flush_on_exit(&self, lane: &mut Box<dyn Lane>) {
        if let Err(e) = consume::flush(&self.stream, &self.consumer, [lane]).await {
            tracing::warn!(stream = self.stream.name(), consumer = self.consumer, error = %e, "could not commit on the way out; handled records will be delivered again");
        }
    }

    /// Pulls up to `batch_size` records (and `batch_bytes`); for `on_batch`, keeps
    /// gathering until the batch is full or `max_wait` has passed since its first record.
    async fn gather(&self, lane: &mut dyn Lane) -> Result<Vec<Record>> {
        let take = |records: usize, bytes: usize| Take { records, bytes };
        let mut records = lane
            .pull(take(self.batch_size, self.batch_bytes), Some(self.max_wait))
            .await?
            .records;
        if !self.deliver.per_batch() || records.is_empty() {
            return Ok(records);
        }
        let mut bytes: usize = records.iter().map(|r| r.event.size()).sum();
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while records.len() < self.batch_size && bytes < self.batch_bytes {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let more = lane
                .pull(
                    take(self.batch_size - records.len(), self.batch_bytes - bytes),
                    Some(left),
                )
                .await?
                .records;
            if more.is_empty() {
                break;
            }
            bytes += more.iter().map(|r| r.event.size()).sum::<usize>();
            records.extend(more);
        }
        Ok(records)
    }
}
