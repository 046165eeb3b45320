//! `cloudstream aggregate` and `cloudstream pipeline`: stages of a pipeline, from flags or
//! from a file, run until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use cloudstream::pipeline::{AggregateSpec, Pipeline};
use cloudstream::Client;
use serde_json::json;

use crate::args::AggregateArgs;
use crate::output::emit;

/// Reads a pipeline file (TOML) and checks it; errors name the file.
pub(crate) fn load(path: &Path) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pipeline file {}", path.display()))?;
    let mut pipeline: Pipeline =
        toml::from_str(&text).with_context(|| format!("pipeline file {}", path.display()))?;
    pipeline.state = pipeline.state.map(absolute).transpose()?;
    for d in &mut pipeline.deliver {
        d.to = absolute(std::mem::take(&mut d.to))?;
    }
    Ok(pipeline)
}

/// A store given as a path (`./lake`, `/var/lake`) as a `file://` URL, a relative one below
/// the current directory; URLs as they are.
fn absolute(store: String) -> Result<String> {
    if store.contains("://") {
        return Ok(store);
    }
    Ok(cloudstream::deliver::local_sink(Path::new(&store))?)
}

/// `./cloudstream-state` as a URL: where `cloudstream aggregate` keeps state by default.
fn default_state() -> Result<String> {
    Ok(cloudstream::deliver::local_sink(Path::new(
        "cloudstream-state",
    ))?)
}

/// The one-stage pipeline `cloudstream aggregate` runs.
pub(crate) fn from_args(args: AggregateArgs) -> Result<Pipeline> {
    Ok(Pipeline {
        state: Some(match args.state {
            Some(state) => absolute(state)?,
            None => default_state()?,
        }),
        aggregate: vec![AggregateSpec {
            from: Some(args.name),
            to: args.to,
            late_to: args.late_to,
            window: args.window,
            lateness: Some(args.lateness),
            group_by: args.group_by,
            measures: args.measures,
            consumer: args.consumer,
            start: None,
        }],
        deliver: Vec::new(),
    })
}

/// Runs `pipeline` until Ctrl-C or SIGTERM (or `--check`: prints its stages), then prints
/// what each stage handled.
pub(crate) async fn run(
    client: &Client,
    pipeline: Pipeline,
    check: bool,
    json: bool,
) -> Result<()> {
    pipeline.check()?;
    if check {
        for a in &pipeline.aggregate {
            let from = a.from.as_deref().unwrap_or_default();
            emit(format_args!("aggregate {from} -> {} ({})", a.to, a.window))?;
        }
        for d in &pipeline.deliver {
            let to = cloudstream::deliver::shown_sink(&d.to);
            emit(format_args!("deliver {} -> {to}", d.from))?;
        }
        return Ok(());
    }
    let reports = pipeline.run_until(client, crate::serve::stopped()).await?;
    for (stage, report) in reports {
        if json {
            emit(format_args!(
                "{}",
                json!({ "stage": stage, "handled": report.handled, "failed_attempts": report.failed_attempts })
            ))?;
        } else {
            emit(format_args!("{stage}: handled {} records", report.handled))?;
        }
    }
    Ok(())
}
