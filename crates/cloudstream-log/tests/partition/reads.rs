//! Reads: limits, the end, offsets for times, the append listener, checkpoints and typed errors.

use super::*;

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
