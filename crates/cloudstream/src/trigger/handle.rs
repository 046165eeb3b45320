//! How a trigger handles one batch: the handler called with retries and backoff, then the
//! batch dead-lettered, its outcome reported to the counters and the observers.

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::watch;

use super::outcome::{BatchOutcome, BatchReport, TriggerTotals};
use super::{dlq_headers, Trigger};
use crate::retry::retry;
use crate::{Error, Record, Stream};

/// How handling a batch ended.
pub(super) enum Outcome {
    /// Handled or dead-lettered: acknowledge it.
    Done,
    /// Told to stop first: leave it unacknowledged.
    Stopped,
    /// An error no retry can fix: stop the trigger.
    Fatal(Error),
}

impl Trigger {
    /// Runs the handler on one record (or batch) with retries, then dead-letters it.
    pub(super) async fn handle(
        &self,
        records: Vec<Record>,
        dlq: Option<&Stream>,
        stop: &mut watch::Receiver<bool>,
        counters: &TriggerTotals,
    ) -> Outcome {
        let report = |outcome: BatchOutcome| {
            if let Some(report) = BatchReport::of(&records, outcome) {
                counters.count(&report);
                for observe in &self.observers {
                    if std::panic::catch_unwind(AssertUnwindSafe(|| observe(&report))).is_err() {
                        tracing::error!(
                            stream = self.stream.name(),
                            consumer = self.consumer,
                            "a trigger observer panicked"
                        );
                    }
                }
            }
        };
        // A handler may panic before its future exists, or while it runs.
        let call_once = || {
            let call =
                std::panic::catch_unwind(AssertUnwindSafe(|| self.deliver.call(records.clone())));
            async move {
                let panicked = || "handler panicked".to_owned();
                match call {
                    Ok(future) => AssertUnwindSafe(future)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(panicked())),
                    Err(_) => Err(panicked()),
                }
            }
        };
        let retried = |error: &String, attempt| {
            let error = error.clone();
            report(BatchOutcome::Retried { attempt, error });
        };
        let every_error = |_: &String| true;
        let last_error = match retry(&self.retry, Some(stop), every_error, retried, call_once).await
        {
            None => return Outcome::Stopped,
            Some(Ok(())) => {
                report(BatchOutcome::Handled);
                return Outcome::Done;
            }
            Some(Err(e)) => e,
        };
        if let Some(dlq) = dlq {
            for record in &records {
                match self.dead_letter_one(dlq, record, &last_error, stop).await {
                    Outcome::Done => {}
                    other => return other,
                }
            }
        } else {
            for record in &records {
                tracing::error!(stream = self.stream.name(), position = %record.position, error = last_error, "dropping a record that failed every attempt (no dead-letter stream)");
            }
        }
        report(BatchOutcome::DeadLettered {
            attempts: self.retry.max_attempts,
            error: last_error,
            dead_letter: dlq.map(|s| s.name().to_owned()),
        });
        Outcome::Done
    }

    /// Writes one failed record to the dead-letter stream, retrying transient failures. A
    /// copy too large for the stream goes without its payload, and one whose headers (its
    /// own plus the dead-letter ones) break the stream's header limits goes without its own
    /// headers (a header says so either way); any other permanent failure stops the trigger
    /// rather than skipping the record silently.
    async fn dead_letter_one(
        &self,
        dlq: &Stream,
        record: &Record,
        error: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let size = record.event.payload.len();
        let mut event = record
            .event
            .clone()
            .with_header(dlq_headers::ERROR, truncate(error, MAX_ERROR_HEADER))
            .with_header(dlq_headers::SOURCE_STREAM, self.stream.name())
            .with_header(dlq_headers::SOURCE_POSITION, record.position.to_string())
            .with_header(dlq_headers::ATTEMPTS, self.retry.max_attempts.to_string());
        let forever = self.retry.unbounded();
        loop {
            let failed = |e: &Error, _| {
                tracing::warn!(dlq = dlq.name(), error = %e, "dead-letter write failed; retrying");
            };
            let send = || dlq.send(event.clone());
            match retry(
                &forever,
                Some(&mut *stop),
                Error::is_retryable,
                failed,
                send,
            )
            .await
            {
                None => return Outcome::Stopped,
                Some(Ok(_)) => return Outcome::Done,
                Some(Err(Error::InvalidArgument(_)))
                    if !event.headers.contains_key(dlq_headers::HEADERS_DROPPED) =>
                {
                    let own = record.event.headers.len();
                    event.headers.retain(|name, _| name.starts_with(DLQ_PREFIX));
                    event.headers.insert(
                        dlq_headers::HEADERS_DROPPED.to_owned(),
                        format!("{own} headers did not fit the dead-letter stream"),
                    );
                }
                Some(Err(Error::RecordTooLarge { .. })) if !event.payload.is_empty() => {
                    event.payload = bytes::Bytes::new();
                    event.headers.insert(
                        dlq_headers::PAYLOAD_DROPPED.to_owned(),
                        format!("{size} bytes did not fit the dead-letter stream"),
                    );
                }
                Some(Err(e)) => return Outcome::Fatal(e),
            }
        }
    }
}

/// The prefix of every header a dead letter gets besides its own.
const DLQ_PREFIX: &str = "cloudstream-dlq-";

/// Longest error text kept in a dead letter's header.
const MAX_ERROR_HEADER: usize = 1024;

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
