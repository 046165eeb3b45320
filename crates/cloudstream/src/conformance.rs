//! The conformance suite: DESIGN.md's semantics as plain async functions over a [`Client`],
//! run unchanged against every backend.
//!
//! Each function creates its own uniquely named streams, so the suite can run against a
//! shared server. Differences between providers come only from [`Capabilities`]: a function
//! that needs a capability the backend lacks checks that the backend says so with
//! [`Error::Unsupported`] instead. [`conformance_tests!`](crate::conformance_tests) turns the
//! suite into one `#[tokio::test]` per function for a backend:
//!
//! ```ignore
//! async fn make() -> (cloudstream::Client, ()) { (cloudstream::open("memory://").await.unwrap(), ()) }
//! cloudstream::conformance_tests!(make);
//! ```
//!
//! [`Capabilities`]: crate::backend::Capabilities

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::backend::ReadOptions;
use crate::{
    dlq_headers, Client, Error, Event, Position, ReadFrom, Record, RetryPolicy, StartAt, Stream,
};

/// A stream name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

async fn new_stream(client: &Client, prefix: &str, partitions: u32) -> Stream {
    client
        .stream(&unique_name(prefix))
        .horizon(Duration::from_secs(48 * 3600))
        .partitions(partitions)
        .create()
        .await
        .expect("create stream")
}

fn event(i: usize) -> Event {
    Event::new(format!("event-{i}")).with_header("n", i.to_string())
}

async fn read_all(stream: &Stream, partition: u32) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let from = match out.last() {
            Some(r) => ReadFrom::After(r.position),
            None => ReadFrom::Earliest,
        };
        let batch = stream
            .read_partition(partition, from, 500)
            .await
            .expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Stream-01: create with horizon and partitions, describe, list, refuse a duplicate, delete.
pub async fn create_describe_list_delete(client: &Client) {
    let name = unique_name("lifecycle");
    let horizon = Duration::from_secs(48 * 3600);
    let stream = client
        .stream(&name)
        .horizon(horizon)
        .partitions(3)
        .create()
        .await
        .expect("create");
    assert_eq!(stream.partitions(), 3);
    let info = stream.describe().await.expect("describe");
    assert_eq!(info.name, name);
    assert_eq!(info.horizon(), horizon);
    assert_eq!(info.partitions.len(), 3);
    assert!(
        info.partitions.iter().all(|p| p.earliest == p.next),
        "new stream is empty"
    );
    assert!(client.list_streams().await.expect("list").contains(&name));
    let dup = client.stream(&name).horizon(horizon).create().await;
    assert!(matches!(dup, Err(Error::StreamExists { .. })), "{dup:?}");
    let again = client
        .stream(&name)
        .horizon(horizon)
        .create_if_missing()
        .await
        .expect("create_if_missing");
    assert_eq!(again.partitions(), 3, "existing stream keeps its settings");
    client.delete_stream(&name).await.expect("delete");
    assert!(!client.list_streams().await.expect("list").contains(&name));
    let gone = client.stream(&name).open().await;
    assert!(
        matches!(gone, Err(Error::StreamNotFound { .. })),
        "{gone:?}"
    );
    let gone = client.delete_stream(&name).await;
    assert!(
        matches!(gone, Err(Error::StreamNotFound { .. })),
        "{gone:?}"
    );
}

/// Bad names and settings are typed errors, never a panic or a created resource.
pub async fn bad_input_is_refused(client: &Client) {
    let long = "n".repeat(129);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../etc",
        "a\0b",
        "spa ce",
        long.as_str(),
    ] {
        let created = client.stream(bad).create().await;
        assert!(
            matches!(created, Err(Error::InvalidName { kind: "stream", .. })),
            "{bad:?}: {created:?}"
        );
        assert!(
            matches!(
                client.stream(bad).open().await,
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                client.delete_stream(bad).await,
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    let partitions = client
        .stream(&unique_name("p0"))
        .partitions(0)
        .create()
        .await;
    assert!(
        matches!(partitions, Err(Error::InvalidArgument(_))),
        "{partitions:?}"
    );
    let caps = client.backend().capabilities();
    let too_short = caps
        .horizon_range
        .0
        .checked_sub(Duration::from_millis(1))
        .unwrap_or_default();
    let horizon = client
        .stream(&unique_name("h0"))
        .horizon(too_short)
        .create()
        .await;
    assert!(
        matches!(horizon, Err(Error::InvalidArgument(ref m)) if m.contains("horizon")),
        "{horizon:?}"
    );
    let missing = client.stream(&unique_name("missing")).open().await;
    assert!(
        matches!(missing, Err(Error::StreamNotFound { .. })),
        "{missing:?}"
    );
}

/// Stream-02: an event comes back exactly as sent, with its position and append time.
pub async fn send_and_read_back(client: &Client) {
    let stream = new_stream(client, "roundtrip", 1).await;
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let sent = Event::new(&b"\x00binary\xffpayload"[..])
        .with_key("device-1")
        .with_header("ce_type", "telemetry")
        .with_time(time);
    let before = SystemTime::now() - Duration::from_secs(1);
    let receipt = stream.send(sent.clone()).await.expect("send");
    let second = stream
        .send(Event::json(&serde_json::json!({"temp": 21.5})).expect("json"))
        .await
        .expect("send");
    assert_eq!(receipt.partition, second.partition);
    assert!(
        second.sequence > receipt.sequence,
        "sequence strictly increases"
    );
    let records = stream.read(ReadFrom::At(receipt), 10).await.expect("read");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].position, receipt);
    assert_eq!(records[0].event, sent);
    assert!(records[0].append_time >= before);
    let value: serde_json::Value = records[1].json().expect("json payload");
    assert_eq!(value["temp"], 21.5);
}

/// Stream-05: batches return one result per event; a bad event fails alone.
pub async fn send_batch_has_per_event_results(client: &Client) {
    let stream = new_stream(client, "batch", 1).await;
    let max = client.backend().capabilities().max_record_bytes;
    let mut events: Vec<Event> = (0..10).map(event).collect();
    events[4] = Event::new(vec![0u8; max + 1]);
    let results = stream.send_batch(events).await;
    assert_eq!(results.len(), 10);
    assert!(
        matches!(results[4], Err(Error::RecordTooLarge { .. })),
        "{:?}",
        results[4]
    );
    let receipts: Vec<Position> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(receipts.len(), 9);
    assert!(
        receipts.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "batch order kept"
    );
    let records = read_all(&stream, 0).await;
    let payloads: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
        .collect();
    let expected: Vec<String> = (0..10)
        .filter(|&i| i != 4)
        .map(|i| format!("event-{i}"))
        .collect();
    assert_eq!(payloads, expected);
    assert!(stream.send_batch(Vec::new()).await.is_empty());
    let single = stream.send(Event::new(vec![0u8; max + 1])).await;
    assert!(
        matches!(single, Err(Error::RecordTooLarge { .. })),
        "{single:?}"
    );
}

/// Batches larger than the provider's limits are split, in order, without loss.
pub async fn large_batches_are_split(client: &Client) {
    let stream = new_stream(client, "split", 1).await;
    let n = (client.backend().capabilities().max_batch_records + 7).min(20_000);
    let results = stream.send_batch((0..n).map(event).collect()).await;
    assert!(results.iter().all(Result::is_ok));
    let records = read_all(&stream, 0).await;
    assert_eq!(records.len(), n);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.event.headers.get("n").map(String::as_str),
            Some(i.to_string().as_str())
        );
    }
}

/// Stream-03: the same start gives the same records; every start point means what it says.
pub async fn reads_are_deterministic(client: &Client) {
    let stream = new_stream(client, "determinism", 1).await;
    let results = stream.send_batch((0..50).map(event).collect()).await;
    let receipts: Vec<Position> = results.into_iter().map(|r| r.expect("sent")).collect();
    let a = stream.read(ReadFrom::Earliest, 20).await.expect("read");
    let b = stream.read(ReadFrom::Earliest, 20).await.expect("read");
    assert_eq!(a, b);
    assert_eq!(a[0].position, receipts[0]);
    let at = stream
        .read(ReadFrom::At(receipts[10]), 5)
        .await
        .expect("read");
    assert_eq!(
        at.iter().map(|r| r.position).collect::<Vec<_>>(),
        receipts[10..15]
    );
    let after = stream
        .read(ReadFrom::After(receipts[10]), 5)
        .await
        .expect("read");
    assert_eq!(
        after.iter().map(|r| r.position).collect::<Vec<_>>(),
        receipts[11..16]
    );
    assert!(stream
        .read(ReadFrom::Latest, 5)
        .await
        .expect("read")
        .is_empty());
    let end = stream
        .read(ReadFrom::After(receipts[49]), 5)
        .await
        .expect("read at end");
    assert!(end.is_empty());
    let caps = client.backend().capabilities();
    if caps.replay_by_time {
        let t = a[0].append_time;
        let by_time = stream
            .read(ReadFrom::AtTime(t), 50)
            .await
            .expect("read by time");
        assert_eq!(by_time.first().map(|r| r.position), Some(receipts[0]));
        let future = stream
            .read(
                ReadFrom::AtTime(SystemTime::now() + Duration::from_secs(3600)),
                5,
            )
            .await;
        assert!(future.expect("read future time").is_empty());
    }
    let beyond = stream
        .read(
            ReadFrom::At(Position::new(0, receipts[49].sequence + 100)),
            5,
        )
        .await;
    assert!(matches!(beyond, Err(Error::BeyondEnd { .. })), "{beyond:?}");
    let last = stream
        .read(ReadFrom::After(Position::new(0, u64::MAX)), 5)
        .await;
    assert!(matches!(last, Err(Error::InvalidArgument(_))), "{last:?}");
    let bad_partition = stream.read(ReadFrom::At(Position::new(7, 0)), 5).await;
    assert!(
        matches!(bad_partition, Err(Error::InvalidArgument(_))),
        "{bad_partition:?}"
    );
}

/// Stream-07: one key, one partition, in order; unkeyed events spread over partitions.
pub async fn keys_choose_partitions(client: &Client) {
    let stream = new_stream(client, "keys", 4).await;
    let mut events = Vec::new();
    for i in 0..40 {
        events.push(Event::new(format!("{i}")).with_key(format!("device-{}", i % 5)));
    }
    let receipts: Vec<Position> = stream
        .send_batch(events)
        .await
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect();
    let mut partition_of: BTreeMap<usize, u32> = BTreeMap::new();
    for (i, r) in receipts.iter().enumerate() {
        let p = *partition_of.entry(i % 5).or_insert(r.partition);
        assert_eq!(p, r.partition, "key device-{} moved partition", i % 5);
    }
    for p in 0..4 {
        let records = read_all(&stream, p).await;
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for r in records {
            let i: usize = String::from_utf8_lossy(r.payload())
                .parse()
                .expect("number");
            let key = r.event.key.clone().expect("key");
            if let Some(prev) = last.insert(key, i) {
                assert!(prev < i, "order within a key");
            }
        }
    }
    for i in 0..8 {
        stream.send(event(i)).await.expect("send");
    }
    let info = stream.describe().await.expect("describe");
    assert!(
        info.partitions
            .iter()
            .filter(|p| p.next > p.earliest)
            .count()
            > 1,
        "unkeyed events spread"
    );
}

/// Writes and reads of a stream that does not exist are `StreamNotFound`.
pub async fn unknown_streams_are_errors(client: &Client) {
    let name = unique_name("ghost");
    let stream = client.stream(&name).create().await.expect("create");
    client.delete_stream(&name).await.expect("delete");
    assert!(matches!(
        stream.send(event(0)).await,
        Err(Error::StreamNotFound { .. })
    ));
    assert!(matches!(
        stream.read(ReadFrom::Earliest, 1).await,
        Err(Error::StreamNotFound { .. })
    ));
    assert!(matches!(
        stream.consumer("c").fetch().await,
        Err(Error::StreamNotFound { .. })
    ));
}

/// Stream-04: fetching the next batch commits the previous one; names are independent;
/// checkpoints are durable across handles.
pub async fn consumers_checkpoint_implicitly(client: &Client) {
    let stream = new_stream(client, "consumer", 2).await;
    stream.send_batch((0..30).map(event).collect()).await;
    let reader = stream.consumer("telemetry-reader").max_records(10);
    let mut seen = Vec::new();
    loop {
        let batch = reader.fetch().await.expect("fetch");
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10);
        seen.extend(batch.records.iter().map(|r| r.position));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30, "every record exactly once");
    // The empty fetch committed everything: a new handle starts at the end.
    let again = stream.consumer("telemetry-reader");
    assert!(again.fetch().await.expect("fetch").is_empty());
    let info = client
        .backend()
        .list_consumers(stream.name())
        .await
        .expect("consumers");
    let me = info
        .iter()
        .find(|c| c.name == "telemetry-reader")
        .expect("listed");
    assert_eq!(me.lag, 0);
    // Another name starts from the beginning.
    let other = stream.consumer("other").max_records(1000);
    assert_eq!(other.fetch().await.expect("fetch").len(), 30);
    // A consumer starting at Latest sees only new records.
    let late = stream.consumer("late").start_at(StartAt::Latest);
    assert!(late.fetch().await.expect("fetch").is_empty());
    stream.send(event(99)).await.expect("send");
    let batch = late.fetch().await.expect("fetch");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].payload().as_ref(), b"event-99");
    let bad = stream.consumer("bad/name").fetch().await;
    assert!(
        matches!(
            bad,
            Err(Error::InvalidName {
                kind: "consumer",
                ..
            })
        ),
        "{bad:?}"
    );
}

/// A batch fetched but never committed is delivered again (at-least-once).
pub async fn uncommitted_batches_are_redelivered(client: &Client) {
    let stream = new_stream(client, "redeliver", 1).await;
    stream.send_batch((0..5).map(event).collect()).await;
    let first = stream.consumer("c").fetch().await.expect("fetch");
    assert_eq!(first.len(), 5);
    let second = stream.consumer("c").fetch().await.expect("fetch");
    assert_eq!(
        second.records, first.records,
        "uncommitted batch redelivered"
    );
    let reader = stream.consumer("c");
    reader.fetch().await.expect("fetch");
    reader.commit().await.expect("commit");
    assert!(
        stream
            .consumer("c")
            .fetch()
            .await
            .expect("fetch")
            .is_empty(),
        "explicit commit is durable"
    );
}

/// Long-poll reads and `tail` wake up when a record arrives.
pub async fn waits_wake_on_new_records(client: &Client) {
    use futures::StreamExt;
    let stream = new_stream(client, "wait", 2).await;
    let mut tail = stream.tail(ReadFrom::Latest).await.expect("tail");
    let writer = stream.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .send(Event::new("late").with_key("k"))
            .await
            .expect("send")
    });
    let options = ReadOptions {
        wait: Some(Duration::from_secs(10)),
        ..ReadOptions::default()
    };
    let receipt = send.await.expect("join");
    let got = stream
        .read_with(
            receipt.partition,
            ReadFrom::At(Position::new(receipt.partition, 0)),
            &options,
        )
        .await;
    assert_eq!(got.expect("read").len(), 1);
    let tailed = tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("tail timed out");
    assert_eq!(tailed.expect("item").expect("record").position, receipt);
    let consumer = stream
        .consumer("waiter")
        .start_at(StartAt::Latest)
        .wait(Duration::from_secs(10));
    assert!(consumer.positions().await.is_ok());
    let writer = stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.send(Event::new("later")).await.expect("send");
    });
    let batch = consumer.fetch().await.expect("fetch");
    assert_eq!(batch.len(), 1);
}

/// `on_event`: every record once, in order per partition, checkpoint moved.
pub async fn triggers_deliver_every_event_in_order(client: &Client) {
    let stream = new_stream(client, "trigger", 3).await;
    let n = 300;
    let events: Vec<Event> = (0..n)
        .map(|i| event(i).with_key(format!("k{}", i % 7)))
        .collect();
    stream.send_batch(events).await;
    let seen: Arc<Mutex<Vec<Record>>> = Arc::default();
    let sink = seen.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    let trigger = stream.on_event("ReadAll", move |record| {
        let (sink, done_tx) = (sink.clone(), done_tx.clone());
        async move {
            let mut seen = sink.lock().expect("lock");
            seen.push(record);
            if seen.len() == n {
                if let Some(tx) = done_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
            }
            Ok::<(), String>(())
        }
    });
    let shutdown = async move {
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
    };
    let report = trigger
        .max_wait(Duration::from_millis(50))
        .run_until(shutdown)
        .await
        .expect("run");
    assert_eq!(report.handled, n as u64);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), n);
    for p in 0..3 {
        let seqs: Vec<u64> = seen
            .iter()
            .filter(|r| r.position.partition == p)
            .map(|r| r.position.sequence)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order"
        );
    }
    let after = stream.consumer("ReadAll").fetch().await.expect("fetch");
    assert!(after.is_empty(), "trigger committed its checkpoint");
}

/// `on_event`: a failing record is retried, then dead-lettered with its error; the rest go on.
pub async fn triggers_retry_then_dead_letter(client: &Client) {
    let stream = new_stream(client, "dlq", 1).await;
    stream
        .send_batch(vec![
            Event::new("ok-1"),
            Event::new("poison").with_key("p"),
            Event::new("flaky"),
            Event::new("ok-2"),
        ])
        .await;
    let flaky_failures = Arc::new(AtomicU32::new(0));
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let (h, f) = (handled.clone(), flaky_failures.clone());
    let trigger = stream
        .on_event("worker", move |record| {
            let (h, f) = (h.clone(), f.clone());
            async move {
                let body = String::from_utf8_lossy(record.payload()).into_owned();
                if body == "poison" {
                    return Err(format!("cannot handle {body}"));
                }
                if body == "flaky" && f.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err("transient".to_owned());
                }
                h.lock().expect("lock").push(body);
                Ok(())
            }
        })
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .max_wait(Duration::from_millis(50));
    let watched = handled.clone();
    let shutdown = async move {
        for _ in 0..600 {
            if watched.lock().expect("lock").len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let report = trigger.run_until(shutdown).await.expect("run");
    assert_eq!(
        *handled.lock().expect("lock"),
        vec!["ok-1", "flaky", "ok-2"]
    );
    assert_eq!(report.handled, 3);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.failed_attempts, 4, "3 for poison, 1 for flaky");
    let dlq = client
        .stream(&format!("{}.dlq", stream.name()))
        .open()
        .await
        .expect("dlq exists");
    let dead = dlq.read(ReadFrom::Earliest, 10).await.expect("read dlq");
    assert_eq!(dead.len(), 1);
    let headers = &dead[0].event.headers;
    assert_eq!(dead[0].payload().as_ref(), b"poison");
    assert_eq!(dead[0].event.key.as_deref(), Some("p"));
    assert_eq!(
        headers.get(dlq_headers::ERROR).map(String::as_str),
        Some("cannot handle poison")
    );
    assert_eq!(
        headers.get(dlq_headers::SOURCE_STREAM).map(String::as_str),
        Some(stream.name())
    );
    assert_eq!(
        headers
            .get(dlq_headers::SOURCE_POSITION)
            .map(String::as_str),
        Some("0:1")
    );
    assert_eq!(
        headers.get(dlq_headers::ATTEMPTS).map(String::as_str),
        Some("3")
    );
    assert!(
        stream
            .consumer("worker")
            .fetch()
            .await
            .expect("fetch")
            .is_empty(),
        "checkpoint passed the dead letter"
    );
}

/// `on_batch`: batches of at most `batch_size`, in order, full when records are waiting, a
/// partial batch after `max_wait`, and a failing batch dead-lettered whole.
pub async fn batch_triggers_gather_and_dead_letter(client: &Client) {
    let stream = new_stream(client, "batches", 1).await;
    stream.send_batch((0..250).map(event).collect()).await;
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (sz, sn) = (sizes.clone(), seen.clone());
    let trigger = stream
        .on_batch("batcher", move |records| {
            let (sz, sn) = (sz.clone(), sn.clone());
            async move {
                if records.iter().any(|r| r.payload().as_ref() == b"poison") {
                    return Err("batch holds poison".to_owned());
                }
                sz.lock().expect("lock").push(records.len());
                sn.lock()
                    .expect("lock")
                    .extend(records.iter().map(|r| r.position.sequence));
                Ok(())
            }
        })
        .batch_size(100)
        .max_wait(Duration::from_millis(300))
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        });
    let (writer, watched) = (stream.clone(), seen.clone());
    let shutdown = async move {
        let wait_for = |n: usize| {
            let watched = watched.clone();
            async move {
                for _ in 0..1000 {
                    if watched.lock().expect("lock").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait_for(250).await;
        writer
            .send_batch(vec![Event::new("poison"), Event::new("x")])
            .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        writer.send(Event::new("after")).await.expect("send");
        wait_for(251).await;
    };
    let report = trigger.run_until(shutdown).await.expect("run");
    let sizes = sizes.lock().expect("lock").clone();
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(
        &sizes[..3],
        &[100, 100, 50],
        "full batches while records wait"
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[..250],
        (0..250).collect::<Vec<u64>>()[..],
        "in order, once"
    );
    assert_eq!(seen[250..], [252], "after the dead-lettered batch");
    assert_eq!(report.dead_lettered, 2, "the failing batch went whole");
    let dlq = client
        .stream(&format!("{}.dlq", stream.name()))
        .open()
        .await
        .expect("dlq");
    assert_eq!(
        dlq.read(ReadFrom::Earliest, 10).await.expect("read").len(),
        2
    );
}

/// A trigger starting at `Latest` pins that start: records sent while it is down are
/// delivered after a restart. A handler that panics before returning its future is a failed
/// attempt like any other, and the partition goes on.
pub async fn triggers_pin_their_start_and_survive_panics(client: &Client) {
    let stream = new_stream(client, "pin", 1).await;
    stream.send(Event::new("before")).await.expect("send");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = |stream: Stream, seen: Arc<Mutex<Vec<String>>>, until: usize| async move {
        let watched = seen.clone();
        let trigger = stream
            .on_event("pinned", move |record| {
                let body = String::from_utf8_lossy(record.payload()).into_owned();
                assert!(body != "panic", "handler panics before returning a future");
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push(body);
                    Ok::<(), String>(())
                }
            })
            .start_at(StartAt::Latest)
            .retry(RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            })
            .max_wait(Duration::from_millis(50));
        let shutdown = async move {
            for _ in 0..500 {
                if watched.lock().expect("lock").len() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        trigger.run_until(shutdown).await.expect("run")
    };
    run(stream.clone(), seen.clone(), 0).await;
    stream
        .send_batch(vec![
            Event::new("while-down"),
            Event::new("panic"),
            Event::new("after-panic"),
        ])
        .await;
    let report = run(stream.clone(), seen.clone(), 2).await;
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["while-down", "after-panic"]
    );
    assert_eq!(
        report.dead_lettered, 1,
        "the panicking record was dead-lettered"
    );
    assert_eq!(report.failed_attempts, 2);
}

/// Stamps out one `#[tokio::test]` per conformance function. `$make` is an async fn returning
/// `(Client, Guard)`; the guard (a temp dir, a server) lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            create_describe_list_delete, bad_input_is_refused, send_and_read_back,
            send_batch_has_per_event_results, large_batches_are_split, reads_are_deterministic,
            keys_choose_partitions, unknown_streams_are_errors, consumers_checkpoint_implicitly,
            uncommitted_batches_are_redelivered, waits_wake_on_new_records,
            triggers_deliver_every_event_in_order, triggers_retry_then_dead_letter,
            batch_triggers_gather_and_dead_letter, triggers_pin_their_start_and_survive_panics);
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (client, _guard) = $make().await;
                $crate::conformance::$name(&client).await;
            }
        )*
    };
}
