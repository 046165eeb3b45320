//! The `/v1/streams/{name}/aggregations` routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::Json;
use cloudstream::pipeline::AggregateSpec;
use serde_json::Value;

use super::AggregationJob;
use crate::jobs::routes as jobs;
use crate::{ApiError, Path, State};

/// `PUT /v1/streams/{name}/aggregations/{id}`: registers (201) or replaces (200) an
/// aggregation. It writes to (and may create) its output and late streams: the token needs
/// admin there too.
#[utoipa::path(
    put, path = "/v1/streams/{name}/aggregations/{id}", tag = "aggregations",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Aggregation id")),
    request_body(content = AggregateSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = crate::openapi::AggregationBody),
        (status = 200, description = "Replaced", body = crate::openapi::AggregationBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn register(
    state: State,
    Path((stream, id)): Path<(String, String)>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = jobs::parse_spec::<AggregationJob>(body)?;
    let principal = principal.as_ref().map(|axum::Extension(p)| p);
    for target in std::iter::once(&spec.to).chain(&spec.late_to) {
        crate::auth::require(principal, target, crate::Scope::Admin)?;
    }
    jobs::register::<AggregationJob>(Arc::clone(&state.0), stream, id, spec).await
}

crate::jobs::routes::job_routes! {
    job: AggregationJob,
    tag: "aggregations",
    list_path: "/v1/streams/{name}/aggregations",
    one_path: "/v1/streams/{name}/aggregations/{id}",
    id: "Aggregation id",
    list_body: crate::openapi::Aggregations,
    body: crate::openapi::AggregationBody,
}
