//! An in-memory file system that knows what is durable, for `memory://` and for crash tests.
//!
//! Each file keeps its live bytes and, apart, the bytes that were last made durable with
//! `sync_data`. The namespace works the same way: a file created, renamed or deleted becomes
//! durable only when its directory is synced. [`MemoryStorage::crash`] returns the storage a
//! machine would see after a power loss: only durable names and bytes, plus (with a seed) a
//! torn, possibly holed, part of the unsynced tail in 512-byte sectors.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{OpenMode, Storage, StorageFile};

const SECTOR: usize = 512;

/// An operation [`MemoryStorage`] can be told to fail, to test how the engine handles I/O
/// errors (fail-stop, no acknowledgement after a failed write or sync, nothing half-done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `write_all_at` fails without writing.
    Write,
    /// `sync_data` (fdatasync) fails without making anything durable.
    Sync,
    /// Creating a file (`open` with `CreateNew`) fails.
    Create,
    /// `rename` fails.
    Rename,
    /// `remove_file` fails.
    Remove,
    /// `sync_dir` fails.
    SyncDir,
}

impl Fault {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The faults switched on, shared by a storage and its open files, and the directory that
/// path-taking operations (remove) fail under, when they fail only there.
#[derive(Debug, Clone, Default)]
struct Faults(Arc<AtomicU32>, Arc<Mutex<Option<PathBuf>>>);

impl Faults {
    fn check(&self, fault: Fault) -> io::Result<()> {
        if self.0.load(Ordering::SeqCst) & fault.bit() != 0 {
            return Err(io::Error::other(format!("injected {fault:?} failure")));
        }
        Ok(())
    }

    /// [`Faults::check`] for an operation on `path`: only under the scoped directory, if
    /// one is set.
    fn check_at(&self, fault: Fault, path: &Path) -> io::Result<()> {
        let scope = self.1.lock().unwrap_or_else(|e| e.into_inner());
        match &*scope {
            Some(dir) if !path.starts_with(dir) => Ok(()),
            _ => self.check(fault),
        }
    }
}

/// [`Storage`] held in memory; cheap to clone (clones share the same files).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
    faults: Faults,
}

#[derive(Debug, Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Arc<MemFile>>,
    durable: BTreeMap<PathBuf, Arc<MemFile>>,
    locks: BTreeSet<PathBuf>,
}

#[derive(Debug, Default)]
struct Contents {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug)]
struct MemFile {
    contents: Mutex<Contents>,
    faults: Faults,
}

impl MemFile {
    fn new(live: Vec<u8>, faults: Faults) -> Self {
        let durable = live.clone();
        MemFile {
            contents: Mutex::new(Contents { live, durable }),
            faults,
        }
    }
    fn contents(&self) -> MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StorageFile for Arc<MemFile> {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let c = self.contents();
        let pos = usize::try_from(pos).map_err(io::Error::other)?;
        if pos >= c.live.len() {
            return Ok(0);
        }
        let n = buf.len().min(c.live.len() - pos);
        buf[..n].copy_from_slice(&c.live[pos..pos + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.faults.check(Fault::Write)?;
        let mut c = self.contents();
        let pos = usize::try_from(pos).map_err(io::Error::other)?;
        let end = pos + buf.len();
        if c.live.len() < end {
            c.live.resize(end, 0);
        }
        c.live[pos..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.faults.check(Fault::Sync)?;
        let mut c = self.contents();
        c.durable = c.live.clone();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.contents().live.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.contents().live.resize(len, 0);
        Ok(())
    }
}

struct LockGuard {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        lock_state(&self.state).locks.remove(&self.path);
    }
}

fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// A small deterministic generator (xorshift64*), so a crash is replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl MemoryStorage {
    /// An empty in-memory file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Makes every later operation of this kind fail (`on = true`) or succeed again.
    pub fn inject(&self, fault: Fault, on: bool) {
        if on {
            self.faults.0.fetch_or(fault.bit(), Ordering::SeqCst);
        } else {
            self.faults.0.fetch_and(!fault.bit(), Ordering::SeqCst);
        }
    }

    /// Makes file removals fail only below `dir` while [`Fault::Remove`] is on (`None`:
    /// everywhere, the default), to fail one partition or stream among many.
    pub fn scope_faults(&self, dir: Option<&Path>) {
        *self.faults.1.lock().unwrap_or_else(|e| e.into_inner()) = dir.map(Path::to_path_buf);
    }

    /// The file system as it would be found after a power loss now.
    ///
    /// Only durable directory entries survive, each with its durable bytes. With
    /// `torn_seed = Some(seed)`, part of what each file was written since its last sync
    /// survives too, sector by sector: a lost sector keeps its durable bytes, or is a hole of
    /// zeros past the durable end. The worst a disk may do.
    pub fn crash(&self, torn_seed: Option<u64>) -> MemoryStorage {
        let state = self.state();
        let faults = Faults::default();
        let mut rng = Rng(torn_seed.unwrap_or(0) | 1);
        let mut files = BTreeMap::new();
        for (path, file) in &state.durable {
            let c = file.contents();
            let mut bytes = c.durable.clone();
            if torn_seed.is_some() && c.live.len() >= c.durable.len() {
                // Every sector written since the last sync, appended or overwritten (as over
                // the zeros a writer wrote ahead), survives or keeps its durable bytes.
                let mut end = c.durable.len();
                for (i, sector) in c.live.chunks(SECTOR).enumerate() {
                    let at = i * SECTOR;
                    let old = c.durable.get(at..).unwrap_or(&[]);
                    if old.starts_with(sector) || rng.next().is_multiple_of(3) {
                        continue;
                    }
                    if bytes.len() < at + sector.len() {
                        bytes.resize(at + sector.len(), 0);
                    }
                    bytes[at..at + sector.len()].copy_from_slice(sector);
                    end = end.max(at + sector.len());
                }
                bytes.truncate(end);
            }
            files.insert(path.clone(), Arc::new(MemFile::new(bytes, faults.clone())));
        }
        MemoryStorage {
            state: Arc::new(Mutex::new(State {
                dirs: state.dirs.clone(),
                durable: files.clone(),
                files,
                locks: BTreeSet::new(),
            })),
            faults,
        }
    }
}

impl Storage for MemoryStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let children = state
            .dirs
            .iter()
            .chain(state.files.keys())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned));
        Ok(children.collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state();
        state.dirs.contains(path) || state.files.contains_key(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        match (mode, state.files.get(path)) {
            (OpenMode::Existing, Some(file)) => Ok(Box::new(file.clone())),
            (OpenMode::Existing, None) => Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            )),
            (OpenMode::CreateNew, None) => {
                self.faults.check(Fault::Create)?;
                let file = Arc::new(MemFile {
                    contents: Mutex::default(),
                    faults: self.faults.clone(),
                });
                state.files.insert(path.to_path_buf(), file.clone());
                Ok(Box::new(file))
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Fault::Rename)?;
        let mut state = self.state();
        if let Some(file) = state.files.remove(from) {
            state.files.insert(to.to_path_buf(), file);
            return Ok(());
        }
        if !state.dirs.contains(from) {
            return Err(not_found(from));
        }
        // A directory: move it and everything below it.
        let moved = |p: &Path| p.strip_prefix(from).ok().map(|rest| to.join(rest));
        let dirs: Vec<PathBuf> = state.dirs.iter().filter_map(|d| moved(d)).collect();
        state.dirs.retain(|d| !d.starts_with(from));
        state.dirs.extend(dirs);
        let files: Vec<(PathBuf, Arc<MemFile>)> = state
            .files
            .iter()
            .filter_map(|(p, f)| Some((moved(p)?, f.clone())))
            .collect();
        state.files.retain(|p, _| !p.starts_with(from));
        state.files.extend(files);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.check_at(Fault::Remove, path)?;
        let mut state = self.state();
        state
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        state.dirs.retain(|p| !p.starts_with(path));
        state.files.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Fault::SyncDir)?;
        let mut state = self.state();
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let State {
            dirs,
            files,
            durable,
            ..
        } = &mut *state;
        // Entries of this directory, and anything below a child directory that is gone.
        durable.retain(|p, _| {
            let direct = p.parent() == Some(path);
            let orphaned = p.starts_with(path) && !p.parent().is_some_and(|d| dirs.contains(d));
            !direct && !orphaned
        });
        for (p, f) in files.iter() {
            if p.parent() == Some(path) {
                durable.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut state = self.state();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another holder", path.display()),
            ));
        }
        Ok(Box::new(LockGuard {
            state: self.state.clone(),
            path: path.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_bytes_and_names() -> io::Result<()> {
        let fs = MemoryStorage::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir)?;
        let a = fs.open(&dir.join("a"), OpenMode::CreateNew)?;
        a.write_all_at(b"durable", 0)?;
        a.sync_data()?;
        fs.sync_dir(dir)?;
        a.write_all_at(b"-lost", 7)?;
        let b = fs.open(&dir.join("b"), OpenMode::CreateNew)?;
        b.sync_data()?;
        let after = fs.crash(None);
        assert!(!after.exists(&dir.join("b")), "unsynced name survived");
        let a = after.open(&dir.join("a"), OpenMode::Existing)?;
        let mut buf = vec![0; a.len()? as usize];
        a.read_exact_at(&mut buf, 0)?;
        assert_eq!(buf, b"durable");
        Ok(())
    }

    #[test]
    fn lock_is_exclusive_until_dropped() -> io::Result<()> {
        let fs = MemoryStorage::new();
        let guard = fs.lock(Path::new("/LOCK"))?;
        assert!(fs.lock(Path::new("/LOCK")).is_err());
        drop(guard);
        fs.lock(Path::new("/LOCK")).map(drop)
    }
}
