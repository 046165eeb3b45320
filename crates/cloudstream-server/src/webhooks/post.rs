//! A webhook's run: the library's trigger with a [`Poster`] as its handler, its outcomes
//! counted through the trigger's observer.

use std::sync::Arc;
use std::time::Duration;

use cloudstream::wire::record_json;
use cloudstream::{Client, Record};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::allow::{redact, WebhookPolicy};
use super::spec::{consumer_name, Spec};
use crate::jobs::{until_stopped, JobStats};

/// Header naming the stream a delivery comes from.
const STREAM_HEADER: &str = "cloudstream-stream";
/// Header naming the webhook a delivery is for.
const WEBHOOK_HEADER: &str = "cloudstream-webhook";
/// Longest answer text kept in an error message.
const MAX_ANSWER_TEXT: usize = 200;

/// One run of a webhook's trigger, until told to stop or until it fails.
pub(crate) async fn run(
    client: Client,
    http: reqwest::Client,
    policy: WebhookPolicy,
    spec: Spec,
    url: reqwest::Url,
    stats: Arc<JobStats>,
    stop: watch::Receiver<bool>,
) -> cloudstream::Result<()> {
    let stream = client.stream(&spec.stream).open().await?;
    let poster = Arc::new(Poster {
        http,
        policy,
        url,
        stream: spec.stream.clone(),
        id: spec.id.clone(),
        timeout: Duration::from_millis(spec.timeout_ms),
    });
    let trigger = stream
        .on_batch(&consumer_name(&spec.id), move |records: Vec<Record>| {
            let poster = Arc::clone(&poster);
            async move { poster.post(records).await }
        })
        .observe(move |report| stats.count(report))
        .batch_size(spec.batch_size)
        .max_wait(Duration::from_millis(spec.max_wait_ms))
        .retry(spec.retry())
        .start_at(spec.start);
    let trigger = match &spec.dead_letter {
        Some(name) => trigger.dead_letter(name),
        None => trigger.no_dead_letter(),
    };
    trigger.run_until(until_stopped(stop)).await.map(|_| ())
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
