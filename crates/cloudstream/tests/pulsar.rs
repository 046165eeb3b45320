//! `pulsar://` against a real Pulsar-protocol broker on loopback (pulsar-lite from PyPI,
//! which `scripts/servers.sh` starts): the conformance suite, then what is Pulsar's own
//! (redelivery of an unacknowledged batch, the catalog, the topics a stream writes).
//! A broker that is not there fails these tests.
//!
//! Broker: `CLOUDSTREAM_PULSAR` (default `pulsar://127.0.0.1:6652?retention=broker`).

#![cfg(feature = "pulsar")]

use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Client, Error, Event, ReadFrom};

fn server() -> String {
    std::env::var("CLOUDSTREAM_PULSAR")
        .unwrap_or_else(|_| "pulsar://127.0.0.1:6652?retention=broker".to_owned())
}

/// Opens a client, failing (never skipping) when the broker is not there.
async fn open() -> Client {
    match cloudstream::open(&server()).await {
        Ok(client) => client,
        Err(e) => panic!(
            "no Pulsar broker at {} ({e}); run the tests through scripts/test.sh, which starts it",
            server()
        ),
    }
}

async fn make() -> (Client, ()) {
    (open().await, ())
}

cloudstream::conformance_tests!(make);

/// A batch pulled and never acknowledged by a process that went away comes, whole and in
/// order, to the process that pulls next (the broker redelivers it); once acknowledged, it
/// does not come again.
#[tokio::test]
async fn an_unacknowledged_batch_is_redelivered() {
    let name = unique_name("redeliver");
    {
        let client = open().await;
        let stream = client
            .stream(&name)
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");
        stream
            .send_batch((0..20).map(|i| Event::new(format!("e{i}"))).collect())
            .await;
        let mine = stream.consumer("c").max_records(20);
        let mut first = Vec::new();
        while first.len() < 20 {
            let batch = mine.fetch().await.expect("fetch");
            assert!(!batch.is_empty(), "delivered: {first:?}");
            first.extend(batch.records);
        }
        // The process goes away without acknowledging: its client closes.
    }
    let other = open().await;
    let theirs = other.stream(&name).open().await.expect("open");
    let again = theirs
        .consumer("c")
        .max_records(20)
        .wait(Duration::from_secs(5));
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let batch = again.fetch().await.expect("fetch again");
        assert!(!batch.is_empty(), "redelivered: {seen:?}");
        seen.extend(batch.records.iter().map(|r| r.payload().clone()));
    }
    let expected: Vec<_> = (0..20)
        .map(|i| bytes::Bytes::from(format!("e{i}")))
        .collect();
    assert_eq!(seen, expected, "the batch again, in order");
    again.commit().await.expect("commit");
    drop(again);
    let after = theirs.consumer("c").wait(Duration::from_millis(500));
    assert!(
        after.fetch().await.expect("fetch").is_empty(),
        "acknowledged"
    );
}

/// A stream deleted and made again starts empty, though the broker cannot delete topics:
/// its second generation writes other topics.
#[tokio::test]
async fn a_stream_made_again_starts_empty() {
    let client = open().await;
    let name = unique_name("again");
    let stream = client.stream(&name).create().await.expect("create");
    stream.send(Event::new("old")).await.expect("send");
    client.delete_stream(&name).await.expect("delete");
    let stream = client.stream(&name).create().await.expect("create again");
    let info = stream.describe().await.expect("describe");
    assert!(
        info.resource.ends_with(&format!("{name}=g2")),
        "{}",
        info.resource
    );
    let records = stream.read(ReadFrom::Earliest, 10).await.expect("read");
    assert!(records.is_empty(), "{records:?}");
    // A second client agrees: the catalog is the broker's, not this process's.
    let other = open().await;
    assert!(other.list_streams().await.expect("list").contains(&name));
}

/// Without `retention=broker`, a stream cannot be made: the horizon could not be kept.
#[tokio::test]
async fn a_horizon_without_retention_is_refused() {
    let url = server().replace("?retention=broker", "");
    let client = cloudstream::open(&url).await.expect("open");
    let e = client
        .stream(&unique_name("noretention"))
        .create()
        .await
        .expect_err("refused");
    assert!(
        matches!(
            e,
            Error::Unsupported {
                backend: "pulsar",
                ..
            }
        ) && e.to_string().contains("retention=broker"),
        "{e}"
    );
}

/// What is cloudstream's own is refused, and positions that no Pulsar message id maps to
/// are bad input, not a broken connection.
#[tokio::test]
async fn reserved_headers_and_foreign_positions_are_refused() {
    let client = open().await;
    let stream = client
        .stream(&unique_name("refused"))
        .create()
        .await
        .expect("create");
    let e = stream
        .send(Event::new("x").with_header("cloudstream-marker", "1"))
        .await
        .expect_err("refused");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let foreign = cloudstream::Position::new(0, cloudstream::Sequence::MAX);
    let e = stream
        .read(ReadFrom::At(foreign), 10)
        .await
        .expect_err("refused");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // The stream still works after both.
    stream.send(Event::new("fine")).await.expect("send");
    let records = stream.read(ReadFrom::Earliest, 10).await.expect("read");
    assert_eq!(records.len(), 1, "{records:?}");
}

/// A read from `Latest` that waits returns what is appended while it waits, as soon as it
/// is there.
#[tokio::test]
async fn a_waiting_read_from_latest_sees_the_next_record() {
    let client = open().await;
    let stream = client
        .stream(&unique_name("latest"))
        .create()
        .await
        .expect("create");
    stream.send(Event::new("before")).await.expect("send");
    let writer = stream.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.send(Event::new("after")).await.expect("send")
    });
    let options = cloudstream::backend::ReadOptions {
        wait: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let records = stream
        .read_with(0, ReadFrom::Latest, &options)
        .await
        .expect("read");
    let sent = send.await.expect("sender");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].position, sent);
    assert_eq!(records[0].payload().as_ref(), b"after");
}
