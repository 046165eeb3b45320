//! The OpenAPI document of the API, served at `GET /v1/openapi.json` and generated from the
//! handlers' `#[utoipa::path]` annotations and the body types below. The schema test of the
//! API suite checks every response the tests get against it.
//!
//! The response types here describe bodies the handlers build; each is checked against the
//! real responses by that test, and unknown fields are refused there (`additionalProperties:
//! false`), so the document cannot drift from what the server sends.

mod strict;

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, ToSchema};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cloudstream",
        description = "Named, retained, replayable event streams over any provider: the REST endpoint of the Cloud Stream spec.",
        license(name = "Apache-2.0")
    ),
    paths(
        health,
        document,
        crate::streams::capabilities,
        crate::streams::list,
        crate::streams::create,
        crate::streams::describe,
        crate::streams::delete,
        crate::events::send,
        crate::events::send_batch,
        crate::events::append,
        crate::events::read,
        crate::tail::tail,
        crate::consumers::list,
        crate::consumers::fetch,
        crate::consumers::commit,
        crate::consumers::checkpoint,
        crate::consumers::set_checkpoint,
        crate::consumers::delete,
        crate::leases::list,
        crate::leases::take,
        crate::leases::release,
        crate::webhooks::routes::list,
        crate::webhooks::routes::register,
        crate::webhooks::routes::describe,
        crate::webhooks::routes::delete,
        crate::deliveries::routes::list,
        crate::deliveries::routes::register,
        crate::deliveries::routes::describe,
        crate::deliveries::routes::delete,
        crate::aggregations::routes::list,
        crate::aggregations::routes::register,
        crate::aggregations::routes::describe,
        crate::aggregations::routes::delete,
        crate::metrics::render,
        crate::auth::whoami,
        crate::rates::stats,
    ),
    components(schemas(ErrorBody, ErrorDetail, cloudstream::wire::PayloadForm)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

/// Declares the optional bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "This document", content_type = "application/json"), Failures))]
pub(crate) async fn document(state: crate::State) -> Json<Value> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let served = strict::Served {
        tokens: state.tokens.is_some(),
        max_partitions: state.client.backend().capabilities().max_partitions,
    };
    strict::tighten(&mut doc, served);
    Json(doc)
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The server is up", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// The failures every route can answer with: 4xx for what was wrong with the request, 5xx
/// for the provider or the server, each with an [`ErrorBody`].
pub(crate) struct Failures;

impl utoipa::IntoResponses for Failures {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response(
                "4XX",
                error("What was wrong with the request (stream_not_found, bad_json, ...)"),
            )
            .response(
                "5XX",
                error("The provider failed, or the server is overloaded or timed out"),
            )
            .build()
            .into()
    }
}

/// A failure: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorDetail {
    /// A stable, machine-readable code (`stream_not_found`, `bad_json`, ...).
    pub(crate) code: String,
    /// What was wrong, for people.
    pub(crate) message: String,
    /// The figures of the error (sizes, positions, names), where it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<BTreeMap<String, Value>>,
}

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    status: String,
}

/// Where an event was stored (the body every send answers with).
pub(crate) use cloudstream::wire::Sent;

/// One result per event of a batch, in order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchResults {
    pub(crate) results: Vec<BatchResult>,
}

/// Where one event of a batch was stored, or why it was not.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchResult {
    /// Stored.
    Sent(Sent),
    /// Refused.
    Failed(ErrorBody),
}

/// A webhook trigger: its settings and what it did since the server started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    id: String,
    stream: String,
    url: String,
    batch_size: u64,
    max_wait_ms: u64,
    max_attempts: u64,
    backoff_ms: u64,
    /// The dead-letter stream, or `false` for none.
    #[schema(value_type = Value)]
    dead_letter: Value,
    /// Where it starts without a checkpoint.
    start: cloudstream::StartAt,
    timeout_ms: u64,
    /// Records delivered with a 2xx.
    delivered: u64,
    /// POSTs that failed (and were retried or dead-lettered).
    failed_attempts: u64,
    /// Records moved to the dead-letter stream.
    dead_lettered: u64,
    /// The last failure, if any.
    last_error: Option<String>,
}

/// A stream's webhooks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Webhooks {
    webhooks: Vec<WebhookBody>,
}

/// A delivery to object storage: its settings and what it wrote since the server started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryBody {
    id: String,
    stream: String,
    /// The sink, without its query (which may hold credentials) or user-info.
    to: String,
    /// `jsonl` or `parquet`.
    format: String,
    /// `none`, `gzip`, `zstd` or `snappy`.
    compression: String,
    max_bytes: u64,
    max_records: u64,
    max_wait_ms: u64,
    /// Where it starts without a checkpoint.
    start: cloudstream::StartAt,
    /// Records handled: written to files, or found already in them after a restart.
    delivered: u64,
    /// Writes that failed (and were retried).
    failed_attempts: u64,
    /// Always 0: a delivery retries until it writes, and never dead-letters.
    dead_lettered: u64,
    /// The last failure, if any.
    last_error: Option<String>,
}

/// A stream's recent rates through this server, oldest bucket first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamStats {
    /// The length of a bucket (5,000).
    interval_ms: u64,
    /// Where the newest bucket ends (ms since 1970).
    until_ms: u64,
    /// Events written, per bucket.
    events_in: Vec<u64>,
    /// Bytes of events written, per bucket.
    bytes_in: Vec<u64>,
    /// Records handed out (reads, fetches, tails), per bucket.
    events_out: Vec<u64>,
}

/// What the request's token may do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Whoami {
    /// Whether the server asks every request for a token.
    tokens_required: bool,
    /// The token's grants; `null` when the server asks for none (everything is allowed).
    grants: Option<Vec<WhoamiGrant>>,
}

/// One grant of a token: a scope on some streams.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhoamiGrant {
    /// `read`, `write` or `admin` (which includes the other two).
    scope: String,
    /// Stream names, `prefix*` patterns or `*`.
    streams: Vec<String>,
}

/// A windowed aggregation: its settings and what it handled since the server started.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AggregationBody {
    id: String,
    stream: String,
    /// The stream its results go to.
    to: String,
    /// The stream late records go to, if any.
    late_to: Option<String>,
    /// `tumbling 1m`, `hopping 5m every 1m` or `session 30s`.
    window: String,
    /// How late an event may come and still count.
    lateness: String,
    group_by: Vec<String>,
    /// `NAME = EXPR` each.
    measures: Vec<String>,
    /// Where it starts without a checkpoint.
    start: cloudstream::StartAt,
    /// Records aggregated.
    delivered: u64,
    /// Batches that failed (and were retried).
    failed_attempts: u64,
    /// Always 0: an aggregation retries until it goes through, and never dead-letters.
    dead_lettered: u64,
    /// The last failure, if any.
    last_error: Option<String>,
}

/// A stream's aggregations.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Aggregations {
    aggregations: Vec<AggregationBody>,
}

/// A stream's deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deliveries {
    deliveries: Vec<DeliveryBody>,
}
