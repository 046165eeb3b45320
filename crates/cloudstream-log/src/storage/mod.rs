//! The storage seam: every byte the engine reads or writes goes through [`Storage`].
//!
//! The engine never touches `std::fs` directly. [`FileStorage`] is the real file system;
//! [`MemoryStorage`] keeps files in memory, is the backing of `memory://` streams, and can
//! simulate a power loss ([`MemoryStorage::crash`]) by dropping everything that was not made
//! durable with `sync_data` / `sync_dir`, so crash tests need no change to the engine.

mod file;
mod memory;

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::Path;

pub use file::FileStorage;
pub use memory::{Fault, MemoryStorage};

/// A file opened through a [`Storage`]. Positional reads and writes take `&self`, so one open
/// file can be shared by the single writer and any number of readers.
#[expect(
    clippy::len_without_is_empty,
    reason = "len asks the file system and can fail; is_empty would add nothing"
)]
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// The current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos)? {
                0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                n => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// How [`Storage::open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; fail if it exists.
    CreateNew,
    /// Open an existing file for reading and writing; fail if it is missing.
    Existing,
}

/// The file-system operations the engine needs, and nothing more.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates a directory and its parents. Directory creation is made durable by the
    /// caller with [`Storage::sync_dir`] on the parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// Opens a file for positional reads and writes.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// Renames a file atomically, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Deletes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creations, renames, deletions) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) for as long as the returned guard
    /// lives; fails with `WouldBlock` if another holder has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}
