//! Delivery to Parquet files, read back by an independent reader: pyarrow (PyPI), which
//! `scripts/servers.sh` installs into its tools directory. A pyarrow that is not there
//! fails these tests. Every record is found exactly once, with its payload's JSON fields as
//! columns (nested objects, lists and nulls included), and payloads that are not JSON
//! objects kept whole; deliveries aborted mid-run, again and again, still deliver each
//! record once.

#![cfg(feature = "deliver")]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cloudstream::deliver::{Compression, Format};
use cloudstream::{Event, Position, Stream};
use serde_json::{json, Value};
use support::abort_again_and_again;

/// 2025-11-24T16:30:00Z: the first event's time.
const BASE: u64 = 1_764_001_800;

/// The Python with pyarrow that `scripts/servers.sh` installs.
fn python() -> String {
    std::env::var("CLOUDSTREAM_PYARROW").unwrap_or_else(|_| {
        let tools = std::env::var("CLOUDSTREAM_TOOLS").unwrap_or_else(|_| {
            format!(
                "{}/.cache/cloudstream/tools",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{tools}/pyarrow/bin/python")
    })
}

/// Reads every Parquet file under `dir` with pyarrow, each row as JSON (binary as hex,
/// times as ISO 8601), by file path relative to `dir`.
const READER: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
out = {}
for d, _, names in os.walk(root):
    for n in names:
        path = os.path.join(d, n)
        table = pq.read_table(path)
        rows = []
        for row in table.to_pylist():
            for k in ("append_time", "event_time"):
                if row[k] is not None:
                    row[k] = row[k].isoformat()
            if row["payload_bytes"] is not None:
                row["payload_bytes"] = row["payload_bytes"].hex()
            row["headers"] = dict(row["headers"])
            rows.append(row)
        out[os.path.relpath(path, root)] = {"rows": rows, "schema": str(table.schema)}
json.dump(out, sys.stdout)
"#;

fn read_back(dir: &Path) -> BTreeMap<String, Value> {
    let output = std::process::Command::new(python())
        .args(["-c", READER])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "no pyarrow at {} ({e}); run the tests through scripts/test.sh, whose servers.sh installs it",
                python()
            )
        });
    assert!(
        output.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("pyarrow's JSON")
}

/// The event `i` sends: mostly telemetry objects (with nested fields, lists and nulls), and
/// every 50th a plain text or a binary payload.
fn event(i: usize) -> Event {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(BASE + 3 * i as u64);
    let event = match i % 50 {
        7 => Event::new(format!("text {i}")),
        13 => Event::new(vec![0xff, 0x00, (i % 256) as u8]),
        _ => Event::json(&payload(i)).expect("json"),
    };
    event
        .with_key(format!("device-{}", i % 7))
        .with_header("n", i.to_string())
        .with_time(time)
}

fn payload(i: usize) -> Value {
    json!({
        "device": format!("device-{}", i % 7),
        "temperature": 20.0 + (i % 100) as f64 / 10.0,
        "reading": {"unit": "C", "ok": !i.is_multiple_of(3)},
        "tags": [format!("t{}", i % 4)],
        "battery": if i.is_multiple_of(5) { Value::Null } else { json!(i % 100) },
    })
}

async fn send(stream: &Stream, from: usize, n: usize) -> Vec<Position> {
    stream
        .send_batch((from..from + n).map(event).collect())
        .await
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect()
}

/// Checks that the files hold the events `0..n` (at `sent`), each once, each with its
/// payload where it belongs and in its event hour's prefix.
fn check(files: &BTreeMap<String, Value>, sent: &[Position]) {
    let mut seen: BTreeMap<(u32, String), usize> = BTreeMap::new();
    let at: BTreeMap<(u32, String), usize> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.partition, p.sequence.to_string()), i))
        .collect();
    for (name, file) in files {
        assert!(name.ends_with(".parquet"), "{name}");
        for row in file["rows"].as_array().expect("rows") {
            let key = (
                row["partition"].as_u64().expect("partition") as u32,
                row["sequence"].as_str().expect("sequence").to_owned(),
            );
            *seen.entry(key.clone()).or_default() += 1;
            let i = *at
                .get(&key)
                .unwrap_or_else(|| panic!("{key:?} was not sent"));
            assert_eq!(row["headers"]["n"], json!(i.to_string()));
            let time = row["event_time"].as_str().expect("event time");
            assert!(
                name.starts_with(&format!("dt={}/hour={}/", &time[..10], &time[11..13])),
                "{name} holds a record of {time}"
            );
            match i % 50 {
                7 => assert_eq!(row["payload_text"], json!(format!("text {i}"))),
                13 => assert_eq!(row["payload_bytes"], json!(format!("ff00{:02x}", i % 256))),
                _ => {
                    assert_eq!(row["payload"], payload(i), "{name}: event {i}");
                    assert!(row["payload_text"].is_null() && row["payload_bytes"].is_null());
                }
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(seen.len(), sent.len(), "every record delivered");
}

fn rows(dir: &Path) -> usize {
    read_back(dir)
        .values()
        .map(|f| f["rows"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Runs a Parquet delivery until the files hold `n` rows (or 60 s pass), then stops it.
async fn deliver_all(stream: &Stream, out: &Path, n: usize) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        stream
            .deliver_to(&format!("file://{}", out.display()))
            .format(Format::Parquet)
            .compression(Compression::Snappy)
            .max_wait(Duration::from_millis(200))
            .max_records(700)
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (!out.exists() || rows(out) < n) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = stop.send(());
    run.await.expect("joined").expect("delivery");
}

#[tokio::test]
async fn parquet_files_read_back_with_pyarrow_hold_every_record_once_with_its_fields() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let stream = client
        .stream("TelemetryIngest")
        .partitions(3)
        .create()
        .await
        .expect("create");
    let sent = send(&stream, 0, 3_000).await;
    deliver_all(&stream, out.path(), sent.len()).await;
    let files = read_back(out.path());
    check(&files, &sent);
    let schema = files
        .values()
        .next()
        .and_then(|f| f["schema"].as_str())
        .expect("a schema");
    for column in [
        "partition: uint32",
        "sequence: string",
        "event_time: timestamp[us, tz=UTC]",
        "headers: map<string, string",
        "temperature: double",
        "reading: struct<unit: string",
        "tags: list<",
        "payload_bytes: binary",
    ] {
        assert!(schema.contains(column), "{column} not in {schema}");
    }
}

#[tokio::test]
async fn parquet_deliveries_aborted_again_and_again_deliver_each_record_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let stream = client
        .stream("crashy")
        .partitions(2)
        .create()
        .await
        .expect("create");
    let sink = format!("file://{}", out.path().display());
    let sent = abort_again_and_again(&stream, &sink, Format::Parquet, 10, |cycle| {
        send(&stream, cycle * 300, 300)
    })
    .await;
    deliver_all(&stream, out.path(), sent.len()).await;
    check(&read_back(out.path()), &sent);
}

#[tokio::test]
async fn snappy_json_lines_and_a_schema_for_json_lines_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let stream = client.stream("s").create().await.expect("create");
    let sink = format!("file://{}", data.path().join("out").display());
    let snappy = stream
        .deliver_to(&sink)
        .compression(Compression::Snappy)
        .run_until(std::future::ready(()))
        .await
        .expect_err("snappy JSON Lines");
    assert!(snappy.to_string().contains("snappy"), "{snappy}");
    let schema = cloudstream::deliver::arrow_schema::Schema::empty();
    let refused = stream
        .deliver_to(&sink)
        .schema(std::sync::Arc::new(schema))
        .run_until(std::future::ready(()))
        .await
        .expect_err("a schema for JSON Lines");
    assert!(refused.to_string().contains("schema"), "{refused}");
}
