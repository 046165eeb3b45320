//! `pubsub://` against Google's own Pub/Sub emulator on loopback (`scripts/test.sh` starts
//! it; endpoint `CLOUDSTREAM_PUBSUB`, default `http://127.0.0.1:8085`). A missing emulator
//! fails these tests.

#![cfg(feature = "pubsub")]

use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Client, Error, Event, ReadFrom};

fn endpoint() -> String {
    std::env::var("CLOUDSTREAM_PUBSUB").unwrap_or_else(|_| "http://127.0.0.1:8085".to_owned())
}

async fn make() -> (Client, ()) {
    let endpoint = endpoint();
    let addr = endpoint.trim_start_matches("http://");
    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
        panic!("no Pub/Sub emulator at {endpoint} ({e}); run the tests through scripts/test.sh, which starts it");
    }
    let url = format!("pubsub://test-project?endpoint={endpoint}");
    (cloudstream::open(&url).await.expect("open pubsub"), ())
}

mod emulator {
    pub(super) use super::make;
    cloudstream::conformance_tests!(make);
}

async fn topic(client: &Client, prefix: &str) -> cloudstream::Stream {
    client
        .stream(&unique_name(prefix))
        .horizon(Duration::from_secs(3600))
        .create()
        .await
        .expect("create topic")
}

/// Message retention is 10 minutes to 31 days; anything else is refused before any call.
#[tokio::test]
async fn retention_bounds_are_enforced() {
    let (client, ()) = make().await;
    for secs in [60, 32 * 24 * 3600] {
        let err = client
            .stream(&unique_name("retention"))
            .horizon(Duration::from_secs(secs))
            .create()
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    let s = topic(&client, "retention").await;
    let info = s.describe().await.expect("describe");
    assert_eq!(info.horizon(), Duration::from_secs(3600));
    assert!(
        info.resource.ends_with(&format!("/topics/{}", s.name())),
        "{}",
        info.resource
    );
}

/// Reading by position is not what Pub/Sub does: a clear `Unsupported`, never a wrong answer.
#[tokio::test]
async fn reads_by_position_are_unsupported() {
    let (client, ()) = make().await;
    let s = topic(&client, "noread").await;
    let err = s
        .read(ReadFrom::Earliest, 10)
        .await
        .expect_err("unsupported");
    assert!(
        matches!(
            err,
            Error::Unsupported {
                backend: "pubsub",
                ..
            }
        ),
        "{err}"
    );
}

/// A fetched batch that is never acknowledged (the consumer handle is dropped) is delivered
/// again, with a higher delivery count, to the next fetch.
#[tokio::test]
async fn missed_acks_are_redelivered() {
    let (client, ()) = make().await;
    let s = topic(&client, "redeliver").await;
    let first = s.consumer("c");
    assert!(first.fetch().await.expect("subscribe").is_empty());
    s.send(Event::new("once").with_key("k"))
        .await
        .expect("send");
    let first = first.wait(Duration::from_secs(20));
    let got = first.fetch().await.expect("fetch");
    assert_eq!(got.len(), 1);
    drop(first);
    let again = s
        .consumer("c")
        .wait(Duration::from_secs(20))
        .fetch()
        .await
        .expect("fetch");
    assert_eq!(
        again.records, got.records,
        "the unacknowledged record again"
    );
}
