//! `nats://` against a real NATS server with JetStream on loopback (`nats-server -js` from
//! Debian, which `scripts/servers.sh` starts with file storage): the conformance suite,
//! then what is NATS's own (deduplication by `Nats-Msg-Id`, the stream JetStream shows).
//! A server that is not there fails these tests.
//!
//! Server: `CLOUDSTREAM_NATS` (default `nats://127.0.0.1:4232`).

#![cfg(feature = "nats")]

use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Client, Event, ReadFrom};

fn server() -> String {
    std::env::var("CLOUDSTREAM_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4232".to_owned())
}

/// Opens a client, failing (never skipping) when the server is not there.
async fn open() -> Client {
    match cloudstream::open(&server()).await {
        Ok(client) => client,
        Err(e) => panic!(
            "no NATS server at {} ({e}); run the tests through scripts/test.sh, which starts it",
            server()
        ),
    }
}

async fn make() -> (Client, ()) {
    (open().await, ())
}

cloudstream::conformance_tests!(make);

/// A send retried with the same id within the stream's duplicate window is stored once and
/// answered with the first copy's position; so is a publish of the same `Nats-Msg-Id` by a
/// plain NATS client.
#[tokio::test]
async fn a_retried_send_is_deduplicated_by_its_message_id() {
    let client = open().await;
    let stream = client
        .stream(&unique_name("dedup"))
        .horizon(Duration::from_secs(3600))
        .create()
        .await
        .expect("create");
    let first = stream
        .send(Event::new("order").with_id("order-1"))
        .await
        .expect("send");
    let again = stream
        .send(Event::new("order").with_id("order-1"))
        .await
        .expect("send again");
    assert_eq!(
        again, first,
        "the copy answers with the first one's position"
    );
    let nats = async_nats::connect(server()).await.expect("connect");
    let js = async_nats::jetstream::new(nats);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "order-1");
    let subject = format!("cloudstream.{}.{}", stream.name(), first.partition);
    let ack = js
        .publish_with_headers(subject, headers, "order".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(ack.sequence, first.sequence.as_u64().expect("seq"));
    let all = stream.read(ReadFrom::Earliest, 10).await.expect("read");
    assert_eq!(all.len(), 1, "stored once");
    let info = stream.describe().await.expect("describe");
    assert_eq!(info.details["messages"], "1");
    assert_eq!(info.details["duplicate_window_ms"], "120000");
    client.delete_stream(stream.name()).await.expect("delete");
}
