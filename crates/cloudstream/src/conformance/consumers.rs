//! Named consumers with implicit checkpoints (Stream-04).

use std::time::Duration;

use super::{event, new_stream, subscribe_first};
use crate::{Client, Error, StartAt};

/// Stream-04: fetching the next batch commits the previous one; names are independent;
/// checkpoints are durable across handles.
pub async fn consumers_checkpoint_implicitly(client: &Client) {
    let stream = new_stream(client, "consumer", 2).await;
    subscribe_first(&stream, "telemetry-reader").await;
    subscribe_first(&stream, "other").await;
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
    // Lag is known where sequences are dense; elsewhere it may be (Redis counts it), and
    // where it is, it is right.
    let dense = client.backend().capabilities().dense_sequences;
    match me.lag {
        None => assert!(!dense, "lag is known where sequences are dense"),
        Some(lag) => assert_eq!(lag, 0, "everything was committed"),
    }
    // Another name starts from the beginning.
    let other = stream.consumer("other").max_records(1000);
    let mut from_start = 0;
    loop {
        let batch = other.fetch().await.expect("fetch");
        if batch.is_empty() {
            break;
        }
        from_start += batch.len();
    }
    assert_eq!(from_start, 30);
    // A consumer starting at Latest sees only new records.
    let late = stream
        .consumer("late")
        .start_at(StartAt::Latest)
        .wait(Duration::from_secs(3));
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

/// Consumer groups: members share the partitions through leases, never read the same
/// partition at once, and a member that stops renewing loses its partitions, whose
/// uncommitted records go to the member that takes them over.
pub async fn consumer_groups_share_partitions_through_leases(client: &Client) {
    let stream = new_stream(client, "group", 4).await;
    let keyed = |i: usize| event(i).with_key(format!("device-{i}"));
    stream.send_batch((0..40).map(keyed).collect()).await;
    if !client.backend().capabilities().leases {
        let refused = stream.consumer("g").member("a").fetch().await;
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{refused:?}"
        );
        return;
    }
    // Long enough for a fetch from a slow broker (a first read on tansu takes ~0.6 s a
    // partition) to finish well within it.
    let ttl = Duration::from_secs(3);
    let member = |id: &str| {
        stream
            .consumer("g")
            .member(id)
            .lease_ttl(ttl)
            .max_records(1000)
    };
    let a = member("a");
    let alone = a.fetch().await.expect("fetch");
    assert_eq!(alone.len(), 40, "a lone member reads every partition");
    assert_eq!(a.positions().await.expect("positions").len(), 4);
    let b = member("b");
    assert!(
        b.fetch().await.expect("fetch").is_empty(),
        "every partition is leased to a"
    );
    // a commits, sees two members, and gives back the partitions above its fair share.
    assert!(a.fetch().await.expect("fetch").is_empty());
    assert!(
        b.fetch().await.expect("fetch").is_empty(),
        "b resumes at a's checkpoint"
    );
    let (held_a, held_b) = (
        a.positions().await.expect("positions"),
        b.positions().await.expect("positions"),
    );
    assert_eq!(
        (held_a.len(), held_b.len()),
        (2, 2),
        "{held_a:?} {held_b:?}"
    );
    assert!(held_a.keys().all(|p| !held_b.contains_key(p)), "disjoint");
    stream.send_batch((40..80).map(keyed).collect()).await;
    let (got_a, got_b) = (
        a.fetch().await.expect("fetch"),
        b.fetch().await.expect("fetch"),
    );
    let mut seen: Vec<_> = got_a
        .iter()
        .chain(got_b.iter())
        .map(|r| r.position)
        .collect();
    assert_eq!(
        seen.len(),
        40,
        "each new record to exactly one member: a {} from {:?}, b {} from {:?}",
        got_a.len(),
        held_a.keys(),
        got_b.len(),
        held_b.keys()
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40);
    assert!(got_a
        .iter()
        .all(|r| held_a.contains_key(&r.position.partition)));
    // b stops without committing: once its leases expire, a takes its partitions over and
    // gets b's uncommitted records again.
    let uncommitted: Vec<_> = got_b.iter().map(|r| r.position).collect();
    drop(b);
    a.commit().await.expect("commit");
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let taken_over = a.fetch().await.expect("fetch");
    assert_eq!(a.positions().await.expect("positions").len(), 4);
    let again: Vec<_> = taken_over.iter().map(|r| r.position).collect();
    assert_eq!(again.len(), uncommitted.len(), "b's batch redelivered");
    assert!(uncommitted.iter().all(|p| again.contains(p)));
}
