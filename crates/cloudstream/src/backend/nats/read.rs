//! Reads by position and time: an ephemeral consumer of the partition's subject, starting
//! where the read starts, fetched once without acknowledgements, then deleted.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream as JsStream;
use futures::StreamExt;

use super::publish::{KEY_HEADER, TIME_HEADER};
use super::streams::nats_error;
use super::{header_map, partition_of, subject, NatsBackend, HEADER_ROOM};
use crate::backend::{PartitionStart, ReadOptions};
use crate::event::from_millis;
use crate::{Error, Event, Position, Record, Result};

/// How long an ephemeral reader outlives a read that could not delete it.
const READER_IDLE: Duration = Duration::from_secs(10);

/// The deliver policy of a consumer starting at time `t`.
pub(super) fn js_time(t: SystemTime) -> DeliverPolicy {
    let nanos = crate::event::to_millis(t).max(0) as i128 * 1_000_000;
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    DeliverPolicy::ByStartTime { start_time }
}

/// A message of stream `stream` as a record: its subject's partition, its stream sequence,
/// the server's time of receipt, and the event its headers and payload hold.
pub(super) fn to_record(stream: &str, m: &async_nats::jetstream::Message) -> Result<Record> {
    let info = m.info().map_err(|e| {
        Error::Corrupt(format!("a JetStream message without its metadata: {e}").into())
    })?;
    let partition = partition_of(stream, m.subject.as_str()).ok_or_else(|| {
        Error::Corrupt(format!("message on {} is not of stream {stream}", m.subject).into())
    })?;
    let mut headers = header_map(m.headers.as_ref());
    let key = headers.remove(KEY_HEADER);
    let time = headers
        .remove(TIME_HEADER)
        .and_then(|t| t.parse::<i64>().ok())
        .map(from_millis);
    Ok(Record {
        position: Position::new(partition, info.stream_sequence),
        append_time: SystemTime::from(info.published),
        event: Event {
            payload: m.payload.clone(),
            key,
            headers,
            time,
        },
    })
}

impl NatsBackend {
    /// Reads one partition from `start` (the `Backend::read` primitive).
    pub(super) async fn read_partition(
        &self,
        stream: &str,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        let js_stream = self.stream(stream).await?;
        let info = js_stream.cached_info();
        let partitions = info.config.subjects.len() as u32;
        if partition >= partitions {
            return Err(Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions,
            });
        }
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let from_sequence = |s: crate::Sequence, after: bool| -> Result<u64> {
            let s = s.as_u64().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "sequence {s} is beyond what a JetStream sequence can be"
                ))
            })?;
            Ok(if after { s.saturating_add(1) } else { s })
        };
        let policy = match start {
            PartitionStart::Earliest => DeliverPolicy::All,
            PartitionStart::Latest => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            PartitionStart::AtTime(t) => js_time(t),
            PartitionStart::At(s) | PartitionStart::After(s) => {
                let from = from_sequence(s, matches!(start, PartitionStart::After(_)))?;
                // Messages before the first were removed (age, limits): positions there are
                // gone, not merely empty.
                if from < first && first > 1 {
                    return Err(self
                        .expired(&js_stream, stream, partition, from, first)
                        .await);
                }
                DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                }
            }
        };
        let reader = js_stream
            .create_consumer(pull::Config {
                deliver_policy: policy,
                filter_subject: subject(stream, partition),
                ack_policy: AckPolicy::None,
                inactive_threshold: READER_IDLE,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(nats_error)?;
        // One message always fits the byte budget, as on every backend.
        let max_bytes = options.max_bytes.max(self.max_payload + HEADER_ROOM);
        let mut fetch = reader
            .fetch()
            .max_messages(options.max_records.max(1))
            .max_bytes(max_bytes);
        if let Some(wait) = options.wait.filter(|w| !w.is_zero()) {
            fetch = fetch.expires(wait);
        }
        let mut messages = fetch.messages().await.map_err(nats_error)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| Error::Unavailable(e.to_string().into()))?;
            let record = to_record(stream, &m)?;
            let size = record.event.size();
            if !out.is_empty() && bytes + size > options.max_bytes {
                break;
            }
            bytes += size;
            out.push(record);
        }
        let name = reader.cached_info().name.clone();
        let js_stream = js_stream.clone();
        tokio::spawn(async move {
            let _ = js_stream.delete_consumer(&name).await;
        });
        Ok(out)
    }

    /// `Expired` for a read from `from`, below the stream's first sequence: the partition's
    /// oldest message is where it can resume.
    async fn expired(
        &self,
        js: &JsStream,
        stream: &str,
        partition: u32,
        from: u64,
        first: u64,
    ) -> Error {
        let earliest = js
            .direct_get_next_for_subject(subject(stream, partition), Some(first))
            .await
            .map_or(first, |m| m.sequence);
        Error::Expired {
            requested: Position::new(partition, from),
            earliest: Position::new(partition, earliest),
        }
    }
}
