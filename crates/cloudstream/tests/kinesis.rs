//! `kinesis://` against two independent Kinesis implementations running on loopback:
//! kinesalite (checkpoints in the local checkpoint store) and moto (checkpoints in moto's
//! DynamoDB). `scripts/test.sh` starts both; a server that is not there fails these tests.
//!
//! Endpoints: `CLOUDSTREAM_KINESALITE` (default `http://127.0.0.1:4567`) and
//! `CLOUDSTREAM_MOTO` (default `http://127.0.0.1:4566`).

#![cfg(feature = "kinesis")]

use std::sync::Arc;
use std::time::Duration;

use cloudstream::backend::{KinesisBackend, KinesisOptions, PartitionStart};
use cloudstream::checkpoint::store_of;
use cloudstream::conformance::unique_name;
use cloudstream::url::parse_url;
use cloudstream::{Client, Error, Event, ReadFrom, Sequence};

fn endpoint(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Fails, with the reason, when the server is not listening: a missing server is never a
/// skipped test.
async fn require_server(endpoint: &str) {
    let addr = endpoint.trim_start_matches("http://");
    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
        panic!("no Kinesis server at {endpoint} ({e}); run the tests through scripts/test.sh, which starts it");
    }
}

fn kinesalite_url(checkpoints: &std::path::Path) -> String {
    format!(
        "kinesis://us-east-1?endpoint={}&access_key_id=test&secret_access_key=test&checkpoints=local:{}",
        endpoint("CLOUDSTREAM_KINESALITE", "http://127.0.0.1:4567"),
        checkpoints.display()
    )
}

fn moto_url() -> String {
    format!(
        "kinesis://us-east-1?endpoint={}&access_key_id=test&secret_access_key=test&checkpoints=dynamodb:cloudstream-test-checkpoints",
        endpoint("CLOUDSTREAM_MOTO", "http://127.0.0.1:4566")
    )
}

mod kinesalite {
    pub(super) async fn make() -> (cloudstream::Client, tempfile::TempDir) {
        super::require_server(&super::endpoint(
            "CLOUDSTREAM_KINESALITE",
            "http://127.0.0.1:4567",
        ))
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let client = cloudstream::open(&super::kinesalite_url(dir.path()))
            .await
            .expect("open kinesis (kinesalite)");
        (client, dir)
    }
    cloudstream::conformance_tests!(make);
}

mod moto {
    pub(super) async fn make() -> (cloudstream::Client, ()) {
        super::require_server(&super::endpoint(
            "CLOUDSTREAM_MOTO",
            "http://127.0.0.1:4566",
        ))
        .await;
        let client = cloudstream::open(&super::moto_url())
            .await
            .expect("open kinesis (moto)");
        (client, ())
    }
    cloudstream::conformance_tests!(make);
}

async fn stream(client: &Client, prefix: &str, partitions: u32) -> cloudstream::Stream {
    client
        .stream(&unique_name(prefix))
        .horizon(Duration::from_secs(24 * 3600))
        .partitions(partitions)
        .create()
        .await
        .expect("create")
}

/// Retention outside 24..=8760 whole hours is refused with a clear error, before any call.
#[tokio::test]
async fn retention_bounds_are_enforced() {
    let (client, _dir) = kinesalite::make().await;
    for (hours, says) in [(1, "86400s"), (9000, "31536000s")] {
        let err = client
            .stream(&unique_name("retention"))
            .horizon(Duration::from_secs(hours * 3600))
            .create()
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidArgument(_)) && err.to_string().contains(says),
            "{err}"
        );
    }
    let err = client
        .stream(&unique_name("retention"))
        .horizon(Duration::from_secs(36 * 3600 + 60))
        .create()
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("whole hours"), "{err}");
    let s = client
        .stream(&unique_name("retention"))
        .horizon(Duration::from_secs(48 * 3600))
        .create()
        .await
        .expect("48 h is fine");
    let info = s.describe().await.expect("describe");
    assert_eq!(info.horizon(), Duration::from_secs(48 * 3600));
    assert_eq!(
        info.details.get("retention").map(String::as_str),
        Some("48 hours")
    );
    assert!(
        info.resource.starts_with("arn:aws:kinesis:"),
        "{}",
        info.resource
    );
}

/// Describe shows Kinesis's own view: ARN, status, shards by id.
#[tokio::test]
async fn describe_shows_the_provider_view() {
    let (client, ()) = moto::make().await;
    let s = stream(&client, "describe", 3).await;
    let info = s.describe().await.expect("describe");
    assert_eq!(
        info.details.get("status").map(String::as_str),
        Some("ACTIVE")
    );
    assert_eq!(info.details.get("shards").map(String::as_str), Some("3"));
    assert!(info.partitions.iter().all(|p| p.id.starts_with("shardId-")));
    assert_eq!(info.records(), None, "Kinesis does not count records");
}

/// Kinesis sequence numbers (56 digits) survive a checkpoint in DynamoDB and on disk.
#[tokio::test]
async fn big_sequences_checkpoint_in_both_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    require_server(&endpoint("CLOUDSTREAM_MOTO", "http://127.0.0.1:4566")).await;
    for (url, big) in [(kinesalite_url(dir.path()), true), (moto_url(), false)] {
        let client = cloudstream::open(&url).await.expect("open");
        let s = stream(&client, "bigseq", 1).await;
        let receipt = s.send(Event::new("x").with_key("k")).await.expect("send");
        // kinesalite numbers records as AWS does (56 digits); moto counts 1, 2, 3.
        assert_eq!(
            receipt.sequence.as_u64().is_none(),
            big,
            "{}",
            receipt.sequence
        );
        let kinesis_like: Sequence = "49590338271490256608559692538361571095921575989136588898"
            .parse()
            .expect("sequence");
        let backend = client.backend();
        let store = store_of(backend.as_ref()).expect("checkpoint store");
        store
            .commit(s.name(), "big", &[(0, PartitionStart::After(kinesis_like))])
            .await
            .expect("commit");
        let loaded = store.load(s.name(), "big").await.expect("load");
        assert_eq!(
            loaded.and_then(|c| c.get(&0).copied()),
            Some(PartitionStart::After(kinesis_like))
        );
        backend
            .delete_consumer(s.name(), "big")
            .await
            .expect("delete");
        let reader = s.consumer("r");
        assert_eq!(reader.fetch().await.expect("fetch").len(), 1);
        reader.commit().await.expect("commit");
        let checkpoint = store
            .load(s.name(), "r")
            .await
            .expect("load")
            .expect("committed");
        assert_eq!(
            checkpoint.get(&0),
            Some(&PartitionStart::After(receipt.sequence))
        );
        let consumers = client
            .backend()
            .list_consumers(s.name())
            .await
            .expect("list");
        assert_eq!(consumers.len(), 1);
        assert_eq!(consumers[0].lag, None);
        assert!(client
            .backend()
            .delete_consumer(s.name(), "r")
            .await
            .expect("delete"));
        client.delete_stream(s.name()).await.expect("delete stream");
    }
}

/// An expired shard iterator is replaced, and the read goes on from the same point.
#[tokio::test]
async fn stale_iterators_are_replaced() {
    require_server(&endpoint("CLOUDSTREAM_KINESALITE", "http://127.0.0.1:4567")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = parse_url(&kinesalite_url(dir.path())).expect("url");
    let options = KinesisOptions::from_url(&url).expect("options");
    let kinesis = Arc::new(KinesisBackend::connect(options).await.expect("connect"));
    let client = Client::new(kinesis.clone());
    let s = stream(&client, "iterators", 1).await;
    let receipts: Vec<_> = s
        .send_batch(
            (0..10)
                .map(|i| Event::new(format!("{i}")).with_key("k"))
                .collect(),
        )
        .await
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect();
    let first = s.read(ReadFrom::Earliest, 5).await.expect("read");
    assert_eq!(first.len(), 5);
    kinesis.age_cached_iterators(Duration::from_secs(3600));
    let rest = s
        .read(ReadFrom::After(first[4].position), 100)
        .await
        .expect("read after expiry");
    assert_eq!(
        rest.iter().map(|r| r.position).collect::<Vec<_>>(),
        receipts[5..]
    );
}

/// `mode=on-demand` creates an on-demand stream; its partitions are the shards AWS gave it.
#[tokio::test]
async fn on_demand_streams_take_the_shards_aws_gives() {
    require_server(&endpoint("CLOUDSTREAM_MOTO", "http://127.0.0.1:4566")).await;
    let url = format!("{}&mode=on-demand", moto_url());
    let client = cloudstream::open(&url).await.expect("open");
    let s = stream(&client, "ondemand", 1).await;
    let info = s.describe().await.expect("describe");
    assert_eq!(
        info.details.get("mode").map(String::as_str),
        Some("ON_DEMAND")
    );
    assert_eq!(info.partitions.len() as u32, s.partitions());
    assert!(s.partitions() >= 1);
    let receipt = s.send(Event::new("x").with_key("k")).await.expect("send");
    let back = s.read(ReadFrom::At(receipt), 1).await.expect("read");
    assert_eq!(back[0].payload().as_ref(), b"x");
}
