//! The API through a real HTTP client against a real server on a loopback port, over the
//! embedded engine in memory: every route, and every error as a status with a JSON body.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{assert_error, error_code};

/// A client of a test server.
type Server = support::Api;

async fn start() -> Server {
    start_with(cloudstream_server::Limits {
        max_batch_events: 100,
        max_body_bytes: 2 * 1024 * 1024,
        ..cloudstream_server::Limits::default()
    })
    .await
}

async fn start_with(limits: cloudstream_server::Limits) -> Server {
    let client = cloudstream::open("memory://").await.expect("open memory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = cloudstream_server::router(client, limits);
    tokio::spawn(cloudstream_server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    support::Api::new(format!("http://{addr}"))
}

#[tokio::test]
async fn streams_are_created_described_listed_and_deleted() {
    let s = start().await;
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .call(
            s.http
                .put(s.url("/v1/streams/TelemetryIngest"))
                .json(&json!({"horizon": "48h", "partitions": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stream"]["horizon_ms"], 48 * 3600 * 1000);
    assert_eq!(
        body["stream"]["partitions"].as_array().map(Vec::len),
        Some(2)
    );
    let (status, body) = s
        .call(s.http.put(s.url("/v1/streams/TelemetryIngest")))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stream_exists");
    let (_, body) = s.get("/v1/streams").await;
    assert_eq!(body["streams"], json!(["TelemetryIngest"]));
    let (status, body) = s.get("/v1/streams/TelemetryIngest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["stream"]["name"], "TelemetryIngest");
    for (path, body, code) in [
        ("/v1/streams/bad%20name", json!({}), "invalid_name"),
        ("/v1/streams/x", json!({"horizon": "soon"}), "bad_request"),
        (
            "/v1/streams/x",
            json!({"partitions": 0}),
            "invalid_argument",
        ),
        ("/v1/streams/x", json!({"colour": "red"}), "bad_json"),
    ] {
        let (status, got) = s.call(s.http.put(s.url(path)).json(&body)).await;
        assert_eq!(
            (status, error_code(&got)),
            (StatusCode::BAD_REQUEST, code),
            "{path} {body}"
        );
    }
    let (status, _) = s
        .call(s.http.delete(s.url("/v1/streams/TelemetryIngest")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s
        .call(s.http.delete(s.url("/v1/streams/TelemetryIngest")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
    let (status, body) = s.get("/v1/nowhere").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no_route");
}

#[tokio::test]
async fn events_are_sent_one_by_one_and_in_batches_and_read_back() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/t"))).await;
    let (status, body) = s
        .post(
            "/v1/streams/t/events",
            json!({"payload": {"device": 7, "temp": 21.5}, "key": "7", "headers": {"ce_type": "reading"}, "event_time": "2026-11-24T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["position"], "0:0");
    let (status, body) = s
        .post("/v1/streams/t/events", json!({"payload_base64": "AP8="}))
        .await;
    assert_eq!(
        (status, &body["position"]),
        (StatusCode::CREATED, &json!("0:1"))
    );
    let (status, body) = s
        .post(
            "/v1/streams/t/events/batch",
            json!([
                {"payload": "a"},
                {"nonsense": true},
                {"payload": "x".repeat(1024 * 1024 + 1)},
                {"payload": "b", "key": "k"}
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results[0]["position"], "0:2");
    assert_eq!(error_code(&results[1]), "bad_request");
    assert_eq!(error_code(&results[2]), "record_too_large");
    assert_eq!(results[3]["position"], "0:3");
    let (status, body) = s.get("/v1/streams/t/records?from=earliest&max=10").await;
    assert_eq!(status, StatusCode::OK);
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["payload"], r#"{"device":7,"temp":21.5}"#);
    assert_eq!(records[0]["key"], "7");
    assert_eq!(records[0]["headers"]["ce_type"], "reading");
    assert_eq!(records[0]["event_time"], "2026-11-24T10:00:00.000Z");
    assert_eq!(records[1]["payload_base64"], "AP8=");
    let (_, body) = s.get("/v1/streams/t/records?from=after:0:2").await;
    assert_eq!(body["records"][0]["position"], "0:3");
    for (path, status, code) in [
        (
            "/v1/streams/t/records?from=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            "/v1/streams/t/records?max=many",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/streams/t/records?from=0:99",
            StatusCode::BAD_REQUEST,
            "beyond_end",
        ),
        (
            "/v1/streams/nope/records",
            StatusCode::NOT_FOUND,
            "stream_not_found",
        ),
    ] {
        let (got, body) = s.get(path).await;
        assert_eq!((got, error_code(&body)), (status, code), "{path}");
    }
    let (status, body) = s
        .call(
            s.http
                .post(s.url("/v1/streams/t/events"))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_json");
    let (status, body) = s
        .post(
            "/v1/streams/t/events",
            json!({"payload": "a", "payload_base64": "AA=="}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"payload": i.to_string()}))
        .collect();
    let (status, body) = s.post("/v1/streams/t/events/batch", json!(too_many)).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
    );
    let huge = json!([{ "payload": "x".repeat(3 * 1024 * 1024) }]);
    let (status, body) = s.post("/v1/streams/t/events/batch", huge).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

#[tokio::test]
async fn consumers_fetch_with_implicit_checkpoints_and_show_their_lag() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/t"))).await;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"payload": format!("e{i}")}))
        .collect();
    s.post("/v1/streams/t/events/batch", json!(events)).await;
    let fetch = "/v1/streams/t/consumers/reader/fetch?max=3";
    let (status, first) = s.post(fetch, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["records"].as_array().map(Vec::len), Some(3));
    let (_, second) = s.post(fetch, Value::Null).await;
    assert_eq!(
        second["records"][0]["payload"], "e3",
        "the first batch was committed"
    );
    let (status, _) = s
        .post("/v1/streams/t/consumers/reader/commit", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = s.get("/v1/streams/t/consumers").await;
    assert_eq!(body["consumers"][0]["name"], "reader");
    assert_eq!(body["consumers"][0]["lag"], 0);
    let (_, body) = s.get("/v1/streams/t").await;
    assert_eq!(body["consumers"][0]["lag"], 0);
    let (status, body) = s
        .post("/v1/streams/t/consumers/bad%2Fname/fetch", Value::Null)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, body) = s
        .post("/v1/streams/none/consumers/reader/fetch", Value::Null)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
}

/// Reads Server-Sent Events from `response` until at least `n` record events arrived;
/// returns their ids and data. `text` keeps a partly received event for the next call.
async fn sse_records(
    response: &mut reqwest::Response,
    text: &mut String,
    n: usize,
) -> Vec<(String, Value)> {
    sse_events(response, text, "record", n).await
}

/// The next `n` events named `name` (id and JSON data) of a Server-Sent Events answer.
async fn sse_events(
    response: &mut reqwest::Response,
    text: &mut String,
    name: &str,
    n: usize,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            if field("event").as_deref() == Some(name) {
                let data = field("data").expect("data");
                out.push((
                    field("id").expect("id"),
                    serde_json::from_str(&data).expect("json"),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn tail_streams_live_and_resumes_with_last_event_id() {
    let s = start().await;
    s.call(
        s.http
            .put(s.url("/v1/streams/live"))
            .json(&json!({"partitions": 2})),
    )
    .await;
    s.post("/v1/streams/live/events", json!({"payload": "old"}))
        .await;
    let mut response = s
        .http
        .get(s.url("/v1/streams/live/tail"))
        .send()
        .await
        .expect("tail");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "Server-Sent Events"
    );
    let events: Vec<Value> = (0..4)
        .map(|i| json!({"payload": format!("new-{i}"), "key": format!("k{i}")}))
        .collect();
    s.post("/v1/streams/live/events/batch", json!(events)).await;
    let got = sse_records(&mut response, &mut String::new(), 4).await;
    let mut payloads: Vec<&str> = got
        .iter()
        .filter_map(|(_, r)| r["payload"].as_str())
        .collect();
    payloads.sort_unstable();
    assert_eq!(
        payloads,
        ["new-0", "new-1", "new-2", "new-3"],
        "only what came after"
    );
    drop(response);
    // Reconnect with the id of the second event: the events after it in each partition it
    // names come again, and nothing before.
    let (resume_id, _) = got[1].clone();
    s.post(
        "/v1/streams/live/events",
        json!({"payload": "later", "key": "k0"}),
    )
    .await;
    let mut resumed = s
        .http
        .get(s.url("/v1/streams/live/tail?from=earliest"))
        .header("last-event-id", &resume_id)
        .send()
        .await
        .expect("resume");
    let (mut again, mut text) = (Vec::new(), String::new());
    while !again
        .iter()
        .any(|(_, r): &(String, Value)| r["payload"] == "later")
    {
        assert!(again.len() < 10, "the new event never came: {again:?}");
        again.extend(sse_records(&mut resumed, &mut text, 1).await);
    }
    let positions: Vec<&str> = again
        .iter()
        .filter_map(|(_, r)| r["position"].as_str())
        .collect();
    let seen_before: Vec<&str> = resume_id.split(',').collect();
    for p in &positions {
        for before in &seen_before {
            let (bp, bs) = before.split_once(':').expect("P:S");
            let (pp, ps) = p.split_once(':').expect("P:S");
            if bp == pp {
                assert!(
                    ps.parse::<u64>().expect("seq") > bs.parse::<u64>().expect("seq"),
                    "{p} is after {before}"
                );
            }
        }
    }
    // A client that saw nothing yet resumes from the opening cursor, with the default
    // from=latest, and still gets every record written while it was away, in every
    // partition.
    let mut first = s
        .http
        .get(s.url("/v1/streams/live/tail"))
        .send()
        .await
        .expect("tail");
    let opened = sse_events(&mut first, &mut String::new(), "open", 1).await;
    let cursor = opened[0].0.clone();
    assert_eq!(cursor.split(',').count(), 2, "every partition: {cursor}");
    drop(first);
    let away: Vec<Value> = (0..6)
        .map(|i| json!({"payload": format!("away-{i}"), "key": format!("a{i}")}))
        .collect();
    s.post("/v1/streams/live/events/batch", json!(away)).await;
    let mut back = s
        .http
        .get(s.url("/v1/streams/live/tail"))
        .header("last-event-id", &cursor)
        .send()
        .await
        .expect("resume");
    let got = sse_records(&mut back, &mut String::new(), 6).await;
    let mut payloads: Vec<&str> = got
        .iter()
        .filter_map(|(_, r)| r["payload"].as_str())
        .collect();
    payloads.sort_unstable();
    assert_eq!(
        payloads,
        ["away-0", "away-1", "away-2", "away-3", "away-4", "away-5"]
    );
    let partitions: std::collections::BTreeSet<u64> = got
        .iter()
        .filter_map(|(_, r)| r["partition"].as_u64())
        .collect();
    assert_eq!(partitions.len(), 2, "both partitions had records");

    let (status, body) = s
        .call(
            s.http
                .get(s.url("/v1/streams/live/tail"))
                .header("last-event-id", "garbage"),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn metrics_count_requests_events_and_lag_in_prometheus_format() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/m"))).await;
    s.post("/v1/streams/m/events", json!({"payload": "abc"}))
        .await;
    s.post(
        "/v1/streams/m/events/batch",
        json!([{"payload": "de"}, {"payload": "x".repeat(1024 * 1024 + 1)}]),
    )
    .await;
    s.get("/v1/streams/m/records").await;
    s.post("/v1/streams/m/consumers/c/fetch?max=1", Value::Null)
        .await;
    s.post("/v1/streams/m/consumers/c/commit", Value::Null)
        .await;
    let response = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("text")
        .starts_with("text/plain"));
    let text = response.text().await.expect("body");
    for line in [
        r#"cloudstream_events_in_total{stream="m"} 2"#,
        r#"cloudstream_bytes_in_total{stream="m"} 5"#,
        r#"cloudstream_events_out_total{stream="m"} 3"#,
        r#"cloudstream_http_requests_total{route="/v1/streams/{name}/events",status="201"} 1"#,
        r#"cloudstream_http_requests_total{route="/v1/streams/{name}",status="201"} 1"#,
        r#"cloudstream_http_request_duration_seconds_count{route="/v1/streams/{name}/records"} 1"#,
        r#"cloudstream_consumer_lag{stream="m",consumer="c"} 1"#,
        "# TYPE cloudstream_http_request_duration_seconds histogram",
        "# TYPE cloudstream_backend_latency_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    // The engine's fsync latency, bucket by bucket.
    for prefix in [
        r#"cloudstream_backend_latency_seconds_bucket{op="fsync",le="0.001"} "#,
        r#"cloudstream_backend_latency_seconds_bucket{op="fsync",le="+Inf"} "#,
        r#"cloudstream_backend_latency_seconds_count{op="fsync"} "#,
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "{prefix} missing from:\n{text}"
        );
    }
}

/// A request that outlives the deadline ends with 408, and requests beyond the in-flight cap
/// get 503: both with a JSON body.
#[tokio::test]
async fn slow_and_excess_requests_are_refused() {
    let s = start_with(cloudstream_server::Limits {
        request_timeout: std::time::Duration::from_millis(300),
        max_in_flight: 1,
        ..cloudstream_server::Limits::default()
    })
    .await;
    s.call(s.http.put(s.url("/v1/streams/quiet"))).await;
    // A long poll is cut to well within the deadline: it answers (empty), never 408.
    let (status, body) = s
        .post(
            "/v1/streams/quiet/consumers/c/fetch?wait_ms=5000",
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, body["records"].clone()),
        (StatusCode::OK, json!([]))
    );
    // A request whose body trickles in outlives the deadline: 408, with a JSON body.
    let answer = trickling_post(&s.base, "/v1/streams/quiet/events").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"timeout""#), "{answer}");
    // While one such request is in progress, another is refused: 503 overloaded.
    let held = trickling_post(&s.base, "/v1/streams/quiet/events");
    let busy = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.get("/v1/streams").await
    };
    let (held, (status, body)) = tokio::join!(held, busy);
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert!(held.starts_with("HTTP/1.1 408"), "{held}");
}

/// POSTs to `path` with prompt headers and a body that arrives a byte at a time, one every
/// 200 ms; returns the raw answer.
async fn trickling_post(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = br#"{"payload":"slow"}"#;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    for byte in body {
        if tcp.write_all(&[*byte]).await.is_err() {
            break; // the server answered and closed
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer).await;
    answer
}

/// Two clients fetching as members of one consumer never read the same partition at once,
/// and when one stops renewing its leases the other takes its partitions over and gets its
/// uncommitted records again.
#[tokio::test]
async fn consumer_group_members_share_partitions_over_http() {
    let s = start().await;
    s.call(
        s.http
            .put(s.url("/v1/streams/g"))
            .json(&json!({"partitions": 4})),
    )
    .await;
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"payload": format!("e{i}"), "key": format!("device-{i}")}))
        .collect();
    s.post("/v1/streams/g/events/batch", json!(events)).await;
    let fetch = |member: &str| {
        format!("/v1/streams/g/consumers/group/fetch?member={member}&lease_ms=1000&max=1000")
    };
    let (status, alone) = s.post(&fetch("a"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone["records"].as_array().map(Vec::len), Some(40));
    let (_, b_first) = s.post(&fetch("b"), Value::Null).await;
    assert_eq!(
        b_first["records"].as_array().map(Vec::len),
        Some(0),
        "a holds every partition"
    );
    s.post(&fetch("a"), Value::Null).await; // commits, gives back half
    s.post(&fetch("b"), Value::Null).await; // takes the free half
    let more: Vec<Value> = (40..80)
        .map(|i| json!({"payload": format!("e{i}"), "key": format!("device-{i}")}))
        .collect();
    s.post("/v1/streams/g/events/batch", json!(more)).await;
    let (_, got_a) = s.post(&fetch("a"), Value::Null).await;
    let (_, got_b) = s.post(&fetch("b"), Value::Null).await;
    let partitions = |v: &Value| -> std::collections::BTreeSet<u64> {
        v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["partition"].as_u64())
            .collect()
    };
    let (pa, pb) = (partitions(&got_a), partitions(&got_b));
    assert!(pa.is_disjoint(&pb), "{pa:?} {pb:?}");
    let count = |v: &Value| v["records"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&got_a) + count(&got_b),
        40,
        "each new record to one member"
    );
    // b goes silent without committing; after its lease, a gets b's records again.
    s.post("/v1/streams/g/consumers/group/commit?member=a", Value::Null)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (_, taken_over) = s.post(&fetch("a"), Value::Null).await;
    assert_eq!(
        count(&taken_over),
        count(&got_b),
        "b's uncommitted batch redelivered"
    );
    let (status, body) = s
        .post(
            "/v1/streams/g/consumers/group/fetch?member=bad%2Fid",
            Value::Null,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
}

#[tokio::test]
async fn events_arrive_as_raw_bytes_cloudevents_and_ndjson() {
    let s = start().await;
    s.call(s.http.put(s.url("/v1/streams/ce"))).await;
    let send = |request: reqwest::RequestBuilder| s.call(request);
    let events = s.url("/v1/streams/ce/events");

    // Raw bytes, with key, event time and headers as HTTP headers.
    let (status, body) = send(
        s.http
            .post(&events)
            .header("content-type", "application/octet-stream")
            .header("cloudstream-key", "device-7")
            .header("cloudstream-event-time", "2026-11-24T10:00:00.250Z")
            .header("cloudstream-header-unit", "celsius")
            .body(vec![0xff_u8, 0x00, 0x2a]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A CloudEvent in structured mode, with JSON data and the partitioning extension.
    let (status, body) = send(
        s.http
            .post(&events)
            .header("content-type", "application/cloudevents+json")
            .body(
                json!({
                    "specversion": "1.0", "id": "e-1", "source": "/devices/7",
                    "type": "telemetry.reading", "datacontenttype": "application/json",
                    "time": "2026-11-24T10:00:01Z", "partitionkey": "device-7",
                    "data": {"temp": 21.5}
                })
                .to_string(),
            ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A CloudEvent in binary mode: attributes as ce-* headers, the body as data.
    let (status, body) = send(
        s.http
            .post(&events)
            .header("ce-specversion", "1.0")
            .header("ce-id", "e-2")
            .header("ce-source", "/devices/8")
            .header("ce-type", "telemetry.note")
            .header("content-type", "text/plain")
            .body("door open"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A CloudEvent without its id is refused, saying so.
    let (status, body) = send(
        s.http
            .post(&events)
            .header("ce-specversion", "1.0")
            .header("ce-source", "/x")
            .header("ce-type", "t")
            .body("x"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("id"),
        "{body}"
    );

    let (_, read) = s.get("/v1/streams/ce/records?from=earliest").await;
    let records = read["records"].as_array().expect("records");
    assert_eq!(records.len(), 3, "{read}");
    assert_eq!(records[0]["payload_base64"], "/wAq");
    assert_eq!(records[0]["key"], "device-7");
    assert_eq!(records[0]["headers"], json!({"unit": "celsius"}));
    assert_eq!(records[0]["event_time"], "2026-11-24T10:00:00.250Z");
    assert_eq!(records[1]["payload"], r#"{"temp":21.5}"#);
    assert_eq!(records[1]["key"], "device-7");
    assert_eq!(records[1]["headers"]["ce_id"], "e-1");
    assert_eq!(records[1]["headers"]["ce_type"], "telemetry.reading");
    assert_eq!(records[1]["headers"]["content-type"], "application/json");
    assert_eq!(records[1]["event_time"], "2026-11-24T10:00:01.000Z");
    assert_eq!(records[2]["payload"], "door open");
    assert_eq!(records[2]["headers"]["ce_source"], "/devices/8");
    assert_eq!(records[2]["headers"]["content-type"], "text/plain");

    // NDJSON batches: one result per line, a bad line failing alone.
    let batch = s.url("/v1/streams/ce/events/batch");
    let (status, body) = send(
        s.http
            .post(&batch)
            .header("content-type", "application/x-ndjson")
            .body("{\"payload\": \"a\"}\n\n{\"payload\": 1, \"oops\": true}\n{\"payload\": \"c\", \"key\": \"k\"}\n"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results[0]["position"].is_string() && results[2]["position"].is_string());
    assert_eq!(error_code(&results[1]), "bad_request");
    // A batch of structured CloudEvents.
    let (status, body) = send(
        s.http
            .post(&batch)
            .header("content-type", "application/cloudevents-batch+json")
            .body(
                json!([
                    {"specversion": "1.0", "id": "b-1", "source": "/s", "type": "t", "data": "one"},
                    {"specversion": "0.3", "id": "b-2", "source": "/s", "type": "t", "data": "two"}
                ])
                .to_string(),
            ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["results"][0]["position"].is_string(), "{body}");
    assert_eq!(error_code(&body["results"][1]), "bad_request");
    // Any other batch body is a 415 that names the types accepted.
    let (status, body) = send(
        s.http
            .post(&batch)
            .header("content-type", "text/csv")
            .body("a,b"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&body), "unsupported_media_type");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let s = start().await;
    let (status, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/v1/capabilities", "get"),
        ("/v1/streams", "get"),
        ("/v1/streams/{name}", "put"),
        ("/v1/streams/{name}", "delete"),
        ("/v1/streams/{name}/events", "post"),
        ("/v1/streams/{name}/events/batch", "post"),
        ("/v1/streams/{name}/partitions/{partition}/events", "post"),
        ("/v1/streams/{name}/records", "get"),
        ("/v1/streams/{name}/tail", "get"),
        ("/v1/streams/{name}/consumers/{consumer}/fetch", "post"),
        ("/v1/streams/{name}/consumers/{consumer}/checkpoint", "put"),
        (
            "/v1/streams/{name}/consumers/{consumer}/leases/{lease}",
            "put",
        ),
        ("/v1/streams/{name}/webhooks/{id}", "put"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    // A response that drifts from the document is caught: a list body with an extra field
    // fails the check the whole suite relies on.
    let (_, mut described) = s.get("/v1/streams").await;
    described["surprise"] = json!(1);
    let drifted = support::verify(&doc, "GET", "/v1/streams", StatusCode::OK, &described);
    assert!(
        drifted.is_err_and(|why| why.contains("surprise")),
        "an undocumented field passed the schema check"
    );
}

/// The routes the `http://` client backend is built on, called directly: capabilities,
/// appends to one partition, reads by partition start with a long poll, checkpoints,
/// consumer deletion and leases, with their errors.
#[tokio::test]
async fn the_primitive_routes_answer_as_documented() {
    let s = start().await;
    let (status, body) = s.get("/v1/capabilities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["backend"], "memory");
    assert_eq!(body["capabilities"]["dense_sequences"], true);
    s.call(
        s.http
            .put(s.url("/v1/streams/p"))
            .json(&json!({"partitions": 2})),
    )
    .await;

    // All-or-nothing appends to one partition.
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/1/events",
            json!([{"payload_base64": "AAE="}, {"payload": "b", "key": "k"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["positions"], json!(["1:0", "1:1"]));
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/2/events",
            json!([{"payload": "x"}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .post(
            "/v1/streams/p/partitions/0/events",
            json!([{"payload": "ok"}, {"payload": "a", "payload_base64": "AA=="}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = s.get("/v1/streams/p/records?partition=0").await;
    assert_eq!(
        body["records"],
        json!([]),
        "a refused append stores nothing"
    );

    // Reads by partition start, with byte limits and a long poll that times out empty.
    let (status, body) = s
        .get("/v1/streams/p/records?partition=1&start=after:0&max_bytes=1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"][0]["position"], "1:1");
    let (status, body) = s
        .get("/v1/streams/p/records?partition=1&start=at:2&wait_ms=50")
        .await;
    assert_eq!(
        (status, body["records"].clone()),
        (StatusCode::OK, json!([]))
    );
    let (status, body) = s.get("/v1/streams/p/records?partition=1&start=at:9").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "beyond_end");
    assert_eq!(body["error"]["details"]["next"], "1:2");
    let (status, body) = s
        .get("/v1/streams/p/records?start=earliest&from=earliest")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    // Checkpoints: none, set per partition, read back; a partition the stream lacks is a 400.
    let checkpoint = "/v1/streams/p/consumers/c/checkpoint";
    let (status, body) = s.get(checkpoint).await;
    assert_eq!(
        (status, body["checkpoint"].clone()),
        (StatusCode::OK, Value::Null)
    );
    let (status, _) = s
        .call(s.http.put(s.url(checkpoint)).json(&json!({"1": "after:0"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = s.get(checkpoint).await;
    // The engine keeps dense offsets: after 0 is at 1.
    assert_eq!(body["checkpoint"], json!({"1": "at:1"}));
    let (status, _) = s
        .call(
            s.http
                .put(s.url(checkpoint))
                .json(&json!({"5": "earliest"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s
        .call(s.http.put(s.url(checkpoint)).json(&json!({"0": "soon"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = s.get("/v1/streams/p/consumers").await;
    assert_eq!(body["consumers"][0]["lag"], 1);

    // Leases: taken, refused to another member, listed, given back, taken by the other.
    let lease = "/v1/streams/p/consumers/g/leases/partition:0";
    let take = |member: &str| {
        s.call(
            s.http
                .put(s.url(lease))
                .query(&[("member", member), ("ttl_ms", "60000")]),
        )
    };
    assert_eq!(take("a").await.1["held"], true);
    assert_eq!(take("b").await.1["held"], false);
    let (_, body) = s.get("/v1/streams/p/consumers/g/leases").await;
    assert_eq!(body["leases"], json!({"partition:0": "a"}));
    let (status, _) = s
        .call(s.http.delete(s.url(lease)).query(&[("member", "a")]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(take("b").await.1["held"], true);
    let (status, body) = s
        .call(s.http.put(s.url(lease)).query(&[("member", "not a name")]))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, _) = s.call(s.http.put(s.url(lease))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "member is required");

    // A REST consumer follows each fetch's own settings, and a checkpoint set for it.
    let fetch = |max: u32| {
        s.call(
            s.http
                .post(s.url("/v1/streams/p/consumers/rest/fetch"))
                .query(&[("max", max)]),
        )
    };
    assert_eq!(
        fetch(1).await.1["records"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        fetch(5).await.1["records"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, _) = s
        .call(
            s.http
                .put(s.url("/v1/streams/p/consumers/rest/checkpoint"))
                .json(&json!({"1": "earliest"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = fetch(5).await;
    let positions: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["position"].as_str())
        .collect();
    assert_eq!(positions, ["1:0", "1:1"], "from the checkpoint just set");

    // A path parameter that does not parse, and a method a route does not take, are JSON
    // errors like the rest.
    let (status, body) = s
        .post("/v1/streams/p/partitions/abc/events", json!([]))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_path");
    let (status, body) = s.post("/v1/streams", json!({})).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Deleting a consumer says whether it existed.
    let (status, body) = s
        .call(s.http.delete(s.url("/v1/streams/p/consumers/c")))
        .await;
    assert_eq!(
        (status, body["existed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (_, body) = s
        .call(s.http.delete(s.url("/v1/streams/p/consumers/c")))
        .await;
    assert_eq!(body["existed"], false);
    let (status, body) = s
        .call(s.http.delete(s.url("/v1/streams/nope/consumers/c")))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
}

/// Concurrent single-event sends are written together (one batch per round) yet each gets
/// its own answer: every one stored once, at its own position, a bad one failing alone.
#[tokio::test]
async fn concurrent_sends_each_get_their_own_answer() {
    let s = start().await;
    s.call(
        s.http
            .put(s.url("/v1/streams/many"))
            .json(&json!({"partitions": 3})),
    )
    .await;
    let sends = (0..60).map(|i| {
        let body = if i == 30 {
            json!({"payload": "x".repeat(1024 * 1024 + 1)})
        } else {
            json!({"payload": format!("e{i}")})
        };
        s.post("/v1/streams/many/events", body)
    });
    let answers = futures::future::join_all(sends).await;
    let mut positions = std::collections::BTreeSet::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        if i == 30 {
            assert_eq!(
                (*status, error_code(body)),
                (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large")
            );
        } else {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            assert!(positions.insert(body["position"].to_string()), "{body}");
        }
    }
    let mut stored = Vec::new();
    for p in 0..3 {
        let (_, body) = s
            .get(&format!("/v1/streams/many/records?partition={p}&max=100"))
            .await;
        stored.extend(
            body["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| r["payload"].as_str().unwrap_or("").to_owned()),
        );
    }
    stored.sort();
    let mut expected: Vec<String> = (0..60)
        .filter(|&i| i != 30)
        .map(|i| format!("e{i}"))
        .collect();
    expected.sort();
    assert_eq!(stored, expected, "each stored once");
}
