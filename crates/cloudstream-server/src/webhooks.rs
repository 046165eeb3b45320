//! Webhook triggers: the network form of `on_event`.
//!
//! A webhook registered with `PUT /v1/streams/{name}/webhooks/{id}` is a consumer of the
//! stream, named `webhook-{id}`, run by the library's [`cloudstream::Trigger`]: it POSTs each
//! batch of records to a URL as JSON, moves its checkpoint past the batch after a 2xx answer,
//! retries any other answer (or a transport error) with exponential backoff, and after the
//! last attempt writes the batch's records to a dead-letter stream (`<stream>.dlq` unless the
//! spec says otherwise) and goes on. Delivery is at-least-once: a batch delivered but not yet
//! checkpointed when the server dies is delivered again.
//!
//! Registrations (the specs, not the counters) are kept in `webhooks.json` in the server's
//! state directory, replaced atomically on every change, and every registered webhook starts
//! again when the server does, resuming at its checkpoint. Without a state directory they
//! live in memory only.
//!
//! The body of a POST:
//!
//! ```json
//! {"stream": "orders", "webhook": "billing", "records": [{"position": "0:41", "payload": "...", ...}]}
//! ```
//!
//! with the records in the shape of [`cloudstream::wire::record_json`], and the headers
//! `cloudstream-stream` and `cloudstream-webhook`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;

use axum::http::StatusCode;
use axum::Json;
use cloudstream::wire::record_json;
use cloudstream::{Client, Position, Record, RetryPolicy, StartAt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{ApiError, Path, State};

/// The file, in the state directory, that holds the registrations.
const STATE_FILE: &str = "webhooks.json";
/// Where the next version of [`STATE_FILE`] is written before it replaces it.
const STATE_TMP: &str = "webhooks.json.tmp";

/// Header naming the stream a delivery comes from.
const STREAM_HEADER: &str = "cloudstream-stream";
/// Header naming the webhook a delivery is for.
const WEBHOOK_HEADER: &str = "cloudstream-webhook";

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

/// The consumer a webhook reads as.
fn consumer_name(id: &str) -> String {
    format!("webhook-{id}")
}

/// Where a webhook without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Start {
    /// The oldest record held.
    Earliest,
    /// Records written after the webhook was registered.
    Latest,
}

impl Start {
    /// The library's start point.
    fn at(self) -> StartAt {
        match self {
            Start::Earliest => StartAt::Earliest,
            Start::Latest => StartAt::Latest,
        }
    }
}

/// A webhook's settings with every default applied: what `webhooks.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    /// The stream it consumes.
    stream: String,
    /// Its id within the stream.
    id: String,
    /// Where batches are POSTed.
    url: String,
    /// Most records per POST.
    batch_size: usize,
    /// How long a batch gathers records after its first one.
    max_wait_ms: u64,
    /// Attempts per batch before it is dead-lettered.
    max_attempts: u32,
    /// Backoff after the first failure, doubling up to 60 s.
    backoff_ms: u64,
    /// The dead-letter stream; `None` drops (and logs) what fails every attempt.
    dead_letter: Option<String>,
    /// Where it starts without a checkpoint.
    start: Start,
    /// Timeout of one POST.
    timeout_ms: u64,
}

impl Spec {
    /// The trigger's retry policy.
    fn retry(&self) -> RetryPolicy {
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
struct SpecIn {
    /// An `http://` or `https://` URL.
    url: String,
    /// Most records per POST (default 1, at most 1,000).
    batch_size: Option<u64>,
    /// How long a batch gathers records after its first one (default 100 ms).
    max_wait_ms: Option<u64>,
    /// Attempts per batch (default 5, at most 100).
    max_attempts: Option<u64>,
    /// Backoff after the first failure (default 200 ms).
    backoff_ms: Option<u64>,
    /// The dead-letter stream, or `false`.
    dead_letter: Option<Value>,
    /// `earliest` or `latest` (default).
    start: Option<Start>,
    /// Timeout of one POST (default 10 s).
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
fn parse_url(text: &str) -> Result<reqwest::Url, ApiError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| ApiError::bad_request(format!("url {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::bad_request(format!(
            "url {text:?} is not an http:// or https:// URL"
        )));
    }
    Ok(url)
}

impl SpecIn {
    /// The dead-letter stream the spec names (created if missing when the webhook runs).
    fn dead_letter_stream(&self, stream: &str) -> Result<Option<String>, ApiError> {
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
                return Err(ApiError::bad_request(
                    "dead_letter must be another stream than the webhook's own",
                ));
            }
        }
        Ok(dead_letter)
    }

    /// Checks the spec and applies the defaults.
    fn resolve(self, stream: &str, id: &str) -> Result<(Spec, reqwest::Url), ApiError> {
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
            start: self.start.unwrap_or(Start::Latest),
            timeout_ms: in_range("timeout_ms", self.timeout_ms.unwrap_or(10_000), TIMEOUT_MS)?,
        };
        Ok((spec, url))
    }
}

/// What a webhook did since the server started (or since it was registered).
#[derive(Debug, Default)]
struct Counters {
    /// Records answered with a 2xx.
    delivered: AtomicU64,
    /// POSTs that failed (non-2xx or transport error).
    failed_attempts: AtomicU64,
    /// Records given up on after the last attempt (dead-lettered, or dropped without a
    /// dead-letter stream).
    dead_lettered: AtomicU64,
    /// The latest failure.
    last_error: Mutex<Option<String>>,
}

impl Counters {
    /// Keeps `error` as the latest failure.
    fn set_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The latest failure, if any.
    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A registered webhook and its task.
#[derive(Debug)]
struct Running {
    spec: Spec,
    counters: Arc<Counters>,
    /// Set to `true` to stop the task; dropping it stops the task too.
    stop: watch::Sender<bool>,
    /// The task, until it is stopped and awaited.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// The JSON view: the spec and the counters.
    fn view(&self) -> Value {
        let s = &self.spec;
        let c = &self.counters;
        let dead_letter = match &s.dead_letter {
            Some(name) => json!(name),
            None => json!(false),
        };
        json!({
            "id": s.id,
            "stream": s.stream,
            "url": s.url,
            "batch_size": s.batch_size,
            "max_wait_ms": s.max_wait_ms,
            "max_attempts": s.max_attempts,
            "backoff_ms": s.backoff_ms,
            "dead_letter": dead_letter,
            "start": s.start,
            "timeout_ms": s.timeout_ms,
            "delivered": c.delivered.load(Ordering::Relaxed),
            "failed_attempts": c.failed_attempts.load(Ordering::Relaxed),
            "dead_lettered": c.dead_lettered.load(Ordering::Relaxed),
            "last_error": c.last_error(),
        })
    }

    /// Stops the task and waits until it has finished the batch in hand and committed.
    async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(task) = task else {
            return;
        };
        if let Err(e) = task.await {
            tracing::error!(stream = %self.spec.stream, webhook = %self.spec.id, error = %e, "webhook task failed");
        }
    }
}

/// Every registered webhook, keyed by stream and id.
type Registry = BTreeMap<(String, String), Arc<Running>>;

/// The webhooks of a server: their registrations, persisted in the state directory if there
/// is one, and their running triggers.
#[derive(Debug)]
pub(crate) struct Webhooks {
    client: Client,
    dir: Option<PathBuf>,
    /// Built on first use, then shared by every webhook.
    http: Mutex<Option<reqwest::Client>>,
    /// Held through every change (register, delete, shutdown), so that the file and the
    /// running tasks agree.
    changes: tokio::sync::Mutex<()>,
    running: Mutex<Registry>,
    /// Set by [`Webhooks::shutdown`]: no webhook starts after it.
    closed: AtomicBool,
}

impl Webhooks {
    /// Webhooks kept in memory only, none registered yet.
    pub(crate) fn in_memory(client: Client) -> Webhooks {
        Webhooks {
            client,
            dir: None,
            http: Mutex::new(None),
            changes: tokio::sync::Mutex::new(()),
            running: Mutex::new(Registry::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// The webhooks registered in `dir` (created if missing), every one of them started; with
    /// no `dir`, [`Webhooks::in_memory`]. An unreadable or corrupt `webhooks.json` is an
    /// error rather than a silent loss of registrations.
    pub(crate) async fn open(
        client: Client,
        dir: Option<PathBuf>,
    ) -> Result<Webhooks, cloudstream::Error> {
        let mut webhooks = Webhooks::in_memory(client);
        let Some(dir) = dir else {
            return Ok(webhooks);
        };
        let specs = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load(&dir))
                .await
                .map_err(|e| cloudstream::Error::Backend(Box::new(e)))??
        };
        webhooks.dir = Some(dir);
        if specs.is_empty() {
            return Ok(webhooks);
        }
        let http = webhooks
            .http()
            .map_err(|e| cloudstream::Error::Backend(e.into()))?;
        let mut started = Registry::new();
        for spec in specs {
            let url = match parse_url(&spec.url) {
                Ok(url) => url,
                Err(e) => {
                    tracing::error!(stream = %spec.stream, webhook = %spec.id, error = ?e, "skipping a registered webhook with a bad URL");
                    continue;
                }
            };
            let key = (spec.stream.clone(), spec.id.clone());
            let running = webhooks.start(spec, url, http.clone(), Arc::default());
            started.insert(key, running);
        }
        *webhooks.lock_running() = started;
        Ok(webhooks)
    }

    /// Stops every webhook and waits for each to finish the batch in hand and commit. The
    /// registrations stay in the state directory, to start again with the next server.
    pub(crate) async fn shutdown(&self) {
        let _changes = self.changes.lock().await;
        self.closed.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Running>> = std::mem::take(&mut *self.lock_running())
            .into_values()
            .collect();
        futures::future::join_all(all.iter().map(|r| r.stop())).await;
    }

    /// Stops and forgets the webhooks of a deleted stream (its consumers went with it).
    pub(crate) async fn forget_stream(&self, stream: &str) {
        let _changes = self.changes.lock().await;
        let mut gone: Vec<Arc<Running>> = Vec::new();
        self.lock_running().retain(|(s, _), running| {
            if s == stream {
                gone.push(Arc::clone(running));
            }
            s != stream
        });
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.save(self.specs()).await {
            tracing::error!(stream, error = ?e, "could not save the webhooks of a deleted stream");
        }
        futures::future::join_all(gone.iter().map(|r| r.stop())).await;
    }

    /// The registry, locked (never across an `.await`).
    fn lock_running(&self) -> MutexGuard<'_, Registry> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared HTTP client, built on first use.
    fn http(&self) -> Result<reqwest::Client, String> {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = &*http {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("cloudstream-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect is an answer other than 2xx, so a failure, not a new destination.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {}", error_chain(&e)))?;
        *http = Some(client.clone());
        Ok(client)
    }

    /// The registered specs, by stream and id.
    fn specs(&self) -> BTreeMap<(String, String), Spec> {
        self.lock_running()
            .iter()
            .map(|(key, r)| (key.clone(), r.spec.clone()))
            .collect()
    }

    /// Starts a webhook's task.
    fn start(
        &self,
        spec: Spec,
        url: reqwest::Url,
        http: reqwest::Client,
        counters: Arc<Counters>,
    ) -> Arc<Running> {
        let (stop, stopped) = watch::channel(false);
        let task = Task {
            client: self.client.clone(),
            http,
            spec: spec.clone(),
            url,
            counters: Arc::clone(&counters),
        };
        let handle = tokio::spawn(task.run(stopped));
        Arc::new(Running {
            spec,
            counters,
            stop,
            task: Mutex::new(Some(handle)),
        })
    }

    /// Writes `specs` to the state file, atomically; nothing without a state directory.
    async fn save(&self, specs: BTreeMap<(String, String), Spec>) -> Result<(), ApiError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let webhooks = specs.into_values().collect();
        let bytes = serde_json::to_vec_pretty(&StateFile { webhooks })
            .map_err(|e| internal(format!("could not encode the webhooks: {e}")))?;
        let path = dir.join(STATE_FILE);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .map_err(|e| internal(format!("could not save the webhooks: {e}")))?
            .map_err(|e| {
                internal(format!(
                    "could not save the webhooks to {}: {e}",
                    path.display()
                ))
            })
    }

    /// Registers (or replaces) a webhook and starts it; returns whether it is new, and its
    /// view.
    ///
    /// The start point is pinned (committed as the consumer's checkpoint) before this
    /// returns, so every record written after the answer is delivered, even with `latest`.
    /// A replaced webhook keeps its consumer, so its checkpoint and counters too.
    async fn register(
        &self,
        stream: &str,
        id: &str,
        body: SpecIn,
    ) -> Result<(bool, Value), ApiError> {
        cloudstream::validate_name("webhook", id)?;
        let consumer = consumer_name(id);
        cloudstream::validate_name("consumer", &consumer)?;
        let (spec, url) = body.resolve(stream, id)?;
        let handle = self.client.stream(stream).open().await?;
        let http = self.http().map_err(internal)?;
        let _changes = self.changes.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ));
        }
        // Pinned before the answer: every event sent after a 201 reaches the webhook.
        handle
            .on_batch(&consumer, |_: Vec<Record>| async { Ok::<(), String>(()) })
            .start_at(spec.start.at())
            .pin_start()
            .await?;
        let key = (stream.to_owned(), id.to_owned());
        let mut specs = self.specs();
        specs.insert(key.clone(), spec.clone());
        self.save(specs).await?;
        let old = self.lock_running().get(&key).cloned();
        if let Some(old) = &old {
            old.stop().await;
        }
        let counters = old
            .as_ref()
            .map(|o| Arc::clone(&o.counters))
            .unwrap_or_default();
        let running = self.start(spec, url, http, counters);
        let view = running.view();
        self.lock_running().insert(key, running);
        Ok((old.is_none(), view))
    }

    /// Stops a webhook, forgets it and deletes its consumer.
    async fn delete(&self, stream: &str, id: &str) -> Result<(), ApiError> {
        let _changes = self.changes.lock().await;
        let key = (stream.to_owned(), id.to_owned());
        let old = self.lock_running().get(&key).cloned();
        let Some(old) = old else {
            // A missing stream is a 404 of its own.
            self.client.stream(stream).open().await?;
            return Err(not_found(stream, id));
        };
        let mut specs = self.specs();
        specs.remove(&key);
        self.save(specs).await?;
        self.lock_running().remove(&key);
        old.stop().await;
        match self
            .client
            .backend()
            .delete_consumer(stream, &consumer_name(id))
            .await
        {
            Ok(_) | Err(cloudstream::Error::StreamNotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The view of one webhook; 404 if the stream or the webhook does not exist.
    async fn view(&self, stream: &str, id: &str) -> Result<Value, ApiError> {
        let key = (stream.to_owned(), id.to_owned());
        let view = self.lock_running().get(&key).map(|r| r.view());
        if let Some(view) = view {
            return Ok(view);
        }
        self.client.stream(stream).open().await?;
        Err(not_found(stream, id))
    }

    /// The views of a stream's webhooks; 404 if the stream does not exist.
    async fn views(&self, stream: &str) -> Result<Vec<Value>, ApiError> {
        let views: Vec<Value> = self
            .lock_running()
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|(_, r)| r.view())
            .collect();
        if views.is_empty() {
            self.client.stream(stream).open().await?;
        }
        Ok(views)
    }
}

/// The state file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// The registrations.
    #[serde(default)]
    webhooks: Vec<Spec>,
}

/// Reads the registrations in `dir`, creating `dir` if missing; none if there is no file.
fn load(dir: &FsPath) -> Result<Vec<Spec>, cloudstream::Error> {
    fn failed(path: &FsPath, e: &dyn std::fmt::Display) -> cloudstream::Error {
        cloudstream::Error::Backend(format!("webhook state {}: {e}", path.display()).into())
    }
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(&path, &e)),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| failed(&path, &e))?;
    Ok(file.webhooks)
}

/// Replaces the state file with `bytes`: written to a temporary file, synced, renamed over
/// the old one, and the directory synced, so a crash leaves the old file or the new one.
fn write_atomically(dir: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(STATE_TMP);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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

/// A 500 with code `internal`.
fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// A 404 with code `webhook_not_found`.
fn not_found(stream: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "webhook_not_found",
        format!("stream {stream:?} has no webhook {id:?}"),
    )
}

/// An error with its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
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
async fn until_stopped(mut stop: watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped || stop.changed().await.is_err() {
            return;
        }
    }
}

/// What a webhook's task runs with.
struct Task {
    client: Client,
    http: reqwest::Client,
    spec: Spec,
    url: reqwest::Url,
    counters: Arc<Counters>,
}

impl Task {
    /// Runs the trigger until told to stop; restarts it, after a pause, when it stops on an
    /// error of its own (the stream missing, the provider unreachable, ...).
    async fn run(self, stop: watch::Receiver<bool>) {
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
        let delivery = Arc::new(Delivery {
            http: self.http.clone(),
            url: self.url.clone(),
            stream: self.spec.stream.clone(),
            id: self.spec.id.clone(),
            timeout: Duration::from_millis(self.spec.timeout_ms),
            max_attempts: self.spec.max_attempts,
            counters: Arc::clone(&self.counters),
            attempts: Mutex::default(),
        });
        let trigger = stream
            .on_batch(consumer, move |records: Vec<Record>| {
                let delivery = Arc::clone(&delivery);
                async move { delivery.post(records).await }
            })
            .batch_size(self.spec.batch_size)
            .max_wait(Duration::from_millis(self.spec.max_wait_ms))
            .retry(self.spec.retry())
            .start_at(self.spec.start.at());
        let trigger = match &self.spec.dead_letter {
            Some(name) => trigger.dead_letter(name),
            None => trigger.no_dead_letter(),
        };
        trigger.run_until(until_stopped(stop)).await.map(|_| ())
    }
}

/// POSTs batches for one run of a trigger, and counts.
struct Delivery {
    http: reqwest::Client,
    url: reqwest::Url,
    stream: String,
    id: String,
    timeout: Duration,
    max_attempts: u32,
    counters: Arc<Counters>,
    /// Failed attempts of the batch in hand (the trigger retries a batch whole), by its
    /// first record: the last one failing means the trigger gives up on it.
    attempts: Mutex<HashMap<Position, u32>>,
}

impl Delivery {
    /// POSTs one batch; `Err` (with the status or the transport error) unless it got a 2xx.
    async fn post(&self, records: Vec<Record>) -> Result<(), String> {
        let Some(first) = records.first().map(|r| r.position) else {
            return Ok(());
        };
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
        let outcome = match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = answer_start(response).await;
                let text = text.trim();
                if text.is_empty() {
                    Err(format!("POST {} answered {status}", self.url))
                } else {
                    Err(format!(
                        "POST {} answered {status}: {}",
                        self.url,
                        truncate(text, MAX_ANSWER_TEXT)
                    ))
                }
            }
            Err(e) => Err(format!("POST {} failed: {}", self.url, error_chain(&e))),
        };
        self.account(first, records.len() as u64, &outcome);
        outcome
    }

    /// Counts one attempt's outcome.
    fn account(&self, first: Position, records: u64, outcome: &Result<(), String>) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => {
                attempts.remove(&first);
                self.counters
                    .delivered
                    .fetch_add(records, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.set_error(e.clone());
                let tried = attempts.entry(first).or_insert(0);
                *tried += 1;
                if *tried >= self.max_attempts {
                    attempts.remove(&first);
                    self.counters
                        .dead_lettered
                        .fetch_add(records, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Parses the body of a registration: a 400 `bad_json` unless it is a webhook spec.
fn parse_spec(body: Result<Bytes, BytesRejection>) -> Result<SpecIn, ApiError> {
    let body = body?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("not a webhook spec: {e}"),
        )
    })
}

/// A change's task failed (it panicked): a 500.
fn task_failed(e: tokio::task::JoinError) -> ApiError {
    internal(format!("the change failed: {e}"))
}

/// `PUT /v1/streams/{name}/webhooks/{id}`: registers (201) or replaces (200) a webhook.
#[utoipa::path(
    put, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    request_body(content = SpecIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = crate::openapi::WebhookBody),
        (status = 200, description = "Replaced", body = crate::openapi::WebhookBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn register(
    state: State,
    Path((stream, id)): Path<(String, String)>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = parse_spec(body)?;
    // The webhook writes (and may create) its dead-letter stream: the token needs admin there.
    if let Some(dead_letter) = spec.dead_letter_stream(&stream)? {
        let principal = principal.as_ref().map(|axum::Extension(p)| p);
        crate::auth::require(principal, &dead_letter, crate::Scope::Admin)?;
    }
    let state = Arc::clone(&state.0);
    // In a task of its own, so that a request that times out or is dropped does not leave
    // the change half done.
    let (created, view) =
        tokio::spawn(async move { state.webhooks.register(&stream, &id, spec).await })
            .await
            .map_err(task_failed)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `GET /v1/streams/{name}/webhooks`: `{"webhooks": [view, ...]}`.
#[utoipa::path(
    get, path = "/v1/streams/{name}/webhooks", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream's webhooks", body = crate::openapi::Webhooks),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = state.webhooks.views(&stream).await?;
    Ok(Json(json!({ "webhooks": views })))
}

/// `GET /v1/streams/{name}/webhooks/{id}`: the webhook's view.
#[utoipa::path(
    get, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook", body = crate::openapi::WebhookBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn describe(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.webhooks.view(&stream, &id).await?))
}

/// `DELETE /v1/streams/{name}/webhooks/{id}`: stops the webhook and deletes its consumer.
#[utoipa::path(
    delete, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Stopped, its consumer deleted"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let state = Arc::clone(&state.0);
    tokio::spawn(async move { state.webhooks.delete(&stream, &id).await })
        .await
        .map_err(task_failed)??;
    Ok(StatusCode::NO_CONTENT)
}
