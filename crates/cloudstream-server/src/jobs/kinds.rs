//! Every kind of job a server runs, in one place: a new kind is its module, one field
//! here, and its OpenAPI entries.

use std::sync::Arc;

use cloudstream::Client;

use crate::aggregations::{AggregationJob, Aggregations};
use crate::deliveries::{Deliveries, DeliveryJob, SinkPolicy};
use crate::jobs::Job;
use crate::webhooks::{Webhook, Webhooks};
use crate::{ApiError, AppState, Config};

/// The path segments of the kinds' routes (`/v1/streams/{name}/SEGMENT`): admin only.
pub(crate) const ROUTES: [&str; 3] = [Webhook::PLURAL, DeliveryJob::PLURAL, AggregationJob::PLURAL];

/// The prefixes of the kinds' consumers (`webhook-ID`): admin only.
pub(crate) const CONSUMERS: [&str; 3] = [
    Webhook::CONSUMER_PREFIX,
    DeliveryJob::CONSUMER_PREFIX,
    AggregationJob::CONSUMER_PREFIX,
];

/// The jobs of a server, by kind.
#[derive(Debug)]
pub(crate) struct JobKinds {
    pub(crate) webhooks: Webhooks,
    pub(crate) deliveries: Deliveries,
    pub(crate) aggregations: Aggregations,
}

impl JobKinds {
    /// Every kind's jobs, registered in `config.state_dir` (each started), or in memory.
    pub(crate) async fn open(client: &Client, config: &Config) -> cloudstream::Result<JobKinds> {
        let dir = config.state_dir.clone();
        Ok(JobKinds {
            webhooks: Webhooks::open(webhook_kind(config), client.clone(), dir.clone()).await?,
            deliveries: Deliveries::open(delivery_kind(config), client.clone(), dir.clone())
                .await?,
            aggregations: Aggregations::open(aggregation_kind(config), client.clone(), dir).await?,
        })
    }

    /// Every kind's jobs in memory only, none registered.
    pub(crate) fn in_memory(client: &Client, config: &Config) -> JobKinds {
        JobKinds {
            webhooks: Webhooks::in_memory(webhook_kind(config), client.clone()),
            deliveries: Deliveries::in_memory(delivery_kind(config), client.clone()),
            aggregations: Aggregations::in_memory(aggregation_kind(config), client.clone()),
        }
    }

    /// Stops every job of every kind (see [`crate::jobs::Jobs::shutdown`]).
    pub(crate) async fn shutdown(&self) {
        futures::join!(
            self.webhooks.shutdown(),
            self.deliveries.shutdown(),
            self.aggregations.shutdown()
        );
    }

    /// Stops and forgets the jobs of a deleted stream, of every kind.
    pub(crate) async fn forget_stream(&self, stream: &str) {
        futures::join!(
            self.webhooks.forget_stream(stream),
            self.deliveries.forget_stream(stream),
            self.aggregations.forget_stream(stream)
        );
    }

    /// Runs `change` to consumer `consumer`'s checkpoint with the job reading as it (if
    /// any) stopped, and starts that job again after (see [`crate::jobs::Jobs::with_stopped`]).
    pub(crate) async fn with_consumer_stopped<T>(
        &self,
        stream: &str,
        consumer: &str,
        change: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        if let Some(id) = consumer.strip_prefix(Webhook::CONSUMER_PREFIX) {
            self.webhooks.with_stopped(stream, id, change).await
        } else if let Some(id) = consumer.strip_prefix(DeliveryJob::CONSUMER_PREFIX) {
            self.deliveries.with_stopped(stream, id, change).await
        } else if let Some(id) = consumer.strip_prefix(AggregationJob::CONSUMER_PREFIX) {
            self.aggregations.with_stopped(stream, id, change).await
        } else {
            change.await
        }
    }

    /// The kind of the registered job that reads as `consumer` of `stream`, if one does.
    pub(crate) fn owner(&self, stream: &str, consumer: &str) -> Option<&'static str> {
        let owns = |prefix: &str, owns: &dyn Fn(&str) -> bool| {
            consumer.strip_prefix(prefix).is_some_and(owns)
        };
        if owns(Webhook::CONSUMER_PREFIX, &|id| {
            self.webhooks.owns(stream, id)
        }) {
            Some(Webhook::KIND)
        } else if owns(DeliveryJob::CONSUMER_PREFIX, &|id| {
            self.deliveries.owns(stream, id)
        }) {
            Some(DeliveryJob::KIND)
        } else if owns(AggregationJob::CONSUMER_PREFIX, &|id| {
            self.aggregations.owns(stream, id)
        }) {
            Some(AggregationJob::KIND)
        } else {
            None
        }
    }

    /// Every kind's routes.
    pub(crate) fn router() -> axum::Router<Arc<AppState>> {
        crate::webhooks::routes::router()
            .merge(crate::deliveries::routes::router())
            .merge(crate::aggregations::routes::router())
    }
}

fn webhook_kind(config: &Config) -> Webhook {
    Webhook::new(config.webhooks.clone())
}

fn delivery_kind(config: &Config) -> DeliveryJob {
    DeliveryJob::new(SinkPolicy {
        // Its links resolved, as every sink's path is before it is compared.
        root: config
            .deliver_root
            .as_ref()
            .map(|root| root.canonicalize().unwrap_or_else(|_| root.clone())),
        outbound: config.webhooks.clone(),
    })
}

fn aggregation_kind(config: &Config) -> AggregationJob {
    AggregationJob::new(config.state_dir.as_deref())
}
