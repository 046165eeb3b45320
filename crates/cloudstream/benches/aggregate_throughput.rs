//! How fast the windowed aggregation of one partition goes: EVENTS JSON telemetry events of
//! about 100 bytes (`{"device":"d-417","temperature":21.3,...}`, 1,000 devices, event times
//! 1 ms apart with a little disorder), aggregated per device over 1-minute tumbling windows
//! with count, avg and p95 of the temperature; the records are made before the clock starts.
//! Measured twice: `Aggregator::push` alone on one core, then end to end, `stream.aggregate`
//! from a `local://` stream of PARTITIONS partitions (keyed by device) to an output stream,
//! its state saved to local files after every batch (batches of 10,000 records), from the
//! start of the run until every partition's state has seen its last record.
//!
//! ```text
//! cargo bench -p cloudstream --features aggregate --bench aggregate_throughput -- [EVENTS] [PARTITIONS]
//! ```

mod common;

use std::time::{Duration, Instant, UNIX_EPOCH};

use cloudstream::aggregate::{Aggregation, Aggregator, Measure, Op, Window};
use cloudstream::{Event, Position, Record};
use common::arg;

/// EVENTS telemetry records of partition 0, in order.
fn records(events: usize) -> Vec<Record> {
    (0..events)
        .map(|i| {
            // Up to 50 ms out of order.
            let t = i as u64 + (i as u64 * 7919) % 50;
            let payload = serde_json::json!({
                "device": format!("d-{}", i % 1000),
                "temperature": 15.0 + (i % 200) as f64 / 10.0,
                "humidity": 40 + i % 30,
                "site": "north",
            });
            Record {
                position: Position::new(0, i as u64),
                append_time: UNIX_EPOCH,
                event: Event::json(&payload)
                    .expect("json")
                    .with_time(UNIX_EPOCH + Duration::from_millis(t)),
            }
        })
        .collect()
}

/// Per device, 1-minute tumbling windows, count/avg/p95 of the temperature, 1 s lateness.
fn spec() -> Aggregation {
    Aggregation {
        window: Window::Tumbling { size_ms: 60_000 },
        group_by: vec!["device".into()],
        measures: vec![
            Measure::new("n", Op::Count, None),
            Measure::new("avg_temperature", Op::Avg, Some("temperature")),
            Measure::new(
                "p95_temperature",
                Op::Percentile { q: 0.95 },
                Some("temperature"),
            ),
        ],
        lateness_ms: 1_000,
    }
}

#[tokio::main]
async fn main() {
    let events = arg(0, 1_000_000);
    let partitions = arg(1, 2) as u32;
    in_process(events);
    end_to_end(events, partitions).await;
}

/// `Aggregator::push` alone.
fn in_process(events: usize) {
    let records = records(events);
    let mut aggregator = Aggregator::new(spec()).expect("valid");
    let started = Instant::now();
    let mut windows = 0usize;
    for r in &records {
        windows += aggregator.push(r).results.len();
    }
    let elapsed = started.elapsed();
    println!(
        "aggregate throughput: {events} events, 1-minute tumbling windows by device (1,000 devices), count/avg/p95: {:.0} events/s ({:.2} s, {windows} window results, {} late)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        aggregator.late()
    );
}

/// `stream.aggregate` from a `local://` stream to an output stream, until caught up.
async fn end_to_end(events: usize, partitions: u32) {
    let data = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().join("data").display()))
        .await
        .expect("open");
    let make = |name: &'static str, partitions: u32| {
        let client = client.clone();
        async move {
            let builder = client.stream(name).partitions(partitions);
            builder.create().await.expect("create")
        }
    };
    let input = make("in", partitions).await;
    let output = make("out", 1).await;
    for chunk in records(events).chunks(10_000) {
        let batch: Vec<Event> = chunk
            .iter()
            .map(|r| {
                let device: serde_json::Value = r.json().expect("json");
                r.event
                    .clone()
                    .with_key(device["device"].as_str().unwrap_or_default())
            })
            .collect();
        for r in input.send_batch(batch).await {
            r.expect("sent");
        }
    }
    let ends: Vec<Option<u64>> = input
        .describe()
        .await
        .expect("describe")
        .partitions
        .iter()
        .map(|p| {
            p.next
                .and_then(|n| n.as_u64())
                .and_then(|n| n.checked_sub(1))
        })
        .collect();
    let state = data.path().join("state");
    let caught_up = || {
        ends.iter().enumerate().all(|(p, end)| {
            let Some(end) = end else { return true };
            std::fs::read(state.join(format!("in/aggregate/partition-{p:05}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|saved| saved["input_last"].as_u64() == Some(*end))
        })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(
        input
            .aggregate(spec(), &output, &format!("file://{}", state.display()))
            .max_wait(Duration::from_millis(50))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    while !caught_up() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    run.await.expect("joined").expect("aggregation");
    let results: u64 = output
        .describe()
        .await
        .expect("describe")
        .records()
        .unwrap_or(0);
    println!(
        "aggregate end to end: {events} events, local:// ({partitions} partitions) to an output stream, state saved per batch: {:.0} events/s ({:.2} s, {results} results sent)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
}
