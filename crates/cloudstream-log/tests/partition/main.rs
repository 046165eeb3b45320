//! Behaviour of partitions, streams and checkpoints through the public API: round trips over
//! many segments, read limits, time lookups, retention, reopening, sync policies, the lock,
//! fail-stop after a failed fsync, checkpoints and refusal of bad input.

#[path = "../common/mod.rs"]
mod common;

mod durability;
mod faults;
mod reads;

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cloudstream_log::storage::{Fault, OpenMode, StorageFile};
use cloudstream_log::{
    AppendResult, Log, LogError, LogOptions, ManualClock, MemoryStorage, Partition, Result,
    Storage, SyncPolicy, MAX_HORIZON, MAX_PARTITIONS,
};
use common::*;
use tempfile::TempDir;

const HOUR: u64 = 3_600_000;

/// A place to run a log: in memory or in a temporary directory.
struct Env {
    name: &'static str,
    root: PathBuf,
    options: LogOptions,
    clock: Arc<ManualClock>,
    _dir: Option<TempDir>,
}

impl Env {
    fn memory() -> Env {
        let (options, _, clock) = mem_options();
        Env {
            name: "memory",
            root: PathBuf::from(MEM_ROOT),
            options,
            clock,
            _dir: None,
        }
    }

    fn file() -> Env {
        let dir = tempdir();
        let clock = Arc::new(ManualClock::new(T0));
        Env {
            name: "file",
            root: dir.path().join("data"),
            options: options(Arc::new(cloudstream_log::FileStorage), clock.clone()),
            clock,
            _dir: Some(dir),
        }
    }

    fn all() -> [Env; 2] {
        [Env::memory(), Env::file()]
    }

    fn open(&self) -> Log {
        open(&self.root, &self.options)
    }
}

/// `n` deterministic records for batch `b`.
fn batch_recs(b: u64, n: usize, max_value: usize) -> Vec<Rec> {
    (0..n as u64)
        .map(|i| rec_for(b * 1000 + i, max_value))
        .collect()
}

/// A [`MemoryStorage`] with hooks: it counts the files open through it, and fails its next
/// `fail_next` fdatasyncs.
#[derive(Debug, Clone, Default)]
struct HookedStorage {
    inner: MemoryStorage,
    /// fdatasyncs to fail from now on.
    fail_next: Arc<AtomicU32>,
    /// Files open now.
    open: Arc<AtomicU32>,
}

#[derive(Debug)]
struct HookedFile {
    inner: Box<dyn StorageFile>,
    fail_next: Arc<AtomicU32>,
    open: Arc<AtomicU32>,
}

impl Drop for HookedFile {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StorageFile for HookedFile {
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

impl Storage for HookedStorage {
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
        let inner = self.inner.open(path, mode)?;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(HookedFile {
            inner,
            fail_next: self.fail_next.clone(),
            open: self.open.clone(),
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
