//! The live tail, metrics, protection against slow and excess requests, and the OpenAPI document.

use super::*;

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
    let (_, fetched) = s
        .post("/v1/streams/m/consumers/c/fetch?max=1", Value::Null)
        .await;
    let token = fetched["ack"].as_str().expect("ack token");
    s.post(
        &format!("/v1/streams/m/consumers/c/commit?ack={token}"),
        Value::Null,
    )
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
        ("/v1/streams/{name}/deliveries/{id}", "put"),
        ("/v1/streams/{name}/aggregations/{id}", "put"),
        ("/v1/streams/{name}/aggregations", "get"),
        ("/v1/streams/{name}/stats", "get"),
        ("/v1/whoami", "get"),
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
