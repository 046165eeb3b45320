//! A webhook's task: the library's trigger run with a [`Poster`] as its handler, restarted
//! after a pause when it stops on an error, its outcomes counted through the trigger's
//! observer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cloudstream::wire::record_json;
use cloudstream::{BatchOutcome, BatchReport, Client, Record, RetryPolicy, TriggerTotals};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::allow::{redact, WebhookPolicy};
use super::spec::{consumer_name, Spec};

/// Header naming the stream a delivery comes from.
const STREAM_HEADER: &str = "cloudstream-stream";
/// Header naming the webhook a delivery is for.
const WEBHOOK_HEADER: &str = "cloudstream-webhook";
/// Longest answer text kept in an error message.
const MAX_ANSWER_TEXT: usize = 200;
/// Pause before restarting a trigger that stopped on an error: 1 s doubling to 60 s.
const RESTART: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
};
/// A trigger that ran this long before it stopped restarts with the shortest pause again.
const RESTART_RESET: Duration = Duration::from_secs(60);

/// What a webhook did since the server started (or since it was registered): the trigger's
/// totals (records delivered with a 2xx, POSTs that failed, records given up on after the
/// last attempt) and the latest failure.
#[derive(Debug, Default)]
pub(crate) struct WebhookStats {
    /// Its trigger's totals, across restarts of the trigger.
    pub(crate) totals: TriggerTotals,
    /// The latest failure.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl WebhookStats {
    /// Keeps `error` as the latest failure.
    pub(crate) fn set_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Counts one batch's outcome, as the trigger reports it.
    fn count(&self, report: &BatchReport) {
        self.totals.count(report);
        match &report.outcome {
            BatchOutcome::Retried { error, .. } | BatchOutcome::DeadLettered { error, .. } => {
                self.set_error(error.clone())
            }
            _ => {}
        }
    }

    /// The latest failure, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a webhook's task runs with.
pub(crate) struct Task {
    pub(crate) client: Client,
    pub(crate) http: reqwest::Client,
    pub(crate) policy: WebhookPolicy,
    pub(crate) spec: Spec,
    pub(crate) url: reqwest::Url,
    pub(crate) counters: Arc<WebhookStats>,
}

impl Task {
    /// Runs the trigger until told to stop; restarts it, after a pause, when it stops on an
    /// error of its own (the stream missing, the provider unreachable, ...).
    pub(crate) async fn run(self, stop: watch::Receiver<bool>) {
        let consumer = consumer_name(&self.spec.id);
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let outcome = self.run_trigger(&consumer, stop.clone()).await;
            if stopping(&stop) {
                return;
            }
            let message = match outcome {
                Ok(()) => "the trigger stopped".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(stream = %self.spec.stream, webhook = %self.spec.id, error = %message, "webhook trigger stopped; restarting");
            self.counters
                .set_error(format!("trigger stopped: {message}"));
            if started.elapsed() >= RESTART_RESET {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(RESTART.backoff(failures)) => {}
                () = until_stopped(stop.clone()) => return,
            }
        }
    }

    /// One run of the trigger, until told to stop or until it fails.
    async fn run_trigger(
        &self,
        consumer: &str,
        stop: watch::Receiver<bool>,
    ) -> cloudstream::Result<()> {
        let stream = self.client.stream(&self.spec.stream).open().await?;
        let poster = Arc::new(Poster {
            http: self.http.clone(),
            policy: self.policy.clone(),
            url: self.url.clone(),
            stream: self.spec.stream.clone(),
            id: self.spec.id.clone(),
            timeout: Duration::from_millis(self.spec.timeout_ms),
        });
        let counters = Arc::clone(&self.counters);
        let trigger = stream
            .on_batch(consumer, move |records: Vec<Record>| {
                let poster = Arc::clone(&poster);
                async move { poster.post(records).await }
            })
            .observe(move |report| counters.count(report))
            .batch_size(self.spec.batch_size)
            .max_wait(Duration::from_millis(self.spec.max_wait_ms))
            .retry(self.spec.retry())
            .start_at(self.spec.start);
        let trigger = match &self.spec.dead_letter {
            Some(name) => trigger.dead_letter(name),
            None => trigger.no_dead_letter(),
        };
        trigger.run_until(until_stopped(stop)).await.map(|_| ())
    }
}

/// POSTs batches for one run of a trigger.
struct Poster {
    http: reqwest::Client,
    policy: WebhookPolicy,
    url: reqwest::Url,
    stream: String,
    id: String,
    timeout: Duration,
}

impl Poster {
    /// POSTs one batch; `Err` (with the status or the transport error) unless it got a 2xx.
    async fn post(&self, records: Vec<Record>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        // Checked at registration too; again here for registrations kept from a server
        // started with another policy (an address in the URL skips the resolver's check).
        self.policy.check(&self.url)?;
        let shown = redact(&self.url);
        let body = json!({
            "stream": self.stream,
            "webhook": self.id,
            "records": records.iter().map(record_json).collect::<Vec<Value>>(),
        });
        let sent = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(STREAM_HEADER, self.stream.as_str())
            .header(WEBHOOK_HEADER, self.id.as_str())
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = answer_start(response).await;
                let text = text.trim();
                if text.is_empty() {
                    Err(format!("POST {shown} answered {status}"))
                } else {
                    Err(format!(
                        "POST {shown} answered {status}: {}",
                        truncate(text, MAX_ANSWER_TEXT)
                    ))
                }
            }
            Err(e) => Err(format!(
                "POST {shown} failed: {}",
                error_chain(&e.without_url())
            )),
        }
    }
}

/// The first bytes of a failed answer's body, for the error message: a receiver streaming a
/// large body is not read to its end.
async fn answer_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_TEXT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An error with its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether the task was told to stop (or whoever could tell it is gone).
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    let stopped = *stop.borrow();
    stopped || stop.has_changed().is_err()
}

/// Completes when the task is told to stop, or when the sender is dropped.
pub(crate) async fn until_stopped(mut stop: watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped || stop.changed().await.is_err() {
            return;
        }
    }
}
