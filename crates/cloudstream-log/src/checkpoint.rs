//! Durable consumer checkpoints: for each consumer of a stream, the next offset to read in
//! each partition. One small file per consumer, replaced atomically (write, fsync, rename,
//! fsync directory) and checked with a CRC on load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::name::validate_name;
use crate::{framed_file, Clock, Result, Storage};

const MAGIC: &[u8; 8] = b"CSCKPT01";
const EXT: &str = ".ckpt";

/// A consumer's position: the next offset to read, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Partition → next offset to read.
    pub offsets: BTreeMap<u32, u64>,
    /// When the checkpoint was last written (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// The checkpoints of one stream's consumers.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    cache: Mutex<BTreeMap<String, Checkpoint>>,
}

impl CheckpointStore {
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
        Ok(CheckpointStore {
            dir,
            storage,
            clock,
            cache: Mutex::new(cache),
        })
    }

    fn cache(&self) -> MutexGuard<'_, BTreeMap<String, Checkpoint>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumer's checkpoint, if it ever committed.
    pub fn load(&self, consumer: &str) -> Result<Option<Checkpoint>> {
        validate_name("consumer", consumer)?;
        Ok(self.cache().get(consumer).cloned())
    }

    /// Sets the next offset of the given partitions (others keep theirs) and makes it durable
    /// before returning.
    pub fn commit(&self, consumer: &str, offsets: &[(u32, u64)]) -> Result<Checkpoint> {
        validate_name("consumer", consumer)?;
        let mut cache = self.cache();
        let mut checkpoint = cache.get(consumer).cloned().unwrap_or_default();
        checkpoint.offsets.extend(offsets.iter().copied());
        checkpoint.updated_ms = self.clock.now_ms();
        let file = format!("{consumer}{EXT}");
        framed_file::write(&*self.storage, &self.dir, &file, MAGIC, &checkpoint)?;
        cache.insert(consumer.to_owned(), checkpoint.clone());
        Ok(checkpoint)
    }

    /// Every consumer with a checkpoint.
    pub fn list(&self) -> Vec<(String, Checkpoint)> {
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
