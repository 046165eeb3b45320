//! Trigger outcomes: every batch's fate reported once, in order, to the trigger's observers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{new_stream, subscribe_first};
use crate::{BatchOutcome, BatchReport, Client, Event, Position, RetryPolicy};

/// An observer hears of each batch once, in order: handled, each failed attempt that is
/// tried again (with its error), then dead-lettered (with the last error and the stream).
pub async fn triggers_report_each_batch_outcome(client: &Client) {
    let stream = new_stream(client, "outcomes", 1).await;
    let dlq = format!("{}.dlq", stream.name());
    subscribe_first(&stream, "observed").await;
    let bodies = ["ok-1", "flaky", "poison", "ok-2"];
    let receipts = stream
        .send_batch(
            bodies
                .iter()
                .map(|b| Event::new(*b).with_key("k"))
                .collect(),
        )
        .await;
    let at: Vec<Position> = receipts.into_iter().map(|r| r.expect("sent")).collect();
    let flaky_failed = Arc::new(Mutex::new(false));
    let reports: Arc<Mutex<Vec<BatchReport>>> = Arc::default();
    let heard = reports.clone();
    let trigger = stream
        .on_event("observed", move |record| {
            let flaky_failed = flaky_failed.clone();
            async move {
                match record.payload().as_ref() {
                    b"poison" => Err("cannot handle poison".to_owned()),
                    b"flaky"
                        if !std::mem::replace(&mut *flaky_failed.lock().expect("lock"), true) =>
                    {
                        Err("transient".to_owned())
                    }
                    _ => Ok(()),
                }
            }
        })
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .max_wait(Duration::from_millis(50))
        .observe(move |report| heard.lock().expect("lock").push(report.clone()));
    let watched = reports.clone();
    let shutdown = async move {
        for _ in 0..1000 {
            if watched.lock().expect("lock").len() >= 7 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let report = trigger.run_until(shutdown).await.expect("run");
    let one = |i: usize, outcome: BatchOutcome| BatchReport {
        first: at[i],
        last: at[i],
        records: 1,
        outcome,
    };
    let retried = |attempt: u32, error: &str| BatchOutcome::Retried {
        attempt,
        error: error.to_owned(),
    };
    assert_eq!(
        *reports.lock().expect("lock"),
        vec![
            one(0, BatchOutcome::Handled),
            one(1, retried(1, "transient")),
            one(1, BatchOutcome::Handled),
            one(2, retried(1, "cannot handle poison")),
            one(2, retried(2, "cannot handle poison")),
            one(
                2,
                BatchOutcome::DeadLettered {
                    attempts: 3,
                    error: "cannot handle poison".to_owned(),
                    dead_letter: Some(dlq),
                }
            ),
            one(3, BatchOutcome::Handled),
        ]
    );
    assert_eq!(
        (report.handled, report.failed_attempts, report.dead_lettered),
        (3, 4, 1),
        "the totals agree with the reports"
    );
}
