//! What `redis://` costs over the client it wraps, in one run against the same server:
//! `send_batch` of 100-byte events against a plain redis-rs pipeline of `XADD`s of the same
//! size, and a catch-up read against plain `XRANGE` calls of the same count.
//!
//! ```text
//! scripts/servers.sh start
//! cargo bench -p cloudstream --features redis,conformance --bench redis_overhead -- [EVENTS] [BATCH] [ROUNDS]
//! ```
//!
//! Each round runs the plain client and cloudstream one after the other (alternating which
//! goes first) on fresh streams of one partition; the figures are the medians over the
//! rounds, and the ratios are cloudstream's over the plain client's.

mod common;

use std::time::{Duration, Instant};

use cloudstream::conformance::unique_name;
use common::{arg, catch_up, median, send_batches};
use redis::aio::MultiplexedConnection;
use redis::Value;

fn server() -> String {
    std::env::var("CLOUDSTREAM_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6390".to_owned())
}

/// A pipeline of `XADD`s per batch, batch after batch.
async fn plain_send(
    conn: &mut MultiplexedConnection,
    key: &str,
    events: usize,
    batch: usize,
) -> f64 {
    let payload = [b'x'; 100];
    let started = Instant::now();
    for chunk in 0..events.div_ceil(batch) {
        let n = batch.min(events - chunk * batch);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("p")
                .arg(&payload[..]);
        }
        let ids: Vec<String> = pipe.query_async(conn).await.expect("xadd");
        assert_eq!(ids.len(), n);
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// `XRANGE` of 10,000 entries at a time from the start, until every entry is read.
async fn plain_read(conn: &mut MultiplexedConnection, key: &str, events: usize) -> f64 {
    let started = Instant::now();
    let (mut from, mut seen) = ("-".to_owned(), 0);
    while seen < events {
        let reply: Vec<(String, Vec<(String, Value)>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await
            .expect("xrange");
        let Some((last, _)) = reply.last() else { break };
        from = format!("({last}");
        seen += reply.len();
        std::hint::black_box(&reply);
    }
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events = arg(0, 100_000);
    let batch = arg(1, 500);
    let rounds = arg(2, 5);
    let client = cloudstream::open(&server()).await.expect("open redis://");
    let mut conn = redis::Client::open(server().as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let (mut plain_sends, mut ours_sends, mut plain_reads, mut ours_reads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let key = unique_name("bench-plain");
        let stream = client
            .stream(&unique_name("bench-ours"))
            .horizon(Duration::from_secs(3600))
            .create()
            .await
            .expect("create");
        let ours_send = send_batches(&stream, events, batch);
        let ours_first = round % 2 == 1;
        if ours_first {
            ours_sends.push(ours_send.await);
            plain_sends.push(plain_send(&mut conn, &key, events, batch).await);
        } else {
            plain_sends.push(plain_send(&mut conn, &key, events, batch).await);
            ours_sends.push(ours_send.await);
        }
        let ours_read = catch_up(&stream, events);
        if ours_first {
            ours_reads.push(ours_read.await);
            plain_reads.push(plain_read(&mut conn, &key, events).await);
        } else {
            plain_reads.push(plain_read(&mut conn, &key, events).await);
            ours_reads.push(ours_read.await);
        }
        eprintln!(
            "round {round}: send plain {:.0}/s ours {:.0}/s; read plain {:.0}/s ours {:.0}/s",
            plain_sends[round], ours_sends[round], plain_reads[round], ours_reads[round]
        );
        client.delete_stream(stream.name()).await.expect("delete");
        let _: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
    let (ps, os, pr, or) = (
        median(plain_sends),
        median(ours_sends),
        median(plain_reads),
        median(ours_reads),
    );
    println!(
        "redis overhead, {events} events of 100 B, batches of {batch}, median of {rounds} rounds:"
    );
    println!(
        "send_batch: plain {ps:.0}/s, redis:// {os:.0}/s, ratio {:.2}",
        os / ps
    );
    println!(
        "catch-up read: plain {pr:.0}/s, redis:// {or:.0}/s, ratio {:.2}",
        or / pr
    );
}
