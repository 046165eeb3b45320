//! Consumer-group leases over HTTP: the server's provider keeps them (in the server's
//! memory for the embedded engine, in DynamoDB for Kinesis), so members in different
//! processes share one consumer group through the `http://` client backend.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use cloudstream::checkpoint::store_of;
use cloudstream::wire::{Held, LeaseList};
use serde::Deserialize;

use crate::{ApiError, Path, State};

/// Longest lease one request may take.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);

/// Who takes or gives back a lease, and for how long.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LeaseQuery {
    member: String,
    ttl_ms: Option<u64>,
}

/// `PUT .../leases/{lease}?member=&ttl_ms=`: takes or renews the lease for `member`;
/// `{"held": bool}` (false: another member holds it and it has not expired).
#[utoipa::path(
    put, path = "/v1/streams/{name}/consumers/{consumer}/leases/{lease}", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), ("lease" = String, Path, description = "Lease name"), LeaseQuery),
    responses(
        (status = 200, description = "Whether the member holds the lease", body = cloudstream::wire::Held),
        crate::openapi::Failures
    )
)]
pub(crate) async fn take(
    state: State,
    Path((stream, consumer, lease)): Path<(String, String, String)>,
    query: Result<Query<LeaseQuery>, QueryRejection>,
) -> Result<Json<Held>, ApiError> {
    let query = query?.0;
    check(&state, &stream, &consumer, &query.member).await?;
    let ttl = Duration::from_millis(query.ttl_ms.unwrap_or(10_000))
        .clamp(Duration::from_millis(1), MAX_TTL);
    let held = store_of(state.client.backend().as_ref())?
        .take_lease(&stream, &consumer, &lease, &query.member, ttl)
        .await?;
    Ok(Json(Held { held }))
}

/// `DELETE .../leases/{lease}?member=`: gives the lease back if `member` holds it.
#[utoipa::path(
    delete, path = "/v1/streams/{name}/consumers/{consumer}/leases/{lease}", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), ("lease" = String, Path, description = "Lease name"), LeaseQuery),
    responses(
        (status = 204, description = "Given back"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn release(
    state: State,
    Path((stream, consumer, lease)): Path<(String, String, String)>,
    query: Result<Query<LeaseQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let query = query?.0;
    check(&state, &stream, &consumer, &query.member).await?;
    store_of(state.client.backend().as_ref())?
        .release_lease(&stream, &consumer, &lease, &query.member)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../leases`: the unexpired leases, `{"leases": {lease: member}}`.
#[utoipa::path(
    get, path = "/v1/streams/{name}/consumers/{consumer}/leases", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Unexpired leases", body = cloudstream::wire::LeaseList),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<LeaseList>, ApiError> {
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let leases = store_of(state.client.backend().as_ref())?
        .live_leases(&stream, &consumer)
        .await?;
    Ok(Json(LeaseList { leases }))
}

async fn check(state: &State, stream: &str, consumer: &str, member: &str) -> Result<(), ApiError> {
    cloudstream::validate_name("consumer", consumer)?;
    cloudstream::validate_name("member", member)?;
    state.stream(stream).await?;
    Ok(())
}
