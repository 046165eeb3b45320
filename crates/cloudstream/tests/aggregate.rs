//! `stream.aggregate(...)` end to end on the embedded engine: results on an output stream
//! equal, byte for byte and each once, what a plain `Aggregator` computes from the input's
//! partitions; late records go to the late stream; a run aborted again and again (as a
//! killed process would be) neither loses nor repeats a result.

use std::time::{Duration, SystemTime};

use cloudstream::aggregate::{Aggregation, Aggregator, Measure, LATE_FROM};
use cloudstream::{Client, Error, Event, Record, Stream};

/// 2025-11-24T16:30:00Z.
const BASE_MS: u64 = 1_764_001_800_000;

/// The spec's TelemetryIngest readings: per minute and device, how many, the average and
/// the p95 temperature, with 10 s of allowed lateness.
fn per_minute() -> Aggregation {
    Aggregation {
        window: "tumbling 1m".parse().expect("window"),
        group_by: vec!["device".into()],
        measures: vec![
            Measure::parse("readings", "count").expect("count"),
            Measure::parse("avg_temperature", "avg(temperature)").expect("avg"),
            Measure::parse("p95_temperature", "p95(temperature)").expect("p95"),
        ],
        lateness_ms: 10_000,
    }
}

/// Readings `from..from + n`: a device's reading every second or so, up to 25 s out of
/// order, and every 97th one five minutes late.
fn readings(from: usize, n: usize) -> Vec<Event> {
    (from..from + n)
        .map(|i| {
            let device = format!("device-{}", i % 6);
            let jitter = ((i * 7919) % 25_000) as u64;
            let mut at = BASE_MS + i as u64 * 1_000 + 25_000 - jitter;
            if i % 97 == 96 {
                at -= 300_000;
            }
            Event::json(&serde_json::json!({
                "device": device,
                "temperature": 20.0 + ((i * 31) % 170) as f64 / 10.0,
                "i": i,
            }))
            .expect("json")
            .with_key(device)
            .with_time(SystemTime::UNIX_EPOCH + Duration::from_millis(at))
        })
        .collect()
}

async fn send(stream: &Stream, events: Vec<Event>) {
    for r in stream.send_batch(events).await {
        r.expect("sent");
    }
}

/// Every record of every partition, each partition in order.
async fn read_all(stream: &Stream) -> Vec<Record> {
    let mut out = Vec::new();
    for p in 0..stream.partitions() {
        let mut from = cloudstream::ReadFrom::Earliest;
        loop {
            let page = stream.read_partition(p, from, 1_000).await.expect("read");
            let Some(last) = page.last() else { break };
            from = cloudstream::ReadFrom::After(last.position);
            out.extend(page);
        }
    }
    out
}

/// What a plain aggregator gives for each input partition read in order: the results'
/// JSON, sorted, and the late records' positions, sorted.
async fn reference(input: &Stream, spec: &Aggregation) -> (Vec<String>, Vec<String>) {
    let (mut results, mut late) = (Vec::new(), Vec::new());
    let records = read_all(input).await;
    for p in 0..input.partitions() {
        let mut agg = Aggregator::new(spec.clone()).expect("spec");
        for r in records.iter().filter(|r| r.position.partition == p) {
            let pushed = agg.push(r);
            results.extend(pushed.results.iter().map(|w| w.to_json(spec).to_string()));
            if pushed.late {
                late.push(r.position.to_string());
            }
        }
    }
    results.sort();
    late.sort();
    (results, late)
}

/// Asserts two sorted lists of results are the same, showing only how they differ.
fn assert_same(got: &[String], expected: &[String]) {
    if got == expected {
        return;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !got.contains(e))
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|g| !expected.contains(g))
        .take(3)
        .collect();
    panic!(
        "{} results, {} expected; missing (first 3): {missing:?}; not expected: {extra:?}",
        got.len(),
        expected.len()
    );
}

/// The payloads of a stream's records, sorted.
async fn payloads(stream: &Stream) -> Vec<String> {
    let mut out: Vec<String> = read_all(stream)
        .await
        .iter()
        .map(|r| String::from_utf8(r.payload().to_vec()).expect("utf-8"))
        .collect();
    out.sort();
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: String,
    input: Stream,
    output: Stream,
    late: Stream,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let client: Client =
        cloudstream::open(&format!("local://{}", dir.path().join("data").display()))
            .await
            .expect("open");
    let make = |name: &'static str, partitions: u32| {
        let client = client.clone();
        async move {
            client
                .stream(name)
                .partitions(partitions)
                .create()
                .await
                .expect("create")
        }
    };
    Fixture {
        state: format!("file://{}", dir.path().join("state").display()),
        input: make("TelemetryIngest", 3).await,
        output: make("TelemetryPerMinute", 2).await,
        late: make("TelemetryLate", 1).await,
        _dir: dir,
    }
}

/// Runs the aggregation until the output holds `expected` results (or 60 s pass).
async fn run_until_output(f: &Fixture, spec: &Aggregation, expected: usize) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        f.input
            .aggregate(spec.clone(), &f.output, &f.state)
            .late_to(&f.late)
            .max_wait(Duration::from_millis(20))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    for _ in 0..600 {
        if read_all(&f.output).await.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    run.await.expect("joined").expect("aggregation");
}

#[tokio::test]
async fn results_are_what_an_aggregator_computes_each_once() {
    let f = fixture().await;
    let spec = per_minute();
    send(&f.input, readings(0, 3_000)).await;
    let (expected, expected_late) = reference(&f.input, &spec).await;
    assert!(expected.len() > 250, "{} results", expected.len());
    assert!(!expected_late.is_empty());
    run_until_output(&f, &spec, expected.len()).await;
    assert_same(&payloads(&f.output).await, &expected);

    // Late records: as they were, with their input position.
    let late = read_all(&f.late).await;
    let mut from: Vec<String> = late
        .iter()
        .map(|r| r.event.headers[LATE_FROM].clone())
        .collect();
    from.sort();
    assert_eq!(from, expected_late);
    let one = &late[0];
    assert!(one.event.time.is_some());
    assert!(one
        .event
        .key
        .as_deref()
        .expect("well-formed")
        .starts_with("device-"));

    // Results are keyed by their group and timed at their window's start.
    let out = read_all(&f.output).await;
    for r in &out {
        let v: serde_json::Value = r.json().expect("json");
        assert_eq!(r.event.key.as_deref(), v["device"].as_str());
        let start = humantime::parse_rfc3339(v["window_start"].as_str().expect("well-formed"))
            .expect("well-formed");
        assert_eq!(r.event.time, Some(start));
    }

    // More input later: the run goes on from its saved state, and nothing comes twice.
    send(&f.input, readings(3_000, 1_000)).await;
    let (expected, _) = reference(&f.input, &spec).await;
    run_until_output(&f, &spec, expected.len()).await;
    assert_same(&payloads(&f.output).await, &expected);
}

#[tokio::test]
async fn a_run_aborted_again_and_again_loses_and_repeats_nothing() {
    let f = fixture().await;
    let spec = per_minute();
    for cycle in 0..20usize {
        send(&f.input, readings(cycle * 200, 200)).await;
        let run = tokio::spawn(
            f.input
                .aggregate(spec.clone(), &f.output, &f.state)
                .late_to(&f.late)
                .batch_size(37)
                .max_wait(Duration::from_millis(5))
                .run_until(std::future::pending()),
        );
        tokio::time::sleep(Duration::from_millis(15 + (cycle as u64 * 37) % 120)).await;
        run.abort();
        let _ = run.await;
    }
    let (expected, expected_late) = reference(&f.input, &spec).await;
    run_until_output(&f, &spec, expected.len()).await;
    assert_same(&payloads(&f.output).await, &expected);
    let mut from: Vec<String> = read_all(&f.late)
        .await
        .iter()
        .map(|r| r.event.headers[LATE_FROM].clone())
        .collect();
    from.sort();
    assert_eq!(from, expected_late);
}

#[tokio::test]
async fn state_of_another_spec_and_a_loop_are_refused() {
    let f = fixture().await;
    send(&f.input, readings(0, 100)).await;
    run_until_output(&f, &per_minute(), 1).await;
    let mut other = per_minute();
    other.lateness_ms = 0;
    let refused = f
        .input
        .aggregate(other, &f.output, &f.state)
        .run_until(tokio::time::sleep(Duration::from_secs(30)))
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("another aggregation")),
        "{refused:?}"
    );
    let looped = f
        .input
        .aggregate(per_minute(), &f.input, &f.state)
        .run_until(tokio::time::sleep(Duration::from_secs(30)))
        .await;
    assert!(
        matches!(looped, Err(Error::InvalidArgument(_))),
        "{looped:?}"
    );
}

/// Results sent before the lane was saved without them (as when a process dies, or a
/// send fails, between its two saves) are found on the output and not sent again. Here the
/// late stream is deleted, so each batch's results are sent and its late records are not;
/// the run stops; the late stream is made again and the next run sends only what is
/// missing. The output is on Redis, which keeps no event ids: only the aggregation's own
/// search stands between the second run and duplicates.
#[tokio::test]
async fn results_sent_before_a_failure_are_not_sent_again() {
    let f = fixture().await;
    let redis_url =
        std::env::var("CLOUDSTREAM_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    let redis = cloudstream::open(&redis_url).await.unwrap_or_else(|e| {
        panic!("no Redis at {redis_url} ({e}); run the tests through scripts/test.sh")
    });
    let name = cloudstream::conformance::unique_name("agg-out");
    let output = redis
        .stream(&name)
        .partitions(2)
        .create()
        .await
        .expect("create");
    let f = Fixture { output, ..f };
    let spec = per_minute();
    send(&f.input, readings(0, 1_500)).await;
    let (expected, expected_late) = reference(&f.input, &spec).await;

    let client = Client::new(f.late.backend().clone());
    client.delete_stream("TelemetryLate").await.expect("delete");
    let stopped = f
        .input
        .aggregate(spec.clone(), &f.output, &f.state)
        .late_to(&f.late)
        .run_until(tokio::time::sleep(Duration::from_secs(30)))
        .await;
    assert!(
        matches!(&stopped, Err(Error::StreamNotFound { .. })),
        "{stopped:?}"
    );
    assert!(!payloads(&f.output).await.is_empty(), "results were sent");

    client
        .stream("TelemetryLate")
        .create()
        .await
        .expect("create again");
    // The output holds every result already: run until the late records are there too.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        f.input
            .aggregate(spec.clone(), &f.output, &f.state)
            .late_to(&f.late)
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    eventually_holds(&f.late, expected_late.len()).await;
    let _ = stop.send(());
    run.await.expect("joined").expect("aggregation");
    let mut late: Vec<String> = read_all(&f.late)
        .await
        .iter()
        .map(|r| r.event.headers[LATE_FROM].clone())
        .collect();
    late.sort();
    assert_eq!(late, expected_late);
    assert_same(&payloads(&f.output).await, &expected);
    redis.delete_stream(&name).await.expect("delete");
}

/// Waits until `stream` holds `n` records (or 60 s pass).
async fn eventually_holds(stream: &Stream, n: usize) {
    for _ in 0..600 {
        if read_all(stream).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_checkpoint_without_its_state_is_refused() {
    let f = fixture().await;
    send(&f.input, readings(0, 600)).await;
    run_until_output(&f, &per_minute(), 1).await;
    let state = std::path::PathBuf::from(f.state.trim_start_matches("file://"));
    std::fs::remove_dir_all(&state).expect("lose the state");
    let refused = f
        .input
        .aggregate(per_minute(), &f.output, &f.state)
        .run_until(tokio::time::sleep(Duration::from_secs(30)))
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("has acknowledged records")),
        "{refused:?}"
    );
}
