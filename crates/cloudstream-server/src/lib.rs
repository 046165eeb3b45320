//! # cloudstream-server
//!
//! The streaming endpoint of the Cloud Stream spec: "a device/user writing to a real-time
//! streaming system would simply write to the REST API endpoint exposed by the service". A
//! versioned REST API (`/v1`) over any cloudstream provider: the embedded engine by default,
//! so the same server is also a gateway in front of Kinesis or Pub/Sub.
//!
//! | route | what |
//! |---|---|
//! | `GET /` (and `/console/...`) | the web console (its page is public; its calls carry the user's token) |
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus text: requests and latency per route, events and bytes in and out per stream, consumer lag, the engine's fsync latency, provider counters |
//! | `GET /v1/openapi.json` | the OpenAPI 3.1 document of this API |
//! | `GET /v1/capabilities` | the provider's name and what it can do |
//! | `GET /v1/whoami` | what the request's token may do: its scopes and streams |
//! | `GET /v1/streams` | stream names |
//! | `PUT /v1/streams/{name}` | create (`{"horizon": "48h", "partitions": 2}`) |
//! | `GET /v1/streams/{name}` | describe, with consumers and their lag |
//! | `DELETE /v1/streams/{name}` | delete |
//! | `GET /v1/streams/{name}/stats` | events and bytes in and records out through this server, per 5 s over the last 5 minutes |
//! | `POST /v1/streams/{name}/events` | send one event: JSON, a CloudEvent (structured or binary) or raw bytes |
//! | `POST /v1/streams/{name}/events/batch` | send a JSON array, NDJSON or a CloudEvents batch; one result per event |
//! | `POST /v1/streams/{name}/partitions/{p}/events` | append a JSON array of events to one partition, all or nothing |
//! | `GET /v1/streams/{name}/records?from=&partition=&max=&max_bytes=&wait_ms=&payload=` | deterministic read |
//! | `GET /v1/streams/{name}/tail?from=latest` | live tail, Server-Sent Events, resumable with `Last-Event-ID` (a cursor over every partition) |
//! | `GET /v1/streams/{name}/consumers` | consumers and their lag |
//! | `POST /v1/streams/{name}/consumers/{consumer}/fetch?ack=&max=&wait_ms=&member=&lease_ms=` | next batch with its `ack` token; commits the batch `ack=` names, else delivers the outstanding batch again; `member` joins a consumer group sharing partitions through leases |
//! | `POST /v1/streams/{name}/consumers/{consumer}/commit?ack=&member=` | commit the batch `ack=` names (409 if it is no longer outstanding) |
//! | `DELETE /v1/streams/{name}/consumers/{consumer}` | forget a consumer |
//! | `GET`, `PUT /v1/streams/{name}/consumers/{consumer}/checkpoint` | where the consumer resumes, per partition |
//! | `GET /v1/streams/{name}/consumers/{consumer}/leases` | a consumer group's leases |
//! | `PUT`, `DELETE /v1/streams/{name}/consumers/{consumer}/leases/{lease}?member=&ttl_ms=` | take, renew or give back a lease |
//! | `PUT /v1/streams/{name}/webhooks/{id}` | register (201) or replace (200) a webhook trigger: `{"url": "http://...", "batch_size": 1, "max_attempts": 5, ...}` |
//! | `GET /v1/streams/{name}/webhooks` | the stream's webhooks, with what each delivered |
//! | `GET /v1/streams/{name}/webhooks/{id}` | one webhook |
//! | `DELETE /v1/streams/{name}/webhooks/{id}` | stop a webhook and delete its consumer |
//! | `PUT /v1/streams/{name}/deliveries/{id}` | register (201) or replace (200) a delivery to object storage: `{"to": "s3://bucket/prefix?region=...", "format": "parquet", ...}` |
//! | `GET /v1/streams/{name}/deliveries` | the stream's deliveries, with what each wrote |
//! | `GET /v1/streams/{name}/deliveries/{id}` | one delivery |
//! | `DELETE /v1/streams/{name}/deliveries/{id}` | stop a delivery and delete its consumer (its files stay) |
//! | `PUT /v1/streams/{name}/aggregations/{id}` | register (201) or replace (200) a windowed aggregation into another stream: `{"to": "PerMinute", "window": "tumbling 1m", "group_by": ["device"], "measures": ["avg_t = avg(t)"]}` |
//! | `GET /v1/streams/{name}/aggregations` | the stream's aggregations, with what each handled |
//! | `GET /v1/streams/{name}/aggregations/{id}` | one aggregation |
//! | `DELETE /v1/streams/{name}/aggregations/{id}` | stop an aggregation, delete its consumer and saved windows (its results stay) |
//!
//! Every failure is a 4xx or 5xx with a JSON body ([`ApiError`]). Optional bearer tokens
//! with scopes per stream ([`Tokens`]), TLS and the header deadline are set up by
//! [`Config`] and [`ServeOptions`]; [`serve_with`] runs the accept loop.
//!
//! [`router`] builds the API with webhooks and deliveries kept in memory; [`Server::open`]
//! builds it with them persisted in a state directory and started again by the next
//! server, and [`Server::shutdown`] stops them once the router is no longer served.

mod aggregations;
mod auth;
mod coalesce;
mod console;
mod consumers;
mod deliveries;
mod error;
mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
mod jobs;
mod leases;
mod listen;
mod metrics;
mod numbers;
mod openapi;
mod protect;
mod rates;
mod streams;
mod tail;
mod webhooks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use cloudstream::{Client, Stream};

pub use auth::{token_hash, Scope, Tokens};
pub use error::ApiError;
pub use listen::{raise_descriptor_limit, serve_with, tls_config, ServeOptions};
pub use webhooks::WebhookPolicy;

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
    /// Most live tails at once, outside `max_in_flight`; more get 503 `overloaded`
    /// (default 256).
    pub max_tails: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_events: 10_000,
            max_records: 10_000,
            request_timeout: std::time::Duration::from_secs(60),
            max_in_flight: 1024,
            max_tails: 256,
        }
    }
}

/// How a [`Server`] is set up besides its provider.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Request limits.
    pub limits: Limits,
    /// Where webhook and delivery registrations are kept across restarts (created if
    /// missing); in memory only when `None`.
    pub state_dir: Option<PathBuf>,
    /// Bearer tokens the server accepts; every request but `/healthz`, `/metrics` and
    /// `/v1/openapi.json` needs one when set. Open to anyone when `None`.
    pub tokens: Option<Tokens>,
    /// Which hosts webhooks may post to, and object-store endpoints deliveries may name
    /// (default: any but link-local and cloud metadata addresses).
    pub webhooks: WebhookPolicy,
    /// The directory deliveries to local files (`file://`) must write below; none when
    /// `None` (deliveries then go to object stores only).
    pub deliver_root: Option<PathBuf>,
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) client: Client,
    pub(crate) limits: Limits,
    /// The REST consumers' handles, kept across requests.
    pub(crate) consumers: consumers::Handles,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// Permits of the live tails.
    pub(crate) tails: Arc<tokio::sync::Semaphore>,
    /// The jobs it runs (webhooks, deliveries, aggregations): their registrations and
    /// running tasks.
    pub(crate) jobs: jobs::JobKinds,
    /// The accepted tokens, when the server checks them.
    pub(crate) tokens: Option<Tokens>,
    /// Stream handles opened once and kept: the handle's partitioner spreads unkeyed events
    /// round-robin across requests, and a request does not describe the stream again.
    streams: Mutex<HashMap<String, (Stream, coalesce::Coalescer)>>,
}

impl AppState {
    /// The handle of stream `name`; `stream_not_found` if there is none.
    pub(crate) async fn stream(&self, name: &str) -> Result<Stream, ApiError> {
        Ok(self.kept(name).await?.0)
    }

    /// The writer of stream `name`'s single-event sends (see [`coalesce`]).
    pub(crate) async fn sender(&self, name: &str) -> Result<coalesce::Coalescer, ApiError> {
        Ok(self.kept(name).await?.1)
    }

    async fn kept(&self, name: &str) -> Result<(Stream, coalesce::Coalescer), ApiError> {
        if let Some(kept) = self.lock_streams().get(name) {
            return Ok(kept.clone());
        }
        let stream = self.client.stream(name).open().await?;
        Ok(self
            .lock_streams()
            .entry(name.to_owned())
            .or_insert_with(|| (stream.clone(), coalesce::Coalescer::start(stream)))
            .clone())
    }

    /// Drops the kept handle of stream `name` (deleted or created again).
    pub(crate) fn forget_stream(&self, name: &str) {
        self.lock_streams().remove(name);
    }

    fn lock_streams(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Stream, coalesce::Coalescer)>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) type State = axum::extract::State<Arc<AppState>>;

/// Path parameters; one that does not parse (`partitions/abc`, bad percent-encoding) is a
/// 400 with a JSON body, like every other bad request.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub(crate) T);

/// The API over `client`'s provider, with webhooks and deliveries kept in memory only:
/// they are lost with the server, and their tasks stop (without being waited for) once the
/// router and every clone of it are dropped. Use [`Server::open`] to keep them across
/// restarts and to stop them deterministically.
pub fn router(client: Client, limits: Limits) -> Router {
    let config = Config {
        limits,
        ..Config::default()
    };
    let jobs = jobs::JobKinds::in_memory(&client, &config);
    build(app_state(client, config, jobs))
}

/// A server's API and the webhook triggers running behind it.
///
/// ```no_run
/// # async fn run(client: cloudstream::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let config = cloudstream_server::Config {
///     state_dir: Some("./cloudstream-state".into()),
///     ..Default::default()
/// };
/// let server = cloudstream_server::Server::open(client, config).await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
/// let shutdown = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// cloudstream_server::serve(listener, server.router(), shutdown).await?;
/// server.shutdown().await; // stops the webhooks, each committing what it delivered
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    router: Router,
    state: Arc<AppState>,
}

impl Server {
    /// The API over `client`'s provider. With a [`Config::state_dir`] (created if missing),
    /// webhook and delivery registrations are kept in `state_dir/webhooks.json` and
    /// `state_dir/deliveries.json`, and every one registered there is started now; without
    /// one they live in memory only. An unreadable or corrupt file is an error.
    pub async fn open(client: Client, config: Config) -> Result<Server, cloudstream::Error> {
        let jobs = jobs::JobKinds::open(&client, &config).await?;
        let state = app_state(client, config, jobs);
        Ok(Server {
            router: build(state.clone()),
            state,
        })
    }

    /// The routes, to give to [`serve`] or [`serve_with`] (a cheap clone).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops every webhook and delivery and waits until each has finished the batch in hand
    /// and committed its checkpoint. Call it once the router is no longer served and before
    /// the server (and the provider with it) is dropped. Registrations stay in the state
    /// directory; registering one afterwards fails (503 `shutting_down`).
    pub async fn shutdown(&self) {
        self.state.jobs.shutdown().await;
    }
}

/// What the handlers share.
fn app_state(client: Client, config: Config, jobs: jobs::JobKinds) -> Arc<AppState> {
    let limits = config.limits;
    Arc::new(AppState {
        client,
        limits,
        tokens: config.tokens,
        consumers: consumers::Handles::default(),
        metrics: metrics::Metrics::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
        tails: Arc::new(tokio::sync::Semaphore::new(limits.max_tails)),
        jobs,
        streams: Mutex::default(),
    })
}

/// The routes over `state`.
fn build(state: Arc<AppState>) -> Router {
    let limits = state.limits;
    // Outside the deadline and the in-flight cap: the live tail streams for as long as the
    // client listens, and a liveness probe must answer even when the server is saturated.
    let unbounded = Router::new()
        .route("/v1/streams/{name}/tail", get(tail::tail))
        .route("/healthz", get(openapi::health));
    let bounded = Router::new()
        .route("/metrics", get(metrics::render))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/capabilities", get(streams::capabilities))
        .route("/v1/whoami", get(auth::whoami))
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
        .route("/v1/streams/{name}/stats", get(rates::stats))
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
        .merge(jobs::JobKinds::router())
        .merge(console::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            protect::guard,
        ));
    bounded
        .merge(unbounded)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /v1/openapi.json",
            )
        })
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
            auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` over plain HTTP until `shutdown` completes; see
/// [`serve_with`] for TLS and the header deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}
