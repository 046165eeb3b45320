//! The stream commands: create, send, read, consume, describe, delete, bench; errors and pipes.

use super::*;

#[test]
fn create_send_read_consume_describe_delete() {
    let cli = Cli::new();
    cli.ok(&[
        "create",
        "TelemetryIngest",
        "--horizon",
        "48h",
        "--partitions",
        "2",
    ]);
    assert_eq!(cli.ok(&["list"]).trim(), "TelemetryIngest");
    // --url works after the subcommand too.
    let url = cli.url();
    assert!(cli.ok(&["list", "--url", &url]).contains("TelemetryIngest"));
    let receipt = cli.ok(&[
        "send",
        "TelemetryIngest",
        "hello",
        "--key",
        "k1",
        "--header",
        "ce_type=demo",
    ]);
    assert!(receipt.trim().contains(':'), "{receipt}");
    let ndjson: String = (0..50)
        .map(|i| format!("{{\"device\":\"d{}\",\"n\":{i}}}\n", i % 3))
        .collect();
    cli.ok_with_stdin(
        &[
            "send",
            "TelemetryIngest",
            "--key-field",
            "device",
            "--batch",
            "7",
        ],
        &ndjson,
    );
    let mut total = 0;
    for p in ["0", "1"] {
        let out = cli.ok(&[
            "read",
            "TelemetryIngest",
            "--partition",
            p,
            "--max",
            "1000",
            "--json",
        ]);
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            assert!(v["position"].as_str().expect("position").starts_with(p));
            total += 1;
        }
    }
    assert_eq!(total, 51);
    let first = cli.ok(&[
        "read",
        "TelemetryIngest",
        "--from",
        receipt.trim(),
        "--max",
        "1",
    ]);
    assert!(
        first.contains("hello") && first.contains("key=k1"),
        "{first}"
    );
    let consumed = cli.ok(&["consume", "TelemetryIngest", "-c", "reader", "--max", "10"]);
    assert_eq!(consumed.lines().count(), 51);
    assert_eq!(
        cli.ok(&["consume", "TelemetryIngest", "-c", "reader"])
            .lines()
            .count(),
        0,
        "checkpointed"
    );
    let described = cli.ok(&["describe", "TelemetryIngest", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&described).expect("json");
    assert_eq!(v["stream"]["horizon_ms"], 48 * 3600 * 1000);
    assert_eq!(v["consumers"][0]["name"], "reader");
    assert_eq!(v["consumers"][0]["lag"], 0);
    assert!(cli.ok(&["describe", "TelemetryIngest"]).contains("reader"));
    cli.ok(&["delete", "TelemetryIngest"]);
    assert_eq!(cli.ok(&["list"]).trim(), "");
}

#[test]
fn errors_are_clear_and_exit_nonzero() {
    let cli = Cli::new();
    assert!(cli
        .fails(&["describe", "nope"])
        .contains("stream \"nope\" does not exist"));
    assert!(cli
        .fails(&["create", "../escape"])
        .contains("invalid stream name"));
    assert!(cli
        .fails(&["create", "x", "--horizon", "soon"])
        .contains("horizon"));
    assert!(cli
        .fails(&["read", "x", "--url", "pulsar://broker?retention=forever"])
        .contains("retention takes one value"));
    cli.ok(&["create", "s"]);
    assert!(cli.fails(&["create", "s"]).contains("already exists"));
    assert!(cli
        .fails(&["read", "s", "--from", "yesterday"])
        .contains("not a start point"));
    assert!(cli
        .fails(&["read", "s", "--from", "0:5"])
        .contains("beyond the end"));
    assert!(!cli
        .dir
        .path()
        .parent()
        .expect("parent")
        .join("escape")
        .exists());
}

#[test]
fn bench_runs_and_writes_json() {
    let cli = Cli::new();
    let out = cli.dir.path().join("bench.json");
    let out_arg = out.display().to_string();
    let dir_arg = cli.dir.path().join("bench").display().to_string();
    let table = cli.ok(&[
        "bench",
        "--seconds",
        "0.05",
        "--dir",
        &dir_arg,
        "--out",
        &out_arg,
    ]);
    assert!(
        table.contains("raw write+fdatasync") && table.contains("send -> on_event"),
        "{table}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("json file")).expect("json");
    assert!(v["results"].as_array().expect("results").len() >= 12);
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let cli = Cli::new();
    cli.ok(&["create", "s"]);
    let lines: String = (0..5000)
        .map(|i| format!("line-{i}-with-some-padding-to-fill-the-pipe\n"))
        .collect();
    cli.ok_with_stdin(&["send", "s"], &lines);
    let mut child = cli
        .command(&["read", "s", "--max", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader goes away at once, as `| head -0` would
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn send_from_a_slow_stdin_does_not_wait_for_a_full_batch() {
    let cli = Cli::new();
    cli.ok(&["create", "s"]);
    let mut child = cli
        .command(&["send", "s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"first\n").expect("write");
    stdin.flush().expect("flush");
    // The writer keeps stdin open; after the linger the line must be sent and durable, so
    // it survives the sender being killed (the sender holds the directory lock meanwhile).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().expect("kill");
    child.wait().expect("wait");
    drop(stdin);
    let out = cli.ok(&["read", "s", "--json"]);
    assert!(
        out.contains("first"),
        "a line sat in the batch buffer while stdin stayed open"
    );
}

/// Provisioning a real Kinesis stream from the CLI (against kinesalite, which
/// `scripts/test.sh` starts): `create` makes the resource, `describe` shows Kinesis's own
/// view of it (ARN, retention, shards), `delete` removes it.
#[test]
fn provisions_a_kinesis_stream() {
    let cli = Cli::new();
    let endpoint =
        std::env::var("CLOUDSTREAM_KINESALITE").unwrap_or_else(|_| "http://127.0.0.1:4567".into());
    let url = format!(
        "kinesis://us-east-1?endpoint={endpoint}&access_key_id=test&secret_access_key=test&checkpoints=local:{}",
        cli.dir.path().join("checkpoints").display()
    );
    let name = format!("TelemetryIngest-{}", std::process::id());
    let with_url = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--url".to_owned(), url.clone()]);
        all
    };
    let run = |args: &[&str]| {
        let args = with_url(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.ok(&refs)
    };
    run(&["create", &name, "--horizon", "48h", "--partitions", "2"]);
    let described = run(&["describe", &name]);
    for expected in [
        "arn:aws:kinesis:us-east-1:",
        "48 hours",
        "ACTIVE",
        "shardId-000000000000",
        "shardId-000000000001",
    ] {
        assert!(described.contains(expected), "{expected} in:\n{described}");
    }
    run(&["send", &name, "hello", "--key", "k"]);
    let read = run(&["read", &name]);
    assert!(read.contains("hello"), "{read}");
    run(&["delete", &name]);
    assert!(!run(&["list"]).lines().any(|l| l == name));
}

/// `read` says when more records follow its `--max`, and reads to the end with `--max all`.
#[test]
fn read_says_when_more_follow_and_reads_all_when_asked() {
    let cli = Cli::new();
    cli.ok(&["create", "r"]);
    let lines: String = (0..1500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    cli.ok_with_stdin(&["send", "r"], &lines);
    let out = cli.run(&["read", "r", "--max", "2"], "");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("more records follow") && note.contains("--from after:0:1"),
        "{note}"
    );
    let all = cli.run(&["read", "r", "--max", "all"], "");
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 1500);
    assert!(
        !String::from_utf8_lossy(&all.stderr).contains("more records follow"),
        "nothing follows the end"
    );
    assert!(cli.fails(&["read", "r", "--max", "0"]).contains("positive"));
}
