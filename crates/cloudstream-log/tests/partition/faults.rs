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

    // Hold the writer inside the publication of C, queue A then B (which rolls the
    // segment), then fail creating the next segment.
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
    storage.inject(Fault::Create, true);
    gate_tx.send(()).expect("release writer");

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
