//! Acknowledgements made through a synchronous [`super::Acker`] are sent to the provider by
//! a task; [`Settling`] counts those not on the server yet, so that a pull can first wait
//! for the ones made before it (a batch given back is then there for that pull).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Acknowledgements queued and not yet on the server.
#[derive(Debug, Default)]
pub(crate) struct Settling {
    count: AtomicUsize,
    done: Notify,
}

impl Settling {
    /// One more acknowledgement queued.
    pub(crate) fn begin(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` acknowledgements are on the server (or failed and logged).
    pub(crate) fn end(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::AcqRel);
        self.done.notify_waiters();
    }

    /// Waits until every acknowledgement queued so far is settled, for at most `limit`.
    pub(crate) async fn wait(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done = self.done.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_everything_before_it_settled() {
        let s = std::sync::Arc::new(Settling::default());
        s.begin();
        s.begin();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait(Duration::from_secs(10)).await }
        });
        s.end(1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.end(1);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled")
            .expect("join");
    }
}
