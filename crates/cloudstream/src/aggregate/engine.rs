//! The windowed aggregation of one partition's records, in their order: pure and
//! deterministic (the same records in the same order give the same results, byte for byte),
//! its whole state serializable so that it survives a restart with the input position.
//!
//! Event time is the event's own time, else when it was appended, in milliseconds. The
//! watermark is the latest event time seen less the allowed lateness; a window is closed,
//! and its results given, once the watermark reaches its end. An event whose windows are
//! all closed is late: counted, and handed back so that it can go to a side stream.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::measure::{field, Acc};
use super::{Aggregation, Window};
use crate::Record;

/// The results of one window of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Where the window starts (ms since 1970).
    pub start: i64,
    /// Where it ends (exclusive).
    pub end: i64,
    /// The group's values, in the order of [`Aggregation::group_by`].
    pub group: Vec<Value>,
    /// Each measure's result, in the order of [`Aggregation::measures`].
    pub values: Vec<Value>,
}

/// What [`super::Aggregator::push`] did with a record.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The windows the record's time closed, by end, then start, then group.
    pub results: Vec<WindowResult>,
    /// The record came after all its windows had closed: it is counted as late, and is in
    /// no window.
    pub late: bool,
}

/// A window of a group still open: its accumulators, and for a session its last event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    accs: Vec<Acc>,
    /// The session's last event time (sessions only).
    last: i64,
}

/// Everything one partition's aggregation holds between records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The latest event time seen.
    max_time: Option<i64>,
    /// Open windows by group (as JSON) and start; a session's start is its first event.
    open: BTreeMap<String, BTreeMap<i64, Open>>,
    /// Every open window as (end, start, group): the next to close first.
    by_end: BTreeSet<(i64, i64, String)>,
    /// Records that came after their windows closed.
    pub late: u64,
    /// Records whose payload is not a JSON object.
    pub skipped: u64,
}

impl State {
    /// The watermark: the latest time seen less the allowed lateness.
    fn watermark(&self, lateness: i64) -> Option<i64> {
        self.max_time.map(|t| t.saturating_sub(lateness))
    }

    /// Adds a record; returns the windows it closed and whether it was late.
    pub(crate) fn push(&mut self, spec: &Aggregation, record: &Record) -> Pushed {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&record.event.payload)
        else {
            self.skipped += 1;
            return Pushed::default();
        };
        let object = Value::Object(object);
        let t = event_millis(record);
        let lateness = spec.lateness_ms as i64;
        let watermark = self.watermark(lateness);
        let closed = |end: i64| watermark.is_some_and(|w| end <= w);
        let group: Vec<Value> = spec
            .group_by
            .iter()
            .map(|path| field(&object, path).clone())
            .collect();
        let key = serde_json::to_string(&group).unwrap_or_default();
        let mut added = false;
        match spec.window {
            Window::Session { gap_ms } => {
                let gap = gap_ms as i64;
                // Late only if it would start a session that is already over: one that
                // falls in an open session joins it.
                added = self.add_to_session(spec, key, t, gap, &object, !closed(t + gap));
            }
            window => {
                for start in window.starts(t) {
                    let end = window.end(start);
                    if closed(end) {
                        continue;
                    }
                    if !self.open.contains_key(&key) {
                        self.open.insert(key.clone(), BTreeMap::new());
                    }
                    let Some(windows) = self.open.get_mut(&key) else {
                        continue;
                    };
                    let open = windows.entry(start).or_insert_with(|| {
                        self.by_end.insert((end, start, key.clone()));
                        Open {
                            accs: spec.measures.iter().map(|m| Acc::new(m.op)).collect(),
                            last: t,
                        }
                    });
                    add(spec, &mut open.accs, &object);
                    added = true;
                }
            }
        }
        if !added {
            self.late += 1;
        }
        let before = self.max_time;
        self.max_time = Some(before.map_or(t, |m| m.max(t)));
        let results = if self.max_time != before {
            self.close(spec)
        } else {
            Vec::new()
        };
        Pushed {
            results,
            late: !added,
        }
    }

    /// Puts `t` in the group's open sessions that it falls within a gap of (merging the
    /// sessions it bridges), or, if `may_start`, starts one; whether it was added.
    fn add_to_session(
        &mut self,
        spec: &Aggregation,
        key: String,
        t: i64,
        gap: i64,
        object: &Value,
        may_start: bool,
    ) -> bool {
        // The group's sessions that t is within a gap of: (first - gap, last + gap).
        let touching: Vec<i64> = self
            .open
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|(first, open)| **first - gap < t && t < open.last + gap)
            .map(|(first, _)| *first)
            .collect();
        if touching.is_empty() && !may_start {
            return false;
        }
        let sessions = self.open.entry(key.clone()).or_default();
        let mut merged = Open {
            accs: spec.measures.iter().map(|m| Acc::new(m.op)).collect(),
            last: t,
        };
        let mut first = t;
        for start in touching {
            if let Some(open) = sessions.remove(&start) {
                self.by_end.remove(&(open.last + gap, start, key.clone()));
                for (acc, other) in merged.accs.iter_mut().zip(&open.accs) {
                    acc.merge(other);
                }
                merged.last = merged.last.max(open.last);
                first = first.min(start);
            }
        }
        add(spec, &mut merged.accs, object);
        self.by_end.insert((merged.last + gap, first, key));
        sessions.insert(first, merged);
        true
    }

    /// Closes the windows the watermark has passed; their results, by end, then start, then
    /// group.
    fn close(&mut self, spec: &Aggregation) -> Vec<WindowResult> {
        let Some(watermark) = self.watermark(spec.lateness_ms as i64) else {
            return Vec::new();
        };
        let mut results = Vec::new();
        while let Some((end, start, group)) = self.by_end.first().cloned() {
            if end > watermark {
                break;
            }
            self.by_end.pop_first();
            let Some(windows) = self.open.get_mut(&group) else {
                continue;
            };
            let Some(mut open) = windows.remove(&start) else {
                continue;
            };
            if windows.is_empty() {
                self.open.remove(&group);
            }
            results.push(WindowResult {
                start,
                end,
                group: serde_json::from_str(&group).unwrap_or_default(),
                values: open.accs.iter_mut().map(Acc::result).collect(),
            });
        }
        results
    }

    /// Closes every open window, as the end of the input: their results, in the same order.
    pub(crate) fn flush(&mut self, spec: &Aggregation) -> Vec<WindowResult> {
        let Some(end) = self.by_end.last().map(|(end, _, _)| *end) else {
            return Vec::new();
        };
        self.max_time = Some(end.saturating_add(spec.lateness_ms as i64));
        self.close(spec)
    }

    /// How many windows are open.
    pub(crate) fn open_windows(&self) -> usize {
        self.by_end.len()
    }
}

/// Adds an event to a window's accumulators.
fn add(spec: &Aggregation, accs: &mut [Acc], object: &Value) {
    for (acc, measure) in accs.iter_mut().zip(&spec.measures) {
        acc.add(measure.field.as_deref().map(|path| field(object, path)));
    }
}

/// Event times are clamped to ±2^52 ms (about ±142,000 years), so that window arithmetic
/// never overflows.
const TIME_LIMIT: i64 = 1 << 52;

/// A record's event time in milliseconds since 1970: its own, else when it was appended,
/// clamped to ±[`TIME_LIMIT`].
pub(crate) fn event_millis(record: &Record) -> i64 {
    crate::event::to_millis(record.event.time.unwrap_or(record.append_time))
        .clamp(-TIME_LIMIT, TIME_LIMIT)
}

impl WindowResult {
    /// The result as the output stream's JSON object: `window_start`, `window_end` (RFC
    /// 3339), the group's fields by name, then each measure's result by name.
    pub fn to_json(&self, spec: &Aggregation) -> Value {
        let mut out = Map::new();
        let time = |ms: i64| crate::wire::rfc3339(crate::event::from_millis(ms));
        out.insert("window_start".into(), Value::String(time(self.start)));
        out.insert("window_end".into(), Value::String(time(self.end)));
        for (path, value) in spec.group_by.iter().zip(&self.group) {
            out.insert(path.clone(), value.clone());
        }
        for (measure, value) in spec.measures.iter().zip(&self.values) {
            out.insert(measure.name.clone(), value.clone());
        }
        Value::Object(out)
    }
}
