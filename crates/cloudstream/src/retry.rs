//! Retry with exponential backoff and jitter, written once for everything that retries:
//! the policy ([`RetryPolicy`]), which errors are worth another attempt
//! ([`crate::Error::is_retryable`], or a backend's own classification), the pauses between
//! attempts ([`Attempts`], cut short when told to stop), and the loop for a plain call
//! ([`retry`]). Kinesis calls and appends, trigger handlers, dead letters and trigger reads
//! all go through it.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff after the first failure.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, backoff from 100 ms doubling up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): exponential, capped, with
    /// "equal jitter" (half fixed, half random) so retrying clients spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

/// The attempts of one retried operation under a policy: count each failure with
/// [`Attempts::pause`], which waits out its backoff, or says the policy is exhausted.
#[derive(Debug)]
pub(crate) struct Attempts {
    policy: RetryPolicy,
    failed: u32,
}

/// What [`Attempts::pause`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The backoff has passed: try again.
    Again,
    /// Every attempt the policy allows has failed.
    Exhausted,
    /// Told to stop during the backoff.
    Stopped,
}

impl RetryPolicy {
    /// The same policy with no limit on attempts (for loops that only stop when told to).
    pub(crate) fn unbounded(self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: u32::MAX,
            ..self
        }
    }

    /// A fresh count of attempts under this policy.
    pub(crate) fn attempts(&self) -> Attempts {
        Attempts {
            policy: *self,
            failed: 0,
        }
    }
}

impl Attempts {
    /// Failed attempts counted so far.
    pub(crate) fn failed(&self) -> u32 {
        self.failed
    }

    /// Starts counting again (after a success, in a loop that runs on).
    pub(crate) fn reset(&mut self) {
        self.failed = 0;
    }

    /// Counts a failed attempt; unless the policy is exhausted, waits out its backoff (or
    /// until `stop` turns true).
    pub(crate) async fn pause(&mut self, stop: Option<&mut watch::Receiver<bool>>) -> Pause {
        self.failed = self.failed.saturating_add(1);
        if self.failed >= self.policy.max_attempts.max(1) {
            return Pause::Exhausted;
        }
        let backoff = self.policy.backoff(self.failed);
        match stop {
            None => {
                tokio::time::sleep(backoff).await;
                Pause::Again
            }
            Some(stop) => {
                if sleep_or_stop(backoff, stop).await {
                    Pause::Stopped
                } else {
                    Pause::Again
                }
            }
        }
    }
}

/// Sleeps, or returns `true` early when `stop` is (or turns) true.
pub(crate) async fn sleep_or_stop(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stop.changed() => true,
    }
}

/// Calls `op` until it succeeds, fails with an error `retryable` refuses, or has failed as
/// often as `policy` allows; `on_retry(error, attempt)` hears of each failure that is tried
/// again (to log or count it). `None` when `stop` turned true during a backoff.
pub(crate) async fn retry<T, E, Fut>(
    policy: &RetryPolicy,
    mut stop: Option<&mut watch::Receiver<bool>>,
    retryable: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(&E, u32),
    mut op: impl FnMut() -> Fut,
) -> Option<Result<T, E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts = policy.attempts();
    loop {
        let e = match op().await {
            Err(e) if retryable(&e) => e,
            done => return Some(done),
        };
        let attempt = attempts.failed() + 1;
        if attempt < policy.max_attempts.max(1) {
            on_retry(&e, attempt);
        }
        match attempts.pause(stop.as_deref_mut()).await {
            Pause::Again => {}
            Pause::Exhausted => return Some(Err(e)),
            Pause::Stopped => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for attempt in 1..40 {
            let d = p.backoff(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1))
                .min(Duration::from_secs(1));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

    #[tokio::test]
    async fn retry_stops_at_success_refusal_exhaustion_or_stop() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        };
        let always = |_: &&str| true;
        let mut heard = Vec::new();
        let mut calls = 0;
        let done = retry(
            &policy,
            None,
            always,
            |e, n| heard.push((*e, n)),
            || {
                calls += 1;
                let ok = calls == 2;
                async move {
                    if ok {
                        Ok(calls)
                    } else {
                        Err("again")
                    }
                }
            },
        )
        .await;
        assert_eq!(done, Some(Ok(2)));
        assert_eq!(heard, vec![("again", 1)]);
        let mut heard = Vec::new();
        let exhausted = retry(
            &policy,
            None,
            always,
            |e, n| heard.push((*e, n)),
            || async { Err::<(), _>("no") },
        )
        .await;
        assert_eq!(exhausted, Some(Err("no")));
        assert_eq!(
            heard,
            vec![("no", 1), ("no", 2)],
            "the last failure is not retried"
        );
        let refused = retry(
            &policy,
            None,
            |e: &&str| *e != "fatal",
            |_, _| {},
            || async { Err::<(), _>("fatal") },
        )
        .await;
        assert_eq!(refused, Some(Err("fatal")));
        let (tx, mut rx) = watch::channel(true);
        let stopped = retry(
            &policy,
            Some(&mut rx),
            always,
            |_, _| {},
            || async { Err::<(), _>("again") },
        )
        .await;
        assert_eq!(stopped, None);
        drop(tx);
    }
}
