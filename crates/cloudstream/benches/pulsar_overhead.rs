//! What `pulsar://` costs over the client it wraps, in one run against the same broker:
//! `send_batch` of 100-byte events against plain `pulsar` crate sends of the same count in
//! flight (batching off, as `pulsar://` sends), and a catch-up read against a plain consumer
//! from the oldest message.
//!
//! ```text
//! scripts/servers.sh start
//! cargo bench -p cloudstream --features pulsar,conformance --bench pulsar_overhead -- [EVENTS] [BATCH] [ROUNDS]
//! ```
//!
//! Each round runs the plain client and cloudstream one after the other (alternating which
//! goes first) on fresh topics and streams of one partition; the figures are the medians
//! over the rounds, and the ratios are cloudstream's over the plain client's.

mod common;

use std::time::{Duration, Instant};

use cloudstream::conformance::unique_name;
use common::{arg, catch_up, median, send_batches};
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};

fn server() -> String {
    std::env::var("CLOUDSTREAM_PULSAR")
        .unwrap_or_else(|_| "pulsar://127.0.0.1:6652?retention=broker".to_owned())
}

/// Sends of a batch all in flight, then every receipt awaited, batch after batch.
async fn plain_send(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    events: usize,
    batch: usize,
) -> f64 {
    let mut producer = client
        .producer()
        .with_topic(topic)
        .build()
        .await
        .expect("producer");
    let started = Instant::now();
    for chunk in 0..events.div_ceil(batch) {
        let n = batch.min(events - chunk * batch);
        let mut receipts = Vec::with_capacity(n);
        for _ in 0..n {
            receipts.push(
                producer
                    .send_non_blocking(vec![b'x'; 100])
                    .await
                    .expect("send"),
            );
        }
        for receipt in receipts {
            receipt.await.expect("receipt");
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// A consumer from the oldest message until it has every one.
async fn plain_read(client: &Pulsar<TokioExecutor>, topic: &str, events: usize) -> f64 {
    let started = Instant::now();
    let mut consumer: pulsar::Consumer<Vec<u8>, TokioExecutor> = client
        .consumer()
        .with_topic(topic)
        .with_subscription(unique_name("bench-read"))
        .with_subscription_type(SubType::Exclusive)
        .with_consumer_id(rand::random())
        .with_options(
            ConsumerOptions::default()
                .durable(false)
                .with_initial_position(InitialPosition::Earliest),
        )
        .build()
        .await
        .expect("consumer");
    let mut seen = 0;
    while seen < events {
        let m = consumer.next().await.expect("open").expect("message");
        std::hint::black_box(m.payload.data.len());
        seen += 1;
    }
    let _ = consumer.unsubscribe().await;
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events = arg(0, 50_000);
    let batch = arg(1, 500);
    let rounds = arg(2, 5);
    let client = cloudstream::open(&server()).await.expect("open pulsar://");
    let address = server().split('?').next().unwrap_or_default().to_owned();
    let plain = Pulsar::builder(address, TokioExecutor)
        .with_outbound_channel_size(2 * batch)
        .build()
        .await
        .expect("connect");
    let (mut plain_sends, mut ours_sends, mut plain_reads, mut ours_reads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let topic = format!("persistent://public/default/{}", unique_name("bench-plain"));
        let ours = client
            .stream(&unique_name("bench-ours"))
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");
        let ours_send = send_batches(&ours, events, batch);
        if round % 2 == 1 {
            ours_sends.push(ours_send.await);
            plain_sends.push(plain_send(&plain, &topic, events, batch).await);
        } else {
            plain_sends.push(plain_send(&plain, &topic, events, batch).await);
            ours_sends.push(ours_send.await);
        }
        let ours_read = catch_up(&ours, events);
        if round % 2 == 1 {
            ours_reads.push(ours_read.await);
            plain_reads.push(plain_read(&plain, &topic, events).await);
        } else {
            plain_reads.push(plain_read(&plain, &topic, events).await);
            ours_reads.push(ours_read.await);
        }
        eprintln!(
            "round {round}: send plain {:.0}/s ours {:.0}/s; read plain {:.0}/s ours {:.0}/s",
            plain_sends[round], ours_sends[round], plain_reads[round], ours_reads[round]
        );
        client.delete_stream(ours.name()).await.expect("delete");
    }
    let (ps, os, pr, or) = (
        median(plain_sends),
        median(ours_sends),
        median(plain_reads),
        median(ours_reads),
    );
    println!(
        "pulsar overhead, {events} events of 100 B, batches of {batch}, median of {rounds} rounds:"
    );
    println!(
        "send_batch: plain {ps:.0}/s, pulsar:// {os:.0}/s, ratio {:.2}",
        os / ps
    );
    println!(
        "catch-up read: plain {pr:.0}/s, pulsar:// {or:.0}/s, ratio {:.2}",
        or / pr
    );
}
