//! Aggregations run by the server (`/v1/streams/{name}/aggregations`), end to end: a real
//! server on a loopback port over the embedded engine on disk; results on the output
//! stream, each window of each group once across a restart; late records on the late
//! stream; what a registration may not do refused.

mod support;

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::assert_error;
use support::server::{serve, Served};

/// 2025-11-24T16:30:00Z, in seconds.
const BASE: u64 = 1_764_001_800;

async fn start(data: &Path, state: &Path) -> Served {
    let config = cloudstream_server::Config {
        state_dir: Some(state.to_owned()),
        ..Default::default()
    };
    serve(data, config).await
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Sends a reading of each of two devices every 10 s of event time, from minute `from` to
/// before minute `to`: six readings per device and minute, temperatures 20 + the second.
async fn send_minutes(api: &Served, from: u64, to: u64) {
    let events: Vec<Value> = (from * 6..to * 6)
        .flat_map(|tick| {
            ["a", "b"].map(|device| {
                let second = tick * 10;
                json!({
                    "key": device,
                    "payload": json!({"device": device, "t": 20 + second % 60}).to_string(),
                    "event_time": humantime::format_rfc3339(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(BASE + second)
                    ).to_string(),
                })
            })
        })
        .collect();
    let (status, body) = api
        .post("/v1/streams/TelemetryIngest/events/batch", json!(events))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Every record's payload in `stream` (one partition), as JSON.
async fn results(api: &Served, stream: &str) -> Vec<Value> {
    let (status, body) = api
        .get(&format!(
            "/v1/streams/{stream}/records?from=earliest&max=1000"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        // JSON events (the results) come as JSON, others as text.
        .map(|r| match &r["payload"] {
            Value::String(text) => serde_json::from_str(text).expect("JSON text"),
            json => json.clone(),
        })
        .collect()
}

const PATH: &str = "/v1/streams/TelemetryIngest/aggregations/per-minute";

fn spec() -> Value {
    json!({
        "to": "PerMinute",
        "late_to": "Late",
        "window": "tumbling 1m",
        "lateness": "5s",
        "group_by": ["device"],
        "measures": ["readings = count", "avg_t = avg(t)", "max_t = max(t)"],
    })
}

#[tokio::test]
async fn an_aggregation_sends_each_window_once_across_a_restart() {
    let (data, state) = (tempdir(), tempdir());
    let api = start(data.path(), state.path()).await;
    api.create_stream("TelemetryIngest").await;
    let (status, view) = api.put(PATH, spec()).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["to"], "PerMinute");
    assert_eq!(view["lateness"], "5s");
    assert_eq!(view["start"], "earliest");
    // Minutes 0 to 2 close once minute 3's readings pass their end and the lateness.
    send_minutes(&api, 0, 4).await;
    api.view_when(PATH, "48 records aggregated", |v| v["delivered"] == 48)
        .await;
    support::server::eventually("6 results", || async {
        (results(&api, "PerMinute").await.len() == 6).then_some(())
    })
    .await;
    let first = &results(&api, "PerMinute").await[0];
    assert_eq!(first["readings"], 6, "{first}");
    assert_eq!(first["avg_t"], 45.0, "{first}");
    assert_eq!(first["max_t"], 70.0, "{first}");
    assert_eq!(first["window_start"], "2025-11-24T16:30:00.000Z");
    api.stop().await;

    // The next server goes on from the saved windows: minute 3 is not lost, nothing twice.
    let api = start(data.path(), state.path()).await;
    send_minutes(&api, 4, 6).await;
    support::server::eventually("10 results", || async {
        (results(&api, "PerMinute").await.len() == 10).then_some(())
    })
    .await;
    let all = results(&api, "PerMinute").await;
    let mut windows: Vec<(String, String)> = all
        .iter()
        .map(|r| (r["window_start"].to_string(), r["device"].to_string()))
        .collect();
    windows.sort();
    windows.dedup();
    assert_eq!(windows.len(), 10, "{all:?}");
    assert!(all.iter().all(|r| r["readings"] == 6), "{all:?}");

    // A reading of minute 0 is late now: it goes to the late stream as it was.
    send_minutes(&api, 0, 1).await;
    support::server::eventually("12 late records", || async {
        (results(&api, "Late").await.len() == 12).then_some(())
    })
    .await;

    // What it computes and where it started are fixed; the same spec again is a 200.
    let mut changed = spec();
    changed["window"] = json!("tumbling 5m");
    let (status, body) = api.put(PATH, changed).await;
    assert_error(status, &body, StatusCode::CONFLICT, "aggregation_changed");
    let mut restarted = spec();
    restarted["start"] = json!("latest");
    let (status, body) = api.put(PATH, restarted).await;
    assert_error(status, &body, StatusCode::CONFLICT, "aggregation_changed");
    let (status, view) = api.put(PATH, spec()).await;
    assert_eq!(status, StatusCode::OK, "{view}");

    // Its checkpoint goes with its saved windows: it is not moved or deleted alone.
    let consumer = "/v1/streams/TelemetryIngest/consumers/aggregate-per-minute";
    let (status, body) = api
        .put(
            &format!("{consumer}/checkpoint"),
            json!({ "0": "earliest" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "aggregation_changed");
    let (status, body) = api.delete(consumer).await;
    assert_error(status, &body, StatusCode::CONFLICT, "consumer_in_use");

    // Deleting it deletes its consumer and its saved windows; its results stay.
    let saved = state
        .path()
        .join("aggregations/TelemetryIngest/aggregate-per-minute");
    assert!(saved.exists());
    let (status, _) = api.delete(PATH).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!saved.exists(), "the saved windows are gone");
    let (status, body) = api.get(PATH).await;
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "aggregation_not_found",
    );
    assert_eq!(results(&api, "PerMinute").await.len(), 10);
    api.stop().await;
}

#[tokio::test]
async fn registrations_that_cannot_run_are_refused() {
    let (data, state) = (tempdir(), tempdir());
    let api = start(data.path(), state.path()).await;
    api.create_stream("TelemetryIngest").await;
    let with = |field: &str, value: Value| {
        let mut s = spec();
        s[field] = value;
        s
    };
    for (body, code, status) in [
        (
            with("window", json!("rolling 1m")),
            "invalid_aggregation",
            422,
        ),
        (
            with("measures", json!(["t = median(t)"])),
            "invalid_aggregation",
            422,
        ),
        (with("measures", json!([])), "invalid_aggregation", 422),
        (with("lateness", json!("soon")), "invalid_aggregation", 422),
        (
            with("to", json!("TelemetryIngest")),
            "invalid_aggregation",
            422,
        ),
        (
            with("late_to", json!("PerMinute")),
            "invalid_aggregation",
            422,
        ),
        (with("from", json!("Other")), "bad_request", 400),
        (with("consumer", json!("mine")), "bad_request", 400),
        (with("to", json!("a/b")), "invalid_name", 400),
        (with("colour", json!("red")), "bad_json", 400),
    ] {
        let (got, answer) = api.put(PATH, body.clone()).await;
        let status = StatusCode::from_u16(status).expect("a status");
        assert_error(got, &answer, status, code);
    }
    let (status, body) = api.put("/v1/streams/Nowhere/aggregations/x", spec()).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
    api.stop().await;
}
