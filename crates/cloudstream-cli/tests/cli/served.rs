//! A `cloudstream serve` process for tests, and a minimal blocking HTTP/1.1 client for it.

use super::*;

/// A port that was free on the loopback interface a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A minimal blocking HTTP/1.1 client on one keep-alive connection, made again after a
/// failure: requests with a JSON body and a Content-Length, responses with a Content-Length
/// (every answer of the API but the live tail).
pub(crate) struct Http {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    pub(crate) fn new(addr: &str) -> Self {
        Http {
            addr: addr.to_owned(),
            conn: None,
        }
    }

    /// Sends one request; returns the status and the body. A failure (the server gone, the
    /// connection reset) is an error, and the next request connects again.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
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
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Served {
    /// Starts `cloudstream serve --url URL` and waits until it answers `/healthz`.
    pub(crate) fn start(cli: &Cli, url: &str) -> Self {
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
