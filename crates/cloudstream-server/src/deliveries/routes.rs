//! The `/v1/streams/{name}/deliveries` routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::spec::DeliverySpec;
use super::DeliveryJob;
use crate::jobs::routes as jobs;
use crate::{ApiError, Path, State};

/// `PUT /v1/streams/{name}/deliveries/{id}`: registers (201) or replaces (200) a delivery.
#[utoipa::path(
    put, path = "/v1/streams/{name}/deliveries/{id}", tag = "deliveries",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "DeliveryJob id")),
    request_body(content = DeliverySpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = crate::openapi::DeliveryBody),
        (status = 200, description = "Replaced", body = crate::openapi::DeliveryBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn register(
    state: State,
    Path((stream, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = jobs::parse_spec::<DeliveryJob>(body)?;
    jobs::register::<DeliveryJob>(Arc::clone(&state.0), stream, id, spec).await
}

/// `GET /v1/streams/{name}/deliveries`: `{"deliveries": [view, ...]}`.
#[utoipa::path(
    get, path = "/v1/streams/{name}/deliveries", tag = "deliveries",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream's deliveries", body = crate::openapi::Deliveries),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    jobs::list::<DeliveryJob>(&state.0, &stream).await
}

/// `GET /v1/streams/{name}/deliveries/{id}`: the delivery's view.
#[utoipa::path(
    get, path = "/v1/streams/{name}/deliveries/{id}", tag = "deliveries",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "DeliveryJob id")),
    responses(
        (status = 200, description = "The delivery", body = crate::openapi::DeliveryBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn describe(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    jobs::describe::<DeliveryJob>(&state.0, &stream, &id).await
}

/// `DELETE /v1/streams/{name}/deliveries/{id}`: stops the delivery and deletes its consumer
/// (the files stay).
#[utoipa::path(
    delete, path = "/v1/streams/{name}/deliveries/{id}", tag = "deliveries",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "DeliveryJob id")),
    responses(
        (status = 204, description = "Stopped, its consumer deleted"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    jobs::delete::<DeliveryJob>(Arc::clone(&state.0), stream, id).await
}
