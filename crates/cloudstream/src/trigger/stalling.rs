//! How consumers that must never skip a record run their trigger: deliveries and
//! aggregations. Their batches are gathered by size and time, and a batch that fails is
//! retried with backoff, up to a minute apart, for as long as it fails: they stall, and
//! their lag shows it, rather than dead-letter.

use std::time::Duration;

use super::outcome::Observer;
use super::Trigger;
use crate::{BatchReport, RetryPolicy, StartAt};

/// The trigger settings a stalling consumer's builder keeps.
#[derive(Clone)]
pub(crate) struct Stalling {
    /// Most records per batch.
    pub(crate) max_records: usize,
    /// About how many bytes of events per batch, if bounded.
    pub(crate) max_bytes: Option<usize>,
    /// How long a batch gathers records after its first one.
    pub(crate) max_wait: Duration,
    /// Where the consumer starts without a checkpoint.
    pub(crate) start: StartAt,
    /// Told of every batch's outcome.
    pub(crate) observers: Vec<Observer>,
}

impl std::fmt::Debug for Stalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stalling")
            .field("max_records", &self.max_records)
            .field("max_bytes", &self.max_bytes)
            .field("max_wait", &self.max_wait)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl Stalling {
    /// Batches of up to `max_records` records gathered for up to `max_wait`, from the
    /// earliest record.
    pub(crate) fn new(max_records: usize, max_wait: Duration) -> Stalling {
        Stalling {
            max_records,
            max_bytes: None,
            max_wait,
            start: StartAt::Earliest,
            observers: Vec::new(),
        }
    }

    /// Adds an observer of every batch's outcome.
    pub(crate) fn observe(&mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) {
        self.observers.push(std::sync::Arc::new(observer));
    }

    /// `trigger` set up to gather, start, report and retry so.
    pub(crate) fn apply(self, mut trigger: Trigger) -> Trigger {
        trigger.observers.extend(self.observers);
        if let Some(bytes) = self.max_bytes {
            trigger = trigger.batch_bytes(bytes);
        }
        trigger
            .batch_size(self.max_records)
            .max_wait(self.max_wait)
            .start_at(self.start)
            .retry(RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(60),
            })
            .no_dead_letter()
    }
}
