//! Injected I/O failures (the failpoints of RELIABILITY.md, through `MemoryStorage`): a failed
//! write, fsync, segment creation or directory sync stops the partition, and no append is
//! acknowledged after it; a failed checkpoint write keeps the old checkpoint; a failed
//! retention delete is reported and retried. After each, a power loss and a reopen find every
//! acknowledged record and nothing else.

mod common;

use std::sync::Arc;

use cloudstream_log::storage::Fault;
use cloudstream_log::{Log, LogError, Result};
use common::*;

const STREAM: &str = "faults";
const HOUR: u64 = 3_600_000;

fn options_on(
    options: &cloudstream_log::LogOptions,
    storage: cloudstream_log::MemoryStorage,
) -> cloudstream_log::LogOptions {
    cloudstream_log::LogOptions {
        storage: Arc::new(storage),
        ..options.clone()
    }
}

#[test]
fn no_append_is_acknowledged_after_an_io_failure() -> Result<()> {
    let mut checked = 0;
    for fault in [Fault::Write, Fault::Sync, Fault::Create, Fault::SyncDir] {
        let (options, storage, _) = mem_options();
        let log = open(MEM_ROOT, &options);
        let stream = create(&log, STREAM, config(1, HOUR));
        let p = stream.partition(0)?;
        let mut acked = Vec::new();
        for b in 0..5 {
            let recs = vec![rec_for(b, 200)];
            append(p, &recs);
            acked.extend(recs);
        }
        storage.inject(fault, true);
        // Creation and directory sync fail only when a segment rolls: write until one does.
        let mut failed_at = None;
        for b in 5..200 {
            match p.append_blocking(encode(&[rec_for(b, 200)])) {
                Ok(_) => acked.push(rec_for(b, 200)),
                Err(e) => {
                    failed_at = Some((b, e));
                    break;
                }
            }
        }
        let (b, first) = failed_at.unwrap_or_else(|| panic!("{fault:?}: no append failed"));
        assert!(
            matches!(first, LogError::Poisoned(_) | LogError::Io { .. }),
            "{fault:?}: {first}"
        );
        storage.inject(fault, false);
        for later in b + 1..b + 4 {
            let err = p
                .append_blocking(encode(&[rec_for(later, 200)]))
                .expect_err("acknowledged after a failure");
            assert!(matches!(err, LogError::Poisoned(_)), "{fault:?}: {err}");
        }
        assert!(p.poisoned().is_some());
        drop((stream, log));
        let log = Log::open(MEM_ROOT, options_on(&options, storage.crash(None)))?;
        let got = read_all(log.stream(STREAM)?.partition(0)?)?;
        assert_records(&got, &acked, 0);
        checked += acked.len();
    }
    println!("fault injection: 4 kinds of write-path failure, {checked} acknowledged records found after power loss, 0 acknowledged after a failure");
    Ok(())
}

#[test]
fn a_failed_checkpoint_write_keeps_the_old_checkpoint() -> Result<()> {
    for fault in [
        Fault::Write,
        Fault::Sync,
        Fault::Create,
        Fault::Rename,
        Fault::SyncDir,
    ] {
        let (options, storage, _) = mem_options();
        let log = open(MEM_ROOT, &options);
        let stream = create(&log, STREAM, config(2, HOUR));
        stream.checkpoints().commit("reader", &[(0, 5), (1, 7)])?;
        storage.inject(fault, true);
        assert!(
            stream.checkpoints().commit("reader", &[(0, 9)]).is_err(),
            "{fault:?}"
        );
        storage.inject(fault, false);
        let now = stream.checkpoints().load("reader")?.expect("checkpoint");
        assert_eq!(
            now.offsets.get(&0),
            Some(&5),
            "{fault:?}: a failed commit changed the checkpoint"
        );
        drop((stream, log));
        let log = Log::open(MEM_ROOT, options_on(&options, storage.crash(None)))?;
        let after = log
            .stream(STREAM)?
            .checkpoints()
            .load("reader")?
            .expect("checkpoint");
        assert_eq!(after.offsets.get(&0), Some(&5), "{fault:?}");
        assert_eq!(after.offsets.get(&1), Some(&7), "{fault:?}");
    }
    Ok(())
}

#[test]
fn a_failed_retention_delete_is_reported_and_retried() -> Result<()> {
    let (options, storage, clock) = mem_options();
    let log = open(MEM_ROOT, &options);
    let stream = create(&log, STREAM, config(1, 1_000));
    let p = stream.partition(0)?;
    let mut all = Vec::new();
    for b in 0..60 {
        let recs = vec![rec_for(b, 1000)];
        append(p, &recs);
        all.extend(recs);
    }
    let segments = p.stats().segments;
    assert!(segments > 3);
    clock.advance(10_000);
    let fresh = vec![rec_for(1000, 200)];
    append(p, &fresh);
    all.extend(fresh);
    storage.inject(Fault::Remove, true);
    let err = stream
        .enforce_retention()
        .expect_err("delete failure reported");
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    assert!(
        p.poisoned().is_none(),
        "a failed delete does not stop writes"
    );
    let earliest = p.earliest_offset();
    assert_records(&read_all(p)?, &all[earliest as usize..], earliest);
    storage.inject(Fault::Remove, false);
    let deleted = stream.enforce_retention()?;
    assert!(
        deleted > 0,
        "the next pass deletes what the failed one could not"
    );
    assert_eq!(p.earliest_offset(), 60, "only the fresh record is left");
    append(p, &[rec_for(1001, 200)]);
    drop((stream, log));
    let log = Log::open(MEM_ROOT, options_on(&options, storage.crash(None)))?;
    let p = log.stream(STREAM)?.partition(0)?.earliest_offset();
    assert_eq!(p, 60, "deleted segments stay deleted after a power loss");
    Ok(())
}

/// Retention runs on every partition and every stream on its own: a partition whose deletes
/// fail is reported, and the other partitions, and the streams after it in name order, are
/// still trimmed in the same pass.
#[test]
fn one_failing_partition_does_not_stop_retention_elsewhere() -> Result<()> {
    let (options, storage, clock) = mem_options();
    let log = open(MEM_ROOT, &options);
    let first = create(&log, "a-first", config(2, 1_000));
    let second = create(&log, "b-second", config(1, 1_000));
    let partitions = [
        first.partition(0)?,
        first.partition(1)?,
        second.partition(0)?,
    ];
    for b in 0..60 {
        for p in &partitions {
            append(p, &[rec_for(b, 1000)]);
        }
    }
    clock.advance(10_000);
    for p in &partitions {
        append(p, &[rec_for(1000, 200)]);
    }
    // Deletes fail only in the first stream's first partition.
    let failing = std::path::Path::new(MEM_ROOT).join("streams/a-first/partitions/0");
    storage.scope_faults(Some(&failing));
    storage.inject(Fault::Remove, true);
    let err = log
        .enforce_retention()
        .expect_err("the failure is reported");
    assert!(matches!(err, LogError::Io { .. }), "{err}");
    assert_eq!(
        partitions[0].earliest_offset(),
        0,
        "the failing partition kept its segments"
    );
    assert_eq!(
        partitions[1].earliest_offset(),
        60,
        "its sibling was trimmed"
    );
    assert_eq!(
        partitions[2].earliest_offset(),
        60,
        "the next stream was trimmed"
    );
    storage.inject(Fault::Remove, false);
    storage.scope_faults(None);
    log.enforce_retention()?;
    assert_eq!(
        partitions[0].earliest_offset(),
        60,
        "the next pass trims it too"
    );
    Ok(())
}
