//! Consumer groups on `kafka://` across clients that share nothing but the broker, as
//! separate processes would: a rebalance while triggers run, a member that dies holding
//! partitions, and the claims topic kept out of the streams.
//!
//! Broker: `CLOUDSTREAM_KAFKA` (default `127.0.0.1:9092`), started by `scripts/servers.sh`.

#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstream::backend::{Consumption, PartitionStart};
use cloudstream::conformance::unique_name;
use cloudstream::{Client, Error, Event, Position, Record, Stream, TriggerReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn broker() -> String {
    std::env::var("CLOUDSTREAM_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A client of its own: its own producer, readers and replay of the claims log.
async fn client() -> Client {
    if let Err(e) = tokio::net::TcpStream::connect(broker()).await {
        panic!(
            "no Kafka broker at {} ({e}); run the tests through scripts/test.sh, which starts it",
            broker()
        );
    }
    cloudstream::open(&format!("kafka://{}", broker()))
        .await
        .expect("open kafka")
}

/// (member, position) in the order handled.
type Handled = Arc<Mutex<Vec<(&'static str, Position)>>>;

/// Runs member `id` of trigger group "workers" on `stream` until `stop` fires.
fn member(
    stream: Stream,
    id: &'static str,
    handled: &Handled,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<cloudstream::Result<TriggerReport>> {
    let sink = handled.clone();
    let trigger = stream
        .on_event("workers", move |r: Record| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sink.lock().expect("lock").push((id, r.position));
                Ok::<(), String>(())
            }
        })
        .member(id)
        .lease_ttl(Duration::from_secs(3))
        .batch_size(20)
        .max_wait(Duration::from_millis(50))
        .no_dead_letter();
    tokio::spawn(async move {
        trigger
            .run_until(async move {
                let _ = stop.await;
            })
            .await
    })
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many records member `id` handled.
fn handled_by(handled: &Handled, id: &str) -> usize {
    count(&handled.lock().expect("lock"), id)
}

fn count(handled: &[(&str, Position)], id: &str) -> usize {
    handled.iter().filter(|(m, _)| *m == id).count()
}

/// The tests of this file run one at a time (see `tests/kafka.rs`: tansu and librdkafka
/// crash on a topic deleted during another's fetch).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three members in three clients: a alone, then b and c join while a runs (a gives
/// partitions back after committing them), then a dies holding partitions without giving
/// them back; b and c take them over once a's leases expire. Every record sent is handled;
/// no member handles a record twice; a record is handled by two members only when a
/// handled it after its last commit (its uncommitted batch, delivered again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_while_triggers_run_skips_nothing_and_repeats_only_the_uncommitted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let clients = [client().await, client().await, client().await];
    let name = unique_name("groups");
    clients[0]
        .stream(&name)
        .horizon(Duration::from_secs(3600))
        .partitions(4)
        .create()
        .await
        .expect("create");
    let mut streams = Vec::new();
    for c in &clients {
        streams.push(c.stream(&name).open().await.expect("open"));
    }
    // A writer keeps sending keyed events until told to stop; it keeps every receipt.
    let sent: Arc<Mutex<Vec<Position>>> = Arc::default();
    let (stop_writer, mut writer_stopped) = oneshot::channel::<()>();
    let writer = {
        let (stream, sent) = (streams[0].clone(), sent.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while writer_stopped.try_recv().is_err() {
                let events: Vec<Event> = (n..n + 20)
                    .map(|i| Event::new(format!("event-{i}")).with_key(format!("device-{i}")))
                    .collect();
                n += 20;
                for r in stream.send_batch(events).await {
                    sent.lock().expect("lock").push(r.expect("sent"));
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let handled: Handled = Arc::default();
    let (_stop_a, a_stopped) = oneshot::channel();
    let a = member(streams[0].clone(), "a", &handled, a_stopped);
    until("a handles records", || handled_by(&handled, "a") >= 40).await;
    let (stop_b, b_stopped) = oneshot::channel();
    let b = member(streams[1].clone(), "b", &handled, b_stopped);
    until("b gets partitions from a", || {
        handled_by(&handled, "b") >= 20
    })
    .await;
    let (stop_c, c_stopped) = oneshot::channel();
    let c = member(streams[2].clone(), "c", &handled, c_stopped);
    until("c gets a partition", || handled_by(&handled, "c") >= 20).await;
    // a dies: its task and its lanes are dropped at once; it neither commits nor releases.
    a.abort();
    let _ = a.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_last = handled.lock().expect("lock").len();
    let Consumption::Checkpoints(store) = clients[1].backend().consumption() else {
        panic!("kafka consumers read from checkpoints")
    };
    let committed: BTreeMap<u32, u64> = store
        .load(&name, "workers")
        .await
        .expect("load")
        .expect("a checkpoint")
        .into_iter()
        .map(|(p, at)| match at {
            PartitionStart::At(s) => (p, s.as_u64().expect("offset")),
            other => panic!("partition {p} resumes at {other}"),
        })
        .collect();
    let before_kill: Vec<Position> = handled.lock().expect("lock")[..a_last]
        .iter()
        .filter(|(m, _)| *m == "a")
        .map(|(_, p)| *p)
        .collect();
    // b and c take a's partitions once its leases (3 s) expire, and handle what a left.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_writer.send(());
    writer.await.expect("writer");
    let sent: Vec<Position> = sent.lock().expect("lock").clone();
    let all: BTreeSet<Position> = sent.iter().copied().collect();
    until("every record is handled", || {
        let h = handled.lock().expect("lock");
        let seen: BTreeSet<Position> = h.iter().map(|(_, p)| *p).collect();
        all.is_subset(&seen)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = (stop_b.send(()), stop_c.send(()));
    let (rb, rc) = (b.await.expect("join"), c.await.expect("join"));
    rb.expect("b ran");
    rc.expect("c ran");

    let handled = handled.lock().expect("lock").clone();
    let mut by_member: BTreeSet<(&str, Position)> = BTreeSet::new();
    let mut first: BTreeMap<Position, &str> = BTreeMap::new();
    let mut repeated = 0;
    for (m, p) in &handled {
        assert!(by_member.insert((m, *p)), "{m} handled {p} twice");
        if let Some(before) = first.get(p) {
            repeated += 1;
            assert_eq!(*before, "a", "{p}: handled by {before}, then {m}");
            let mark = committed.get(&p.partition).copied().unwrap_or(0);
            assert!(
                p.sequence.as_u64().expect("offset") >= mark,
                "{p} was committed (partition resumes at {mark}) yet handled again by {m}"
            );
            assert!(before_kill.contains(p));
        } else {
            first.insert(*p, m);
        }
    }
    assert!(all.iter().all(|p| first.contains_key(p)), "none skipped");
    for id in ["a", "b", "c"] {
        assert!(count(&handled, id) > 0, "{id} handled nothing");
    }
    println!(
        "kafka groups: {} records sent, {} handlings, {repeated} handled again after a died uncommitted, 0 skipped",
        all.len(),
        handled.len()
    );
    // The other clients' readers stop fetching before the topic goes: tansu answers a fetch
    // racing a deletion in a way that crashes librdkafka 2.12 (see tests/kafka.rs).
    let [c0, c1, c2] = clients;
    drop((streams, c1, c2));
    c0.delete_stream(&name).await.expect("delete");
}

/// The claims topic is no stream: refused by name, absent from the list.
#[tokio::test]
async fn the_claims_topic_is_not_a_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let c = client().await;
    let s = c
        .stream(&unique_name("claims"))
        .partitions(1)
        .create()
        .await
        .expect("create");
    // A round of a consumer group makes the claims topic.
    let member = s
        .consumer("g")
        .member("m")
        .lease_ttl(Duration::from_secs(5));
    member.fetch().await.expect("fetch");
    let name = "__cloudstream_leases";
    let refused = c.stream(name).create().await;
    assert!(
        matches!(refused, Err(Error::InvalidName { .. })),
        "{refused:?}"
    );
    assert!(!c
        .list_streams()
        .await
        .expect("list")
        .contains(&name.to_owned()));
    let too_long = s
        .consumer("g")
        .member("m")
        .lease_ttl(Duration::from_secs(7200))
        .fetch()
        .await;
    assert!(
        matches!(too_long, Err(Error::InvalidArgument(_))),
        "{too_long:?}"
    );
    c.delete_stream(s.name()).await.expect("delete");
}
