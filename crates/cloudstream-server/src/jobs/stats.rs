//! What a job did since the server started (or since it was registered): its trigger's
//! totals and its latest failure.

use std::sync::{Mutex, PoisonError};

use cloudstream::{BatchOutcome, BatchReport, TriggerTotals};
use serde_json::{json, Map, Value};

/// A job's counters: records handled, attempts that failed, records given up on after the
/// last attempt, and the failure since the last batch handled.
#[derive(Debug, Default)]
pub(crate) struct JobStats {
    /// Its trigger's totals, across restarts of the trigger.
    totals: TriggerTotals,
    /// The latest failure.
    last_error: Mutex<Option<String>>,
}

impl JobStats {
    /// Keeps `error` as the latest failure.
    pub(crate) fn set_error(&self, error: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Counts one batch's outcome, as the trigger reports it. A batch handled clears the
    /// latest failure: `last_error` says what is wrong now, not what once was.
    pub(crate) fn count(&self, report: &BatchReport) {
        self.totals.count(report);
        let error = match &report.outcome {
            BatchOutcome::Retried { error, .. } | BatchOutcome::DeadLettered { error, .. } => {
                Some(error.clone())
            }
            _ => None,
        };
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// The counters as a job's view shows them: `delivered` (records), `failed_attempts`,
    /// `dead_lettered` (records) and `last_error`.
    pub(crate) fn view(&self) -> Map<String, Value> {
        let totals = self.totals.report();
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let view = json!({
            "delivered": totals.handled,
            "failed_attempts": totals.failed_attempts,
            "dead_lettered": totals.dead_lettered,
            "last_error": last_error,
        });
        match view {
            Value::Object(fields) => fields,
            _ => Map::new(),
        }
    }
}
