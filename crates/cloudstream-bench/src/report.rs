//! The results: one row per (workload, setting, peer), written as JSON (for the plots) and
//! as a Markdown table with each peer's ratio to cloudstream on the same work.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::measure::{Percentiles, Usage};
use crate::workloads::Settings;

/// The peers every other row is compared with.
const REFERENCES: [&str; 2] = ["cloudstream", "cloudstream-serve"];

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// `a`, `b`, ...
    pub(crate) workload: &'static str,
    /// What varies within the workload (`batch 100`, `64 writers`, `10000 ev/s`).
    pub(crate) setting: String,
    pub(crate) peer: &'static str,
    pub(crate) durability: &'static str,
    /// Events acknowledged within the window ((a) to (c)), consumed ((b) consume, (d)) or
    /// read back ((e)).
    pub(crate) events: u64,
    pub(crate) events_per_s: f64,
    pub(crate) mb_per_s: f64,
    /// Send latency (of a call: a batch for (a) and (b)), or end-to-end latency for (d).
    pub(crate) latency: Option<Percentiles>,
    pub(crate) usage: Usage,
    /// What the figure needs said beside it (a rate not sustained, a count).
    pub(crate) note: String,
}

/// Every row of a run, and the peers that did not run.
#[derive(Debug)]
pub(crate) struct Report {
    rows: Vec<Row>,
    skipped: Vec<(String, String)>,
    settings: serde_json::Value,
}

impl Report {
    pub(crate) fn new(settings: &Settings) -> Report {
        Report {
            rows: Vec::new(),
            skipped: Vec::new(),
            settings: serde_json::to_value(settings).unwrap_or_default(),
        }
    }

    /// Adds a row, and prints it.
    pub(crate) fn add(&mut self, row: Row) {
        let latency = row
            .latency
            .as_ref()
            .map(|l| format!("  p50 {:.0} us  p99 {:.0} us", l.p50_us, l.p99_us))
            .unwrap_or_default();
        println!(
            "   ({}) {:<22} {:>12.0} ev/s {:>8.1} MB/s{latency} {}",
            row.workload, row.setting, row.events_per_s, row.mb_per_s, row.note
        );
        self.rows.push(row);
    }

    /// Notes a peer that could not run.
    pub(crate) fn skipped(&mut self, peer: &str, why: &str) {
        self.skipped.push((peer.to_owned(), why.to_owned()));
    }

    /// The rate of `reference` on the same workload and setting as `row`.
    fn reference(&self, row: &Row, reference: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.peer == reference && r.workload == row.workload && r.setting == row.setting)
            .map(|r| r.events_per_s)
    }

    /// Writes `results.json` and `results.md` into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let json = json!({
            "machine": machine(),
            "settings": self.settings,
            "rows": self.rows,
            "skipped": self.skipped,
        });
        std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&json)?)?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "| work | setting | peer | durability | events/s | MB/s | p50 / p99 / p99.9 µs | server CPU s per 1M events | client CPU s per 1M events | peak MiB | flushes per 1k events | × cloudstream | × serve | note |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for row in &self.rows {
            let dash = || "–".to_owned();
            let latency = row.latency.as_ref().map_or_else(dash, |l| {
                format!("{:.0} / {:.0} / {:.0}", l.p50_us, l.p99_us, l.p999_us)
            });
            let per_event = |x: Option<f64>, scale: f64, digits: usize| {
                x.filter(|_| row.events > 0).map_or_else(dash, |x| {
                    format!("{:.*}", digits, x / row.events as f64 * scale)
                })
            };
            // (d) runs every peer at the same rate: its events/s compare nothing.
            let ratios: Vec<String> = REFERENCES
                .iter()
                .map(|r| {
                    self.reference(row, r)
                        .filter(|x| *x > 0.0 && row.workload != "d")
                        .map_or_else(dash, |x| format!("{:.2}", row.events_per_s / x))
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.workload,
                row.setting,
                row.peer,
                row.durability,
                row.events_per_s,
                row.mb_per_s,
                latency,
                per_event(row.usage.server_cpu_s, 1e6, 2),
                per_event(row.usage.client_cpu_s, 1e6, 2),
                row.usage.peak_mib.map_or_else(dash, |m| format!("{m:.0}")),
                per_event(row.usage.flushes.map(|f| f as f64), 1e3, 1),
                ratios[0],
                ratios[1],
                row.note,
            );
        }
        for (peer, why) in &self.skipped {
            let _ = writeln!(md, "\n{peer} did not run: {why}");
        }
        md
    }
}

/// This machine, as the run saw it.
fn machine() -> serde_json::Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let memory = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": memory,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average": read("/proc/loadavg").trim(),
        "revision": revision,
    })
}
