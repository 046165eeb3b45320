//! Live tail as Server-Sent Events: `GET /v1/streams/{name}/tail?from=latest` streams every
//! record as it arrives (`event: record`, `data:` the record's JSON).
//!
//! Each event's `id` is a cursor over every partition the tail covers: `P:S` for a partition
//! whose record `S` was the last one sent, `P@START` for one that has sent nothing yet
//! (`START` pinned when the tail began: `at:SEQ`, `time:MS`, `earliest`). The tail opens
//! with an `event: open` carrying the first cursor, so a client that reconnects with
//! `Last-Event-ID` (as `EventSource` does) resumes right where it was in every partition,
//! even those that had no record yet, whatever `from` says.
//!
//! Live tails are not bounded by the request deadline; at most `Limits::max_tails` run at
//! once (more get 503 `overloaded`).

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use cloudstream::backend::{Checkpoint, PartitionStart};
use cloudstream::wire::{parse_from, PayloadForm, RecordJson};
use cloudstream::Position;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::{ApiError, Path, State};

/// The query of a tail: where to start (default `latest`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailQuery {
    from: Option<String>,
    /// `json` (default: JSON payloads as JSON values) or `text` (every payload as its text).
    payload: Option<PayloadForm>,
}

/// The cursor in a `Last-Event-ID` header: `0:41,1@at:17`.
fn cursor_from(headers: &HeaderMap) -> Result<Vec<(u32, PartitionStart)>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(Vec::new());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Last-Event-ID is not text"))?;
    parse_cursor(text)
}

/// A cursor as the tail writes its event ids: `P:S` after record S, `P@START` at START,
/// joined by commas.
pub(crate) fn parse_cursor(text: &str) -> Result<Vec<(u32, PartitionStart)>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|item| match item.split_once('@') {
            Some((p, start)) => {
                let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
                let p = p.parse::<u32>().ok().filter(|_| digits).ok_or_else(|| {
                    ApiError::bad_request(format!("{item:?} in Last-Event-ID is not P@START"))
                })?;
                Ok((p, start.parse::<PartitionStart>()?))
            }
            None => {
                let seen = item.parse::<Position>()?;
                Ok((seen.partition, PartitionStart::After(seen.sequence)))
            }
        })
        .collect()
}

/// The cursor as an SSE id.
pub(crate) fn cursor_id(cursor: &Checkpoint) -> String {
    let items: Vec<String> = cursor
        .iter()
        .map(|(p, start)| match start {
            PartitionStart::After(seq) => format!("{p}:{seq}"),
            other => format!("{p}@{other}"),
        })
        .collect();
    items.join(",")
}

#[utoipa::path(
    get, path = "/v1/streams/{name}/tail", tag = "events",
    params(("name" = String, Path, description = "Stream name"), TailQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume from this cursor (0:41,1@at:17): P:S after record S, P@START at START")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: record`, `data:` a record, `id:` the cursor over every partition; it opens with `event: open`", content_type = "text/event-stream"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn tail(
    state: State,
    Path(name): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let query = query?.0;
    let from = parse_from(query.from.as_deref().unwrap_or("latest"))?;
    let form = query.payload.unwrap_or_default();
    let resume = cursor_from(&headers)?;
    let permit = state.tails.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many live tails; try again later",
        )
    })?;
    let stream = state.stream(&name).await?;
    let mut cursor = stream.tail_starts(from, &resume).await?;
    let records = stream.tail_from(&cursor);
    let opening = SseEvent::default()
        .id(cursor_id(&cursor))
        .event("open")
        .data("{}");
    let shared = state.0.clone();
    let events = records.map(move |record| {
        // The permit lives as long as the tail does.
        let _held = &permit;
        let event = match record {
            Ok(record) => {
                let bytes = record.event.payload.len() as u64;
                shared.metrics.events_out(&name, 1, bytes);
                let Position {
                    partition,
                    sequence,
                } = record.position;
                cursor.insert(partition, PartitionStart::After(sequence));
                SseEvent::default()
                    .id(cursor_id(&cursor))
                    .event("record")
                    .data(
                        serde_json::to_string(&RecordJson::new(&record, form)).unwrap_or_default(),
                    )
            }
            Err(e) => SseEvent::default()
                .event("error")
                .data(ApiError::from(e).body().to_string()),
        };
        Ok(event)
    });
    let events = futures::stream::once(async move { Ok(opening) }).chain(events);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
