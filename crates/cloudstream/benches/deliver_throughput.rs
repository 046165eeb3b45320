//! How fast a delivery keeps up with the engine: EVENTS JSON events of about 100 bytes in a
//! `local://` stream, delivered to a local directory as JSON Lines (uncompressed, gzip,
//! zstd) and as Parquet (snappy, zstd), timed from the delivery's start until every event
//! is in a file.
//!
//! ```text
//! cargo bench -p cloudstream --features deliver --bench deliver_throughput -- [EVENTS] [PARTITIONS]
//! ```

mod common;

use std::time::{Duration, Instant};

use cloudstream::deliver::{Compression, Format};
use cloudstream::Event;
use common::arg;

/// Events in the files under `dir`, from their names (the engine's positions are dense).
fn delivered(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((_, first, last)) = cloudstream::deliver::file_positions("bench", &name) {
                if let (Some(first), Some(last)) = (first.as_u64(), last.as_u64()) {
                    n += last - first + 1;
                }
            }
        }
    }
    n
}

#[tokio::main]
async fn main() {
    let events = arg(0, 1_000_000) as u64;
    let partitions = arg(1, 2) as u32;
    let data = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}?sync=never", data.path().display()))
        .await
        .expect("open");
    let stream = client
        .stream("bench")
        .partitions(partitions)
        .create()
        .await
        .expect("create");
    for chunk in 0..events.div_ceil(10_000) {
        let batch: Vec<Event> = (chunk * 10_000..((chunk + 1) * 10_000).min(events))
            .map(|i| {
                Event::json(&serde_json::json!({"device": i % 1000, "seq": i, "temp_c": 20.5, "site": "north"}))
                    .expect("json")
                    .with_key(format!("d{}", i % 1000))
            })
            .collect();
        for r in stream.send_batch(batch).await {
            r.expect("sent");
        }
    }
    println!("deliver throughput, {events} JSON events of about 100 B, {partitions} partitions, local:// to a local directory:");
    let runs = [
        (Format::JsonLines, Compression::None),
        (Format::JsonLines, Compression::Gzip),
        (Format::JsonLines, Compression::Zstd),
        (Format::Parquet, Compression::Snappy),
        (Format::Parquet, Compression::Zstd),
    ];
    for (i, (format, compression)) in runs.into_iter().enumerate() {
        let out = tempfile::tempdir().expect("tempdir");
        let sink = format!("file://{}", out.path().display());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let run = tokio::spawn(
            stream
                .deliver_to(&sink)
                .consumer(&format!("deliver-{i}"))
                .format(format)
                .compression(compression)
                .max_wait(Duration::from_millis(200))
                .run_until(async {
                    let _ = stopped.await;
                }),
        );
        while delivered(out.path()) < events {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        run.await.expect("joined").expect("delivery");
        let bytes: u64 = walk_bytes(out.path());
        println!(
            "{format:?} {compression:?}: {:.0} events/s ({:.1} s, {:.1} MB written)",
            events as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            bytes as f64 / 1e6
        );
    }
}

fn walk_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                n += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    n
}
