//! # cloudstream-server
//!
//! The streaming endpoint of the Cloud Stream spec: "a device/user writing to a real-time
//! streaming system would simply write to the REST API endpoint exposed by the service". A
//! versioned REST API (`/v1`) over any cloudstream provider: the embedded engine by default,
//! so the same server is also a gateway in front of Kinesis or Pub/Sub.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus text: requests and latency per route, events and bytes in and out per stream, consumer lag, provider counters |
//! | `GET /v1/capabilities` | the provider's name and what it can do |
//! | `GET /v1/streams` | stream names |
//! | `PUT /v1/streams/{name}` | create (`{"horizon": "48h", "partitions": 2}`) |
//! | `GET /v1/streams/{name}` | describe, with consumers and their lag |
//! | `DELETE /v1/streams/{name}` | delete |
//! | `POST /v1/streams/{name}/events` | send one event |
//! | `POST /v1/streams/{name}/events/batch` | send a JSON array of events; one result each |
//! | `POST /v1/streams/{name}/partitions/{p}/events` | append a JSON array of events to one partition, all or nothing |
//! | `GET /v1/streams/{name}/records?from=&start=&partition=&max=&max_bytes=&wait_ms=` | deterministic read |
//! | `GET /v1/streams/{name}/tail?from=latest` | live tail, Server-Sent Events, resumable with `Last-Event-ID` |
//! | `GET /v1/streams/{name}/consumers` | consumers and their lag |
//! | `POST /v1/streams/{name}/consumers/{consumer}/fetch?max=&wait_ms=&member=&lease_ms=` | next batch; commits the previous one; `member` joins a consumer group sharing partitions through leases |
//! | `POST /v1/streams/{name}/consumers/{consumer}/commit?member=` | commit what was fetched |
//! | `DELETE /v1/streams/{name}/consumers/{consumer}` | forget a consumer |
//! | `GET`, `PUT /v1/streams/{name}/consumers/{consumer}/checkpoint` | where the consumer resumes, per partition |
//! | `GET /v1/streams/{name}/consumers/{consumer}/leases` | a consumer group's leases |
//! | `PUT`, `DELETE /v1/streams/{name}/consumers/{consumer}/leases/{lease}?member=&ttl_ms=` | take, renew or give back a lease |
//!
//! Every failure is a 4xx or 5xx with a JSON body ([`ApiError`]).

mod consumers;
mod error;
mod events;
mod leases;
mod metrics;
mod protect;
mod streams;
mod tail;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use cloudstream::{Client, Consumer};

pub use error::ApiError;

/// Limits that protect the server from oversized requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (default 16 MiB).
    pub max_body_bytes: usize,
    /// Most events in one batch request (default 10,000).
    pub max_batch_events: usize,
    /// Most records one read or fetch returns (default 10,000).
    pub max_records: usize,
    /// Longest a request may take, long polls included (default 60 s; a fetch waits at most
    /// 30 s). A live tail is not bounded by it.
    pub request_timeout: std::time::Duration,
    /// Most requests served at once; more get 503 `overloaded` (default 1,024).
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_events: 10_000,
            max_records: 10_000,
            request_timeout: std::time::Duration::from_secs(60),
            max_in_flight: 1024,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) client: Client,
    pub(crate) limits: Limits,
    /// One consumer handle per (stream, consumer), so that a fetch commits what the previous
    /// fetch of that consumer returned, across requests.
    /// Keyed by stream, consumer and member ("" outside a group).
    pub(crate) consumers: Mutex<HashMap<(String, String, String), Arc<Consumer>>>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

pub(crate) type State = axum::extract::State<Arc<AppState>>;

/// The API over `client`'s provider.
pub fn router(client: Client, limits: Limits) -> Router {
    let state = Arc::new(AppState {
        client,
        limits,
        consumers: Mutex::default(),
        metrics: metrics::Metrics::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
    });
    // The live tail streams for as long as the client listens: no request deadline.
    let tail = Router::new().route("/v1/streams/{name}/tail", get(tail::tail));
    let bounded = Router::new()
        .route("/metrics", get(metrics::render))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/v1/capabilities", get(streams::capabilities))
        .route("/v1/streams", get(streams::list))
        .route(
            "/v1/streams/{name}",
            put(streams::create)
                .get(streams::describe)
                .delete(streams::delete),
        )
        .route("/v1/streams/{name}/events", post(events::send))
        .route("/v1/streams/{name}/events/batch", post(events::send_batch))
        .route(
            "/v1/streams/{name}/partitions/{partition}/events",
            post(events::append),
        )
        .route("/v1/streams/{name}/records", get(events::read))
        .route("/v1/streams/{name}/consumers", get(consumers::list))
        .route(
            "/v1/streams/{name}/consumers/{consumer}",
            delete(consumers::delete),
        )
        .route(
            "/v1/streams/{name}/consumers/{consumer}/checkpoint",
            get(consumers::checkpoint).put(consumers::set_checkpoint),
        )
        .route(
            "/v1/streams/{name}/consumers/{consumer}/leases",
            get(leases::list),
        )
        .route(
            "/v1/streams/{name}/consumers/{consumer}/leases/{lease}",
            put(leases::take).delete(leases::release),
        )
        .route(
            "/v1/streams/{name}/consumers/{consumer}/fetch",
            post(consumers::fetch),
        )
        .route(
            "/v1/streams/{name}/consumers/{consumer}/commit",
            post(consumers::commit),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            protect::guard,
        ));
    bounded
        .merge(tail)
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "no_route",
                "no such route; see the routes of /v1 in the README",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
