//! Webhook triggers end to end: a real server on a loopback port over the embedded engine on
//! disk, POSTing to a real HTTP receiver on another loopback port that records what it is
//! sent and fails on demand. Waits poll with a deadline rather than sleep.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::{eventually, serve, Served as Api};
use support::{assert_error, error_code};

/// Starts a server over `local://data`, with webhooks kept in `state` if given.
async fn start(data: &Path, state: Option<PathBuf>) -> Api {
    start_with(data, state, cloudstream_server::WebhookPolicy::default()).await
}

/// [`start`], with webhooks posting only where `policy` allows.
async fn start_with(
    data: &Path,
    state: Option<PathBuf>,
    policy: cloudstream_server::WebhookPolicy,
) -> Api {
    let config = cloudstream_server::Config {
        state_dir: state,
        webhooks: policy,
        ..Default::default()
    };
    serve(data, config).await
}

/// Creates stream `orders` and registers webhook `billing` on it with `spec`: its view.
async fn hook_orders(api: &Api, spec: Value) -> Value {
    api.create_stream("orders").await;
    let (status, view) = api.put("/v1/streams/orders/webhooks/billing", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    view
}

/// What the receiver saw.
#[derive(Debug, Default)]
struct Received {
    /// Bodies of the POSTs it answered 200, in order.
    bodies: Vec<Value>,
    /// The `cloudstream-stream` and `cloudstream-webhook` headers of those POSTs.
    headers: Vec<(String, String)>,
    /// POSTs it answered 500.
    failed: usize,
    /// How many POSTs to answer 500 before answering 200 again; `usize::MAX`: all of them.
    fail_next: usize,
    /// How long to hold the next POST before answering it.
    hold_next: std::time::Duration,
}

/// A webhook receiver on a loopback port.
#[derive(Debug, Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<Received>>,
}

async fn hook(
    State(state): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let hold = std::mem::take(&mut state.lock().expect("receiver lock").hold_next);
    tokio::time::sleep(hold).await;
    let mut received = state.lock().expect("receiver lock");
    if received.fail_next > 0 {
        if received.fail_next != usize::MAX {
            received.fail_next -= 1;
        }
        received.failed += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let pair = (header("cloudstream-stream"), header("cloudstream-webhook"));
    received.headers.push(pair);
    received.bodies.push(body);
    StatusCode::OK
}

impl Receiver {
    /// A receiver that answers 500 to the first `fail_next` POSTs.
    async fn start(fail_next: usize) -> Receiver {
        let state = Arc::new(Mutex::new(Received {
            fail_next,
            ..Received::default()
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Received> {
        self.state.lock().expect("receiver lock")
    }

    /// The payloads of every record delivered (answered 200), in order.
    fn payloads(&self) -> Vec<String> {
        self.lock()
            .bodies
            .iter()
            .flat_map(|body| body["records"].as_array().cloned().unwrap_or_default())
            .map(|record| record["payload"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn failed(&self) -> usize {
        self.lock().failed
    }
}

#[tokio::test]
async fn a_webhook_delivers_every_event_in_order() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), Some(state.path().to_owned())).await;
    let receiver = Receiver::start(0).await;
    let view = hook_orders(&api, json!({ "url": receiver.url })).await;
    assert_eq!(view["id"], "billing");
    assert_eq!(view["stream"], "orders");
    assert_eq!(view["url"], receiver.url);
    assert_eq!(view["batch_size"], 1);
    assert_eq!(view["max_attempts"], 5);
    assert_eq!(view["backoff_ms"], 200);
    assert_eq!(view["dead_letter"], "orders.dlq");
    assert_eq!(view["start"], "latest");
    assert_eq!(view["timeout_ms"], 10_000);
    assert_eq!(view["delivered"], 0);
    assert_eq!(view["last_error"], Value::Null);

    for i in 1..=5 {
        api.send("orders", &format!("e{i}")).await;
    }
    let r = &receiver;
    let payloads = eventually("5 deliveries", move || async move {
        let payloads = r.payloads();
        (payloads.len() >= 5).then_some(payloads)
    })
    .await;
    assert_eq!(payloads, ["e1", "e2", "e3", "e4", "e5"]);
    {
        let received = receiver.lock();
        assert_eq!(
            received.bodies.len(),
            5,
            "batch_size 1: one POST per record"
        );
        for (body, headers) in received.bodies.iter().zip(&received.headers) {
            assert_eq!(body["stream"], "orders");
            assert_eq!(body["webhook"], "billing");
            assert_eq!(body["records"][0]["partition"], 0);
            assert!(body["records"][0]["position"].is_string(), "{body}");
            assert_eq!(headers, &("orders".to_owned(), "billing".to_owned()));
        }
    }
    let view = api
        .view_when(
            "/v1/streams/orders/webhooks/billing",
            "delivered = 5",
            |v| v["delivered"] == 5,
        )
        .await;
    assert_eq!(view["failed_attempts"], 0);
    assert_eq!(view["dead_lettered"], 0);

    // The webhook is a consumer of the stream, and its registration is on disk.
    let (_, body) = api.get("/v1/streams/orders/consumers").await;
    let consumers: Vec<&str> = body["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(consumers.contains(&"webhook-billing"), "{body}");
    let file = std::fs::read(state.path().join("webhooks.json")).expect("webhooks.json");
    let file: Value = serde_json::from_slice(&file).expect("webhooks.json is JSON");
    assert_eq!(file["webhooks"][0]["id"], "billing", "{file}");
    api.stop().await;
}

/// A webhook's consumer moved by hand (as the console's reset does) while the webhook runs:
/// the webhook is stopped around the change, so it replays from there rather than commit its
/// own position over it.
#[tokio::test]
async fn resetting_a_running_webhooks_consumer_replays_to_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    let receiver = Receiver::start(0).await;
    hook_orders(&api, json!({ "url": receiver.url })).await;
    for i in 1..=3 {
        api.send("orders", &format!("e{i}")).await;
    }
    let r = &receiver;
    eventually("3 deliveries", move || async move {
        (r.payloads().len() >= 3).then_some(())
    })
    .await;
    let (status, body) = api
        .put(
            "/v1/streams/orders/consumers/webhook-billing/checkpoint",
            json!({ "0": "earliest" }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    api.send("orders", "e4").await;
    let payloads = eventually("the replay and e4", move || async move {
        let payloads = r.payloads();
        (payloads.len() >= 7).then_some(payloads)
    })
    .await;
    assert_eq!(payloads, ["e1", "e2", "e3", "e1", "e2", "e3", "e4"]);
    let (_, body) = api
        .get("/v1/streams/orders/consumers/webhook-billing/checkpoint")
        .await;
    assert_eq!(body["checkpoint"]["0"], "at:4", "{body}");
    api.stop().await;
}

/// A reset whose request is dropped while the webhook is being stopped (its client gave up:
/// the stop waits for the POST in flight) leaves the webhook running, not stopped for good.
#[tokio::test]
async fn a_reset_given_up_half_way_leaves_the_webhook_running() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    let receiver = Receiver::start(0).await;
    receiver.lock().hold_next = std::time::Duration::from_secs(3);
    hook_orders(&api, json!({ "url": receiver.url })).await;
    api.send("orders", "e1").await;
    // The POST of e1 is held; a reset now waits for it, and its client gives up first.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .expect("client");
    let given_up = impatient
        .put(api.url("/v1/streams/orders/consumers/webhook-billing/checkpoint"))
        .json(&json!({ "0": "earliest" }))
        .send()
        .await;
    assert!(given_up.is_err(), "the reset should still be waiting");
    api.send("orders", "e2").await;
    let r = &receiver;
    let payloads = eventually("e2 delivered", move || async move {
        let payloads = r.payloads();
        payloads.contains(&"e2".to_owned()).then_some(payloads)
    })
    .await;
    assert_eq!(
        payloads.first().map(String::as_str),
        Some("e1"),
        "{payloads:?}"
    );
    api.stop().await;
}

/// A registered job's consumer is deleted with the job, not alone (the job would start over
/// from its registered start).
#[tokio::test]
async fn a_webhooks_consumer_is_not_deleted_alone() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    hook_orders(&api, json!({ "url": "http://127.0.0.1:9/hook" })).await;
    let (status, body) = api
        .delete("/v1/streams/orders/consumers/webhook-billing")
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "consumer_in_use");
    let (status, _) = api.delete("/v1/streams/orders/webhooks/billing").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_every_record_once_it_recovers() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    let receiver = Receiver::start(2).await;
    hook_orders(&api, json!({ "url": receiver.url, "backoff_ms": 10 })).await;
    for i in 1..=3 {
        api.send("orders", &format!("e{i}")).await;
    }
    let view = api
        .view_when(
            "/v1/streams/orders/webhooks/billing",
            "delivered = 3",
            |v| v["delivered"] == 3,
        )
        .await;
    assert_eq!(
        receiver.payloads(),
        ["e1", "e2", "e3"],
        "each once, in order"
    );
    assert_eq!(receiver.failed(), 2);
    assert!(view["failed_attempts"].as_u64() >= Some(2), "{view}");
    assert_eq!(view["dead_lettered"], 0);
    // Recovered: the failures are counted, and no error is shown as the current one.
    assert_eq!(view["last_error"], Value::Null, "{view}");
    let (_, dlq) = api
        .get("/v1/streams/orders.dlq/records?from=earliest")
        .await;
    assert_eq!(
        dlq["records"],
        json!([]),
        "nothing was dead-lettered: {dlq}"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_record_failing_every_attempt_goes_to_the_dead_letter_stream() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    let receiver = Receiver::start(usize::MAX).await;
    hook_orders(
        &api,
        json!({ "url": receiver.url, "max_attempts": 2, "backoff_ms": 10 }),
    )
    .await;
    api.send("orders", "boom").await;
    let a = &api;
    let dead = eventually("a dead letter", move || async move {
        let (status, body) = a.get("/v1/streams/orders.dlq/records?from=earliest").await;
        let records = body["records"].as_array().cloned().unwrap_or_default();
        (status == StatusCode::OK && !records.is_empty()).then_some(records)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["payload"], "boom");
    let headers = &dead[0]["headers"];
    assert_eq!(headers["cloudstream-dlq-source-stream"], "orders");
    assert_eq!(headers["cloudstream-dlq-attempts"], "2");
    let error = headers["cloudstream-dlq-error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("500"), "{headers}");
    assert!(
        !error.contains("/hook") && error.contains("/…"),
        "the URL's path is not shown: {error}"
    );
    let view = api
        .view_when(
            "/v1/streams/orders/webhooks/billing",
            "dead_lettered = 1",
            |v| v["dead_lettered"] == 1,
        )
        .await;
    let last_error = view["last_error"].as_str().unwrap_or_default();
    assert!(!last_error.contains("/hook"), "{last_error}");
    assert_eq!(view["failed_attempts"], 2);
    assert_eq!(view["delivered"], 0);
    assert_eq!(receiver.failed(), 2);

    // Delivery goes on after a dead letter.
    receiver.lock().fail_next = 0;
    api.send("orders", "fine").await;
    api.view_when(
        "/v1/streams/orders/webhooks/billing",
        "delivered = 1",
        |v| v["delivered"] == 1,
    )
    .await;
    assert_eq!(receiver.payloads(), ["fine"]);
    api.stop().await;
}

#[tokio::test]
async fn webhooks_survive_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start(0).await;

    let api = start(data.path(), Some(state.path().to_owned())).await;
    hook_orders(
        &api,
        json!({ "url": receiver.url, "batch_size": 10, "max_wait_ms": 20 }),
    )
    .await;
    api.send("orders", "before").await;
    api.view_when(
        "/v1/streams/orders/webhooks/billing",
        "delivered = 1",
        |v| v["delivered"] == 1,
    )
    .await;
    api.stop().await;

    let api = start(data.path(), Some(state.path().to_owned())).await;
    let (status, view) = api.get("/v1/streams/orders/webhooks/billing").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "registered again from webhooks.json: {view}"
    );
    assert_eq!(view["url"], receiver.url);
    assert_eq!(view["batch_size"], 10);
    api.send("orders", "after").await;
    let r = &receiver;
    let payloads = eventually("the event sent after the restart", move || async move {
        let payloads = r.payloads();
        payloads.iter().any(|p| p == "after").then_some(payloads)
    })
    .await;
    // At least once for every event. The first server stopped gracefully, committing what
    // it had delivered, so "before" is not delivered again; after a crash it could be.
    let count = |wanted: &str| payloads.iter().filter(|p| *p == wanted).count();
    assert_eq!(count("before"), 1, "{payloads:?}");
    assert_eq!(count("after"), 1, "{payloads:?}");
    api.stop().await;
}

#[tokio::test]
async fn webhooks_are_listed_replaced_deleted_and_checked() {
    let data = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), Some(state.path().to_owned())).await;
    let receiver = Receiver::start(0).await;
    api.create_stream("orders").await;
    let url = receiver.url.as_str();

    let (status, _) = api
        .put("/v1/streams/orders/webhooks/a", json!({ "url": url }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, view) = api
        .put(
            "/v1/streams/orders/webhooks/a",
            json!({ "url": url, "batch_size": 50, "dead_letter": false, "start": "earliest" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "replaced: {view}");
    assert_eq!(view["batch_size"], 50);
    assert_eq!(view["dead_letter"], false);
    assert_eq!(view["start"], "earliest");
    let (status, _) = api
        .put(
            "/v1/streams/orders/webhooks/b",
            json!({ "url": url, "dead_letter": "orders-failed" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api.get("/v1/streams/orders/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(body["webhooks"][1]["dead_letter"], "orders-failed");

    // Bad specs and names are 400s with JSON bodies; a missing stream is a 404.
    for (body, code) in [
        (json!({ "url": "ftp://example.com/x" }), "bad_request"),
        (json!({ "url": "not a url" }), "bad_request"),
        (json!({ "url": url, "batch_size": 0 }), "bad_request"),
        (json!({ "url": url, "max_attempts": 0 }), "bad_request"),
        (json!({ "url": url, "dead_letter": 7 }), "bad_request"),
        (json!({ "url": url, "start": "middle" }), "bad_json"),
        (json!({ "url": url, "colour": "red" }), "bad_json"),
        (json!({}), "bad_json"),
    ] {
        let (status, got) = api.put("/v1/streams/orders/webhooks/c", body.clone()).await;
        assert_eq!(
            (status, error_code(&got)),
            (StatusCode::BAD_REQUEST, code),
            "{body}: {got}"
        );
    }
    // Well formed, but its dead letters would feed the webhook itself.
    let (status, got) = api
        .put(
            "/v1/streams/orders/webhooks/c",
            json!({ "url": url, "dead_letter": "orders" }),
        )
        .await;
    assert_error(
        status,
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_dead_letter",
    );
    let (status, got) = api
        .put(
            "/v1/streams/orders/webhooks/bad%20id",
            json!({ "url": url }),
        )
        .await;
    assert_error(status, &got, StatusCode::BAD_REQUEST, "invalid_name");
    let (status, got) = api
        .put("/v1/streams/nowhere/webhooks/a", json!({ "url": url }))
        .await;
    assert_error(status, &got, StatusCode::NOT_FOUND, "stream_not_found");
    let (status, got) = api.get("/v1/streams/nowhere/webhooks").await;
    assert_error(status, &got, StatusCode::NOT_FOUND, "stream_not_found");
    let (status, got) = api.get("/v1/streams/orders/webhooks/c").await;
    assert_error(status, &got, StatusCode::NOT_FOUND, "webhook_not_found");

    // Delete: 204, then 404 for GET and for DELETE again; the consumer goes with it.
    let (status, _) = api.delete("/v1/streams/orders/webhooks/a").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, got) = api.get("/v1/streams/orders/webhooks/a").await;
    assert_error(status, &got, StatusCode::NOT_FOUND, "webhook_not_found");
    let (status, got) = api.delete("/v1/streams/orders/webhooks/a").await;
    assert_error(status, &got, StatusCode::NOT_FOUND, "webhook_not_found");
    let (_, body) = api.get("/v1/streams/orders/consumers").await;
    let consumers = body["consumers"].as_array().expect("consumers");
    assert!(
        !consumers.iter().any(|c| c["name"] == "webhook-a"),
        "{body}"
    );
    let file: Value = serde_json::from_slice(
        &std::fs::read(state.path().join("webhooks.json")).expect("webhooks.json"),
    )
    .expect("JSON");
    let ids: Vec<&str> = file["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["b"]);

    // Deleting the stream deletes its webhooks.
    let (status, _) = api.delete("/v1/streams/orders").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let file: Value = serde_json::from_slice(
        &std::fs::read(state.path().join("webhooks.json")).expect("webhooks.json"),
    )
    .expect("JSON");
    assert_eq!(file["webhooks"], json!([]), "{file}");
    api.create_stream("orders").await;
    let (status, body) = api.get("/v1/streams/orders/webhooks").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "webhooks": [] })));
    api.stop().await;
}

/// Webhooks post only where the policy allows: never to link-local or cloud metadata
/// addresses by default, and with an allowlist only to the hosts it names, checked on the
/// URL when registered and on every address its host resolves to when posting.
#[tokio::test]
async fn webhook_hosts_are_checked_against_the_policy() {
    let data = tempfile::tempdir().expect("tempdir");
    let api = start(data.path(), None).await;
    api.create_stream("orders").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let (status, body) = api
            .put("/v1/streams/orders/webhooks/w", json!({ "url": url }))
            .await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "webhook_url_not_allowed",
        );
        assert!(
            !body.to_string().contains("meta-data"),
            "the path is not echoed: {body}"
        );
    }
    api.stop().await;

    // Only what is listed: the name `localhost` is, the address 127.0.0.1 is not, so a
    // webhook to http://127.0.0.1 is refused and one to http://localhost delivers (the
    // addresses a listed name resolves to are reached, unless link-local or metadata).
    let data = tempfile::tempdir().expect("tempdir");
    let policy = cloudstream_server::WebhookPolicy::allow_only("localhost").expect("policy");
    let api = start_with(data.path(), None, policy).await;
    api.create_stream("orders").await;
    let receiver = Receiver::start(0).await;
    let (status, body) = api
        .put(
            "/v1/streams/orders/webhooks/w",
            json!({ "url": receiver.url }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "webhook_url_not_allowed",
    );
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (status, body) = api
        .put(
            "/v1/streams/orders/webhooks/w",
            json!({ "url": by_name, "max_attempts": 1, "dead_letter": false }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api.send("orders", "x").await;
    api.view_when("/v1/streams/orders/webhooks/w", "delivered = 1", |v| {
        v["delivered"] == 1
    })
    .await;
    assert_eq!(receiver.payloads(), ["x"]);
    api.stop().await;
}
