//! The load generator's side: hyper connections without a pool, the scenarios (single sends, batches, reads), and each connection's tally.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::{BoxError, BATCH_EVENTS, PAYLOAD_BYTES, STREAM};

/// One HTTP/1.1 keep-alive connection to `addr`; its driver runs as a task of its own.
pub(crate) async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
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
pub(crate) async fn exchange(
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
pub(crate) async fn call(
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
pub(crate) fn payload(prefix: &str) -> String {
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
pub(crate) struct Scenario {
    /// Its name in the output.
    pub(crate) name: &'static str,
    /// The route posted to.
    pub(crate) uri: Uri,
    /// The `Host` header.
    pub(crate) host: HeaderValue,
    /// One pre-serialized body per connection.
    pub(crate) bodies: Vec<Bytes>,
    /// Events in each request.
    pub(crate) events_per_request: u64,
    /// The status of a success.
    pub(crate) expected: StatusCode,
    /// Responses carry one result per event, each checked for an error.
    pub(crate) batch: bool,
}

impl Scenario {
    /// Single events over `connections` connections, keyed by connection.
    pub(crate) fn single(host: &HeaderValue, connections: usize) -> Self {
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
    pub(crate) fn batch(host: &HeaderValue, connections: usize) -> Self {
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
    pub(crate) fn accepted(&self, body: &[u8]) -> u64 {
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
pub(crate) fn uri(path: &str) -> Uri {
    path.parse().expect("a valid path")
}

/// When a scenario's requests count, and when they stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Requests started from here on are measured.
    pub(crate) measure_start: Instant,
    /// No request starts after this.
    pub(crate) end: Instant,
}

/// What one connection saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Latency of each measured request, in microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Measured requests answered (whatever the answer).
    pub(crate) requests: u64,
    /// Events stored by measured requests.
    pub(crate) events: u64,
    /// Request-body bytes of measured requests.
    pub(crate) body_bytes: u64,
    /// Requests that failed, warm-up included: no answer, an unexpected status, or a batch
    /// with failed events.
    pub(crate) errors: u64,
    /// Events not stored by the requests that failed with an answer.
    pub(crate) event_errors: u64,
    /// Events acknowledged, warm-up included: what the stream must hold at the end.
    pub(crate) acknowledged_events: u64,
    /// When the last measured request finished.
    pub(crate) last_done: Option<Instant>,
    /// The first failure, to show.
    pub(crate) first_error: Option<String>,
}

impl Tally {
    /// Counts a failed request.
    pub(crate) fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }
}

/// Posts `body` on one keep-alive connection, request after request, until the window ends.
/// A connection that fails is counted and replaced; one that cannot be made ends the task.
pub(crate) async fn drive(
    addr: SocketAddr,
    scenario: Arc<Scenario>,
    body: Bytes,
    window: Window,
) -> Tally {
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
