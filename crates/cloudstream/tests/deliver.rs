//! Delivery to object storage (`Stream::deliver_to`): into a local directory and into moto's
//! S3 (which `scripts/servers.sh` starts on 127.0.0.1:4566; a moto that is not there fails
//! the S3 test), every delivered file read back, every record found exactly once, in files
//! laid out by event hour; and deliveries aborted mid-run, again and again, that still
//! deliver each record exactly once.

#![cfg(feature = "deliver")]

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use cloudstream::deliver::Compression;
use cloudstream::{Client, Event, Position, Stream};

/// 2025-11-24T16:30:00Z: the first event's time.
const BASE: u64 = 1_764_001_800;

async fn stream(client: &Client, name: &str, partitions: u32) -> Stream {
    client
        .stream(name)
        .partitions(partitions)
        .create()
        .await
        .expect("create")
}

/// Sends `n` keyed events with event times three seconds apart from `BASE` (so a few
/// thousand of them cross hours, as a day's telemetry does); their positions.
async fn send(stream: &Stream, from: usize, n: usize) -> Vec<Position> {
    let events = (from..from + n)
        .map(|i| {
            Event::json(&serde_json::json!({"i": i}))
                .expect("json")
                .with_key(format!("device-{}", i % 7))
                .with_time(SystemTime::UNIX_EPOCH + Duration::from_secs(BASE + 3 * i as u64))
        })
        .collect();
    stream
        .send_batch(events)
        .await
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect()
}

/// Every line of every file under `dir`, by file path relative to `dir`.
fn files_in(dir: &std::path::Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let raw = std::fs::read(&path).expect("read");
            let name = path
                .strip_prefix(dir)
                .expect("below")
                .to_string_lossy()
                .into_owned();
            out.insert(name.clone(), lines(&name, &raw));
        }
    }
    out
}

/// The records of one delivered file, decompressed as its extension says.
fn lines(name: &str, raw: &[u8]) -> Vec<serde_json::Value> {
    let mut text = String::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(raw)
            .read_to_string(&mut text)
            .expect("gunzip");
    } else if name.ends_with(".zst") {
        text = String::from_utf8(zstd::decode_all(raw).expect("unzstd")).expect("utf-8");
    } else {
        text = String::from_utf8(raw.to_vec()).expect("utf-8");
    }
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Checks that the files hold exactly `sent`, each once, each in its event hour's prefix.
fn check_exactly_once(files: &BTreeMap<String, Vec<serde_json::Value>>, sent: &[Position]) {
    let mut seen: BTreeMap<(u32, String), usize> = BTreeMap::new();
    for (name, records) in files {
        for r in records {
            let partition = r["partition"].as_u64().expect("partition") as u32;
            let sequence = r["sequence"].to_string().trim_matches('"').to_owned();
            *seen.entry((partition, sequence)).or_default() += 1;
            let time = r["event_time"].as_str().expect("event time");
            let (date, hour) = (&time[..10], &time[11..13]);
            assert!(
                name.starts_with(&format!("dt={date}/hour={hour}/")),
                "{name} holds a record of {time}"
            );
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    let expected: BTreeMap<(u32, String), usize> = sent
        .iter()
        .map(|p| ((p.partition, p.sequence.to_string()), 1))
        .collect();
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{} not delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), expected.len());
}

/// Runs a delivery until `done` says the files are complete (or 30 s pass), then stops it.
async fn deliver_until(
    stream: &Stream,
    sink: &str,
    compression: Compression,
    done: impl Fn() -> bool,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        stream
            .deliver_to(sink)
            .compression(compression)
            .max_wait(Duration::from_millis(200))
            .max_records(250)
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    run.await.expect("joined").expect("delivery");
}

fn count_lines(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    files_in(dir).values().map(Vec::len).sum()
}

#[tokio::test]
async fn a_stream_is_delivered_to_a_directory_exactly_once_by_event_hour() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let stream = stream(&client, "TelemetryIngest", 3).await;
    let sent = send(&stream, 0, 2_000).await;
    for compression in [Compression::Gzip] {
        let sink = format!("file://{}", out.path().display());
        deliver_until(&stream, &sink, compression, || {
            count_lines(out.path()) >= sent.len()
        })
        .await;
    }
    let files = files_in(out.path());
    assert!(
        files.keys().all(|n| n.ends_with(".jsonl.gz")),
        "{:?}",
        files.keys()
    );
    check_exactly_once(&files, &sent);
    // A second run has nothing new to write; new events go to new files.
    let more = send(&stream, 2_000, 300).await;
    let all: Vec<Position> = sent.iter().chain(&more).copied().collect();
    let sink = format!("file://{}", out.path().display());
    deliver_until(&stream, &sink, Compression::Gzip, || {
        count_lines(out.path()) >= all.len()
    })
    .await;
    check_exactly_once(&files_in(out.path()), &all);
}

#[tokio::test]
async fn deliveries_stopped_dead_again_and_again_deliver_each_record_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let stream = stream(&client, "crashy", 2).await;
    let sink = format!("file://{}", out.path().display());
    let mut sent = Vec::new();
    for cycle in 0..20 {
        sent.extend(send(&stream, cycle * 500, 500).await);
        // Aborted at a random point: files written, checkpoints maybe not.
        let run = tokio::spawn(
            stream
                .deliver_to(&sink)
                .compression(Compression::Zstd)
                .max_wait(Duration::from_millis(20))
                .max_records(97)
                .run_until(std::future::pending()),
        );
        tokio::time::sleep(Duration::from_millis(20 + (cycle as u64 * 37) % 180)).await;
        run.abort();
        let _ = run.await;
    }
    deliver_until(&stream, &sink, Compression::Zstd, || {
        count_lines(out.path()) >= sent.len()
    })
    .await;
    check_exactly_once(&files_in(out.path()), &sent);
}

/// An `Authorization` header of the shape S3 wants; moto does not check the signature.
const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// moto's S3 endpoint (`scripts/servers.sh` starts moto there).
fn moto() -> String {
    std::env::var("CLOUDSTREAM_MOTO").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

#[tokio::test]
async fn a_stream_is_delivered_to_s3_and_every_object_reads_back() {
    let bucket = format!("deliver-{}", std::process::id());
    let made = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("no moto at {} ({e}); scripts/test.sh starts it", moto()));
    assert!(made.status().is_success(), "bucket: {}", made.status());
    let client = cloudstream::open("memory://").await.expect("open");
    let stream = stream(&client, "TelemetryIngest", 2).await;
    let sent = send(&stream, 0, 1_500).await;
    let sink = format!(
        "s3://{bucket}/firehose?endpoint={}&region=us-east-1&access_key_id=test&secret_access_key=test&allow_http=true",
        moto()
    );
    let listed = || async {
        let body = reqwest::get(format!("{}/{bucket}?list-type=2&prefix=firehose/", moto()))
            .await
            .expect("list")
            .text()
            .await
            .expect("listing");
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next().map(str::to_owned))
            .collect::<Vec<String>>()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        stream
            .deliver_to(&sink)
            .compression(Compression::Gzip)
            .max_wait(Duration::from_millis(200))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let mut files = BTreeMap::new();
    for _ in 0..150 {
        files.clear();
        for key in listed().await {
            // moto serves objects to signed requests only (it does not check the signature).
            let raw = reqwest::Client::new()
                .get(format!("{}/{bucket}/{key}", moto()))
                .header("authorization", SIGNED)
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("object");
            let name = key.strip_prefix("firehose/").expect("prefix").to_owned();
            files.insert(name.clone(), lines(&name, &raw));
        }
        if files.values().map(Vec::len).sum::<usize>() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    run.await.expect("joined").expect("delivery");
    check_exactly_once(&files, &sent);
}

/// Files of a stream deleted and made again (or another provider's stream of that name)
/// would make the delivery skip the new stream's records: it refuses to start instead. And
/// a sink it would lose records in, or cannot parse, is refused with the URL's secrets left
/// out of the message.
#[tokio::test]
async fn another_streams_files_and_bad_sinks_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let client = cloudstream::open(&format!("local://{}", data.path().display()))
        .await
        .expect("open");
    let first = stream(&client, "again", 1).await;
    let sent = send(&first, 0, 300).await;
    let sink = format!("file://{}", out.path().display());
    deliver_until(&first, &sink, Compression::None, || {
        count_lines(out.path()) >= sent.len()
    })
    .await;
    client.delete_stream("again").await.expect("delete");
    let second = stream(&client, "again", 1).await;
    send(&second, 0, 10).await;
    let refused = second
        .deliver_to(&sink)
        .run_until(std::future::pending())
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("another stream"), "{refused}");
    for (bad, says) in [
        ("memory:///x", "a sink is"),
        ("relative/dir", "a sink is a URL"),
        ("s3://b/p?secret_access_key=hunter2&region=x:y", "s3://b/p"),
    ] {
        let e = second
            .deliver_to(bad)
            .run_until(std::future::pending())
            .await
            .map(drop)
            .expect_err(bad)
            .to_string();
        assert!(e.contains(says) && !e.contains("hunter2"), "{bad}: {e}");
    }
}
