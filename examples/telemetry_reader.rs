//! The RFC's "telemetry-reader": each call fetches the newest batch for the consumer
//! `telemetry-reader` and returns its size. Fetching the next batch checkpoints the previous
//! one, so repeated calls walk the stream once.
//!
//! The consumer lives as long as the function's process, like a client in a warm function:
//! a batch handed to a consumer that then goes away without asking for the next one (or
//! calling `commit`) was never acknowledged, so it is delivered again (at-least-once).
//!
//! ```text
//! cargo run --example telemetry_reader
//! ```

mod common;

use cloudstream::Consumer;

/// `inflight (event: Json) => { let newestBatch = stream.fetch(); return newestBatch.size(); }`
async fn telemetry_reader(reader: &Consumer) -> cloudstream::Result<usize> {
    let newest_batch = reader.fetch().await?;
    Ok(newest_batch.len())
}

#[tokio::main]
async fn main() -> cloudstream::Result<()> {
    let stream = common::telemetry_ingest().await?;
    let reader = stream.consumer("telemetry-reader").max_records(25);
    let mut total = 0;
    loop {
        let batch_size = telemetry_reader(&reader).await?;
        if batch_size == 0 {
            break;
        }
        println!("telemetry-reader: fetched a batch of {batch_size}");
        total += batch_size;
    }
    println!("telemetry-reader: {total} new events in all; checkpoint committed");
    Ok(())
}
