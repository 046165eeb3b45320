//! Sending events (one, or a batch with one result each) and deterministic reads.

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use cloudstream::wire::{base64_decode, parse_from, record_json};
use cloudstream::Event;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ApiError, State};

/// An event in a request: `payload` (a string is stored as its text, any other JSON value
/// as JSON with `content-type: application/json`) or `payload_base64` for raw bytes, plus
/// an optional key, headers and event time (RFC 3339).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn {
    payload: Option<Value>,
    payload_base64: Option<String>,
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    event_time: Option<String>,
}

impl EventIn {
    fn into_event(self) -> Result<Event, ApiError> {
        let mut event = match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give payload or payload_base64, not both",
                ))
            }
            (None, None) => return Err(ApiError::bad_request("an event needs a payload")),
            (Some(Value::String(text)), None) => Event::new(text),
            (Some(value), None) => Event::json(&value)?,
            (None, Some(b64)) => Event::new(base64_decode(&b64)?),
        };
        event.key = self.key;
        event.headers.extend(self.headers);
        if let Some(t) = self.event_time {
            let time = humantime::parse_rfc3339_weak(&t).map_err(|e| {
                ApiError::bad_request(format!("event_time {t:?} is not an RFC 3339 time: {e}"))
            })?;
            event.time = Some(time);
        }
        Ok(event)
    }
}

pub(crate) async fn send(
    state: State,
    Path(name): Path<String>,
    body: Result<Json<EventIn>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = body?.0.into_event()?;
    let bytes = event.payload.len() as u64;
    let stream = state.client.stream(&name).open().await?;
    let receipt = stream.send(event).await?;
    state.metrics.events_in(&name, 1, bytes);
    Ok((StatusCode::CREATED, Json(json!({ "position": receipt }))))
}

pub(crate) async fn send_batch(
    state: State,
    Path(name): Path<String>,
    body: Result<Json<Vec<Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let items = body?.0;
    let max = state.limits.max_batch_events;
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} events in one batch; at most {max}", items.len()),
        ));
    }
    let stream = state.client.stream(&name).open().await?;
    // Each item is checked alone, so one bad event fails alone.
    let parsed: Vec<Result<Event, ApiError>> = items
        .into_iter()
        .map(|item| {
            serde_json::from_value::<EventIn>(item)
                .map_err(|e| ApiError::bad_request(format!("not an event: {e}")))
                .and_then(EventIn::into_event)
        })
        .collect();
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
    let results: Vec<Value> = parsed
        .into_iter()
        .map(|p| match p {
            Err(e) => e.body(),
            Ok(_) => match sent.next() {
                Some(Ok(position)) => json!({ "position": position }),
                Some(Err(e)) => ApiError::from(e).body(),
                None => ApiError::bad_request("no result").body(),
            },
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// The query of a read: where to start, which partition, how many.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    from: Option<String>,
    partition: Option<u32>,
    max: Option<usize>,
}

pub(crate) async fn read(
    state: State,
    Path(name): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = query?.0;
    let from = parse_from(query.from.as_deref().unwrap_or("earliest"))?;
    let max = query.max.unwrap_or(100).clamp(1, state.limits.max_records);
    let stream = state.client.stream(&name).open().await?;
    let partition = query.partition.or(from.partition()).unwrap_or(0);
    let records = stream.read_partition(partition, from, max).await?;
    state
        .metrics
        .events_out(&name, records.len() as u64, payload_bytes(&records));
    let records: Vec<Value> = records.iter().map(record_json).collect();
    Ok(Json(json!({ "records": records })))
}

/// Payload bytes of some records, for the metrics.
pub(crate) fn payload_bytes(records: &[cloudstream::Record]) -> u64 {
    records.iter().map(|r| r.event.payload.len() as u64).sum()
}
