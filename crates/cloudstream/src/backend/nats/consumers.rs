//! Named consumers as durable pull consumers: one per consumer name, of every partition's
//! subject, with explicit acknowledgements (the implicit checkpoint). A pull fetches from it;
//! acknowledging a record acks its message, giving it back naks it (delivered again at
//! once). A message unacknowledged for `ack_wait_ms` is delivered again (to whichever
//! process pulls), as NATS does.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::ErrorCode;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::read::{js_time, to_record};
use super::streams::nats_error;
use super::{js_name, our_name, NatsBackend};
use crate::backend::settle::{Settling, SETTLE_WAIT};
use crate::backend::{Acker, ConsumerInfo, Delivery, PartitionStart, Subscriptions};
use crate::consumer::StartAt;
use crate::{Error, Result};

/// Most messages a consumer may have delivered and unacknowledged.
const MAX_ACK_PENDING: i64 = 10_000;

impl NatsBackend {
    /// Consumer `consumer`'s durable pull consumer, made at `start` if it has none.
    async fn durable(&self, stream: &str, consumer: &str, start: StartAt) -> Result<PullConsumer> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let js_stream = self.stream(stream).await?;
        let name = js_name(consumer);
        if let Ok(existing) = js_stream.get_consumer::<pull::Config>(&name).await {
            return Ok(existing);
        }
        let deliver_policy = match start {
            StartAt::Earliest => DeliverPolicy::All,
            StartAt::Latest => DeliverPolicy::New,
            StartAt::AtTime(t) => js_time(t),
        };
        js_stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                deliver_policy,
                ack_policy: AckPolicy::Explicit,
                ack_wait: self.options.ack_wait,
                filter_subject: format!("cloudstream.{stream}.*"),
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await
            .map_err(nats_error)
    }

    /// Every consumer of a stream, with where it stands (the `Backend::list_consumers`
    /// primitive): each partition resumes after the consumer's acknowledgement floor, and
    /// the lag counts what it has not acknowledged.
    pub(super) async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let js_stream = self.stream(stream).await?;
        let partitions = js_stream.cached_info().config.subjects.len() as u32;
        let infos: Vec<_> = js_stream
            .consumers()
            .try_collect()
            .await
            .map_err(nats_error)?;
        let mut out: Vec<ConsumerInfo> = infos
            .into_iter()
            .filter(|c| c.config.durable_name.is_some())
            .map(|c| {
                let floor = PartitionStart::After(c.ack_floor.stream_sequence.into());
                ConsumerInfo {
                    name: our_name(&c.name),
                    committed: (0..partitions).map(|p| (p, floor)).collect(),
                    lag: Some(c.num_pending + c.num_ack_pending as u64),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes a consumer's durable consumer; whether it existed.
    pub(super) async fn forget_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let js_stream = self.stream(stream).await?;
        match js_stream.delete_consumer(&js_name(consumer)).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(nats_error(e)),
            },
        }
    }
}

/// Sends acknowledgements (and naks, for messages given back) in the order they were made,
/// so a batch given back is delivered again in its order, until the backend is dropped.
pub(super) async fn settle_in_order(
    mut acks: mpsc::UnboundedReceiver<(async_nats::jetstream::Message, bool)>,
    settling: Arc<Settling>,
) {
    while let Some((m, ok)) = acks.recv().await {
        let kind = if ok { AckKind::Ack } else { AckKind::Nak(None) };
        match m.ack_with(kind).await {
            Ok(()) => settling.end(1),
            Err(e) => {
                tracing::warn!(error = %e, "a NATS acknowledgement was not sent; the message comes again after ack_wait");
                settling.failed(1, e.to_string());
            }
        }
    }
}

#[async_trait]
impl Subscriptions for NatsBackend {
    async fn settle(&self) -> Result<()> {
        self.settling.wait(SETTLE_WAIT).await
    }

    async fn subscribe(&self, stream: &str, consumer: &str, start: StartAt) -> Result<()> {
        self.durable(stream, consumer, start).await.map(drop)
    }

    async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        start: StartAt,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        // Acknowledgements made before this pull reach the server first: a batch given back
        // is delivered again to it.
        let _ = self.settling.wait(Duration::from_secs(5)).await;
        let durable = self.durable(stream, consumer, start).await?;
        let mut fetch = durable.fetch().max_messages(max.max(1));
        if !wait.is_zero() {
            fetch = fetch.expires(wait);
        }
        let mut messages = fetch.messages().await.map_err(nats_error)?;
        let mut out = Vec::new();
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| match e.to_string() {
                s if s.contains("consumer deleted") => Error::ConsumerNotFound {
                    stream: stream.to_owned(),
                    consumer: consumer.to_owned(),
                },
                s => Error::Unavailable(s.into()),
            })?;
            let record = to_record(stream, &m)?;
            let (settling, acks) = (self.settling.clone(), self.acks.clone());
            let ack = Acker::new(Box::new(move |ok| {
                settling.begin();
                if acks.send((m, ok)).is_err() {
                    settling.end(1); // the backend is gone: the message comes again after ack_wait
                }
            }));
            out.push(Delivery { record, ack });
        }
        Ok(out)
    }
}
