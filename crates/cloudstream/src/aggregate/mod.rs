//! Windowed aggregation over event time (the spec's Stream-06, the analysis step that
//! Kinesis Data Analytics or Stream Analytics gives): tumbling, hopping and session windows,
//! a watermark with allowed lateness, groups by JSON fields, and count, sum, min, max, avg,
//! distinct count (HyperLogLog++) and percentiles (DDSketch).
//!
//! [`Aggregator`] is the computation of one partition's records, in order: deterministic
//! (the same records give the same results, byte for byte) and with a state that can be
//! saved and restored with the input position. Results come once the watermark (the
//! latest event time seen, less `lateness_ms`) passes a window's end; an event whose windows
//! have all closed is late, counted and handed back.
//!
//! [`Stream::aggregate`](crate::Stream::aggregate) runs an aggregation as a consumer: its
//! results are events on an output stream (read, triggered on and delivered like any
//! other), its late records optionally go to a side stream, and its state is saved to an
//! object store with the input position, so that a restart neither loses nor counts twice.

mod engine;
mod lane;
mod measure;
mod run;
#[cfg(test)]
mod tests;
mod text;
mod window;

use serde::{Deserialize, Serialize};

use self::engine::State;
pub use self::engine::{Pushed, WindowResult};
pub use self::lane::LATE_FROM;
pub use self::measure::{Measure, Op};
pub use self::run::Aggregate;
pub use self::text::parse_millis;
pub use self::window::Window;
use crate::{Error, Record, Result};

/// What to compute: windows, groups, measures, and how late an event may come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregation {
    /// How events are grouped in time.
    pub window: Window,
    /// The JSON fields (`device`, `site.region`) whose values make a group; none for one
    /// group of everything.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// What each window of each group computes.
    pub measures: Vec<Measure>,
    /// How far behind the latest event time an event may come and still count (the
    /// watermark's distance).
    #[serde(default)]
    pub lateness_ms: u64,
}

/// Names the output objects use for themselves.
const RESERVED: [&str; 2] = ["window_start", "window_end"];

impl Aggregation {
    /// Refuses an aggregation that cannot be computed or whose output would be ambiguous
    /// (two outputs of one name).
    pub fn check(&self) -> Result<()> {
        self.window.check()?;
        if self.lateness_ms > window::MAX_MS {
            return Err(Error::InvalidArgument(format!(
                "lateness_ms is at most a year ({} ms), not {}",
                window::MAX_MS,
                self.lateness_ms
            )));
        }
        if self.measures.is_empty() {
            return Err(Error::InvalidArgument(
                "an aggregation computes at least one measure".into(),
            ));
        }
        let mut names: Vec<&str> = RESERVED.to_vec();
        for name in self
            .group_by
            .iter()
            .map(String::as_str)
            .chain(self.measures.iter().map(|m| m.name.as_str()))
        {
            if names.contains(&name) {
                return Err(Error::InvalidArgument(format!(
                    "{name:?} names two outputs (window_start and window_end are taken)"
                )));
            }
            names.push(name);
        }
        self.measures.iter().try_for_each(Measure::check)
    }
}

/// The aggregation of one partition's records, fed in their order.
#[derive(Debug, Clone)]
pub struct Aggregator {
    spec: Aggregation,
    state: State,
}

impl Aggregator {
    /// An aggregation with nothing seen yet; `InvalidArgument` if it cannot be computed.
    pub fn new(spec: Aggregation) -> Result<Aggregator> {
        spec.check()?;
        Ok(Aggregator {
            spec,
            state: State::default(),
        })
    }

    /// What it computes.
    pub fn spec(&self) -> &Aggregation {
        &self.spec
    }

    /// Adds the next record of the partition.
    pub fn push(&mut self, record: &Record) -> Pushed {
        self.state.push(&self.spec, record)
    }

    /// Records that came after their windows had closed.
    pub fn late(&self) -> u64 {
        self.state.late
    }

    /// Records whose payload is not a JSON object (not aggregated).
    pub fn skipped(&self) -> u64 {
        self.state.skipped
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.state.open_windows()
    }

    /// Closes every open window, as at the end of the input (a bounded replay): their
    /// results. Later records count as late.
    pub fn flush(&mut self) -> Vec<WindowResult> {
        self.state.flush(&self.spec)
    }

    /// The state, with the spec it was computed for, to keep with the input position it
    /// follows.
    pub fn save(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.saved()).map_err(|e| Error::Backend(Box::new(e)))
    }

    /// An aggregation that goes on from a saved state; `InvalidArgument` if the state was
    /// saved for another spec (its windows would mean something else).
    pub fn restore(spec: Aggregation, saved: &[u8]) -> Result<Aggregator> {
        let saved: Saved = serde_json::from_slice(saved)
            .map_err(|e| Error::InvalidArgument(format!("not a saved aggregation state: {e}")))?;
        saved.into_aggregator(spec)
    }

    /// The state as saved, with its spec.
    pub(crate) fn saved(&self) -> Saved {
        Saved {
            spec: self.spec.clone(),
            state: self.state.clone(),
        }
    }
}

/// What [`Aggregator::save`] writes.
#[derive(Serialize, Deserialize)]
pub(crate) struct Saved {
    spec: Aggregation,
    state: State,
}

impl Saved {
    /// The aggregator this state is of, if it was saved for `spec`.
    pub(crate) fn into_aggregator(self, spec: Aggregation) -> Result<Aggregator> {
        spec.check()?;
        if self.spec != spec {
            return Err(Error::InvalidArgument(
                "the saved state is another aggregation's (its windows, groups, measures or lateness differ)".into(),
            ));
        }
        Ok(Aggregator {
            spec,
            state: self.state,
        })
    }
}
