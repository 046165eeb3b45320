//! The report of a run: throughput, latency percentiles, CPU per request, as Markdown and JSON.

use serde::Serialize;

use std::time::{Duration, Instant};

use super::client::{Scenario, Tally, Window};
use super::PAYLOAD_BYTES;

/// The figures of one scenario.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The scenario.
    pub(crate) scenario: &'static str,
    /// Concurrent connections.
    pub(crate) connections: usize,
    /// Measured seconds: from the window's start to the last measured answer.
    pub(crate) seconds: f64,
    /// Measured requests answered.
    pub(crate) requests: u64,
    /// Events stored by them.
    pub(crate) events: u64,
    /// Requests per second.
    pub(crate) requests_per_s: f64,
    /// Events per second.
    pub(crate) events_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub(crate) payload_mb_per_s: f64,
    /// Request-body megabytes per second (JSON framing included).
    pub(crate) body_mb_per_s: f64,
    /// Latency percentiles of measured requests, in microseconds.
    pub(crate) p50_us: u32,
    /// 99th percentile.
    pub(crate) p99_us: u32,
    /// 99.9th percentile.
    pub(crate) p999_us: u32,
    /// Slowest.
    pub(crate) max_us: u32,
    /// On-CPU time of the whole process (server, engine writers and load generator) per
    /// measured request, in microseconds: what a request costs, steadier than requests/s on a
    /// shared machine. 0 where `/proc/self/task/*/schedstat` cannot be read.
    pub(crate) cpu_us_per_request: f64,
    /// Failed requests, warm-up included.
    pub(crate) errors: u64,
    /// Events those failed requests did not store.
    pub(crate) event_errors: u64,
    /// Events acknowledged, warm-up included.
    pub(crate) acknowledged_events: u64,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

impl Report {
    /// Merges the connections' tallies.
    pub(crate) fn new(
        scenario: &Scenario,
        window: Window,
        measure: Duration,
        cpu: Duration,
        tallies: Vec<Tally>,
    ) -> Self {
        let mut latencies = Vec::new();
        let (mut requests, mut events, mut body_bytes) = (0, 0, 0);
        let (mut errors, mut event_errors, mut acknowledged_events) = (0, 0, 0);
        let mut last_done: Option<Instant> = None;
        let mut first_error = None;
        for t in tallies {
            latencies.extend(t.latencies_us);
            requests += t.requests;
            events += t.events;
            body_bytes += t.body_bytes;
            errors += t.errors;
            event_errors += t.event_errors;
            acknowledged_events += t.acknowledged_events;
            last_done = last_done.max(t.last_done);
            first_error = first_error.or(t.first_error);
        }
        latencies.sort_unstable();
        let seconds = last_done
            .map_or(measure, |done| done.duration_since(window.measure_start))
            .as_secs_f64()
            .max(1e-9);
        let payload_bytes = events * PAYLOAD_BYTES as u64;
        Report {
            scenario: scenario.name,
            connections: scenario.bodies.len(),
            seconds,
            requests,
            events,
            requests_per_s: requests as f64 / seconds,
            events_per_s: events as f64 / seconds,
            payload_mb_per_s: payload_bytes as f64 / seconds / 1e6,
            body_mb_per_s: body_bytes as f64 / seconds / 1e6,
            p50_us: percentile(&latencies, 0.50),
            p99_us: percentile(&latencies, 0.99),
            p999_us: percentile(&latencies, 0.999),
            max_us: latencies.last().copied().unwrap_or(0),
            cpu_us_per_request: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
            errors,
            event_errors,
            acknowledged_events,
            first_error,
        }
    }

    /// Prints the figures.
    pub(crate) fn print(&self) {
        println!(
            "{}: {} connections, {:.1} s: {:.0} requests/s, {:.0} events/s, {:.2} MB/s of payload ({:.2} MB/s of bodies), latency p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs, {:.1} µs of CPU per request, {} errors",
            self.scenario,
            self.connections,
            self.seconds,
            self.requests_per_s,
            self.events_per_s,
            self.payload_mb_per_s,
            self.body_mb_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.cpu_us_per_request,
            self.errors,
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}

/// The nearest-rank percentile `q` (0 to 1) of sorted values; 0 when there are none.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
