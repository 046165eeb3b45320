//! The engine: a locked data directory holding named streams.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::IoContext;
use crate::name::validate_name;
use crate::stream::{StreamConfig, StreamLog};
use crate::{Clock, FileStorage, LatencyHistogram, LogError, Result, Storage, SystemClock};

/// When appends are acknowledged relative to fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Acknowledge after fdatasync (the default): nothing acknowledged is lost, even by a
    /// power loss. Group commit shares each sync among all writers waiting for it.
    Always,
    /// Acknowledge after the write to the OS; fdatasync at most this long after. A power loss
    /// may lose the last interval of acknowledged records; a process crash loses nothing.
    Interval(Duration),
    /// Acknowledge after the write to the OS; sync only when a segment rolls or the log
    /// closes. For data that can be rebuilt.
    Never,
}

/// How a [`Log`] is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Where the bytes go. Default: the real file system.
    pub storage: Arc<dyn Storage>,
    /// Wall-clock time. Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// When appends are acknowledged. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// A segment rolls when it would grow beyond this size. Default: 128 MiB.
    pub segment_bytes: u64,
    /// Bytes between two entries of the sparse indexes. Default: 4 KiB.
    pub index_interval_bytes: u64,
    /// How often a background thread enforces retention; `None` leaves it to
    /// [`Log::enforce_retention`]. Default: every 30 s.
    pub retention_check: Option<Duration>,
    /// Where every partition records how long its fdatasync calls take. Default: a new one.
    pub sync_latency: Arc<LatencyHistogram>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            storage: Arc::new(FileStorage),
            clock: Arc::new(SystemClock),
            sync: SyncPolicy::Always,
            segment_bytes: 128 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_check: Some(Duration::from_secs(30)),
            sync_latency: Arc::default(),
        }
    }
}

struct Inner {
    root: PathBuf,
    options: LogOptions,
    streams: RwLock<BTreeMap<String, Arc<StreamLog>>>,
    trash_counter: AtomicU64,
    _lock: Box<dyn Any + Send + Sync>,
}

/// An open data directory: the embedded stream engine.
///
/// One process at a time: a lock file keeps a second [`Log::open`] of the same directory out.
pub struct Log {
    inner: Arc<Inner>,
    retention: Option<(Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn streams_dir(&self) -> PathBuf {
        self.root.join("streams")
    }
    fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }
    fn storage(&self) -> &dyn Storage {
        &*self.options.storage
    }
    fn streams(&self) -> Vec<Arc<StreamLog>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl Log {
    /// Opens (creating if needed) the data directory `root`, recovering every stream.
    pub fn open(root: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        if options.segment_bytes < 4096 {
            return Err(LogError::InvalidConfig(
                "segment_bytes must be at least 4096".into(),
            ));
        }
        let root = root.as_ref().to_path_buf();
        let storage = &*options.storage;
        storage.create_dir_all(&root).at(&root)?;
        let lock_path = root.join("LOCK");
        let lock = storage.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => LogError::Locked {
                path: lock_path.clone(),
            },
            _ => LogError::Io {
                path: lock_path.clone(),
                source: e,
            },
        })?;
        let inner = Inner {
            root,
            options: options.clone(),
            streams: RwLock::new(BTreeMap::new()),
            trash_counter: AtomicU64::new(0),
            _lock: lock,
        };
        for dir in [inner.streams_dir(), inner.trash_dir()] {
            storage.create_dir_all(&dir).at(&dir)?;
        }
        storage.sync_dir(&inner.root).at(&inner.root)?;
        let trash = inner.trash_dir();
        for name in storage.list_dir(&trash).at(&trash)? {
            let path = trash.join(name);
            storage.remove_dir_all(&path).at(&path)?;
        }
        let streams_dir = inner.streams_dir();
        let mut streams = BTreeMap::new();
        for name in storage.list_dir(&streams_dir).at(&streams_dir)? {
            if validate_name("stream", &name).is_err() {
                continue;
            }
            let dir = streams_dir.join(&name);
            if !StreamLog::is_complete(&dir, &options) {
                // A creation that did not finish: nothing was ever acknowledged in it.
                storage.remove_dir_all(&dir).at(&dir)?;
                continue;
            }
            streams.insert(
                name.clone(),
                Arc::new(StreamLog::open(&dir, &name, &options)?),
            );
        }
        *inner.streams.write().unwrap_or_else(|e| e.into_inner()) = streams;
        let inner = Arc::new(inner);
        let retention = options
            .retention_check
            .map(|every| spawn_retention(Arc::downgrade(&inner), every));
        Ok(Log { inner, retention })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.inner.options
    }

    /// Creates a stream.
    pub fn create_stream(&self, name: &str, config: StreamConfig) -> Result<Arc<StreamLog>> {
        validate_name("stream", name)?;
        config.validate()?;
        let mut streams = self
            .inner
            .streams
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if streams.contains_key(name) {
            return Err(LogError::StreamExists(name.to_owned()));
        }
        let dir = self.inner.streams_dir().join(name);
        if self.inner.storage().exists(&dir) {
            self.inner.storage().remove_dir_all(&dir).at(&dir)?;
        }
        let stream = Arc::new(StreamLog::create(&dir, name, config, &self.inner.options)?);
        streams.insert(name.to_owned(), stream.clone());
        Ok(stream)
    }

    /// An open stream by name.
    pub fn stream(&self, name: &str) -> Result<Arc<StreamLog>> {
        validate_name("stream", name)?;
        let streams = self.inner.streams.read().unwrap_or_else(|e| e.into_inner());
        streams
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::StreamNotFound(name.to_owned()))
    }

    /// How long fdatasync has taken, over every partition since the log was opened.
    pub fn sync_latency(&self) -> crate::LatencySnapshot {
        self.inner.options.sync_latency.snapshot()
    }

    /// The names of all streams, sorted.
    pub fn list_streams(&self) -> Vec<String> {
        let streams = self.inner.streams.read().unwrap_or_else(|e| e.into_inner());
        streams.keys().cloned().collect()
    }

    /// Deletes a stream and all its records and checkpoints.
    pub fn delete_stream(&self, name: &str) -> Result<()> {
        validate_name("stream", name)?;
        let stream = {
            let mut streams = self
                .inner
                .streams
                .write()
                .unwrap_or_else(|e| e.into_inner());
            streams
                .remove(name)
                .ok_or_else(|| LogError::StreamNotFound(name.to_owned()))?
        };
        let _ = stream.close();
        let storage = self.inner.storage();
        let from = self.inner.streams_dir().join(name);
        let n = self.inner.trash_counter.fetch_add(1, Ordering::Relaxed);
        let to = self.inner.trash_dir().join(format!("{name}-{n}"));
        storage.rename(&from, &to).at(&from)?;
        storage.sync_dir(&self.inner.streams_dir()).at(&from)?;
        storage.sync_dir(&self.inner.trash_dir()).at(&to)?;
        storage.remove_dir_all(&to).at(&to)
    }

    /// Runs retention on every stream now; returns how many segments were deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        enforce_all(&self.inner)
    }

    /// Closes every stream cleanly (also done on drop).
    pub fn close(&mut self) -> Result<()> {
        if let Some((stop, thread)) = self.retention.take() {
            drop(stop);
            let _ = thread.join();
        }
        let mut result = Ok(());
        for stream in self.inner.streams() {
            if let Err(e) = stream.close() {
                result = Err(e);
            }
        }
        result
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Retention on every stream, each on its own: a stream that fails does not stop the others;
/// the first failure is returned once every stream has had its turn.
fn enforce_all(inner: &Inner) -> Result<usize> {
    let mut deleted = 0;
    let mut failed = None;
    for stream in inner.streams() {
        match stream.enforce_retention() {
            Ok(n) => deleted += n,
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    failed.map_or(Ok(deleted), Err)
}

fn spawn_retention(inner: Weak<Inner>, every: Duration) -> (Sender<()>, JoinHandle<()>) {
    let (stop, rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || loop {
        match rx.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(err) = enforce_all(&inner) {
            tracing::warn!(error = %err, "retention pass failed");
        }
    });
    (stop, thread)
}
