//! What the workloads share: payloads that carry when they were due, producers driven in a
//! closed loop through a warm-up and a measured window, and consumers counting what they
//! read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;

use super::Settings;
use crate::measure::{Usage, Window};
use crate::peer::{Consumer, Peer, Producer};

/// The longest any one call may take before the run gives up on the peer.
pub(super) const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The instant payload times count from.
pub(super) fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A payload of `size` printable bytes, starting with `due` (ns since [`base`]) in hex.
pub(super) fn payload(size: usize, due: Duration) -> Bytes {
    let mut text = format!("{:016x}-", due.as_nanos() as u64);
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text.truncate(size.max(17));
    Bytes::from(text)
}

/// When a payload made by [`payload`] was due.
pub(super) fn due_of(payload: &[u8]) -> Option<Duration> {
    let hex = std::str::from_utf8(payload.get(..16)?).ok()?;
    u64::from_str_radix(hex, 16).ok().map(Duration::from_nanos)
}

/// A stream name of its own for each measurement.
pub(super) fn stream_name(workload: &str, setting: impl std::fmt::Display) -> String {
    format!("bench-{workload}-{setting}").replace(' ', "-")
}

/// Runs `call` with the harness's limit on one call.
pub(super) async fn limited<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .with_context(|| format!("{what} took over {} s", CALL_LIMIT.as_secs()))?
}

/// What one producer call sends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Call {
    /// One event of `size` bytes, keyed by its producer or not.
    One { size: usize, keyed: bool },
    /// A batch of `events` unkeyed events of `size` bytes.
    Batch { size: usize, events: usize },
}

impl Call {
    /// Bytes per event.
    pub(super) fn size(self) -> usize {
        match self {
            Call::One { size, .. } | Call::Batch { size, .. } => size,
        }
    }

    fn events(self) -> u64 {
        match self {
            Call::One { .. } => 1,
            Call::Batch { events, .. } => events as u64,
        }
    }
}

/// What a closed-loop run did.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Events acknowledged within the window (a call across one of its edges counts in
    /// proportion to its time inside).
    pub(super) events: u64,
    /// Each call's latency, for calls that ended within the window.
    pub(super) latencies: Vec<Duration>,
    /// Every event acknowledged, warm-up included: what consumers must end up reading.
    pub(super) acknowledged: u64,
    /// What the consumers read within the window, where there were consumers.
    pub(super) consumed: u64,
    /// What the peer used during the window.
    pub(super) usage: Usage,
}

/// Runs every producer in a loop of `call` (each waiting for its acknowledgement) through
/// the warm-up and the window.
pub(super) async fn closed_loop(
    producers: Vec<Box<dyn Producer>>,
    call: Call,
    s: &Settings,
    pid: Option<u32>,
    consumed: Option<&AtomicU64>,
) -> Result<Tally> {
    let start = Instant::now() + s.warmup;
    let end = start + s.window;
    let tasks: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(i, mut producer)| {
            tokio::spawn(async move {
                let key = format!("w{i}");
                let (mut inside, mut acknowledged, mut latencies) = (0.0f64, 0u64, Vec::new());
                let (one, batch) = match call {
                    Call::One { size, .. } => (payload(size, Duration::ZERO), Vec::new()),
                    Call::Batch { size, events } => {
                        (Bytes::new(), vec![payload(size, Duration::ZERO); events])
                    }
                };
                while Instant::now() < end {
                    let began = Instant::now();
                    match call {
                        Call::One { keyed, .. } => {
                            limited(
                                "a send",
                                producer.send(keyed.then_some(key.as_str()), one.clone()),
                            )
                            .await?
                        }
                        Call::Batch { .. } => {
                            limited("a batch", producer.send_batch(None, batch.clone())).await?
                        }
                    }
                    let done = Instant::now();
                    acknowledged += call.events();
                    let overlap = done.min(end).saturating_duration_since(began.max(start));
                    let took = done - began;
                    if !overlap.is_zero() {
                        inside += call.events() as f64 * overlap.as_secs_f64()
                            / took.as_secs_f64().max(1e-9);
                    }
                    if done > start && done <= end {
                        latencies.push(took);
                    }
                }
                Ok::<_, anyhow::Error>((inside, acknowledged, latencies))
            })
        })
        .collect();
    let read = || consumed.map_or(0, |c| c.load(Ordering::Relaxed));
    tokio::time::sleep_until(start.into()).await;
    let window = Window::start(pid);
    let read_before = read();
    tokio::time::sleep_until(end.into()).await;
    let usage = window.finish();
    let mut tally = Tally {
        consumed: read() - read_before,
        usage,
        ..Tally::default()
    };
    let mut inside = 0.0;
    for task in tasks {
        let (events, acknowledged, latencies) = task.await??;
        inside += events;
        tally.acknowledged += acknowledged;
        tally.latencies.extend(latencies);
    }
    tally.events = inside.round() as u64;
    Ok(tally)
}

/// Opens `n` producers to `stream`.
pub(super) async fn producers(
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

/// Consumers of a stream, counting what they read, stopped when dropped.
pub(super) struct Readers {
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>>,
    /// Events read so far, by all of them.
    pub(super) count: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Readers {
    /// Four consumers of `stream`, one per quarter of its partitions, following it from
    /// the earliest; with `timed` (`[from, until]`), they keep the end-to-end latency of
    /// every event due then.
    pub(super) async fn four(
        peer: &dyn Peer,
        stream: &str,
        partitions: u32,
        timed: Option<(Duration, Duration)>,
    ) -> Result<Readers> {
        let count = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for index in 0..4 {
            let mut consumer: Box<dyn Consumer> =
                peer.consumer(stream, partitions, index, 4).await?;
            let (stopped, count) = (stopped.clone(), Arc::clone(&count));
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !*stopped.borrow() {
                    let payloads = limited("a read", consumer.poll()).await?;
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
            }));
        }
        Ok(Readers { tasks, count, stop })
    }

    /// Waits until they have read `total` events (30 s at most), then stops them; their
    /// latencies, and how many events they read.
    pub(super) async fn drain(mut self, total: u64) -> Result<(Vec<Duration>, u64)> {
        let deadline = Instant::now() + CALL_LIMIT;
        while self.count.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        let mut latencies = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            latencies.extend(task.await??);
        }
        Ok((latencies, self.count.load(Ordering::Relaxed)))
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        // A workload that failed half way leaves no consumer polling.
        for task in &self.tasks {
            task.abort();
        }
    }
}
