//! Aggregations run by the server: the network form of [`cloudstream::Stream::aggregate`].
//!
//! An aggregation registered with `PUT /v1/streams/{name}/aggregations/{id}` is a consumer
//! of the stream, named `aggregate-{id}`, that computes windows over event time and sends
//! their results to another stream of the provider (made when missing), late records
//! optionally to a third. It is a [`crate::jobs::Job`]: registrations are kept in
//! `aggregations.json`, windows in progress below `aggregations/` in the server's state
//! directory (a temporary directory for a server without one), and every registered
//! aggregation starts again when the server does, from its saved windows.
//!
//! What an aggregation computes, and where it started, are fixed at registration: a
//! replacement may change where results go, not its windows, groups, measures, lateness or
//! start (409 `aggregation_changed`; delete it and register it again to start afresh).
//! Deleting it deletes its consumer and its saved windows.

pub(crate) mod routes;

use std::path::PathBuf;
use std::sync::Arc;

use cloudstream::pipeline::AggregateSpec;
use cloudstream::{Client, StartAt};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::jobs::{until_stopped, Job, JobStats, Jobs};
use crate::ApiError;

/// The aggregations of a server.
pub(crate) type Aggregations = Jobs<AggregationJob>;

/// Aggregations as a kind of job: where they keep their windows.
#[derive(Debug)]
pub(crate) struct AggregationJob {
    /// The directory of saved windows (`STREAM/CONSUMER/partition-N.json` below it), made
    /// when first written to.
    root: PathBuf,
    /// Whether `root` is the server's alone, to delete with it.
    temporary: bool,
}

impl AggregationJob {
    /// Aggregations keeping their windows below `state_dir/aggregations`, or without a
    /// state directory in a temporary directory, deleted with the server.
    pub(crate) fn new(state_dir: Option<&std::path::Path>) -> AggregationJob {
        match state_dir {
            // Absolute: the state directory may be given relative to where the server
            // started, and `forget` must remove what the runs wrote.
            Some(dir) => AggregationJob {
                root: std::path::absolute(dir)
                    .unwrap_or_else(|_| dir.to_owned())
                    .join("aggregations"),
                temporary: false,
            },
            None => AggregationJob {
                root: std::env::temp_dir().join(format!(
                    "cloudstream-aggregations-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                )),
                temporary: true,
            },
        }
    }
}

impl Drop for AggregationJob {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The consumer an aggregation reads as.
fn consumer_name(id: &str) -> String {
    AggregationJob::consumer(id)
}

/// An aggregation's registration, as `aggregations.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spec {
    stream: String,
    id: String,
    aggregate: AggregateSpec,
}

/// A 422 `invalid_aggregation`: a well-formed spec that cannot be computed.
fn unprocessable(message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_aggregation",
        message,
    )
}

/// Checks a registration's body and completes it: the stream is the path's, the consumer
/// the id's.
fn resolve(stream: &str, id: &str, body: AggregateSpec) -> Result<Spec, ApiError> {
    if body.from.is_some() || body.consumer.is_some() {
        return Err(ApiError::bad_request(
            "an aggregation's input is the path's stream and its consumer is aggregate-{id}: leave out from and consumer",
        ));
    }
    body.aggregation()
        .map_err(|e| unprocessable(e.to_string()))?;
    for target in std::iter::once(&body.to).chain(&body.late_to) {
        cloudstream::validate_name("stream", target)?;
        if target == stream {
            return Err(unprocessable(format!(
                "an aggregation of {stream} cannot send to {stream} itself: it would read its own results"
            )));
        }
    }
    if body.late_to.as_ref() == Some(&body.to) {
        return Err(unprocessable(format!(
            "results and late records both go to {}: give late_to another stream",
            body.to
        )));
    }
    Ok(Spec {
        stream: stream.to_owned(),
        id: id.to_owned(),
        aggregate: body,
    })
}

impl Job for AggregationJob {
    type Spec = Spec;
    type SpecIn = AggregateSpec;

    const CONSUMER_PREFIX: &'static str = "aggregate-";
    const KIND: &'static str = "aggregation";
    const PLURAL: &'static str = "aggregations";
    const NOT_FOUND: &'static str = "aggregation_not_found";
    const CONFLICT: &'static str = "aggregation_changed";
    const CHECKPOINT_OWNED: Option<&'static str> = Some(
        "an aggregation's open windows are saved with its checkpoint: moving or deleting the \
         checkpoint alone would lose or repeat results; delete the aggregation and register it \
         again with a start instead",
    );

    fn registry(state: &crate::AppState) -> &Jobs<Self> {
        &state.jobs.aggregations
    }

    fn resolve(
        &self,
        stream: &str,
        id: &str,
        body: AggregateSpec,
    ) -> BoxFuture<'_, Result<Spec, ApiError>> {
        let resolved = resolve(stream, id, body);
        async move { resolved }.boxed()
    }

    fn replace(old: &Spec, new: &Spec) -> Option<String> {
        let computes = |s: &Spec| s.aggregate.aggregation().ok();
        let changed = if computes(old) != computes(new) {
            "computes other windows, groups, measures or lateness"
        } else if Self::start(old) != Self::start(new) {
            // Its checkpoint says where it is: a new start would change nothing.
            "starts elsewhere"
        } else {
            return None;
        };
        Some(format!(
            "aggregation {} of {} {changed}: delete it and register it again to start afresh",
            old.id, old.stream
        ))
    }

    fn forget(&self, spec: &Spec) {
        let saved = self.root.join(&spec.stream).join(consumer_name(&spec.id));
        if let Err(e) = std::fs::remove_dir_all(&saved) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(path = %saved.display(), error = %e, "could not delete an aggregation's saved windows");
            }
        }
    }

    fn key(spec: &Spec) -> (String, String) {
        (spec.stream.clone(), spec.id.clone())
    }

    fn start(spec: &Spec) -> StartAt {
        spec.aggregate.start.unwrap_or(StartAt::Earliest)
    }

    fn view(s: &Spec) -> Value {
        let a = &s.aggregate;
        json!({
            "id": s.id,
            "stream": s.stream,
            "to": a.to,
            "late_to": a.late_to,
            "window": a.window,
            "lateness": a.lateness.as_deref().unwrap_or("0s"),
            "group_by": a.group_by,
            "measures": a.measures,
            "start": Self::start(s),
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
            let a = &spec.aggregate;
            let input = client.stream(&spec.stream).open().await?;
            let output = client.stream(&a.to).create_if_missing().await?;
            let state = cloudstream::deliver::local_sink(&self.root)?;
            let mut run = input
                .aggregate(a.aggregation()?, &output, &state)
                .consumer(&consumer_name(&spec.id))
                .start_at(Self::start(&spec))
                .observe(move |report| stats.count(report));
            if let Some(late) = &a.late_to {
                run = run.late_to(&client.stream(late).create_if_missing().await?);
            }
            run.run_until(until_stopped(stop)).await.map(drop)
        }
        .boxed()
    }
}
