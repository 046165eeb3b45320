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
