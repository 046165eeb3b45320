//! A stream on disk: its settings, its partitions and its consumers' checkpoints.
//!
//! ```text
//! streams/NAME/stream.meta           settings (framed JSON, written last at creation)
//! streams/NAME/partitions/P/*.log    segments of partition P (and .index, .timeindex)
//! streams/NAME/consumers/C.ckpt      checkpoint of consumer C
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointFiles;
use crate::error::IoContext;
use crate::partition::{Partition, PartitionConfig};
use crate::{framed_file, LogError, LogOptions, Result};

const META_MAGIC: &[u8; 8] = b"CSSTRM01";
const META_FILE: &str = "stream.meta";

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 1024;
/// Longest horizon accepted (about 100 years).
pub const MAX_HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The settings of a stream, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// Number of partitions, 1 to [`MAX_PARTITIONS`].
    pub partitions: u32,
    /// How long records are kept, 1 ms to [`MAX_HORIZON`].
    #[serde(with = "millis")]
    pub horizon: Duration,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl StreamConfig {
    /// Checks the settings' ranges.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(LogError::InvalidConfig(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                self.partitions
            )));
        }
        if self.horizon < Duration::from_millis(1) || self.horizon > MAX_HORIZON {
            return Err(LogError::InvalidConfig(format!(
                "horizon must be between 1 ms and 100 years, got {:?}",
                self.horizon
            )));
        }
        Ok(())
    }

    /// Segments roll at this age so retention can remove old records in whole segments while
    /// holding at most an eighth of a horizon more than asked, and at most once a second: a
    /// tiny horizon must not turn a stream of single sends into a file per send.
    fn segment_max_age_ms(&self) -> i64 {
        (self.horizon.as_millis() as i64 / 8).max(MIN_SEGMENT_AGE_MS)
    }
}

/// Shortest age at which a segment rolls.
const MIN_SEGMENT_AGE_MS: i64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    #[serde(flatten)]
    config: StreamConfig,
    created_ms: i64,
}

/// An open stream.
#[derive(Debug)]
pub struct StreamLog {
    name: String,
    config: StreamConfig,
    created_ms: i64,
    partitions: Vec<Partition>,
    checkpoints: CheckpointFiles,
}

fn partition_dir(dir: &Path, p: u32) -> PathBuf {
    dir.join("partitions").join(p.to_string())
}

impl StreamLog {
    /// Creates the stream's directories and metadata durably, then opens it.
    pub(crate) fn create(
        dir: &Path,
        name: &str,
        config: StreamConfig,
        options: &LogOptions,
    ) -> Result<Self> {
        config.validate()?;
        let storage = &*options.storage;
        for p in 0..config.partitions {
            let d = partition_dir(dir, p);
            storage.create_dir_all(&d).at(&d)?;
        }
        let consumers = dir.join("consumers");
        storage.create_dir_all(&consumers).at(&consumers)?;
        for d in [&dir.join("partitions"), dir] {
            storage.sync_dir(d).at(d)?;
        }
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent).at(parent)?;
        }
        let meta = Meta {
            format: 1,
            config,
            created_ms: options.clock.now_ms(),
        };
        framed_file::write(storage, dir, META_FILE, META_MAGIC, &meta)?;
        Self::open(dir, name, options)
    }

    /// Whether `dir` holds a completely created stream.
    pub(crate) fn is_complete(dir: &Path, options: &LogOptions) -> bool {
        options.storage.exists(&dir.join(META_FILE))
    }

    /// Opens an existing stream, recovering each partition.
    pub(crate) fn open(dir: &Path, name: &str, options: &LogOptions) -> Result<Self> {
        let meta: Meta = framed_file::read(&*options.storage, &dir.join(META_FILE), META_MAGIC)?;
        if meta.format != 1 {
            return Err(LogError::Corrupt {
                path: dir.join(META_FILE),
                position: 0,
                reason: format!(
                    "stream format {} is not supported by this build",
                    meta.format
                ),
            });
        }
        meta.config.validate()?;
        let config = PartitionConfig {
            storage: options.storage.clone(),
            clock: options.clock.clone(),
            sync: options.sync,
            segment_bytes: options.segment_bytes,
            segment_max_age_ms: meta.config.segment_max_age_ms(),
            index_interval: options.index_interval_bytes,
            sync_latency: options.sync_latency.clone(),
        };
        let partitions = (0..meta.config.partitions)
            .map(|p| Partition::open(p, &partition_dir(dir, p), config.clone()))
            .collect::<Result<Vec<_>>>()?;
        let checkpoints = CheckpointFiles::open(
            dir.join("consumers"),
            options.storage.clone(),
            options.clock.clone(),
        )?;
        Ok(StreamLog {
            name: name.to_owned(),
            config: meta.config,
            created_ms: meta.created_ms,
            partitions,
            checkpoints,
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's settings.
    pub fn config(&self) -> StreamConfig {
        self.config
    }

    /// When the stream was created (ms since the Unix epoch).
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// All partitions, in order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, p: u32) -> Result<&Partition> {
        self.partitions
            .get(p as usize)
            .ok_or(LogError::PartitionNotFound {
                partition: p,
                count: self.config.partitions,
            })
    }

    /// The stream's consumer checkpoints.
    pub fn checkpoints(&self) -> &CheckpointFiles {
        &self.checkpoints
    }

    /// Removes expired segments from every partition; returns how many were deleted. Each
    /// partition is done on its own: one that fails (logged) does not stop the others, and
    /// the first failure is returned once every partition has had its turn.
    pub fn enforce_retention(&self) -> Result<usize> {
        let mut deleted = 0;
        let mut failed = None;
        for (i, p) in self.partitions.iter().enumerate() {
            match p.enforce_retention(self.config.horizon) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(stream = %self.name, partition = i, error = %e, "retention failed for a partition; the next pass tries again");
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(deleted), Err)
    }

    /// Closes every partition cleanly.
    pub fn close(&self) -> Result<()> {
        let mut result = Ok(());
        for p in &self.partitions {
            if let Err(e) = p.close() {
                result = Err(e);
            }
        }
        result
    }
}
