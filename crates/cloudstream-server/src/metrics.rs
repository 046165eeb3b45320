//! `/metrics` in the Prometheus text format: requests and their latency per route and
//! status, events and bytes in and out per stream, consumer lag (where the provider knows
//! it), and the provider's own counters (throttled calls, failed records, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AppState, State};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Route {
    latency: Histogram,
    statuses: BTreeMap<u16, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Flow {
    events: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Tables {
    /// Route → latency and counts by status.
    routes: BTreeMap<String, Route>,
    flow_in: BTreeMap<String, Flow>,
    flow_out: BTreeMap<String, Flow>,
    /// The last minutes of each stream's flows, for `GET /v1/streams/{name}/stats`.
    rates: BTreeMap<String, crate::rates::Ring>,
}

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    tables: Mutex<Tables>,
}

impl Metrics {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts events written to a stream.
    pub(crate) fn events_in(&self, stream: &str, events: u64, bytes: u64) {
        let mut t = self.tables();
        entry(&mut t.flow_in, stream).add(events, bytes);
        entry(&mut t.rates, stream).written(events, bytes);
    }

    /// Counts records handed out (reads, fetches, tails).
    pub(crate) fn events_out(&self, stream: &str, events: u64, bytes: u64) {
        let mut t = self.tables();
        entry(&mut t.flow_out, stream).add(events, bytes);
        entry(&mut t.rates, stream).read(events);
    }

    /// `view` of a stream's recent rates (empty for a stream nothing went through yet).
    pub(crate) fn rates<T>(
        &self,
        stream: &str,
        view: impl FnOnce(&mut crate::rates::Ring) -> T,
    ) -> T {
        let mut t = self.tables();
        match t.rates.get_mut(stream) {
            Some(ring) => view(ring),
            None => view(&mut crate::rates::Ring::default()),
        }
    }

    fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut t = self.tables();
        let r = entry(&mut t.routes, route);
        *r.statuses.entry(status).or_default() += 1;
        let h = &mut r.latency;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }
}

/// The entry of `key`, allocating its name only the first time (the per-request path).
fn entry<'t, V: Default>(table: &'t mut BTreeMap<String, V>, key: &str) -> &'t mut V {
    if !table.contains_key(key) {
        table.insert(key.to_owned(), V::default());
    }
    table.get_mut(key).expect("inserted above")
}

impl Flow {
    fn add(&mut self, events: u64, bytes: u64) {
        self.events += events;
        self.bytes += bytes;
    }
}

/// Middleware: times every request and counts it by route template and status.
pub(crate) async fn track(state: State, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .request(route, response.status().as_u16(), seconds);
    response
}

/// `GET /metrics`.
#[utoipa::path(
    get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        crate::openapi::Failures
    ),
    security(())
)]
pub(crate) async fn render(state: State) -> Response {
    let text = render_text(&state).await;
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn render_text(state: &Arc<AppState>) -> String {
    let mut out = String::new();
    {
        let t = state.metrics.tables();
        header(
            &mut out,
            "cloudstream_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        for ((route, status), n) in t
            .routes
            .iter()
            .flat_map(|(route, r)| r.statuses.iter().map(move |(s, n)| ((route, s), n)))
        {
            let _ = writeln!(
                out,
                "cloudstream_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "cloudstream_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route.",
        );
        for (route, h) in t.routes.iter().map(|(route, r)| (route, &r.latency)) {
            let cumulative = BUCKETS.iter().copied().zip(h.counts);
            let labels = format!("route=\"{route}\"");
            histogram(
                &mut out,
                "cloudstream_http_request_duration_seconds",
                &labels,
                cumulative,
                h.count,
                h.sum,
            );
        }
        for (name, help, table, pick) in [
            (
                "cloudstream_events_in_total",
                "Events written, by stream.",
                &t.flow_in,
                0,
            ),
            (
                "cloudstream_bytes_in_total",
                "Payload bytes written, by stream.",
                &t.flow_in,
                1,
            ),
            (
                "cloudstream_events_out_total",
                "Records handed out (reads, fetches, tails), by stream.",
                &t.flow_out,
                0,
            ),
            (
                "cloudstream_bytes_out_total",
                "Payload bytes handed out, by stream.",
                &t.flow_out,
                1,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (stream, flow) in table {
                let n = if pick == 0 { flow.events } else { flow.bytes };
                let _ = writeln!(out, "{name}{{stream=\"{stream}\"}} {n}");
            }
        }
    }
    header(
        &mut out,
        "cloudstream_consumer_lag",
        "gauge",
        "Records between a consumer's checkpoint and the end, where the provider counts them.",
    );
    if let Ok(streams) = state.client.list_streams().await {
        for stream in streams {
            let Ok(consumers) = state.client.backend().list_consumers(&stream).await else {
                continue;
            };
            for c in consumers {
                if let Some(lag) = c.lag {
                    let _ = writeln!(
                        out,
                        "cloudstream_consumer_lag{{stream=\"{stream}\",consumer=\"{}\"}} {lag}",
                        c.name
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "cloudstream_backend_latency_seconds",
        "histogram",
        "How long the provider's own operations take (the engine's fdatasync).",
    );
    for (op, snapshot) in state.client.backend().latencies() {
        let cumulative = snapshot
            .cumulative
            .iter()
            .map(|(bound, n)| (bound.as_secs_f64(), *n));
        let labels = format!("op=\"{op}\"");
        histogram(
            &mut out,
            "cloudstream_backend_latency_seconds",
            &labels,
            cumulative,
            snapshot.count,
            snapshot.total.as_secs_f64(),
        );
    }
    header(
        &mut out,
        "cloudstream_backend_events_total",
        "counter",
        "The provider's own counters (throttled calls, failed records, refreshed iterators).",
    );
    for (name, n) in state.client.backend().metrics() {
        let _ = writeln!(
            out,
            "cloudstream_backend_events_total{{counter=\"{name}\"}} {n}"
        );
    }
    out
}

/// One histogram's lines: a bucket per bound (cumulative counts), `+Inf`, sum and count.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    cumulative: impl Iterator<Item = (f64, u64)>,
    count: u64,
    sum: f64,
) {
    for (bound, n) in cumulative {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
