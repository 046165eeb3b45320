//! Named consumers over HTTP: fetch commits what the previous fetch returned, as in the
//! library; the server keeps one consumer handle per stream, name and member. With
//! `member=ID`, clients fetching under one name form a consumer group: each reads only the
//! partitions it holds a lease on, and a member that stops fetching for `lease_ms` loses
//! them to the others, which get its uncommitted records again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use cloudstream::backend::Checkpoint;
use cloudstream::wire::record_json;
use cloudstream::Consumer;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ApiError, State};

/// Longest long-poll a fetch may ask for.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// The query of a fetch: how many records, how long to wait for a first one, and the
/// member of a consumer group with its lease time.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FetchQuery {
    max: Option<usize>,
    wait_ms: Option<u64>,
    member: Option<String>,
    lease_ms: Option<u64>,
}

async fn handle(
    state: &State,
    stream: &str,
    consumer: &str,
    query: &FetchQuery,
) -> Result<Arc<Consumer>, ApiError> {
    cloudstream::validate_name("consumer", consumer)?;
    if let Some(member) = &query.member {
        cloudstream::validate_name("member", member)?;
    }
    let key = (
        stream.to_owned(),
        consumer.to_owned(),
        query.member.clone().unwrap_or_default(),
    );
    if let Some(c) = state
        .consumers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(c.clone());
    }
    let handle = state.stream(stream).await?.consumer(consumer);
    let max = query.max.unwrap_or(100).clamp(1, state.limits.max_records);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let mut handle = handle.max_records(max).wait(wait);
    if let Some(member) = &query.member {
        let lease = Duration::from_millis(query.lease_ms.unwrap_or(10_000).max(100));
        handle = handle.lease_ttl(lease).member(member.clone());
    }
    let handle = Arc::new(handle);
    let mut all = state.consumers.lock().unwrap_or_else(|e| e.into_inner());
    Ok(all.entry(key).or_insert(handle).clone())
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/consumers/{consumer}/fetch", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), FetchQuery),
    responses(
        (status = 200, description = "The next batch; the previous one is committed", body = crate::openapi::Fetched),
        crate::openapi::Failures
    )
)]
pub(crate) async fn fetch(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    query: Result<Query<FetchQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = query?.0;
    let handle = handle(&state, &stream, &consumer, &query).await?;
    let batch = handle.fetch().await?;
    state.metrics.events_out(
        &stream,
        batch.records.len() as u64,
        crate::events::payload_bytes(&batch.records),
    );
    let records: Vec<Value> = batch.records.iter().map(record_json).collect();
    let gaps: Vec<Value> = batch
        .gaps
        .iter()
        .map(|g| json!({ "partition": g.partition, "from": g.from.to_string(), "resumed_at": g.resumed_at.to_string() }))
        .collect();
    Ok(Json(json!({ "records": records, "gaps": gaps })))
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/consumers/{consumer}/commit", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), FetchQuery),
    responses(
        (status = 204, description = "What was fetched is committed"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn commit(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    query: Result<Query<FetchQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let query = query?.0;
    handle(&state, &stream, &consumer, &query)
        .await?
        .commit()
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/streams/{name}/consumers", tag = "consumers",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Consumers with their checkpoints and lag", body = crate::openapi::Consumers),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.stream(&stream).await?;
    let consumers = state.client.backend().list_consumers(&stream).await?;
    Ok(Json(json!({ "consumers": consumers })))
}

/// `GET .../consumers/{consumer}/checkpoint`: where the consumer resumes in each partition
/// (`{"checkpoint": {"0": "after:41"}}`), `null` if it never committed.
#[utoipa::path(
    get, path = "/v1/streams/{name}/consumers/{consumer}/checkpoint", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Where the consumer resumes", body = crate::openapi::CheckpointBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn checkpoint(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let checkpoint = state
        .client
        .backend()
        .load_checkpoint(&stream, &consumer)
        .await?;
    Ok(Json(json!({ "checkpoint": checkpoint })))
}

/// `PUT .../consumers/{consumer}/checkpoint` with `{"0": "after:41", "1": "at:7"}`: sets
/// where the consumer resumes in the partitions given; the others keep theirs.
#[utoipa::path(
    put, path = "/v1/streams/{name}/consumers/{consumer}/checkpoint", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    request_body(content = std::collections::BTreeMap<String, cloudstream::backend::PartitionStart>, description = "Partition → where it resumes", content_type = "application/json"),
    responses(
        (status = 204, description = "Committed"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn set_checkpoint(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    body: Result<Json<Checkpoint>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let resume: Vec<_> = body?.0.into_iter().collect();
    cloudstream::validate_name("consumer", &consumer)?;
    let handle = state.stream(&stream).await?;
    if let Some((p, _)) = resume.iter().find(|(p, _)| *p >= handle.partitions()) {
        return Err(ApiError::bad_request(format!(
            "stream {stream:?} has no partition {p} (it has {})",
            handle.partitions()
        )));
    }
    state
        .client
        .backend()
        .commit_checkpoint(&stream, &consumer, &resume)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../consumers/{consumer}`: forgets the consumer and its checkpoint;
/// `{"existed": bool}`.
#[utoipa::path(
    delete, path = "/v1/streams/{name}/consumers/{consumer}", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Forgotten", body = crate::openapi::Existed),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let existed = state
        .client
        .backend()
        .delete_consumer(&stream, &consumer)
        .await?;
    state
        .consumers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(s, c, _), _| !(*s == stream && *c == consumer));
    Ok(Json(json!({ "existed": existed })))
}
