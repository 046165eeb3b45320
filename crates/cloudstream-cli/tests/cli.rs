//! The `cloudstream` binary run as a user runs it: a real process on a temporary data
//! directory, its output and exit status checked.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Cli {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn url(&self) -> String {
        format!("local://{}", self.dir.path().display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cloudstream"));
        c.args(args)
            .env("CLOUDSTREAM_URL", self.url())
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cloudstream");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, "")
    }

    fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).expect("utf8")
    }
}

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
        .fails(&["read", "x", "--url", "kafka://broker"])
        .contains("not available in this build"));
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

/// `cloudstream serve` answers the REST API on the address it is given; a real HTTP client
/// (curl, as a user would) sends an event and reads it back.
#[test]
fn serves_the_rest_api() {
    let cli = Cli::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = cli
        .command(&["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://{listen}");
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--retry",
                "50",
                "--retry-connrefused",
                "--retry-delay",
                "0",
            ])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8(out.stdout).expect("utf8")
    };
    let created = curl(&[
        "-X",
        "PUT",
        &format!("{base}/v1/streams/s"),
        "-d",
        r#"{"horizon":"48h"}"#,
        "-H",
        "content-type: application/json",
    ]);
    assert!(created.contains(r#""name":"s""#), "{created}");
    let sent = curl(&[
        &format!("{base}/v1/streams/s/events"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"payload":"hello"}"#,
    ]);
    assert!(sent.contains(r#""position":"0:0""#), "{sent}");
    let read = curl(&[&format!("{base}/v1/streams/s/records")]);
    assert!(read.contains(r#""payload":"hello""#), "{read}");
    // The command line itself against the server: --url http://...
    cli.ok(&["--url", &base, "send", "s", "from-the-cli"]);
    let read = cli.ok(&["--url", &base, "read", "s", "--from", "earliest"]);
    assert!(
        read.contains("hello") && read.contains("from-the-cli"),
        "{read}"
    );
    let consumed = cli.ok(&["--url", &base, "consume", "s", "--consumer", "c"]);
    assert!(consumed.contains("from-the-cli"), "{consumed}");
    let described = cli.ok(&["--url", &base, "describe", "s"]);
    assert!(described.contains('c'), "{described}");
    server.kill().expect("stop server");
    let _ = server.wait();
}

/// A port that was free on the loopback interface a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A minimal blocking HTTP/1.1 client on one keep-alive connection, made again after a
/// failure: requests with a JSON body and a Content-Length, responses with a Content-Length
/// (every answer of the API but the live tail).
struct Http {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: &str) -> Self {
        Http {
            addr: addr.to_owned(),
            conn: None,
        }
    }

    /// Sends one request; returns the status and the body. A failure (the server gone, the
    /// connection reset) is an error, and the next request connects again.
    fn request(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        let result = http_exchange(conn, &self.addr, method, path, body);
        if !matches!(result, Ok((_, _, true))) {
            // An error, or the server closes the connection after this answer.
            self.conn = None;
        }
        result.map(|(status, body, _)| (status, body))
    }
}

/// One request and its response on `conn`: the status, the body, and whether the connection
/// stays open.
fn http_exchange(
    conn: &mut BufReader<TcpStream>,
    host: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String, bool)> {
    use std::io::{Error, ErrorKind};
    let bad = |what: String| Error::new(ErrorKind::InvalidData, what);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "the connection closed before an answer",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("not a status line: {line:?}")))?;
    let (mut length, mut keep_alive) = (0_usize, true);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the connection closed within the headers",
            ));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad(format!("not a header: {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .parse()
                .map_err(|_| bad(format!("bad content-length {value:?}")))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(format!("transfer-encoding {value} is not supported")));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        }
    }
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer)?;
    let answer = String::from_utf8(answer).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    Ok((status, answer, keep_alive))
}

/// A `cloudstream serve` process on a free loopback port, killed when dropped so that a
/// failing test leaves none behind.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    /// Starts `cloudstream serve --url URL` and waits until it answers `/healthz`.
    fn start(cli: &Cli, url: &str) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = cli
            .command(&["serve", "--listen", &addr, "--url", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut served = Served { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = served.child.try_wait().expect("try_wait") {
                panic!("cloudstream serve exited at start: {status}");
            }
            if let Ok((200, _)) = Http::new(&served.addr).request("GET", "/healthz", "") {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "cloudstream serve did not answer on {}",
                served.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `sync=always` (the default) an event is acknowledged only once it is on disk, so
/// every event a client saw acknowledged (2xx) survives a SIGKILL of the server mid-load, and
/// a new server on the same directory returns each exactly once. Clients do not retry, so an
/// event is written at most once; only those in flight at the kill may be there unacknowledged.
#[cfg(unix)]
#[test]
fn acknowledged_events_survive_sigkill_of_the_server() {
    use std::os::unix::process::ExitStatusExt;

    const CLIENTS: usize = 4;
    const PARTITIONS: u32 = 2;
    let cli = Cli::new();
    let url = cli.url();
    let mut server = Served::start(&cli, &url);
    let (status, body) = Http::new(&server.addr)
        .request(
            "PUT",
            "/v1/streams/s",
            &format!(r#"{{"partitions":{PARTITIONS}}}"#),
        )
        .expect("create the stream");
    assert_eq!(status, 201, "{body}");

    // Each client sends "c{client}-{n}" (keyed by itself, so both partitions fill) until the
    // server is gone; it keeps the payloads acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut http = Http::new(&addr);
                let (mut acknowledged, mut refused) = (Vec::new(), 0_u64);
                for n in 0_u64.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let payload = format!("c{c}-{n}");
                    let event = format!(r#"{{"payload":"{payload}","key":"{payload}"}}"#);
                    match http.request("POST", "/v1/streams/s/events", &event) {
                        Ok((status, _)) if (200..300).contains(&status) => {
                            acknowledged.push(payload)
                        }
                        Ok(_) => refused += 1,
                        Err(_) => break,
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        clients.iter().all(|c| !c.is_finished()),
        "a client stopped before the kill"
    );
    server.child.kill().expect("SIGKILL the server");
    let status = server.child.wait().expect("reap the server");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for client in clients {
        let (a, r) = client.join().expect("client thread");
        acknowledged.extend(a);
        refused += r;
    }
    assert!(!acknowledged.is_empty(), "nothing was acknowledged");
    drop(server);

    // A new server on the same directory: read every partition back, page by page.
    let server = Served::start(&cli, &url);
    let mut http = Http::new(&server.addr);
    let mut stored: HashMap<String, usize> = HashMap::new();
    for partition in 0..PARTITIONS {
        let mut from = "earliest".to_owned();
        loop {
            let path = format!("/v1/streams/s/records?partition={partition}&from={from}&max=10000");
            let (status, body) = http.request("GET", &path, "").expect("read");
            assert_eq!(status, 200, "{path}: {body}");
            let page: serde_json::Value = serde_json::from_str(&body).expect("json");
            let records = page["records"].as_array().expect("records");
            let Some(last) = records.last() else {
                break;
            };
            for r in records {
                let payload = r["payload"].as_str().expect("a text payload");
                *stored.entry(payload.to_owned()).or_default() += 1;
            }
            from = format!("after:{}", last["position"].as_str().expect("position"));
        }
    }
    drop(server);

    let acknowledged_set: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        acknowledged_set.len(),
        acknowledged.len(),
        "payloads are unique"
    );
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|p| !stored.contains_key(*p))
        .collect();
    let duplicated: Vec<(&String, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    let unacknowledged: Vec<&String> = stored
        .keys()
        .filter(|p| !acknowledged_set.contains(p))
        .collect();
    println!(
        "sigkill: {} events acknowledged before the kill, {} refused; after restart {} records, {} acknowledged ones lost, {} duplicated, {} stored without an acknowledgement (in flight at the kill)",
        acknowledged.len(),
        refused,
        stored.values().sum::<usize>(),
        lost.len(),
        duplicated.len(),
        unacknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events were lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "events stored more than once: {duplicated:?}"
    );
    // Each client has at most one request in flight.
    assert!(
        unacknowledged.len() <= CLIENTS,
        "more events stored than acknowledged or in flight: {unacknowledged:?}"
    );
}
