//! The `/v1/streams/{name}/webhooks` routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::internal;
use super::spec::SpecIn;
use crate::{ApiError, Path, State};

/// Longest name of a stream with a webhook: its dead-letter stream is `NAME.dlq`.
pub(crate) const MAX_STREAM_NAME: usize = cloudstream::MAX_NAME_LEN - ".dlq".len();

/// Parses the body of a registration: a 400 `bad_json` unless it is a webhook spec.
fn parse_spec(body: Result<Bytes, BytesRejection>) -> Result<SpecIn, ApiError> {
    let body = body?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("not a webhook spec: {e}"),
        )
    })
}

/// A change's task failed (it panicked): a 500.
fn task_failed(e: tokio::task::JoinError) -> ApiError {
    internal(format!("the change failed: {e}"))
}

/// `PUT /v1/streams/{name}/webhooks/{id}`: registers (201) or replaces (200) a webhook.
#[utoipa::path(
    put, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    request_body(content = SpecIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = crate::openapi::WebhookBody),
        (status = 200, description = "Replaced", body = crate::openapi::WebhookBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn register(
    state: State,
    Path((stream, id)): Path<(String, String)>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = parse_spec(body)?;
    if stream.len() > MAX_STREAM_NAME {
        return Err(cloudstream::Error::InvalidName {
            kind: "stream",
            name: stream,
            reason: "a webhook's stream has a name of at most 124 characters, so that \
                     NAME.dlq is a name too"
                .into(),
        }
        .into());
    }
    // The webhook writes (and may create) its dead-letter stream: the token needs admin there.
    if let Some(dead_letter) = spec.dead_letter_stream(&stream)? {
        let principal = principal.as_ref().map(|axum::Extension(p)| p);
        crate::auth::require(principal, &dead_letter, crate::Scope::Admin)?;
    }
    let state = Arc::clone(&state.0);
    // In a task of its own, so that a request that times out or is dropped does not leave
    // the change half done.
    let (created, view) =
        tokio::spawn(async move { state.webhooks.register(&stream, &id, spec).await })
            .await
            .map_err(task_failed)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `GET /v1/streams/{name}/webhooks`: `{"webhooks": [view, ...]}`.
#[utoipa::path(
    get, path = "/v1/streams/{name}/webhooks", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream's webhooks", body = crate::openapi::Webhooks),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let views = state.webhooks.views(&stream).await?;
    Ok(Json(json!({ "webhooks": views })))
}

/// `GET /v1/streams/{name}/webhooks/{id}`: the webhook's view.
#[utoipa::path(
    get, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook", body = crate::openapi::WebhookBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn describe(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.webhooks.view(&stream, &id).await?))
}

/// `DELETE /v1/streams/{name}/webhooks/{id}`: stops the webhook and deletes its consumer.
#[utoipa::path(
    delete, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Stopped, its consumer deleted"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(
    state: State,
    Path((stream, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let state = Arc::clone(&state.0);
    tokio::spawn(async move { state.webhooks.delete(&stream, &id).await })
        .await
        .map_err(task_failed)??;
    Ok(StatusCode::NO_CONTENT)
}
