//! What `nats://` costs over the client it wraps, in one run against the same server:
//! `send_batch` of 100-byte events against plain async-nats publishes of the same count in
//! flight, each with a `Nats-Msg-Id` as `nats://` sends (so both are deduplicated alike),
//! and a catch-up read against a plain pull consumer fetching as many per call.
//!
//! ```text
//! scripts/servers.sh start
//! cargo bench -p cloudstream --features nats,conformance --bench nats_overhead -- [EVENTS] [BATCH] [ROUNDS]
//! ```
//!
//! Each round runs the plain client and cloudstream one after the other (alternating which
//! goes first) on fresh streams of one partition; the figures are the medians over the
//! rounds, and the ratios are cloudstream's over the plain client's.

mod common;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream;
use cloudstream::conformance::unique_name;
use common::{arg, catch_up, median, send_batches};
use futures::StreamExt;

fn server() -> String {
    std::env::var("CLOUDSTREAM_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4232".to_owned())
}

/// Publishes of a batch all in flight, then every acknowledgement awaited, batch after batch.
async fn plain_send(
    js: &async_nats::jetstream::Context,
    subject: &str,
    events: usize,
    batch: usize,
) -> f64 {
    let payload = bytes::Bytes::from(vec![b'x'; 100]);
    let started = Instant::now();
    for chunk in 0..events.div_ceil(batch) {
        let n = batch.min(events - chunk * batch);
        let mut acks = Vec::with_capacity(n);
        for i in 0..n {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("plain-{chunk}-{i}").as_str());
            acks.push(
                js.publish_with_headers(subject.to_owned(), headers, payload.clone())
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.into_future().await.expect("ack");
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// A pull consumer from the start, fetching 10,000 at a time until it has every message.
async fn plain_read(stream: &stream::Stream, events: usize) -> f64 {
    let started = Instant::now();
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut seen = 0;
    while seen < events {
        let mut batch = consumer
            .fetch()
            .max_messages(10_000)
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            std::hint::black_box(m.expect("message").payload.len());
            seen += 1;
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events = arg(0, 50_000);
    let batch = arg(1, 500);
    let rounds = arg(2, 5);
    let client = cloudstream::open(&server()).await.expect("open nats://");
    let nats = async_nats::connect(server()).await.expect("connect");
    let js = async_nats::jetstream::new(nats);
    let (mut plain_sends, mut ours_sends, mut plain_reads, mut ours_reads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain_name = unique_name("bench-plain");
        let plain = js
            .create_stream(stream::Config {
                name: plain_name.clone(),
                subjects: vec![format!("{plain_name}.0")],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(3600),
                ..Default::default()
            })
            .await
            .expect("plain stream");
        let ours = client
            .stream(&unique_name("bench-ours"))
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");
        let ours_send = send_batches(&ours, events, batch);
        let subject = format!("{plain_name}.0");
        if round % 2 == 1 {
            ours_sends.push(ours_send.await);
            plain_sends.push(plain_send(&js, &subject, events, batch).await);
        } else {
            plain_sends.push(plain_send(&js, &subject, events, batch).await);
            ours_sends.push(ours_send.await);
        }
        let ours_read = catch_up(&ours, events);
        if round % 2 == 1 {
            ours_reads.push(ours_read.await);
            plain_reads.push(plain_read(&plain, events).await);
        } else {
            plain_reads.push(plain_read(&plain, events).await);
            ours_reads.push(ours_read.await);
        }
        eprintln!(
            "round {round}: send plain {:.0}/s ours {:.0}/s; read plain {:.0}/s ours {:.0}/s",
            plain_sends[round], ours_sends[round], plain_reads[round], ours_reads[round]
        );
        client.delete_stream(ours.name()).await.expect("delete");
        js.delete_stream(&plain_name).await.expect("delete plain");
    }
    let (ps, os, pr, or) = (
        median(plain_sends),
        median(ours_sends),
        median(plain_reads),
        median(ours_reads),
    );
    println!(
        "nats overhead, {events} events of 100 B, batches of {batch}, median of {rounds} rounds:"
    );
    println!(
        "send_batch: plain {ps:.0}/s, nats:// {os:.0}/s, ratio {:.2}",
        os / ps
    );
    println!(
        "catch-up read: plain {pr:.0}/s, nats:// {or:.0}/s, ratio {:.2}",
        or / pr
    );
}
