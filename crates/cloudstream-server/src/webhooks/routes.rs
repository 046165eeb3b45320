//! The `/v1/streams/{name}/webhooks` routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::spec::WebhookSpec;
use super::Webhook;
use crate::jobs::routes as jobs;
use crate::{ApiError, Path, State};

/// Longest name of a stream with a webhook: its dead-letter stream is `NAME.dlq`.
pub(crate) const MAX_STREAM_NAME: usize = cloudstream::MAX_NAME_LEN - ".dlq".len();

/// `PUT /v1/streams/{name}/webhooks/{id}`: registers (201) or replaces (200) a webhook.
#[utoipa::path(
    put, path = "/v1/streams/{name}/webhooks/{id}", tag = "webhooks",
    params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = "Webhook id")),
    request_body(content = WebhookSpec, content_type = "application/json"),
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
    let spec = jobs::parse_spec::<Webhook>(body)?;
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
    jobs::register::<Webhook>(Arc::clone(&state.0), stream, id, spec).await
}

crate::jobs::routes::job_routes! {
    job: Webhook,
    tag: "webhooks",
    list_path: "/v1/streams/{name}/webhooks",
    one_path: "/v1/streams/{name}/webhooks/{id}",
    id: "Webhook id",
    list_body: crate::openapi::Webhooks,
    body: crate::openapi::WebhookBody,
}
