//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), built only with the
//! `fuzzing` feature and not part of the API.
//!
//! Each function takes arbitrary bytes and runs one on-disk decoder over them, on
//! [`MemoryStorage`] rather than the file system. Whether the decoder accepts the bytes does
//! not matter; a panic, a hang or a huge allocation is the finding. Where a checksum stands
//! in front of a decoder, the input is also given a valid one, so that the fuzzer reaches
//! what lies behind it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::format::{
    check_frame, check_segment_header, decode_records, segment_header, Frame, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::index::{SparseIndex, OFFSET_INDEX_MAGIC, TIME_INDEX_MAGIC};
use crate::segment::{segment_file_name, FrameScanner, Scanned};
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{CheckpointFiles, Clock, Log, LogOptions, ManualClock, MemoryStorage};

/// Magic bytes of a consumer checkpoint file (`checkpoint.rs`).
const CHECKPOINT_MAGIC: &[u8; 8] = b"CSCKPT01";
/// Magic bytes of a `stream.meta` file (`stream.rs`).
const META_MAGIC: &[u8; 8] = b"CSSTRM01";
/// A valid `stream.meta` payload: one partition, a day of horizon.
const META_JSON: &[u8] = br#"{"format":1,"partitions":1,"horizon":86400000,"created_ms":0}"#;

/// Separates the files of a [`segment_recovery`] input.
pub const FILE_SEPARATOR: &[u8] = b"\n--next-file--\n";

/// A segment file as bytes: its header is checked (against the base offset it names and
/// against 0), its batches are scanned as a reader does, and the records of every valid
/// batch are decoded. The input is then taken as one batch body, framed with its length
/// and a valid CRC, and decoded too.
pub fn segment_frames(data: &[u8]) {
    let _ = check_segment_header(data, 0);
    if let Some(base) = header_base(data) {
        let _ = check_segment_header(data, base);
    }
    let storage = MemoryStorage::new();
    if let Some(file) = put(&storage, Path::new("/s/segment.log"), data) {
        let start = if data.len() >= SEGMENT_HEADER_LEN {
            SEGMENT_HEADER_LEN as u64
        } else {
            0
        };
        let mut scanner = FrameScanner::new(&*file, start, data.len() as u64);
        while let Ok(Some(Scanned::Frame { header, frame, .. })) = scanner.next() {
            let _ = decode_records(&header, frame);
        }
    }
    let Ok(body_len) = u32::try_from(data.len()) else {
        return;
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + data.len());
    frame.extend_from_slice(&body_len.to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    frame.extend_from_slice(data);
    if let Frame::Valid { header, .. } = check_frame(&frame) {
        let _ = decode_records(&header, Bytes::from(frame));
    }
}

/// The recovery of a partition at open, then reads of everything it kept.
///
/// The input is one or more files separated by [`FILE_SEPARATOR`]. The last is the active
/// segment; when there are others, the first is a sealed segment at offset 0 and the next
/// two its offset and time index files. A segment that does not start with the magic bytes
/// gets a valid header; the active segment after a sealed one is named by the base offset
/// its header gives (at least 1).
pub fn segment_recovery(data: &[u8]) {
    let parts = split_files(data);
    let Some((last, sealed)) = parts.split_last() else {
        return;
    };
    let mut files = Vec::new();
    let mut active_base = 0;
    if let Some((segment, indexes)) = sealed.split_first() {
        files.push((segment_file_name(0, "log"), with_header(segment, 0)));
        for (ext, index) in ["index", "timeindex"].into_iter().zip(indexes) {
            files.push((segment_file_name(0, ext), index.to_vec()));
        }
        active_base = header_base(last).unwrap_or(1).max(1);
    }
    files.push((
        segment_file_name(active_base, "log"),
        with_header(last, active_base),
    ));
    let Some(log) = open_log(&framed(META_MAGIC, META_JSON), &files) else {
        return;
    };
    let Ok(stream) = log.stream("s") else {
        return;
    };
    let Ok(partition) = stream.partition(0) else {
        return;
    };
    let mut from = partition.earliest_offset();
    while let Ok(records) = partition.read(from, 1000, 1 << 20) {
        match records.last().and_then(|r| r.offset.checked_add(1)) {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    for time in [i64::MIN, 0, i64::MAX] {
        let _ = partition.offset_for_time(time);
    }
    let _ = partition.stats();
}

/// An index file (`.index` or `.timeindex`) as found on disk, then with a valid CRC
/// appended. One that loads is looked up, written back, and must load again.
pub fn index_file(data: &[u8]) {
    let storage = MemoryStorage::new();
    let dir = Path::new("/i");
    let mut checked = data.to_vec();
    checked.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    for (n, bytes) in [data, checked.as_slice()].into_iter().enumerate() {
        let path = dir.join(format!("{n}.index"));
        if put(&storage, &path, bytes).is_none() {
            continue;
        }
        for magic in [OFFSET_INDEX_MAGIC, TIME_INDEX_MAGIC] {
            let Some((index, summary)) = SparseIndex::load(&storage, &path, magic) else {
                continue;
            };
            for key in [i64::MIN, -1, 0, 1, summary.max_append_ms, i64::MAX] {
                let _ = index.floor(key, true);
                let _ = index.floor(key, false);
            }
            let copy = dir.join(format!("{n}.copy"));
            let written = index.write(&storage, &copy, magic, summary).is_ok();
            let back = SparseIndex::load(&storage, &copy, magic).map(|(_, s)| s);
            assert!(
                written && back == Some(summary),
                "a loaded index does not load back once written"
            );
        }
    }
}

/// The small atomic files: a consumer checkpoint (read as the engine's offsets and as
/// another provider's strings) and a stream's `stream.meta` (read by opening a log that
/// holds it). Each as found on disk, then as the payload of a well-framed file.
pub fn small_file(data: &[u8]) {
    for bytes in [data.to_vec(), framed(CHECKPOINT_MAGIC, data)] {
        let storage = Arc::new(MemoryStorage::new());
        let dir = PathBuf::from("/c");
        if put(&storage, &dir.join("reader.ckpt"), &bytes).is_none() {
            continue;
        }
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        if let Ok(files) =
            CheckpointFiles::<u64>::open_dir(dir.clone(), storage.clone(), clock.clone())
        {
            let _ = files.load("reader");
        }
        if let Ok(files) = CheckpointFiles::<String>::open_dir(dir, storage, clock) {
            let _ = files.list();
        }
    }
    for meta in [data.to_vec(), framed(META_MAGIC, data)] {
        if let Some(log) = open_log(&meta, &[]) {
            let _ = log.list_streams();
        }
    }
}

/// A log opened on a data directory in memory holding stream `s`, with `meta` as its
/// `stream.meta` and `files` (name, bytes) in the directory of its partition 0.
fn open_log(meta: &[u8], files: &[(String, Vec<u8>)]) -> Option<Log> {
    let storage = MemoryStorage::new();
    let stream = Path::new("/log/streams/s");
    let partition = stream.join("partitions").join("0");
    storage.create_dir_all(&partition).ok()?;
    storage.create_dir_all(&stream.join("consumers")).ok()?;
    put(&storage, &stream.join("stream.meta"), meta)?;
    for (name, bytes) in files {
        put(&storage, &partition.join(name), bytes)?;
    }
    let options = LogOptions {
        storage: Arc::new(storage),
        clock: Arc::new(ManualClock::new(1_000_000)),
        index_interval_bytes: 64,
        retention_check: None,
        ..LogOptions::default()
    };
    Log::open("/log", options).ok()
}

/// Writes `bytes` as the new file `path` (its directory created).
fn put(storage: &MemoryStorage, path: &Path, bytes: &[u8]) -> Option<Box<dyn StorageFile>> {
    storage.create_dir_all(path.parent()?).ok()?;
    let file = storage.open(path, OpenMode::CreateNew).ok()?;
    file.write_all_at(bytes, 0).ok()?;
    Some(file)
}

/// `payload` framed as the small atomic files are: magic, CRC-32C, length, payload.
fn framed(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The base offset a segment header names, if `data` starts with one.
fn header_base(data: &[u8]) -> Option<u64> {
    if !data.starts_with(SEGMENT_MAGIC) {
        return None;
    }
    let base: [u8; 8] = data.get(16..SEGMENT_HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(base))
}

/// A segment's bytes: `data` if it starts with the magic bytes, else a valid header for
/// `base` followed by `data`.
fn with_header(data: &[u8], base: u64) -> Vec<u8> {
    if data.starts_with(SEGMENT_MAGIC) {
        return data.to_vec();
    }
    let mut bytes = segment_header(base).to_vec();
    bytes.extend_from_slice(data);
    bytes
}

/// The parts of `data` between [`FILE_SEPARATOR`]s.
fn split_files(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest
        .windows(FILE_SEPARATOR.len())
        .position(|w| w == FILE_SEPARATOR)
    {
        parts.push(&rest[..at]);
        rest = &rest[at + FILE_SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}
