//! A job's task: one run of the job after another, with a pause between them, until it is
//! told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudstream::RetryPolicy;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::JobStats;

/// Pause before restarting a job that stopped on an error: 1 s doubling to 60 s.
const RESTART: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
};
/// A job that ran this long before it stopped restarts with the shortest pause again.
const RESTART_RESET: Duration = Duration::from_secs(60);

/// Runs `run` until told to stop; runs it again, after a pause, when it stops on an error
/// of its own (the stream missing, the provider or the sink unreachable, ...), keeping the
/// error as the job's latest.
pub(crate) async fn run_restarting(
    name: String,
    stats: Arc<JobStats>,
    stop: watch::Receiver<bool>,
    run: impl Fn(watch::Receiver<bool>) -> BoxFuture<'static, cloudstream::Result<()>>,
) {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let outcome = run(stop.clone()).await;
        if stopping(&stop) {
            return;
        }
        let message = match outcome {
            Ok(()) => "it stopped".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(job = %name, error = %message, "job stopped; restarting");
        stats.set_error(format!("stopped: {message}"));
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
