//! Named consumers over HTTP: a fetch commits the batch the client received before, as in
//! the library, and only that one. The server keeps one consumer handle per stream, name
//! and member; every batch it hands out carries an acknowledgement token (`ack`), and a
//! fetch commits the handle's outstanding batch only when it carries that batch's token
//! (`?ack=`). A fetch without it, or with an older one, gets the outstanding batch again:
//! two clients sharing one name, or a client whose answer was lost in transit, never commit
//! a batch nobody handled. With `member=ID`, clients fetching under one name form a consumer
//! group: each reads only the partitions it holds a lease on, and a member that stops
//! fetching for `lease_ms` loses them to the others, which get its uncommitted records again.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use cloudstream::backend::{PartitionStart, ReadOptions};
use cloudstream::checkpoint::store_of;
use cloudstream::wire::{
    CheckpointBody, ConsumerList, Existed, Fetched, GapJson, PayloadForm, RecordJson,
};
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

/// The query of a fetch or commit: the token of the batch to commit, how many records, how
/// long to wait for a first one, and the member of a consumer group with its lease time.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FetchQuery {
    /// The `ack` token of the last batch this client received: it is committed. Without it
    /// (or with an older one), the outstanding batch is delivered again.
    ack: Option<String>,
    /// Most records (default 100; 0 counts as 1, more than the server's batch limit as the
    /// limit).
    max: Option<usize>,
    /// Wait up to this long for a first record (capped at 30 s).
    wait_ms: Option<u64>,
    /// Join the consumer group of this name as this member.
    member: Option<String>,
    /// With `member`, how long the member's leases outlive its last fetch (100 ms to 1 h;
    /// default 10 s).
    #[param(maximum = 3_600_000)]
    lease_ms: Option<u64>,
    /// `json` (default: JSON payloads as JSON values) or `text` (every payload as its text).
    payload: Option<PayloadForm>,
}

/// A consumer handle kept between requests, with the settings it was made with.
#[derive(Debug)]
struct Held {
    session: Arc<Session>,
    max: usize,
    wait: Duration,
    lease: Duration,
    used: Instant,
}

/// A consumer handle and the token of the batch it handed out last, not yet committed. The
/// token's lock is held for a whole fetch, so that the check of the token and the fetch
/// that commits are one step.
#[derive(Debug)]
struct Session {
    consumer: Consumer,
    outstanding: tokio::sync::Mutex<Option<String>>,
}

impl Session {
    /// Settles the outstanding batch before the next fetch or commit: kept for committing
    /// when `ack` names it, otherwise given back for delivery again. Returns whether the
    /// outstanding batch (if any) is to be committed.
    async fn settle(&self, outstanding: &mut Option<String>, ack: Option<&str>) -> bool {
        match outstanding.as_deref() {
            Some(token) if Some(token) == ack => true,
            Some(_) => {
                self.consumer.redeliver().await;
                *outstanding = None;
                false
            }
            None => false,
        }
    }
}

/// A fresh batch token: unique within the server's life and not guessable from the last.
fn token() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    format!("{n:x}-{:016x}", h.finish())
}

/// How long an unused handle is kept; a member's is kept for at least its lease.
const IDLE: Duration = Duration::from_secs(600);

/// Most REST consumer handles held at once (each a consumer name, or a member of a group).
const MAX_HANDLES: usize = 10_000;

/// The consumer handles of the REST consumers: one per stream, consumer and member (""
/// outside a group). A handle unused for 10 minutes (or its lease, if longer) is dropped,
/// its uncommitted batch redelivered to the next fetch.
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

async fn session(
    state: &State,
    stream: &str,
    consumer: &str,
    query: &FetchQuery,
) -> Result<Arc<Session>, ApiError> {
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
    if lease > crate::leases::MAX_TTL {
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
                return Ok(held.session.clone());
            }
            // Other settings: a new handle, once the old one has committed the batch this
            // fetch acknowledges (an unacknowledged one is read again from the checkpoint).
            Some(_) => handles.remove(&key).map(|held| held.session),
            None => None,
        }
    };
    if let Some(old) = previous {
        let mut outstanding = old.outstanding.lock().await;
        if old.settle(&mut outstanding, query.ack.as_deref()).await {
            old.consumer.commit().await?;
        }
        old.consumer.redeliver().await;
        *outstanding = None;
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
        session: Arc::new(Session {
            consumer: handle,
            outstanding: tokio::sync::Mutex::new(None),
        }),
        max,
        wait,
        lease,
        used: Instant::now(),
    };
    let mut handles = state.consumers.lock();
    handles.retain(|_, h| h.used.elapsed() < IDLE.max(h.lease));
    if handles.len() >= MAX_HANDLES && !handles.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_consumers",
            format!(
                "the server holds {MAX_HANDLES} REST consumer handles, each unused for less \
                 than 10 minutes; retry later, or reuse consumer and member names"
            ),
        ));
    }
    Ok(handles.entry(key).or_insert(held).session.clone())
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/consumers/{consumer}/fetch", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), FetchQuery),
    responses(
        (status = 200, description = "The next batch, with its `ack` token; the batch named by `ack=` is committed first, an unacknowledged one is delivered again", body = cloudstream::wire::Fetched),
        crate::openapi::Failures
    )
)]
pub(crate) async fn fetch(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    query: Result<Query<FetchQuery>, QueryRejection>,
) -> Result<Json<Fetched>, ApiError> {
    let query = query?.0;
    let session = session(&state, &stream, &consumer, &query).await?;
    let mut outstanding = session.outstanding.lock().await;
    session.settle(&mut outstanding, query.ack.as_deref()).await;
    // The fetch commits what the handle handed out, which is now the acknowledged batch or
    // nothing; if it fails, the token stays, so a retry with it commits the batch.
    let batch = session.consumer.fetch().await?;
    let ack = token();
    *outstanding = Some(ack.clone());
    drop(outstanding);
    state.metrics.events_out(
        &stream,
        batch.records.len() as u64,
        crate::events::payload_bytes(&batch.records),
    );
    Ok(Json(Fetched {
        records: batch
            .records
            .iter()
            .map(|r| RecordJson::new(r, query.payload.unwrap_or_default()))
            .collect(),
        gaps: batch.gaps.iter().map(GapJson::from).collect(),
        ack,
    }))
}

/// The query of a commit: the token of the batch to commit, and the member of a group.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CommitQuery {
    /// The `ack` token of the batch to commit, from its fetch's answer.
    ack: String,
    /// The member of the consumer group that fetched it.
    member: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/consumers/{consumer}/commit", tag = "consumers",
    params(("name" = String, Path, description = "Stream name"), ("consumer" = String, Path, description = "Consumer name"), CommitQuery),
    responses(
        (status = 204, description = "The batch named by `ack=` is committed"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn commit(
    state: State,
    Path((stream, consumer)): Path<(String, String)>,
    query: Result<Query<CommitQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let query = query?.0;
    let ack = query.ack.as_str();
    if let Some(member) = &query.member {
        cloudstream::validate_name("member", member)?;
    }
    cloudstream::validate_name("consumer", &consumer)?;
    state.stream(&stream).await?;
    let key = (stream, consumer, query.member.clone().unwrap_or_default());
    let session = state.consumers.lock().get(&key).map(|h| h.session.clone());
    let not_outstanding = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "batch_not_outstanding",
            "the batch of this ack token is not the consumer's outstanding batch (it was \
             committed already, or another fetch took it back for delivery again)",
        )
    };
    let session = session.ok_or_else(not_outstanding)?;
    let mut outstanding = session.outstanding.lock().await;
    if outstanding.as_deref() != Some(ack) {
        return Err(not_outstanding());
    }
    session.consumer.commit().await?;
    *outstanding = None;
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
    body: Result<Json<BTreeMap<String, PartitionStart>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let resume = body?
        .0
        .into_iter()
        .map(|(p, start)| {
            let partition = p
                .parse::<u32>()
                .ok()
                .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            partition
                .map(|p| (p, start))
                .ok_or_else(|| ApiError::bad_request(format!("{p:?} is not a partition number")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    cloudstream::validate_name("consumer", &consumer)?;
    let handle = state.stream(&stream).await?;
    if let Some((p, _)) = resume.iter().find(|(p, _)| *p >= handle.partitions()) {
        return Err(cloudstream::Error::PartitionNotFound {
            stream,
            partition: *p,
            partitions: handle.partitions(),
        }
        .into());
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
