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

#[path = "load/client.rs"]
mod client;
#[path = "load/report.rs"]
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudstream::ReadFrom;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::json;

use self::client::{call, drive, Scenario, Window};
use self::report::Report;

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
