//! What a job did since the server started (or since it was registered): its trigger's
//! totals and what is failing now.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use cloudstream::{BatchOutcome, BatchReport, TriggerTotals};
use serde_json::{json, Map, Value};

/// A job's counters: records handled, attempts that failed, records given up on after the
/// last attempt, and what is failing now.
#[derive(Debug, Default)]
pub(crate) struct JobStats {
    /// Its trigger's totals, across restarts of the trigger.
    totals: TriggerTotals,
    /// The failures not mended since, by partition (`None`: the job's own, such as a run
    /// that stopped), each with the order it came in.
    failing: Mutex<Failing>,
}

#[derive(Debug, Default)]
struct Failing {
    next: u64,
    by_partition: BTreeMap<Option<u32>, (u64, String)>,
}

impl Failing {
    fn set(&mut self, partition: Option<u32>, error: String) {
        self.next += 1;
        self.by_partition.insert(partition, (self.next, error));
    }
}

impl JobStats {
    /// Keeps `error` as the job's own failure (its run stopped), until a batch goes through.
    pub(crate) fn set_error(&self, error: String) {
        self.lock().set(None, error);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failing> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one batch's outcome, as the trigger reports it. A batch that fails is what
    /// its partition's failure is now; one handled mends its partition's (and the job's
    /// own: it runs again).
    pub(crate) fn count(&self, report: &BatchReport) {
        self.totals.count(report);
        let partition = report.first.partition;
        let mut failing = self.lock();
        match &report.outcome {
            BatchOutcome::Retried { error, .. } | BatchOutcome::DeadLettered { error, .. } => {
                failing.set(Some(partition), error.clone());
            }
            _ => {
                failing.by_partition.remove(&Some(partition));
                failing.by_partition.remove(&None);
            }
        }
    }

    /// The counters as a job's view shows them: `delivered` (records), `failed_attempts`,
    /// `dead_lettered` (records) and `last_error` (the latest failure not mended since).
    pub(crate) fn view(&self) -> Map<String, Value> {
        let totals = self.totals.report();
        let last_error = self
            .lock()
            .by_partition
            .values()
            .max_by_key(|(order, _)| *order)
            .map(|(_, error)| error.clone());
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
