//! Durable consumer checkpoints: for each consumer of a stream, the next offset to read in
//! each partition. One small file per consumer, replaced atomically (write, fsync, rename,
//! fsync directory) and checked with a CRC on load.
//!
//! The value kept per partition is generic: the engine's own streams keep a `u64` offset;
//! a client of another provider (Kinesis, whose sequence numbers are 56-digit decimals) can
//! keep its checkpoints here too, as strings, with [`CheckpointFiles::open_dir`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::name::validate_name;
use crate::{framed_file, Clock, Result, Storage};

const MAGIC: &[u8; 8] = b"CSCKPT01";
const EXT: &str = ".ckpt";

/// A consumer's position: the next offset to read (or another resume point `V`), per
/// partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint<V = u64> {
    /// Partition → next offset to read.
    pub offsets: BTreeMap<u32, V>,
    /// When the checkpoint was last written (ms since the Unix epoch).
    pub updated_ms: i64,
}

impl<V> Default for SavedCheckpoint<V> {
    fn default() -> Self {
        SavedCheckpoint {
            offsets: BTreeMap::new(),
            updated_ms: 0,
        }
    }
}

/// The checkpoints of one stream's consumers.
#[derive(Debug)]
pub struct CheckpointFiles<V = u64> {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    cache: Mutex<BTreeMap<String, SavedCheckpoint<V>>>,
}

impl<V: Clone + Serialize + DeserializeOwned> CheckpointFiles<V> {
    /// Opens (creating it if needed) a directory of checkpoints outside any engine stream,
    /// for a provider whose records live elsewhere.
    pub fn open_dir(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if !storage.exists(&dir) {
            storage.create_dir_all(&dir).at(&dir)?;
            if let Some(parent) = dir.parent() {
                storage.sync_dir(parent).at(parent)?;
            }
        }
        Self::open(dir, storage, clock)
    }

    pub(crate) fn open(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mut cache = BTreeMap::new();
        for file in storage.list_dir(&dir).at(&dir)? {
            if let Some(name) = file.strip_suffix(EXT) {
                if validate_name("consumer", name).is_ok() {
                    let checkpoint = framed_file::read(&*storage, &dir.join(&file), MAGIC)?;
                    cache.insert(name.to_owned(), checkpoint);
                }
            }
        }
        Ok(CheckpointFiles {
            dir,
            storage,
            clock,
            cache: Mutex::new(cache),
        })
    }

    fn cache(&self) -> MutexGuard<'_, BTreeMap<String, SavedCheckpoint<V>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumer's checkpoint, if it ever committed.
    pub fn load(&self, consumer: &str) -> Result<Option<SavedCheckpoint<V>>> {
        validate_name("consumer", consumer)?;
        Ok(self.cache().get(consumer).cloned())
    }

    /// Sets the next offset of the given partitions (others keep theirs) and makes it durable
    /// before returning.
    pub fn commit(&self, consumer: &str, offsets: &[(u32, V)]) -> Result<SavedCheckpoint<V>> {
        validate_name("consumer", consumer)?;
        let mut cache = self.cache();
        let mut checkpoint = cache.get(consumer).cloned().unwrap_or_default();
        checkpoint.offsets.extend(offsets.iter().cloned());
        checkpoint.updated_ms = self.clock.now_ms();
        let file = format!("{consumer}{EXT}");
        framed_file::write(&*self.storage, &self.dir, &file, MAGIC, &checkpoint)?;
        cache.insert(consumer.to_owned(), checkpoint.clone());
        Ok(checkpoint)
    }

    /// Every consumer with a checkpoint.
    pub fn list(&self) -> Vec<(String, SavedCheckpoint<V>)> {
        self.cache()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets a consumer; returns whether it existed.
    pub fn delete(&self, consumer: &str) -> Result<bool> {
        validate_name("consumer", consumer)?;
        let mut cache = self.cache();
        if cache.remove(consumer).is_none() {
            return Ok(false);
        }
        let path = self.dir.join(format!("{consumer}{EXT}"));
        self.storage.remove_file(&path).at(&path)?;
        self.storage.sync_dir(&self.dir).at(&self.dir)?;
        Ok(true)
    }
}
