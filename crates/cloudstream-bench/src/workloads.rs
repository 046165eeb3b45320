//! The workloads, in the spirit of the OpenMessaging Benchmark, each the same for every
//! peer:
//! - (a) one partition, 100 B events, batches of 100 and 1,000, one producer;
//! - (b) 16 partitions, 1 KiB events, 4 producers of unkeyed batches of 100, 4 consumers;
//! - (c) single durable sends of 100 B from 8, 64 and 256 concurrent writers, 4 partitions;
//! - (d) end-to-end latency, send to consumer, at fixed rates (open loop: latency counts
//!   from when an event was due, so a peer that falls behind shows it);
//! - (e) reading back a stream of many events from the earliest, as fast as it goes.
//!
//! Producers and consumers run through warm-up, then a measured window; only what is
//! acknowledged (or read) within the window counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::measure::{Percentiles, Window};
use crate::peer::{Consumer, Peer, Producer};
use crate::report::{Report, Row};

/// How long and how much each workload runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    workloads: Vec<String>,
    warmup: Duration,
    window: Duration,
    batches: Vec<usize>,
    writers: Vec<usize>,
    rates: Vec<u64>,
    catch_up: u64,
}

impl Settings {
    /// The full run, `quick`, or `smoke`; only the workloads named (all if none).
    pub(crate) fn new(quick: bool, smoke: bool, only: &[String]) -> Result<Settings> {
        for w in only {
            ensure!(
                ["a", "b", "c", "d", "e"].contains(&w.as_str()),
                "no workload {w:?} (a to e)"
            );
        }
        let workloads = if only.is_empty() {
            ["a", "b", "c", "d", "e"].map(String::from).to_vec()
        } else {
            only.to_vec()
        };
        let ms = Duration::from_millis;
        Ok(if smoke {
            Settings {
                workloads,
                warmup: ms(100),
                window: ms(300),
                batches: vec![100],
                writers: vec![8],
                rates: vec![1_000],
                catch_up: 5_000,
            }
        } else if quick {
            Settings {
                workloads,
                warmup: ms(300),
                window: ms(1_500),
                batches: vec![100, 1_000],
                writers: vec![8, 64],
                rates: vec![1_000, 10_000],
                catch_up: 200_000,
            }
        } else {
            Settings {
                workloads,
                warmup: ms(1_000),
                window: ms(5_000),
                batches: vec![100, 1_000],
                writers: vec![8, 64, 256],
                rates: vec![1_000, 10_000, 50_000],
                catch_up: 10_000_000,
            }
        })
    }

    fn has(&self, workload: &str) -> bool {
        self.workloads.iter().any(|w| w == workload)
    }

    /// Whether `peer` runs `workload` in this run.
    fn runs(&self, peer: &dyn Peer, workload: &str) -> bool {
        self.has(workload) && peer.workloads().contains(workload)
    }
}

/// Every chosen workload on `peer`.
pub(crate) async fn run_all(peer: &dyn Peer, s: &Settings, report: &mut Report) -> Result<()> {
    if s.runs(peer, "a") {
        for &batch in &s.batches {
            batches(peer, s, report, batch).await?;
        }
    }
    if s.runs(peer, "b") {
        partitions(peer, s, report).await?;
    }
    if s.runs(peer, "c") {
        for &writers in &s.writers {
            singles(peer, s, report, writers).await?;
        }
    }
    if s.runs(peer, "d") && peer.follows() {
        for &rate in &s.rates {
            end_to_end(peer, s, report, rate).await?;
        }
    }
    if s.runs(peer, "e") {
        catch_up(peer, s, report).await?;
    }
    Ok(())
}

/// The instant payload times count from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A payload of `size` printable bytes, starting with `due` (ns since [`base`]) in hex.
fn payload(size: usize, due: Duration) -> Bytes {
    let mut text = format!("{:016x}-", due.as_nanos() as u64);
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text.truncate(size.max(17));
    Bytes::from(text)
}

/// When a payload made by [`payload`] was due.
fn due_of(payload: &[u8]) -> Option<Duration> {
    let hex = std::str::from_utf8(payload.get(..16)?).ok()?;
    u64::from_str_radix(hex, 16).ok().map(Duration::from_nanos)
}

/// A stream name of its own for each measurement.
fn stream_name(workload: &str, setting: impl std::fmt::Display) -> String {
    format!("bench-{workload}-{setting}").replace(' ', "-")
}

/// What one producer call sends.
#[derive(Debug, Clone)]
enum Send {
    One { size: usize, keyed: bool },
    Batch { size: usize, events: usize },
}

impl Send {
    fn events(&self) -> u64 {
        match self {
            Send::One { .. } => 1,
            Send::Batch { events, .. } => *events as u64,
        }
    }
}

/// What a closed-loop run acknowledged within its window.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    latencies: Vec<Duration>,
    /// Everything acknowledged, warm-up and stragglers included.
    all: u64,
    /// What consumers read within the window, where there were consumers.
    consumed: u64,
}

/// Runs every producer in a loop of `send` (each call waiting for its acknowledgement)
/// through the warm-up and the window; what was acknowledged within the window, and what the
/// peer used meanwhile.
async fn closed_loop(
    producers: Vec<Box<dyn Producer>>,
    send: Send,
    s: &Settings,
    pid: Option<u32>,
    consumed: Option<&AtomicU64>,
) -> Result<(Tally, crate::measure::Usage)> {
    let start = Instant::now() + s.warmup;
    let end = start + s.window;
    let tasks: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(i, mut producer)| {
            let send = send.clone();
            tokio::spawn(async move {
                let key = format!("w{i}");
                let mut tally = Tally::default();
                let (one, batch) = match send {
                    Send::One { size, .. } => (payload(size, Duration::ZERO), Vec::new()),
                    Send::Batch { size, events } => {
                        (Bytes::new(), vec![payload(size, Duration::ZERO); events])
                    }
                };
                while Instant::now() < end {
                    let began = Instant::now();
                    match send {
                        Send::One { keyed, .. } => {
                            producer
                                .send(keyed.then_some(key.as_str()), one.clone())
                                .await?
                        }
                        Send::Batch { .. } => producer.send_batch(None, batch.clone()).await?,
                    }
                    let done = Instant::now();
                    tally.all += send.events();
                    // Calls that end within the window: those cut at its start and at its end
                    // even out.
                    if done > start && done <= end {
                        tally.events += send.events();
                        tally.latencies.push(done - began);
                    }
                }
                Ok::<_, anyhow::Error>(tally)
            })
        })
        .collect();
    let read = || consumed.map_or(0, |c| c.load(Ordering::Relaxed));
    tokio::time::sleep_until(start.into()).await;
    let window = Window::start(pid);
    let read_before = read();
    tokio::time::sleep_until(end.into()).await;
    let usage = window.finish();
    let mut total = Tally {
        consumed: read() - read_before,
        ..Tally::default()
    };
    for task in tasks {
        let tally = task.await??;
        total.events += tally.events;
        total.all += tally.all;
        total.latencies.extend(tally.latencies);
    }
    Ok((total, usage))
}

/// A row from a closed-loop tally.
fn row(
    peer: &dyn Peer,
    workload: &'static str,
    setting: String,
    size: usize,
    tally: Tally,
    usage: crate::measure::Usage,
    s: &Settings,
) -> Row {
    let rate = tally.events as f64 / s.window.as_secs_f64();
    Row {
        workload,
        setting,
        peer: peer.name(),
        durability: peer.durability(),
        events: tally.events,
        events_per_s: rate,
        mb_per_s: rate * size as f64 / 1e6,
        latency: Percentiles::of(tally.latencies),
        usage,
        note: String::new(),
    }
}

/// Opens `n` producers to `stream`.
async fn producers(
    peer: &dyn Peer,
    stream: &str,
    partitions: u32,
    n: usize,
) -> Result<Vec<Box<dyn Producer>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(peer.producer(stream, partitions).await?);
    }
    Ok(out)
}

/// (a) One partition, 100 B events in batches of `batch`, one producer.
async fn batches(peer: &dyn Peer, s: &Settings, report: &mut Report, batch: usize) -> Result<()> {
    let stream = stream_name("a", batch);
    peer.create(&stream, 1).await?;
    let producers = producers(peer, &stream, 1, 1).await?;
    let (tally, usage) = closed_loop(
        producers,
        Send::Batch {
            size: 100,
            events: batch,
        },
        s,
        peer.pid(),
        None,
    )
    .await?;
    report.add(row(
        peer,
        "a",
        format!("batch {batch}"),
        100,
        tally,
        usage,
        s,
    ));
    Ok(())
}

/// (c) Single 100 B sends from `writers` concurrent writers, each keyed, 4 partitions.
async fn singles(peer: &dyn Peer, s: &Settings, report: &mut Report, writers: usize) -> Result<()> {
    let stream = stream_name("c", writers);
    peer.create(&stream, 4).await?;
    let producers = producers(peer, &stream, 4, writers).await?;
    let (tally, usage) = closed_loop(
        producers,
        Send::One {
            size: 100,
            keyed: true,
        },
        s,
        peer.pid(),
        None,
    )
    .await?;
    report.add(row(
        peer,
        "c",
        format!("{writers} writers"),
        100,
        tally,
        usage,
        s,
    ));
    Ok(())
}

/// Consumers counting what they read into `count` until told to stop; with `timed`
/// (`[from, until]`), each returns the end-to-end latencies of the events due then.
fn consumers(
    consumers: Vec<Box<dyn Consumer>>,
    count: &Arc<AtomicU64>,
    stop: &tokio::sync::watch::Receiver<bool>,
    timed: Option<(Duration, Duration)>,
) -> Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>> {
    consumers
        .into_iter()
        .map(|mut consumer| {
            let (stop, count) = (stop.clone(), Arc::clone(count));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !*stop.borrow() {
                    let payloads = consumer.poll().await?;
                    let now = base().elapsed();
                    if let Some((from, until)) = timed {
                        for p in &payloads {
                            if let Some(due) = due_of(p).filter(|d| (from..=until).contains(d)) {
                                latencies.push(now.saturating_sub(due));
                            }
                        }
                    }
                    count.fetch_add(payloads.len() as u64, Ordering::Relaxed);
                }
                Ok(latencies)
            })
        })
        .collect()
}

/// Waits until `count` reaches `total` (30 s at most), then stops the consumers; their
/// latencies, and how many events they read.
async fn drain(
    readers: Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>>,
    count: &AtomicU64,
    total: u64,
    stop: tokio::sync::watch::Sender<bool>,
) -> Result<(Vec<Duration>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(reader.await??);
    }
    Ok((latencies, count.load(Ordering::Relaxed)))
}

/// Opens the 4 consumers of (b) and (d), one per quarter of the partitions.
async fn four_consumers(
    peer: &dyn Peer,
    stream: &str,
    partitions: u32,
) -> Result<Vec<Box<dyn Consumer>>> {
    let mut out = Vec::new();
    for index in 0..4 {
        out.push(peer.consumer(stream, partitions, index, 4).await?);
    }
    Ok(out)
}

/// (b) 16 partitions, 1 KiB events, 4 producers of unkeyed batches of 100, 4 consumers
/// following; a row for what was produced and one for what was consumed.
async fn partitions(peer: &dyn Peer, s: &Settings, report: &mut Report) -> Result<()> {
    let stream = stream_name("b", "16");
    peer.create(&stream, 16).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let readers = if peer.follows() {
        consumers(
            four_consumers(peer, &stream, 16).await?,
            &count,
            &stopped,
            None,
        )
    } else {
        Vec::new()
    };
    let producers = producers(peer, &stream, 16, 4).await?;
    let watched = (!readers.is_empty()).then_some(count.as_ref());
    let (tally, usage) = closed_loop(
        producers,
        Send::Batch {
            size: 1024,
            events: 100,
        },
        s,
        peer.pid(),
        watched,
    )
    .await?;
    let (all, consumed) = (tally.all, tally.consumed);
    let mut consumed_row = row(
        peer,
        "b",
        "16 partitions, consume".into(),
        1024,
        Tally {
            events: consumed,
            ..Tally::default()
        },
        usage.clone(),
        s,
    );
    report.add(row(
        peer,
        "b",
        "16 partitions, produce".into(),
        1024,
        tally,
        usage,
        s,
    ));
    if readers.is_empty() {
        return Ok(());
    }
    let (_, read) = drain(readers, &count, all, stop).await?;
    ensure!(
        read >= all,
        "{}: consumers read {read} of {all} events within 30 s",
        peer.name()
    );
    consumed_row.note = "read while producing, same window".into();
    report.add(consumed_row);
    Ok(())
}

/// (d) End-to-end latency at `rate` events/s: 100 B events sent by 64 senders on a
/// schedule (event i due at start + i / rate), 4 partitions, 4 consumers; latency counts
/// from when an event was due to when a consumer has it.
async fn end_to_end(peer: &dyn Peer, s: &Settings, report: &mut Report, rate: u64) -> Result<()> {
    const SENDERS: u64 = 64;
    let stream = stream_name("d", rate);
    peer.create(&stream, 4).await?;
    // Events are due from `first` (a moment to set up), measured from `start` (after the
    // warm-up) to `until`.
    let first = base().elapsed() + Duration::from_millis(200);
    let start = first + s.warmup;
    let until = start + s.window;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let readers = consumers(
        four_consumers(peer, &stream, 4).await?,
        &count,
        &stopped,
        Some((start, until)),
    );
    let senders: Vec<_> = producers(peer, &stream, 4, SENDERS as usize)
        .await?
        .into_iter()
        .enumerate()
        .map(|(k, mut producer)| {
            tokio::spawn(async move {
                let key = format!("k{k}");
                let (mut i, mut sent) = (k as u64, 0u64);
                loop {
                    let due = first + Duration::from_nanos(i * 1_000_000_000 / rate);
                    if due > until {
                        return Ok::<_, anyhow::Error>(sent);
                    }
                    tokio::time::sleep_until((base() + due).into()).await;
                    producer.send(Some(&key), payload(100, due)).await?;
                    (i, sent) = (i + SENDERS, sent + 1);
                }
            })
        })
        .collect();
    tokio::time::sleep_until((base() + start).into()).await;
    let window = Window::start(peer.pid());
    tokio::time::sleep_until((base() + until).into()).await;
    let usage = window.finish();
    let mut sent = 0;
    for sender in senders {
        sent += sender.await??;
    }
    let (latencies, read) = drain(readers, &count, sent, stop).await?;
    let due = s.window.as_secs_f64() * rate as f64;
    let seen = latencies.len() as f64;
    let note = if seen < 0.95 * due || read < sent {
        format!("not sustained: {seen:.0} of {due:.0} events due in the window consumed; {read} of {sent} sent read within 30 s")
    } else {
        String::new()
    };
    report.add(Row {
        workload: "d",
        setting: format!("{rate} ev/s"),
        peer: peer.name(),
        durability: peer.durability(),
        events: latencies.len() as u64,
        events_per_s: seen / s.window.as_secs_f64(),
        mb_per_s: seen / s.window.as_secs_f64() * 100.0 / 1e6,
        latency: Percentiles::of(latencies),
        usage,
        note,
    });
    Ok(())
}

/// (e) Reading back a partition of many 100 B events from the earliest.
async fn catch_up(peer: &dyn Peer, s: &Settings, report: &mut Report) -> Result<()> {
    let events = peer
        .catch_up_cap()
        .map_or(s.catch_up, |cap| cap.min(s.catch_up));
    let stream = stream_name("e", events);
    peer.create(&stream, 1).await?;
    // The preload (not measured): 4 producers of batches of 1,000.
    let per = events.div_ceil(4000) * 1000;
    let loads: Vec<_> = producers(peer, &stream, 1, 4)
        .await?
        .into_iter()
        .map(|mut producer| {
            tokio::spawn(async move {
                let batch = vec![payload(100, Duration::ZERO); 1000];
                for _ in 0..per / 1000 {
                    producer.send_batch(None, batch.clone()).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for load in loads {
        load.await??;
    }
    let total = per * 4;
    let mut consumer = peer.consumer(&stream, 1, 0, 1).await?;
    let window = Window::start(peer.pid());
    let (mut read, mut idle) = (0u64, 0);
    while read < total {
        let n = consumer.poll().await?.len() as u64;
        read += n;
        idle = if n == 0 { idle + 1 } else { 0 };
        if idle > 10 {
            bail!(
                "{} read {read} of {total} events, then nothing",
                peer.name()
            );
        }
    }
    let usage = window.finish();
    let rate = read as f64 / usage.seconds;
    report.add(Row {
        workload: "e",
        setting: "read back".to_owned(),
        peer: peer.name(),
        durability: peer.durability(),
        events: read,
        events_per_s: rate,
        mb_per_s: rate * 100.0 / 1e6,
        latency: None,
        usage,
        note: format!("{total} events of 100 B"),
    });
    Ok(())
}
