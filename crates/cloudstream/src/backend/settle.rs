//! Acknowledgements made through a synchronous [`super::Acker`] are sent to the provider by
//! a task; [`Settling`] counts those not on the server yet, so that a pull can first wait
//! for the ones made before it (a batch given back is then there for that pull).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Error, Result};

/// Acknowledgements queued and not yet on the server.
#[derive(Debug, Default)]
pub(crate) struct Settling {
    /// Acknowledgements queued, ever.
    queued: AtomicUsize,
    /// Acknowledgements settled (sent, or failed), ever.
    settled: AtomicUsize,
    done: Notify,
    /// The last failure since the last [`Settling::wait`].
    failure: Mutex<Option<String>>,
}

/// How long a wait for acknowledgements may take before it is reported.
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(30);

impl Settling {
    /// One more acknowledgement queued.
    pub(crate) fn begin(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` acknowledgements are on the server.
    pub(crate) fn end(&self, n: usize) {
        self.settled.fetch_add(n, Ordering::AcqRel);
        self.done.notify_waiters();
    }

    /// `n` acknowledgements could not be sent: the next wait reports `why`.
    pub(crate) fn failed(&self, n: usize, why: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.end(n);
    }

    /// Waits until every acknowledgement queued before the call is settled (those queued
    /// after it are not waited for); [`Error::Unavailable`] if that took longer than
    /// `limit`, or if one failed since the last wait.
    pub(crate) fn wait(&self, limit: Duration) -> impl Future<Output = Result<()>> + Send + '_ {
        // Counted now, when the wait is asked for, not when it is first polled.
        let target = self.queued.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + limit;
        self.settled_up_to(target, deadline)
    }

    async fn settled_up_to(&self, target: usize, deadline: tokio::time::Instant) -> Result<()> {
        loop {
            let done = self.done.notified();
            if self.settled.load(Ordering::Acquire) >= target {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return Err(Error::Unavailable(
                    "acknowledgements were not sent in time; the records they cover come again"
                        .into(),
                ));
            }
        }
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(why) => Err(Error::Unavailable(
                format!("acknowledgements failed ({why}); the records they cover come again")
                    .into(),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_everything_before_it_settled() {
        let s = Settling::default();
        s.begin();
        s.begin();
        let waiter = s.wait(Duration::from_secs(10));
        s.end(1);
        s.begin(); // queued after the wait began: not waited for
        s.end(1);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled")
            .expect("no failure");
        s.failed(1, "lost".into());
        let failed = s.wait(Duration::from_secs(1)).await;
        assert!(failed.is_err_and(|e| e.to_string().contains("lost")));
        assert!(
            s.wait(Duration::from_secs(1)).await.is_ok(),
            "reported once"
        );
        s.begin();
        assert!(
            s.wait(Duration::from_millis(50)).await.is_err(),
            "timed out"
        );
    }
}
