//! `cloudstream deliver` killed with SIGKILL in the middle of delivering, again and again,
//! with events sent between the kills: afterwards the delivered files hold every event
//! exactly once (Stream-06's promise that a crash anywhere leaves neither a gap nor a
//! duplicate across the files), as JSON Lines and as Parquet (read back by pyarrow).

use super::*;

/// Kill cycles (`DELIVER_KILL_CYCLES`, default 20).
fn cycles() -> u64 {
    std::env::var("DELIVER_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// The delivered files under `dir`, without those the store was writing when the delivery
/// was killed (their names hold a `#`).
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.map(|e| e.expect("entry").path()) {
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().contains('#') {
                out.push(path);
            }
        }
    }
    out
}

/// Every (partition, sequence) in the JSON Lines files under `dir`, with how many times
/// each occurs.
fn delivered(dir: &std::path::Path) -> HashMap<(u64, u64), usize> {
    let mut seen = HashMap::new();
    for path in files(dir) {
        let text = std::fs::read_to_string(&path).expect("a delivered file");
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let key = (
                r["partition"].as_u64().expect("partition"),
                r["sequence"].as_u64().expect("sequence"),
            );
            *seen.entry(key).or_default() += 1;
        }
    }
    seen
}

/// The same of the Parquet files under `dir`, read by pyarrow.
fn delivered_parquet(dir: &std::path::Path) -> HashMap<(u64, u64), usize> {
    let mut read = Command::new(super::pipeline::python());
    read.arg("-c").arg(
        r#"
import json, sys
import pyarrow.parquet as pq
rows = []
for path in sys.argv[1:]:
    t = pq.read_table(path, columns=["partition", "sequence"])
    rows += [[r["partition"], int(r["sequence"])] for r in t.to_pylist()]
print(json.dumps(rows))
"#,
    );
    let out = read.args(files(dir)).output().expect("pyarrow");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(u64, u64)> = serde_json::from_slice(&out.stdout).expect("pyarrow's JSON");
    let mut seen = HashMap::new();
    for row in rows {
        *seen.entry(row).or_default() += 1;
    }
    seen
}

/// Kills deliveries (`extra` their format's flags) again and again while events are sent,
/// lets a last one finish, and checks with `read` that every event is delivered once.
fn killed_again_and_again(
    extra: &[&str],
    read: fn(&std::path::Path) -> HashMap<(u64, u64), usize>,
) {
    let cli = Cli::new();
    let out = cli.dir.path().join("delivered");
    let sink = format!("file://{}", out.display());
    cli.ok(&["create", "s", "--partitions", "3"]);
    let mut sent = 0u64;
    let mut send = |n: u64| {
        let lines: String = (sent..sent + n)
            .map(|i| format!("{{\"i\":{i}}}\n"))
            .collect();
        cli.ok_with_stdin(&["send", "s", "--batch", "250"], &lines);
        sent += n;
    };
    let deliver = || {
        let mut args = vec!["deliver", "s", "--to", &sink, "--max-wait", "50ms"];
        args.extend(extra);
        cli.command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn deliver")
    };
    for cycle in 0..cycles() {
        send(400);
        let mut child = deliver();
        std::thread::sleep(Duration::from_millis(80 + (cycle * 53) % 300));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    // A last delivery, left to finish.
    let mut child = deliver();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(&out).len() < sent as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let seen = read(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(seen.len() as u64, sent, "every event delivered");
}

#[test]
fn deliveries_killed_again_and_again_deliver_every_event_once() {
    killed_again_and_again(&[], delivered);
}

#[test]
fn parquet_deliveries_killed_again_and_again_deliver_every_event_once() {
    killed_again_and_again(
        &["--format", "parquet", "--compression", "snappy"],
        delivered_parquet,
    );
}
