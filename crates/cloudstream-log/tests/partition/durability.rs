//! Retention, reopening, sync policies, power loss, pre-zeroed tails and the directory lock.

use super::*;

#[test]
fn retention_deletes_whole_expired_segments_and_never_reuses_offsets() -> Result<()> {
    const HORIZON: i64 = 8000;
    const MAX_AGE: i64 = HORIZON / 8;
    for env in Env::all() {
        let log = env.open();
        let stream = create(&log, "ret", config(1, HORIZON as u64));
        let p = stream.partition(0)?;
        let (mut want, mut times) = (Vec::new(), Vec::new());
        for b in 0..100 {
            env.clock.advance(160);
            let recs = batch_recs(b, 1, 100);
            let ack = p.append_blocking(encode(&recs))?;
            times.push(ack.append_time_ms);
            want.extend(recs);
        }
        let segments = p.stats().segments;
        assert!(segments > 5, "{}: age rolls segments", env.name);

        let now = T0 + 16_000;
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
            times[earliest as usize] > cutoff - MAX_AGE - 160,
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

/// An append of no record is refused by the engine itself: it would be an fsynced frame
/// that holds nothing and takes no offset, and a segment of only such frames never rolls.
#[test]
fn an_empty_append_is_refused() -> Result<()> {
    let env = Env::memory();
    let log = env.open();
    let stream = create(&log, "empty", config(1, 1000));
    let p = stream.partition(0)?;
    let before = p.stats();
    let refused = p.append_blocking(encode(&[]));
    assert!(
        matches!(refused, Err(LogError::InvalidConfig(ref m)) if m.contains("at least one record")),
        "{refused:?}"
    );
    assert_eq!(p.stats(), before, "nothing was written");
    append(p, &batch_recs(0, 1, 10));
    assert_eq!(p.next_offset(), 1);
    Ok(())
}

/// A partition holds one open file however many segments it keeps (sealed ones are opened
/// per read), and a tiny horizon rolls at most once a second: single sends under a 1 ms
/// horizon used to take a file and a descriptor each until retention ran.
#[test]
fn segments_hold_no_descriptor_once_sealed_and_roll_at_most_once_a_second() -> Result<()> {
    let storage = HookedStorage::default();
    let clock = Arc::new(ManualClock::new(T0));
    let log = open(MEM_ROOT, &options(Arc::new(storage.clone()), clock.clone()));
    let stream = create(&log, "fds", config(1, 8000));
    let p = stream.partition(0)?;
    let baseline = storage.open.load(Ordering::SeqCst);
    let mut want = Vec::new();
    for b in 0..50 {
        clock.advance(1000);
        let recs = batch_recs(b, 1, 100);
        append(p, &recs);
        want.extend(recs);
    }
    assert_eq!(p.stats().segments, 50, "one segment per second of age");
    assert_eq!(
        storage.open.load(Ordering::SeqCst),
        baseline,
        "sealed segments keep no file open"
    );
    assert_records(&read_all(p)?, &want, 0);
    assert_eq!(storage.open.load(Ordering::SeqCst), baseline, "reads close");

    let tiny = create(&log, "tiny", config(1, 1));
    let p = tiny.partition(0)?;
    for b in 0..40 {
        clock.advance(20);
        append(p, &batch_recs(b, 1, 10));
    }
    assert_eq!(
        p.stats().segments,
        1,
        "800 ms of sends under a 1 ms horizon"
    );
    Ok(())
}
