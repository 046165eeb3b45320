//! One segment file of a partition: its shared state, the frame scanner used by readers and by
//! recovery, and reads of records.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::error::IoContext;
use crate::format::{check_frame, decode_records, BatchHeader, Frame, LogRecord};
use crate::index::SparseIndex;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{LogError, Result};

/// Bytes read from a segment at a time.
const CHUNK: usize = 1024 * 1024;

/// File name of the segment starting at `base_offset`: 20 zero-padded digits, so name order
/// is offset order.
pub(crate) fn segment_file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The base offset a segment file name encodes, if it is a segment file name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What readers may see of a segment, updated by the partition writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentState {
    /// Bytes of the file that hold acknowledged batches.
    pub(crate) visible_len: u64,
    /// Offset after the last visible record.
    pub(crate) next_offset: u64,
    /// Append time of the newest visible batch (`i64::MIN` when empty).
    pub(crate) max_append_ms: i64,
    /// Append time of the first batch, for age-based rolling.
    pub(crate) first_append_ms: Option<i64>,
    pub(crate) offsets: SparseIndex,
    pub(crate) times: SparseIndex,
}

/// A segment: a file of batches starting at `base_offset`.
///
/// Only the active segment keeps its file open; a sealed one opens it for each read, so a
/// partition holds one descriptor however many segments it keeps (a tiny horizon rolls
/// often, and retention runs only every so often).
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    storage: Arc<dyn Storage>,
    /// The open file, while the segment is active.
    open: RwLock<Option<Arc<dyn StorageFile>>>,
    state: RwLock<SegmentState>,
}

/// Limits of one read; at least one record is returned when any is available.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
}

impl Segment {
    /// A segment whose file is open: the active one.
    pub(crate) fn active(
        base_offset: u64,
        path: PathBuf,
        storage: Arc<dyn Storage>,
        file: Arc<dyn StorageFile>,
        state: SegmentState,
    ) -> Self {
        let segment = Segment::sealed(base_offset, path, storage, state);
        *segment.open.write().unwrap_or_else(|e| e.into_inner()) = Some(file);
        segment
    }

    /// A sealed segment: its file is opened for each read.
    pub(crate) fn sealed(
        base_offset: u64,
        path: PathBuf,
        storage: Arc<dyn Storage>,
        state: SegmentState,
    ) -> Self {
        Segment {
            base_offset,
            path,
            storage,
            open: RwLock::new(None),
            state: RwLock::new(state),
        }
    }

    /// The segment's file: the open one while active, else opened for the caller.
    pub(crate) fn file(&self) -> Result<Arc<dyn StorageFile>> {
        let open = self.open.read().unwrap_or_else(|e| e.into_inner()).clone();
        match open {
            Some(file) => Ok(file),
            None => Ok(Arc::from(
                self.storage
                    .open(&self.path, OpenMode::Existing)
                    .at(&self.path)?,
            )),
        }
    }

    /// Marks the segment sealed: its file closes once the reads holding it finish.
    pub(crate) fn seal(&self) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, SegmentState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn state_mut(&self) -> RwLockWriteGuard<'_, SegmentState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Appends to `out` the visible records with offset `>= from`, within `limits`;
    /// returns whether the limits were reached.
    pub(crate) fn read(
        &self,
        from: u64,
        limits: &mut ReadLimits,
        out: &mut Vec<LogRecord>,
    ) -> Result<bool> {
        let (start, end) = {
            let s = self.state();
            if from >= s.next_offset {
                return Ok(false);
            }
            (s.offsets.floor(from as i64, true), s.visible_len)
        };
        let file = self.file()?;
        let mut scanner = FrameScanner::new(&*file, start, end);
        while let Some(scanned) = scanner.next().at(&self.path)? {
            let (header, pos, frame) = match scanned {
                Scanned::Frame { header, pos, frame } => (header, pos, frame),
                Scanned::Bad { pos, reason } => return Err(self.corrupt(pos, reason)),
            };
            if header.base_offset + u64::from(header.count) <= from {
                continue;
            }
            let records = decode_records(&header, frame).map_err(|r| self.corrupt(pos, r))?;
            for record in records.into_iter().filter(|r| r.offset >= from) {
                let size = record.encoded_len();
                if !out.is_empty() && (limits.records == 0 || size > limits.bytes) {
                    return Ok(true);
                }
                limits.records = limits.records.saturating_sub(1);
                limits.bytes = limits.bytes.saturating_sub(size);
                out.push(record);
            }
            if limits.records == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The offset of the first visible record appended at or after `time_ms`, if any.
    pub(crate) fn offset_for_time(&self, time_ms: i64) -> Result<Option<u64>> {
        let (start, end) = {
            let s = self.state();
            if s.max_append_ms < time_ms {
                return Ok(None);
            }
            (s.times.floor(time_ms, false), s.visible_len)
        };
        let file = self.file()?;
        let mut scanner = FrameScanner::new(&*file, start, end);
        while let Some(scanned) = scanner.next().at(&self.path)? {
            match scanned {
                Scanned::Frame { header, .. } if header.count == 0 => {}
                Scanned::Frame { header, .. } if header.append_time_ms >= time_ms => {
                    return Ok(Some(header.base_offset));
                }
                Scanned::Frame { .. } => {}
                Scanned::Bad { pos, reason } => return Err(self.corrupt(pos, reason)),
            }
        }
        Ok(None)
    }
}

/// What the scanner found next.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A valid batch at `pos`; `frame` holds its bytes.
    Frame {
        header: BatchHeader,
        pos: u64,
        frame: Bytes,
    },
    /// No valid batch at `pos`.
    Bad { pos: u64, reason: &'static str },
}

/// Reads the batches of a file between two positions, a large chunk at a time.
pub(crate) struct FrameScanner<'a> {
    file: &'a dyn StorageFile,
    pos: u64,
    end: u64,
    buf: Bytes,
    buf_start: u64,
}

impl<'a> FrameScanner<'a> {
    pub(crate) fn new(file: &'a dyn StorageFile, pos: u64, end: u64) -> Self {
        FrameScanner {
            file,
            pos,
            end,
            buf: Bytes::new(),
            buf_start: pos,
        }
    }

    /// The position of the next frame.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// The next frame, `None` at the end, or the position where the data stops being valid.
    pub(crate) fn next(&mut self) -> std::io::Result<Option<Scanned>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        loop {
            let off = (self.pos - self.buf_start) as usize;
            let avail = self.buf.get(off..).unwrap_or_default();
            match check_frame(avail) {
                Frame::Valid { header, len } => {
                    let frame = self.buf.slice(off..off + len);
                    let pos = self.pos;
                    self.pos += len as u64;
                    return Ok(Some(Scanned::Frame { header, pos, frame }));
                }
                Frame::Invalid(reason) => {
                    return Ok(Some(Scanned::Bad {
                        pos: self.pos,
                        reason,
                    }))
                }
                Frame::Incomplete { needed } => {
                    if self.buf_start + self.buf.len() as u64 >= self.end {
                        return Ok(Some(Scanned::Bad {
                            pos: self.pos,
                            reason: "incomplete batch at the end of the file",
                        }));
                    }
                    let want = (CHUNK.max(needed.unwrap_or(0)) as u64).min(self.end - self.pos);
                    let mut buf = vec![0; want as usize];
                    self.file.read_exact_at(&mut buf, self.pos)?;
                    self.buf = Bytes::from(buf);
                    self.buf_start = self.pos;
                }
            }
        }
    }
}

/// Paths of a segment's files.
pub(crate) fn segment_paths(dir: &Path, base_offset: u64) -> [PathBuf; 3] {
    ["log", "index", "timeindex"].map(|ext| dir.join(segment_file_name(base_offset, ext)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_offset() {
        assert_eq!(segment_file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.index"), None);
    }
}
