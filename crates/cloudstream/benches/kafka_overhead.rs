//! What `kafka://` costs over the client it wraps, in one run against the same broker:
//! `send_batch` of 100-byte events against a plain `rdkafka` producer with the same
//! settings and batch size, and a catch-up read against a plain `rdkafka` consumer.
//!
//! ```text
//! scripts/servers.sh start
//! cargo bench -p cloudstream --features kafka --bench kafka_overhead -- [EVENTS] [BATCH] [ROUNDS]
//! ```
//!
//! Each round runs the plain client and cloudstream one after the other on fresh topics of
//! one partition; the figures are the medians over the rounds, and the ratios are
//! cloudstream's over the plain client's.

mod common;

use std::time::{Duration, Instant};

use cloudstream::backend::ReadOptions;
use cloudstream::conformance::unique_name;
use cloudstream::{Event, ReadFrom};
use common::{arg, median};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn broker() -> String {
    std::env::var("CLOUDSTREAM_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Plain librdkafka with the same producer settings as `kafka://` (idempotent,
/// `acks=all`), made once and kept, as the backend keeps its own.
fn plain_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// A batch's records queued, then every delivery awaited, batch after batch.
async fn plain_produce(
    producer: &FutureProducer,
    topic: &str,
    events: usize,
    batch: usize,
) -> Duration {
    let payload = [b'x'; 100];
    let started = Instant::now();
    for chunk in 0..events.div_ceil(batch) {
        let n = batch.min(events - chunk * batch);
        let mut deliveries = Vec::with_capacity(n);
        for _ in 0..n {
            let record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).partition(0).payload(&payload[..]);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("queued"),
            );
        }
        for d in futures::future::join_all(deliveries).await {
            d.expect("delivered").map_err(|(e, _)| e).expect("stored");
        }
    }
    started.elapsed()
}

/// Plain librdkafka: a consumer with the prefetch of `kafka://`'s readers, made once.
fn plain_consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "8192")
        .create()
        .expect("consumer")
}

/// The consumer assigned to the partition from offset 0, polled until it has every record.
fn plain_consume(consumer: &BaseConsumer, topic: &str, events: usize) -> Duration {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    let started = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let mut seen = 0;
    while seen < events {
        if let Some(m) = consumer.poll(Duration::from_secs(10)) {
            let m = m.expect("message");
            std::hint::black_box(m.payload());
            seen += 1;
        }
    }
    let took = started.elapsed();
    // Nothing may fetch from the topic once the round deletes it (see tests/kafka.rs).
    consumer.unassign().expect("unassign");
    took
}

#[tokio::main]
async fn main() {
    let events = arg(0, 200_000);
    let batch = arg(1, 1000);
    let rounds = arg(2, 3);
    let client = cloudstream::open(&format!("kafka://{}", broker()))
        .await
        .expect("open kafka://");
    let producer = plain_producer();
    let consumer = std::sync::Arc::new(plain_consumer());
    let mut made = Vec::new();
    let (mut plain_send, mut ours_send, mut plain_read, mut ours_read) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain_topic = unique_name("bench-plain");
        let stream = client
            .stream(&unique_name("bench-ours"))
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");
        client
            .stream(&plain_topic)
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");

        // Odd rounds run cloudstream first, so neither side always meets the broker fresh.
        let ours_first = round % 2 == 1;
        if !ours_first {
            let t = plain_produce(&producer, &plain_topic, events, batch).await;
            plain_send.push(events as f64 / t.as_secs_f64());
        }
        let started = Instant::now();
        for chunk in 0..events.div_ceil(batch) {
            let n = batch.min(events - chunk * batch);
            let batch: Vec<Event> = (0..n).map(|_| Event::new(vec![b'x'; 100])).collect();
            let results = stream.send_batch(batch).await;
            assert!(results.iter().all(Result::is_ok), "send_batch failed");
        }
        ours_send.push(events as f64 / started.elapsed().as_secs_f64());
        if ours_first {
            let t = plain_produce(&producer, &plain_topic, events, batch).await;
            plain_send.push(events as f64 / t.as_secs_f64());
        }

        let plain_read_once = |topic: String| {
            let consumer = consumer.clone();
            async move {
                let t =
                    tokio::task::spawn_blocking(move || plain_consume(&consumer, &topic, events))
                        .await
                        .expect("join");
                events as f64 / t.as_secs_f64()
            }
        };
        if !ours_first {
            plain_read.push(plain_read_once(plain_topic.clone()).await);
        }
        let options = ReadOptions {
            max_records: 10_000,
            ..ReadOptions::default()
        };
        let started = Instant::now();
        let mut next = ReadFrom::Earliest;
        let mut seen = 0;
        while seen < events {
            let records = stream.read_with(0, next, &options).await.expect("read");
            if let Some(last) = records.last() {
                next = ReadFrom::After(last.position);
            }
            seen += records.len();
            std::hint::black_box(&records);
        }
        ours_read.push(events as f64 / started.elapsed().as_secs_f64());
        if ours_first {
            plain_read.push(plain_read_once(plain_topic.clone()).await);
        }
        eprintln!(
            "round {round}: send plain {:.0}/s ours {:.0}/s; read plain {:.0}/s ours {:.0}/s",
            plain_send[round], ours_send[round], plain_read[round], ours_read[round]
        );
        made.push((stream.name().to_owned(), plain_topic));
    }
    // The topics go at the end, by a client that reads nothing, once every reader is closed:
    // tansu answers fetches with "unknown topic" while it deletes one, and librdkafka 2.12
    // crashes on that answer (see tests/kafka.rs).
    drop(producer);
    drop(consumer);
    drop(client);
    let cleaner = cloudstream::open(&format!("kafka://{}", broker()))
        .await
        .expect("open kafka://");
    for (ours, plain) in &made {
        let _ = cleaner.backend().delete_stream(ours).await;
        let _ = cleaner.backend().delete_stream(plain).await;
    }
    let (ps, os, pr, or) = (
        median(plain_send),
        median(ours_send),
        median(plain_read),
        median(ours_read),
    );
    println!("| work | plain rdkafka | kafka:// | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| send_batch, {batch} × 100 B, {events} events | {ps:.0} events/s | {os:.0} events/s | {:.2} |",
        os / ps
    );
    println!(
        "| catch-up read, {events} events | {pr:.0} events/s | {or:.0} events/s | {:.2} |",
        or / pr
    );
}
