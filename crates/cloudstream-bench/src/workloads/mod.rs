//! The workloads, in the spirit of the OpenMessaging Benchmark, each the same for every
//! peer:
//! - (a) one partition, 100 B events, batches of 100 and 1,000, one producer;
//! - (b) 16 partitions, 1 KiB events, 4 producers of unkeyed batches of 100, 4 consumers;
//! - (c) single durable sends of 100 B from 8, 64 and 256 concurrent writers, 4 partitions;
//! - (d) end-to-end latency, send to consumer, at fixed rates (open loop: latency counts
//!   from when an event was due, so a peer that falls behind shows it);
//! - (e) reading back a partition of many events from the earliest, as fast as it goes.
//!
//! Producers and consumers run through a warm-up, then a measured window; only what is
//! acknowledged (or read) within the window counts.

mod catch_up;
mod drive;
mod end_to_end;
mod throughput;

use std::time::Duration;

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::measure::{Percentiles, Usage};
use crate::peer::Peer;
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
        const ALL: [&str; 5] = ["a", "b", "c", "d", "e"];
        for w in only {
            ensure!(ALL.contains(&w.as_str()), "no workload {w:?} (a to e)");
        }
        let workloads = if only.is_empty() {
            ALL.map(String::from).to_vec()
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

    /// Whether `peer` runs `workload` in this run.
    fn runs(&self, peer: &dyn Peer, workload: &str) -> bool {
        self.workloads.iter().any(|w| w == workload) && peer.workloads().contains(workload)
    }
}

/// Every chosen workload on `peer`.
pub(crate) async fn run_all(peer: &dyn Peer, s: &Settings, report: &mut Report) -> Result<()> {
    if s.runs(peer, "a") {
        for &batch in &s.batches {
            throughput::batches(peer, s, report, batch).await?;
        }
    }
    if s.runs(peer, "b") {
        throughput::sixteen_partitions(peer, s, report).await?;
    }
    if s.runs(peer, "c") {
        for &writers in &s.writers {
            throughput::singles(peer, s, report, writers).await?;
        }
    }
    if s.runs(peer, "d") && peer.follows() {
        for &rate in &s.rates {
            end_to_end::at_rate(peer, s, report, rate).await?;
        }
    }
    if s.runs(peer, "e") {
        catch_up::read_back(peer, s, report).await?;
    }
    Ok(())
}

/// A row of `peer`: `events` of `size` bytes in `seconds`.
#[allow(clippy::too_many_arguments)]
fn row(
    peer: &dyn Peer,
    workload: &'static str,
    setting: String,
    events: u64,
    seconds: f64,
    size: usize,
    latency: Option<Percentiles>,
    usage: Usage,
) -> Row {
    let rate = events as f64 / seconds.max(1e-9);
    Row {
        workload,
        setting,
        peer: peer.name(),
        durability: peer.durability(),
        events,
        events_per_s: rate,
        mb_per_s: rate * size as f64 / 1e6,
        latency,
        usage,
        note: String::new(),
    }
}
