//! Sparse indexes of a segment: offset → byte position and append time → byte position.
//!
//! An entry is added every `interval` bytes of batches, so a lookup lands at most that far
//! before the batch sought. The active segment's indexes live in memory and are rebuilt by the
//! recovery scan; when a segment is sealed both are written beside it (`.index`,
//! `.timeindex`) with a summary of the segment, so reopening a large log does not rescan
//! sealed segments. Index files are derived data: a missing or damaged one is rebuilt.
//!
//! ```text
//! file    := magic(8) version:u32 count:u32 summary entry{count} crc32c:u32
//! summary := segment_len:u64 next_offset:u64 max_append_ms:i64
//! entry   := key:i64 position:u32
//! ```

use std::path::Path;

use crate::error::IoContext;
use crate::format::{FORMAT_VERSION, SEGMENT_HEADER_LEN};
use crate::storage::{OpenMode, Storage};
use crate::Result;

/// Magic bytes of an offset index file.
pub(crate) const OFFSET_INDEX_MAGIC: &[u8; 8] = b"CSLOGIDX";
/// Magic bytes of a time index file.
pub(crate) const TIME_INDEX_MAGIC: &[u8; 8] = b"CSLOGTIX";

const ENTRY_LEN: usize = 12;
const HEAD_LEN: usize = 8 + 4 + 4 + 24;

/// One entry: a key (offset or append time) and the byte position of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) key: i64,
    pub(crate) pos: u32,
}

/// What a sealed segment's index file records about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub(crate) len: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_append_ms: i64,
}

/// A sparse, sorted index.
#[derive(Debug, Default, Clone)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
    last_pos: Option<u32>,
}

impl SparseIndex {
    /// Records a batch at `pos` with key `key` if `interval` bytes passed since the last entry
    /// and the key moved forward.
    pub(crate) fn maybe_add(&mut self, key: i64, pos: u64, interval: u64) {
        let due = self
            .last_pos
            .is_none_or(|last| pos >= u64::from(last) + interval);
        let forward = self.entries.last().is_none_or(|e| key > e.key);
        if due && forward {
            if let Ok(pos) = u32::try_from(pos) {
                self.entries.push(IndexEntry { key, pos });
                self.last_pos = Some(pos);
            }
        }
    }

    /// Byte position to start scanning for the first batch whose key is `>= key`
    /// (`inclusive`) or could be (`!inclusive`, for keys shared by several batches).
    pub(crate) fn floor(&self, key: i64, inclusive: bool) -> u64 {
        let n = self
            .entries
            .partition_point(|e| if inclusive { e.key <= key } else { e.key < key });
        match n {
            0 => SEGMENT_HEADER_LEN as u64,
            n => u64::from(self.entries[n - 1].pos),
        }
    }

    /// Writes the index beside a sealed segment.
    pub(crate) fn write(
        &self,
        storage: &dyn Storage,
        path: &Path,
        magic: &[u8; 8],
        summary: SegmentSummary,
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(HEAD_LEN + self.entries.len() * ENTRY_LEN + 4);
        buf.extend_from_slice(magic);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        buf.extend_from_slice(&summary.len.to_le_bytes());
        buf.extend_from_slice(&summary.next_offset.to_le_bytes());
        buf.extend_from_slice(&summary.max_append_ms.to_le_bytes());
        for e in &self.entries {
            buf.extend_from_slice(&e.key.to_le_bytes());
            buf.extend_from_slice(&e.pos.to_le_bytes());
        }
        buf.extend_from_slice(&crc32c::crc32c(&buf).to_le_bytes());
        if storage.exists(path) {
            storage.remove_file(path).at(path)?;
        }
        let file = storage.open(path, OpenMode::CreateNew).at(path)?;
        file.write_all_at(&buf, 0).at(path)?;
        file.sync_data().at(path)
    }

    /// Loads an index file; `None` if it is missing, damaged or of another version (the
    /// caller then rebuilds it from the segment).
    pub(crate) fn load(
        storage: &dyn Storage,
        path: &Path,
        magic: &[u8; 8],
    ) -> Option<(SparseIndex, SegmentSummary)> {
        let file = storage.open(path, OpenMode::Existing).ok()?;
        let len = usize::try_from(file.len().ok()?).ok()?;
        if len < HEAD_LEN + 4 {
            return None;
        }
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, 0).ok()?;
        let (body, crc) = buf.split_at(len - 4);
        let int = |at: usize, n: usize| {
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(&body[at..at + n]);
            u64::from_le_bytes(a)
        };
        let count = int(12, 4) as usize;
        let valid = &body[0..8] == magic
            && int(8, 4) == u64::from(FORMAT_VERSION)
            && crc32c::crc32c(body).to_le_bytes() == crc
            && body.len() == HEAD_LEN + count * ENTRY_LEN;
        if !valid {
            return None;
        }
        let summary = SegmentSummary {
            len: int(16, 8),
            next_offset: int(24, 8),
            max_append_ms: int(32, 8) as i64,
        };
        let entries: Vec<IndexEntry> = (0..count)
            .map(|i| {
                let at = HEAD_LEN + i * ENTRY_LEN;
                IndexEntry {
                    key: int(at, 8) as i64,
                    pos: int(at + 8, 4) as u32,
                }
            })
            .collect();
        let last_pos = entries.last().map(|e| e.pos);
        Some((SparseIndex { entries, last_pos }, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn floor_finds_the_batch_at_or_before() {
        let mut idx = SparseIndex::default();
        for (key, pos) in [(0, 24), (10, 100), (20, 200), (20, 300), (30, 400)] {
            idx.maybe_add(key, pos, 50);
        }
        assert_eq!(idx.floor(5, true), 24);
        assert_eq!(idx.floor(10, true), 100);
        assert_eq!(idx.floor(25, true), 200);
        assert_eq!(idx.floor(20, false), 100);
        assert_eq!(idx.floor(-1, true), SEGMENT_HEADER_LEN as u64);
    }

    #[test]
    fn file_round_trips_and_damage_is_refused() {
        let fs = MemoryStorage::new();
        fs.create_dir_all(Path::new("/s")).expect("dir");
        let mut idx = SparseIndex::default();
        idx.maybe_add(0, 24, 1);
        idx.maybe_add(7, 900, 1);
        let summary = SegmentSummary {
            len: 1000,
            next_offset: 9,
            max_append_ms: 5,
        };
        let path = Path::new("/s/0.index");
        idx.write(&fs, path, OFFSET_INDEX_MAGIC, summary)
            .expect("write");
        let (back, s) = SparseIndex::load(&fs, path, OFFSET_INDEX_MAGIC).expect("load");
        assert_eq!(s, summary);
        assert_eq!(back.floor(8, true), 900);
        assert!(SparseIndex::load(&fs, path, TIME_INDEX_MAGIC).is_none());
        let file = fs.open(path, OpenMode::Existing).expect("open");
        file.write_all_at(&[0xff], 20).expect("write");
        assert!(SparseIndex::load(&fs, path, OFFSET_INDEX_MAGIC).is_none());
    }
}
