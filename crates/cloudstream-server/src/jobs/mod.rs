//! Consumers the server runs for its clients: webhooks (`webhooks/`), deliveries to object
//! storage (`deliveries/`) and windowed aggregations (`aggregations/`), each a [`Job`] kept
//! by one registry, [`Jobs`]; [`JobKinds`] holds one registry per kind.
//!
//! A job is registered under a stream and an id with a `PUT`, runs as a consumer of the
//! stream (its name from the job's kind and id) through the library's trigger runtime, and
//! is restarted after a pause when it stops on an error. Registrations (the specs, not the
//! counters) are kept in `<kind>s.json` in the server's state directory, replaced
//! atomically on every change, and every registered job starts again when the server does,
//! resuming at its checkpoint. Without a state directory they live in memory only.

pub(crate) mod kinds;
pub(crate) mod routes;
mod stats;
pub(crate) mod store;
mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::StatusCode;
use cloudstream::{Client, Record, StartAt};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) use self::kinds::JobKinds;
pub(crate) use self::stats::JobStats;
pub(crate) use self::task::until_stopped;
use crate::ApiError;

/// A kind of job: how its registrations are checked, kept, shown and run.
pub(crate) trait Job: Send + Sync + Sized + 'static {
    /// A registration with every default applied: what the state file keeps.
    type Spec: Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The body of a registration.
    type SpecIn: Send + 'static;

    /// The kind, in messages (`webhook`).
    const KIND: &'static str;
    /// The key of the state file's list, and the file's name (`{PLURAL}.json`).
    const PLURAL: &'static str;
    /// The code of the 404 for a job that is not registered (`webhook_not_found`).
    const NOT_FOUND: &'static str;
    /// The code of the 409 for a job that [`Job::conflict`]s with another.
    const CONFLICT: &'static str;

    /// What the consumers of this kind's jobs are named with: a job with `id` reads as
    /// `{CONSUMER_PREFIX}{id}`, and these consumers are the admin's.
    const CONSUMER_PREFIX: &'static str;

    /// Why the checkpoint of a registered job's consumer may not be moved or deleted by
    /// hand, if it may not (a 409 with [`Job::CONFLICT`]).
    const CHECKPOINT_OWNED: Option<&'static str> = None;

    /// The consumer a job with `id` reads as.
    fn consumer(id: &str) -> String {
        format!("{}{id}", Self::CONSUMER_PREFIX)
    }

    /// The server's jobs of this kind.
    fn registry(state: &crate::AppState) -> &Jobs<Self>;

    /// Checks a registration of `id` on `stream` and applies its defaults.
    fn resolve(
        &self,
        stream: &str,
        id: &str,
        body: Self::SpecIn,
    ) -> BoxFuture<'_, Result<Self::Spec, ApiError>>;

    /// Why `new` cannot run beside `existing` (another job of the kind), if it cannot.
    fn conflict(existing: &Self::Spec, new: &Self::Spec) -> Option<String> {
        let _ = (existing, new);
        None
    }

    /// Why `new` cannot replace `old` (the job registered under the same stream and id),
    /// if it cannot: a 409 with [`Job::CONFLICT`].
    fn replace(old: &Self::Spec, new: &Self::Spec) -> Option<String> {
        let _ = (old, new);
        None
    }

    /// Deletes what a deleted job kept besides its consumer (called once it has stopped).
    fn forget(&self, spec: &Self::Spec) {
        let _ = spec;
    }

    /// The stream and id a spec is registered under.
    fn key(spec: &Self::Spec) -> (String, String);

    /// Where the job starts without a checkpoint.
    fn start(spec: &Self::Spec) -> StartAt;

    /// The spec as the API shows it (without secrets); the registry adds the counters.
    fn view(spec: &Self::Spec) -> Value;

    /// One run of the job, until `stop` completes or it fails; `stats` counts its batches.
    fn run(
        self: Arc<Self>,
        client: Client,
        spec: Self::Spec,
        stats: Arc<JobStats>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, cloudstream::Result<()>>;
}

/// A registered job and its task.
#[derive(Debug)]
struct Running<S> {
    spec: S,
    stats: Arc<JobStats>,
    /// Set to `true` to stop the task; dropping it stops the task too.
    stop: watch::Sender<bool>,
    /// The task, until it is stopped and awaited.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<S> Running<S> {
    /// Stops the task and waits until it has finished the batch in hand and committed.
    async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Err(e)) = match task {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::error!(error = %e, "a job's task failed");
        }
    }
}

/// Every registered job of a kind, keyed by stream and id.
type Registry<S> = BTreeMap<(String, String), Arc<Running<S>>>;

/// The jobs of one kind on a server: their registrations, persisted in the state directory
/// if there is one, and their running tasks.
#[derive(Debug)]
pub(crate) struct Jobs<J: Job> {
    job: Arc<J>,
    client: Client,
    dir: Option<PathBuf>,
    /// Held through every change (register, delete, shutdown), so that the file and the
    /// running tasks agree.
    changes: tokio::sync::Mutex<()>,
    running: Mutex<Registry<J::Spec>>,
    /// Set by [`Jobs::shutdown`]: no job starts after it.
    closed: AtomicBool,
}

impl<J: Job> Jobs<J> {
    /// Jobs kept in memory only, none registered yet.
    pub(crate) fn in_memory(job: J, client: Client) -> Jobs<J> {
        Jobs {
            job: Arc::new(job),
            client,
            dir: None,
            changes: tokio::sync::Mutex::new(()),
            running: Mutex::new(Registry::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// The jobs registered in `dir` (created if missing), every one of them started; with no
    /// `dir`, [`Jobs::in_memory`]. An unreadable or corrupt state file is an error rather
    /// than a silent loss of registrations.
    pub(crate) async fn open(
        job: J,
        client: Client,
        dir: Option<PathBuf>,
    ) -> Result<Jobs<J>, cloudstream::Error> {
        let mut jobs = Jobs::in_memory(job, client);
        let Some(dir) = dir else {
            return Ok(jobs);
        };
        let specs: Vec<J::Spec> = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || store::load(&dir, J::PLURAL))
                .await
                .map_err(|e| cloudstream::Error::Backend(Box::new(e)))??
        };
        jobs.dir = Some(dir);
        let started: Registry<J::Spec> = specs
            .into_iter()
            .map(|spec| (J::key(&spec), jobs.start(spec, Arc::default())))
            .collect();
        *jobs.lock_running() = started;
        Ok(jobs)
    }

    /// Stops every job and waits for each to finish the batch in hand and commit. The
    /// registrations stay in the state directory, to start again with the next server.
    pub(crate) async fn shutdown(&self) {
        let _changes = self.changes.lock().await;
        self.closed.store(true, Ordering::SeqCst);
        let all: Vec<_> = std::mem::take(&mut *self.lock_running())
            .into_values()
            .collect();
        futures::future::join_all(all.iter().map(|r| r.stop())).await;
    }

    /// Stops and forgets the jobs of a deleted stream (their consumers went with it).
    pub(crate) async fn forget_stream(&self, stream: &str) {
        let _changes = self.changes.lock().await;
        let mut gone = Vec::new();
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
            tracing::error!(stream, kind = J::KIND, error = ?e, "could not save the jobs of a deleted stream");
        }
        futures::future::join_all(gone.iter().map(|r| r.stop())).await;
        for running in &gone {
            self.job.forget(&running.spec);
        }
    }

    /// The registry, locked (never across an `.await`).
    fn lock_running(&self) -> MutexGuard<'_, Registry<J::Spec>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registered specs, by stream and id.
    fn specs(&self) -> BTreeMap<(String, String), J::Spec> {
        self.lock_running()
            .iter()
            .map(|(key, r)| (key.clone(), r.spec.clone()))
            .collect()
    }

    /// Starts a job's task.
    fn start(&self, spec: J::Spec, stats: Arc<JobStats>) -> Arc<Running<J::Spec>> {
        let (stop, stopped) = watch::channel(false);
        let (job, client) = (Arc::clone(&self.job), self.client.clone());
        let (stream, id) = J::key(&spec);
        let run = {
            let (spec, stats) = (spec.clone(), Arc::clone(&stats));
            move |stop| Arc::clone(&job).run(client.clone(), spec.clone(), Arc::clone(&stats), stop)
        };
        let name = format!("{} {id} of stream {stream}", J::KIND);
        let handle = tokio::spawn(task::run_restarting(name, Arc::clone(&stats), stopped, run));
        Arc::new(Running {
            spec,
            stats,
            stop,
            task: Mutex::new(Some(handle)),
        })
    }

    /// Writes `specs` to the state file, atomically; nothing without a state directory.
    async fn save(&self, specs: BTreeMap<(String, String), J::Spec>) -> Result<(), ApiError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let specs: Vec<J::Spec> = specs.into_values().collect();
        tokio::task::spawn_blocking(move || store::save(&dir, J::PLURAL, &specs))
            .await
            .map_err(|e| internal(format!("could not save the {}: {e}", J::PLURAL)))?
            .map_err(internal)
    }

    /// The view of a running job: its spec's and its counters.
    fn view_of(running: &Running<J::Spec>) -> Value {
        let mut view = J::view(&running.spec);
        if let Value::Object(fields) = &mut view {
            fields.extend(running.stats.view());
        }
        view
    }

    /// Registers (or replaces) a job and starts it; returns whether it is new, and its view.
    ///
    /// The start point is pinned (committed as the consumer's checkpoint) before this
    /// returns, so every record written after the answer reaches the job, even from
    /// `latest`. A replaced job keeps its consumer, so its checkpoint and counters too.
    pub(crate) async fn register(
        &self,
        stream: &str,
        id: &str,
        body: J::SpecIn,
    ) -> Result<(bool, Value), ApiError> {
        cloudstream::validate_name(J::KIND, id)?;
        let consumer = J::consumer(id);
        cloudstream::validate_name("consumer", &consumer)?;
        let spec = self.job.resolve(stream, id, body).await?;
        let handle = self.client.stream(stream).open().await?;
        let _changes = self.changes.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ));
        }
        // Pinned before the answer: every event sent after a 201 reaches the job.
        handle
            .on_batch(&consumer, |_: Vec<Record>| async { Ok::<(), String>(()) })
            .start_at(J::start(&spec))
            .pin_start()
            .await?;
        let key = (stream.to_owned(), id.to_owned());
        let mut specs = self.specs();
        let clash = specs
            .iter()
            .filter(|(other, _)| **other != key)
            .find_map(|(_, other)| J::conflict(other, &spec));
        let clash = clash.or_else(|| specs.get(&key).and_then(|old| J::replace(old, &spec)));
        if let Some(message) = clash {
            return Err(ApiError::new(StatusCode::CONFLICT, J::CONFLICT, message));
        }
        specs.insert(key.clone(), spec.clone());
        self.save(specs).await?;
        let old = self.lock_running().get(&key).cloned();
        let stats = old
            .as_ref()
            .map(|o| Arc::clone(&o.stats))
            .unwrap_or_default();
        let restart = Restart::new(self, key, spec, stats);
        if let Some(old) = &old {
            old.stop().await;
        }
        let running = restart.now();
        Ok((old.is_none(), Self::view_of(&running)))
    }

    /// Runs `change` (to the checkpoint of job `id`'s consumer) with that job stopped, and
    /// starts it again after: a running job would commit its own position over the change.
    /// Without a job of that id, runs `change` alone.
    pub(crate) async fn with_stopped<T>(
        &self,
        stream: &str,
        id: &str,
        change: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let _changes = self.changes.lock().await;
        let key = (stream.to_owned(), id.to_owned());
        let old = self.lock_running().get(&key).cloned();
        let Some(old) = old else {
            return change.await;
        };
        if let Some(why) = J::CHECKPOINT_OWNED {
            return Err(ApiError::new(StatusCode::CONFLICT, J::CONFLICT, why));
        }
        let _restart = Restart::new(self, key, old.spec.clone(), Arc::clone(&old.stats));
        old.stop().await;
        change.await
    }

    /// Whether a registered job reads as consumer `{CONSUMER_PREFIX}{id}` of `stream`.
    pub(crate) fn owns(&self, stream: &str, id: &str) -> bool {
        self.lock_running()
            .contains_key(&(stream.to_owned(), id.to_owned()))
    }

    /// Stops a job, forgets it and deletes its consumer.
    pub(crate) async fn delete(&self, stream: &str, id: &str) -> Result<(), ApiError> {
        let _changes = self.changes.lock().await;
        let key = (stream.to_owned(), id.to_owned());
        let old = self.lock_running().get(&key).cloned();
        let Some(old) = old else {
            // A missing stream is a 404 of its own.
            self.client.stream(stream).open().await?;
            return Err(not_found::<J>(stream, id));
        };
        let mut specs = self.specs();
        specs.remove(&key);
        self.save(specs).await?;
        self.lock_running().remove(&key);
        old.stop().await;
        // The consumer first: what the job kept besides it is no use without it, while a
        // checkpoint kept without the rest would resume a new job of the id half way.
        match self
            .client
            .backend()
            .delete_consumer(stream, &J::consumer(id))
            .await
        {
            Ok(_) | Err(cloudstream::Error::StreamNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.job.forget(&old.spec);
        Ok(())
    }

    /// The view of one job; 404 if the stream or the job does not exist.
    pub(crate) async fn view(&self, stream: &str, id: &str) -> Result<Value, ApiError> {
        let key = (stream.to_owned(), id.to_owned());
        let view = self.lock_running().get(&key).map(|r| Self::view_of(r));
        if let Some(view) = view {
            return Ok(view);
        }
        self.client.stream(stream).open().await?;
        Err(not_found::<J>(stream, id))
    }

    /// The views of a stream's jobs; 404 if the stream does not exist.
    pub(crate) async fn views(&self, stream: &str) -> Result<Vec<Value>, ApiError> {
        let views: Vec<Value> = self
            .lock_running()
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|(_, r)| Self::view_of(r))
            .collect();
        if views.is_empty() {
            self.client.stream(stream).open().await?;
        }
        Ok(views)
    }
}

/// Starts a stopped job again, and registers it, at [`Restart::now`] or when dropped: a job
/// stopped to be replaced or to have its checkpoint moved comes back even if the request
/// doing it is dropped half way (its client gone, its deadline passed).
struct Restart<'a, J: Job> {
    jobs: &'a Jobs<J>,
    key: (String, String),
    /// What to start; taken when started.
    job: Option<(J::Spec, Arc<JobStats>)>,
}

impl<'a, J: Job> Restart<'a, J> {
    fn new(jobs: &'a Jobs<J>, key: (String, String), spec: J::Spec, stats: Arc<JobStats>) -> Self {
        Restart {
            jobs,
            key,
            job: Some((spec, stats)),
        }
    }

    /// Starts the job now; returns it.
    fn now(mut self) -> Arc<Running<J::Spec>> {
        let (spec, stats) = self
            .job
            .take()
            .unwrap_or_else(|| unreachable!("started once"));
        self.start(spec, stats)
    }

    fn start(&self, spec: J::Spec, stats: Arc<JobStats>) -> Arc<Running<J::Spec>> {
        let running = self.jobs.start(spec, stats);
        self.jobs
            .lock_running()
            .insert(self.key.clone(), Arc::clone(&running));
        running
    }
}

impl<J: Job> Drop for Restart<'_, J> {
    fn drop(&mut self) {
        if let Some((spec, stats)) = self.job.take() {
            self.start(spec, stats);
        }
    }
}

/// A 500 with code `internal`.
pub(crate) fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// A 404 with the kind's code.
fn not_found<J: Job>(stream: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        J::NOT_FOUND,
        format!("stream {stream:?} has no {} {id:?}", J::KIND),
    )
}
