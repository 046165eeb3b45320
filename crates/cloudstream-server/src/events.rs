//! Sending events (one, or a batch with one result each) and deterministic reads.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;

use cloudstream::backend::ReadOptions;
use cloudstream::wire::{parse_from, Appended, EventJson, PayloadForm, RecordJson, Records};
use cloudstream::Event;
use serde::Deserialize;

use crate::openapi::{BatchResult, BatchResults, Sent};
use crate::{ApiError, Path, State};

/// An event from its JSON form; what is wrong with it is a 400.
fn event(json: EventJson) -> Result<Event, ApiError> {
    Ok(json.into_event()?)
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/events", tag = "events",
    params(("name" = String, Path, description = "Stream name")),
    request_body(
        description = "One event: its JSON form, a CloudEvent (structured, or binary with ce-* headers), or raw bytes with cloudstream-key, cloudstream-event-time and cloudstream-header-NAME headers",
        content(
            (cloudstream::wire::EventJson = "application/json"),
            (Object = "application/cloudevents+json"),
            (Vec<u8> = "application/octet-stream")
        )
    ),
    responses(
        (status = 201, description = "Stored durably", body = cloudstream::wire::Sent),
        crate::openapi::Failures
    )
)]
pub(crate) async fn send(
    state: State,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    let event = crate::ingest::event(&headers, &body?)?;
    let bytes = event.payload.len() as u64;
    let position = state.sender(&name).await?.send(event).await?;
    state.metrics.events_in(&name, 1, bytes);
    Ok((StatusCode::CREATED, Json(Sent { position })))
}

#[utoipa::path(
    post, path = "/v1/streams/{name}/events/batch", tag = "events",
    params(("name" = String, Path, description = "Stream name")),
    request_body(
        description = "Events: a JSON array, NDJSON (one event per line), or a JSON array of structured CloudEvents",
        content(
            (Vec<cloudstream::wire::EventJson> = "application/json"),
            (String = "application/x-ndjson"),
            (Vec<Object> = "application/cloudevents-batch+json")
        )
    ),
    responses(
        (status = 200, description = "One result per event, in order", body = crate::openapi::BatchResults),
        crate::openapi::Failures
    )
)]
pub(crate) async fn send_batch(
    state: State,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResults>, ApiError> {
    // Each event is checked alone, so one bad event fails alone.
    let parsed = crate::ingest::batch(&headers, &body?, state.limits.max_batch_events)?;
    let stream = state.stream(&name).await?;
    let good: Vec<Event> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let sizes: Vec<u64> = good.iter().map(|e| e.payload.len() as u64).collect();
    let outcomes = stream.send_batch(good).await;
    let (count, bytes) = outcomes
        .iter()
        .zip(&sizes)
        .filter(|(r, _)| r.is_ok())
        .fold((0, 0), |(n, b), (_, size)| (n + 1, b + size));
    state.metrics.events_in(&name, count, bytes);
    let mut sent = outcomes.into_iter();
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(e) => BatchResult::Failed(e.error_body()),
            Ok(_) => match sent.next() {
                Some(Ok(position)) => BatchResult::Sent(Sent { position }),
                Some(Err(e)) => BatchResult::Failed(ApiError::from(e).error_body()),
                None => BatchResult::Failed(ApiError::bad_request("no result").error_body()),
            },
        })
        .collect();
    Ok(Json(BatchResults { results }))
}

/// `POST /v1/streams/{name}/partitions/{partition}/events`: a JSON array of events
/// appended, in order, to one partition, all or nothing (the primitive the `http://` client
/// backend writes with); 201 with one position per event.
#[utoipa::path(
    post, path = "/v1/streams/{name}/partitions/{partition}/events", tag = "events",
    params(("name" = String, Path, description = "Stream name"), ("partition" = u32, Path, description = "Partition")),
    request_body(content = Vec<cloudstream::wire::EventJson>, content_type = "application/json"),
    responses(
        (status = 201, description = "Every event stored, in order", body = cloudstream::wire::Appended),
        crate::openapi::Failures
    )
)]
pub(crate) async fn append(
    state: State,
    Path((name, partition)): Path<(String, u32)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Appended>), ApiError> {
    // Counted as it is parsed, like a batch: a body of millions of `{}` is refused early.
    let body = body?;
    let items = crate::ingest::bounded_array(&body, state.limits.max_batch_events)?;
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "an append needs at least one event (an empty one would write an empty frame)",
        ));
    }
    let events = items
        .into_iter()
        .map(|item| {
            serde_json::from_str::<EventJson>(item.get())
                .map_err(|e| bad_json_event(&e))
                .and_then(event)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stream = state.stream(&name).await?;
    if partition >= stream.partitions() {
        return Err(cloudstream::Error::PartitionNotFound {
            stream: name,
            partition,
            partitions: stream.partitions(),
        }
        .into());
    }
    for event in &events {
        stream.check_event(event)?;
    }
    let bytes = events.iter().map(|e| e.payload.len() as u64).sum();
    let count = events.len() as u64;
    let positions = stream.backend().append(&name, partition, &events).await?;
    state.metrics.events_in(&name, count, bytes);
    Ok((StatusCode::CREATED, Json(Appended { positions })))
}

/// A batch over the limit is a 413.
/// A 400 `bad_json` for an element that is not an event.
fn bad_json_event(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_json",
        format!("not an event: {e}"),
    )
}

/// The query of a read: where to start (`from`, in `partition`: `earliest`, `latest`,
/// `time:...`, or a position `P:S` / `after:P:S`), how many records and bytes at most, and how long to
/// wait for a first record.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    from: Option<String>,
    partition: Option<u32>,
    max: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    /// `json` (default: JSON payloads as JSON values) or `text` (every payload as its text).
    payload: Option<PayloadForm>,
}

#[utoipa::path(
    get, path = "/v1/streams/{name}/records", tag = "events",
    params(("name" = String, Path, description = "Stream name"), ReadQuery),
    responses(
        (status = 200, description = "Records in order", body = cloudstream::wire::Records),
        crate::openapi::Failures
    )
)]
pub(crate) async fn read(
    state: State,
    Path(name): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Records>, ApiError> {
    let query = query?.0;
    let from = parse_from(query.from.as_deref().unwrap_or("earliest"))?;
    if let (Some(p), Some(q)) = (from.partition(), query.partition) {
        if p != q {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "inconsistent_partition",
                format!("from names a position in partition {p}, partition= says {q}"),
            ));
        }
    }
    let partition = query.partition.or(from.partition()).unwrap_or(0);
    let defaults = ReadOptions::default();
    let options = ReadOptions {
        max_records: query.max.unwrap_or(100).clamp(1, state.limits.max_records),
        // At most the largest body the server takes, so one read cannot build a huge answer.
        max_bytes: query
            .max_bytes
            .unwrap_or(defaults.max_bytes)
            .clamp(1, state.limits.max_body_bytes),
        wait: query
            .wait_ms
            .filter(|&ms| ms > 0)
            .map(|ms| crate::consumers::long_poll(&state, ms)),
    };
    let stream = state.stream(&name).await?;
    let records = stream.read_with(partition, from, &options).await?;
    state
        .metrics
        .events_out(&name, records.len() as u64, payload_bytes(&records));
    let form = query.payload.unwrap_or_default();
    let records = records.iter().map(|r| RecordJson::new(r, form)).collect();
    Ok(Json(Records { records }))
}

/// Payload bytes of some records, for the metrics.
pub(crate) fn payload_bytes(records: &[cloudstream::Record]) -> u64 {
    records.iter().map(|r| r.event.payload.len() as u64).sum()
}
