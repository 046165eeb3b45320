//! Load benchmark of the REST API: the server in-process on a loopback port over the embedded
//! engine on disk (`local://DIR?sync=always`, so an event is acknowledged only after
//! fdatasync), driven by a lean HTTP/1.1 client (hyper's connection API, one task per
//! keep-alive connection, pre-serialized bodies).
//!
//! ```sh
//! cargo bench -p cloudstream-server --bench load
//! ```
//!
//! Two scenarios, each measured for `LOAD_SECONDS` after a 1 s warm-up, on a stream of 4
//! partitions:
//! - single events: `POST /v1/streams/load/events`, one ~100-byte event per request, keyed by
//!   connection so the partitions share the load, over `LOAD_CONNECTIONS` connections;
//! - batches: `POST /v1/streams/load/events/batch`, 1,000 events of 100 bytes per request
//!   (unkeyed, so spread round-robin), over `LOAD_BATCH_CONNECTIONS` connections.
//!
//! For each: requests/s, events/s, MB/s (of payload, and of request bodies), latency
//! percentiles (p50, p99, p99.9, max) from every request started in the measured window, and
//! errors. At the end every record is read back through the library and the count must equal
//! the events acknowledged (warm-up included); the run panics otherwise.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `LOAD_SECONDS` | 10 | measured seconds per scenario |
//! | `LOAD_PARTITIONS` | 4 | partitions of the stream |
//! | `LOAD_SYNC` | `always` | the engine's sync policy (`never` shows what fsync costs) |
//! | `LOAD_CONNECTIONS` | 64 | connections of the single-event scenario |
//! | `LOAD_BATCH_CONNECTIONS` | 8 | connections of the batch scenario |
//! | `LOAD_SERVER_THREADS` | 2 | worker threads of the server's runtime |
//! | `LOAD_CLIENT_THREADS` | 1 | worker threads of the load generator's runtime (it shares the machine with the server, as `wrk -t1` would) |
//! | `LOAD_DIR` | the workspace's `target/` | where the temporary data directory is made (use a real disk, not tmpfs) |
//! | `LOAD_OUT` | `target/load-bench.json` | the JSON summary |
//!
//! Run without `--bench` (as `cargo test --benches` does) it is a quick smoke run: 0.5 s per
//! scenario after 0.2 s of warm-up, and no JSON unless `LOAD_OUT` is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudstream::ReadFrom;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// The allocator of the `cloudstream` binary, so the figures are those of `cloudstream serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The stream the benchmark writes.
const STREAM: &str = "load";
/// Payload size of every event, in bytes.
const PAYLOAD_BYTES: usize = 100;
/// Events per batch request.
const BATCH_EVENTS: usize = 1_000;
/// Records per read when counting what the stream holds.
const READ_MAX: usize = 10_000;

/// Any error of the client side.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The run's settings, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    /// Time each scenario runs before it is measured.
    warmup: Duration,
    /// Time each scenario is measured.
    measure: Duration,
    /// Connections of the single-event scenario.
    connections: usize,
    /// Connections of the batch scenario.
    batch_connections: usize,
    /// Partitions of the stream.
    partitions: u32,
    /// The engine's sync policy (`always` for the figures; `never` shows the cost of fsync).
    sync: String,
    /// Worker threads of the server's runtime.
    server_threads: usize,
    /// Worker threads of the load generator's runtime.
    client_threads: usize,
    /// Where the temporary data directory is made.
    data_parent: PathBuf,
    /// Where the JSON summary goes, if anywhere.
    out: Option<PathBuf>,
}

impl Settings {
    /// Reads the `LOAD_*` variables; `benching` is false for a smoke run under `cargo test`.
    fn from_env(benching: bool) -> Self {
        let target = workspace_target();
        let out = match std::env::var_os("LOAD_OUT") {
            Some(path) => Some(PathBuf::from(path)),
            None => benching.then(|| target.join("load-bench.json")),
        };
        let seconds: f64 = env_or("LOAD_SECONDS", if benching { 10.0 } else { 0.5 });
        assert!(
            seconds.is_finite() && seconds > 0.0,
            "LOAD_SECONDS must be a positive number of seconds"
        );
        Settings {
            warmup: if benching {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            },
            measure: Duration::from_secs_f64(seconds),
            connections: env_or("LOAD_CONNECTIONS", 64_usize).max(1),
            batch_connections: env_or("LOAD_BATCH_CONNECTIONS", 8_usize).max(1),
            partitions: env_or("LOAD_PARTITIONS", 4_u32).max(1),
            sync: env_or("LOAD_SYNC", "always".to_owned()),
            server_threads: env_or("LOAD_SERVER_THREADS", 2_usize).max(1),
            client_threads: env_or("LOAD_CLIENT_THREADS", 1_usize).max(1),
            data_parent: std::env::var_os("LOAD_DIR").map_or(target, PathBuf::from),
            out,
        }
    }
}

/// The value of an environment variable, or `default` when it is not set.
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// The workspace's `target/` directory (this crate lives in `crates/cloudstream-server`).
fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root above crates/cloudstream-server")
        .join("target")
}

/// A multi-threaded tokio runtime with `threads` workers named `name`.
fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Opens the engine at `url` and serves the API on a loopback port, on the current runtime.
/// Returns the address and a client of the same engine, for the final count.
async fn start_server(url: &str) -> (SocketAddr, cloudstream::Client) {
    let client = cloudstream::open(url).await.expect("open the engine");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    let router = cloudstream_server::router(client.clone(), cloudstream_server::Limits::default());
    tokio::spawn(async move {
        if let Err(e) = cloudstream_server::serve(listener, router, std::future::pending()).await {
            eprintln!("the server stopped: {e}");
        }
    });
    (addr, client)
}

/// One HTTP/1.1 keep-alive connection to `addr`; its driver runs as a task of its own.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection; a failure
        // shows up in the sender's next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request on `sender` and reads the whole response.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A JSON request on a connection of its own, for the setup.
async fn call(
    addr: SocketAddr,
    host: &HeaderValue,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Bytes) {
    let mut sender = connect(addr).await.expect("connect to the server");
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request");
    exchange(&mut sender, request)
        .await
        .expect("a response from the server")
}

/// A payload of exactly [`PAYLOAD_BYTES`] bytes starting with `prefix`.
fn payload(prefix: &str) -> String {
    let mut text = String::with_capacity(PAYLOAD_BYTES);
    text.push_str(prefix);
    while text.len() < PAYLOAD_BYTES {
        text.push('x');
    }
    text.truncate(PAYLOAD_BYTES);
    text
}

/// One load scenario: what each connection posts, and what the answer must be.
#[derive(Debug)]
struct Scenario {
    /// Its name in the output.
    name: &'static str,
    /// The route posted to.
    uri: Uri,
    /// The `Host` header.
    host: HeaderValue,
    /// One pre-serialized body per connection.
    bodies: Vec<Bytes>,
    /// Events in each request.
    events_per_request: u64,
    /// The status of a success.
    expected: StatusCode,
    /// Responses carry one result per event, each checked for an error.
    batch: bool,
}

impl Scenario {
    /// Single events over `connections` connections, keyed by connection.
    fn single(host: &HeaderValue, connections: usize) -> Self {
        let bodies = (0..connections)
            .map(|c| {
                let event =
                    json!({ "payload": payload(&format!("c{c}-")), "key": format!("c{c}") });
                Bytes::from(event.to_string())
            })
            .collect();
        Scenario {
            name: "single events",
            uri: uri(&format!("/v1/streams/{STREAM}/events")),
            host: host.clone(),
            bodies,
            events_per_request: 1,
            expected: StatusCode::CREATED,
            batch: false,
        }
    }

    /// Batches of [`BATCH_EVENTS`] unkeyed events over `connections` connections.
    fn batch(host: &HeaderValue, connections: usize) -> Self {
        let bodies = (0..connections)
            .map(|c| {
                let events: Vec<Value> = (0..BATCH_EVENTS)
                    .map(|i| json!({ "payload": payload(&format!("b{c}-{i}-")) }))
                    .collect();
                Bytes::from(Value::Array(events).to_string())
            })
            .collect();
        Scenario {
            name: "batches of 1000",
            uri: uri(&format!("/v1/streams/{STREAM}/events/batch")),
            host: host.clone(),
            bodies,
            events_per_request: BATCH_EVENTS as u64,
            expected: StatusCode::OK,
            batch: true,
        }
    }

    /// How many events of a response with the expected status were stored.
    fn accepted(&self, body: &[u8]) -> u64 {
        if !self.batch {
            return self.events_per_request;
        }
        // The cheap check first: a batch with no failed event has no "error" in its answer.
        if !body.windows(7).any(|w| w == b"\"error\"") {
            return self.events_per_request;
        }
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return 0;
        };
        answer["results"].as_array().map_or(0, |results| {
            results
                .iter()
                .filter(|r| r.get("position").is_some())
                .count() as u64
        })
    }
}

/// A URI from a path known to be valid.
fn uri(path: &str) -> Uri {
    path.parse().expect("a valid path")
}

/// When a scenario's requests count, and when they stop.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Requests started from here on are measured.
    measure_start: Instant,
    /// No request starts after this.
    end: Instant,
}

/// What one connection saw.
#[derive(Debug, Default)]
struct Tally {
    /// Latency of each measured request, in microseconds.
    latencies_us: Vec<u32>,
    /// Measured requests answered (whatever the answer).
    requests: u64,
    /// Events stored by measured requests.
    events: u64,
    /// Request-body bytes of measured requests.
    body_bytes: u64,
    /// Requests that failed, warm-up included: no answer, an unexpected status, or a batch
    /// with failed events.
    errors: u64,
    /// Events not stored by the requests that failed with an answer.
    event_errors: u64,
    /// Events acknowledged, warm-up included: what the stream must hold at the end.
    acknowledged_events: u64,
    /// When the last measured request finished.
    last_done: Option<Instant>,
    /// The first failure, to show.
    first_error: Option<String>,
}

impl Tally {
    /// Counts a failed request.
    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// Posts `body` on one keep-alive connection, request after request, until the window ends.
/// A connection that fails is counted and replaced; one that cannot be made ends the task.
async fn drive(addr: SocketAddr, scenario: Arc<Scenario>, body: Bytes, window: Window) -> Tally {
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < window.end {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.error(|| format!("connect: {e}"));
                    break;
                }
            }
        }
        let Some(connection) = sender.as_mut() else {
            break;
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(scenario.uri.clone())
            .header(HOST, scenario.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body.clone()))
            .expect("a valid request");
        let started = Instant::now();
        let outcome = exchange(connection, request).await;
        let done = Instant::now();
        let (status, answer) = match outcome {
            Ok(response) => response,
            Err(e) => {
                tally.error(|| format!("request: {e}"));
                sender = None;
                continue;
            }
        };
        let accepted = if status == scenario.expected {
            scenario.accepted(&answer)
        } else {
            0
        };
        tally.acknowledged_events += accepted;
        if accepted < scenario.events_per_request {
            tally.event_errors += scenario.events_per_request - accepted;
            tally.error(|| {
                let text = String::from_utf8_lossy(&answer);
                let text: String = text.chars().take(300).collect();
                format!("status {status}: {text}")
            });
        }
        if started >= window.measure_start {
            let micros =
                u32::try_from(done.duration_since(started).as_micros()).unwrap_or(u32::MAX);
            tally.latencies_us.push(micros);
            tally.requests += 1;
            tally.events += accepted;
            tally.body_bytes += body.len() as u64;
            tally.last_done = Some(done);
        }
    }
    tally
}

/// The figures of one scenario.
#[derive(Debug, Serialize)]
struct Report {
    /// The scenario.
    scenario: &'static str,
    /// Concurrent connections.
    connections: usize,
    /// Measured seconds: from the window's start to the last measured answer.
    seconds: f64,
    /// Measured requests answered.
    requests: u64,
    /// Events stored by them.
    events: u64,
    /// Requests per second.
    requests_per_s: f64,
    /// Events per second.
    events_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    payload_mb_per_s: f64,
    /// Request-body megabytes per second (JSON framing included).
    body_mb_per_s: f64,
    /// Latency percentiles of measured requests, in microseconds.
    p50_us: u32,
    /// 99th percentile.
    p99_us: u32,
    /// 99.9th percentile.
    p999_us: u32,
    /// Slowest.
    max_us: u32,
    /// On-CPU time of the whole process (server, engine writers and load generator) per
    /// measured request, in microseconds: what a request costs, steadier than requests/s on a
    /// shared machine. 0 where `/proc/self/task/*/schedstat` cannot be read.
    cpu_us_per_request: f64,
    /// Failed requests, warm-up included.
    errors: u64,
    /// Events those failed requests did not store.
    event_errors: u64,
    /// Events acknowledged, warm-up included.
    acknowledged_events: u64,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

impl Report {
    /// Merges the connections' tallies.
    fn new(
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
    fn print(&self) {
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
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs a scenario on the load generator's runtime: one task per connection.
fn run(
    load: &tokio::runtime::Runtime,
    addr: SocketAddr,
    scenario: Scenario,
    settings: &Settings,
) -> Report {
    let scenario = Arc::new(scenario);
    let now = Instant::now();
    let window = Window {
        measure_start: now + settings.warmup,
        end: now + settings.warmup + settings.measure,
    };
    // The process's CPU time over the measured window, sampled by a thread of its own.
    let cpu = std::thread::spawn(move || {
        std::thread::sleep(
            window
                .measure_start
                .saturating_duration_since(Instant::now()),
        );
        let before = process_cpu();
        std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
        process_cpu().saturating_sub(before)
    });
    let tallies = load.block_on(async {
        let tasks: Vec<_> = scenario
            .bodies
            .iter()
            .map(|body| tokio::spawn(drive(addr, Arc::clone(&scenario), body.clone(), window)))
            .collect();
        let mut tallies = Vec::with_capacity(tasks.len());
        for task in tasks {
            tallies.push(task.await.expect("a connection task panicked"));
        }
        tallies
    });
    let cpu = cpu.join().expect("the CPU sampler");
    Report::new(&scenario, window, settings.measure, cpu, tallies)
}

/// On-CPU time of every thread of this process so far (the first field of each thread's
/// `schedstat`, in nanoseconds); zero where it cannot be read.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Reads every record of the stream back through the library; returns how many there are
/// and how many the stream's description says it holds.
async fn count_records(client: &cloudstream::Client) -> (u64, Option<u64>) {
    let stream = client.stream(STREAM).open().await.expect("open the stream");
    let mut total = 0_u64;
    for partition in 0..stream.partitions() {
        let mut from = ReadFrom::Earliest;
        loop {
            let records = stream
                .read_partition(partition, from, READ_MAX)
                .await
                .expect("read the stream back");
            let Some(last) = records.last() else {
                break;
            };
            from = ReadFrom::After(last.position);
            total += records.len() as u64;
        }
    }
    let described = stream
        .describe()
        .await
        .expect("describe the stream")
        .records();
    (total, described)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let benching = std::env::args().any(|a| a == "--bench");
    let settings = Settings::from_env(benching);
    std::fs::create_dir_all(&settings.data_parent).expect("create the data directory's parent");
    let dir = tempfile::Builder::new()
        .prefix("load-bench-")
        .tempdir_in(&settings.data_parent)
        .expect("a temporary data directory");
    let url = format!("local://{}?sync={}", dir.path().display(), settings.sync);

    let server = runtime("server", settings.server_threads);
    let load = runtime("load", settings.client_threads);
    let (addr, client) = server.block_on(start_server(&url));
    println!(
        "load benchmark: {url}, {} partitions, server on http://{addr} ({} threads), client {} threads, {:.1} s warm-up + {:.1} s per scenario",
        settings.partitions,
        settings.server_threads,
        settings.client_threads,
        settings.warmup.as_secs_f64(),
        settings.measure.as_secs_f64(),
    );
    let host = HeaderValue::from_str(&addr.to_string()).expect("a Host header");
    let (status, body) = load.block_on(call(
        addr,
        &host,
        Method::PUT,
        &format!("/v1/streams/{STREAM}"),
        &json!({ "partitions": settings.partitions }),
    ));
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create the stream: {}",
        String::from_utf8_lossy(&body)
    );

    let single = run(
        &load,
        addr,
        Scenario::single(&host, settings.connections),
        &settings,
    );
    single.print();
    let batch = run(
        &load,
        addr,
        Scenario::batch(&host, settings.batch_connections),
        &settings,
    );
    batch.print();

    // Correctness: the stream holds what was acknowledged. A request that failed without an
    // answer may still have been stored, so with errors the stream may hold more.
    let acknowledged = single.acknowledged_events + batch.acknowledged_events;
    let errors = single.errors + batch.errors;
    let started = Instant::now();
    let (stored, described) = server.block_on(count_records(&client));
    println!(
        "read back {stored} records in {:.1} s (the stream describes {described:?}); {acknowledged} events acknowledged",
        started.elapsed().as_secs_f64()
    );
    assert!(
        stored == acknowledged || (errors > 0 && stored > acknowledged),
        "the stream holds {stored} records but {acknowledged} events were acknowledged ({errors} failed requests)"
    );
    if let Some(described) = described {
        assert_eq!(
            described, stored,
            "the stream's description disagrees with a read"
        );
    }

    if let Some(out) = &settings.out {
        let summary = json!({
            "benchmark": "load",
            "url": format!("local://DIR?sync={}", settings.sync),
            "partitions": settings.partitions,
            "payload_bytes": PAYLOAD_BYTES,
            "batch_events": BATCH_EVENTS,
            "warmup_s": settings.warmup.as_secs_f64(),
            "measure_s": settings.measure.as_secs_f64(),
            "server_threads": settings.server_threads,
            "client_threads": settings.client_threads,
            "scenarios": [single, batch],
            "acknowledged_events": acknowledged,
            "stored_records": stored,
        });
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).expect("create the output's directory");
        }
        let text = serde_json::to_string_pretty(&summary).expect("the summary as JSON");
        std::fs::write(out, text + "\n").expect("write the JSON summary");
        println!("wrote {}", out.display());
    }

    drop(client);
    load.shutdown_timeout(Duration::from_secs(5));
    server.shutdown_timeout(Duration::from_secs(5));
    drop(dir);
}
