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

pub(crate) mod routes;
mod spec;

use std::sync::Arc;

use cloudstream::{Client, StartAt};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::{json, Value};
use tokio::sync::watch;

pub(crate) use self::spec::SinkPolicy;
use self::spec::{consumer_name, Spec, SpecIn};
use crate::jobs::{until_stopped, Job, JobStats, Jobs};
use crate::ApiError;

/// How long a delivery told to stop may take to finish its file before it is dropped.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The deliveries of a server.
pub(crate) type Deliveries = Jobs<Delivery>;

/// Deliveries as a kind of job: where they may write.
#[derive(Debug)]
pub(crate) struct Delivery {
    policy: SinkPolicy,
}

impl Delivery {
    /// Deliveries that may write where `policy` allows.
    pub(crate) fn new(policy: SinkPolicy) -> Delivery {
        Delivery { policy }
    }
}

impl Job for Delivery {
    type Spec = Spec;
    type SpecIn = SpecIn;

    const KIND: &'static str = "delivery";
    const PLURAL: &'static str = "deliveries";
    const NOT_FOUND: &'static str = "delivery_not_found";

    fn consumer(id: &str) -> String {
        consumer_name(id)
    }

    fn registry(state: &crate::AppState) -> &Jobs<Self> {
        &state.deliveries
    }

    fn resolve(
        &self,
        stream: &str,
        id: &str,
        body: SpecIn,
    ) -> BoxFuture<'_, Result<Spec, ApiError>> {
        let resolved = body.resolve(stream, id);
        async move {
            let spec = resolved?;
            self.policy.check(&spec.to).await?;
            Ok(spec)
        }
        .boxed()
    }

    fn key(spec: &Spec) -> (String, String) {
        (spec.stream.clone(), spec.id.clone())
    }

    fn start(spec: &Spec) -> StartAt {
        spec.start
    }

    fn view(s: &Spec) -> Value {
        let to = cloudstream::deliver::check_sink(&s.to).unwrap_or_else(|_| "(invalid)".into());
        json!({
            "id": s.id,
            "stream": s.stream,
            "to": to,
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
            // another policy is checked again, and one that fails stays registered,
            // stopped, with its error shown.
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
                .run_until(until_stopped(stop.clone()));
            // Told to stop, a delivery finishes the file in hand and commits; a store that
            // does not answer (its client retries for minutes) is given up on after a grace:
            // what it was writing is written again by the next run, to the same name.
            tokio::select! {
                outcome = delivery => outcome.map(drop),
                () = async {
                    until_stopped(stop).await;
                    tokio::time::sleep(STOP_GRACE).await;
                } => Ok(()),
            }
        }
        .boxed()
    }
}
