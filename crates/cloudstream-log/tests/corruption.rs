//! Damaged segments: every flipped bit of a cleanly closed log is refused (at open or at read)
//! and never served; a torn tail after the last durable point is cut back to exactly the
//! longest prefix of complete batches; damaged headers and missing segments are refused with a
//! clear message.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudstream_log::storage::OpenMode;
use cloudstream_log::{
    FileStorage, Log, LogError, LogOptions, ManualClock, MemoryStorage, Result, Storage, SyncPolicy,
};
use common::*;
use tempfile::TempDir;

const STREAM: &str = "c";
/// Horizon of the test stream; segments roll by age every eighth of it.
const HORIZON_MS: u64 = 8000;

/// A small log: `segments` segments of `batches` batches each.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    options: LogOptions,
    /// Every record written, in offset order.
    want: Vec<Rec>,
    /// Per segment: (end position in the segment file, records written so far) after each
    /// batch.
    ends: Vec<Vec<(u64, usize)>>,
}

impl Fixture {
    /// Writes the log and returns it still open (for a crash-like copy) with the fixture.
    fn build(segments: usize, batches: u64, sync: SyncPolicy) -> (Fixture, Log) {
        let dir = tempdir();
        let root = dir.path().join("data");
        let clock = Arc::new(ManualClock::new(T0));
        let mut options = options(Arc::new(FileStorage), clock.clone());
        options.sync = sync;
        let log = open(&root, &options);
        let stream = create(&log, STREAM, config(1, HORIZON_MS));
        let p = stream.partition(0).expect("partition");
        let (mut want, mut ends) = (Vec::new(), Vec::new());
        for s in 0..segments as u64 {
            clock.advance(HORIZON_MS as i64 / 8);
            let mut pos = 24;
            let mut seg = Vec::new();
            for b in 0..batches {
                let recs: Vec<Rec> = (0..1 + (b % 2))
                    .map(|i| rec_for(s * 100 + b * 10 + i, 40))
                    .collect();
                pos += frame_len(&recs);
                append(p, &recs);
                want.extend(recs);
                seg.push((pos, want.len()));
            }
            ends.push(seg);
        }
        assert_eq!(p.stats().segments, segments);
        drop(stream);
        let fixture = Fixture {
            _dir: dir,
            root,
            options,
            want,
            ends,
        };
        (fixture, log)
    }

    /// A cleanly closed log.
    fn closed(segments: usize, batches: u64) -> Fixture {
        let (fixture, log) = Fixture::build(segments, batches, SyncPolicy::Always);
        drop(log);
        fixture
    }

    fn partition_dir(&self) -> PathBuf {
        partition_dir(&self.root, STREAM, 0)
    }

    fn segment(&self, i: usize) -> PathBuf {
        segment_files(&self.partition_dir())[i].clone()
    }

    fn open(&self) -> Result<Log> {
        Log::open(&self.root, self.options.clone())
    }

    /// Opens the log and reads everything, checking every record it returns.
    fn check(&self) -> Outcome {
        let log = match self.open() {
            Err(LogError::Corrupt { .. }) => return Outcome::OpenRefused,
            Err(e) => return Outcome::Violation(format!("open failed with {e}")),
            Ok(log) => log,
        };
        let stream = log.stream(STREAM).expect("stream");
        let p = stream.partition(0).expect("partition");
        let truncated = p.stats().truncated_on_open;
        let mut next = p.earliest_offset();
        loop {
            match p.read(next, 4, usize::MAX) {
                Err(LogError::Corrupt { .. }) => return Outcome::ReadRefused,
                Err(e) => return Outcome::Violation(format!("read failed with {e}")),
                Ok(records) if records.is_empty() => break,
                Ok(records) => {
                    for r in records {
                        let ok = r.offset == next
                            && self
                                .want
                                .get(r.offset as usize)
                                .is_some_and(|w| w.matches(&r));
                        if !ok {
                            return Outcome::Violation(format!("wrong record served: {r:?}"));
                        }
                        next += 1;
                    }
                }
            }
        }
        if p.earliest_offset() != 0 || next != self.want.len() as u64 {
            return Outcome::Violation(format!(
                "records {}..{next} served without an error, {} written",
                p.earliest_offset(),
                self.want.len()
            ));
        }
        Outcome::Intact { truncated }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    OpenRefused,
    ReadRefused,
    /// Every record served intact; `truncated` bytes were cut from the tail.
    Intact {
        truncated: u64,
    },
    Violation(String),
}

fn flip_bit(path: &Path, bit: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0];
    file.read_exact_at(&mut b, bit / 8).expect("read");
    b[0] ^= 1 << (bit % 8);
    file.write_all_at(&b, bit / 8).expect("write");
}

#[derive(Debug, Default)]
struct Tally {
    bits: u64,
    open_refused: u64,
    read_refused: u64,
    marker_cut: u64,
    rebuilt: u64,
    violations: Vec<String>,
}

/// Flips every bit of every segment file and index file of a cleanly closed log, one at a
/// time.
#[test]
fn every_flipped_bit_is_detected_and_never_served() {
    let fixture = Fixture::closed(2, 3);
    let pdir = fixture.partition_dir();
    let snapshot = DirSnapshot::take(&pdir);
    let marker_len = 36;
    let mut segments = Tally::default();
    let mut indexes = Tally::default();
    for path in snapshot.paths_ending("") {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let is_segment = name.ends_with(".log");
        let is_last = path == fixture.segment(1);
        let len = snapshot.get(&path).len() as u64;
        let tally = if is_segment {
            &mut segments
        } else {
            &mut indexes
        };
        for bit in 0..len * 8 {
            flip_bit(&path, bit);
            let outcome = fixture.check();
            snapshot.restore();
            tally.bits += 1;
            let in_marker = is_last && bit / 8 >= len - marker_len;
            match outcome {
                Outcome::OpenRefused => tally.open_refused += 1,
                Outcome::ReadRefused => tally.read_refused += 1,
                // Losing the close marker loses no record: it is indistinguishable from a
                // torn write of an empty batch.
                Outcome::Intact { truncated } if in_marker && truncated == marker_len => {
                    tally.marker_cut += 1
                }
                Outcome::Intact { truncated: 0 } if !is_segment => tally.rebuilt += 1,
                other => tally
                    .violations
                    .push(format!("{name} bit {bit}: {other:?}")),
            }
        }
    }
    assert!(
        segments.violations.is_empty() && indexes.violations.is_empty(),
        "undetected damage:\n{}\n{}",
        segments.violations.join("\n"),
        indexes.violations.join("\n")
    );
    assert!(segments.bits > 4000);
    println!(
        "corruption sweep: {} bits flipped in segment files ({} refused at open, {} refused at read, \
         {} cut the close marker with 0 records lost), {} in index files ({} rebuilt, {} refused), \
         0 undetected, 0 corrupt records returned",
        segments.bits,
        segments.open_refused,
        segments.read_refused,
        segments.marker_cut,
        indexes.bits,
        indexes.rebuilt,
        indexes.open_refused + indexes.read_refused,
    );
}

/// The records recovery must return when the last segment keeps only its first `len` bytes
/// intact: those of the sealed segments and of the batches ending by `len`.
fn longest_prefix(fixture: &Fixture, len: u64) -> usize {
    let (last, sealed) = fixture.ends.split_last().expect("segments");
    let base = sealed.last().and_then(|s| s.last()).map_or(0, |e| e.1);
    last.iter()
        .take_while(|e| e.0 <= len)
        .last()
        .map_or(base, |e| e.1)
}

/// A log that was not closed (a copy taken while it ran, as a process crash leaves it), with
/// its last segment cut or zeroed at every byte after the last durable point.
#[test]
fn a_torn_tail_is_cut_to_the_longest_valid_prefix() {
    let mut checked = 0;
    for sync in [SyncPolicy::Never, SyncPolicy::Always] {
        let (fixture, log) = Fixture::build(2, 6, sync);
        let pdir = fixture.partition_dir();
        let crashed = DirSnapshot::take(&pdir);
        drop(log);
        let last = fixture.segment(1);
        let mut bytes = crashed.get(&last).to_vec();
        // With `sync = always` the running segment is zeroed ahead of its batches (the
        // writer's pre-zeroing); cutting inside those zeros is the case of the last length,
        // so the sweep covers the batches and one zeroed tail after them.
        let written = fixture
            .ends
            .last()
            .and_then(|e| e.last())
            .map_or(24, |e| e.0);
        bytes.truncate((written as usize + 64).min(bytes.len()));
        for len in 24..=bytes.len() as u64 {
            for zeroed in [false, true] {
                crashed.restore();
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&last)
                    .expect("open");
                if zeroed {
                    let zeros = vec![0; bytes.len() - len as usize];
                    file.write_all_at(&zeros, len).expect("zero");
                } else {
                    file.set_len(len).expect("truncate");
                }
                drop(file);
                let expected = longest_prefix(&fixture, len);
                let log = fixture.open().expect("a torn tail does not stop the open");
                let stream = log.stream(STREAM).expect("stream");
                let got = read_all(stream.partition(0).expect("p")).expect("read");
                assert_records(&got, &fixture.want[..expected], 0);
                checked += 1;
            }
        }
    }
    println!("torn tail: {checked} cuts and zeroed tails recovered to the longest valid prefix, 0 mismatched");
}

/// Copies every file of `from` into a new storage as a killed process leaves them: all bytes
/// written, and durable except the tail of the last segment after its header.
fn process_crash_copy(from: &MemoryStorage, dir: &Path, last_segment: &Path) -> MemoryStorage {
    fn copy(from: &MemoryStorage, to: &MemoryStorage, dir: &Path, last: &Path) {
        to.create_dir_all(dir).expect("mkdir");
        for name in from.list_dir(dir).expect("list") {
            let path = dir.join(name);
            if from.list_dir(&path).is_ok() {
                copy(from, to, &path, last);
                continue;
            }
            let src = from.open(&path, OpenMode::Existing).expect("open");
            let mut bytes = vec![0; src.len().expect("len") as usize];
            src.read_exact_at(&mut bytes, 0).expect("read");
            let dst = to.open(&path, OpenMode::CreateNew).expect("create");
            let durable = if path == last { 24 } else { bytes.len() };
            dst.write_all_at(&bytes[..durable], 0).expect("write");
            dst.sync_data().expect("sync");
            dst.write_all_at(&bytes[durable..], durable as u64)
                .expect("write");
        }
        to.sync_dir(dir).expect("sync dir");
    }
    let to = MemoryStorage::new();
    copy(from, &to, dir, last_segment);
    to
}

/// Power losses after unsynced writes (`SyncPolicy::Never`), with the unsynced tail torn
/// sector by sector, also after a restart from a process crash: recovery keeps everything
/// synced and a prefix of complete batches of the rest, and never mistakes the torn tail for
/// corruption.
#[test]
fn power_loss_keeps_a_prefix_of_unsynced_batches() -> Result<()> {
    let seeds = 1000;
    let (mut prefixes, mut records) = (0, 0);
    for seed in 0..seeds {
        let (mut options, storage, _) = mem_options();
        options.sync = SyncPolicy::Never;
        let log = open(MEM_ROOT, &options);
        let stream = create(&log, STREAM, config(1, 3_600_000));
        let p = stream.partition(0)?;
        let (mut want, mut bounds) = (Vec::new(), vec![0]);
        for b in 0..40 {
            let recs = vec![rec_for(seed * 1000 + b, 300)];
            append(p, &recs);
            want.extend(recs);
            bounds.push(want.len());
        }
        // Everything before the last roll is durable.
        let segments = p.stats().segments;
        assert!(segments > 1);
        let first_unsynced = last_segment_base(&storage, segments);
        let pdir = partition_dir(Path::new(MEM_ROOT), STREAM, 0);
        let mut survivors = vec![storage.crash(Some(seed))];
        if seed % 2 == 1 {
            // A process crash first: restart, append one more batch, then lose power.
            let last = pdir.join(format!("{first_unsynced:020}.log"));
            let restarted = process_crash_copy(&storage, Path::new(MEM_ROOT), &last);
            let reopened = open(MEM_ROOT, &options_on(&options, restarted.clone()));
            let s = reopened.stream(STREAM)?;
            assert_records(&read_all(s.partition(0)?)?, &want, 0);
            let extra = vec![rec_for(seed * 1000 + 999, 300)];
            append(s.partition(0)?, &extra);
            want.extend(extra);
            bounds.push(want.len());
            survivors = vec![restarted.crash(Some(seed))];
            drop((s, reopened));
        }
        drop((stream, log));
        for crashed in survivors {
            let log = Log::open(MEM_ROOT, options_on(&options, crashed))
                .unwrap_or_else(|e| panic!("seed {seed}: power loss made the log unreadable: {e}"));
            let got = read_all(log.stream(STREAM)?.partition(0)?)?;
            assert!(
                got.len() as u64 >= first_unsynced,
                "seed {seed}: synced records lost"
            );
            assert!(
                bounds.contains(&got.len()),
                "seed {seed}: not a batch boundary"
            );
            assert_records(&got, &want[..got.len()], 0);
            prefixes += 1;
            records += got.len();
        }
    }
    println!("power loss: {seeds} seeded crashes, {prefixes} recoveries to a valid prefix ({records} records checked), 0 lost synced records");
    Ok(())
}

/// The base offset of the last of `segments` segments, from the segment file names.
fn last_segment_base(storage: &MemoryStorage, segments: usize) -> u64 {
    let pdir = partition_dir(Path::new(MEM_ROOT), STREAM, 0);
    let mut bases: Vec<u64> = storage
        .list_dir(&pdir)
        .expect("list")
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort_unstable();
    assert_eq!(bases.len(), segments);
    *bases.last().expect("a segment")
}

fn options_on(options: &LogOptions, storage: MemoryStorage) -> LogOptions {
    LogOptions {
        storage: Arc::new(storage),
        ..options.clone()
    }
}

/// Overwrites bytes of a file.
fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let file = fs::OpenOptions::new().write(true).open(path).expect("open");
    file.write_all_at(bytes, at).expect("write");
}

fn corrupt_reason(fixture: &Fixture) -> String {
    match fixture.open() {
        Err(LogError::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bad_segment_headers_are_refused() {
    let fixture = Fixture::closed(2, 3);
    let snapshot = DirSnapshot::take(&fixture.partition_dir());
    for segment in 0..2 {
        let path = fixture.segment(segment);
        overwrite(&path, 0, b"NOTASEG!");
        assert!(corrupt_reason(&fixture).contains("bad magic"));
        snapshot.restore();
        overwrite(&path, 8, &2u32.to_le_bytes());
        let reason = corrupt_reason(&fixture);
        assert!(reason.contains("version 2"), "{reason}");
        snapshot.restore();
        overwrite(&path, 16, &999u64.to_le_bytes());
        let reason = corrupt_reason(&fixture);
        assert!(reason.contains("base offset 999"), "{reason}");
        snapshot.restore();
    }
    assert_eq!(fixture.check(), Outcome::Intact { truncated: 0 });
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let fixture = Fixture::closed(3, 2);
    let middle = fixture.segment(1);
    for ext in ["log", "index", "timeindex"] {
        fs::remove_file(middle.with_extension(ext)).expect("remove");
    }
    let reason = corrupt_reason(&fixture);
    assert!(reason.contains("a segment is missing"), "{reason}");
}

#[test]
fn a_damaged_sealed_segment_without_index_is_refused_at_open() {
    let fixture = Fixture::closed(2, 3);
    let sealed = fixture.segment(0);
    for ext in ["index", "timeindex"] {
        fs::remove_file(sealed.with_extension(ext)).expect("remove");
    }
    let snapshot = DirSnapshot::take(&fixture.partition_dir());
    // A flipped byte in the middle of the first batch.
    flip_bit(&sealed, 30 * 8);
    let reason = corrupt_reason(&fixture);
    assert!(reason.contains("in a sealed segment"), "{reason}");
    // A sealed segment cut short (the torn tail rule does not apply to it).
    snapshot.restore();
    let len = fs::metadata(&sealed).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&sealed)
        .expect("open")
        .set_len(len - 5)
        .expect("truncate");
    assert!(corrupt_reason(&fixture).contains("in a sealed segment"));
    // Intact again: the index files are rebuilt.
    snapshot.restore();
    assert_eq!(fixture.check(), Outcome::Intact { truncated: 0 });
    assert!(sealed.with_extension("index").exists());
}

#[test]
fn a_sealed_segment_cut_short_is_refused_even_with_its_index() {
    let fixture = Fixture::closed(2, 3);
    let sealed = fixture.segment(0);
    let len = fs::metadata(&sealed).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&sealed)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    assert_eq!(fixture.check(), Outcome::OpenRefused);
}

/// Flips every bit of a log that was not closed (a copy taken while it ran, as a crash
/// leaves it, with `sync = always`): damage to any acknowledged batch, the last round's
/// included, is refused, never cut as if it were a torn write; damage past the last batch
/// (the durability marker, space zeroed ahead) loses no record.
#[test]
fn every_flipped_bit_of_an_unclean_log_is_detected() {
    let (fixture, log) = Fixture::build(2, 3, SyncPolicy::Always);
    let pdir = fixture.partition_dir();
    let crashed = DirSnapshot::take(&pdir);
    drop(log);
    crashed.restore();
    let last = fixture.segment(1);
    let written = fixture
        .ends
        .last()
        .and_then(|e| e.last())
        .map_or(24, |e| e.0);
    let mut tally = Tally::default();
    let mut beyond = 0;
    for path in crashed.paths_ending(".log") {
        let len = crashed.get(&path).len() as u64;
        // The last segment: its batches, the durability marker and some of the zeros after.
        let end = if path == last {
            (written + 36 + 16).min(len)
        } else {
            len
        };
        for bit in 0..end * 8 {
            flip_bit(&path, bit);
            let outcome = fixture.check();
            crashed.restore();
            tally.bits += 1;
            let acknowledged = path != last || bit / 8 < written;
            match outcome {
                Outcome::OpenRefused => tally.open_refused += 1,
                Outcome::ReadRefused => tally.read_refused += 1,
                Outcome::Intact { .. } if !acknowledged => beyond += 1,
                other => tally.violations.push(format!(
                    "{} bit {bit}: {other:?}",
                    path.file_name().expect("name").to_string_lossy()
                )),
            }
        }
    }
    assert!(
        tally.violations.is_empty(),
        "acknowledged records lost or damage served:\n{}",
        tally.violations.join("\n")
    );
    println!(
        "unclean corruption sweep: {} bits flipped in the segments of a crashed log ({} refused at \
         open, {} refused at read, {} past the last batch with 0 records lost), 0 undetected",
        tally.bits, tally.open_refused, tally.read_refused, beyond
    );
}
