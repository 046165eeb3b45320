//! How delivered files are named and laid out: Hive-style prefixes by event time
//! (`dt=2026-11-24/hour=13/`), and a name that says which positions the file holds:
//! `STREAM-PPPPP-FIRST-LAST.jsonl[.gz|.zst]` or `.parquet`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Record, Sequence};

/// The extensions of delivered files.
const EXTENSIONS: [&str; 4] = ["jsonl", "jsonl.gz", "jsonl.zst", "parquet"];

/// Most files one batch of a partition is split into by event hour; the records after the
/// last of them go into it, whatever their hour (a partition whose writers' clocks disagree
/// would otherwise make a file per record).
const MAX_RUNS: usize = 24;

/// What a delivered file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    pub partition: u32,
    pub first: Sequence,
    pub last: Sequence,
}

impl FileName {
    /// The name of the file holding `records` (one partition's, in order), with `extension`.
    pub(crate) fn of(stream: &str, records: &[Record], extension: &str) -> Option<String> {
        let (first, last) = (records.first()?, records.last()?);
        Some(format!(
            "{stream}-{:05}-{}-{}.{extension}",
            first.position.partition, first.position.sequence, last.position.sequence
        ))
    }

    /// What the name of a file of `stream` says; `None` for any other name (another
    /// stream's, a store's partial file such as `NAME#3`).
    pub(crate) fn parse(stream: &str, name: &str) -> Option<FileName> {
        let rest = name.strip_prefix(stream)?.strip_prefix('-')?;
        let stem = EXTENSIONS
            .iter()
            .find_map(|extension| rest.strip_suffix(extension)?.strip_suffix('.'))?;
        let mut parts = stem.split('-');
        let (partition, first, last) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || partition.len() < 5 {
            return None;
        }
        Some(FileName {
            partition: partition.parse().ok()?,
            first: first.parse().ok()?,
            last: last.parse().ok()?,
        })
    }
}

/// The time a record is laid out by: its event time, else when it was appended.
pub(crate) fn event_time(record: &Record) -> SystemTime {
    record.event.time.unwrap_or(record.append_time)
}

/// The Hive-style prefix of a time, in UTC: `dt=YYYY-MM-DD/hour=HH` (times outside 1970 to
/// 9999 are clamped, as everywhere records are shown).
pub(crate) fn hour_prefix(t: SystemTime) -> String {
    let text = crate::wire::rfc3339(t);
    // 2026-11-24T13:05:00Z
    format!("dt={}/hour={}", &text[..10], &text[11..13])
}

/// The hour a time falls in, as [`hour_prefix`] names it: hours since 1970, the time
/// clamped as it clamps. Cheaper than the prefix, so runs are cut by it.
fn hour_number(t: SystemTime) -> u64 {
    let last = crate::event::from_millis(crate::event::MAX_TIME_MS);
    t.clamp(UNIX_EPOCH, last)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600)
}

/// The runs of consecutive records that fall in the same hour, in order: each is one file.
pub(crate) fn runs_by_hour(records: &[Record]) -> Vec<(String, &[Record])> {
    let mut out: Vec<(String, &[Record])> = Vec::new();
    let mut start = 0;
    let Some(first) = records.first() else {
        return out;
    };
    let mut hour = hour_number(event_time(first));
    for i in 1..=records.len() {
        let last_run = out.len() + 1 == MAX_RUNS;
        let next = records.get(i).map(|r| hour_number(event_time(r)));
        if next.is_none() || (!last_run && next != Some(hour)) {
            out.push((hour_prefix(event_time(&records[start])), &records[start..i]));
            start = i;
            hour = next.unwrap_or(hour);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Position};
    use std::time::Duration;

    fn record(seq: u64, secs: u64) -> Record {
        Record {
            position: Position::new(3, seq),
            append_time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            event: Event::new("x"),
        }
    }

    #[test]
    fn names_say_the_positions_and_parse_back() {
        let records = [record(7, 0), record(9, 0)];
        let name = FileName::of("a-b.c", &records, "jsonl.gz").expect("name");
        assert_eq!(name, "a-b.c-00003-7-9.jsonl.gz");
        let parsed = FileName::parse("a-b.c", &name).expect("parsed");
        assert_eq!(
            parsed,
            FileName {
                partition: 3,
                first: Sequence::from(7u64),
                last: Sequence::from(9u64)
            }
        );
        assert_eq!(FileName::parse("a-b", &name), None, "another stream's file");
        assert_eq!(FileName::parse("a-b.c", "a-b.c-3-7-9.jsonl"), None);
        assert_eq!(
            FileName::parse("a-b.c", &format!("{name}#3")),
            None,
            "partial"
        );
        assert_eq!(FileName::parse("a", "a-00003-7-9.x-00001-1-2.jsonl"), None);
        assert!(
            FileName::parse("a", "a-123456-7-9.jsonl.zst").is_some(),
            "wide partitions"
        );
    }

    #[test]
    fn records_are_laid_out_by_hour_in_runs() {
        // 2025-11-24T16:59:59Z and 17:00:00Z.
        let h13 = 1_764_003_599;
        let records = [
            record(1, h13),
            record(2, h13),
            record(3, h13 + 1),
            record(4, h13),
        ];
        let runs = runs_by_hour(&records);
        let shape: Vec<(String, usize)> = runs.iter().map(|(h, r)| (h.clone(), r.len())).collect();
        let (a, b) = (
            hour_prefix(records[0].append_time),
            hour_prefix(records[2].append_time),
        );
        assert_ne!(a, b);
        assert_eq!(shape, vec![(a.clone(), 2), (b, 1), (a, 1)]);
        assert!(hour_prefix(SystemTime::UNIX_EPOCH).starts_with("dt=1970-01-01/hour=00"));
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            hour_prefix(before),
            "dt=1970-01-01/hour=00",
            "clamped, no panic"
        );
        // Clocks an hour apart, alternating: at most MAX_RUNS files.
        let flapping: Vec<Record> = (0..100).map(|i| record(i, h13 + (i % 2) * 3600)).collect();
        let runs = runs_by_hour(&flapping);
        assert_eq!(runs.len(), MAX_RUNS);
        assert_eq!(runs.iter().map(|(_, r)| r.len()).sum::<usize>(), 100);
    }
}
