//! Live tail as Server-Sent Events: `GET /v1/streams/{name}/tail?from=latest` streams every
//! record as it arrives (`event: record`, `data:` the record's JSON). Each event's `id` is
//! the last position seen in every partition so far (`0:41,1:17`), so a client that
//! reconnects with `Last-Event-ID` resumes right after what it saw, in every partition.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use cloudstream::wire::{parse_from, record_json};
use cloudstream::Position;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::{ApiError, State};

/// The query of a tail: where to start (default `latest`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TailQuery {
    from: Option<String>,
}

/// The positions in a `Last-Event-ID` header (`0:41,1:17`).
fn seen_positions(headers: &HeaderMap) -> Result<Vec<Position>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(Vec::new());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Last-Event-ID is not text"))?;
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse::<Position>().map_err(ApiError::from))
        .collect()
}

#[utoipa::path(
    get, path = "/v1/streams/{name}/tail", tag = "events",
    params(("name" = String, Path, description = "Stream name"), TailQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after these positions (0:41,1:17)")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: record`, `data:` a record, `id:` the last position seen per partition", content_type = "text/event-stream"),
        crate::openapi::Failures
    )
)]
pub(crate) async fn tail(
    state: State,
    Path(name): Path<String>,
    query: Result<Query<TailQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let from = parse_from(query?.0.from.as_deref().unwrap_or("latest"))?;
    let seen = seen_positions(&headers)?;
    let stream = state.stream(&name).await?;
    let records = stream.tail_resuming(from, &seen).await?;
    let mut cursor: BTreeMap<u32, Position> = seen.into_iter().map(|p| (p.partition, p)).collect();
    let shared = state.0.clone();
    let events = records.map(move |record| {
        let event = match record {
            Ok(record) => {
                let bytes = record.event.payload.len() as u64;
                shared.metrics.events_out(&name, 1, bytes);
                cursor.insert(record.position.partition, record.position);
                let id: Vec<String> = cursor.values().map(Position::to_string).collect();
                SseEvent::default()
                    .id(id.join(","))
                    .event("record")
                    .data(record_json(&record).to_string())
            }
            Err(e) => SseEvent::default()
                .event("error")
                .data(ApiError::from(e).body().to_string()),
        };
        Ok(event)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
