//! What a trigger reports: each batch's outcome as it happens ([`BatchReport`], to the
//! observers given with [`crate::Trigger::observe`]), and its totals when it stops
//! ([`TriggerReport`]).
//!
//! A "batch" is what one handler call receives: one record for `on_event`, up to
//! `batch_size` records for `on_batch`. A batch the trigger finishes with is reported once
//! as [`BatchOutcome::Handled`] or [`BatchOutcome::DeadLettered`], after one
//! [`BatchOutcome::Retried`] per failed attempt that was followed by a backoff. A batch the
//! trigger does not finish with (told to stop during a backoff or while dead-lettering, or
//! stopped by an error no retry can fix) gets no final report: it is not acknowledged, and
//! is delivered again on the next run. Observers are called on the trigger's tasks, in
//! order within a partition: keep them quick (count, log, hand off to a channel). An
//! observer that panics is logged and the trigger goes on.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Position, Record};

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchOutcome {
    /// The handler succeeded; the records are acknowledged next (and committed with the
    /// lane's next checkpoint).
    Handled,
    /// Attempt `attempt` failed with `error`; a backoff follows, then the next attempt
    /// (unless the trigger is told to stop first).
    Retried {
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The handler's error (or "handler panicked").
        error: String,
    },
    /// Every attempt failed: the records went to the dead-letter stream, or were dropped
    /// (and logged) where the trigger has none. Either way they are acknowledged next.
    DeadLettered {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        error: String,
        /// The dead-letter stream, `None` where the records were dropped.
        dead_letter: Option<String>,
    },
}

/// One batch's outcome, as reported to observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Position of the batch's first record.
    pub first: Position,
    /// Position of its last record.
    pub last: Position,
    /// Records in the batch.
    pub records: usize,
    /// What became of it.
    pub outcome: BatchOutcome,
}

impl BatchReport {
    /// The report of `outcome` for `records` (not empty).
    pub(crate) fn of(records: &[Record], outcome: BatchOutcome) -> Option<BatchReport> {
        Some(BatchReport {
            first: records.first()?.position,
            last: records.last()?.position,
            records: records.len(),
            outcome,
        })
    }
}

/// A function told of every batch's outcome (see [`crate::Trigger::observe`]).
pub(crate) type Observer = std::sync::Arc<dyn Fn(&BatchReport) + Send + Sync>;

/// What a trigger did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerReport {
    /// Records the handler succeeded on.
    pub handled: u64,
    /// Handler calls that failed (retried or dead-lettered).
    pub failed_attempts: u64,
    /// Records moved to the dead-letter stream (or dropped when there is none).
    pub dead_lettered: u64,
}

/// The running totals of a trigger, kept as its batches report their outcomes: the trigger
/// keeps one for its [`TriggerReport`], and an observer may keep its own (a webhook's
/// counters) by calling [`TriggerTotals::count`] on every report.
#[derive(Debug, Default)]
pub struct TriggerTotals {
    handled: AtomicU64,
    failed_attempts: AtomicU64,
    dead_lettered: AtomicU64,
}

impl TriggerTotals {
    /// Counts one batch's outcome.
    pub fn count(&self, report: &BatchReport) {
        let records = report.records as u64;
        match report.outcome {
            BatchOutcome::Handled => self.handled.fetch_add(records, Ordering::Relaxed),
            BatchOutcome::Retried { .. } => self.failed_attempts.fetch_add(1, Ordering::Relaxed),
            BatchOutcome::DeadLettered { .. } => {
                self.failed_attempts.fetch_add(1, Ordering::Relaxed);
                self.dead_lettered.fetch_add(records, Ordering::Relaxed)
            }
        };
    }

    /// The totals so far.
    pub fn report(&self) -> TriggerReport {
        TriggerReport {
            handled: self.handled.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}
