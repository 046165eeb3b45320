//! Named consumers over HTTP: fetch commits what the previous fetch returned, as in the
//! library; the server keeps one consumer handle per stream, name and member. With
//! `member=ID`, clients fetching under one name form a consumer group: each reads only the
//! partitions it holds a lease on, and a member that stops fetching for `lease_ms` loses
//! them to the others, which get its uncommitted records again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use cloudstream::backend::{Checkpoint, ReadOptions};
use cloudstream::checkpoint::store_of;
use cloudstream::wire::{CheckpointBody, ConsumerList, Existed, Fetched, GapJson, RecordJson};
use cloudstream::Consumer;
use serde::Deserialize;

use crate::{ApiError, Path, State};

/// Longest long-poll a fetch may ask for.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long a long poll of `ms` may wait: at most 30 s, and well within the request deadline,
/// so that it answers empty rather than time out.
pub(crate) fn long_poll(state: &State, ms: u64) -> Duration {
    let deadline = state
        .limits
        .request_timeout
        .saturating_sub(Duration::from_secs(1));
    Duration::from_millis(ms).min(MAX_WAIT).min(deadline / 2)
}

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

/// A consumer handle kept between requests, with the settings it was made with.
#[derive(Debug)]
struct Held {
    consumer: Arc<Consumer>,
    max: usize,
    wait: Duration,
    lease: Duration,
    used: Instant,
}

/// How long an unused handle is kept; a member's is kept for at least its lease.
const IDLE: Duration = Duration::from_secs(600);

/// The consumer handles of the REST consumers: one per stream, consumer and member (""
/// outside a group), so that a fetch commits what the previous fetch of that consumer
/// returned, across requests. A handle unused for 10 minutes (or its lease, if longer) is
/// dropped, its uncommitted batch redelivered to the next fetch.
#[derive(Debug, Default)]
pub(crate) struct Handles(Mutex<HashMap<(String, String, String), Held>>);

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the handles of `consumer` of `stream` (every consumer when `None`): after a
    /// checkpoint is set or a consumer or stream deleted, the next fetch starts afresh.
    pub(crate) fn forget(&self, stream: &str, consumer: Option<&str>) {
        self.lock()
            .retain(|(s, c, _), _| !(s == stream && consumer.is_none_or(|name| name == c)));
    }
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
    let max = query.max.unwrap_or(100).clamp(1, state.limits.max_records);
    let wait = long_poll(state, query.wait_ms.unwrap_or(0));
    let lease = Duration::from_millis(query.lease_ms.unwrap_or(10_000).max(100));
    if query.member.is_some() && lease > crate::leases::MAX_TTL {
        return Err(ApiError::bad_request(format!(
            "lease_ms must be at most {} (one hour), got {}",
            crate::leases::MAX_TTL.as_millis(),
            lease.as_millis()
        )));
    }
    let previous = {
        let mut handles = state.consumers.lock();
        match handles.get_mut(&key) {
            Some(held) if (held.max, held.wait, held.lease) == (max, wait, lease) => {
                held.used = Instant::now();
                return Ok(held.consumer.clone());
            }
            // Other settings: a new handle, once the old one has committed what it handed
            // out (as the next fetch would have).
            Some(_) => handles.remove(&key).map(|held| held.consumer),
            None => None,
        }
    };
    if let Some(old) = previous {
        old.commit().await?;
    }
    let mut handle = state
        .stream(stream)
        .await?
        .consumer(consumer)
        .max_records(max)
        .max_bytes(
            ReadOptions::default()
                .max_bytes
                .min(state.limits.max_body_bytes),
        )
        .wait(wait);
    if let Some(member) = &query.member {
        handle = handle.lease_ttl(lease).member(member.clone());
    }
    let held = Held {
        consumer: Arc::new(handle),
        max,
        wait,
        lease,
        used: Instant::now(),
    };
    let mut handles = state.consumers.lock();
    handles.retain(|_, h| h.used.elapsed() < IDLE.max(h.lease));
    Ok(handles.entry(key).or_insert(held).consumer.clone())
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/consumers/{consumer}/fetch", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), FetchQuery),
    responses(
        (status = 200, description = "The next batch; the previous one is committed", body = cloudstream::wire::Fetched),
        crate::openapi::Failures
    )
)]
pub(crate) async fn fetch(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    query: Result<Query<FetchQuery>, QueryRejection>,
) -> Result<Json<Fetched>, ApiError> {
    let query = query?.0;
    let handle = handle(&state, &stream, &consumer, &query).await?;
    let batch = handle.fetch().await?;
    state.metrics.events_out(
        &stream,
        batch.records.len() as u64,
        crate::events::payload_bytes(&batch.records),
    );
    Ok(Json(Fetched {
        records: batch.records.iter().map(RecordJson::from).collect(),
        gaps: batch.gaps.iter().map(GapJson::from).collect(),
    }))
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
        (status = 200, description = "Consumers with their checkpoints and lag", body = cloudstream::wire::ConsumerList),
        crate::openapi::Failures
    )
)]
pub(crate) async fn list(
    state: State,
    Path(stream): Path<String>,
) -> Result<Json<ConsumerList>, ApiError> {
    state.stream(&stream).await?;
    let consumers = state.client.backend().list_consumers(&stream).await?;
    Ok(Json(ConsumerList { consumers }))
}

/// `GET .../consumers/{consumer}/checkpoint`: where the consumer resumes in each partition
/// (`{"checkpoint": {"0": "after:41"}}`), `null` if it never committed.
#[utoipa::path(
    get, path = "/v1/streams/{name}/consumers/{consumer}/checkpoint", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Where the consumer resumes", body = cloudstream::wire::CheckpointBody),
        crate::openapi::Failures
    )
)]
pub(crate) async fn checkpoint(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<CheckpointBody>, ApiError> {
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let checkpoint = store_of(state.client.backend().as_ref())?
        .load(&stream, &consumer)
        .await?;
    Ok(Json(CheckpointBody { checkpoint }))
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
    store_of(state.client.backend().as_ref())?
        .commit(&stream, &consumer, &resume)
        .await?;
    // A handle kept from earlier fetches would resume where it was, and commit over this.
    state.consumers.forget(&stream, Some(&consumer));
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../consumers/{consumer}`: forgets the consumer and its checkpoint;
/// `{"existed": bool}`.
#[utoipa::path(
    delete, path = "/v1/streams/{name}/consumers/{consumer}", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name")),
    responses(
        (status = 200, description = "Forgotten", body = cloudstream::wire::Existed),
        crate::openapi::Failures
    )
)]
pub(crate) async fn delete(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
) -> Result<Json<Existed>, ApiError> {
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let existed = state
        .client
        .backend()
        .delete_consumer(&stream, &consumer)
        .await?;
    state.consumers.forget(&stream, Some(&consumer));
    Ok(Json(Existed { existed }))
}
