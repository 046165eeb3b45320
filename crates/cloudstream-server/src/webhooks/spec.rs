//! A webhook's registration: the body of `PUT /v1/streams/{name}/webhooks/{id}` checked and
//! completed with defaults into the [`Spec`] that `webhooks.json` keeps.

use std::time::Duration;

use cloudstream::{RetryPolicy, StartAt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ApiError;

/// Most records per POST.
const MAX_BATCH_SIZE: u64 = 1000;
/// Most attempts per batch.
const MAX_ATTEMPTS: u64 = 100;
/// Shortest and longest gathering time of a batch (the trigger also long-polls this long
/// when idle, so it cannot be zero).
const MAX_WAIT_MS: (u64, u64) = (10, 60_000);
/// Longest initial backoff.
const MAX_BACKOFF_MS: u64 = 60_000;
/// Longest backoff: the initial one doubles up to this (or stays, when it is larger).
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Shortest and longest timeout of one POST.
const TIMEOUT_MS: (u64, u64) = (1, 60_000);

/// The consumer a webhook reads as.
pub(crate) fn consumer_name(id: &str) -> String {
    <crate::webhooks::Webhook as crate::jobs::Job>::consumer(id)
}

/// A webhook's settings with every default applied: what `webhooks.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// The stream it consumes.
    pub(crate) stream: String,
    /// Its id within the stream.
    pub(crate) id: String,
    /// Where batches are POSTed.
    pub(crate) url: String,
    /// Most records per POST.
    pub(crate) batch_size: usize,
    /// How long a batch gathers records after its first one.
    pub(crate) max_wait_ms: u64,
    /// Attempts per batch before it is dead-lettered.
    pub(crate) max_attempts: u32,
    /// Backoff after the first failure, doubling up to 60 s.
    pub(crate) backoff_ms: u64,
    /// The dead-letter stream; `None` drops (and logs) what fails every attempt.
    pub(crate) dead_letter: Option<String>,
    /// Where it starts without a checkpoint.
    pub(crate) start: StartAt,
    /// Timeout of one POST.
    pub(crate) timeout_ms: u64,
}

impl Spec {
    /// The trigger's retry policy.
    pub(crate) fn retry(&self) -> RetryPolicy {
        let initial = Duration::from_millis(self.backoff_ms);
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: initial,
            max_backoff: BACKOFF_CAP.max(initial),
        }
    }
}

/// The body of `PUT /v1/streams/{name}/webhooks/{id}`: only `url` is required.
///
/// `dead_letter` is a stream name, `false` (no dead-letter stream: records that fail every
/// attempt are dropped and logged), or absent, `null` or `true` for `<stream>.dlq`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSpec {
    /// An `http://` or `https://` URL.
    url: String,
    /// Most records per POST (default 1, at most 1,000).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    batch_size: Option<u64>,
    /// How long a batch gathers records after its first one (default 100 ms).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    max_wait_ms: Option<u64>,
    /// Attempts per batch (default 5, at most 100).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    max_attempts: Option<u64>,
    /// Backoff after the first failure (default 200 ms).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    backoff_ms: Option<u64>,
    /// The dead-letter stream, or `false`.
    dead_letter: Option<Value>,
    /// `earliest`, `latest` (default) or `time:RFC3339`.
    start: Option<StartAt>,
    /// Timeout of one POST (default 10 s).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    timeout_ms: Option<u64>,
}

/// A 400 unless `min <= value <= max`.
fn in_range(field: &str, value: u64, (min, max): (u64, u64)) -> Result<u64, ApiError> {
    if !(min..=max).contains(&value) {
        return Err(ApiError::bad_request(format!(
            "{field} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(value)
}

/// An `http://` or `https://` URL with a host; a 400 otherwise.
pub(crate) fn parse_url(text: &str) -> Result<reqwest::Url, ApiError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| ApiError::bad_request(format!("url {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::bad_request(format!(
            "url {text:?} is not an http:// or https:// URL"
        )));
    }
    Ok(url)
}

impl WebhookSpec {
    /// The dead-letter stream the spec names (created if missing when the webhook runs).
    pub(crate) fn dead_letter_stream(&self, stream: &str) -> Result<Option<String>, ApiError> {
        let dead_letter = match &self.dead_letter {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Some(format!("{stream}.dlq")),
            Some(Value::Bool(false)) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dead_letter must be a stream name or false, got {other}"
                )))
            }
        };
        if let Some(name) = &dead_letter {
            cloudstream::validate_name("stream", name)?;
            if name == stream {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_dead_letter",
                    "dead_letter must be another stream than the webhook's own",
                ));
            }
        }
        Ok(dead_letter)
    }

    /// Checks the spec and applies the defaults.
    pub(crate) fn resolve(self, stream: &str, id: &str) -> Result<(Spec, reqwest::Url), ApiError> {
        let url = parse_url(&self.url)?;
        let dead_letter = self.dead_letter_stream(stream)?;
        let batch_size = in_range(
            "batch_size",
            self.batch_size.unwrap_or(1),
            (1, MAX_BATCH_SIZE),
        )?;
        let max_attempts = in_range(
            "max_attempts",
            self.max_attempts.unwrap_or(5),
            (1, MAX_ATTEMPTS),
        )?;
        let spec = Spec {
            stream: stream.to_owned(),
            id: id.to_owned(),
            url: url.to_string(),
            batch_size: usize::try_from(batch_size).unwrap_or(1),
            max_wait_ms: in_range("max_wait_ms", self.max_wait_ms.unwrap_or(100), MAX_WAIT_MS)?,
            max_attempts: u32::try_from(max_attempts).unwrap_or(1),
            backoff_ms: in_range(
                "backoff_ms",
                self.backoff_ms.unwrap_or(200),
                (0, MAX_BACKOFF_MS),
            )?,
            dead_letter,
            start: self.start.unwrap_or(StartAt::Latest),
            timeout_ms: in_range("timeout_ms", self.timeout_ms.unwrap_or(10_000), TIMEOUT_MS)?,
        };
        Ok((spec, url))
    }
}
