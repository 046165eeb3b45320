//! Deliveries run by the server (`/v1/streams/{name}/deliveries`), end to end: a real server
//! on a loopback port over the embedded engine on disk, writing files into a real
//! directory below its `deliver_root`; registrations kept in its state directory and started
//! again by the next server; sinks it may not write to refused.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::{serve, Served};
use support::{assert_error, error_code};

async fn start(data: &Path, state: &Path, root: Option<PathBuf>) -> Served {
    let config = cloudstream_server::Config {
        state_dir: Some(state.to_owned()),
        deliver_root: root,
        ..Default::default()
    };
    serve(data, config).await
}

/// How many times each position of `stream` appears in the names of the files under `dir`
/// (`STREAM-PPPPP-FIRST-LAST.EXT`; the engine's positions are dense).
fn positions(dir: &Path, stream: &str) -> BTreeMap<(u32, u64), usize> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // Being written (object_store stages a file as `NAME#N`, then renames it).
            if name.contains('#') {
                continue;
            }
            let (partition, first, last) = cloudstream::deliver::file_positions(stream, &name)
                .unwrap_or_else(|| panic!("a file of another name: {name}"));
            let (first, last) = (first.as_u64().expect("u64"), last.as_u64().expect("u64"));
            for sequence in first..=last {
                *seen.entry((partition, sequence)).or_default() += 1;
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_delivery_writes_parquet_files_and_resumes_after_a_restart() {
    let (data, state, root) = (tempdir(), tempdir(), tempdir());
    let out = root.path().join("telemetry");
    let api = start(data.path(), state.path(), Some(root.path().to_owned())).await;
    api.create_stream("TelemetryIngest").await;
    let path = "/v1/streams/TelemetryIngest/deliveries/lake";
    let spec = json!({
        "to": format!("file://{}", out.display()),
        "format": "parquet",
        "compression": "snappy",
        "max_wait_ms": 100,
    });
    let (status, view) = api.put(path, spec.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["format"], "parquet");
    assert_eq!(view["start"], "earliest");
    assert_eq!(view["max_bytes"], 5 * 1024 * 1024);
    for i in 0..20 {
        api.send(
            "TelemetryIngest",
            &format!(r#"{{"device":"d{i}","t":{i}}}"#),
        )
        .await;
    }
    api.view_when(path, "delivered = 20", |v| v["delivered"] == 20)
        .await;
    let (status, list) = api.get("/v1/streams/TelemetryIngest/deliveries").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["deliveries"][0]["id"], "lake");
    // Registering the same spec again replaces it (200) and keeps its counters.
    let (status, view) = api.put(path, spec).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["delivered"], 20);
    api.stop().await;

    // The next server starts the delivery again from deliveries.json; it resumes where the
    // files end.
    let api = start(data.path(), state.path(), Some(root.path().to_owned())).await;
    for i in 20..30 {
        api.send(
            "TelemetryIngest",
            &format!(r#"{{"device":"d{i}","t":{i}}}"#),
        )
        .await;
    }
    api.view_when(path, "delivered = 10 after the restart", |v| {
        v["delivered"] == 10
    })
    .await;
    let seen = positions(&out, "TelemetryIngest");
    assert_eq!(seen.len(), 30, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    // Deleting it stops it and forgets its consumer; its files stay.
    let (status, _) = api.delete(path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get(path).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "delivery_not_found");
    let (_, consumers) = api.get("/v1/streams/TelemetryIngest/consumers").await;
    assert!(
        !consumers.to_string().contains("deliver-lake"),
        "{consumers}"
    );
    assert_eq!(positions(&out, "TelemetryIngest").len(), 30);
    api.stop().await;
}

#[tokio::test]
async fn sinks_the_server_may_not_write_to_are_refused() {
    let (data, state, root) = (tempdir(), tempdir(), tempdir());
    let api = start(data.path(), state.path(), None).await;
    api.create_stream("s").await;
    let path = "/v1/streams/s/deliveries/d";
    // No root: no local files at all.
    let (status, body) = put(&api, format!("file://{}", root.path().display())).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    // An endpoint at a cloud metadata address, in any option.
    let (status, body) = put(
        &api,
        "s3://bucket/raw?region=us-east-1&endpoint=http://169.254.169.254".into(),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    let (status, body) = put(
        &api,
        "gs://bucket/raw?url=http://metadata.google.internal/".into(),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    // Not a store.
    let (status, body) = put(&api, "ftp://example.com/x".into()).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_delivery",
    );
    let (status, body) = put(&api, "not a url".into()).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_delivery",
    );
    for bad in [
        json!({"to": "s3://b/p", "format": "avro"}),
        json!({"to": "s3://b/p", "max_wait_ms": 10}),
        json!({"to": "s3://b/p", "max_bytes": 0}),
        json!({"to": "s3://b/p", "surprise": 1}),
        json!({"format": "parquet"}),
    ] {
        let (status, body) = api.put(path, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            matches!(
                error_code(&body),
                "bad_request" | "bad_json" | "invalid_argument"
            ),
            "{bad}: {body}"
        );
    }
    // Well formed, but not something a delivery can write.
    let (status, body) = api
        .put(path, json!({"to": "s3://b/p", "compression": "snappy"}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_delivery",
    );
    let (status, body) = api
        .put("/v1/streams/nope/deliveries/d", json!({"to": "s3://b/p"}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "stream_not_found");
    api.stop().await;

    // With a root: below it only, and no climbing out of it.
    let api = start(data.path(), state.path(), Some(root.path().to_owned())).await;
    let (status, body) = put(
        &api,
        format!("file://{}/../elsewhere", root.path().display()),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    let (status, body) = put(&api, "file:///tmp".into()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    // A link below the root that leads out of it.
    #[cfg(unix)]
    {
        let outside = tempdir();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).expect("link");
        let (status, body) = put(&api, format!("file://{}/escape/x", root.path().display())).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    }
    // Options that would make the store client read the server's files, ask a metadata or
    // container endpoint, or carry the server's own credentials to a host of the client's.
    for refused in [
        "az://c/p?account_name=a&federated_token_file=/etc/passwd&authority_host=https://example.com",
        "s3://b/p?container_credentials_relative_uri=/x",
        "s3://b/p?web_identity_token_file=/etc/passwd",
        "gs://b/p?service_account=/etc/passwd",
        "az://c/p?use_emulator=true",
        "s3://b/p?region=us-east-1&endpoint=http://127.0.0.1:9",
        "s3://b/p?endpoint=http://169.254.169.254&access_key_id=a&secret_access_key=b",
    ] {
        let (status, body) = put(&api, refused.into()).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "sink_not_allowed");
    }
    // A store's credentials are kept (in a file only the server's user reads) but never
    // shown.
    let (status, view) = put(
        &api,
        "s3://bucket/raw?region=us-east-1&endpoint=http://127.0.0.1:9&access_key_id=AKIA&secret_access_key=SECRET".into(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["to"], "s3://bucket/raw");
    let kept = std::fs::read_to_string(state.path().join("deliveries.json")).expect("kept");
    assert!(kept.contains("SECRET"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state.path().join("deliveries.json"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "deliveries.json is its owner's only");
    }
    let (_, view) = api.get(path).await;
    assert!(!view.to_string().contains("SECRET"), "{view}");
    // A second delivery of the stream to the same prefix would cut files elsewhere.
    let (status, body) = api
        .put(
            "/v1/streams/s/deliveries/other",
            json!({ "to": "s3://bucket/raw/?region=eu-west-1&access_key_id=B&secret_access_key=C" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "sink_in_use");
    api.stop().await;
}

/// Registers delivery `d` of stream `s` to `to`.
async fn put(api: &Served, to: String) -> (StatusCode, Value) {
    api.put("/v1/streams/s/deliveries/d", json!({ "to": to }))
        .await
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
