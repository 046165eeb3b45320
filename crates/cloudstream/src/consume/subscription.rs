//! [`SubscriptionLane`]: a consumer's subscription, for backends whose provider delivers
//! records and takes acknowledgements (Pub/Sub).

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;

use super::{Lane, Pulled, Take};
use crate::backend::{Acker, Consumption, PartitionStart};
use crate::consumer::StartAt;
use crate::{Error, Result, Stream};

/// How long a pull waits for a first record when no wait is set: a subscription has no
/// "nothing more right now" answer, only a wait that ends.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// A consumer's subscription: records as the provider delivers them, each acknowledged to
/// it. What is handed out and not acknowledged when the lane is dropped is given back, so
/// the provider delivers it again.
#[derive(Debug)]
pub(crate) struct SubscriptionLane {
    stream: Stream,
    consumer: String,
    start: StartAt,
    /// Acknowledgements of the records handed out, oldest first.
    outstanding: VecDeque<Acker>,
}

impl SubscriptionLane {
    /// The lane of `consumer`'s subscription, created on first pull starting at `start`.
    pub(crate) fn new(stream: Stream, consumer: &str, start: StartAt) -> Self {
        SubscriptionLane {
            stream,
            consumer: consumer.to_owned(),
            start,
            outstanding: VecDeque::new(),
        }
    }
}

#[async_trait]
impl Lane for SubscriptionLane {
    async fn pull(&mut self, take: Take, wait: Option<Duration>) -> Result<Pulled> {
        let backend = self.stream.backend();
        let Consumption::Subscriptions(subscriptions) = backend.consumption() else {
            return Err(Error::Unsupported {
                operation: "subscriptions".into(),
                backend: backend.name(),
            });
        };
        let deliveries = subscriptions
            .pull(
                self.stream.name(),
                &self.consumer,
                self.start,
                take.records.max(1),
                wait.unwrap_or(DEFAULT_WAIT),
            )
            .await?;
        let mut records = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            records.push(delivery.record);
            self.outstanding.push_back(delivery.ack);
        }
        Ok(Pulled { records, gap: None })
    }

    fn ack(&mut self, count: usize) {
        let count = count.min(self.outstanding.len());
        self.outstanding.drain(..count).for_each(Acker::ack);
    }

    fn give_back(&mut self) {
        self.outstanding.drain(..).for_each(Acker::nack);
    }

    fn unflushed(&self) -> Option<(u32, PartitionStart)> {
        None // acknowledgements go to the provider as they are made
    }

    fn mark_flushed(&mut self, _: PartitionStart) {}

    fn position(&self) -> Option<(u32, PartitionStart)> {
        None // the subscription keeps it, server-side
    }
}
