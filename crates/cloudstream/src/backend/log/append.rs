//! Appends to the embedded engine: events encoded on the caller's task and handed to the
//! partition's writer thread, whose completion fires a oneshot channel; events with an id
//! stored once per stream within the deduplication window ([`super::dedup`]).

use std::collections::HashMap;
use std::sync::Arc;

use cloudstream_log::{BatchBuilder, LogError, StreamLog};
use tokio::sync::oneshot;

use super::dedup::{self, Plan};
use super::{blocking, log_error, LogBackend};
use crate::event::{now_ms, to_millis};
use crate::{Error, Event, Position, Result};

/// Appends `events` to `partition` of `stream`, all or none; an event whose id was stored
/// within the window is not stored again and answers with its first copy's position.
pub(super) async fn append(
    backend: &LogBackend,
    stream: &str,
    partition: u32,
    events: &[Event],
) -> Result<Vec<Position>> {
    if events.is_empty() {
        // An empty batch would be an fsynced frame of no records.
        return Err(Error::InvalidArgument(
            "an append needs at least one event".into(),
        ));
    }
    for event in events {
        if event.size() > backend.max_record_bytes {
            return Err(Error::RecordTooLarge {
                size: event.size(),
                max: backend.max_record_bytes,
            });
        }
        crate::event::check_fields(event)?;
    }
    let log_stream = backend.stream(stream)?;
    let identities: Vec<Option<String>> = events.iter().map(dedup::event_identity).collect();
    if identities.iter().any(Option::is_some) {
        let scanned = Arc::clone(&log_stream);
        backend.dedup.load(stream, || recent_ids(scanned)).await?;
    }
    // Copies being written by other appends are waited for first, so that once this one
    // writes, nothing is left that could fail it.
    let (plans, claims) = loop {
        let (plans, claims) = backend.dedup.plan(stream, &identities);
        let waits: Vec<_> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Wait(rx) => Some(rx.clone()),
                _ => None,
            })
            .collect();
        if waits.is_empty() {
            break (plans, claims);
        }
        drop(claims);
        for rx in waits {
            dedup::settled(rx).await;
        }
    };
    let to_store: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Plan::Store))
        .map(|(i, _)| i)
        .collect();
    let stored = if to_store.is_empty() {
        HashMap::new()
    } else {
        write(
            backend,
            &log_stream,
            stream,
            partition,
            events,
            to_store,
            claims,
        )
        .await?
    };
    let mut positions: Vec<Position> = Vec::with_capacity(events.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let at = match plan {
            Plan::Known(at) => at,
            Plan::SameAs(j) => positions[j],
            Plan::Store | Plan::Wait(_) => stored.get(&i).copied().ok_or_else(|| {
                Error::Backend(format!("event {i} of the append has no position").into())
            })?,
        };
        positions.push(at);
    }
    Ok(positions)
}

/// Writes the events at `indices` to the partition as one batch; their positions by index.
/// The claims settle on the writer thread as the append completes, so copies waiting for
/// them learn the outcome even if the caller went away meanwhile.
async fn write(
    backend: &LogBackend,
    log_stream: &StreamLog,
    stream: &str,
    partition: u32,
    events: &[Event],
    indices: Vec<usize>,
    claims: dedup::Claims,
) -> Result<HashMap<usize, Position>> {
    let part = log_stream
        .partition(partition)
        .map_err(|e| log_error(stream, partition, e))?;
    let bytes: usize = indices.iter().map(|&i| events[i].payload.len() + 64).sum();
    let mut batch = BatchBuilder::with_capacity(bytes);
    for &i in &indices {
        let event = &events[i];
        let headers = event.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        batch
            .push(
                event.key.as_deref().map(str::as_bytes),
                headers,
                &event.payload,
                event.time.map(to_millis),
            )
            .map_err(|e| Error::InvalidArgument(format!("event cannot be encoded: {e:?}")))?;
    }
    let (tx, rx) = oneshot::channel();
    let dedup = Arc::clone(&backend.dedup);
    part.append(
        batch.finish(),
        Box::new(move |r| {
            let stored = r.map(|ack| positions(&indices, partition, &ack));
            match &stored {
                Ok(positions) => dedup.settle(claims, Ok(positions)),
                Err(e) => dedup.settle(claims, Err(e.to_string())),
            }
            let _ = tx.send(stored);
        }),
    );
    rx.await
        .map_err(|_| Error::from(LogError::Closed))?
        .map_err(|e| log_error(stream, partition, e))
}

/// The positions of the events at `indices`, stored in order by `ack`.
fn positions(
    indices: &[usize],
    partition: u32,
    ack: &cloudstream_log::AppendResult,
) -> HashMap<usize, Position> {
    indices
        .iter()
        .zip(0..u64::from(ack.count))
        .map(|(&i, k)| (i, Position::new(partition, ack.base_offset + k)))
        .collect()
}

/// The ids of the records of `log_stream` appended within the deduplication window, read
/// back from the log: (key, position, append time).
async fn recent_ids(log_stream: Arc<StreamLog>) -> Result<Vec<(String, Position, i64)>> {
    blocking(move || {
        let since = now_ms() - dedup::WINDOW.as_millis() as i64;
        let mut found = Vec::new();
        for (p, part) in log_stream.partitions().iter().enumerate() {
            let partition = p as u32;
            let mut next = part.offset_for_time(since)?;
            loop {
                let records = match part.read(next, 1000, 8 * 1024 * 1024) {
                    Ok(records) => records,
                    // Retention moved the start while this read: go on from it.
                    Err(LogError::Expired { earliest, .. }) => {
                        next = earliest;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(last) = records.last() else {
                    break;
                };
                next = last.offset + 1;
                for r in &records {
                    let header = |name: &str| {
                        r.headers
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                    };
                    if let Some(key) = dedup::identity(header) {
                        found.push((key, Position::new(partition, r.offset), r.append_time_ms));
                    }
                }
            }
        }
        Ok(found)
    })
    .await
}
