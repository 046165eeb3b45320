//! The kill -9 test: a child process (this test binary, run again) appends from several
//! threads with `SyncPolicy::Always` and prints each acknowledgement; the parent kills it with
//! SIGKILL at a random moment, reopens the log and checks that every acknowledged record is
//! there, byte for byte, at its acknowledged offset, with no gap or reorder. The cycles reuse
//! one directory, so each recovery starts from the previous one's result.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudstream_log::{
    FileStorage, Log, LogOptions, LogRecord, StreamConfig, SyncPolicy, SystemClock,
};
use common::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Set (to the data directory) in the child process.
const CHILD_ENV: &str = "CLOUDSTREAM_CRASH_CHILD";
/// The cycle number, in the child process.
const CYCLE_ENV: &str = "CLOUDSTREAM_CRASH_CYCLE";
/// The name of the test the child runs.
const CHILD_TEST: &str = "crash_child_writer";
const STREAM: &str = "crash";
/// Writer threads per child.
const WRITERS: u64 = 4;

fn log_options() -> LogOptions {
    LogOptions {
        storage: Arc::new(FileStorage),
        clock: Arc::new(SystemClock),
        sync: SyncPolicy::Always,
        segment_bytes: 64 * 1024,
        index_interval_bytes: 4096,
        retention_check: None,
        ..LogOptions::default()
    }
}

/// The record writer `writer` appends as its `seq`-th: a function of the two only. The value
/// starts with both and ends with a CRC-32C of the rest.
fn record(writer: u64, seq: u64) -> Rec {
    let r = mix((writer << 40) ^ seq);
    let mut value = Vec::new();
    value.extend_from_slice(&writer.to_le_bytes());
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&bytes_for(r, (r % 400) as usize));
    let crc = crc32c::crc32c(&value);
    value.extend_from_slice(&crc.to_le_bytes());
    Rec {
        key: Some(format!("writer-{writer}").into_bytes()),
        headers: vec![("seq".to_owned(), seq.to_string())],
        value,
        event_time_ms: None,
    }
}

/// The (writer, seq) a record read back claims, if it is exactly what that writer wrote.
fn decode(r: &LogRecord) -> Option<(u64, u64)> {
    let v = &r.value[..];
    let (body, crc) = v.split_at(v.len().checked_sub(4)?);
    if crc32c::crc32c(body).to_le_bytes() != crc || body.len() < 16 {
        return None;
    }
    let writer = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let seq = u64::from_le_bytes(body[8..16].try_into().ok()?);
    record(writer, seq).matches(r).then_some((writer, seq))
}

/// The child: appends until killed (or for 30 s at most), printing `ACK base count writer seq`
/// after each acknowledged batch.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful as the child of `sigkill_crash_cycles`.
    };
    let cycle: u64 = std::env::var(CYCLE_ENV)
        .ok()
        .and_then(|c| c.parse().ok())
        .expect("cycle number");
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        println!("ERROR {what}: {e}");
        std::process::exit(3);
    };
    let log = Log::open(&dir, log_options()).unwrap_or_else(|e| fail("open", &e));
    let stream = log.stream(STREAM).unwrap_or_else(|e| fail("stream", &e));
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let stream = &stream;
            s.spawn(move || {
                let writer = cycle * WRITERS + t;
                let p = stream.partition(0).expect("partition");
                let mut seq = 0;
                while Instant::now() < deadline {
                    let n = 1 + mix(writer ^ (seq << 8)) % 4;
                    let recs: Vec<Rec> = (seq..seq + n).map(|q| record(writer, q)).collect();
                    match p.append_blocking(encode(&recs)) {
                        Ok(ack) => {
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ACK {} {} {writer} {seq}", ack.base_offset, ack.count)
                                .and_then(|()| out.flush())
                                .expect("stdout");
                        }
                        Err(e) => fail("append", &e),
                    }
                    seq += n;
                }
            });
        }
    });
}

/// One acknowledged record: where it must be and what it must be.
#[derive(Debug, Clone, Copy)]
struct Acked {
    offset: u64,
    writer: u64,
    seq: u64,
}

/// Runs one child until killed; returns the records it acknowledged.
fn run_child(root: &Path, cycle: u64, kill_after: Duration) -> Vec<Acked> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut by the kill has no newline: it is not an acknowledgement.
        while out.read_line(&mut line).expect("read child output") > 0 {
            if line.ends_with('\n') {
                lines.push(std::mem::take(&mut line));
            }
        }
        lines
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    std::thread::sleep(kill_after);
    let _ = child.kill();
    let status = child.wait().expect("wait for child");
    let lines = reader.join().expect("reader");
    let errors = errors.join().expect("stderr reader");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "cycle {cycle}: the child ended before the kill ({status}):\n{}\n{errors}",
        lines.join("")
    );
    let mut acked = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ACK", base, count, writer, seq] => {
                let p = |s: &str| s.parse::<u64>().expect("number");
                for i in 0..p(count) {
                    acked.push(Acked {
                        offset: p(base) + i,
                        writer: p(writer),
                        seq: p(seq) + i,
                    });
                }
            }
            _ if line.starts_with("ERROR") => panic!("cycle {cycle}: child {line}"),
            _ => {}
        }
    }
    acked
}

/// What the log held at the last check.
#[derive(Default)]
struct Verified {
    /// (writer, seq) of every record, by offset.
    records: Vec<(u64, u64)>,
    /// Next seq expected from each writer.
    next_seq: HashMap<u64, u64>,
    /// Recoveries that cut a torn tail.
    tails_cut: u64,
}

/// Reopens the log and checks it from offset `from` (records before it were checked before
/// and are kept), then checks every acknowledged record. Returns (lost, mismatched).
fn verify(root: &Path, state: &mut Verified, from: u64, acked: &[Acked]) -> (u64, u64) {
    let log = Log::open(root, log_options()).expect("recovery opens the log");
    let stream = log.stream(STREAM).expect("stream");
    let p = stream.partition(0).expect("partition");
    assert_eq!(p.earliest_offset(), 0);
    if p.stats().truncated_on_open > 0 {
        state.tails_cut += 1;
    }
    state.records.truncate(from as usize);
    if from == 0 {
        state.next_seq.clear();
    }
    let records = read_from(p, from, 4096).expect("read after recovery");
    let mut mismatched = 0;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, from + i as u64, "offsets contiguous");
        let Some((writer, seq)) = decode(r) else {
            mismatched += 1;
            state.records.push((u64::MAX, u64::MAX));
            continue;
        };
        let next = state.next_seq.entry(writer).or_insert(0);
        assert_eq!(
            seq, *next,
            "writer {writer}: records in order, none twice, no gap"
        );
        *next += 1;
        state.records.push((writer, seq));
    }
    let mut lost = 0;
    for a in acked {
        match state.records.get(a.offset as usize) {
            None => lost += 1,
            Some(&(w, s)) if (w, s) != (a.writer, a.seq) => mismatched += 1,
            Some(_) => {}
        }
    }
    (lost, mismatched)
}

#[test]
fn sigkill_crash_cycles() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    assert!(cycles >= 20, "CRASH_CYCLES must be at least 20");
    let dir = tempdir();
    let root: PathBuf = dir.path().join("data");
    {
        let log = Log::open(&root, log_options()).expect("open");
        let config = StreamConfig {
            partitions: 1,
            horizon: Duration::from_secs(100 * 24 * 3600),
        };
        log.create_stream(STREAM, config).expect("create");
    }
    let mut rng = StdRng::seed_from_u64(0x5EED_C4A5);
    let mut all_acked: Vec<Acked> = Vec::new();
    let mut state = Verified::default();
    let (mut checked, mut lost, mut mismatched, mut silent) = (0u64, 0u64, 0u64, 0u64);
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.gen_range(20..=150));
        let acked = run_child(&root, cycle, kill_after);
        silent += u64::from(acked.is_empty());
        let from = state.records.len() as u64;
        all_acked.extend(&acked);
        // Check what is new, and every 10 cycles and at the end everything again.
        let full = cycle % 10 == 9 || cycle + 1 == cycles;
        let (l, m) = if full {
            verify(&root, &mut state, 0, &all_acked)
        } else {
            verify(&root, &mut state, from, &acked)
        };
        checked += if full { all_acked.len() } else { acked.len() } as u64;
        lost += l;
        mismatched += m;
        assert_eq!((l, m), (0, 0), "cycle {cycle}: {l} lost, {m} mismatched");
    }
    println!(
        "crash test: {cycles} cycles ({silent} killed before any ack, {} torn tails cut), {checked} \
         acknowledged records checked ({} distinct, {} in the log), {lost} lost, {mismatched} mismatched",
        state.tails_cut,
        all_acked.len(),
        state.records.len()
    );
}
