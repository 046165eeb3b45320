//! Behaviour of partitions, streams and checkpoints through the public API: round trips over
//! many segments, read limits, time lookups, retention, reopening, sync policies, the lock,
//! fail-stop after a failed fsync, checkpoints and refusal of bad input.

mod common;

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cloudstream_log::storage::{Fault, OpenMode, StorageFile};
use cloudstream_log::{
    AppendResult, Log, LogError, LogOptions, ManualClock, MemoryStorage, Partition, Result,
    Storage, SyncPolicy, MAX_HORIZON, MAX_PARTITIONS,
};
use common::*;
use tempfile::TempDir;

const HOUR: u64 = 3_600_000;

/// A place to run a log: in memory or in a temporary directory.
struct Env {
    name: &'static str,
    root: PathBuf,
    options: LogOptions,
    clock: Arc<ManualClock>,
    _dir: Option<TempDir>,
}

impl Env {
    fn memory() -> Env {
        let (options, _, clock) = mem_options();
        Env {
            name: "memory",
            root: PathBuf::from(MEM_ROOT),
            options,
            clock,
            _dir: None,
        }
    }

    fn file() -> Env {
        let dir = tempdir();
        let clock = Arc::new(ManualClock::new(T0));
        Env {
            name: "file",
            root: dir.path().join("data"),
            options: options(Arc::new(cloudstream_log::FileStorage), clock.clone()),
            clock,
            _dir: Some(dir),
        }
    }

    fn all() -> [Env; 2] {
        [Env::memory(), Env::file()]
    }

    fn open(&self) -> Log {
        open(&self.root, &self.options)
    }
}

/// `n` deterministic records for batch `b`.
fn batch_recs(b: u64, n: usize, max_value: usize) -> Vec<Rec> {
    (0..n as u64)
        .map(|i| rec_for(b * 1000 + i, max_value))
        .collect()
}

#[test]
fn round_trips_across_many_segments() -> Result<()> {
    for env in Env::all() {
        let log = env.open();
        let stream = create(&log, "rt", config(1, HOUR));
        let p = stream.partition(0)?;
        let mut want = Vec::new();
        for b in 0..200 {
            let recs = batch_recs(b, 1 + (mix(b) % 5) as usize, 300);
            append(p, &recs);
            want.extend(recs);
        }
        let stats = p.stats();
        assert!(stats.segments >= 10, "{}: {stats:?}", env.name);
        assert_eq!(stats.next_offset, want.len() as u64);
        assert_records(&read_all(p)?, &want, 0);
        for chunk in [1, 3, 64] {
            assert_records(&read_from(p, 0, chunk)?, &want, 0);
        }
        // Every start: mid-batch, mid-segment, at segment boundaries.
        for from in 0..=want.len() {
            let got = p.read(from as u64, 5, usize::MAX)?;
            let end = (from + 5).min(want.len());
            assert_records(&got, &want[..end], from as u64);
        }
    }
    Ok(())
}

#[test]
fn read_limits_return_at_least_one_record() -> Result<()> {
    let env = Env::memory();
    let log = env.open();
    let stream = create(&log, "limits", config(1, HOUR));
    let p = stream.partition(0)?;
    let mut want = Vec::new();
    for b in 0..60 {
        let recs = batch_recs(b, 1 + (mix(b) % 4) as usize, 500);
        append(p, &recs);
        want.extend(recs);
    }
    assert!(p.stats().segments > 3);
    // Limits of zero still return one record.
    assert_eq!(p.read(0, 0, usize::MAX)?.len(), 1);
    assert_eq!(p.read(0, usize::MAX, 0)?.len(), 1);
    assert_eq!(p.read(7, 0, 0)?[0].offset, 7);
    let mut checked = 0;
    for from in 0..want.len() {
        for max_records in [0, 1, 2, 7, 1000] {
            for max_bytes in [0, 1, 100, 500, 1500, 4000, usize::MAX] {
                let got = p.read(from as u64, max_records, max_bytes)?;
                let end = expected_read_end(&want, from, max_records, max_bytes);
                assert!(!got.is_empty());
                assert_records(&got, &want[..end], from as u64);
                checked += 1;
            }
        }
    }
    println!("read limits: {checked} reads checked");
    Ok(())
}

#[test]
fn beyond_the_end_is_an_error_and_the_end_is_empty() -> Result<()> {
    let env = Env::memory();
    let log = env.open();
    let stream = create(&log, "end", config(1, HOUR));
    let p = stream.partition(0)?;
    assert!(p.read(0, 10, usize::MAX)?.is_empty());
    assert!(matches!(
        p.read(1, 10, usize::MAX),
        Err(LogError::BeyondEnd {
            requested: 1,
            next: 0
        })
    ));
    append(p, &batch_recs(1, 3, 10));
    assert!(p.read(3, 10, usize::MAX)?.is_empty());
    for requested in [4, 100, u64::MAX] {
        match p.read(requested, 10, usize::MAX) {
            Err(LogError::BeyondEnd { requested: r, next }) => {
                assert_eq!((r, next), (requested, 3));
            }
            other => panic!("read({requested}) gave {other:?}"),
        }
    }
    Ok(())
}

/// Appends 1–3 records per batch, moving the clock by 0–2 ms before each; returns the records
/// and the append time of each.
fn append_timed(p: &Partition, clock: &ManualClock, batches: u64) -> (Vec<Rec>, Vec<i64>) {
    let (mut want, mut times) = (Vec::new(), Vec::new());
    for b in 0..batches {
        clock.advance((b % 3) as i64);
        let recs = batch_recs(b, 1 + (b % 3) as usize, 200);
        let ack = p.append_blocking(encode(&recs)).expect("append");
        assert_eq!(
            ack.append_time_ms,
            T0 + (0..=b).map(|x| (x % 3) as i64).sum::<i64>()
        );
        times.extend(std::iter::repeat_n(ack.append_time_ms, recs.len()));
        want.extend(recs);
    }
    (want, times)
}

fn check_offset_for_time(p: &Partition, times: &[i64]) -> Result<()> {
    let last = *times.last().expect("records");
    for t in T0 - 5..=last + 5 {
        let expected = times.iter().position(|&x| x >= t).unwrap_or(times.len()) as u64;
        assert_eq!(p.offset_for_time(t)?, expected, "offset_for_time({t})");
    }
    Ok(())
}

#[test]
fn offset_for_time_finds_the_first_record_at_or_after() -> Result<()> {
    for env in Env::all() {
        let mut log = env.open();
        let stream = create(&log, "times", config(1, HOUR));
        let (want, times) = append_timed(stream.partition(0)?, &env.clock, 120);
        assert!(stream.partition(0)?.stats().segments > 3);
        check_offset_for_time(stream.partition(0)?, &times)?;
        log.close()?;
        drop(log);
        // Sealed segments now answer from their index files.
        let log = env.open();
        let p = log.stream("times")?;
        check_offset_for_time(p.partition(0)?, &times)?;
        assert_records(&read_all(p.partition(0)?)?, &want, 0);
    }
    Ok(())
}

#[test]
fn retention_deletes_whole_expired_segments_and_never_reuses_offsets() -> Result<()> {
    const HORIZON: i64 = 1000;
    const MAX_AGE: i64 = HORIZON / 8;
    for env in Env::all() {
        let log = env.open();
        let stream = create(&log, "ret", config(1, HORIZON as u64));
        let p = stream.partition(0)?;
        let (mut want, mut times) = (Vec::new(), Vec::new());
        for b in 0..100 {
            env.clock.advance(20);
            let recs = batch_recs(b, 1, 100);
            let ack = p.append_blocking(encode(&recs))?;
            times.push(ack.append_time_ms);
            want.extend(recs);
        }
        let segments = p.stats().segments;
        assert!(segments > 5, "{}: age rolls segments", env.name);

        let now = T0 + 2000;
        assert_eq!(p.enforce_retention(Duration::from_millis(HOUR))?, 0);
        let cutoff = now - HORIZON;
        let deleted = stream.enforce_retention()?;
        assert!(deleted > 0);
        assert_eq!(p.stats().segments, segments - deleted);
        let earliest = p.earliest_offset();
        assert!(earliest > 0);
        let first_young = times.iter().position(|&t| t >= cutoff).expect("young") as u64;
        assert!(
            earliest <= first_young,
            "a record younger than the horizon was deleted"
        );
        assert!(
            times[earliest as usize] > cutoff - MAX_AGE - 20,
            "more than a segment of expired records kept"
        );
        assert!(matches!(
            p.read(earliest - 1, 10, usize::MAX),
            Err(LogError::Expired { requested, earliest: e }) if requested == earliest - 1 && e == earliest
        ));
        assert!(matches!(
            p.read(0, 10, usize::MAX),
            Err(LogError::Expired { .. })
        ));
        assert_records(&read_all(p)?, &want, earliest);
        assert_eq!(p.offset_for_time(0)?, earliest);
        assert_eq!(stream.enforce_retention()?, 0, "retention is idempotent");

        // Everything expires: the active segment is rolled and deleted too.
        env.clock.advance(10 * HORIZON);
        assert!(stream.enforce_retention()? > 0);
        let end = want.len() as u64;
        let stats = p.stats();
        assert_eq!((stats.earliest_offset, stats.next_offset), (end, end));
        assert_eq!(stats.segments, 1);
        assert!(p.read(end, 10, usize::MAX)?.is_empty());
        assert!(matches!(
            p.read(end - 1, 10, usize::MAX),
            Err(LogError::Expired { earliest, .. }) if earliest == end
        ));
        assert_eq!(p.offset_for_time(0)?, end);
        drop((stream, log));

        // Offsets go on after a reopen with every segment expired, even with a batch that
        // fills a whole segment.
        let log = env.open();
        let stream = log.stream("ret")?;
        let p = stream.partition(0)?;
        assert_eq!((p.earliest_offset(), p.next_offset()), (end, end));
        let big = vec![Rec::value(&bytes_for(7, 4050))];
        assert_eq!(append(p, &big), end, "offsets are never reused");
        want.extend(big.clone());
        assert_records(&read_all(p)?, &want, end);
        env.clock.advance(10 * HORIZON);
        assert_eq!(stream.enforce_retention()?, 1);
        assert_eq!(p.earliest_offset(), end + 1);
        drop((stream, log));
        let log = env.open();
        let p = log.stream("ret")?;
        assert_eq!(p.partition(0)?.earliest_offset(), end + 1);
        assert_eq!(append(p.partition(0)?, &big), end + 1);
    }
    Ok(())
}

#[test]
fn reopen_after_clean_close_keeps_everything() -> Result<()> {
    for env in Env::all() {
        let mut want: [Vec<Rec>; 2] = Default::default();
        for round in 0..4u64 {
            let mut log = env.open();
            let stream = match round {
                0 => create(&log, "keep", config(2, HOUR)),
                _ => log.stream("keep")?,
            };
            for (i, want) in want.iter_mut().enumerate() {
                let p = stream.partition(i as u32)?;
                assert_eq!(p.stats().truncated_on_open, 0);
                assert_records(&read_all(p)?, want, 0);
                for b in 0..40 {
                    let recs = batch_recs(round * 100 + b, 1 + (b % 4) as usize, 250);
                    append(p, &recs);
                    want.extend(recs);
                }
                assert_records(&read_all(p)?, want, 0);
            }
            log.close()?;
        }
        let log = env.open();
        let p = log.stream("keep")?;
        assert!(p.partition(0)?.stats().segments > 5);
        for (i, want) in want.iter().enumerate() {
            assert_records(&read_all(p.partition(i as u32)?)?, want, 0);
        }
    }
    Ok(())
}

#[test]
fn every_sync_policy_keeps_acknowledged_records() -> Result<()> {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Interval(Duration::from_millis(1)),
        SyncPolicy::Never,
    ] {
        for mut env in Env::all() {
            env.options.sync = policy;
            let log = env.open();
            let stream = create(&log, "sync", config(1, HOUR));
            let p = stream.partition(0)?;
            let mut want = Vec::new();
            for b in 0..5 {
                let recs = batch_recs(b, 2, 50);
                append(p, &recs);
                want.extend(recs);
            }
            match policy {
                SyncPolicy::Always => assert!(p.stats().syncs >= 1),
                SyncPolicy::Never => assert_eq!(p.stats().syncs, 0),
                SyncPolicy::Interval(_) => {
                    // The background sync comes without any further append.
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while p.stats().syncs == 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    assert!(p.stats().syncs >= 1, "interval sync never ran");
                }
            }
            assert_records(&read_all(p)?, &want, 0);
            drop((stream, log));
            let log = env.open();
            let p = log.stream("sync")?;
            assert_records(&read_all(p.partition(0)?)?, &want, 0);
        }
    }
    Ok(())
}

#[test]
fn always_sync_survives_power_loss_without_close() -> Result<()> {
    let (options, storage, _) = mem_options();
    let log = open(MEM_ROOT, &options);
    let stream = create(&log, "power", config(1, HOUR));
    let mut want = Vec::new();
    for b in 0..80 {
        let recs = batch_recs(b, 2, 200);
        append(stream.partition(0)?, &recs);
        want.extend(recs);
    }
    for seed in 0..20 {
        let crashed = storage.crash(Some(seed));
        let log = open(MEM_ROOT, &options_on(&options, crashed));
        assert_records(&read_all(log.stream("power")?.partition(0)?)?, &want, 0);
    }
    Ok(())
}

/// Pre-zeroing (the writer's module docs): under small rounds with `sync = always` the active
/// segment file is zeroed ahead of its records. A process that dies leaves the zeros, which
/// recovery cuts without losing a record or calling them a torn tail; a roll and a clean
/// close leave every segment file exactly as long as its batches.
#[test]
fn zeros_written_ahead_are_cut_by_recovery_roll_and_close() -> Result<()> {
    let dir = tempdir();
    let root = dir.path().join("data");
    let mut options = options(
        Arc::new(cloudstream_log::FileStorage),
        Arc::new(ManualClock::new(T0)),
    );
    options.segment_bytes = 64 * 1024;
    let pdir = partition_dir(&root, "zeroed", 0);
    let file_bytes = |pdir: &Path| -> Vec<u64> {
        segment_files(pdir)
            .iter()
            .map(|f| std::fs::metadata(f).expect("segment metadata").len())
            .collect()
    };
    let mut want = Vec::new();
    let log = open(&root, &options);
    let stream = create(&log, "zeroed", config(1, HOUR));
    let p = stream.partition(0)?;
    for i in 0..600 {
        let recs = vec![rec_for(i, 200)];
        append(p, &recs);
        want.extend(recs);
    }
    let lens = file_bytes(&pdir);
    assert!(lens.len() > 1, "the test needs a roll: {lens:?}");
    let held = p.stats().bytes;
    let sealed: u64 = lens[..lens.len() - 1].iter().sum();
    let active = *lens.last().expect("an active segment");
    assert!(
        active > held - sealed,
        "the active segment is zeroed ahead: file {active} bytes, records {}",
        held - sealed
    );

    let crashed = DirSnapshot::take(&root);
    drop((stream, log));

    // Closed cleanly: every file is exactly its batches (and the close marker).
    let log = open(&root, &options);
    let closed = log.stream("zeroed")?;
    let p = closed.partition(0)?;
    assert_records(&read_all(p)?, &want, 0);
    assert_eq!(file_bytes(&pdir).iter().sum::<u64>(), p.stats().bytes);
    drop((closed, log));

    // Had the process died instead: its files as they were, zeros included.
    crashed.restore();
    let log = open(&root, &options);
    let recovered = log.stream("zeroed")?;
    let p = recovered.partition(0)?;
    assert_records(&read_all(p)?, &want, 0);
    assert_eq!(p.stats().truncated_on_open, 0, "zeros are no torn tail");
    assert_eq!(file_bytes(&pdir).iter().sum::<u64>(), p.stats().bytes);
    Ok(())
}

fn options_on(options: &LogOptions, storage: MemoryStorage) -> LogOptions {
    LogOptions {
        storage: Arc::new(storage),
        ..options.clone()
    }
}

#[test]
fn listener_sees_every_new_end() -> Result<()> {
    let env = Env::memory();
    let log = env.open();
    let stream = create(&log, "listen", config(1, HOUR));
    let p = stream.partition(0)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    p.set_listener(Some(Arc::new(move |end| {
        s.lock().expect("lock").push(end);
    })));
    let mut ends = Vec::new();
    for b in 0..5 {
        append(p, &batch_recs(b, 1 + b as usize, 10));
        ends.push(p.next_offset());
    }
    assert_eq!(*seen.lock().expect("lock"), ends);
    p.set_listener(None);
    append(p, &batch_recs(9, 1, 10));
    assert_eq!(seen.lock().expect("lock").len(), 5);
    Ok(())
}

#[test]
fn a_second_open_of_the_same_directory_is_locked() -> Result<()> {
    for env in Env::all() {
        let log = env.open();
        match Log::open(&env.root, env.options.clone()) {
            Err(LogError::Locked { path }) => assert!(path.ends_with("LOCK")),
            other => panic!("{}: second open gave {other:?}", env.name),
        }
        drop(log);
        env.open();
    }
    Ok(())
}

#[test]
fn a_failed_fsync_stops_the_partition_until_reopened() -> Result<()> {
    let (options, storage, _) = mem_options();
    let log = open(MEM_ROOT, &options);
    let stream = create(&log, "failstop", config(1, HOUR));
    let p = stream.partition(0)?;
    let acked = batch_recs(1, 3, 20);
    append(p, &acked);
    storage.inject(Fault::Sync, true);
    assert!(matches!(
        p.append_blocking(encode(&batch_recs(2, 1, 20))),
        Err(LogError::Poisoned(_))
    ));
    assert!(p.poisoned().is_some());
    storage.inject(Fault::Sync, false);
    for b in 3..6 {
        assert!(matches!(
            p.append_blocking(encode(&batch_recs(b, 1, 20))),
            Err(LogError::Poisoned(_))
        ));
    }
    assert!(matches!(
        p.enforce_retention(Duration::from_secs(1)),
        Err(LogError::Poisoned(_))
    ));
    // What was acknowledged is still readable, and nothing else is.
    assert_records(&read_all(p)?, &acked, 0);
    drop((stream, log));

    let log = open(MEM_ROOT, &options);
    let p = log.stream("failstop")?;
    let p = p.partition(0)?;
    assert!(p.poisoned().is_none());
    let got = read_all(p)?;
    assert_records(&got[..3], &acked, 0);
    let base = p.next_offset();
    let more = batch_recs(7, 2, 20);
    assert_eq!(append(p, &more), base);
    Ok(())
}

/// A [`MemoryStorage`] whose next `n` fdatasyncs fail when armed.
#[derive(Debug, Clone, Default)]
struct FlakyStorage {
    inner: MemoryStorage,
    fail_next: Arc<AtomicU32>,
}

#[derive(Debug)]
struct FlakyFile {
    inner: Box<dyn StorageFile>,
    fail_next: Arc<AtomicU32>,
}

impl StorageFile for FlakyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        let take = |n: u32| n.checked_sub(1);
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
        {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Storage for FlakyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FlakyFile {
            inner: self.inner.open(path, mode)?,
            fail_next: self.fail_next.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }
}

fn append_async(p: &Partition, recs: &[Rec]) -> mpsc::Receiver<Result<AppendResult>> {
    let (tx, rx) = mpsc::channel();
    p.append(
        encode(recs),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx
}

/// Appends queued in one group-commit round with a segment roll whose fsync fails: a later
/// fsync that succeeds must not acknowledge anything (the failed one may have lost their
/// pages).
#[test]
fn no_acknowledgement_in_a_round_after_a_failed_fsync() -> Result<()> {
    let storage = FlakyStorage::default();
    let clock = Arc::new(ManualClock::new(T0));
    let log = open(MEM_ROOT, &options(Arc::new(storage.clone()), clock));
    let stream = create(&log, "round", config(1, HOUR));
    let p = stream.partition(0)?;
    append(p, &[Rec::value(&[1; 100])]);

    // Hold the writer inside the publication of batch C, queue A then B (which rolls the
    // segment), then fail the next fsync: the roll's.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let armed = AtomicBool::new(true);
    p.set_listener(Some(Arc::new(move |_| {
        if armed.swap(false, Ordering::SeqCst) {
            let _ = entered_tx.send(());
            let _ = gate_rx.lock().expect("lock").recv();
        }
    })));
    let c = append_async(p, &[Rec::value(&[2; 100])]);
    entered_rx.recv().expect("writer publishes C");
    let a = append_async(p, &[Rec::value(&[3; 100])]);
    let b = append_async(p, &[Rec::value(&[4; 4000])]);
    storage.fail_next.store(1, Ordering::SeqCst);
    gate_tx.send(()).expect("release writer");

    assert!(c.recv().expect("C done").is_ok());
    let a = a.recv().expect("A done");
    let b = b.recv().expect("B done");
    assert!(b.is_err(), "B: {b:?}");
    assert!(
        matches!(a, Err(LogError::Poisoned(_))),
        "A was acknowledged after a failed fsync: {a:?}"
    );
    assert!(p.poisoned().is_some());
    assert_eq!(p.next_offset(), 2, "unacknowledged records are not visible");
    Ok(())
}

#[test]
fn checkpoints_commit_load_list_delete_and_survive_reopen() -> Result<()> {
    for env in Env::all() {
        {
            let log = env.open();
            let stream = create(&log, "ck", config(2, HOUR));
            let ck = stream.checkpoints();
            assert_eq!(ck.load("c1")?, None);
            assert!(ck.list().is_empty());
            let first = ck.commit("c1", &[(0, 5)])?;
            assert_eq!(first.offsets.get(&0), Some(&5));
            assert_eq!(first.updated_ms, T0);
            env.clock.advance(10);
            let merged = ck.commit("c1", &[(1, 7)])?;
            assert_eq!(
                merged.offsets.into_iter().collect::<Vec<_>>(),
                [(0, 5), (1, 7)]
            );
            assert_eq!(merged.updated_ms, T0 + 10);
            ck.commit("c1", &[(0, 6)])?;
            ck.commit("c2", &[(0, 1)])?;
            ck.commit("c3", &[(1, 2)])?;
            assert!(ck.delete("c3")?);
            assert!(!ck.delete("c3")?);
            let names: Vec<String> = ck.list().into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, ["c1", "c2"]);
            let too_long = "c".repeat(129);
            for bad in ["", ".", "..", "a/b", "../x", "a\0b", "é", too_long.as_str()] {
                for r in [
                    ck.load(bad).map(drop),
                    ck.commit(bad, &[(0, 1)]).map(drop),
                    ck.delete(bad).map(drop),
                ] {
                    assert!(
                        matches!(
                            r,
                            Err(LogError::InvalidName {
                                kind: "consumer",
                                ..
                            })
                        ),
                        "{bad:?}: {r:?}"
                    );
                }
            }
        }
        let log = env.open();
        let stream = log.stream("ck")?;
        let ck = stream.checkpoints();
        let c1 = ck.load("c1")?.expect("c1 survives");
        assert_eq!(c1.offsets.into_iter().collect::<Vec<_>>(), [(0, 6), (1, 7)]);
        assert_eq!(ck.load("c2")?.map(|c| c.offsets[&0]), Some(1));
        assert_eq!(ck.load("c3")?, None);
        assert_eq!(ck.list().len(), 2);
    }
    Ok(())
}

#[test]
fn bad_input_gets_typed_errors() -> Result<()> {
    for env in Env::all() {
        let log = env.open();
        let too_long = "s".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            "/",
            "a/b",
            "../x",
            "a\0b",
            "é",
            "a b",
            too_long.as_str(),
        ] {
            for r in [
                log.create_stream(bad, config(1, HOUR)).map(drop),
                log.stream(bad).map(drop),
                log.delete_stream(bad),
            ] {
                assert!(
                    matches!(r, Err(LogError::InvalidName { kind: "stream", .. })),
                    "{bad:?}: {r:?}"
                );
            }
        }
        assert!(log.list_streams().is_empty());
        if env.name == "file" {
            let entries = std::fs::read_dir(env.root.join("streams")).expect("streams dir");
            assert_eq!(entries.count(), 0, "nothing created for a bad name");
        }
        create(&log, &"s".repeat(128), config(1, HOUR));
        assert!(matches!(log.stream("nope"), Err(LogError::StreamNotFound(n)) if n == "nope"));
        assert!(matches!(
            log.delete_stream("nope"),
            Err(LogError::StreamNotFound(_))
        ));
        for partitions in [0, MAX_PARTITIONS + 1, u32::MAX] {
            assert!(matches!(
                log.create_stream("p", config(partitions, HOUR)),
                Err(LogError::InvalidConfig(_))
            ));
        }
        for horizon in [Duration::ZERO, MAX_HORIZON + Duration::from_secs(1)] {
            let config = cloudstream_log::StreamConfig {
                partitions: 1,
                horizon,
            };
            assert!(matches!(
                log.create_stream("h", config),
                Err(LogError::InvalidConfig(_))
            ));
        }
        let stream = create(&log, "dup", config(1, HOUR));
        assert!(matches!(
            log.create_stream("dup", config(2, HOUR)),
            Err(LogError::StreamExists(n)) if n == "dup"
        ));
        assert!(matches!(
            stream.partition(1),
            Err(LogError::PartitionNotFound {
                partition: 1,
                count: 1
            })
        ));

        // Delete, then create again under the same name: a new, empty stream.
        append(stream.partition(0)?, &batch_recs(1, 3, 10));
        stream.checkpoints().commit("c", &[(0, 3)])?;
        log.delete_stream("dup")?;
        assert!(matches!(
            log.stream("dup"),
            Err(LogError::StreamNotFound(_))
        ));
        assert!(matches!(
            stream
                .partition(0)?
                .append_blocking(encode(&batch_recs(2, 1, 10))),
            Err(LogError::Closed)
        ));
        let again = create(&log, "dup", config(2, HOUR));
        assert_eq!(again.partition(0)?.next_offset(), 0);
        assert!(again.checkpoints().list().is_empty());
        append(again.partition(1)?, &batch_recs(3, 1, 10));
        drop((stream, again, log));

        let log = env.open();
        assert_eq!(log.list_streams(), ["dup".to_owned(), "s".repeat(128)]);
        let again = log.stream("dup")?;
        assert_eq!(again.config().partitions, 2);
        assert_eq!(again.partition(0)?.next_offset(), 0);
        assert_eq!(again.partition(1)?.next_offset(), 1);
        drop(log);

        let mut small = env.options.clone();
        small.segment_bytes = 100;
        assert!(matches!(
            Log::open(&env.root, small),
            Err(LogError::InvalidConfig(_))
        ));
    }
    Ok(())
}
