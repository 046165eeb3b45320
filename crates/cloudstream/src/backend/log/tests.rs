//! The conformance suite on `local://` and `memory://`, and what only the embedded engine
//! can show: retention under a manual clock, and durability across a reopen.

use std::sync::Arc;
use std::time::Duration;

use cloudstream_log::{Log, LogOptions, ManualClock, MemoryStorage, SyncPolicy};

use super::LogBackend;
use crate::backend::PartitionStart;
use crate::{Client, Error, Event, Position, ReadFrom, Sequence};

mod local {
    async fn make() -> (crate::Client, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = crate::open(&format!("local://{}", dir.path().display()))
            .await
            .expect("open local");
        (client, dir)
    }
    crate::conformance_tests!(make);
}

mod memory {
    async fn make() -> (crate::Client, ()) {
        (crate::open("memory://").await.expect("open memory"), ())
    }
    crate::conformance_tests!(make);
}

fn manual_client(clock: Arc<ManualClock>) -> (Client, Arc<LogBackend>) {
    let options = LogOptions {
        storage: Arc::new(MemoryStorage::new()),
        clock,
        sync: SyncPolicy::Always,
        segment_bytes: 4096,
        retention_check: None,
        ..LogOptions::default()
    };
    let backend = Arc::new(LogBackend::new(
        "memory",
        Log::open("/m", options).expect("open"),
        1024,
    ));
    (Client::new(backend.clone()), backend)
}

#[tokio::test]
async fn expired_positions_are_errors_and_consumers_report_gaps() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (client, backend) = manual_client(clock.clone());
    let stream = client
        .stream("s")
        .horizon(Duration::from_secs(10))
        .create()
        .await
        .expect("create");
    let reader = stream.consumer("slow");
    stream.send(Event::new("first")).await.expect("send");
    assert_eq!(reader.fetch().await.expect("fetch").len(), 1);
    for i in 0..100 {
        stream
            .send(Event::new(vec![b'x'; 100 + i]))
            .await
            .expect("send");
    }
    clock.advance(60_000);
    let fresh = stream.send(Event::new("fresh")).await.expect("send");
    let deleted = backend.log().enforce_retention().expect("retention");
    assert!(deleted > 0, "expired segments deleted");
    let old = stream.read(ReadFrom::At(Position::new(0, 0)), 1).await;
    match old {
        Err(Error::Expired {
            requested,
            earliest,
        }) => {
            assert_eq!(requested, Position::new(0, 0));
            assert!(earliest.sequence > Sequence::ZERO && earliest.sequence <= fresh.sequence);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let batch = reader.fetch().await.expect("fetch after gap");
    assert_eq!(batch.gaps.len(), 1, "gap reported");
    assert_eq!(batch.gaps[0].from, PartitionStart::After(Sequence::ZERO));
    assert_eq!(batch.last().map(|r| r.position), Some(fresh));
    let earliest = stream.read(ReadFrom::Earliest, 1000).await.expect("read");
    assert_eq!(
        earliest.last().map(|r| r.position),
        Some(fresh),
        "records inside the horizon stay"
    );
}

#[tokio::test]
async fn local_streams_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("local://{}", dir.path().display());
    let receipt = {
        let client = crate::open(&url).await.expect("open");
        let stream = client
            .stream("durable")
            .partitions(2)
            .create()
            .await
            .expect("create");
        let r = stream
            .send(Event::new("kept").with_key("k"))
            .await
            .expect("send");
        let consumer = stream.consumer("c");
        consumer.fetch().await.expect("fetch");
        consumer.commit().await.expect("commit");
        r
    };
    let client = crate::open(&url).await.expect("reopen");
    let stream = client.stream("durable").open().await.expect("open stream");
    assert_eq!(stream.partitions(), 2);
    let records = stream.read(ReadFrom::At(receipt), 10).await.expect("read");
    assert_eq!(records[0].payload().as_ref(), b"kept");
    assert!(
        stream
            .consumer("c")
            .fetch()
            .await
            .expect("fetch")
            .is_empty(),
        "checkpoint survived"
    );
}

/// Deduplication survives a restart: the ids of the records within the window are read
/// back from the log, so a producer retrying after the server came back stores nothing
/// twice.
#[tokio::test]
async fn event_ids_are_remembered_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("local://{}", dir.path().display());
    let first = {
        let client = crate::open(&url).await.expect("open");
        let stream = client
            .stream("ids")
            .partitions(3)
            .create()
            .await
            .expect("create");
        stream
            .send(Event::new("once").with_id("payment-42"))
            .await
            .expect("send")
    };
    let client = crate::open(&url).await.expect("reopen");
    let stream = client.stream("ids").open().await.expect("open stream");
    let again = stream
        .send(Event::new("twice").with_id("payment-42"))
        .await
        .expect("send again");
    assert_eq!(again, first, "the first copy's position, after a restart");
    let mut stored = 0;
    for p in 0..3 {
        stored += stream
            .read_partition(p, ReadFrom::Earliest, 10)
            .await
            .expect("read")
            .len();
    }
    assert_eq!(stored, 1);
}

/// A send dropped after its events reached the writer (the caller timed out, a server
/// answered 408) still stores them, and the copy sent next must learn where: the claims
/// settle on the writer thread, not in the dropped future.
#[tokio::test]
async fn a_copy_sent_after_a_dropped_send_is_not_stored_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = crate::open(&format!("local://{}", dir.path().display()))
        .await
        .expect("open");
    let stream = client.stream("dropped").create().await.expect("create");
    // The first send with an id reads the window's ids back; the next ones go straight on.
    stream
        .send(Event::new("warm").with_id("warm-up"))
        .await
        .expect("send");
    for i in 0..20 {
        let id = format!("order-{i}");
        let dropped = tokio::time::timeout(
            Duration::from_nanos(1),
            stream.send(Event::new("first").with_id(id.clone())),
        )
        .await;
        let again = stream
            .send(Event::new("again").with_id(id))
            .await
            .expect("send again");
        if let Ok(Ok(first)) = dropped {
            assert_eq!(first, again);
        }
    }
    let records = stream
        .read_partition(0, ReadFrom::Earliest, 100)
        .await
        .expect("read");
    assert_eq!(records.len(), 21, "one record per id: {records:?}");
}

#[tokio::test]
async fn url_options_reach_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "local://{}?sync=never&max_record_bytes=10",
        dir.path().display()
    );
    let client = crate::open(&url).await.expect("open");
    assert_eq!(client.backend().capabilities().max_record_bytes, 10);
    let stream = client.stream("s").create().await.expect("create");
    let big = stream.send(Event::new("12345678901")).await;
    assert!(
        matches!(big, Err(Error::RecordTooLarge { size: 11, max: 10 })),
        "{big:?}"
    );
    let bad = crate::open("local://x?sync=maybe").await;
    assert!(matches!(bad, Err(Error::InvalidUrl { .. })), "{bad:?}");
}

#[tokio::test]
async fn reopening_with_other_options_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("local://{}", dir.path().display());
    let first = crate::open(&format!("{url}?sync=never"))
        .await
        .expect("open");
    let again = crate::open(&format!("{url}?sync=never"))
        .await
        .expect("same options share the engine");
    assert!(Arc::ptr_eq(first.backend(), again.backend()));
    let other = crate::open(&url).await;
    assert!(
        matches!(other, Err(Error::InvalidArgument(ref m)) if m.contains("other options")),
        "{other:?}"
    );
}

/// A consumer's fetch has one byte budget across partitions (plus at most one record past
/// it), not one per partition: a 4-partition stream of 600 KiB records does not hand out
/// everything it holds in one answer.
#[tokio::test]
async fn a_fetch_has_one_byte_budget_across_partitions() {
    let client = crate::open("memory://").await.expect("open");
    let stream = client
        .stream("budget")
        .partitions(4)
        .create()
        .await
        .expect("create");
    let record = 600 * 1024;
    for p in 0..4 {
        let events: Vec<Event> = (0..3).map(|_| Event::new(vec![7u8; record])).collect();
        client
            .backend()
            .append("budget", p, &events)
            .await
            .expect("append");
    }
    let budget = 1024 * 1024;
    let consumer = stream.consumer("c").max_bytes(budget);
    let mut fetched = 0;
    let mut seen = 0;
    while seen < 12 {
        let batch = consumer.fetch().await.expect("fetch");
        assert!(!batch.is_empty(), "every record comes, fetch by fetch");
        let bytes: usize = batch.iter().map(|r| r.event.size()).sum();
        assert!(
            bytes <= budget + record,
            "one fetch handed out {bytes} bytes for a budget of {budget}"
        );
        seen += batch.len();
        fetched += 1;
    }
    assert_eq!(seen, 12);
    assert!(fetched >= 6, "{fetched} fetches");
}

/// A record with as many headers as the stream takes fails every attempt: its dead-letter
/// copy, which adds headers of its own, goes without the record's headers (a header says
/// so) instead of stopping the trigger.
#[tokio::test]
async fn a_dead_letter_over_the_header_limit_drops_the_records_headers() {
    let client = crate::open("memory://").await.expect("open");
    let stream = client.stream("full").create().await.expect("create");
    let max = client.backend().capabilities().max_headers;
    let mut event = Event::new("poison");
    for i in 0..max {
        event = event.with_header(format!("h{i}"), "v");
    }
    stream.send(event).await.expect("the record itself fits");
    let report = stream
        .on_event("worker", |_| async { Err::<(), _>("always fails") })
        .retry(crate::RetryPolicy {
            max_attempts: 1,
            ..crate::RetryPolicy::default()
        })
        .max_wait(Duration::from_millis(20))
        .run_until(async {
            let dlq = loop {
                match client.stream("full.dlq").open().await {
                    Ok(dlq) => break dlq,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            for _ in 0..500 {
                if !dlq
                    .read(ReadFrom::Earliest, 1)
                    .await
                    .unwrap_or_default()
                    .is_empty()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the trigger does not stop");
    assert_eq!(report.dead_lettered, 1);
    let dlq = client.stream("full.dlq").open().await.expect("dlq");
    let dead = dlq.read(ReadFrom::Earliest, 1).await.expect("read");
    let headers = &dead[0].event.headers;
    assert_eq!(dead[0].payload().as_ref(), b"poison");
    assert!(
        headers.contains_key(crate::dlq_headers::HEADERS_DROPPED),
        "{:?}",
        headers.keys().take(8).collect::<Vec<_>>()
    );
    assert!(headers.contains_key(crate::dlq_headers::ERROR));
    assert!(!headers.contains_key("h0"), "the record's own headers went");
}
