//! Stream-06 from the command line: the README's worked example (the TelemetryIngest
//! readings aggregated per minute and device, delivered as Parquet and read back by
//! pyarrow), and `cloudstream aggregate` killed with SIGKILL again and again, after which
//! each result is on the output once, as a plain `Aggregator` computes it.

use super::*;
use cloudstream::aggregate::{Aggregation, Aggregator};
use cloudstream::pipeline::AggregateSpec;

/// 2025-11-24T16:30:00Z, in ms: the first reading's time.
const BASE_MS: u64 = 1_764_001_800_000;

/// The README's readings, as its `awk` line prints them: a reading a second, six devices.
fn readings(from: u64, n: u64) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"device\":\"device-{}\",\"temperature\":{:.1},\"time\":{}}}\n",
                i % 6,
                20.0 + ((i * 31) % 170) as f64 / 10.0,
                BASE_MS + i * 1_000
            )
        })
        .collect()
}

/// The Python with pyarrow that `scripts/servers.sh` installs.
pub(super) fn python() -> String {
    std::env::var("CLOUDSTREAM_PYARROW").unwrap_or_else(|_| {
        let tools = std::env::var("CLOUDSTREAM_TOOLS").unwrap_or_else(|_| {
            format!(
                "{}/.cache/cloudstream/tools",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{tools}/pyarrow/bin/python")
    })
}

/// Runs a Python script that prints JSON, with pyarrow; what it printed.
fn pyarrow(script: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(python())
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "no pyarrow at {} ({e}); run the tests through scripts/test.sh, whose servers.sh installs it",
                python()
            )
        });
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyarrow's JSON")
}

/// Rows in the Parquet files below `dir`, as their names say (`STREAM-P-FIRST-LAST`).
fn rows_named(dir: &std::path::Path, stream: &str) -> u64 {
    let mut rows = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.map(|e| e.expect("entry").path()) {
            if path.is_dir() {
                stack.push(path);
            } else if let Some((_, first, last)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| cloudstream::deliver::file_positions(stream, n))
            {
                let (first, last) = (
                    first.as_u64().expect("well-formed"),
                    last.as_u64().expect("well-formed"),
                );
                rows += last - first + 1;
            }
        }
    }
    rows
}

/// Stops a child as Ctrl-C would (SIGINT), and waits for it.
fn interrupt(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_worked_example_gives_per_minute_averages_and_p95s_in_parquet() {
    let cli = Cli::new();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/telemetry-pipeline.toml"
    );
    cli.ok(&["create", "TelemetryIngest", "--partitions", "4"]);
    cli.ok_with_stdin(
        &[
            "send",
            "TelemetryIngest",
            "--key-field",
            "device",
            "--time-field",
            "time",
        ],
        &readings(0, 6_000),
    );
    let pipeline = cli
        .command(&["pipeline", file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pipeline");
    // 100 minutes of readings: 99 closed minutes (the last waits for later readings), six
    // devices each.
    let lake = cli.dir.path().join("lake/per-minute");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows_named(&lake, "TelemetryPerMinute") < 594 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    interrupt(pipeline);
    let rows = pyarrow(
        r#"
import json, sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
print(json.dumps([r["payload"] for r in t.to_pylist()]))
"#,
        &lake,
    );
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 594);
    // What the readings say, computed here: per (minute, device), the temperatures.
    let mut temps: HashMap<(u64, String), Vec<f64>> = HashMap::new();
    for i in 0..6_000u64 {
        let minute = (BASE_MS + i * 1_000) / 60_000;
        let t = format!("{:.1}", 20.0 + ((i * 31) % 170) as f64 / 10.0);
        temps
            .entry((minute, format!("device-{}", i % 6)))
            .or_default()
            .push(t.parse().expect("well-formed"));
    }
    let mut seen = HashSet::new();
    for row in rows {
        let start = humantime::parse_rfc3339(row["window_start"].as_str().expect("well-formed"))
            .expect("well-formed");
        let minute = start
            .duration_since(std::time::UNIX_EPOCH)
            .expect("well-formed")
            .as_millis() as u64
            / 60_000;
        let device = row["device"].as_str().expect("well-formed").to_owned();
        assert!(seen.insert((minute, device.clone())), "twice: {row}");
        let mut t = temps[&(minute, device)].clone();
        assert_eq!(row["readings"].as_u64(), Some(t.len() as u64), "{row}");
        let avg = t.iter().sum::<f64>() / t.len() as f64;
        assert!(
            (row["avg_temperature"].as_f64().expect("well-formed") - avg).abs() < 1e-9,
            "{row}"
        );
        t.sort_by(f64::total_cmp);
        let p95 = t[((t.len() - 1) as f64 * 0.95).floor() as usize];
        let got = row["p95_temperature"].as_f64().expect("well-formed");
        assert!(
            (got - p95).abs() <= 0.01 * p95,
            "p95 {got}, exact {p95}: {row}"
        );
    }
}

/// The aggregation `cloudstream aggregate` runs below, as the library takes it.
fn per_minute() -> Aggregation {
    AggregateSpec {
        to: "out".into(),
        window: "tumbling 1m".into(),
        lateness: Some("5s".into()),
        group_by: vec!["device".into()],
        measures: vec![
            "readings = count".into(),
            "avg_temperature = avg(temperature)".into(),
            "p95_temperature = p95(temperature)".into(),
        ],
        ..AggregateSpec::default()
    }
    .aggregation()
    .expect("spec")
}

/// Every record of a stream, each partition in order.
async fn read_all(stream: &cloudstream::Stream) -> Vec<cloudstream::Record> {
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

/// The output's results and what a plain aggregator makes of the input, both sorted.
async fn results_and_reference(url: &str) -> (Vec<String>, Vec<String>) {
    let client = cloudstream::open(url).await.expect("open");
    let input = client.stream("in").open().await.expect("in");
    let output = client.stream("out").open().await.expect("out");
    let mut got: Vec<String> = read_all(&output)
        .await
        .iter()
        .map(|r| String::from_utf8(r.payload().to_vec()).expect("well-formed"))
        .collect();
    let records = read_all(&input).await;
    let mut expected = Vec::new();
    for p in 0..input.partitions() {
        let mut agg = Aggregator::new(per_minute()).expect("well-formed");
        for r in records.iter().filter(|r| r.position.partition == p) {
            let results = agg.push(r).results;
            expected.extend(results.iter().map(|w| w.to_json(agg.spec()).to_string()));
        }
    }
    got.sort();
    expected.sort();
    (got, expected)
}

#[test]
fn aggregations_killed_again_and_again_send_each_result_once() {
    let cli = Cli::new();
    cli.ok(&["create", "in", "--partitions", "3"]);
    let aggregate = || {
        cli.command(&[
            "aggregate",
            "in",
            "--to",
            "out",
            "--window",
            "tumbling 1m",
            "--lateness",
            "5s",
            "--group-by",
            "device",
            "--measure",
            "readings=count",
            "--measure",
            "avg_temperature=avg(temperature)",
            "--measure",
            "p95_temperature=p95(temperature)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn aggregate")
    };
    for cycle in 0..20u64 {
        cli.ok_with_stdin(
            &[
                "send",
                "in",
                "--key-field",
                "device",
                "--time-field",
                "time",
                "--batch",
                "97",
            ],
            &readings(cycle * 600, 600),
        );
        let mut child = aggregate();
        std::thread::sleep(Duration::from_millis(60 + (cycle * 53) % 300));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    // A last run, left to catch up: until each partition's saved state has seen its last
    // record (the engine's directory is the running process's alone meanwhile).
    let out = cli.ok(&["describe", "in", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&out).expect("well-formed");
    let ends: Vec<u64> = info["stream"]["partitions"]
        .as_array()
        .expect("well-formed")
        .iter()
        .map(|p| p["next"].as_u64().expect("well-formed") - 1)
        .collect();
    let state = cli.dir.path().join("cloudstream-state/in/aggregate.out");
    let caught_up = || {
        ends.iter().enumerate().all(|(p, end)| {
            std::fs::read(state.join(format!("partition-{p:05}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|saved| saved["input_last"].as_u64() == Some(*end))
        })
    };
    let child = aggregate();
    let runtime = tokio::runtime::Runtime::new().expect("well-formed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !caught_up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    interrupt(child);
    let (got, expected) = runtime.block_on(results_and_reference(&cli.url()));
    assert_eq!(expected.len(), 199 * 6);
    let missing = expected.iter().filter(|e| !got.contains(e)).count();
    assert!(
        got == expected,
        "{} results, {} expected, {missing} missing",
        got.len(),
        expected.len()
    );
}
