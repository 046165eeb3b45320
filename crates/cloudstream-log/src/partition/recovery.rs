//! Opening a partition directory after a clean stop or a crash.
//!
//! Sealed segments were synced before the next one was created, so every byte of them is
//! durable: any invalid batch there is corruption and stops the open. Their index files are
//! loaded when valid, rebuilt otherwise. The last segment is scanned batch by batch. Where the
//! valid batches stop, the rest is a torn tail and is cut, unless something proves it was
//! durable: a valid batch's `durable_before` reaching past the bad position, or a valid batch
//! further on whose `durable_before` does (a later round's, the writer's durability marker
//! after its last sync, or the close marker). Then the open fails with [`LogError::Corrupt`].

use std::path::Path;
use std::sync::Arc;

use crate::error::IoContext;
use crate::format::{check_frame, check_segment_header, segment_header, Frame, SEGMENT_HEADER_LEN};
use crate::index::{SegmentSummary, SparseIndex, OFFSET_INDEX_MAGIC, TIME_INDEX_MAGIC};
use crate::segment::{
    parse_segment_file_name, segment_paths, FrameScanner, Scanned, Segment, SegmentState,
};
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{LogError, Result};

/// The state a partition is in after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// Bytes cut from the tail of the last segment.
    pub(crate) truncated_bytes: u64,
}

/// Opens (or creates) the partition in `dir`.
pub(crate) fn recover(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    index_interval: u64,
) -> Result<Recovered> {
    let mut bases: Vec<u64> = storage
        .list_dir(dir)
        .at(dir)?
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    bases.sort_unstable();
    for name in storage.list_dir(dir).at(dir)? {
        if name.ends_with(".tmp") {
            let path = dir.join(&name);
            storage.remove_file(&path).at(&path)?;
        }
    }
    let Some((&last, sealed)) = bases.split_last() else {
        let segment = create_segment(storage, dir, 0)?;
        return Ok(Recovered {
            segments: vec![Arc::new(segment)],
            truncated_bytes: 0,
        });
    };
    let mut segments = Vec::with_capacity(bases.len());
    let mut expected = None;
    for &base in sealed {
        let segment = open_sealed(storage, dir, base, index_interval)?;
        check_continuity(&segment, expected)?;
        expected = Some(segment.state().next_offset);
        segments.push(Arc::new(segment));
    }
    let (segment, truncated_bytes) = open_last(storage, dir, last, index_interval)?;
    check_continuity(&segment, expected)?;
    segments.push(Arc::new(segment));
    Ok(Recovered {
        segments,
        truncated_bytes,
    })
}

fn check_continuity(segment: &Segment, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(next) if next != segment.base_offset => Err(LogError::Corrupt {
            path: segment.path.clone(),
            position: 0,
            reason: format!(
                "segment starts at offset {} but the previous one ends at {next}: a segment is missing",
                segment.base_offset
            ),
        }),
        _ => Ok(()),
    }
}

/// Creates an empty segment durably: header written and synced, then the directory synced.
pub(crate) fn create_segment(storage: &Arc<dyn Storage>, dir: &Path, base: u64) -> Result<Segment> {
    let [path, ..] = segment_paths(dir, base);
    let file = storage.open(&path, OpenMode::CreateNew).at(&path)?;
    file.write_all_at(&segment_header(base), 0).at(&path)?;
    file.sync_data().at(&path)?;
    storage.sync_dir(dir).at(dir)?;
    let state = empty_state(base);
    Ok(Segment::active(
        base,
        path,
        storage.clone(),
        Arc::from(file),
        state,
    ))
}

fn empty_state(base: u64) -> SegmentState {
    SegmentState {
        visible_len: SEGMENT_HEADER_LEN as u64,
        next_offset: base,
        max_append_ms: i64::MIN,
        ..SegmentState::default()
    }
}

fn open_file(storage: &dyn Storage, path: &Path) -> Result<(Arc<dyn StorageFile>, u64)> {
    let file: Arc<dyn StorageFile> = Arc::from(storage.open(path, OpenMode::Existing).at(path)?);
    let len = file.len().at(path)?;
    Ok((file, len))
}

fn check_header(file: &dyn StorageFile, path: &Path, base: u64) -> Result<()> {
    let mut h = [0; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut h, 0).at(path)?;
    check_segment_header(&h, base).map_err(|reason| LogError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason,
    })
}

fn open_sealed(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    base: u64,
    interval: u64,
) -> Result<Segment> {
    let [path, index_path, time_path] = segment_paths(dir, base);
    let (file, len) = open_file(&**storage, &path)?;
    if len < SEGMENT_HEADER_LEN as u64 {
        return Err(LogError::Corrupt {
            path,
            position: 0,
            reason: "sealed segment shorter than its header".into(),
        });
    }
    check_header(&*file, &path, base)?;
    let loaded = SparseIndex::load(&**storage, &index_path, OFFSET_INDEX_MAGIC)
        .zip(SparseIndex::load(&**storage, &time_path, TIME_INDEX_MAGIC));
    if let Some(((offsets, summary), (times, time_summary))) = loaded {
        if summary == time_summary && summary.len == len {
            let state = SegmentState {
                visible_len: len,
                next_offset: summary.next_offset,
                max_append_ms: summary.max_append_ms,
                first_append_ms: None,
                offsets,
                times,
            };
            return Ok(Segment::sealed(base, path, storage.clone(), state));
        }
    }
    let scan = scan(&*file, &path, base, len, interval)?;
    if let Some(bad) = scan.bad {
        return Err(LogError::Corrupt {
            path,
            position: bad.pos,
            reason: format!("{} in a sealed segment", bad.reason),
        });
    }
    let summary = SegmentSummary {
        len,
        next_offset: scan.state.next_offset,
        max_append_ms: scan.state.max_append_ms,
    };
    scan.state
        .offsets
        .write(&**storage, &index_path, OFFSET_INDEX_MAGIC, summary)?;
    scan.state
        .times
        .write(&**storage, &time_path, TIME_INDEX_MAGIC, summary)?;
    storage.sync_dir(dir).at(dir)?;
    Ok(Segment::sealed(base, path, storage.clone(), scan.state))
}

fn open_last(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    base: u64,
    interval: u64,
) -> Result<(Segment, u64)> {
    let [path, index_path, time_path] = segment_paths(dir, base);
    // Index files of the active segment are stale by definition; they are rebuilt at seal.
    for p in [&index_path, &time_path] {
        if storage.exists(p) {
            storage.remove_file(p).at(p)?;
        }
    }
    let (file, len) = open_file(&**storage, &path)?;
    if len < SEGMENT_HEADER_LEN as u64 {
        // Created but its header never reached the disk: nothing was ever acknowledged in it.
        file.set_len(0).at(&path)?;
        file.write_all_at(&segment_header(base), 0).at(&path)?;
        file.sync_data().at(&path)?;
        let truncated = len;
        return Ok((
            Segment::active(base, path, storage.clone(), file, empty_state(base)),
            truncated,
        ));
    }
    check_header(&*file, &path, base)?;
    let scan = scan(&*file, &path, base, len, interval)?;
    let Some(bad) = scan.bad else {
        // What a killed process wrote may still be only in the page cache. The writer takes
        // everything recovered as durable (`durable_before` of its next batch, and no sync at
        // the next roll), so make it so.
        file.sync_data().at(&path)?;
        return Ok((
            Segment::active(base, path, storage.clone(), file, scan.state),
            0,
        ));
    };
    let durable = scan.durable_before.max(SEGMENT_HEADER_LEN as u64);
    if bad.pos < durable {
        return Err(LogError::Corrupt {
            path,
            position: bad.pos,
            reason: format!(
                "{} before the last durable point (byte {durable})",
                bad.reason
            ),
        });
    }
    let mut rest = vec![0; (len - bad.pos) as usize];
    file.read_exact_at(&mut rest, bad.pos).at(&path)?;
    // An all-zero tail is space the writer zeroed ahead of its writes, or never wrote: a round
    // lost in it by a power loss was never synced, so never acknowledged, and it is not
    // counted as a torn tail.
    let zeroed = rest.iter().all(|&b| b == 0);
    if zeroed {
        tracing::info!(path = %path.display(), position = bad.pos, "cutting a zeroed tail");
    } else {
        if let Some(proof) = later_durable_batch(&rest, bad.pos, scan.state.next_offset) {
            return Err(LogError::Corrupt {
                path,
                position: bad.pos,
                reason: format!(
                    "{}, followed by a valid batch at byte {proof} written after this point was durable",
                    bad.reason
                ),
            });
        }
        tracing::warn!(
            path = %path.display(),
            position = bad.pos,
            cut = len - bad.pos,
            reason = bad.reason,
            "cutting a torn tail after the last durable point"
        );
    }
    file.set_len(bad.pos).at(&path)?;
    file.sync_data().at(&path)?;
    let torn = if zeroed { 0 } else { len - bad.pos };
    Ok((
        Segment::active(base, path, storage.clone(), file, scan.state),
        torn,
    ))
}

struct Bad {
    pos: u64,
    reason: &'static str,
}

struct Scan {
    state: SegmentState,
    durable_before: u64,
    bad: Option<Bad>,
}

/// Reads every batch of a segment, rebuilding its indexes, up to the first invalid one.
fn scan(file: &dyn StorageFile, path: &Path, base: u64, len: u64, interval: u64) -> Result<Scan> {
    let mut state = empty_state(base);
    let mut durable_before = 0;
    let mut scanner = FrameScanner::new(file, SEGMENT_HEADER_LEN as u64, len);
    let mut bad = None;
    while let Some(scanned) = scanner.next().at(path)? {
        match scanned {
            Scanned::Frame { header, pos, .. } if header.base_offset == state.next_offset => {
                durable_before = durable_before.max(header.durable_before);
                if header.count > 0 {
                    state
                        .offsets
                        .maybe_add(header.base_offset as i64, pos, interval);
                    state.times.maybe_add(header.append_time_ms, pos, interval);
                    state.max_append_ms = state.max_append_ms.max(header.append_time_ms);
                    state.first_append_ms.get_or_insert(header.append_time_ms);
                }
                state.next_offset += u64::from(header.count);
                state.visible_len = scanner.pos();
            }
            Scanned::Frame { pos, .. } => {
                bad = Some(Bad {
                    pos,
                    reason: "batch offset out of sequence",
                });
                break;
            }
            Scanned::Bad { pos, reason } => {
                bad = Some(Bad { pos, reason });
                break;
            }
        }
    }
    Ok(Scan {
        state,
        durable_before,
        bad,
    })
}

/// Looks past a bad position for a valid batch that was written when the bad position was
/// already durable; its position, if there is one.
fn later_durable_batch(rest: &[u8], bad: u64, next_offset: u64) -> Option<u64> {
    let u64_at = |b: &[u8], at: usize| {
        let mut a = [0; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    // The smallest frame (an empty batch, such as the close marker) is 36 bytes; one may end
    // exactly at the end of the file.
    for q in 1..=rest.len().saturating_sub(36) {
        let base = u64_at(rest, q + 8);
        let durable_before = u64_at(rest, q + 24);
        let plausible =
            base >= next_offset && durable_before > bad && durable_before <= bad + q as u64;
        if plausible && matches!(check_frame(&rest[q..]), Frame::Valid { .. }) {
            return Some(bad + q as u64);
        }
    }
    None
}
