//! Appends: every event of a call sent to its partition by the idempotent producer, in
//! order, and the call answered once each is acknowledged by the cluster (`acks=all`).

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{KafkaBackend, RECORD_ROOM};
use crate::event::to_millis;
use crate::{Error, Event, Position, Result};

/// The header carrying an event's time (ms since the Unix epoch), as on Pub/Sub.
pub(super) const TIME_HEADER: &str = "cloudstream-time";

/// Most events and bytes in one append call; the producer batches them on the wire by its
/// own `batch.size` and `linger.ms`.
pub(super) const MAX_BATCH_RECORDS: usize = 10_000;
pub(super) const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The producer's settings: idempotent, acknowledged by every in-sync replica, and never
/// creating a topic by writing to it (a missing stream is an error, as everywhere).
pub(super) const SETTINGS: [(&str, &str); 3] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("allow.auto.create.topics", "false"),
];

/// Pause before offering a record again to a full producer queue.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(2);

/// The record headers of an event: its own, then its time.
pub(super) fn headers_of(event: &Event) -> Option<OwnedHeaders> {
    if event.headers.is_empty() && event.time.is_none() {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(event.headers.len() + 1);
    for (key, value) in &event.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    if let Some(time) = event.time {
        headers = headers.insert(Header {
            key: TIME_HEADER,
            value: Some(to_millis(time).to_string().as_bytes()),
        });
    }
    Some(headers)
}

impl KafkaBackend {
    /// Appends events, in order, to one partition (the `Backend::append` primitive).
    pub(super) async fn produce(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
    ) -> Result<Vec<Position>> {
        self.check_partition(stream, partition).await?;
        let max = self.limits.message_bytes.saturating_sub(RECORD_ROOM);
        if let Some(e) = events.iter().find(|e| e.size() > max) {
            return Err(Error::RecordTooLarge {
                size: e.size(),
                max,
            });
        }
        let deadline = Instant::now() + self.options.delivery_timeout();
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
                topic: stream,
                partition: Some(partition as i32),
                payload: Some(&event.payload[..]),
                key: event.key.as_deref().map(str::as_bytes),
                timestamp: None,
                headers: headers_of(event),
            };
            // Records are offered one after the other, each only once the one before is
            // queued, so a full queue never lets a later record overtake an earlier one.
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if Instant::now() < deadline =>
                    {
                        record = r;
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err((e, _)) => return Err(self.stream_error(stream, e)),
                }
            }
        }
        let mut positions = Vec::with_capacity(events.len());
        for delivered in futures::future::join_all(deliveries).await {
            match delivered {
                Ok(Ok(d)) if d.partition == partition as i32 && d.offset >= 0 => {
                    positions.push(Position::new(partition, d.offset as u64));
                }
                Ok(Ok(d)) => {
                    return Err(Error::Backend(
                        format!(
                            "a record for partition {partition} was stored at {}:{}",
                            d.partition, d.offset
                        )
                        .into(),
                    ))
                }
                Ok(Err((e, _))) => return Err(self.stream_error(stream, e)),
                Err(_) => {
                    return Err(Error::Unavailable(
                        "the Kafka producer closed before the record was acknowledged".into(),
                    ))
                }
            }
        }
        Ok(positions)
    }
}
