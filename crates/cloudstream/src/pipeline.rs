//! Pipelines: the aggregations and deliveries of a provider declared in one file (TOML for
//! people, the same shape in JSON for programs), run together by `cloudstream pipeline
//! FILE` or `cloudstream serve --pipeline FILE`:
//!
//! ```toml
//! state = "file:///var/lib/cloudstream/state"   # where aggregations keep their state
//!
//! [[aggregate]]
//! from = "TelemetryIngest"
//! to = "TelemetryPerMinute"
//! late_to = "TelemetryLate"
//! window = "tumbling 1m"
//! lateness = "10s"
//! group_by = ["device"]
//! measures = ["readings = count", "avg_temperature = avg(temperature)", "p95_temperature = p95(temperature)"]
//!
//! [[deliver]]
//! from = "TelemetryPerMinute"
//! to = "file:///var/lib/lake/per-minute"
//! format = "parquet"
//! compression = "snappy"
//! max_wait = "60s"
//! ```
//!
//! Each stage is the library's call written down ([`Stream::aggregate`],
//! [`Stream::deliver_to`]) with the same defaults; outputs that do not exist are made.
//! Why a file of stages rather than SQL: `docs/design.md`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use serde::Deserialize;
use tokio::sync::watch;

use crate::aggregate::{parse_millis, Aggregation, Measure};
use crate::deliver::{Compression, Format};
use crate::{Client, Error, Result, StartAt, Stream, TriggerReport};

/// A pipeline file: where aggregations keep state, then its stages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The object store aggregations keep their state in (`file:///DIR`, `s3://...`).
    #[serde(default)]
    pub state: Option<String>,
    /// Its windowed aggregations.
    #[serde(default)]
    pub aggregate: Vec<AggregateSpec>,
    /// Its deliveries to object storage.
    #[serde(default)]
    pub deliver: Vec<DeliverSpec>,
}

/// An aggregation as a pipeline file (or `PUT /v1/streams/{name}/aggregations/{id}`)
/// writes it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AggregateSpec {
    /// The stream it reads (in a pipeline file; the server takes it from the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The stream its results go to (made when missing).
    pub to: String,
    /// The stream late records go to (made when missing); without it they are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_to: Option<String>,
    /// `tumbling 1m`, `hopping 5m every 1m` or `session 30s`.
    pub window: String,
    /// How late an event may come and still count, e.g. `10s` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<String>,
    /// The JSON fields whose values make a group (`device`, `site.region`).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// `NAME = count`, `NAME = avg(FIELD)`, `sum`, `min`, `max`, `distinct`, `p95`,
    /// `percentile(FIELD, Q)`, in the order of the output's fields.
    pub measures: Vec<String>,
    /// Its consumer (in a pipeline file; default `aggregate.TO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// `earliest` (default), `latest` or `time:RFC3339`, without a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartAt>,
}

impl AggregateSpec {
    /// What it computes; `InvalidArgument` naming the field that is wrong.
    pub fn aggregation(&self) -> Result<Aggregation> {
        let measures = self
            .measures
            .iter()
            .map(|m| {
                let (name, expr) = m.split_once('=').ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "a measure is NAME = EXPR, such as \"avg_temperature = avg(temperature)\", not {m:?}"
                    ))
                })?;
                Measure::parse(name.trim(), expr)
            })
            .collect::<Result<Vec<_>>>()?;
        let aggregation = Aggregation {
            window: self.window.parse()?,
            group_by: self.group_by.clone(),
            measures,
            lateness_ms: self
                .lateness
                .as_deref()
                .map(parse_millis)
                .transpose()?
                .unwrap_or(0),
        };
        aggregation.check()?;
        Ok(aggregation)
    }

    /// Its consumer: as named, else `aggregate.TO` (the server's own are `aggregate-ID`).
    pub fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .unwrap_or_else(|| format!("aggregate.{}", self.to))
    }

    /// Checks the names it gives (input, outputs, consumer) and that it does not send to
    /// what it reads.
    fn check_names(&self, from: &str) -> Result<()> {
        crate::validate_name("stream", from)?;
        crate::validate_name("stream", &self.to)?;
        if let Some(late) = &self.late_to {
            crate::validate_name("stream", late)?;
        }
        crate::validate_name("consumer", &self.consumer_name())?;
        check_not_the_servers(&self.consumer_name())?;
        if self.to == from || self.late_to.as_deref() == Some(from) {
            return Err(Error::InvalidArgument(format!(
                "it sends to {from}, which it reads: it would read its own results"
            )));
        }
        if self.late_to.as_deref() == Some(self.to.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "results and late records both go to {}: give late_to another stream",
                self.to
            )));
        }
        Ok(())
    }
}

/// A delivery as a pipeline file writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverSpec {
    /// The stream it delivers.
    pub from: String,
    /// The sink: `file:///DIR`, `s3://BUCKET/PREFIX`, `az://...`, `gs://...`.
    pub to: String,
    /// Its consumer (default `deliver`).
    #[serde(default)]
    pub consumer: Option<String>,
    /// `jsonl` (default) or `parquet`.
    #[serde(default)]
    pub format: Option<String>,
    /// `none` (default), `gzip`, `zstd`, or for Parquet `snappy`.
    #[serde(default)]
    pub compression: Option<String>,
    /// Bytes of events a file gathers at most (default 5 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Records a file holds at most (default 1,000,000).
    #[serde(default)]
    pub max_records: Option<usize>,
    /// How long a file gathers records, e.g. `60s` (the default).
    #[serde(default)]
    pub max_wait: Option<String>,
    /// `earliest` (default), `latest` or `time:RFC3339`, without a checkpoint.
    #[serde(default)]
    pub start: Option<StartAt>,
}

impl DeliverSpec {
    /// Its consumer: as named, else `deliver`.
    pub fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .unwrap_or_else(|| "deliver".to_owned())
    }

    fn encoding(&self) -> Result<(Format, Compression)> {
        let format: Format = self.format.as_deref().unwrap_or("jsonl").parse()?;
        let compression: Compression = self.compression.as_deref().unwrap_or("none").parse()?;
        crate::deliver::check_encoding(format, compression)?;
        Ok((format, compression))
    }

    fn max_wait(&self) -> Result<Duration> {
        Ok(Duration::from_millis(
            self.max_wait
                .as_deref()
                .map(parse_millis)
                .transpose()?
                .unwrap_or(60_000),
        ))
    }
}

/// Refuses a consumer named as `cloudstream serve` names its own jobs' (`aggregate-ID`,
/// `deliver-ID`, `webhook-ID`): two runs on one consumer would skip each other's records.
fn check_not_the_servers(consumer: &str) -> Result<()> {
    match ["aggregate-", "deliver-", "webhook-"]
        .iter()
        .find(|prefix| consumer.starts_with(*prefix))
    {
        Some(prefix) => Err(Error::InvalidArgument(format!(
            "consumer {consumer}: names starting with {prefix} are the server's own jobs'"
        ))),
        None => Ok(()),
    }
}

/// What a stage is called in messages and reports.
fn stage_name(kind: &str, from: &str, to: &str) -> String {
    format!("{kind} {from} -> {}", crate::deliver::shown_sink(to))
}

impl Pipeline {
    /// Refuses a pipeline that cannot run, without reaching the provider: a stage whose
    /// spec is wrong, aggregations without a state store, two stages of one stream with one
    /// consumer. Errors name the stage.
    pub fn check(&self) -> Result<()> {
        let in_stage =
            |name: String| move |e: Error| Error::InvalidArgument(format!("{name}: {e}"));
        let mut consumers = BTreeSet::new();
        for a in &self.aggregate {
            let from = a.from.as_deref().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "aggregate -> {}: name its input with from = ...",
                    a.to
                ))
            })?;
            let name = stage_name("aggregate", from, &a.to);
            a.check_names(from).map_err(in_stage(name.clone()))?;
            a.aggregation().map_err(in_stage(name.clone()))?;
            if !consumers.insert((from.to_owned(), a.consumer_name())) {
                return Err(Error::InvalidArgument(format!(
                    "{name}: consumer {} of {from} is another stage's too; give one a consumer = ...",
                    a.consumer_name()
                )));
            }
        }
        if !self.aggregate.is_empty() {
            let state = self.state.as_deref().ok_or_else(|| {
                Error::InvalidArgument(
                    "aggregations keep their state in an object store: set state = \"file:///DIR\" (or s3://...)".into(),
                )
            })?;
            crate::deliver::check_sink(state)
                .map_err(|e| Error::InvalidArgument(format!("state: {e}")))?;
        }
        self.check_cycles()?;
        for d in &self.deliver {
            let name = stage_name("deliver", &d.from, &d.to);
            crate::validate_name("stream", &d.from).map_err(in_stage(name.clone()))?;
            crate::validate_name("consumer", &d.consumer_name()).map_err(in_stage(name.clone()))?;
            check_not_the_servers(&d.consumer_name()).map_err(in_stage(name.clone()))?;
            d.encoding().map_err(in_stage(name.clone()))?;
            d.max_wait().map_err(in_stage(name.clone()))?;
            crate::deliver::check_sink(&d.to).map_err(in_stage(name.clone()))?;
            if !consumers.insert((d.from.clone(), d.consumer_name())) {
                return Err(Error::InvalidArgument(format!(
                    "{name}: consumer {} of {} is another stage's too; give one a consumer = ...",
                    d.consumer_name(),
                    d.from
                )));
            }
        }
        Ok(())
    }

    /// Refuses aggregations that feed each other in a loop (A to B, B to A): each would
    /// read the other's results for ever.
    fn check_cycles(&self) -> Result<()> {
        let edges: Vec<(&str, &str)> = self
            .aggregate
            .iter()
            .filter_map(|a| Some((a.from.as_deref()?, a)))
            .flat_map(|(from, a)| {
                std::iter::once(a.to.as_str())
                    .chain(a.late_to.as_deref())
                    .map(move |to| (from, to))
            })
            .collect();
        // From each stream, follow the edges; coming back to it is a loop.
        for &(start, _) in &edges {
            let mut seen = BTreeSet::new();
            let mut next = vec![start];
            while let Some(stream) = next.pop() {
                for &(from, to) in edges.iter().filter(|(from, _)| *from == stream) {
                    if to == start {
                        return Err(Error::InvalidArgument(format!(
                            "aggregations feed each other in a loop through {start} (via {from} -> {to})"
                        )));
                    }
                    if seen.insert(to) {
                        next.push(to);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs every stage until `shutdown` completes (each then finishes what it has in hand)
    /// or one fails for good (the others are then stopped, and its error returned; a
    /// failing sink or target is retried, not a failure for good): each stage's name and
    /// report.
    pub async fn run_until(
        self,
        client: &Client,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<Vec<(String, TriggerReport)>> {
        self.check()?;
        let (stop, stopped) = watch::channel(false);
        let mut stages: Vec<BoxFuture<'static, (String, Result<TriggerReport>)>> = Vec::new();
        let state = self.state.clone().unwrap_or_default();
        // Outputs first: a delivery may read an aggregation's output.
        for a in &self.aggregate {
            client.stream(&a.to).create_if_missing().await?;
            if let Some(late) = &a.late_to {
                client.stream(late).create_if_missing().await?;
            }
        }
        for a in self.aggregate {
            let from = a.from.clone().unwrap_or_default();
            let name = stage_name("aggregate", &from, &a.to);
            let input = client.stream(&from).open().await?;
            let output = client.stream(&a.to).open().await?;
            let mut run = input
                .aggregate(a.aggregation()?, &output, &state)
                .consumer(&a.consumer_name())
                .start_at(a.start.unwrap_or(StartAt::Earliest));
            if let Some(late) = &a.late_to {
                run = run.late_to(&client.stream(late).open().await?);
            }
            let until = stopped_by(stopped.clone());
            stages.push(async move { (name, run.run_until(until).await) }.boxed());
        }
        for d in self.deliver {
            let name = stage_name("deliver", &d.from, &d.to);
            let (format, compression) = d.encoding()?;
            let stream: Stream = client.stream(&d.from).open().await?;
            let mut run = stream
                .deliver_to(&d.to)
                .consumer(&d.consumer_name())
                .format(format)
                .compression(compression)
                .max_wait(d.max_wait()?)
                .start_at(d.start.unwrap_or(StartAt::Earliest));
            if let Some(n) = d.max_bytes {
                run = run.max_bytes(n);
            }
            if let Some(n) = d.max_records {
                run = run.max_records(n);
            }
            let until = stopped_by(stopped.clone());
            stages.push(async move { (name, run.run_until(until).await) }.boxed());
        }
        let mut running: futures::stream::FuturesUnordered<_> = stages.into_iter().collect();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut reports = Vec::new();
        let mut failed = None;
        loop {
            tokio::select! {
                done = futures::StreamExt::next(&mut running) => match done {
                    None => break,
                    Some((name, Ok(report))) => reports.push((name, report)),
                    Some((name, Err(e))) => {
                        // One stage failed for good: the others finish what they hold.
                        tracing::error!(stage = %name, error = %e, "a pipeline stage failed; stopping the others");
                        let _ = stop.send(true);
                        failed.get_or_insert(e);
                    }
                },
                () = &mut shutdown, if !*stop.borrow() => {
                    let _ = stop.send(true);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }
}

/// Completes once `stop` says so (or its sender is gone).
async fn stopped_by(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate(from: &str, to: &str) -> AggregateSpec {
        AggregateSpec {
            from: Some(from.into()),
            to: to.into(),
            window: "tumbling 1m".into(),
            measures: vec!["n = count".into()],
            ..AggregateSpec::default()
        }
    }

    fn pipeline(aggregate: Vec<AggregateSpec>) -> Pipeline {
        Pipeline {
            state: Some("file:///tmp/state".into()),
            aggregate,
            deliver: Vec::new(),
        }
    }

    fn refused(p: &Pipeline, why: &str) {
        match p.check() {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pipelines_that_cannot_run_are_refused_before_they_start() {
        assert!(pipeline(vec![aggregate("a", "b"), aggregate("b", "c")])
            .check()
            .is_ok());
        refused(
            &pipeline(vec![aggregate("a", "b"), aggregate("b", "a")]),
            "loop",
        );
        refused(
            &pipeline(vec![
                aggregate("a", "b"),
                aggregate("b", "c"),
                aggregate("c", "a"),
            ]),
            "loop",
        );
        refused(&pipeline(vec![aggregate("a", "a")]), "which it reads");
        let mut late = aggregate("a", "b");
        late.late_to = Some("b".into());
        refused(&pipeline(vec![late]), "late_to");
        refused(
            &pipeline(vec![aggregate("a", "b/c")]),
            "invalid stream name",
        );
        refused(
            &pipeline(vec![aggregate("a", "b"), aggregate("a", "b")]),
            "another stage's",
        );
        let mut servers = aggregate("a", "b");
        servers.consumer = Some("aggregate-x".into());
        refused(&pipeline(vec![servers]), "the server's own");
        let mut bad = aggregate("a", "b");
        bad.window = "rolling 1m".into();
        refused(&pipeline(vec![bad]), "window");
        let mut no_state = pipeline(vec![aggregate("a", "b")]);
        no_state.state = None;
        refused(&no_state, "state");
        no_state.state = Some("file://relative/state".into());
        refused(&no_state, "three slashes");
    }
}
