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
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Delivery id")),
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

crate::jobs::routes::job_routes! {
    job: DeliveryJob,
    tag: "deliveries",
    list_path: "/v1/streams/{name}/deliveries",
    one_path: "/v1/streams/{name}/deliveries/{id}",
    id: "Delivery id",
    list_body: crate::openapi::Deliveries,
    body: crate::openapi::DeliveryBody,
}
