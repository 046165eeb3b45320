//! Triggers as members of a consumer group: partitions handed over while handlers run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{event, new_stream};
use crate::{Client, Error, Position, Record, Result, Stream, TriggerReport};

/// What the members handled: (member, position), in the order handled.
type Handled = Arc<Mutex<Vec<(&'static str, Position)>>>;

/// Runs member `id` of trigger group "workers" until `stop` fires; each record takes its
/// handler 10 ms. Leases of 3 s: long enough for a round on a slow broker (tansu) on a
/// loaded machine.
fn run_member(
    stream: &Stream,
    id: &'static str,
    handled: &Handled,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<Result<TriggerReport>> {
    let sink = handled.clone();
    let trigger = stream
        .on_event("workers", move |r: Record| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                sink.lock().expect("lock").push((id, r.position));
                Ok::<(), String>(())
            }
        })
        .member(id)
        .lease_ttl(Duration::from_secs(3))
        .batch_size(10)
        .max_wait(Duration::from_millis(50))
        .no_dead_letter();
    tokio::spawn(trigger.run_until(async move {
        let _ = stop.await;
    }))
}

/// Waits until `done` holds of what was handled, failing after 60 s.
async fn until(handled: &Handled, what: &str, done: impl Fn(&[(&'static str, Position)]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&handled.lock().expect("lock")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Triggers as group members: b joins while a handles records and gets partitions a gives
/// back; then a stops and b takes every partition. Across both hand-overs every record is
/// handled exactly once (a member gives a partition back only after committing it).
pub async fn triggers_share_partitions_as_group_members(client: &Client) {
    let stream = new_stream(client, "trigger-group", 4).await;
    let keyed = |i: usize| event(i).with_key(format!("device-{i}"));
    if !client.backend().capabilities().leases {
        let refused = stream
            .on_event("workers", |_| async { Ok::<(), String>(()) })
            .member("a")
            .run_until(async {})
            .await;
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{refused:?}"
        );
        let dlq = format!("{}.dlq", stream.name());
        let streams = client.list_streams().await.expect("list");
        assert!(
            !streams.contains(&dlq),
            "refused before a dead-letter stream was made"
        );
        return;
    }
    let handled: Handled = Arc::default();
    let mut sent = 0;
    let mut send = |n: usize| {
        let events: Vec<_> = (sent..sent + n).map(keyed).collect();
        sent += n;
        stream.send_batch(events)
    };
    send(40).await;
    let (stop_a, a_stopped) = oneshot::channel();
    let a = run_member(&stream, "a", &handled, a_stopped);
    until(&handled, "a handles records", |h| h.len() >= 8).await;
    let (stop_b, b_stopped) = oneshot::channel();
    let b = run_member(&stream, "b", &handled, b_stopped);
    // Records keep coming until b has handled some: a gave partitions back while running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !handled.lock().expect("lock").iter().any(|(m, _)| *m == "b") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never got a partition"
        );
        send(8).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_a.send(());
    let report_a = a.await.expect("join").expect("a ran");
    let before = handled.lock().expect("lock").len();
    send(40).await;
    let total = sent;
    until(&handled, "every record is handled", |h| h.len() >= total).await;
    // A moment for a record handled twice to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_b.send(());
    let report_b = b.await.expect("join").expect("b ran");
    let handled = handled.lock().expect("lock").clone();
    let distinct: BTreeSet<Position> = handled.iter().map(|(_, p)| *p).collect();
    assert_eq!(distinct.len(), total, "every record handled");
    assert_eq!(handled.len(), total, "none handled twice");
    assert_eq!(
        report_a.handled + report_b.handled,
        total as u64,
        "the reports add up"
    );
    let after_a: BTreeSet<u32> = handled[before..]
        .iter()
        .map(|(m, p)| {
            assert_eq!(*m, "b", "a stopped: {p} went to b");
            p.partition
        })
        .collect();
    assert_eq!(after_a.len(), 4, "b took every partition: {after_a:?}");
}
