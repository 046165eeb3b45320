//! Checkpoints as Redis consumer groups: consumer `NAME` is group `NAME` on every partition
//! of the stream, its last delivered id the place it resumes after (`XGROUP SETID`, read
//! back with `XINFO GROUPS`, which also counts the lag). By default the groups are used only
//! for their ids (no entry is read through them, so none is pending); with
//! `consumers=groups` they are read through (`groups.rs`), and the lag counts the entries
//! pending too. Group leases are hashes changed only by scripts on the server's clock.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisResult, Value};

use super::keys::{self, EntryId};
use super::{fields, number, redis_error, text, RedisBackend};
use crate::backend::{ConsumerInfo, PartitionStart};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::Result;

/// One group as `XINFO GROUPS` describes it.
struct Group {
    name: String,
    last_delivered: EntryId,
    /// Entries after its last delivered id, where Redis knows.
    lag: Option<u64>,
    /// Entries delivered and not acknowledged (`consumers=groups`).
    pending: u64,
}

fn groups(reply: Value) -> Result<Vec<Group>> {
    let Value::Array(groups) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let f = fields(g);
        let (Some(name), Some(last)) = (
            f.get("name").and_then(text),
            f.get("last-delivered-id").and_then(text),
        ) else {
            continue;
        };
        out.push(Group {
            name,
            last_delivered: EntryId::parse(&last)?,
            lag: f.get("lag").and_then(number).map(|n| n.max(0) as u64),
            pending: f.get("pending").and_then(number).unwrap_or(0).max(0) as u64,
        });
    }
    Ok(out)
}

impl RedisBackend {
    /// Every group of every partition of a stream: (partition, group).
    async fn partition_groups(&self, stream: &str) -> Result<Vec<(u32, Group)>> {
        let partitions = self.partition_count(stream).await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in keys::partitions(stream, partitions) {
            pipe.cmd("XINFO").arg("GROUPS").arg(key);
        }
        let replies: Vec<RedisResult<Value>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, stream))?;
        let mut out = Vec::new();
        for (p, reply) in replies.into_iter().enumerate() {
            // A partition gone meanwhile has no groups.
            let Ok(reply) = reply else { continue };
            out.extend(groups(reply)?.into_iter().map(|g| (p as u32, g)));
        }
        Ok(out)
    }

    /// Every consumer of a stream with its lag (the `Backend::list_consumers` primitive).
    pub(super) async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        let mut by_name: BTreeMap<String, (Checkpoint, Option<u64>)> = BTreeMap::new();
        for (p, g) in self.partition_groups(stream).await? {
            let entry = by_name
                .entry(g.name)
                .or_insert((Checkpoint::new(), Some(0)));
            entry
                .0
                .insert(p, PartitionStart::After(g.last_delivered.sequence()));
            // Not yet handled: never delivered, or delivered and not acknowledged.
            entry.1 = entry.1.zip(g.lag).map(|(a, b)| a + b + g.pending);
        }
        Ok(by_name
            .into_iter()
            .map(|(name, (committed, lag))| ConsumerInfo {
                name,
                committed,
                lag,
            })
            .collect())
    }
}

/// The last delivered id a group keeps for a resume point (`$`: the partition's end now).
fn last_delivered(start: PartitionStart) -> Result<String> {
    Ok(match start {
        PartitionStart::Earliest => EntryId::ZERO.to_string(),
        PartitionStart::Latest => "$".to_owned(),
        PartitionStart::At(s) => EntryId::of(s)?.previous().to_string(),
        PartitionStart::After(s) => EntryId::of(s)?.to_string(),
        PartitionStart::AtTime(t) => {
            let ms = crate::event::to_millis(t).max(0) as u64;
            EntryId::at_millis(ms).previous().to_string()
        }
    })
}

#[async_trait]
impl CheckpointStore for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, stream: &str, consumer: &str) -> Result<Option<Checkpoint>> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let checkpoint: Checkpoint = self
            .partition_groups(stream)
            .await?
            .into_iter()
            .filter(|(_, g)| g.name == consumer)
            .map(|(p, g)| (p, PartitionStart::After(g.last_delivered.sequence())))
            .collect();
        Ok((!checkpoint.is_empty()).then_some(checkpoint))
    }

    async fn commit(
        &self,
        stream: &str,
        consumer: &str,
        resume: &[(u32, PartitionStart)],
    ) -> Result<()> {
        cloudstream_log::validate_name("stream", stream)?;
        cloudstream_log::validate_name("consumer", consumer)?;
        for &(p, start) in resume {
            let mut call = self.scripts.set_id.prepare_invoke();
            call.key(keys::partition(stream, p))
                .arg(consumer)
                .arg(last_delivered(start)?);
            let _: i64 = self.run(call, stream).await?;
        }
        Ok(())
    }

    async fn list(&self, stream: &str) -> Result<Vec<(String, Checkpoint)>> {
        Ok(self
            .consumers(stream)
            .await?
            .into_iter()
            .map(|c| (c.name, c.committed))
            .collect())
    }

    async fn delete(&self, stream: &str, consumer: &str) -> Result<bool> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let partitions = self.partition_count(stream).await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in keys::partitions(stream, partitions) {
            pipe.cmd("XGROUP").arg("DESTROY").arg(key).arg(consumer);
        }
        let replies: Vec<RedisResult<i64>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, stream))?;
        Ok(replies.into_iter().any(|r| r.is_ok_and(|n| n > 0)))
    }

    async fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let held = self
            .take_leases(stream, group, &[name], member, ttl)
            .await?;
        Ok(held.first().copied().unwrap_or(false))
    }

    async fn take_leases(
        &self,
        stream: &str,
        group: &str,
        names: &[&str],
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<bool>> {
        crate::lease::check_ttl(ttl)?;
        let mut call = self.scripts.take.prepare_invoke();
        call.key(keys::leases(stream, group))
            .key(keys::lease_groups(stream))
            .arg(group)
            .arg(member)
            .arg(ttl.as_millis() as u64);
        for name in names {
            call.arg(*name);
        }
        let held: Vec<i64> = self.run(call, stream).await?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    async fn release_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
    ) -> Result<()> {
        let mut call = self.scripts.release.prepare_invoke();
        call.key(keys::leases(stream, group)).arg(name).arg(member);
        self.run::<i64>(call, stream).await.map(drop)
    }

    async fn live_leases(&self, stream: &str, group: &str) -> Result<BTreeMap<String, String>> {
        let mut call = self.scripts.live.prepare_invoke();
        call.key(keys::leases(stream, group));
        let flat: Vec<String> = self.run(call, stream).await?;
        Ok(flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_become_last_delivered_ids() {
        let s = |text: &str| EntryId::parse(text).expect("id").sequence();
        assert_eq!(
            last_delivered(PartitionStart::At(s("5-0"))).expect("at"),
            "4-18446744073709551615"
        );
        assert_eq!(
            last_delivered(PartitionStart::After(s("5-2"))).expect("after"),
            "5-2"
        );
        assert_eq!(
            last_delivered(PartitionStart::Earliest).expect("earliest"),
            "0-0"
        );
        assert_eq!(last_delivered(PartitionStart::Latest).expect("latest"), "$");
    }
}
