//! Kinesis failures that local servers never produce, injected between the client and a
//! real kinesalite: a loopback HTTP proxy forwards every call and, on demand, fails chosen
//! records of a `PutRecords` call (as AWS does when a shard runs out of capacity) or answers
//! `ProvisionedThroughputExceededException` to whole calls. The records that do reach
//! kinesalite are really stored there, so what the client reads back is the server's truth.

#![cfg(feature = "kinesis")]

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstream::backend::{KinesisBackend, KinesisOptions};
use cloudstream::conformance::unique_name;
use cloudstream::url::parse_url;
use cloudstream::{Client, Error, Event, ReadFrom};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UPSTREAM: &str = "127.0.0.1:4567";

#[derive(Debug, Default)]
struct Faults {
    /// For each coming `PutRecords` call, the indices of the records to fail.
    fail_records: VecDeque<Vec<usize>>,
    /// Coming calls (of any kind) to refuse with a throttling error.
    throttle_calls: u32,
}

/// Reads one HTTP/1.1 message (head and Content-Length body) from `conn`.
async fn read_message(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 65536];
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Some((head, body));
        }
        let mut chunk = [0u8; 65536];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with its Content-Length set to `length`.
fn with_length(head: &str, length: usize) -> String {
    let mut out: Vec<String> = head
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("connection")
        })
        .map(str::to_owned)
        .collect();
    out.push(format!("content-length: {length}"));
    out.join("\r\n") + "\r\n\r\n"
}

async fn forward(head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut up = TcpStream::connect(UPSTREAM)
        .await
        .expect("kinesalite is up");
    up.write_all(with_length(head, body.len()).as_bytes())
        .await
        .expect("write");
    up.write_all(body).await.expect("write");
    read_message(&mut up, &mut Vec::new())
        .await
        .expect("kinesalite answered")
}

async fn respond(conn: &mut TcpStream, head: &str, body: &[u8]) -> std::io::Result<()> {
    conn.write_all(with_length(head, body.len()).as_bytes())
        .await?;
    conn.write_all(body).await
}

async fn serve(mut conn: TcpStream, faults: Arc<Mutex<Faults>>) {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_message(&mut conn, &mut buf).await {
        let put_records = head.contains("Kinesis_20131202.PutRecords");
        let (throttle, fail) = {
            let mut f = faults.lock().expect("lock");
            let throttle = f.throttle_calls > 0;
            f.throttle_calls = f.throttle_calls.saturating_sub(1);
            let fail = if put_records && !throttle {
                f.fail_records.pop_front().unwrap_or_default()
            } else {
                Vec::new()
            };
            (throttle, fail)
        };
        let answered = if throttle {
            let error = json!({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for stream"});
            let head = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1";
            respond(&mut conn, head, error.to_string().as_bytes()).await
        } else if fail.is_empty() {
            let (rhead, rbody) = forward(&head, &body).await;
            respond(&mut conn, &rhead, &rbody).await
        } else {
            let mut request: Value = serde_json::from_slice(&body).expect("PutRecords JSON");
            let records = request["Records"].as_array().cloned().unwrap_or_default();
            let kept: Vec<Value> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| !fail.contains(i))
                .map(|(_, r)| r.clone())
                .collect();
            let (rhead, answer) = if kept.is_empty() {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1";
                (head.to_owned(), json!({"Records": []}))
            } else {
                request["Records"] = Value::Array(kept);
                let (rhead, rbody) = forward(&head, request.to_string().as_bytes()).await;
                (
                    rhead,
                    serde_json::from_slice(&rbody).expect("PutRecords answer"),
                )
            };
            let mut stored = answer["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter();
            let results: Vec<Value> = (0..records.len())
                .map(|i| {
                    if fail.contains(&i) {
                        json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"})
                    } else {
                        stored.next().unwrap_or(Value::Null)
                    }
                })
                .collect();
            let answer = json!({"FailedRecordCount": fail.len(), "Records": results});
            respond(&mut conn, &rhead, answer.to_string().as_bytes()).await
        };
        if answered.is_err() {
            return;
        }
    }
}

/// Starts the proxy; returns its address and the fault plan it follows.
async fn proxy() -> (String, Arc<Mutex<Faults>>) {
    if let Err(e) = TcpStream::connect(UPSTREAM).await {
        panic!("no kinesalite at {UPSTREAM} ({e}); run the tests through scripts/test.sh");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let faults = Arc::new(Mutex::new(Faults::default()));
    let shared = faults.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, shared.clone()));
        }
    });
    (addr, faults)
}

async fn client_through(addr: &str) -> (Client, Arc<KinesisBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "kinesis://us-east-1?endpoint=http://{addr}&access_key_id=test&secret_access_key=test&checkpoints=local:{}",
        dir.path().display()
    );
    let options = KinesisOptions::from_url(&parse_url(&url).expect("url")).expect("options");
    let backend = Arc::new(KinesisBackend::connect(options).await.expect("connect"));
    (Client::new(backend.clone()), backend, dir)
}

async fn new_stream(client: &Client) -> cloudstream::Stream {
    client
        .stream(&unique_name("faults"))
        .horizon(Duration::from_secs(24 * 3600))
        .create()
        .await
        .expect("create")
}

/// A PutRecords call that fails some records: only those (and later records of their keys)
/// go again, every event ends up stored, and each key's receipts stay in order.
#[tokio::test]
async fn put_records_partial_failure_is_retried_in_key_order() {
    let (addr, faults) = proxy().await;
    let (client, backend, _dir) = client_through(&addr).await;
    let stream = new_stream(&client).await;
    let keys = ["a", "b", "a", "c", "b", "a"];
    let events: Vec<Event> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Event::new(format!("{k}{i}")).with_key(*k))
        .collect();
    faults.lock().expect("lock").fail_records.push_back(vec![1]);
    let receipts: Vec<_> = stream
        .send_batch(events)
        .await
        .into_iter()
        .map(|r| r.expect("sent in the end"))
        .collect();
    let metrics = backend.kinesis_metrics();
    assert_eq!(metrics.failed_records.load(Ordering::Relaxed), 1);
    assert_eq!(
        metrics.reordered_resends.load(Ordering::Relaxed),
        1,
        "b4 went again after the failed b1"
    );
    let stored = stream.read(ReadFrom::Earliest, 100).await.expect("read");
    let payloads: Vec<String> = stored
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
        .collect();
    assert_eq!(payloads, ["a0", "a2", "c3", "b4", "a5", "b1", "b4"]);
    for (i, receipt) in receipts.iter().enumerate() {
        let at = stored
            .iter()
            .find(|r| r.position == *receipt)
            .expect("receipt stored");
        assert_eq!(
            String::from_utf8_lossy(at.payload()),
            format!("{}{i}", keys[i])
        );
    }
    for key in ["a", "b", "c"] {
        let mine: Vec<_> = (0..keys.len())
            .filter(|&i| keys[i] == key)
            .map(|i| receipts[i])
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "key {key} in order");
    }
}

/// Throttled calls are retried with backoff and counted.
#[tokio::test]
async fn throttling_is_retried_and_counted() {
    let (addr, faults) = proxy().await;
    let (client, backend, _dir) = client_through(&addr).await;
    let stream = new_stream(&client).await;
    faults.lock().expect("lock").throttle_calls = 3;
    let receipt = stream
        .send(Event::new("x").with_key("k"))
        .await
        .expect("sent");
    let read = stream.read(ReadFrom::At(receipt), 1).await.expect("read");
    assert_eq!(read[0].payload().as_ref(), b"x");
    let counted = backend
        .kinesis_metrics()
        .throttled_calls
        .load(Ordering::Relaxed);
    assert_eq!(counted, 3);
    assert_eq!(
        client.backend().metrics().get("kinesis_throttled_calls"),
        Some(&3)
    );
}

/// Records that keep failing end in a clear error, not a hang or a silent loss.
#[tokio::test]
async fn records_that_keep_failing_are_an_error() {
    let (addr, faults) = proxy().await;
    let (client, _backend, _dir) = client_through(&addr).await;
    let stream = new_stream(&client).await;
    faults.lock().expect("lock").fail_records = (0..20).map(|_| vec![0]).collect();
    let err = stream
        .send(Event::new("doomed").with_key("k"))
        .await
        .expect_err("fails");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("after 8 attempts"), "{err}");
}
