//! Named consumers with implicit checkpoints (Stream-04).

use super::{event, new_stream};
use crate::{Client, Error, StartAt};

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
    let dense = client.backend().capabilities().dense_sequences;
    assert_eq!(
        me.lag,
        dense.then_some(0),
        "lag is known where sequences are dense"
    );
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
