//! Appends: a publish per event to the partition's subject, each with a `Nats-Msg-Id`, all
//! in flight at once and the call answered once each is acknowledged. A publish whose
//! acknowledgement did not come in time is sent again with the same id: the stream's
//! duplicate window keeps one copy.

use std::future::IntoFuture;
use std::str::FromStr;
use std::sync::atomic::Ordering;

use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::HeaderMap;

use super::streams::nats_error;
use super::{partition_of, subject, NatsBackend, HEADER_ROOM};
use crate::event::to_millis;
use crate::{Error, Event, Position, Result};

/// Most events and bytes in one append call.
pub(super) const MAX_BATCH_RECORDS: usize = 10_000;
pub(super) const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Header limits that keep a message's headers (ours beside) under the server's 64 KiB.
pub(super) const MAX_HEADERS: usize = 32;
pub(super) const MAX_HEADER_NAME_BYTES: usize = 256;
pub(super) const MAX_HEADER_VALUE_BYTES: usize = 1024;

/// The headers carrying an event's key and time (ms since the Unix epoch).
pub(super) const KEY_HEADER: &str = "Cloudstream-Key";
pub(super) const TIME_HEADER: &str = "Cloudstream-Time";

/// Sends of one event after a publish not acknowledged in time.
const ATTEMPTS: usize = 3;

/// Publishes in flight at once.
pub(super) const IN_FLIGHT: usize = 1000;

impl NatsBackend {
    /// The crate's error for a failed publish to `stream`; a missing stream is forgotten.
    fn publish_error(&self, e: PublishError, stream: &str) -> Error {
        match e.kind() {
            PublishErrorKind::StreamNotFound => {
                self.forget(stream);
                Error::StreamNotFound {
                    stream: stream.to_owned(),
                }
            }
            PublishErrorKind::MaxPayloadExceeded => {
                Error::InvalidArgument(format!("the server refused a message as too large: {e}"))
            }
            _ => nats_error(e),
        }
    }
}

impl NatsBackend {
    /// Where an acknowledged publish is: where it was sent, or, for a copy the duplicate
    /// window dropped, where the first copy is (sent to another partition, perhaps).
    async fn position_of(
        &self,
        stream: &str,
        partition: u32,
        ack: &async_nats::jetstream::publish::PublishAck,
    ) -> Result<Position> {
        if !ack.duplicate {
            return Ok(Position::new(partition, ack.sequence));
        }
        let js_stream = self.stream(stream).await?;
        let first = js_stream
            .direct_get(ack.sequence)
            .await
            .map_err(nats_error)?;
        let p = partition_of(stream, first.subject.as_str()).unwrap_or(partition);
        Ok(Position::new(p, ack.sequence))
    }

    /// The headers of an event's message: its own, its key and time, and its message id
    /// (the event's identity: its id, or a CloudEvent's source and id; else `made`).
    fn headers_of(&self, event: &Event, made: &str) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            // NATS's own headers change what the server does; ours carry the key and time.
            let reserved = name.to_ascii_lowercase().starts_with("nats-")
                || name.eq_ignore_ascii_case(KEY_HEADER)
                || name.eq_ignore_ascii_case(TIME_HEADER);
            if reserved {
                return Err(Error::InvalidArgument(format!(
                    "header {name:?} is reserved on NATS (Nats-*, {KEY_HEADER}, {TIME_HEADER})"
                )));
            }
            if value.contains(['\r', '\n']) {
                return Err(Error::InvalidArgument(format!(
                    "header {name:?}: a NATS header value cannot hold a line break"
                )));
            }
            let name = HeaderName::from_str(name).map_err(|_| {
                Error::InvalidArgument(format!(
                    "header {name:?} cannot be a NATS header name (no spaces, colons or control characters)"
                ))
            })?;
            headers.insert(name, value.as_str());
        }
        if let Some(key) = &event.key {
            if key.contains(['\r', '\n']) {
                return Err(Error::InvalidArgument(
                    "a key cannot hold a line break on NATS (it travels as a header)".into(),
                ));
            }
            headers.insert(KEY_HEADER, key.as_str());
        }
        if let Some(t) = event.time {
            headers.insert(TIME_HEADER, to_millis(t).to_string().as_str());
        }
        // The event's own id as given, so other NATS clients publishing it dedupe alike.
        let id = event
            .id()
            .map(str::to_owned)
            .or_else(|| crate::event::event_identity(event));
        headers.insert(NATS_MESSAGE_ID, id.as_deref().unwrap_or(made));
        Ok(headers)
    }

    /// Appends events, in order, to one partition (the `Backend::append` primitive).
    pub(super) async fn publish(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        self.check_partition(stream, partition).await?;
        let max = self.max_payload.saturating_sub(HEADER_ROOM);
        if let Some(e) = events.iter().find(|e| e.size() > max) {
            return Err(Error::RecordTooLarge {
                size: e.size(),
                max,
            });
        }
        let subject = subject(stream, partition);
        let base = self.sends.fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut messages = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let made = format!("{}-{}", self.process, base + i as u64);
            messages.push((self.headers_of(event, &made)?, event.payload.clone()));
        }
        let mut positions: Vec<Option<Position>> = vec![None; events.len()];
        for attempt in 1..=ATTEMPTS {
            let todo: Vec<usize> = (0..events.len())
                .filter(|&i| positions[i].is_none())
                .collect();
            let mut timed_out = None;
            // Publishes go in windows: async-nats holds at most a few thousand unanswered.
            for window in todo.chunks(IN_FLIGHT) {
                let mut pending = Vec::with_capacity(window.len());
                for &i in window {
                    let (headers, payload) = &messages[i];
                    let ack = self
                        .js
                        .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                        .await
                        .map_err(|e| self.publish_error(e, stream))?;
                    pending.push((i, ack));
                }
                for (i, ack) in pending {
                    match ack.into_future().await {
                        Ok(ack) => {
                            positions[i] = Some(self.position_of(stream, partition, &ack).await?)
                        }
                        Err(e) if e.kind() == PublishErrorKind::TimedOut && attempt < ATTEMPTS => {
                            timed_out = Some(e);
                        }
                        Err(e) => return Err(self.publish_error(e, stream)),
                    }
                }
            }
            match timed_out {
                Some(e) => {
                    tracing::warn!(stream, partition, error = %e, "a publish was not acknowledged in time; sending it again with the same id")
                }
                None => break,
            }
        }
        positions
            .into_iter()
            .map(|p| p.ok_or_else(|| Error::Unavailable("a publish was never acknowledged".into())))
            .collect()
    }
}
