//! The engine's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the log engine. Each variant says what happened in terms of
/// the engine's model; I/O failures keep their source and the path they concern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A stream or consumer name outside the allowed alphabet or length.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named ("stream", "consumer").
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No stream of that name.
    #[error("stream {0:?} does not exist")]
    StreamNotFound(String),
    /// A stream of that name exists already.
    #[error("stream {0:?} already exists")]
    StreamExists(String),
    /// A partition number beyond the stream's partitions.
    #[error("partition {partition} does not exist: the stream has {count} partition(s)")]
    PartitionNotFound {
        /// The partition asked for.
        partition: u32,
        /// How many the stream has.
        count: u32,
    },
    /// The offset asked for was removed by retention.
    #[error(
        "offset {requested} is older than the retention horizon; the earliest offset is {earliest}"
    )]
    Expired {
        /// The offset asked for.
        requested: u64,
        /// The earliest offset still held.
        earliest: u64,
    },
    /// The offset asked for is past the end of the partition.
    #[error("offset {requested} is beyond the end of the partition (the next offset is {next})")]
    BeyondEnd {
        /// The offset asked for.
        requested: u64,
        /// The offset the next record will get.
        next: u64,
    },
    /// Data on disk fails its checks before the last durable point.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position of the bad data.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// An fsync failed earlier: the log acknowledges nothing more until it is reopened.
    #[error("the log stopped after a failed fsync ({0}); reopen it to recover")]
    Poisoned(String),
    /// Another process holds the data directory.
    #[error("{path} is in use by another process (lock held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A batch larger than the engine accepts.
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A setting out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

/// Result with [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
