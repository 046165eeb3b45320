//! Delivery to object storage (`Stream::deliver_to`): into a local directory, into moto's
//! S3 and into Azurite's Azure Blob (which `scripts/servers.sh` starts on 127.0.0.1:4566 and
//! 127.0.0.1:10000; an emulator that is not there fails its test), every delivered file read
//! back through the store's own API, every record found exactly once, in files
//! laid out by event hour; and deliveries aborted mid-run, again and again, that still
//! deliver each record exactly once.

#![cfg(feature = "deliver")]

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use cloudstream::deliver::{Compression, Format};
use cloudstream::{Client, Event, Position, Stream};
use support::abort_again_and_again;

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
            // A file being written is staged as `NAME#N` (object_store's local store) and
            // renamed into place when complete: not counted until then. Listed under that
            // name, it may be gone by the time it is read; the next look sees it.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains('#'))
            {
                continue;
            }
            let raw = match std::fs::read(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                read => read.expect("read"),
            };
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
    let sent = abort_again_and_again(&stream, &sink, Format::JsonLines, 20, |cycle| {
        send(&stream, cycle * 500, 500)
    })
    .await;
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

/// Runs a gzip delivery of `stream` to `sink` until `read` finds `expected` records (or 30 s
/// pass), stops it, and returns what `read` found last: the records of each file.
async fn deliver_and_read<F, R>(stream: &Stream, sink: &str, expected: usize, read: F) -> Files
where
    F: Fn() -> R,
    R: std::future::Future<Output = Files>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        stream
            .deliver_to(sink)
            .compression(Compression::Gzip)
            .max_wait(Duration::from_millis(200))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let mut files = Files::new();
    for _ in 0..150 {
        files = read().await;
        if files.values().map(Vec::len).sum::<usize>() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    run.await.expect("joined").expect("delivery");
    files
}

/// The records of each file, by name.
type Files = BTreeMap<String, Vec<serde_json::Value>>;

/// The text of each `<tag>` element of an XML listing (names here need no unescaping).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|s| s.split_once(close.as_str()).map(|(text, _)| text))
        .collect()
}

/// The body of `request`, which must succeed.
async fn body(request: reqwest::RequestBuilder) -> Vec<u8> {
    let response = request.send().await.expect("request");
    let status = response.status();
    let body = response.bytes().await.expect("body").to_vec();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    body
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
    let http = reqwest::Client::new();
    let files = deliver_and_read(&stream, &sink, sent.len(), || async {
        let listing =
            body(http.get(format!("{}/{bucket}?list-type=2&prefix=firehose/", moto()))).await;
        let listing = String::from_utf8(listing).expect("utf-8");
        let mut files = Files::new();
        for key in elements(&listing, "Key") {
            // moto serves objects to signed requests only (it does not check the signature).
            let get = http.get(format!("{}/{bucket}/{key}", moto()));
            let raw = body(get.header("authorization", SIGNED)).await;
            let name = key.strip_prefix("firehose/").expect("prefix");
            files.insert(name.to_owned(), lines(name, &raw));
        }
        files
    })
    .await;
    check_exactly_once(&files, &sent);
}

/// Azurite's blob service (`scripts/servers.sh` starts it there).
fn azurite() -> String {
    std::env::var("CLOUDSTREAM_AZURITE").unwrap_or_else(|_| "http://127.0.0.1:10000".to_owned())
}

/// Azurite's well-known account and key.
const AZURE_ACCOUNT: &str = "devstoreaccount1";
const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// An account SAS of that account, signed with its key (blob service, every resource type,
/// read, write, delete, list, add, create, until 2099): the test's own requests carry it.
const AZURE_SAS: &str = "sv=2021-06-08&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00%3A00%3A00Z\
                         &spr=https%2Chttp&sig=1agykGYzV%2Fh%2FVK4tD3c5Jp7MvLMzQ54AcPCwmCFIqTk%3D";

#[tokio::test]
async fn a_stream_is_delivered_to_azure_blob_and_every_blob_reads_back() {
    let http = reqwest::Client::new();
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    // Azurite keeps its data between runs: a container no earlier run used.
    let container = format!("deliver-{}-{millis}", std::process::id());
    let base = format!("{}/{AZURE_ACCOUNT}/{container}", azurite());
    let made = http
        .put(format!("{base}?restype=container&{AZURE_SAS}"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no Azurite at {} ({e}); scripts/test.sh starts it",
                azurite()
            )
        });
    assert!(made.status().is_success(), "container: {}", made.status());
    let client = cloudstream::open("memory://").await.expect("open");
    let stream = stream(&client, "TelemetryIngest", 2).await;
    let sent = send(&stream, 0, 1_500).await;
    // The account's URL as the endpoint, signed with the account key by object_store.
    let options = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("account_name", AZURE_ACCOUNT)
        .append_pair("access_key", AZURE_KEY)
        .append_pair("endpoint", &format!("{}/{AZURE_ACCOUNT}", azurite()))
        .append_pair("allow_http", "true")
        .finish();
    let sink = format!("az://{container}/firehose?{options}");
    let files = deliver_and_read(&stream, &sink, sent.len(), || async {
        let mut files = Files::new();
        let mut marker = String::new();
        loop {
            let list = format!(
                "{base}?restype=container&comp=list&prefix=firehose%2F&{AZURE_SAS}{marker}"
            );
            let listing = String::from_utf8(body(http.get(list)).await).expect("utf-8");
            for key in elements(&listing, "Name") {
                let raw = body(http.get(format!("{base}/{key}?{AZURE_SAS}"))).await;
                let name = key.strip_prefix("firehose/").expect("prefix");
                files.insert(name.to_owned(), lines(name, &raw));
            }
            match elements(&listing, "NextMarker").first() {
                Some(next) => marker = format!("&marker={}", urlencoding(next)),
                None => return files,
            }
        }
    })
    .await;
    check_exactly_once(&files, &sent);
}

/// `text` percent-encoded for a query.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
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
