//! `on_event` and `on_batch` triggers: order, retries, dead letters, restarts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{event, keyed, new_stream, subscribe_first, Witness};
use crate::{dlq_headers, Client, Event, Record, RetryPolicy, StartAt, Stream};

/// Creates the dead-letter stream of `stream` and a witness of what reaches it.
async fn dead_letter_witness(client: &Client, stream: &Stream) -> Witness {
    let dlq = client
        .stream(&format!("{}.dlq", stream.name()))
        .horizon(Duration::from_secs(48 * 3600))
        .create()
        .await
        .expect("create dlq");
    Witness::new(&dlq).await
}

/// `on_event`: every record once, in order per partition, checkpoint moved.
pub async fn triggers_deliver_every_event_in_order(client: &Client) {
    let stream = new_stream(client, "trigger", 3).await;
    subscribe_first(&stream, "ReadAll").await;
    let n = 300;
    let events: Vec<Event> = (0..n)
        .map(|i| event(i).with_key(format!("k{}", i % 7)))
        .collect();
    stream.send_batch(events).await;
    let seen: Arc<Mutex<Vec<Record>>> = Arc::default();
    let sink = seen.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    let trigger = stream.on_event("ReadAll", move |record| {
        let (sink, done_tx) = (sink.clone(), done_tx.clone());
        async move {
            let mut seen = sink.lock().expect("lock");
            seen.push(record);
            if seen.len() == n {
                if let Some(tx) = done_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
            }
            Ok::<(), String>(())
        }
    });
    let shutdown = async move {
        let _ = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
    };
    let report = trigger
        .max_wait(Duration::from_millis(50))
        .run_until(shutdown)
        .await
        .expect("run");
    assert_eq!(report.handled, n as u64);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), n);
    for k in 0..7 {
        let key = format!("k{k}");
        let order: Vec<usize> = seen
            .iter()
            .filter(|r| r.event.key.as_deref() == Some(key.as_str()))
            .map(|r| r.event.headers["n"].parse().expect("n"))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order"
        );
    }
    let after = stream.consumer("ReadAll").fetch().await.expect("fetch");
    assert!(after.is_empty(), "trigger committed its checkpoint");
}

/// `on_event`: a failing record is retried, then dead-lettered with its error; the rest go on.
pub async fn triggers_retry_then_dead_letter(client: &Client) {
    let stream = new_stream(client, "dlq", 1).await;
    let dead_letters = dead_letter_witness(client, &stream).await;
    subscribe_first(&stream, "worker").await;
    let receipts = stream
        .send_batch(vec![
            Event::new("ok-1").with_key("p"),
            Event::new("poison").with_key("p"),
            Event::new("flaky").with_key("p"),
            Event::new("ok-2").with_key("p"),
        ])
        .await;
    let poison_at = receipts[1].as_ref().expect("sent").to_string();
    let flaky_failures = Arc::new(AtomicU32::new(0));
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let (h, f) = (handled.clone(), flaky_failures.clone());
    let trigger = stream
        .on_event("worker", move |record| {
            let (h, f) = (h.clone(), f.clone());
            async move {
                let body = String::from_utf8_lossy(record.payload()).into_owned();
                if body == "poison" {
                    return Err(format!("cannot handle {body}"));
                }
                if body == "flaky" && f.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err("transient".to_owned());
                }
                h.lock().expect("lock").push(body);
                Ok(())
            }
        })
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .max_wait(Duration::from_millis(50));
    let watched = handled.clone();
    let shutdown = async move {
        for _ in 0..600 {
            if watched.lock().expect("lock").len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let report = trigger.run_until(shutdown).await.expect("run");
    assert_eq!(
        *handled.lock().expect("lock"),
        vec!["ok-1", "flaky", "ok-2"]
    );
    assert_eq!(report.handled, 3);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.failed_attempts, 4, "3 for poison, 1 for flaky");
    let dead = dead_letters.all(0, 1).await;
    assert_eq!(dead.len(), 1);
    let headers = &dead[0].event.headers;
    assert_eq!(dead[0].payload().as_ref(), b"poison");
    assert_eq!(dead[0].event.key.as_deref(), Some("p"));
    assert_eq!(
        headers.get(dlq_headers::ERROR).map(String::as_str),
        Some("cannot handle poison")
    );
    assert_eq!(
        headers.get(dlq_headers::SOURCE_STREAM).map(String::as_str),
        Some(stream.name())
    );
    assert_eq!(
        headers
            .get(dlq_headers::SOURCE_POSITION)
            .map(String::as_str),
        Some(poison_at.as_str())
    );
    assert_eq!(
        headers.get(dlq_headers::ATTEMPTS).map(String::as_str),
        Some("3")
    );
    assert!(
        stream
            .consumer("worker")
            .fetch()
            .await
            .expect("fetch")
            .is_empty(),
        "checkpoint passed the dead letter"
    );
}

/// `on_batch`: batches of at most `batch_size`, in order, full when records are waiting, a
/// partial batch after `max_wait`, and a failing batch dead-lettered whole.
pub async fn batch_triggers_gather_and_dead_letter(client: &Client) {
    let stream = new_stream(client, "batches", 1).await;
    let dead_letters = dead_letter_witness(client, &stream).await;
    subscribe_first(&stream, "batcher").await;
    stream.send_batch((0..250).map(keyed).collect()).await;
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (sz, sn) = (sizes.clone(), seen.clone());
    let trigger = stream
        .on_batch("batcher", move |records| {
            let (sz, sn) = (sz.clone(), sn.clone());
            async move {
                if records.iter().any(|r| r.payload().as_ref() == b"poison") {
                    return Err("batch holds poison".to_owned());
                }
                sz.lock().expect("lock").push(records.len());
                sn.lock().expect("lock").extend(
                    records
                        .iter()
                        .map(|r| String::from_utf8_lossy(r.payload()).into_owned()),
                );
                Ok(())
            }
        })
        .batch_size(100)
        // Long enough that a provider pushing records (a loaded Pub/Sub emulator) does not
        // stall a gathering batch past it while records wait.
        .max_wait(Duration::from_millis(1000))
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        });
    let (writer, watched) = (stream.clone(), seen.clone());
    let shutdown = async move {
        let wait_for = |n: usize| {
            let watched = watched.clone();
            async move {
                for _ in 0..1000 {
                    if watched.lock().expect("lock").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        wait_for(250).await;
        writer
            .send_batch(vec![
                Event::new("poison").with_key("k"),
                Event::new("x").with_key("k"),
            ])
            .await;
        // Past the failing batch's max_wait, so "after" comes in a batch of its own.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        writer
            .send(Event::new("after").with_key("k"))
            .await
            .expect("send");
        wait_for(251).await;
    };
    let report = trigger.run_until(shutdown).await.expect("run");
    let sizes = sizes.lock().expect("lock").clone();
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(
        &sizes[..3],
        &[100, 100, 50],
        "full batches while records wait"
    );
    let seen = seen.lock().expect("lock").clone();
    let expected: Vec<String> = (0..250).map(|i| format!("event-{i}")).collect();
    assert_eq!(seen[..250], expected[..], "in order, once");
    assert_eq!(seen[250..], ["after"], "after the dead-lettered batch");
    assert_eq!(report.dead_lettered, 2, "the failing batch went whole");
    assert_eq!(dead_letters.all(0, 2).await.len(), 2);
}

/// A trigger starting at `Latest` pins that start: records sent while it is down are
/// delivered after a restart. A handler that panics before returning its future is a failed
/// attempt like any other, and the partition goes on.
pub async fn triggers_pin_their_start_and_survive_panics(client: &Client) {
    let stream = new_stream(client, "pin", 1).await;
    stream.send(Event::new("before")).await.expect("send");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = |stream: Stream, seen: Arc<Mutex<Vec<String>>>, until: usize| async move {
        let watched = seen.clone();
        let trigger = stream
            .on_event("pinned", move |record| {
                let body = String::from_utf8_lossy(record.payload()).into_owned();
                assert!(body != "panic", "handler panics before returning a future");
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push(body);
                    Ok::<(), String>(())
                }
            })
            .start_at(StartAt::Latest)
            .retry(RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            })
            .max_wait(Duration::from_millis(50));
        let shutdown = async move {
            for _ in 0..500 {
                if watched.lock().expect("lock").len() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        trigger.run_until(shutdown).await.expect("run")
    };
    run(stream.clone(), seen.clone(), 0).await;
    stream
        .send_batch(vec![
            Event::new("while-down").with_key("k"),
            Event::new("panic").with_key("k"),
            Event::new("after-panic").with_key("k"),
        ])
        .await;
    let report = run(stream.clone(), seen.clone(), 2).await;
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["while-down", "after-panic"]
    );
    assert_eq!(
        report.dead_lettered, 1,
        "the panicking record was dead-lettered"
    );
    assert_eq!(report.failed_attempts, 2);
}
