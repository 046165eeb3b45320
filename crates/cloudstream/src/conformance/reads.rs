//! Deterministic reads, long-poll and tail (Stream-03).

use std::time::{Duration, SystemTime};

use super::{event, new_stream, subscribe_first};
use crate::backend::ReadOptions;
use crate::{Client, Error, Event, Position, ReadFrom, Sequence, StartAt};

/// Stream-03: the same start gives the same records; every start point means what it says.
pub async fn reads_are_deterministic(client: &Client) {
    let stream = new_stream(client, "determinism", 1).await;
    let caps = client.backend().capabilities();
    if !caps.replay_by_position {
        let refused = stream.read(ReadFrom::Earliest, 20).await;
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{refused:?}"
        );
        return;
    }
    let results = stream.send_batch((0..50).map(event).collect()).await;
    let receipts: Vec<Position> = results.into_iter().map(|r| r.expect("sent")).collect();
    let a = stream.read(ReadFrom::Earliest, 20).await.expect("read");
    let b = stream.read(ReadFrom::Earliest, 20).await.expect("read");
    assert_eq!(a, b);
    assert_eq!(a[0].position, receipts[0]);
    let at = stream
        .read(ReadFrom::At(receipts[10]), 5)
        .await
        .expect("read");
    assert_eq!(
        at.iter().map(|r| r.position).collect::<Vec<_>>(),
        receipts[10..15]
    );
    let after = stream
        .read(ReadFrom::After(receipts[10]), 5)
        .await
        .expect("read");
    assert_eq!(
        after.iter().map(|r| r.position).collect::<Vec<_>>(),
        receipts[11..16]
    );
    assert!(stream
        .read(ReadFrom::Latest, 5)
        .await
        .expect("read")
        .is_empty());
    let end = stream
        .read(ReadFrom::After(receipts[49]), 5)
        .await
        .expect("read at end");
    assert!(end.is_empty());
    if caps.replay_by_time {
        let t = a[0].append_time;
        let by_time = stream
            .read(ReadFrom::AtTime(t), 50)
            .await
            .expect("read by time");
        assert_eq!(by_time.first().map(|r| r.position), Some(receipts[0]));
        let future = stream
            .read(
                ReadFrom::AtTime(SystemTime::now() + Duration::from_secs(3600)),
                5,
            )
            .await;
        assert!(future.expect("read future time").is_empty());
    }
    if caps.dense_sequences {
        let past = receipts[49].sequence.as_u64().expect("dense") + 100;
        let beyond = stream.read(ReadFrom::At(Position::new(0, past)), 5).await;
        assert!(matches!(beyond, Err(Error::BeyondEnd { .. })), "{beyond:?}");
    }
    // Past the last possible sequence: an error where sequences are dense; where they are
    // not, a sequence the provider never issued (AWS refuses it, moto reads nothing).
    let last = stream
        .read(ReadFrom::After(Position::new(0, Sequence::MAX)), 5)
        .await;
    let refused = matches!(last, Err(Error::InvalidArgument(_)));
    let nothing = matches!(&last, Ok(r) if r.is_empty());
    assert!(refused || (!caps.dense_sequences && nothing), "{last:?}");
    let bad_partition = stream.read(ReadFrom::At(Position::new(7, 0)), 5).await;
    assert!(
        matches!(
            bad_partition,
            Err(Error::PartitionNotFound {
                partition: 7,
                partitions: 1,
                ..
            })
        ),
        "{bad_partition:?}"
    );
}

/// Long-poll reads and `tail` wake up when a record arrives.
pub async fn waits_wake_on_new_records(client: &Client) {
    let stream = new_stream(client, "wait", 2).await;
    if stream.backend().capabilities().replay_by_position {
        reads_and_tails_wake(&stream).await;
    }
    subscribe_first(&stream, "waiter").await;
    let consumer = stream
        .consumer("waiter")
        .start_at(StartAt::Latest)
        .wait(Duration::from_secs(10));
    assert!(consumer.positions().await.is_ok());
    let writer = stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.send(Event::new("later")).await.expect("send");
    });
    let batch = consumer.fetch().await.expect("fetch");
    assert_eq!(batch.len(), 1);
}

/// A long-poll read and `tail` wake up when a record arrives.
async fn reads_and_tails_wake(stream: &crate::Stream) {
    use futures::StreamExt;
    let mut tail = stream.tail(ReadFrom::Latest).await.expect("tail");
    let writer = stream.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .send(Event::new("late").with_key("k"))
            .await
            .expect("send")
    });
    let options = ReadOptions {
        wait: Some(Duration::from_secs(10)),
        ..ReadOptions::default()
    };
    let receipt = send.await.expect("join");
    let got = stream
        .read_with(receipt.partition, ReadFrom::Earliest, &options)
        .await;
    assert_eq!(got.expect("read").len(), 1);
    let tailed = tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("tail timed out");
    assert_eq!(tailed.expect("item").expect("record").position, receipt);
}
