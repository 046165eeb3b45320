//! Creating, listing, describing and deleting streams.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;

use axum::http::StatusCode;
use axum::Json;
use cloudstream::wire::{CapabilitiesBody, StreamCreated, StreamDescription, StreamList};
use serde::Deserialize;

use crate::{ApiError, Path, State};

/// The body of `PUT /v1/streams/{name}`; both fields optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateStream {
    /// Retention horizon: a whole number and a unit, `ms`, `s`, `m` (minutes), `h` or `d`
    /// (`48h`, `7d`; default 24 h), within the provider's range (`GET /v1/capabilities`;
    /// 422 `horizon_out_of_range` outside it).
    horizon: Option<String>,
    /// Number of partitions (default 1).
    #[serde(default, deserialize_with = "crate::numbers::opt_u32")]
    partitions: Option<u32>,
}

/// `GET /v1/capabilities`: the provider behind the server and what it can do.
#[utoipa::path(
    get, path = "/v1/capabilities", tag = "streams",
    responses(
        (status = 200, description = "The provider and what it can do", body = cloudstream::wire::CapabilitiesBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn capabilities(state: State) -> Json<CapabilitiesBody> {
    let backend = state.client.backend();
    let mut capabilities = backend.capabilities();
    // What a client may send in one request is also bounded by this server's limits: a batch
    // travels as JSON with base64 payloads (4/3 of the bytes, plus framing per event).
    let limits = state.limits;
    capabilities.max_batch_records = capabilities.max_batch_records.min(limits.max_batch_events);
    capabilities.max_batch_bytes = capabilities.max_batch_bytes.min(limits.max_body_bytes / 2);
    Json(CapabilitiesBody {
        backend: backend.name().to_owned(),
        capabilities,
    })
}

/// `GET /v1/streams`: every stream, or with tokens, those the token has a grant on.
#[utoipa::path(
    get, path = "/v1/streams", tag = "streams",
    responses(
        (status = 200, description = "Stream names (with tokens: those the token has a grant on)", body = cloudstream::wire::StreamList),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> Result<Json<StreamList>, ApiError> {
    let mut streams = state.client.list_streams().await?;
    if let Some(axum::Extension(principal)) = principal {
        streams.retain(|s| principal.sees(s));
    }
    Ok(Json(StreamList { streams }))
}

#[utoipa::path(
    put, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    request_body(content = Option<CreateStream>, description = "Horizon and partitions; both optional", content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = cloudstream::wire::StreamCreated),
        crate::openapi::Failures
    )
)]
pub(crate) async fn create(
    state: State,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<StreamCreated>), ApiError> {
    let body = body?;
    let spec = parse_spec(&body)?;
    let horizon = match &spec.horizon {
        None => Duration::from_secs(24 * 3600),
        Some(text) => parse_horizon(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "horizon {text:?} is not a whole number and a unit (ms, s, m, h or d), like 48h"
            ))
        })?,
    };
    let (shortest, longest) = state.client.backend().capabilities().horizon_range;
    if !(shortest..=longest).contains(&horizon) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "horizon_out_of_range",
            format!(
                "horizon {} is outside what the {} provider holds: {} to {}",
                humantime::format_duration(horizon),
                state.client.backend().name(),
                humantime::format_duration(shortest),
                humantime::format_duration(longest)
            ),
        ));
    }
    state.forget_stream(&name);
    let stream = state
        .client
        .stream(&name)
        .horizon(horizon)
        .partitions(spec.partitions.unwrap_or(1))
        .create()
        .await?;
    let info = stream.describe().await?;
    Ok((StatusCode::CREATED, Json(StreamCreated { stream: info })))
}

/// The body of a create: nothing, `null` or a JSON object of [`CreateStream`].
pub(crate) fn parse_spec(body: &[u8]) -> Result<CreateStream, ApiError> {
    let bad = |e: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("not a stream spec: {e}"),
        )
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateStream::default());
    }
    match serde_json::from_slice::<serde_json::Value>(body).map_err(|e| bad(e.to_string()))? {
        serde_json::Value::Null => Ok(CreateStream::default()),
        object @ serde_json::Value::Object(_) => {
            serde_json::from_value(object).map_err(|e| bad(e.to_string()))
        }
        _ => Err(bad("the body must be a JSON object".to_owned())),
    }
}

/// The pattern of a horizon, as the OpenAPI document gives it.
pub(crate) const HORIZON_PATTERN: &str = "^[0-9]+(ms|s|m|h|d)$";

/// A horizon: a whole number and a unit (`ms`, `s`, `m`, `h`, `d`); a number too large for
/// any provider saturates, to be refused as out of range.
pub(crate) fn parse_horizon(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().unwrap_or(u64::MAX);
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.saturating_mul(ms_per)))
}

#[utoipa::path(
    get, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Partitions, extent and consumers with their lag", body = cloudstream::wire::StreamDescription),
        crate::openapi::Failures
    )
)]
pub(crate) async fn describe(
    state: State,
    Path(name): Path<String>,
) -> Result<Json<StreamDescription>, ApiError> {
    let stream = state.stream(&name).await?;
    let info = stream.describe().await?;
    let consumers = state.client.backend().list_consumers(&name).await?;
    Ok(Json(StreamDescription {
        stream: info,
        consumers,
    }))
}

#[utoipa::path(
    delete, path = "/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 204, description = "Deleted, with its records and consumers"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(state: State, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.client.delete_stream(&name).await?;
    state.forget_stream(&name);
    state.consumers.forget(&name, None);
    // Its jobs' consumers went with it; stop and forget the jobs too.
    state.jobs.forget_stream(&name).await;
    Ok(StatusCode::NO_CONTENT)
}
