//! One input partition's aggregation as the runtime keeps it: the [`Aggregator`], the input
//! position it has seen up to, how many events it has numbered, and the events it is about
//! to send, saved together in the state store.
//!
//! A batch is an outbox: its records are pushed, the lane is saved with the events they
//! gave as *pending*, the events are sent, and the lane is saved again without them, before
//! the input checkpoint moves. Every event has an id, `agg-TAG-PARTITION-GENERATION-N`. A
//! lane loaded with pending events (its process died, or a send failed, between the two
//! saves) reads its targets from the first save's time for those ids, and sends only the
//! pending events they do not hold. So each event is on its target once where the target
//! can be read from a time, and at least once elsewhere.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Aggregation, Aggregator, Saved, WindowResult};
use crate::backend::{PartitionStart, ReadOptions};
use crate::deliver::sink::Sink;
use crate::event::{from_millis, now_ms, MAX_TIME_MS};
use crate::wire::EventJson;
use crate::{Error, Event, Record, Result, Sequence, Stream};

/// How far before a save's time a target is searched for the events sent after it: the
/// provider stamps append times with its own clock, which may be behind ours.
const CLOCK_MARGIN_MS: i64 = 5 * 60 * 1000;

/// The header a late record sent on carries: its position in the input.
pub const LATE_FROM: &str = "cloudstream-late-from";

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    /// The output stream: a window's result.
    Output,
    /// The late stream: a record that came after its windows closed.
    Late,
}

/// An event numbered and not yet known to be on its target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) target: Target,
    n: u64,
    event: EventJson,
}

/// The input partition's aggregation, where it is in the input and in its output.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) aggregator: Aggregator,
    /// The last input record pushed.
    pub(crate) input_last: Option<Sequence>,
    /// Events numbered: the next event's N.
    sent: u64,
    /// Identifies this numbering: a lane that starts without saved state starts N at 0
    /// under a new random generation.
    generation: u64,
    /// When the lane was saved last (ms since 1970).
    saved_at: i64,
    /// Events saved but not known to be sent.
    pub(crate) pending: Vec<Pending>,
}

/// What the state store keeps per input partition.
#[derive(Serialize, Deserialize)]
struct LaneFile {
    aggregator: Saved,
    input_last: Option<Sequence>,
    sent: u64,
    generation: u64,
    saved_at: i64,
    #[serde(default)]
    pending: Vec<Pending>,
}

/// Who an aggregation is: its input stream and consumer, and the tag its events' ids carry.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) stream: String,
    pub(crate) consumer: String,
    /// xxHash64 of stream and consumer: ids stay short whatever the names' lengths.
    tag: String,
}

impl Names {
    pub(crate) fn new(stream: &str, consumer: &str) -> Names {
        let tag = twox_hash::XxHash64::oneshot(0, format!("{stream}\n{consumer}").as_bytes());
        Names {
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            tag: format!("{tag:016x}"),
        }
    }

    /// Where a partition's lane is kept, below the state store's prefix (stream and
    /// consumer are names: no `/`).
    fn path(&self, partition: u32) -> String {
        format!(
            "{}/{}/partition-{partition:05}.json",
            self.stream, self.consumer
        )
    }

    /// `agg-TAG-PARTITION-GENERATION-N`: at most 73 bytes.
    fn id(&self, partition: u32, generation: u64, n: u64) -> String {
        format!("agg-{}-{partition}-{generation}-{n}", self.tag)
    }

    /// The partition, generation and N of an id this aggregation gave.
    fn parse(&self, id: &str) -> Option<(u32, u64, u64)> {
        let rest = id
            .strip_prefix("agg-")?
            .strip_prefix(self.tag.as_str())?
            .strip_prefix('-')?;
        let mut parts = rest.split('-');
        let out = (
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        );
        parts.next().is_none().then_some(out)
    }
}

impl Lane {
    /// The partition's saved lane, if it has one.
    pub(crate) async fn load(
        store: &Sink,
        names: &Names,
        spec: &Aggregation,
        partition: u32,
    ) -> Result<Option<Lane>> {
        let path = names.path(partition);
        let Some(bytes) = store.get(&path).await? else {
            return Ok(None);
        };
        let shown = format!("{}/{path}", store.shown().trim_end_matches('/'));
        let file: LaneFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!("{shown} is not an aggregation's saved state: {e}"))
        })?;
        let aggregator = file.aggregator.into_aggregator(spec.clone()).map_err(|e| {
            Error::InvalidArgument(format!(
                "{shown}: {e}; name another consumer, or delete that state"
            ))
        })?;
        Ok(Some(Lane {
            aggregator,
            input_last: file.input_last,
            sent: file.sent,
            generation: file.generation,
            saved_at: file.saved_at,
            pending: file.pending,
        }))
    }

    /// A lane with nothing seen, under a new generation.
    pub(crate) fn fresh(spec: &Aggregation) -> Result<Lane> {
        Ok(Lane {
            aggregator: Aggregator::new(spec.clone())?,
            input_last: None,
            sent: 0,
            generation: rand::random::<u64>() >> 1,
            saved_at: now_ms(),
            pending: Vec::new(),
        })
    }

    /// Saves the lane, pending events included.
    pub(crate) async fn save(&mut self, store: &Sink, names: &Names, partition: u32) -> Result<()> {
        self.saved_at = now_ms();
        let file = LaneFile {
            aggregator: self.aggregator.saved(),
            input_last: self.input_last,
            sent: self.sent,
            generation: self.generation,
            saved_at: self.saved_at,
            pending: self.pending.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| Error::Backend(Box::new(e)))?;
        store.put(&names.path(partition), bytes).await
    }

    /// Drops the pending events `target` holds already (read from the last save's time
    /// less a margin for clocks). A target that cannot be read from a time is not searched:
    /// its pending events are sent again (at least once, unless the provider drops them by
    /// id).
    pub(crate) async fn drop_landed(
        &mut self,
        target: Target,
        stream: &Stream,
        names: &Names,
        partition: u32,
    ) -> Result<()> {
        let wanted: BTreeSet<u64> = self
            .pending
            .iter()
            .filter(|p| p.target == target)
            .map(|p| p.n)
            .collect();
        if wanted.is_empty() || !stream.backend().capabilities().replay_by_time {
            return Ok(());
        }
        let since = from_millis(self.saved_at.saturating_sub(CLOCK_MARGIN_MS));
        // Up to each partition's end now, where the provider numbers densely: others keep
        // writing to the target meanwhile, and what they write is none of these events.
        let ends = stream.describe().await?.partitions;
        let mut landed = BTreeSet::new();
        for p in 0..stream.partitions() {
            let end = ends
                .iter()
                .find(|e| e.partition == p)
                .and_then(|e| e.next?.as_u64());
            let mut start = PartitionStart::AtTime(since);
            loop {
                let page = stream.read_start(p, start, &ReadOptions::default()).await?;
                let Some(last) = page.last() else { break };
                let reached = end.is_some_and(|end| {
                    last.position
                        .sequence
                        .as_u64()
                        .is_some_and(|l| l + 1 >= end)
                });
                start = PartitionStart::After(last.position.sequence);
                landed.extend(
                    page.iter()
                        .filter_map(|r| names.parse(r.event.id()?))
                        .filter(|&(from, generation, n)| {
                            from == partition
                                && generation == self.generation
                                && wanted.contains(&n)
                        })
                        .map(|(_, _, n)| n),
                );
                if reached {
                    break;
                }
            }
        }
        self.pending
            .retain(|p| p.target != target || !landed.contains(&p.n));
        Ok(())
    }

    /// Numbers `event` (its id set) and keeps it as pending for `target` as `fits` makes
    /// it; an event that `fits` refuses is not kept.
    pub(crate) fn number(
        &mut self,
        names: &Names,
        partition: u32,
        target: Target,
        event: Event,
        fits: impl FnOnce(Event) -> Option<Event>,
    ) {
        let n = self.sent;
        self.sent += 1;
        let event = event.with_id(names.id(partition, self.generation, n));
        if let Some(event) = fits(event) {
            self.pending.push(Pending {
                target,
                n,
                event: EventJson::exact(&event),
            });
        }
    }

    /// A window's result as the output's event: its JSON object, keyed by its group (so a
    /// group's results stay in order in one partition), timed at the window's start (so a
    /// delivery files it under the hour it is about).
    pub(crate) fn result_event(&self, result: &WindowResult) -> Result<Event> {
        let mut event = Event::json(&result.to_json(&self.aggregator.spec))?;
        event.key = match result.group.as_slice() {
            [] => None,
            [serde_json::Value::String(one)] => Some(one.clone()),
            group => Some(serde_json::Value::from(group.to_vec()).to_string()),
        };
        // Event times are 1970 to 9999 on every provider; a window outside goes untimed.
        if (0..=MAX_TIME_MS).contains(&result.start) {
            event.time = Some(from_millis(result.start));
        }
        Ok(event)
    }

    /// A late record as the late stream's event: as it was (payload, key, headers, time),
    /// with the input position it came from.
    pub(crate) fn late_event(record: &Record) -> Event {
        let mut event = record.event.clone();
        event.time = Some(record.event.time.unwrap_or(record.append_time));
        event.with_header(LATE_FROM, record.position.to_string())
    }

    /// The pending events for `target`, as events.
    pub(crate) fn pending_events(&self, target: Target) -> Result<Vec<Event>> {
        self.pending
            .iter()
            .filter(|p| p.target == target)
            .map(|p| p.event.clone().into_event())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_given() {
        let names = Names::new("in", "aggregate");
        let id = names.id(3, 17, 42);
        assert_eq!(names.parse(&id), Some((3, 17, 42)));
        assert!(names.id(u32::MAX, u64::MAX, u64::MAX).len() <= crate::MAX_ID_BYTES);
        assert_eq!(Names::new("in", "other").parse(&id), None);
        assert_eq!(Names::new("i", "naggregate").parse(&id), None);
        let base = id
            .rsplit_once('-')
            .map(|(base, _)| base)
            .unwrap_or_default();
        assert_eq!(names.parse(base), None);
        assert_eq!(names.parse(&format!("{id}-1")), None);
    }
}
