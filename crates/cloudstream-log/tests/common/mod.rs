//! Helpers shared by the integration tests of `cloudstream-log`.
//!
//! Each test binary uses a different subset of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudstream_log::{
    BatchBuilder, EncodedBatch, Log, LogOptions, LogRecord, ManualClock, MemoryStorage, Partition,
    Result, Storage, StreamConfig, StreamLog, SyncPolicy,
};

/// Where the in-memory logs of the tests live.
pub(crate) const MEM_ROOT: &str = "/data";

/// The time every manual clock starts at (ms since the epoch).
pub(crate) const T0: i64 = 1_700_000_000_000;

/// Options for a test log: small segments, no background retention thread.
pub(crate) fn options(storage: Arc<dyn Storage>, clock: Arc<ManualClock>) -> LogOptions {
    LogOptions {
        storage,
        clock,
        sync: SyncPolicy::Always,
        segment_bytes: 4096,
        index_interval_bytes: 512,
        retention_check: None,
        ..LogOptions::default()
    }
}

/// Options on a fresh [`MemoryStorage`]; returns the storage too.
pub(crate) fn mem_options() -> (LogOptions, MemoryStorage, Arc<ManualClock>) {
    let storage = MemoryStorage::new();
    let clock = Arc::new(ManualClock::new(T0));
    (
        options(Arc::new(storage.clone()), clock.clone()),
        storage,
        clock,
    )
}

/// A stream config with `partitions` partitions and a horizon in ms.
pub(crate) fn config(partitions: u32, horizon_ms: u64) -> StreamConfig {
    StreamConfig {
        partitions,
        horizon: Duration::from_millis(horizon_ms),
    }
}

/// A test record, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) value: Vec<u8>,
    pub(crate) event_time_ms: Option<i64>,
}

impl Rec {
    /// A record with only a value.
    pub(crate) fn value(value: &[u8]) -> Rec {
        Rec {
            key: None,
            headers: Vec::new(),
            value: value.to_vec(),
            event_time_ms: None,
        }
    }

    /// Bytes the record takes in a batch (what `max_bytes` counts).
    pub(crate) fn encoded_len(&self) -> usize {
        BatchBuilder::record_len(
            self.key.as_deref(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.value.len(),
        )
    }

    /// Whether a record read back carries exactly this content.
    pub(crate) fn matches(&self, got: &LogRecord) -> bool {
        got.key.as_deref() == self.key.as_deref()
            && got.headers == self.headers
            && got.value[..] == self.value[..]
            && got.event_time_ms == self.event_time_ms
    }
}

/// splitmix64: a tiny deterministic generator for test data.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Deterministic filler bytes.
pub(crate) fn bytes_for(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| mix(seed ^ (i << 32)) as u8)
        .collect()
}

/// A deterministic record of varied shape (key or not, 0–2 headers, 0–`max_value` bytes).
pub(crate) fn rec_for(seed: u64, max_value: usize) -> Rec {
    let r = mix(seed);
    let len = (r % (max_value as u64 + 1)) as usize;
    let key = !(r >> 20).is_multiple_of(3);
    let headers = ((r >> 24) % 3) as usize;
    Rec {
        key: key.then(|| format!("key-{}", (r >> 32) % 17).into_bytes()),
        headers: (0..headers)
            .map(|h| (format!("h{h}"), format!("v{}", (r >> (40 + h)) % 1000)))
            .collect(),
        value: bytes_for(seed, len),
        event_time_ms: (r >> 28)
            .is_multiple_of(2)
            .then_some(T0 - (r % 1000) as i64),
    }
}

/// Encodes records as one batch.
pub(crate) fn encode(recs: &[Rec]) -> EncodedBatch {
    let mut b = BatchBuilder::default();
    for r in recs {
        b.push(
            r.key.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &r.value,
            r.event_time_ms,
        )
        .expect("record fits in a batch");
    }
    b.finish()
}

/// Size on disk of the batch holding `recs`.
pub(crate) fn frame_len(recs: &[Rec]) -> u64 {
    encode(recs).frame_len() as u64
}

/// Appends `recs` as one batch, checking the offsets it got.
pub(crate) fn append(p: &Partition, recs: &[Rec]) -> u64 {
    let expected = p.next_offset();
    let ack = p.append_blocking(encode(recs)).expect("append");
    assert_eq!(ack.base_offset, expected, "offsets are handed out in order");
    assert_eq!(ack.count as usize, recs.len());
    ack.base_offset
}

/// Reads every record from `from` to the end, in reads of at most `chunk` records.
pub(crate) fn read_from(p: &Partition, from: u64, chunk: usize) -> Result<Vec<LogRecord>> {
    let mut out: Vec<LogRecord> = Vec::new();
    let mut next = from;
    loop {
        let got = p.read(next, chunk, usize::MAX)?;
        let Some(last) = got.last() else {
            return Ok(out);
        };
        next = last.offset + 1;
        out.extend(got);
    }
}

/// Reads every record of a partition, from its earliest offset.
pub(crate) fn read_all(p: &Partition) -> Result<Vec<LogRecord>> {
    read_from(p, p.earliest_offset(), 10_000)
}

/// Asserts `got` are exactly `want[from..]` with offsets `from..`.
pub(crate) fn assert_records(got: &[LogRecord], want: &[Rec], from: u64) {
    assert_eq!(
        got.len(),
        want.len() - from as usize,
        "number of records read from offset {from}"
    );
    for (i, (g, w)) in got.iter().zip(&want[from as usize..]).enumerate() {
        assert_eq!(g.offset, from + i as u64, "offsets are contiguous");
        assert!(w.matches(g), "record {} differs: {g:?} vs {w:?}", g.offset);
    }
}

/// Opens a log, panicking on failure.
pub(crate) fn open(root: impl AsRef<Path>, options: &LogOptions) -> Log {
    Log::open(root, options.clone()).expect("open log")
}

/// Creates a stream, panicking on failure.
pub(crate) fn create(log: &Log, name: &str, config: StreamConfig) -> Arc<StreamLog> {
    log.create_stream(name, config).expect("create stream")
}

/// Every file below `dir`, with its bytes (a snapshot to restore after each damage).
#[derive(Debug, Clone)]
pub(crate) struct DirSnapshot {
    root: PathBuf,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl DirSnapshot {
    /// Reads every file below `root`.
    pub(crate) fn take(root: &Path) -> DirSnapshot {
        let mut files = BTreeMap::new();
        walk(root, &mut |p| {
            files.insert(p.to_path_buf(), fs::read(p).expect("read file"));
        });
        DirSnapshot {
            root: root.to_path_buf(),
            files,
        }
    }

    /// The bytes of a file of the snapshot.
    pub(crate) fn get(&self, path: &Path) -> &[u8] {
        &self.files[path]
    }

    /// Paths of the files whose name ends with `suffix`, sorted.
    pub(crate) fn paths_ending(&self, suffix: &str) -> Vec<PathBuf> {
        self.files
            .keys()
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Writes the snapshot to `root` (its original place or another directory),
    /// removing files it does not hold.
    pub(crate) fn restore_to(&self, root: &Path) {
        let mut extra = Vec::new();
        if root.exists() {
            walk(root, &mut |p| {
                let rel = p.strip_prefix(root).expect("below root");
                if !self.files.contains_key(&self.root.join(rel)) {
                    extra.push(p.to_path_buf());
                }
            });
        }
        for p in extra {
            fs::remove_file(p).expect("remove extra file");
        }
        for (path, bytes) in &self.files {
            let to = root.join(path.strip_prefix(&self.root).expect("below root"));
            fs::create_dir_all(to.parent().expect("parent")).expect("create dir");
            fs::write(&to, bytes).expect("write file");
        }
    }

    /// Writes the snapshot back in place.
    pub(crate) fn restore(&self) {
        self.restore_to(&self.root);
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// The segment files (`*.log`) of a partition directory, in offset order.
pub(crate) fn segment_files(partition_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(partition_dir)
        .expect("read partition dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// The directory of a partition of a stream in a log rooted at `root`.
pub(crate) fn partition_dir(root: &Path, stream: &str, partition: u32) -> PathBuf {
    root.join("streams")
        .join(stream)
        .join("partitions")
        .join(partition.to_string())
}

/// What a read of `max_records` / `max_bytes` from `from` should return: the end of the range
/// of records `from..end` (at least one record when one is available).
pub(crate) fn expected_read_end(
    want: &[Rec],
    from: usize,
    max_records: usize,
    max_bytes: usize,
) -> usize {
    let mut records = max_records.max(1);
    let mut bytes = max_bytes;
    let mut end = from;
    while end < want.len() {
        let size = want[end].encoded_len();
        if end > from && (records == 0 || size > bytes) {
            break;
        }
        records -= 1;
        bytes = bytes.saturating_sub(size);
        end += 1;
    }
    end
}

/// A temporary directory, on tmpfs (`/dev/shm`) when there is one: the sweeps open a log
/// thousands of times and each open fsyncs.
pub(crate) fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("cloudstream-log-test")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}
