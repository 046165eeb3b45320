//! Consumer checkpoints: where each named consumer resumes in each partition, kept by a
//! [`CheckpointStore`].
//!
//! A backend whose consumers read partitions from checkpoints hands its store to the
//! consumer runtime through [`crate::backend::Consumption::Checkpoints`]. Where the provider
//! keeps checkpoints itself (the embedded engine, a remote `cloudstream serve`, later Kafka's
//! committed offsets) the backend is its own store; where it keeps none (Kinesis), the
//! `checkpoints=` URL option picks an external one, parsed here once for every backend:
//!
//! | `checkpoints=` | store |
//! |---|---|
//! | `dynamodb` or `dynamodb:TABLE` | `DynamoCheckpoints`, a DynamoDB table (feature `dynamodb`), as the Kinesis Client Library keeps its leases |
//! | `local:DIR` | [`LocalCheckpoints`], the embedded engine's checkpoint files under `DIR` |
//!
//! A store may also hold the leases of consumer groups ([`crate::Consumer::member`]); one that does
//! not refuses them with [`Error::Unsupported`].

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod local;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "dynamodb")]
pub use self::dynamodb::DynamoCheckpoints;
pub use self::local::LocalCheckpoints;
use crate::backend::{Backend, Consumption, PartitionStart};
use crate::{Error, Result};

/// A consumer's checkpoint: partition → where it resumes.
pub type Checkpoint = BTreeMap<u32, PartitionStart>;

/// Where consumers' checkpoints (and group leases) are kept.
#[async_trait]
pub trait CheckpointStore: Debug + Send + Sync {
    /// Short name of the store ("engine", "dynamodb", "local", "http").
    fn kind(&self) -> &'static str;
    /// A consumer's checkpoint, if it ever committed.
    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>>;
    /// Durably sets where the given partitions resume; other partitions keep theirs.
    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()>;
    /// Every consumer of a stream with its checkpoint.
    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>>;
    /// Forgets a consumer; returns whether it existed.
    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool>;
    /// Forgets every consumer (and lease) of a deleted stream. Stores whose checkpoints go
    /// with the stream itself keep this default, which does nothing.
    async fn delete_stream(&self, stream: &str) -> Result<()> {
        let _ = stream;
        Ok(())
    }
    /// Takes or renews lease `name` of consumer group `group` for `member`, until `ttl` from
    /// now; whether `member` holds it afterwards (false: another member holds it and it has
    /// not expired). See [`crate::Consumer::member`].
    async fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let _ = (stream, group, name, member, ttl);
        Err(self.no_leases())
    }
    /// [`CheckpointStore::take_lease`] for several leases of one group at once (a member's
    /// round: its heartbeat and its partitions); whether `member` holds each afterwards.
    /// Stores that can decide several in one call (the Kafka claims log) do.
    async fn take_leases(
        &self,
        stream: &str,
        group: &str,
        names: &[&str],
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>> {
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            held.push(self.take_lease(stream, group, name, member, ttl).await?);
        }
        Ok(held)
    }
    /// Gives lease `name` back, if `member` holds it.
    async fn release_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        let _ = (stream, group, name, member);
        Err(self.no_leases())
    }
    /// The unexpired leases of consumer group `group`: lease name → member.
    async fn live_leases(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        let _ = (stream, group);
        Err(self.no_leases())
    }
    /// The error of a store that keeps no leases.
    fn no_leases(&self) -> Error {
        Error::Unsupported {
            operation: "consumer-group leases".into(),
            backend: self.kind(),
        }
    }
}

/// The checkpoint store of a backend whose consumers read from checkpoints;
/// [`Error::Unsupported`] for one whose consumers use the provider's subscriptions.
pub fn store_of(backend: &dyn Backend) -> Result<&dyn CheckpointStore> {
    match backend.consumption() {
        Consumption::Checkpoints(store) => Ok(store),
        Consumption::Subscriptions(_) => Err(Error::Unsupported {
            operation: "checkpoints (this provider's subscriptions acknowledge instead)".into(),
            backend: backend.name(),
        }),
    }
}

/// An external store of checkpoints, as the `checkpoints=` URL option names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointLocation {
    /// A DynamoDB table, as the Kinesis Client Library keeps its leases.
    DynamoDb {
        /// The table (created on first use if missing).
        table: String,
        /// A DynamoDB endpoint other than the AWS default (`checkpoint_endpoint=`), else the
        /// provider's own endpoint override.
        endpoint: Option<String>,
    },
    /// The embedded engine's checkpoint files in a local directory.
    Local(PathBuf),
}

/// The DynamoDB table used when `checkpoints=dynamodb` names none.
pub const DEFAULT_TABLE: &str = "cloudstream-checkpoints";

impl CheckpointLocation {
    /// Parses the value of `checkpoints=` (`dynamodb`, `dynamodb:TABLE` or `local:DIR`),
    /// with the value of `checkpoint_endpoint=` if one was given.
    pub fn parse(value: &str, endpoint: Option<String>) -> std::result::Result<Self, String> {
        match value.split_once(':') {
            None if value == "dynamodb" => Ok(CheckpointLocation::DynamoDb {
                table: DEFAULT_TABLE.to_owned(),
                endpoint,
            }),
            Some(("dynamodb", table)) if !table.is_empty() => Ok(CheckpointLocation::DynamoDb {
                table: table.to_owned(),
                endpoint,
            }),
            Some(("local", dir)) if !dir.is_empty() => {
                Ok(CheckpointLocation::Local(PathBuf::from(dir)))
            }
            _ => Err(format!(
                "checkpoints must be dynamodb, dynamodb:TABLE or local:DIR, got {value:?}"
            )),
        }
    }

    /// Short name of the store this location opens.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckpointLocation::DynamoDb { .. } => "dynamodb",
            CheckpointLocation::Local(_) => "local",
        }
    }
}

/// Reads one partition's resume point as a store keeps it (`"0"`, `"after:41"`).
pub(crate) fn parse_resume(partition: &str, text: &str) -> Result<(u32, PartitionStart)> {
    let p = partition.parse().map_err(|_| {
        Error::Corrupt(format!("checkpoint names partition {partition:?}, not a number").into())
    })?;
    let at = text
        .parse()
        .map_err(|e| Error::Corrupt(format!("checkpoint of partition {p}: {e}").into()))?;
    Ok((p, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_say_why_not() {
        assert_eq!(
            CheckpointLocation::parse("dynamodb", None),
            Ok(CheckpointLocation::DynamoDb {
                table: DEFAULT_TABLE.into(),
                endpoint: None
            })
        );
        assert_eq!(
            CheckpointLocation::parse("dynamodb:t", Some("http://x".into())),
            Ok(CheckpointLocation::DynamoDb {
                table: "t".into(),
                endpoint: Some("http://x".into())
            })
        );
        assert_eq!(
            CheckpointLocation::parse("local:/tmp/ck", None),
            Ok(CheckpointLocation::Local("/tmp/ck".into()))
        );
        for bad in ["s3", "local:", "dynamodb:", ""] {
            let err = CheckpointLocation::parse(bad, None).expect_err(bad);
            assert!(err.contains("checkpoints must be"), "{bad}: {err}");
        }
    }
}
