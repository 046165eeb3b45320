//! One input partition's aggregation as the runtime keeps it: the [`Aggregator`], the input
//! position it has seen up to, and how many events it has sent; saved to the state store
//! after each batch's events are sent, and before the input checkpoint moves.
//!
//! Every event an aggregation sends (a result, or a late record sent on) has an id,
//! `agg/STREAM/CONSUMER/PARTITION/GENERATION/N`, N counting the partition's events. A lane
//! that starts again from its saved state (after a crash, or a failed send) looks for the
//! ids its targets already hold past that state ([`Lane::landed`]): recomputing the same
//! records gives the same events with the same N, and those already there are not sent
//! again. So each result is on the output once, where the target can be read from a time.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::engine::State;
use super::{Aggregation, Aggregator, WindowResult};
use crate::backend::{PartitionStart, ReadOptions};
use crate::deliver::sink::Sink;
use crate::event::from_millis;
use crate::{Error, Event, Record, Result, Sequence, Stream};

/// How far before a saved state's time a target is searched for events sent after it: the
/// provider stamps append times with its own clock, which may be behind ours.
const CLOCK_MARGIN_MS: i64 = 5 * 60 * 1000;

/// The input partition's aggregation, where it is in the input and in its output.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) aggregator: Aggregator,
    /// The last input record pushed.
    pub(crate) input_last: Option<Sequence>,
    /// Events sent (or to be sent): the next event's N.
    pub(crate) sent: u64,
    /// Identifies this run of numbering: a lane that starts without saved state starts N
    /// again at 0 under a new generation.
    generation: u64,
    /// When the state was last saved (ms since 1970).
    saved_at: i64,
    /// The N past `sent` that the targets hold already: not to be sent again.
    landed: BTreeSet<u64>,
}

/// What the state store keeps per input partition.
#[derive(Serialize, Deserialize)]
struct Saved {
    spec: Aggregation,
    state: State,
    input_last: Option<Sequence>,
    sent: u64,
    generation: u64,
    saved_at: i64,
}

/// Where the state of one aggregation's partition is kept, below the state store's prefix.
fn state_path(stream: &str, consumer: &str, partition: u32) -> String {
    format!("{stream}/{consumer}/partition-{partition:05}.json")
}

/// The start of the year 10000, in ms since 1970: event times end before it.
const MAX_EVENT_MS: i64 = 253_402_300_800_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    /// The partition's saved lane, or a new one (saved at once, so that a crash before its
    /// first save still finds its generation).
    pub(crate) async fn load(
        store: &Sink,
        names: &Names,
        spec: &Aggregation,
        partition: u32,
    ) -> Result<Lane> {
        let path = state_path(&names.stream, &names.consumer, partition);
        let Some(bytes) = store.get(&path).await? else {
            let lane = Lane {
                aggregator: Aggregator::new(spec.clone())?,
                input_last: None,
                sent: 0,
                generation: now_ms().max(0) as u64,
                saved_at: now_ms(),
                landed: BTreeSet::new(),
            };
            lane.save(store, names, partition).await?;
            return Ok(lane);
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!(
                "{} in the state store is not an aggregation's saved state: {e}",
                store_shown(store, &path)
            ))
        })?;
        if saved.spec != *spec {
            return Err(Error::InvalidArgument(format!(
                "{} holds the state of another aggregation (its windows, groups, measures or lateness differ): name another consumer, or delete that state",
                store_shown(store, &path)
            )));
        }
        Ok(Lane {
            aggregator: Aggregator {
                spec: saved.spec,
                state: saved.state,
            },
            input_last: saved.input_last,
            sent: saved.sent,
            generation: saved.generation,
            saved_at: saved.saved_at,
            landed: BTreeSet::new(),
        })
    }

    /// Saves the lane: what it has seen of the input and sent of its output.
    pub(crate) async fn save(&self, store: &Sink, names: &Names, partition: u32) -> Result<()> {
        let saved = Saved {
            spec: self.aggregator.spec.clone(),
            state: self.aggregator.state.clone(),
            input_last: self.input_last,
            sent: self.sent,
            generation: self.generation,
            saved_at: now_ms(),
        };
        let bytes = serde_json::to_vec(&saved).map_err(|e| Error::Backend(Box::new(e)))?;
        store
            .put(
                &state_path(&names.stream, &names.consumer, partition),
                bytes,
            )
            .await
    }

    /// Finds the events of this lane that `target` holds past the saved state, so that they
    /// are not sent again. A target that cannot be read from a time is not searched: its
    /// events may then come twice after a crash (at least once), unless the provider drops
    /// them by id.
    pub(crate) async fn find_landed(
        &mut self,
        target: &Stream,
        names: &Names,
        partition: u32,
    ) -> Result<()> {
        if !target.backend().capabilities().replay_by_time {
            return Ok(());
        }
        let since = from_millis(self.saved_at.saturating_sub(CLOCK_MARGIN_MS));
        let options = ReadOptions {
            max_records: 1_000,
            ..ReadOptions::default()
        };
        for p in 0..target.partitions() {
            let mut start = PartitionStart::AtTime(since);
            loop {
                let page = target.read_start(p, start, &options).await?;
                let Some(last) = page.last() else { break };
                start = PartitionStart::After(last.position.sequence);
                for id in page.iter().filter_map(|r| r.event.id()) {
                    match names.parse(id) {
                        Some((from, generation, n))
                            if from == partition
                                && generation == self.generation
                                && n >= self.sent =>
                        {
                            self.landed.insert(n);
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The next event's id, or `None` when the targets hold it already.
    fn next_id(&mut self, names: &Names, partition: u32) -> Option<String> {
        let n = self.sent;
        self.sent += 1;
        (!self.landed.remove(&n)).then(|| names.id(partition, self.generation, n))
    }

    /// A window's result as the output's event: its JSON object, keyed by its group (so a
    /// group's results stay in order in one partition), timed at the window's start (so
    /// a delivery files it under the hour it is about).
    pub(crate) fn result_event(
        &mut self,
        names: &Names,
        partition: u32,
        result: &WindowResult,
    ) -> Result<Option<Event>> {
        let Some(id) = self.next_id(names, partition) else {
            return Ok(None);
        };
        let key = match result.group.as_slice() {
            [] => None,
            [serde_json::Value::String(one)] => Some(one.clone()),
            group => Some(serde_json::Value::from(group.to_vec()).to_string()),
        };
        let mut event = Event::json(&result.to_json(&self.aggregator.spec))?.with_id(id);
        // Event times are 1970 to 9999 on every provider; a window outside goes untimed.
        if (0..MAX_EVENT_MS).contains(&result.start) {
            event.time = Some(from_millis(result.start));
        }
        event.key = key;
        Ok(Some(event))
    }

    /// A late record as the late stream's event: as it was (payload, key, headers, time),
    /// with the aggregation's id and the input position it came from.
    pub(crate) fn late_event(
        &mut self,
        names: &Names,
        partition: u32,
        record: &Record,
    ) -> Option<Event> {
        let id = self.next_id(names, partition)?;
        let mut event = record.event.clone().with_id(id);
        event.time = Some(record.event.time.unwrap_or(record.append_time));
        Some(event.with_header(LATE_FROM, record.position.to_string()))
    }
}

/// The header a late record sent on carries: its position in the input.
pub const LATE_FROM: &str = "cloudstream-late-from";

/// A state object as messages name it.
fn store_shown(store: &Sink, path: &str) -> String {
    format!("{}/{path}", store.shown().trim_end_matches('/'))
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
        let base = id.rsplit_once('-').expect("a dash").0;
        assert_eq!(names.parse(base), None);
        assert_eq!(names.parse(&format!("{id}-1")), None);
    }
}
