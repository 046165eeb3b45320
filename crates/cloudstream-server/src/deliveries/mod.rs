//! Deliveries run by the server: the network form of [`cloudstream::Stream::deliver_to`].
//!
//! A delivery registered with `PUT /v1/streams/{name}/deliveries/{id}` is a consumer of the
//! stream, named `deliver-{id}`, that writes the stream to object storage (S3, Azure Blob,
//! Google Cloud Storage, or a local directory below the server's `--deliver-root`) as JSON
//! Lines or Parquet files by event hour, each record in exactly one file where the provider
//! reads partitions by position. It is a [`crate::jobs::Job`]: registrations are kept in
//! `deliveries.json` in the server's state directory, and every registered delivery starts
//! again when the server does, resuming where its files end. A sink that fails stalls the
//! delivery (retried with backoff, its error shown); it never skips records.

mod policy;
pub(crate) mod routes;
mod spec;

use std::sync::Arc;

use cloudstream::{Client, StartAt};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::{json, Value};
use tokio::sync::watch;

pub(crate) use self::policy::SinkPolicy;
use self::spec::{consumer_name, shown, DeliverySpec, Spec};
use crate::jobs::{until_stopped, Job, JobStats, Jobs};
use crate::ApiError;

/// The deliveries of a server.
pub(crate) type Deliveries = Jobs<DeliveryJob>;

/// Deliveries as a kind of job: where they may write.
#[derive(Debug)]
pub(crate) struct DeliveryJob {
    policy: SinkPolicy,
}

impl DeliveryJob {
    /// Deliveries that may write where `policy` allows.
    pub(crate) fn new(policy: SinkPolicy) -> DeliveryJob {
        DeliveryJob { policy }
    }
}

impl Job for DeliveryJob {
    type Spec = Spec;
    type SpecIn = DeliverySpec;

    const CONSUMER_PREFIX: &'static str = "deliver-";
    const KIND: &'static str = "delivery";
    const PLURAL: &'static str = "deliveries";
    const NOT_FOUND: &'static str = "delivery_not_found";
    const CONFLICT: &'static str = "sink_in_use";

    fn registry(state: &crate::AppState) -> &Jobs<Self> {
        &state.jobs.deliveries
    }

    fn resolve(
        &self,
        stream: &str,
        id: &str,
        body: DeliverySpec,
    ) -> BoxFuture<'_, Result<Spec, ApiError>> {
        let (stream, id) = (stream.to_owned(), id.to_owned());
        async move {
            // The policy first: opening a sink may read the files its options name.
            self.policy.check(body.to()).await?;
            body.resolve(&stream, &id)
        }
        .boxed()
    }

    fn conflict(existing: &Spec, new: &Spec) -> Option<String> {
        let prefix = |s: &Spec| shown(&s.to).trim_end_matches('/').to_owned();
        (existing.stream == new.stream && prefix(existing) == prefix(new)).then(|| {
            format!(
                "delivery {} of stream {} already writes to {}: two deliveries of a stream to one prefix would cut their files at different places",
                existing.id,
                existing.stream,
                prefix(new)
            )
        })
    }

    fn key(spec: &Spec) -> (String, String) {
        (spec.stream.clone(), spec.id.clone())
    }

    fn start(spec: &Spec) -> StartAt {
        spec.start
    }

    fn view(s: &Spec) -> Value {
        json!({
            "id": s.id,
            "stream": s.stream,
            "to": shown(&s.to),
            "format": s.format,
            "compression": s.compression,
            "max_bytes": s.max_bytes,
            "max_records": s.max_records,
            "max_wait_ms": s.max_wait_ms,
            "start": s.start,
        })
    }

    fn run(
        self: Arc<Self>,
        client: Client,
        spec: Spec,
        stats: Arc<JobStats>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, cloudstream::Result<()>> {
        async move {
            // Checked at registration; a registration kept from a server started with
            // another policy is checked again, and one that fails is retried like any
            // failing run (its error shown) until it is deleted or the policy allows it.
            self.policy
                .check(&spec.to)
                .await
                .map_err(|e| cloudstream::Error::Forbidden(e.message().to_owned()))?;
            let (format, compression) = spec.encoding()?;
            let stream = client.stream(&spec.stream).open().await?;
            let delivery = stream
                .deliver_to(&spec.to)
                .consumer(&consumer_name(&spec.id))
                .format(format)
                .compression(compression)
                .max_bytes(spec.max_bytes)
                .max_records(spec.max_records)
                .max_wait(spec.max_wait())
                .start_at(spec.start)
                .observe(move |report| stats.count(report))
                // Told to stop, a delivery finishes the file in hand and commits. It is not
                // dropped mid-write: a put given up on may still land after the next run has
                // listed the files, and that run would write its records again.
                .run_until(until_stopped(stop));
            delivery.await.map(drop)
        }
        .boxed()
    }
}
