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

mod allow;
mod delivery;
pub(crate) mod routes;
mod spec;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use cloudstream::{Client, Record};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::allow::WebhookPolicy;
use self::delivery::{error_chain, Task, WebhookStats};
use self::spec::{consumer_name, parse_url, Spec, SpecIn};
use self::store::{load, write_atomically, StateFile, STATE_FILE};
use crate::ApiError;

/// A registered webhook and its task.
#[derive(Debug)]
struct Running {
    spec: Spec,
    counters: Arc<WebhookStats>,
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
        let totals = c.totals.report();
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
            "delivered": totals.handled,
            "failed_attempts": totals.failed_attempts,
            "dead_lettered": totals.dead_lettered,
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
    /// Which hosts webhooks may post to.
    policy: WebhookPolicy,
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
    pub(crate) fn in_memory(client: Client, policy: WebhookPolicy) -> Webhooks {
        Webhooks {
            client,
            dir: None,
            policy,
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
        policy: WebhookPolicy,
    ) -> Result<Webhooks, cloudstream::Error> {
        let mut webhooks = Webhooks::in_memory(client, policy);
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
            // Every address a webhook connects to passes the policy; a proxy would connect
            // on the webhook's behalf, past it.
            .dns_resolver(self.policy.resolver())
            .no_proxy()
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
        counters: Arc<WebhookStats>,
    ) -> Arc<Running> {
        let (stop, stopped) = watch::channel(false);
        let task = Task {
            client: self.client.clone(),
            http,
            policy: self.policy.clone(),
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
    pub(crate) async fn register(
        &self,
        stream: &str,
        id: &str,
        body: SpecIn,
    ) -> Result<(bool, Value), ApiError> {
        cloudstream::validate_name("webhook", id)?;
        let consumer = consumer_name(id);
        cloudstream::validate_name("consumer", &consumer)?;
        let (spec, url) = body.resolve(stream, id)?;
        self.policy.check(&url).map_err(|message| {
            ApiError::new(StatusCode::FORBIDDEN, "webhook_url_not_allowed", message)
        })?;
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
            .start_at(spec.start)
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
    pub(crate) async fn delete(&self, stream: &str, id: &str) -> Result<(), ApiError> {
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
    pub(crate) async fn view(&self, stream: &str, id: &str) -> Result<Value, ApiError> {
        let key = (stream.to_owned(), id.to_owned());
        let view = self.lock_running().get(&key).map(|r| r.view());
        if let Some(view) = view {
            return Ok(view);
        }
        self.client.stream(stream).open().await?;
        Err(not_found(stream, id))
    }

    /// The views of a stream's webhooks; 404 if the stream does not exist.
    pub(crate) async fn views(&self, stream: &str) -> Result<Vec<Value>, ApiError> {
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
