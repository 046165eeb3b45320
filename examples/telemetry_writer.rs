//! The RFC's "TelemetryWriter": a function that writes each event it is given to the
//! `TelemetryIngest` stream (horizon 48 h).
//!
//! ```text
//! cargo run --example telemetry_writer -- 100      # write 100 readings
//! CLOUDSTREAM_URL=memory:// cargo run --example telemetry_writer
//! ```

mod common;

use cloudstream::{Event, Stream};
use serde_json::{json, Value};

/// `inflight (event: any): any => { stream.send(event); return argsCount % 2; }`
async fn telemetry_writer(stream: &Stream, event: Value) -> cloudstream::Result<usize> {
    let args_count = event.as_object().map_or(0, |o| o.len());
    let key = event["device"].to_string();
    stream.send(Event::json(&event)?.with_key(key)).await?;
    Ok(args_count % 2)
}

#[tokio::main]
async fn main() -> cloudstream::Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let stream = common::telemetry_ingest().await?;
    for i in 0..count {
        let reading = json!({ "device": i % 8, "seq": i, "temp_c": 20.0 + (i % 50) as f64 / 10.0 });
        telemetry_writer(&stream, reading).await?;
    }
    let info = stream.describe().await?;
    let held = info
        .records()
        .map_or_else(String::new, |n| format!("; it now holds {n} records"));
    println!(
        "TelemetryWriter: sent {count} events to {} ({}){held}",
        info.name, info.resource
    );
    Ok(())
}
