//! How fast the windowed aggregation of one partition goes: EVENTS JSON telemetry events of
//! about 100 bytes (`{"device":"d-417","temperature":21.3,...}`, 1,000 devices, event times
//! 1 ms apart with a little disorder), aggregated per device over 1-minute tumbling windows
//! with count, avg and p95 of the temperature; the records are made before the clock starts.
//!
//! ```text
//! cargo bench -p cloudstream --features aggregate --bench aggregate_throughput -- [EVENTS]
//! ```

mod common;

use std::time::{Duration, Instant, UNIX_EPOCH};

use cloudstream::aggregate::{Aggregation, Aggregator, Measure, Op, Window};
use cloudstream::{Event, Position, Record};
use common::arg;

fn main() {
    let events = arg(0, 1_000_000);
    let records: Vec<Record> = (0..events)
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
        .collect();
    let spec = Aggregation {
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
    };
    let mut aggregator = Aggregator::new(spec).expect("valid");
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
