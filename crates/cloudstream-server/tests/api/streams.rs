//! Streams, sends (JSON, batches, raw bytes, CloudEvents, NDJSON) and reads.

use super::*;

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
    // A JSON payload comes back as JSON, not as a string to parse again; `payload=text`
    // asks for the exact text.
    assert_eq!(records[0]["payload"], json!({"device": 7, "temp": 21.5}));
    let (_, text) = s
        .get("/v1/streams/t/records?from=earliest&max=1&payload=text")
        .await;
    assert_eq!(text["records"][0]["payload"], r#"{"device":7,"temp":21.5}"#);
    let (_, fetched) = s
        .post("/v1/streams/t/consumers/json/fetch?max=1", Value::Null)
        .await;
    assert_eq!(
        fetched["records"][0]["payload"],
        json!({"device": 7, "temp": 21.5})
    );
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
            StatusCode::RANGE_NOT_SATISFIABLE,
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
    assert_eq!(records[1]["payload"], json!({"temp": 21.5}));
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

#[tokio::test]
async fn stats_count_what_went_through_lately() {
    let s = start().await;
    let (status, _) = s.put("/v1/streams/rates", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = s.get("/v1/streams/rates/stats").await;
    assert_eq!(body["interval_ms"], 5_000);
    let sum = |body: &Value, field: &str| -> u64 {
        body[field]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).sum())
            .unwrap_or_default()
    };
    assert_eq!(sum(&body, "events_in"), 0);
    assert_eq!(body["events_in"].as_array().map(Vec::len), Some(60));
    let (status, _) = s
        .post(
            "/v1/streams/rates/events/batch",
            json!([{"payload": "a"}, {"payload": "bb"}, {"payload": "ccc"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.get("/v1/streams/rates/records?from=earliest").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.get("/v1/streams/rates/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sum(&body, "events_in"), 3, "{body}");
    assert_eq!(sum(&body, "bytes_in"), 6, "{body}");
    assert_eq!(sum(&body, "events_out"), 3, "{body}");
    let (status, body) = s.get("/v1/streams/nowhere/stats").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
}
