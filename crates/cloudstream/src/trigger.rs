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

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::backend::{Acker, Checkpoint, PartitionStart, ReadOptions};
use crate::consumer::{read_from_checkpoint, resolve_positions, Gap, StartAt};
use crate::{Error, ReadFrom, Record, Result, RetryPolicy, Stream};

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
}

/// What a trigger did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerReport {
    /// Records the handler succeeded on.
    pub handled: u64,
    /// Handler calls that failed (retried or dead-lettered).
    pub failed_attempts: u64,
    /// Records moved to the dead-letter stream (or dropped when there is none).
    pub dead_lettered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    failed_attempts: AtomicU64,
    dead_lettered: AtomicU64,
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
    max_wait: Duration,
    retry: RetryPolicy,
    dead_letter: Option<String>,
    start: StartAt,
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
            .finish()
    }
}

enum Outcome {
    Done,
    Stopped,
    Fatal(Error),
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
            max_wait: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            dead_letter,
            start: StartAt::Earliest,
        }
    }

    /// Most records per batch: read and checkpointed together, and handed together to an
    /// `on_batch` handler (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
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

    /// Runs until `shutdown` completes, then finishes the records in hand, commits and
    /// returns what it did.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        cloudstream_log::validate_name("consumer", &self.consumer)?;
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let this = Arc::new(self);
        let mut tasks: FuturesUnordered<_> = FuturesUnordered::new();
        if let Some(subscriptions) = this.stream.backend().subscriptions() {
            // The subscription pins the start: what is published from now on is kept for
            // this consumer, even if the trigger stops before it pulls.
            subscriptions
                .subscribe(this.stream.name(), &this.consumer, this.start)
                .await?;
            // One puller: the subscription spreads records and keeps each key in order.
            let (this, dlq, stop, counters) = (this.clone(), dlq, stop_rx, counters.clone());
            tasks.push(tokio::spawn(async move {
                this.run_subscription(dlq, stop, &counters).await
            }));
        } else {
            for (p, next) in this.pinned_positions().await? {
                let (this, dlq, stop, counters) =
                    (this.clone(), dlq.clone(), stop_rx.clone(), counters.clone());
                tasks.push(tokio::spawn(async move {
                    this.run_partition(p, next, dlq, stop, &counters).await
                }));
            }
        }
        let joined = |done: std::result::Result<Result<()>, tokio::task::JoinError>| match done {
            Ok(r) => r,
            Err(e) => Err(Error::Backend(Box::new(e))),
        };
        let mut result = Ok(());
        let mut shutdown = std::pin::pin!(shutdown);
        // Run until shutdown, or until a partition stops on an error no retry can fix.
        tokio::select! {
            _ = &mut shutdown => {}
            Some(done) = tasks.next() => result = joined(done),
        }
        let _ = stop_tx.send(true);
        while let Some(done) = tasks.next().await {
            if let Err(e) = joined(done) {
                result = result.and(Err(e));
            }
        }
        result.map(|()| TriggerReport {
            handled: counters.handled.load(Ordering::Relaxed),
            failed_attempts: counters.failed_attempts.load(Ordering::Relaxed),
            dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        })
    }

    /// Fixes where the trigger starts, now, without running it: creates its subscription, or
    /// commits the start point of every partition that has no checkpoint yet. [`Trigger::run_until`]
    /// does this itself; call it first so that every event sent from now on reaches the
    /// handler, however late the trigger starts.
    pub async fn pin_start(&self) -> Result<()> {
        match self.stream.backend().subscriptions() {
            Some(subscriptions) => {
                subscriptions
                    .subscribe(self.stream.name(), &self.consumer, self.start)
                    .await
            }
            None => self.pinned_positions().await.map(|_| ()),
        }
    }

    /// Where each partition starts: its checkpoint, or the start point, which is committed
    /// so that a restart before the first success resumes there rather than at a later
    /// "latest".
    async fn pinned_positions(&self) -> Result<Checkpoint> {
        let (checkpoint, positions) =
            resolve_positions(&self.stream, &self.consumer, self.start).await?;
        let unpinned: Vec<(u32, PartitionStart)> = positions
            .iter()
            .filter(|(p, _)| !checkpoint.contains_key(p))
            .map(|(&p, &n)| (p, n))
            .collect();
        if !unpinned.is_empty() {
            self.stream
                .backend()
                .commit_checkpoint(self.stream.name(), &self.consumer, &unpinned)
                .await?;
        }
        Ok(positions)
    }

    /// Runs the handler on what the consumer's subscription delivers (Pub/Sub): a record (or
    /// batch) is acknowledged once handled or dead-lettered; on shutdown, what is in hand and
    /// not done is given back for redelivery.
    async fn run_subscription(
        &self,
        dlq: Option<Stream>,
        mut stop: watch::Receiver<bool>,
        counters: &Counters,
    ) -> Result<()> {
        let Some(subscriptions) = self.stream.backend().subscriptions() else {
            return Ok(());
        };
        let mut failures = 0;
        while !*stop.borrow() {
            let pulled = tokio::select! {
                r = subscriptions.pull(self.stream.name(), &self.consumer, self.start, self.batch_size, self.max_wait) => r,
                _ = stop.changed() => break,
            };
            let deliveries = match pulled {
                Ok(deliveries) => {
                    failures = 0;
                    deliveries
                }
                Err(e) if permanent(&e) => return Err(e),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(stream = self.stream.name(), error = %e, "pull failed; retrying");
                    if sleep_or_stop(self.retry.backoff(failures), &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            let (records, acks): (Vec<Record>, Vec<Acker>) =
                deliveries.into_iter().map(|d| (d.record, d.ack)).unzip();
            let units: Vec<(Vec<Record>, Vec<Acker>)> = if self.deliver.per_batch() {
                vec![(records, acks)]
            } else {
                records
                    .into_iter()
                    .zip(acks)
                    .map(|(r, a)| (vec![r], vec![a]))
                    .collect()
            };
            for (unit, acks) in units {
                if *stop.borrow() || unit.is_empty() {
                    break;
                }
                match self.handle(unit, dlq.as_ref(), &mut stop, counters).await {
                    Outcome::Done => acks.into_iter().for_each(Acker::ack),
                    Outcome::Stopped => break,
                    Outcome::Fatal(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn run_partition(
        &self,
        partition: u32,
        mut next: PartitionStart,
        dlq: Option<Stream>,
        mut stop: watch::Receiver<bool>,
        counters: &Counters,
    ) -> Result<()> {
        let options = ReadOptions {
            max_records: self.batch_size,
            wait: Some(self.max_wait),
            ..ReadOptions::default()
        };
        let mut committed = next;
        let mut read_failures = 0;
        while !*stop.borrow() {
            let records = tokio::select! {
                r = self.read_batch(partition, next, &options) => r,
                _ = stop.changed() => break,
            };
            let records = match records {
                Ok((records, gap)) => {
                    read_failures = 0;
                    if let Some(gap) = gap {
                        next = gap.resumed_at;
                    }
                    records
                }
                Err(e) if permanent(&e) => return Err(e),
                Err(e) => {
                    read_failures += 1;
                    tracing::warn!(stream = self.stream.name(), partition, error = %e, "read failed; retrying");
                    if sleep_or_stop(self.retry.backoff(read_failures), &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            let units: Vec<Vec<Record>> = if self.deliver.per_batch() {
                vec![records]
            } else {
                records.into_iter().map(|r| vec![r]).collect()
            };
            for unit in units {
                let Some(last) = unit.last().map(|r| r.position.sequence) else {
                    continue;
                };
                if *stop.borrow() {
                    break;
                }
                match self.handle(unit, dlq.as_ref(), &mut stop, counters).await {
                    Outcome::Done => next = PartitionStart::After(last),
                    Outcome::Stopped => break,
                    Outcome::Fatal(e) => {
                        self.commit_final(partition, next, committed).await?;
                        return Err(e);
                    }
                }
            }
            if next != committed {
                match self
                    .stream
                    .backend()
                    .commit_checkpoint(self.stream.name(), &self.consumer, &[(partition, next)])
                    .await
                {
                    Ok(()) => committed = next,
                    Err(e) => {
                        tracing::warn!(stream = self.stream.name(), partition, error = %e, "checkpoint commit failed; will retry")
                    }
                }
            }
        }
        self.commit_final(partition, next, committed).await
    }

    async fn commit_final(
        &self,
        partition: u32,
        next: PartitionStart,
        committed: PartitionStart,
    ) -> Result<()> {
        if next != committed {
            self.stream
                .backend()
                .commit_checkpoint(self.stream.name(), &self.consumer, &[(partition, next)])
                .await?;
        }
        Ok(())
    }

    /// Reads up to `batch_size` records; for `on_batch`, keeps gathering until the batch is
    /// full or `max_wait` has passed since its first record.
    async fn read_batch(
        &self,
        partition: u32,
        at: PartitionStart,
        options: &ReadOptions,
    ) -> Result<(Vec<Record>, Option<Gap>)> {
        let (mut records, gap) =
            read_from_checkpoint(&self.stream, &self.consumer, partition, at, options).await?;
        if !self.deliver.per_batch() || records.is_empty() {
            return Ok((records, gap));
        }
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while records.len() < self.batch_size {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(last) = records
                .last()
                .map(|r| r.position)
                .filter(|_| !left.is_zero())
            else {
                break;
            };
            let more = ReadOptions {
                max_records: self.batch_size - records.len(),
                wait: Some(left),
                ..*options
            };
            let got = self
                .stream
                .read_with(partition, ReadFrom::After(last), &more)
                .await?;
            if got.is_empty() {
                break;
            }
            records.extend(got);
        }
        Ok((records, gap))
    }

    /// Runs the handler on one record (or batch) with retries, then dead-letters it.
    async fn handle(
        &self,
        records: Vec<Record>,
        dlq: Option<&Stream>,
        stop: &mut watch::Receiver<bool>,
        counters: &Counters,
    ) -> Outcome {
        let count = records.len() as u64;
        let mut last_error = String::new();
        for attempt in 1..=self.retry.max_attempts {
            // A handler may panic before its future exists, or while it runs.
            let call =
                std::panic::catch_unwind(AssertUnwindSafe(|| self.deliver.call(records.clone())));
            let outcome = match call {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match outcome {
                Ok(Ok(())) => {
                    counters.handled.fetch_add(count, Ordering::Relaxed);
                    return Outcome::Done;
                }
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = "handler panicked".to_owned(),
            }
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if attempt < self.retry.max_attempts
                && sleep_or_stop(self.retry.backoff(attempt), stop).await
            {
                return Outcome::Stopped;
            }
        }
        let Some(dlq) = dlq else {
            for record in &records {
                tracing::error!(stream = self.stream.name(), position = %record.position, error = last_error, "dropping a record that failed every attempt (no dead-letter stream)");
            }
            counters.dead_lettered.fetch_add(count, Ordering::Relaxed);
            return Outcome::Done;
        };
        for record in records {
            match self.dead_letter_one(dlq, record, &last_error, stop).await {
                Outcome::Done => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        Outcome::Done
    }

    /// Writes one failed record to the dead-letter stream, retrying transient failures. A
    /// copy too large for the stream goes without its payload (a header says so); any other
    /// permanent failure stops the trigger rather than skipping the record silently.
    async fn dead_letter_one(
        &self,
        dlq: &Stream,
        record: Record,
        error: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let size = record.event.payload.len();
        let mut event = record
            .event
            .with_header(dlq_headers::ERROR, truncate(error, MAX_ERROR_HEADER))
            .with_header(dlq_headers::SOURCE_STREAM, self.stream.name())
            .with_header(dlq_headers::SOURCE_POSITION, record.position.to_string())
            .with_header(dlq_headers::ATTEMPTS, self.retry.max_attempts.to_string());
        let mut attempt = 0;
        loop {
            match dlq.send(event.clone()).await {
                Ok(_) => return Outcome::Done,
                Err(Error::RecordTooLarge { .. }) if !event.payload.is_empty() => {
                    event.payload = bytes::Bytes::new();
                    event.headers.insert(
                        dlq_headers::PAYLOAD_DROPPED.to_owned(),
                        format!("{size} bytes did not fit the dead-letter stream"),
                    );
                }
                Err(e) if permanent(&e) => return Outcome::Fatal(e),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(dlq = dlq.name(), error = %e, "dead-letter write failed; retrying");
                    if sleep_or_stop(self.retry.backoff(attempt), stop).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }
}

/// Longest error text kept in a dead letter's header.
const MAX_ERROR_HEADER: usize = 1024;

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Errors that retrying cannot fix: the trigger stops with them instead of looping.
fn permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::StreamNotFound { .. }
            | Error::InvalidArgument(_)
            | Error::InvalidName { .. }
            | Error::Unsupported { .. }
            | Error::Corrupt(_)
            | Error::RecordTooLarge { .. }
    )
}

/// Sleeps, or returns `true` early when told to stop.
async fn sleep_or_stop(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stop.changed() => true,
    }
}
