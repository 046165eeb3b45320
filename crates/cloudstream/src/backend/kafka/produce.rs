//! Appends: every event of a call sent to its partition by the idempotent producer, in
//! order, and the call answered once each is acknowledged by the cluster (`acks=all`).

use std::time::{Duration, Instant, SystemTime};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{client_config, KafkaBackend, RECORD_ROOM};
use crate::backend::{PartitionStart, ReadOptions};
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
        let sent_at = SystemTime::now();
        let producer = self.producer();
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
                match producer.send_result(record) {
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
                    Err((e, _)) => return Err(self.send_error(&producer, stream, e)),
                }
            }
        }
        // Offsets as the cluster reported them; `None`: stored, offset not said (librdkafka
        // reports -1 when the broker recognised a retried batch as a duplicate without
        // naming its offsets, as tansu does and Kafka does past its five cached batches).
        let mut offsets: Vec<Option<i64>> = Vec::with_capacity(events.len());
        for delivered in futures::future::join_all(deliveries).await {
            match delivered {
                Ok(Ok(d)) if d.partition == partition as i32 => {
                    offsets.push((d.offset >= 0).then_some(d.offset));
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
                Ok(Err((e, _))) => return Err(self.send_error(&producer, stream, e)),
                Err(_) => {
                    return Err(Error::Unavailable(
                        "the Kafka producer closed before the record was acknowledged".into(),
                    ))
                }
            }
        }
        // The records of one call went to one partition in order, so their offsets rise.
        // From the first one missing or not above the one before (tansu answers the batches
        // after a duplicate one with offsets from 0), none is trusted: they are found by
        // reading the partition back.
        let mut last = -1;
        let suspect = offsets.iter().position(|o| match *o {
            Some(o) if o > last => {
                last = o;
                false
            }
            _ => true,
        });
        if let Some(first) = suspect {
            for offset in &mut offsets[first..] {
                *offset = None;
            }
            self.locate(stream, partition, events, &mut offsets, sent_at)
                .await?;
        }
        Ok(offsets
            .into_iter()
            .map(|o| Position::new(partition, o.unwrap_or(0).max(0) as u64))
            .collect())
    }

    /// The producer in use.
    pub(super) fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The error of a failed send. After a fatal producer error (librdkafka refuses every
    /// send from then on) a new producer replaces the old one, and the caller may send again.
    fn send_error(&self, producer: &FutureProducer, stream: &str, e: KafkaError) -> Error {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return self.stream_error(stream, e);
        };
        tracing::warn!(
            ?code,
            reason,
            "the Kafka producer failed fatally; making a new one"
        );
        match client_config(&self.options, &SETTINGS).create::<FutureProducer>() {
            Ok(fresh) => {
                let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
                // Another send may have replaced it already.
                if current.client().fatal_error().is_some() {
                    let old = std::mem::replace(&mut *current, fresh);
                    drop(current);
                    // Closing a librdkafka client blocks.
                    super::read::close_later(vec![old]);
                }
            }
            Err(e) => tracing::warn!(error = %e, "a new Kafka producer could not be made"),
        }
        Error::Unavailable(
            format!(
                "the Kafka producer failed ({code:?}: {reason}); a new one was made, send again"
            )
            .into(),
        )
    }

    /// Finds the offsets the cluster did not report by reading the partition back: from
    /// the last reported offset before them (else from the first record appended since a
    /// minute before the call began) up to the end as it is now, each unreported event is
    /// the first record after the one before it that holds the same event. The producer sent
    /// them in order, once each. (An identical event another producer wrote in between
    /// would be taken for ours: the price of needing no marker in every record, for a case
    /// that needs a lost answer first.)
    async fn locate(
        &self,
        stream: &str,
        partition: u32,
        events: &[Event],
        offsets: &mut [Option<i64>],
        sent_at: SystemTime,
    ) -> Result<()> {
        let unknown = |offsets: &[Option<i64>]| offsets.iter().position(Option::is_none);
        let lost = || {
            Error::Backend(
                format!(
                    "records appended to {stream}:{partition} were stored, but the broker did not say at which offsets and they were not found reading back"
                )
                .into(),
            )
        };
        let Some(first) = unknown(offsets) else {
            return Ok(());
        };
        let mut from = match offsets[..first].iter().rev().flatten().next() {
            Some(o) => o + 1,
            None => {
                // Broker time (LogAppendTime) may lag this host's clock: look from a while
                // before, never below the partition's start.
                let since = sent_at - Duration::from_secs(60);
                self.offset_for_time(stream, partition, since)
                    .await?
                    .ok_or_else(lost)?
            }
        };
        // The records are between there and the end as it is now: the scan stops there.
        let (low, end) = self.watermarks(stream, partition).await?;
        from = from.max(low);
        let options = ReadOptions {
            max_records: 10_000,
            max_bytes: 16 * 1024 * 1024,
            wait: None,
        };
        while let Some(i) = unknown(offsets) {
            if from >= end {
                return Err(lost());
            }
            let start = PartitionStart::At((from as u64).into());
            let records = match self
                .read_partition(stream, partition, start, &options)
                .await
            {
                Ok(records) => records,
                // Retention ran meanwhile: go on from what is left.
                Err(Error::Expired { earliest, .. }) => {
                    from = earliest.sequence.as_u64().unwrap_or(0) as i64;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if records.is_empty() {
                return Err(lost());
            }
            let mut wanted = i;
            for r in &records {
                let offset = r.position.sequence.as_u64().unwrap_or(0) as i64;
                from = offset + 1;
                if same_event(&r.event, &events[wanted]) {
                    offsets[wanted] = Some(offset);
                    match unknown(offsets) {
                        Some(next) => wanted = next,
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a record read back holds `sent` (its event time kept to the millisecond).
fn same_event(read: &Event, sent: &Event) -> bool {
    read.payload == sent.payload
        && read.key == sent.key
        && read.headers == sent.headers
        && read.time.map(to_millis) == sent.time.map(to_millis)
}
