//! Streams: create, describe, list, delete, and trimming to the horizon.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

use super::keys::{self, EntryId};
use super::{fields, number, redis_error, text, RedisBackend};
use crate::backend::{PartitionInfo, StreamConfig, StreamInfo};
use crate::{Error, Result};

/// Most partitions per stream.
pub(super) const MAX_PARTITIONS: u32 = 1024;

/// Shortest and longest horizon: trimming by id works at any scale.
pub(super) const HORIZONS: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(100 * 365 * 24 * 3600),
);

/// One partition as `XINFO STREAM` describes it.
#[derive(Debug, Clone, Default)]
pub(super) struct Extent {
    /// Entries held.
    pub(super) length: u64,
    /// Entries ever added.
    pub(super) added: u64,
    /// The oldest entry's id, if any is held.
    pub(super) first: Option<EntryId>,
    /// The newest id ever given.
    pub(super) last_generated: EntryId,
}

impl Extent {
    /// Reads an `XINFO STREAM` reply.
    pub(super) fn parse(reply: Value) -> Result<Extent> {
        let f = fields(reply);
        let id = |name: &str| -> Result<Option<EntryId>> {
            match f.get(name) {
                Some(Value::Array(entry)) => entry
                    .first()
                    .and_then(text)
                    .map(|t| EntryId::parse(&t))
                    .transpose(),
                Some(v) => text(v).map(|t| EntryId::parse(&t)).transpose(),
                None => Ok(None),
            }
        };
        let count = |name: &str| f.get(name).and_then(number).unwrap_or(0).max(0) as u64;
        Ok(Extent {
            length: count("length"),
            added: count("entries-added"),
            first: id("first-entry")?,
            last_generated: id("last-generated-id")?.unwrap_or(EntryId::ZERO),
        })
    }

    /// Whether entries were removed from the partition (trimmed or deleted).
    pub(super) fn lost_entries(&self) -> bool {
        self.added > self.length
    }
}

impl RedisBackend {
    /// A stream's partition count; [`Error::StreamNotFound`] if there is no stream.
    pub(super) async fn partition_count(&self, stream: &str) -> Result<u32> {
        cloudstream_log::validate_name("stream", stream)?;
        let n: Option<u32> = redis::cmd("HGET")
            .arg(keys::meta(stream))
            .arg("partitions")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, stream))?;
        n.ok_or_else(|| Error::StreamNotFound {
            stream: stream.to_owned(),
        })
    }

    /// The error for a partition key found missing: the stream is gone, or never had it.
    pub(super) async fn missing_partition(&self, stream: &str, partition: u32) -> Error {
        match self.partition_count(stream).await {
            Ok(partitions) => Error::PartitionNotFound {
                stream: stream.to_owned(),
                partition,
                partitions,
            },
            Err(e) => e,
        }
    }

    /// A partition's extent.
    pub(super) async fn extent(&self, stream: &str, partition: u32) -> Result<Extent> {
        let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(keys::partition(stream, partition))
            .query_async(&mut self.conn())
            .await;
        match reply {
            Ok(reply) => Extent::parse(reply),
            Err(e) if is_no_such_key(&e) => Err(self.missing_partition(stream, partition).await),
            Err(e) => Err(redis_error(e, stream)),
        }
    }

    pub(super) async fn create(&self, name: &str, config: &StreamConfig) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        config.check("Redis", HORIZONS, MAX_PARTITIONS)?;
        let mut call = self.scripts.create.prepare_invoke();
        call.key(keys::STREAMS).key(keys::meta(name));
        for key in keys::partitions(name, config.partitions) {
            call.key(key);
        }
        call.arg(name)
            .arg(config.horizon.as_millis() as u64)
            .arg(config.partitions);
        let made: i64 = self.run(call, name).await?;
        if made == 0 {
            return Err(Error::StreamExists {
                stream: name.to_owned(),
            });
        }
        self.describe(name).await
    }

    pub(super) async fn describe(&self, name: &str) -> Result<StreamInfo> {
        cloudstream_log::validate_name("stream", name)?;
        let meta: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::meta(name))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, name))?;
        let (Some(partitions), Some(horizon_ms)) = (
            meta.get("partitions").and_then(|p| p.parse::<u32>().ok()),
            meta.get("horizon_ms").and_then(|h| h.parse::<u64>().ok()),
        ) else {
            return Err(Error::StreamNotFound {
                stream: name.to_owned(),
            });
        };
        let mut infos = Vec::with_capacity(partitions as usize);
        let mut entries = 0;
        for p in 0..partitions {
            let extent = self.extent(name, p).await?;
            entries += extent.length;
            infos.push(PartitionInfo {
                partition: p,
                id: keys::partition(name, p),
                earliest: extent.first.map(EntryId::sequence),
                next: None,
                bytes: None,
            });
        }
        let s = &self.server;
        let details = BTreeMap::from([
            ("entries".to_owned(), entries.to_string()),
            ("redis_version".to_owned(), s.version.clone()),
            ("appendonly".to_owned(), s.appendonly.clone()),
            ("appendfsync".to_owned(), s.appendfsync.clone()),
            ("maxmemory-policy".to_owned(), s.maxmemory_policy.clone()),
        ]);
        Ok(StreamInfo {
            name: name.to_owned(),
            horizon_ms,
            partitions: infos,
            resource: format!(
                "{}/{}/{}",
                self.options.host,
                self.options.db,
                keys::meta(name)
            ),
            details,
        })
    }

    pub(super) async fn list(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::STREAMS)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "streams"))?;
        names.sort();
        Ok(names)
    }

    pub(super) async fn delete(&self, name: &str) -> Result<()> {
        // The script deletes only if it was named every partition the stream has now: a
        // count read before another client made the stream anew is read again.
        for _ in 0..5 {
            let partitions = self.partition_count(name).await?;
            let mut call = self.scripts.delete.prepare_invoke();
            call.key(keys::STREAMS)
                .key(keys::meta(name))
                .key(keys::lease_groups(name));
            for key in keys::partitions(name, partitions) {
                call.key(key);
            }
            call.arg(name);
            match self.run::<i64>(call, name).await? {
                1 => return Ok(()),
                -1 => {
                    return Err(Error::StreamNotFound {
                        stream: name.to_owned(),
                    })
                }
                _ => continue,
            }
        }
        Err(Error::Unavailable(
            format!("{name} kept changing its partitions while being deleted").into(),
        ))
    }

    /// Trims every stream's partitions to its horizon (the background pass).
    pub(super) async fn trim_all(&self) -> Result<()> {
        for name in self.list().await? {
            let partitions = match self.partition_count(&name).await {
                Ok(n) => n,
                Err(Error::StreamNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut call = self.scripts.trim.prepare_invoke();
            call.key(keys::meta(&name));
            for key in keys::partitions(&name, partitions) {
                call.key(key);
            }
            let _gone: i64 = self.run(call, &name).await?;
        }
        Ok(())
    }
}

/// Whether a Redis error says the key does not exist.
pub(super) fn is_no_such_key(e: &redis::RedisError) -> bool {
    e.to_string().contains("no such key")
}
