//! `redis://` against a real Redis server on loopback (`redis-server` from Debian, which
//! `scripts/servers.sh` starts with `appendonly yes`): the conformance suite, then what is
//! Redis's own (trimming at the horizon, checkpoints as consumer groups `redis-cli` sees,
//! the keys a stream leaves behind). A server that is not there fails these tests.
//!
//! Server: `CLOUDSTREAM_REDIS` (default `redis://127.0.0.1:6390`).

#![cfg(feature = "redis")]

use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Client, Error, Event, ReadFrom};

fn server() -> String {
    std::env::var("CLOUDSTREAM_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6390".to_owned())
}

/// Opens a client, failing (never skipping) when the server is not there.
async fn open(options: &str) -> Client {
    let url = format!("{}{options}", server());
    match cloudstream::open(&url).await {
        Ok(client) => client,
        Err(e) => panic!(
            "no Redis server at {} ({e}); run the tests through scripts/test.sh, which starts it",
            server()
        ),
    }
}

/// The conformance suite with consumers reading from checkpoints (the default).
mod checkpoints {
    async fn make() -> (cloudstream::Client, ()) {
        (super::open("").await, ())
    }
    cloudstream::conformance_tests!(make);
}

/// The conformance suite with consumers reading through Redis consumer groups.
mod groups {
    async fn make() -> (cloudstream::Client, ()) {
        (super::open("?consumers=groups").await, ())
    }
    cloudstream::conformance_tests!(make);
}

/// Runs a command on the test server directly, as `redis-cli` would.
async fn redis_cli<T: redis::FromRedisValue>(cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(server().as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    cmd.query_async(&mut conn).await.expect("command")
}

/// An append trims its partition to the horizon by the server's clock; a read of a trimmed
/// position is `Expired`, naming the oldest record left.
#[tokio::test]
async fn appends_trim_to_the_horizon_and_trimmed_positions_are_expired() {
    let client = open("").await;
    let stream = client
        .stream(&unique_name("trim"))
        .horizon(Duration::from_secs(1))
        .create()
        .await
        .expect("create");
    let first = stream.send(Event::new("old-0")).await.expect("send");
    for i in 1..5 {
        stream
            .send(Event::new(format!("old-{i}")))
            .await
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let kept = stream.send(Event::new("new")).await.expect("send");
    let left = stream.read(ReadFrom::Earliest, 100).await.expect("read");
    assert_eq!(left.len(), 1, "only the record inside the horizon is left");
    assert_eq!(left[0].event.payload.as_ref(), b"new");
    match stream.read(ReadFrom::At(first), 10).await {
        Err(Error::Expired { earliest, .. }) => assert_eq!(earliest, kept),
        other => panic!("a trimmed position read: {other:?}"),
    }
    client.delete_stream(stream.name()).await.expect("delete");
}

/// Partitions nobody writes to are trimmed by the background pass.
#[tokio::test]
async fn idle_partitions_are_trimmed_in_the_background() {
    let client = open("?trim_interval_ms=200").await;
    let stream = client
        .stream(&unique_name("idle"))
        .horizon(Duration::from_secs(1))
        .partitions(2)
        .create()
        .await
        .expect("create");
    let events = (0..10)
        .map(|i| Event::new(format!("e{i}")).with_key(format!("k{i}")))
        .collect();
    for r in stream.send_batch(events).await {
        r.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let info = stream.describe().await.expect("describe");
    assert_eq!(info.details["entries"], "0", "{info:?}");
    for p in 0..2 {
        let key = format!("cloudstream:{{{}}}:{p}", stream.name());
        let len: u64 = redis_cli(redis::cmd("XLEN").arg(&key)).await;
        assert_eq!(len, 0, "{key}");
    }
    client.delete_stream(stream.name()).await.expect("delete");
}

/// A consumer's checkpoint is its Redis consumer group's last delivered id, which
/// `XINFO GROUPS` shows; deleting the stream leaves no key behind.
#[tokio::test]
async fn checkpoints_are_consumer_groups_and_a_deleted_stream_leaves_no_key() {
    let client = open("").await;
    let stream = client
        .stream(&unique_name("groups"))
        .create()
        .await
        .expect("create");
    let mut last = None;
    for i in 0..3 {
        last = Some(
            stream
                .send(Event::new(format!("e{i}")))
                .await
                .expect("send"),
        );
    }
    let reader = stream.consumer("reader");
    assert_eq!(reader.fetch().await.expect("fetch").len(), 3);
    reader.commit().await.expect("commit");
    let key = format!("cloudstream:{{{}}}:0", stream.name());
    let groups: redis::Value = redis_cli(redis::cmd("XINFO").arg("GROUPS").arg(&key)).await;
    let shown = format!("{groups:?}");
    let last = last.expect("sent").sequence.as_u128().expect("id");
    let id = format!("{}-{}", last >> 64, last as u64);
    assert!(shown.contains("reader") && shown.contains(&id), "{shown}");
    // A lease round leaves a lease hash; deleting the stream removes it with the rest.
    let member = stream
        .consumer("g")
        .member("m")
        .lease_ttl(Duration::from_secs(5));
    member.fetch().await.expect("member fetch");
    client.delete_stream(stream.name()).await.expect("delete");
    let left: Vec<String> =
        redis_cli(redis::cmd("KEYS").arg(format!("cloudstream:{{{}}}*", stream.name()))).await;
    assert!(left.is_empty(), "keys left: {left:?}");
    let listed: bool = redis_cli(
        redis::cmd("SISMEMBER")
            .arg("cloudstream:streams")
            .arg(stream.name()),
    )
    .await;
    assert!(!listed);
}

/// With `consumers=groups`, the entries a dead member read and never acknowledged are taken
/// over by a live one once idle for `claim_idle_ms`, in order, and acknowledged by its commit.
#[tokio::test]
async fn a_dead_members_pending_entries_are_claimed_in_order() {
    let client = open("?consumers=groups&claim_idle_ms=2000").await;
    let stream = client
        .stream(&unique_name("claim"))
        .create()
        .await
        .expect("create");
    for i in 0..5 {
        stream
            .send(Event::new(format!("e{i}")).with_key("k"))
            .await
            .expect("send");
    }
    let key = format!("cloudstream:{{{}}}:0", stream.name());
    // A member that dies: reads the five through the group and never acknowledges them.
    let _: String = redis_cli(
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("workers")
            .arg("0"),
    )
    .await;
    let _: redis::Value = redis_cli(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg("dead")
            .arg("COUNT")
            .arg(5)
            .arg("STREAMS")
            .arg(&key)
            .arg(">"),
    )
    .await;
    let reader = stream.consumer("workers").wait(Duration::from_millis(100));
    assert!(
        reader.fetch().await.expect("fetch").is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let claimed = reader.fetch().await.expect("fetch");
    let payloads: Vec<&[u8]> = claimed.iter().map(|r| r.event.payload.as_ref()).collect();
    assert_eq!(
        payloads,
        [b"e0", b"e1", b"e2", b"e3", b"e4"].map(|p| &p[..])
    );
    reader.commit().await.expect("commit");
    let pending: Vec<redis::Value> =
        redis_cli(redis::cmd("XPENDING").arg(&key).arg("workers")).await;
    assert_eq!(pending.first(), Some(&redis::Value::Int(0)), "{pending:?}");
    client.delete_stream(stream.name()).await.expect("delete");
}

/// With `consumers=groups`, entries a live member holds past `claim_idle_ms` stay with it
/// (it renews them); once it gives them back, another member takes them at once.
#[tokio::test]
async fn entries_in_hand_stay_with_their_member_until_given_back() {
    let (a, b) = (
        open("?consumers=groups&claim_idle_ms=1500").await,
        open("?consumers=groups&claim_idle_ms=1500").await,
    );
    let name = unique_name("hand");
    let stream_a = a.stream(&name).create().await.expect("create");
    let stream_b = b.stream(&name).open().await.expect("open");
    for i in 0..3 {
        stream_a
            .send(Event::new(format!("e{i}")))
            .await
            .expect("send");
    }
    let reader_a = stream_a
        .consumer("workers")
        .wait(Duration::from_millis(100));
    assert_eq!(reader_a.fetch().await.expect("fetch").len(), 3);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reader_b = stream_b
        .consumer("workers")
        .wait(Duration::from_millis(100));
    assert!(
        reader_b.fetch().await.expect("fetch").is_empty(),
        "a still holds them"
    );
    reader_a.redeliver().await;
    drop(reader_a);
    // Given back: claimable at once (once a's settlement reached the server).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let taken = loop {
        let taken = reader_b.fetch().await.expect("fetch");
        if !taken.is_empty() || tokio::time::Instant::now() > deadline {
            break taken;
        }
    };
    assert_eq!(taken.len(), 3, "given back, then taken by b");
    reader_b.commit().await.expect("commit");
    a.delete_stream(&name).await.expect("delete");
}
