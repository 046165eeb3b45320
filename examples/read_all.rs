//! The RFC's "ReadAll": an `onEvent` trigger that sees every event of `TelemetryIngest`,
//! in order within each partition, with checkpoints, retries and a dead-letter stream.
//!
//! Runs until Ctrl-C, or, with `READ_ALL_IDLE_SECS=N`, until no event came for N seconds
//! (the end-to-end demo uses 2).
//!
//! ```text
//! cargo run --example read_all
//! ```

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::main]
async fn main() -> cloudstream::Result<()> {
    let idle: Option<u64> = std::env::var("READ_ALL_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    let stream = common::telemetry_ingest().await?;
    let started = Instant::now();
    let last_event_ms = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let (last, count) = (last_event_ms.clone(), seen.clone());
    let trigger = stream
        .on_event("ReadAll", move |record| {
            let (last, count) = (last.clone(), count.clone());
            async move {
                // `return event.body;` — here: decode and show it.
                let body: Value = record.json()?;
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if n <= 3 || n % 100 == 0 {
                    println!("ReadAll: {} {}", record.position, body);
                }
                Ok::<(), cloudstream::Error>(())
            }
        })
        .max_wait(Duration::from_millis(200));
    let shutdown = async move {
        match idle {
            Some(secs) => loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let quiet_since = last_event_ms.load(Ordering::Relaxed);
                if started.elapsed().as_millis() as u64 > quiet_since + secs * 1000 {
                    break;
                }
            },
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let report = trigger.run_until(shutdown).await?;
    println!(
        "ReadAll: handled {} events ({} failed attempts, {} dead-lettered); checkpoint committed",
        report.handled, report.failed_attempts, report.dead_lettered
    );
    Ok(())
}
