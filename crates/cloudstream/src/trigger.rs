//! `on_event`: a consumer loop that calls a handler for every record.
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

use futures::FutureExt;
use tokio::sync::watch;

use crate::backend::ReadOptions;
use crate::consumer::{resolve_positions, StartAt};
use crate::{Error, Event, Position, ReadFrom, Record, Result, RetryPolicy, Stream};

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

/// A configured `on_event` trigger; run it with [`Trigger::run_until`].
#[derive(Debug)]
pub struct Trigger<H> {
    stream: Stream,
    consumer: String,
    handler: Arc<H>,
    batch_size: usize,
    max_wait: Duration,
    retry: RetryPolicy,
    dead_letter: Option<String>,
    start: StartAt,
}

enum Outcome {
    Done,
    Stopped,
}

impl<H, F, E> Trigger<H>
where
    H: Fn(Record) -> F + Send + Sync + 'static,
    F: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    pub(crate) fn new(stream: Stream, consumer: &str, handler: H) -> Self {
        let dead_letter = Some(format!("{}.dlq", stream.name()));
        Trigger {
            stream,
            consumer: consumer.to_owned(),
            handler: Arc::new(handler),
            batch_size: 100,
            max_wait: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            dead_letter,
            start: StartAt::Earliest,
        }
    }

    /// Records read and checkpointed together (default 100).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Longest wait for new records before checking for shutdown again (default 1 s).
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
        let positions = resolve_positions(&self.stream, &self.consumer, self.start).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let this = Arc::new(self);
        let tasks: Vec<_> = positions
            .into_iter()
            .map(|(p, next)| {
                let (this, dlq, stop, counters) =
                    (this.clone(), dlq.clone(), stop_rx.clone(), counters.clone());
                tokio::spawn(async move { this.run_partition(p, next, dlq, stop, &counters).await })
            })
            .collect();
        shutdown.await;
        let _ = stop_tx.send(true);
        let mut result = Ok(());
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(Error::Backend(Box::new(e))),
            }
        }
        result.map(|()| TriggerReport {
            handled: counters.handled.load(Ordering::Relaxed),
            failed_attempts: counters.failed_attempts.load(Ordering::Relaxed),
            dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        })
    }

    async fn run_partition(
        &self,
        partition: u32,
        mut next: u64,
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
            let from = ReadFrom::At(Position::new(partition, next));
            let records = tokio::select! {
                r = self.stream.read_with(partition, from, &options) => r,
                _ = stop.changed() => break,
            };
            let records = match records {
                Ok(records) => {
                    read_failures = 0;
                    records
                }
                Err(Error::Expired { earliest, .. }) => {
                    tracing::warn!(
                        stream = self.stream.name(),
                        consumer = self.consumer,
                        partition,
                        from = next,
                        resumed_at = earliest.sequence,
                        "checkpoint fell out of the horizon; resuming at the earliest record"
                    );
                    next = earliest.sequence;
                    continue;
                }
                Err(e) => {
                    read_failures += 1;
                    tracing::warn!(stream = self.stream.name(), partition, error = %e, "read failed; retrying");
                    if sleep_or_stop(self.retry.backoff(read_failures), &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            for record in records {
                let sequence = record.position.sequence;
                match self.handle(record, dlq.as_ref(), &mut stop, counters).await {
                    Outcome::Done => next = sequence + 1,
                    Outcome::Stopped => break,
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
        if next != committed {
            self.stream
                .backend()
                .commit_checkpoint(self.stream.name(), &self.consumer, &[(partition, next)])
                .await?;
        }
        Ok(())
    }

    /// Runs the handler on one record with retries, then dead-letters it.
    async fn handle(
        &self,
        record: Record,
        dlq: Option<&Stream>,
        stop: &mut watch::Receiver<bool>,
        counters: &Counters,
    ) -> Outcome {
        let mut last_error = String::new();
        for attempt in 1..=self.retry.max_attempts {
            let call = AssertUnwindSafe((self.handler)(record.clone())).catch_unwind();
            match call.await {
                Ok(Ok(())) => {
                    counters.handled.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Done;
                }
                Ok(Err(e)) => last_error = e.to_string(),
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
            tracing::error!(stream = self.stream.name(), position = %record.position, error = last_error, "dropping a record that failed every attempt (no dead-letter stream)");
            counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            return Outcome::Done;
        };
        let event = Event {
            key: record.event.key.clone(),
            ..record.event.clone()
        }
        .with_header(dlq_headers::ERROR, last_error)
        .with_header(dlq_headers::SOURCE_STREAM, self.stream.name())
        .with_header(dlq_headers::SOURCE_POSITION, record.position.to_string())
        .with_header(dlq_headers::ATTEMPTS, self.retry.max_attempts.to_string());
        let mut attempt = 0;
        loop {
            match dlq.send(event.clone()).await {
                Ok(_) => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Done;
                }
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
