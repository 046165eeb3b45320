//! Writes: single events, batches, limits, keys and partitions (Stream-02, -05, -07).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{event, keyed, new_stream, Witness};
use crate::{Client, Error, Event, Position, ReadFrom};

/// Stream-02: an event comes back exactly as sent, with its position and append time.
pub async fn send_and_read_back(client: &Client) {
    let stream = new_stream(client, "roundtrip", 1).await;
    let witness = Witness::new(&stream).await;
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let sent = Event::new(&b"\x00binary\xffpayload"[..])
        .with_key("device-1")
        .with_header("ce_type", "telemetry")
        .with_time(time);
    let before = SystemTime::now() - Duration::from_secs(1);
    let receipt = stream.send(sent.clone()).await.expect("send");
    let second = stream
        .send(
            Event::json(&serde_json::json!({"temp": 21.5}))
                .expect("json")
                .with_key("device-1"),
        )
        .await
        .expect("send");
    assert_eq!(receipt.partition, second.partition);
    if client.backend().capabilities().replay_by_position {
        assert!(
            second.sequence > receipt.sequence,
            "sequence strictly increases"
        );
    }
    let records = witness.all(receipt.partition, 2).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].position, receipt);
    assert_eq!(records[0].event, sent);
    assert!(records[0].append_time >= before);
    let value: serde_json::Value = records[1].json().expect("json payload");
    assert_eq!(value["temp"], 21.5);
}

/// Stream-05: batches return one result per event; a bad event fails alone.
pub async fn send_batch_has_per_event_results(client: &Client) {
    let stream = new_stream(client, "batch", 1).await;
    let witness = Witness::new(&stream).await;
    let caps = client.backend().capabilities();
    let max = caps.max_record_bytes;
    let mut events: Vec<Event> = (0..10).map(keyed).collect();
    events[4] = Event::new(vec![0u8; max + 1]);
    let results = stream.send_batch(events).await;
    assert_eq!(results.len(), 10);
    assert!(
        matches!(results[4], Err(Error::RecordTooLarge { .. })),
        "{:?}",
        results[4]
    );
    let receipts: Vec<Position> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(receipts.len(), 9);
    assert!(
        !caps.replay_by_position || receipts.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "batch order kept"
    );
    let records = witness.all(0, 9).await;
    let payloads: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
        .collect();
    let expected: Vec<String> = (0..10)
        .filter(|&i| i != 4)
        .map(|i| format!("event-{i}"))
        .collect();
    assert_eq!(payloads, expected);
    assert!(stream.send_batch(Vec::new()).await.is_empty());
    let single = stream.send(Event::new(vec![0u8; max + 1])).await;
    assert!(
        matches!(single, Err(Error::RecordTooLarge { .. })),
        "{single:?}"
    );
}

/// Batches larger than the provider's limits are split, in order, without loss.
pub async fn large_batches_are_split(client: &Client) {
    let stream = new_stream(client, "split", 1).await;
    let witness = Witness::new(&stream).await;
    let n = (client.backend().capabilities().max_batch_records + 7).min(20_000);
    let results = stream.send_batch((0..n).map(keyed).collect()).await;
    assert!(results.iter().all(Result::is_ok));
    let records = witness.all(0, n).await;
    assert_eq!(records.len(), n);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.event.headers.get("n").map(String::as_str),
            Some(i.to_string().as_str())
        );
    }
}

/// Stream-07: one key, one partition, in order; unkeyed events spread over partitions.
pub async fn keys_choose_partitions(client: &Client) {
    let stream = new_stream(client, "keys", 4).await;
    let witness = Witness::new(&stream).await;
    let mut events = Vec::new();
    for i in 0..40 {
        events.push(Event::new(format!("{i}")).with_key(format!("device-{}", i % 5)));
    }
    let receipts: Vec<Position> = stream
        .send_batch(events)
        .await
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect();
    let mut partition_of: BTreeMap<usize, u32> = BTreeMap::new();
    for (i, r) in receipts.iter().enumerate() {
        let p = *partition_of.entry(i % 5).or_insert(r.partition);
        assert_eq!(p, r.partition, "key device-{} moved partition", i % 5);
    }
    for p in 0..stream.partitions() {
        let expected = receipts.iter().filter(|r| r.partition == p).count();
        let records = witness.all(p, expected).await;
        assert_eq!(records.len(), expected);
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for r in records {
            let i: usize = String::from_utf8_lossy(r.payload())
                .parse()
                .expect("number");
            let key = r.event.key.clone().expect("key");
            if let Some(prev) = last.insert(key, i) {
                assert!(prev < i, "order within a key");
            }
        }
    }
    if stream.partitions() == 1 {
        return; // nothing to spread over
    }
    for i in 0..8 {
        stream.send(event(i)).await.expect("send");
    }
    let mut used = 0;
    for p in 0..stream.partitions() {
        let held = stream
            .read_partition(p, ReadFrom::Earliest, 1000)
            .await
            .expect("read");
        used += usize::from(held.iter().any(|r| r.event.key.is_none()));
    }
    assert!(used > 1, "unkeyed events spread");
}

/// An event over one of the backend's header limits (too many headers, a name too long)
/// fails alone in `send_batch`, with `InvalidArgument`, and the events written in the same
/// call are stored; where the backend has no such limit, the event is stored like any other.
pub async fn events_over_header_limits_fail_alone(client: &Client) {
    let stream = new_stream(client, "headers", 1).await;
    let caps = client.backend().capabilities();
    let long_name = (caps.max_header_name_bytes.min(65_535) + 1).min(caps.max_record_bytes / 2);
    let many = (caps.max_headers.min(65_535) + 1).min(caps.max_record_bytes / 16);
    let over_name = keyed(1).with_header("x".repeat(long_name), "v");
    let mut over_count = keyed(3);
    for i in 0..many {
        over_count = over_count.with_header(format!("h{i}"), "v");
    }
    let results = stream
        .send_batch(vec![keyed(0), over_name, keyed(2), over_count, keyed(4)])
        .await;
    for i in [0, 2, 4] {
        assert!(results[i].is_ok(), "event {i}: {:?}", results[i]);
    }
    for (i, limited) in [
        (1, long_name > caps.max_header_name_bytes),
        (3, many > caps.max_headers),
    ] {
        if limited {
            assert!(
                matches!(results[i], Err(Error::InvalidArgument(_))),
                "event {i}: {:?}",
                results[i]
            );
        } else {
            assert!(results[i].is_ok(), "event {i}: {:?}", results[i]);
        }
    }
}

/// An event sent again with the same id ([`Event::with_id`]) within the provider's
/// deduplication window is stored once: every copy, one by one, in a batch or sent at the
/// same time, answers with the first copy's position, and a read finds one record. A
/// CloudEvent's source and id count as its id. Where the provider does not deduplicate
/// (`dedup_window` is `None`), every copy is stored and carries its id.
pub async fn events_with_an_id_are_stored_once(client: &Client) {
    let stream = new_stream(client, "dedup", 2).await;
    let caps = client.backend().capabilities();
    let first = stream
        .send(event(0).with_id("order-1"))
        .await
        .expect("send");
    assert_eq!(Event::new("x").with_id("i").id(), Some("i"));
    let again = stream
        .send(event(1).with_id("order-1"))
        .await
        .expect("send again");
    let batch = stream
        .send_batch(vec![
            event(2).with_id("order-2"),
            event(3).with_id("order-1"),
            event(4).with_id("order-2"),
            event(5),
        ])
        .await;
    let positions: Vec<Position> = batch.into_iter().map(|r| r.expect("batch event")).collect();
    let same_time =
        futures::future::join_all((0..4).map(|i| stream.send(event(10 + i).with_id("order-3"))))
            .await;
    let same_time: Vec<Position> = same_time
        .into_iter()
        .map(|r| r.expect("concurrent send"))
        .collect();
    let cloud = |i: usize, id: &str| {
        event(i)
            .with_header("ce_source", "/devices/7")
            .with_header("ce_id", id)
    };
    let ce_first = stream.send(cloud(20, "e-1")).await.expect("cloudevent");
    let ce_again = stream
        .send(cloud(21, "e-1"))
        .await
        .expect("cloudevent again");
    let ce_other = stream.send(cloud(22, "e-2")).await.expect("another id");
    if caps.dedup_window.is_none() {
        assert_ne!(again, first, "every copy stored");
        assert_ne!(ce_again, ce_first, "every copy stored");
        return;
    }
    let mut stored = super::read_all(&stream, 0).await;
    stored.extend(super::read_all(&stream, 1).await);
    assert_eq!(again, first, "the first copy's position");
    assert_eq!(positions[1], first, "a copy in a batch");
    assert_eq!(positions[2], positions[0], "two copies in one batch");
    assert_ne!(positions[3], positions[0]);
    assert!(
        same_time.iter().all(|p| *p == same_time[0]),
        "copies sent at the same time: {same_time:?}"
    );
    assert_eq!(ce_again, ce_first, "a CloudEvent's source and id");
    assert_ne!(ce_other, ce_first);
    let payloads: Vec<&[u8]> = stored.iter().map(|r| &r.event.payload[..]).collect();
    assert_eq!(
        stored.len(),
        6,
        "one record per id, and the event without: {payloads:?}"
    );
}
