//! [`LocalCheckpoints`]: checkpoints in the embedded engine's checkpoint files under a
//! local directory, for development without a provider-side store.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cloudstream_log::{CheckpointFiles, FileStorage, SystemClock};

use super::{parse_resume, Checkpoint, CheckpointStore};
use crate::backend::PartitionStart;
use crate::lease::MemoryLeases;
use crate::{Error, Result};

/// Checkpoints in the embedded engine's checkpoint store, one directory per stream under
/// `root`: durable (written, fsynced, renamed) but only as shared as the disk is. Leases
/// live in this process's memory: for development, with the group's members in one process.
#[derive(Debug)]
pub struct LocalCheckpoints {
    root: PathBuf,
    stores: Mutex<BTreeMap<String, Arc<CheckpointFiles<String>>>>,
    leases: MemoryLeases,
}

impl LocalCheckpoints {
    /// The store of directory `root`, shared by every client of this process that names it
    /// (so their leases and cached checkpoints agree).
    pub fn shared(root: PathBuf) -> Result<Arc<Self>> {
        type Registry = Mutex<HashMap<PathBuf, Weak<LocalCheckpoints>>>;
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        std::fs::create_dir_all(&root).map_err(|e| Error::Backend(Box::new(e)))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::Backend(Box::new(e)))?;
        let mut all = REGISTRY
            .get_or_init(Registry::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(store) = all.get(&root).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Arc::new(LocalCheckpoints {
            root: root.clone(),
            stores: Mutex::default(),
            leases: MemoryLeases::default(),
        });
        all.retain(|_, w| w.strong_count() > 0);
        all.insert(root, Arc::downgrade(&store));
        Ok(store)
    }

    fn store(&self, stream: &str) -> Result<Arc<CheckpointFiles<String>>> {
        cloudstream_log::validate_name("stream", stream)?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(stream) {
            return Ok(store.clone());
        }
        let store = Arc::new(CheckpointFiles::open_dir(
            self.root.join(stream),
            Arc::new(FileStorage),
            Arc::new(SystemClock),
        )?);
        stores.insert(stream.to_owned(), store.clone());
        Ok(store)
    }

    /// Runs `f` on the stream's store on the blocking pool (it fsyncs).
    async fn with_store<T: Send + 'static>(
        &self,
        stream: &str,
        f: impl FnOnce(&CheckpointFiles<String>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store(stream)?;
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?
    }
}

fn from_texts(offsets: &BTreeMap<u32, String>) -> Result<Checkpoint> {
    offsets
        .iter()
        .map(|(p, text)| parse_resume(&p.to_string(), text))
        .collect()
}

#[async_trait]
impl CheckpointStore for LocalCheckpoints {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        let consumer = consumer.to_owned();
        let found = self
            .with_store(stream, move |s| Ok(s.load(&consumer)?))
            .await?;
        found.map(|c| from_texts(&c.offsets)).transpose()
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        let consumer = consumer.to_owned();
        let texts: Vec<(u32, String)> = resume.iter().map(|(p, at)| (*p, at.to_string())).collect();
        self.with_store(stream, move |s| {
            s.commit(&consumer, &texts)?;
            Ok(())
        })
        .await
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        let all = self.with_store(stream, |s| Ok(s.list())).await?;
        all.into_iter()
            .map(|(name, c)| Ok((name, from_texts(&c.offsets)?)))
            .collect()
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        let consumer = consumer.to_owned();
        self.with_store(stream, move |s| Ok(s.delete(&consumer)?))
            .await
    }

    async fn delete_stream(&self, stream: &str) -> Result<()> {
        for (consumer, _) in self.list(stream).await? {
            self.delete(stream, &consumer).await?;
        }
        self.leases.forget_stream(stream);
        Ok(())
    }

    async fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        Ok(self.leases.take_lease(stream, group, name, member, ttl))
    }

    async fn release_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        self.leases.release_lease(stream, group, name, member);
        Ok(())
    }

    async fn live_leases(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.leases.live_leases(stream, group))
    }
}
