//! Failed fsyncs: the partition stops, and nothing in a failed round is acknowledged.

use super::*;

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

/// Queues appends A then B (which rolls the segment) in one group-commit round: the writer
/// is held inside the publication of an append C while they queue and `arm` sets up a
/// failure, then released. The outcomes of C, A and B.
fn round_with_a_roll(
    p: &Partition,
    arm: impl FnOnce(),
) -> [mpsc::Receiver<Result<AppendResult>>; 3] {
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
    arm();
    gate_tx.send(()).expect("release writer");
    [c, a, b]
}

/// Appends queued in one group-commit round with a segment roll whose fsync fails: a later
/// fsync that succeeds must not acknowledge anything (the failed one may have lost their
/// pages).
#[test]
fn no_acknowledgement_in_a_round_after_a_failed_fsync() -> Result<()> {
    let storage = HookedStorage::default();
    let clock = Arc::new(ManualClock::new(T0));
    let log = open(MEM_ROOT, &options(Arc::new(storage.clone()), clock));
    let stream = create(&log, "round", config(1, HOUR));
    let p = stream.partition(0)?;
    append(p, &[Rec::value(&[1; 100])]);

    // Fail the next fsync: the roll's.
    let [c, a, b] = round_with_a_roll(p, || storage.fail_next.store(1, Ordering::SeqCst));

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

/// A roll that fails after its fsync (here: creating the next segment): the appends of the
/// round before it were synced and published by the roll, so they are acknowledged, and only
/// the append that needed the new segment fails. Reporting them failed while readers see
/// them (and a reopen keeps them) would make producers retry and duplicate them.
#[test]
fn a_roll_failing_after_its_sync_acknowledges_what_it_synced() -> Result<()> {
    let (options, storage, _) = mem_options();
    let log = open(MEM_ROOT, &options);
    let stream = create(&log, "roll", config(1, HOUR));
    let p = stream.partition(0)?;
    append(p, &[Rec::value(&[1; 100])]);

    // Fail creating the next segment.
    let [c, a, b] = round_with_a_roll(p, || storage.inject(Fault::Create, true));

    assert!(c.recv().expect("C done").is_ok());
    let a = a.recv().expect("A done");
    let b = b.recv().expect("B done");
    assert!(b.is_err(), "B: {b:?}");
    assert_eq!(
        a.map(|r| r.base_offset).ok(),
        Some(2),
        "A was synced and published by the roll"
    );
    assert!(p.poisoned().is_some());
    assert_eq!(p.next_offset(), 3, "A is visible, B is not");
    storage.inject(Fault::Create, false);
    drop((stream, log));
    let log = open(MEM_ROOT, &options);
    let p = log.stream("roll")?;
    let got = read_all(p.partition(0)?)?;
    assert_eq!(got.len(), 3, "A survives a reopen, B does not");
    Ok(())
}
