//! Named consumers over HTTP: a fetch commits the batch the client received before, as in
//! the library, and only that one. The server keeps one consumer handle per stream, name
//! and member; every batch it hands out carries an acknowledgement token (`ack`), and a
//! fetch commits the handle's outstanding batch only when it carries that batch's token
//! (`?ack=`). A fetch without it, or with an older one, gets the outstanding batch again:
//! two clients sharing one name, or a client whose answer was lost in transit, never commit
//! a batch nobody handled. With `member=ID`, clients fetching under one name form a consumer
//! group: each reads only the partitions it holds a lease on, and a member that stops
//! fetching for `lease_ms` loses them to the others, which get its uncommitted records again.

mod session;

pub(crate) use session::Handles;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use cloudstream::backend::PartitionStart;
use cloudstream::checkpoint::store_of;
use cloudstream::wire::{
    CheckpointBody, ConsumerList, Existed, Fetched, GapJson, PayloadForm, RecordJson,
};
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
    /// How long a fetched batch stays with its client before another client of the consumer
    /// may take it (and, with `member`, how long the member's leases outlive its last
    /// fetch): 100 ms to 1 h, default 10 s.
    #[param(maximum = 3_600_000)]
    lease_ms: Option<u64>,
    /// `json` (default: JSON payloads as JSON values) or `text` (every payload as its text).
    payload: Option<PayloadForm>,
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
    let session = session::open(&state, &stream, &consumer, &query).await?;
    let (batch, ack) = session.fetch(query.ack.as_deref()).await?;
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
    let session = state
        .consumers
        .get(&key)
        .ok_or_else(session::not_outstanding)?;
    session.commit(ack).await?;
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
    let store = store_of(state.client.backend().as_ref())?;
    // A server-run job reading as this consumer is stopped around the change, or it would
    // commit its own position over it.
    state
        .jobs
        .with_consumer_stopped(&stream, &consumer, async {
            store.commit(&stream, &consumer, &resume).await?;
            Ok(())
        })
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
    // A server-run job would start over from its registered start without its consumer:
    // that job is deleted instead, which deletes its consumer too.
    if let Some(kind) = state.jobs.owner(&stream, &consumer) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "consumer_in_use",
            format!(
                "consumer {consumer:?} is the one a {kind} reads as: delete the {kind} instead"
            ),
        ));
    }
    let existed = state
        .client
        .backend()
        .delete_consumer(&stream, &consumer)
        .await?;
    state.consumers.forget(&stream, Some(&consumer));
    Ok(Json(Existed { existed }))
}
