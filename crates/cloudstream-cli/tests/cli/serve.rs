//! `cloudstream serve`: the REST API from the binary, and acknowledged events surviving SIGKILL.

use super::*;

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
