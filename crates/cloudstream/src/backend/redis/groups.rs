//! `consumers=groups`: named consumers read through Redis consumer groups, as Redis users do,
//! instead of from checkpoints (the default).
//!
//! | cloudstream | Redis |
//! |---|---|
//! | consumer `NAME` | consumer group `NAME` on every partition, created at `Earliest` (`0`), `Latest` (`$`) or a time by the first pull |
//! | this client | one Redis consumer of each group, `cs-<pid>-<random>` |
//! | pull | first the entries of members that died (`XAUTOCLAIM`, idle over `claim_idle_ms`), else new ones (`XREADGROUP ... >`, `BLOCK` on a connection of its own) |
//! | acknowledge | `XACK` |
//! | give back (a dropped batch) | the entry made claimable at once (`XCLAIM ... IDLE claim_idle_ms`): the next pull of any member takes it |
//! | a record in hand | its idle time reset every third of `claim_idle_ms`, so no member takes it over while this one works on it |
//!
//! Acknowledgements go through one settlement task per backend, which sends them in
//! batches; a pull first waits until those made before it are on the server, so a batch
//! given back is there for the next pull. Resetting an entry's idle time (to keep it, or to
//! give it back) goes through a script that first checks the entry is still this client's.
//!
//! Order: entries of one partition reach one member in order; members in several processes
//! share a group's entries without order between them (as `XREADGROUP` does), and a given
//! back entry comes again before newer ones.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisResult, Value};
use tokio::sync::mpsc;

use super::errors::says;
use super::keys::{self, EntryId};
use super::read::{entries, read_streams, to_record};
use super::{redis_error, text, RedisBackend};
use crate::backend::settle::{Settling, SETTLE_WAIT};
use crate::backend::{Acker, Delivery, Subscriptions};
use crate::consumer::StartAt;
use crate::{Error, Result};

/// What becomes of an entry handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Settle {
    Ack,
    GiveBack,
}

/// One entry to settle: its partition's key, the group, its id.
#[derive(Debug)]
pub(super) struct Settlement {
    key: String,
    group: String,
    id: String,
    how: Settle,
}

/// Entries handed out and not settled: (partition key, group) → ids.
type InHand = HashMap<(String, String), BTreeSet<String>>;

/// The consumer-group side of a backend in `consumers=groups` mode.
pub(super) struct Groups {
    /// This client's consumer name in every group.
    pub(super) me: String,
    claim_idle: Duration,
    /// (stream, group) whose groups exist on every partition.
    subscribed: Mutex<HashSet<(String, String)>>,
    /// Where each (key, group)'s `XAUTOCLAIM` goes on.
    cursors: Mutex<HashMap<(String, String), String>>,
    /// Entries handed out and not settled.
    in_hand: Arc<Mutex<InHand>>,
    settle_tx: mpsc::UnboundedSender<Settlement>,
    /// Settlements queued and not on the server yet.
    pub(super) settling: Arc<Settling>,
}

impl Groups {
    /// The groups side, and the receiver its settlement task reads.
    pub(super) fn new(claim_idle: Duration) -> (Self, mpsc::UnboundedReceiver<Settlement>) {
        let (settle_tx, rx) = mpsc::unbounded_channel();
        let me = format!("cs-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let groups = Groups {
            me,
            claim_idle,
            subscribed: Mutex::default(),
            cursors: Mutex::default(),
            in_hand: Arc::default(),
            settle_tx,
            settling: Arc::default(),
        };
        (groups, rx)
    }

    /// The acknowledgement of one entry handed out.
    fn acker(&self, key: String, group: String, id: String) -> Acker {
        lock(&self.in_hand)
            .entry((key.clone(), group.clone()))
            .or_default()
            .insert(id.clone());
        let (tx, settling, in_hand) = (
            self.settle_tx.clone(),
            self.settling.clone(),
            self.in_hand.clone(),
        );
        Acker::new(Box::new(move |ok| {
            if let Some(ids) = lock(&in_hand).get_mut(&(key.clone(), group.clone())) {
                ids.remove(&id);
            }
            let how = if ok { Settle::Ack } else { Settle::GiveBack };
            settling.begin();
            if tx
                .send(Settlement {
                    key,
                    group,
                    id,
                    how,
                })
                .is_err()
            {
                settling.end(1);
            }
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The partition a key names (`cloudstream:{S}:N`).
fn partition_of(key: &str) -> Option<u32> {
    key.rsplit(':').next()?.parse().ok()
}

/// What the settlement task needs: its own connection and script, so that it finishes the
/// acknowledgements queued even after the backend is dropped (it ends once every acker is
/// gone).
pub(super) struct Settler {
    pub(super) conn: redis::aio::ConnectionManager,
    pub(super) refresh: redis::Script,
    pub(super) me: String,
    pub(super) claim_idle: Duration,
    pub(super) settling: Arc<Settling>,
}

/// Settles entries in batches, in the order they were settled, until every sender is gone.
pub(super) async fn settle_forever(
    mut settler: Settler,
    mut rx: mpsc::UnboundedReceiver<Settlement>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let n = batch.len();
        let mut by: BTreeMap<(String, String, Settle), Vec<String>> = BTreeMap::new();
        for s in batch {
            by.entry((s.key, s.group, s.how)).or_default().push(s.id);
        }
        let mut failure = None;
        for ((key, group, how), ids) in by {
            let done = match how {
                Settle::Ack => {
                    let mut cmd = redis::cmd("XACK");
                    cmd.arg(&key).arg(&group).arg(&ids);
                    cmd.query_async::<i64>(&mut settler.conn).await.map(drop)
                }
                Settle::GiveBack => {
                    let idle = settler.claim_idle;
                    refresh(
                        &mut settler.conn,
                        &settler.refresh,
                        &key,
                        &group,
                        &settler.me,
                        &ids,
                        idle,
                    )
                    .await
                }
            };
            if let Err(e) = done {
                tracing::warn!(key, group, error = %e, "settling Redis entries failed; they stay pending and are claimed again");
                failure = Some(e.to_string());
            }
        }
        match failure {
            Some(why) => settler.settling.failed(n, why),
            None => settler.settling.end(n),
        }
    }
}

/// Sets the idle time of `me`'s entries among `ids` (those another consumer took over are
/// left alone).
async fn refresh(
    conn: &mut redis::aio::ConnectionManager,
    script: &redis::Script,
    key: &str,
    group: &str,
    me: &str,
    ids: &[String],
    idle: Duration,
) -> redis::RedisResult<()> {
    let mut call = script.prepare_invoke();
    call.key(key)
        .arg(group)
        .arg(me)
        .arg(idle.as_millis() as u64);
    for id in ids {
        call.arg(id);
    }
    call.invoke_async::<i64>(conn).await.map(drop)
}

/// Resets the idle time of the entries in hand every third of `claim_idle`, so no other
/// member takes them over while this one works on them.
pub(super) async fn keep_in_hand(backend: Weak<RedisBackend>, claim_idle: Duration) {
    loop {
        tokio::time::sleep(claim_idle / 3).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let Some(groups) = &backend.groups else {
            return;
        };
        let held: Vec<((String, String), Vec<String>)> = lock(&groups.in_hand)
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(k, ids)| (k.clone(), ids.iter().cloned().collect()))
            .collect();
        let mut conn = backend.conn();
        for ((key, group), ids) in held {
            let (script, me) = (&backend.scripts.refresh, &groups.me);
            let kept = refresh(&mut conn, script, &key, &group, me, &ids, Duration::ZERO).await;
            if let Err(e) = kept {
                tracing::warn!(key, group, error = %e, "entries in hand not kept; another member may take them");
            }
        }
    }
}

/// `BUSYGROUP`: the group exists already.
fn exists(e: &redis::RedisError) -> bool {
    says(e, "BUSYGROUP") || e.to_string().contains("BUSYGROUP")
}

impl RedisBackend {
    fn groups(&self) -> Result<&Groups> {
        self.groups.as_ref().ok_or_else(|| Error::Unsupported {
            operation: "subscriptions (this client reads consumers from checkpoints)".into(),
            backend: "redis",
        })
    }

    /// The error of a group command: a group deleted meanwhile (by another client, or with
    /// its stream) is forgotten, so the next pull makes it again, and reported as
    /// [`Error::ConsumerNotFound`].
    fn group_error(&self, e: redis::RedisError, stream: &str, group: &str) -> Error {
        if !says(&e, "NOGROUP") {
            return redis_error(e, stream);
        }
        if let Some(groups) = &self.groups {
            lock(&groups.subscribed).remove(&(stream.to_owned(), group.to_owned()));
            lock(&groups.cursors).retain(|(_, g), _| g != group);
        }
        Error::ConsumerNotFound {
            stream: stream.to_owned(),
            consumer: group.to_owned(),
        }
    }

    /// Makes consumer group `group` on every partition, where it is missing.
    async fn ensure_groups(&self, stream: &str, group: &str, start: StartAt) -> Result<()> {
        let groups = self.groups()?;
        let pair = (stream.to_owned(), group.to_owned());
        if lock(&groups.subscribed).contains(&pair) {
            return Ok(());
        }
        let partitions = self.partition_count(stream).await?;
        let from = match start {
            StartAt::Earliest => "0".to_owned(),
            StartAt::Latest => "$".to_owned(),
            StartAt::AtTime(t) => {
                let ms = crate::event::to_millis(t).max(0) as u64;
                EntryId::at_millis(ms).previous().to_string()
            }
        };
        for key in keys::partitions(stream, partitions) {
            let made: RedisResult<String> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(group)
                .arg(&from)
                .query_async(&mut self.conn())
                .await;
            match made {
                Ok(_) => {}
                Err(e) if exists(&e) => {}
                Err(e) => return Err(redis_error(e, stream)),
            }
        }
        lock(&groups.subscribed).insert(pair);
        Ok(())
    }

    /// Entries of members that died (idle over `claim_idle_ms`), taken over by this client.
    async fn claim_idle(&self, stream: &str, group: &str, max: usize) -> Result<Vec<Delivery>> {
        let groups = self.groups()?;
        let partitions = self.partition_count(stream).await?;
        let mut out = Vec::new();
        for (p, key) in keys::partitions(stream, partitions).into_iter().enumerate() {
            if out.len() >= max {
                break;
            }
            let cursor_key = (key.clone(), group.to_owned());
            let cursor = lock(&groups.cursors)
                .get(&cursor_key)
                .cloned()
                .unwrap_or_else(|| "0-0".to_owned());
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(group)
                .arg(&groups.me)
                .arg(groups.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - out.len())
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.group_error(e, stream, group))?;
            let Value::Array(mut parts) = reply else {
                continue;
            };
            if parts.len() < 2 {
                continue;
            }
            let claimed = entries(parts.swap_remove(1));
            let next = text(&parts[0]).unwrap_or_else(|| "0-0".to_owned());
            lock(&groups.cursors).insert(cursor_key, next);
            for entry in claimed {
                let record = to_record(p as u32, entry)?;
                let id = EntryId::of(record.position.sequence)?.to_string();
                let ack = groups.acker(key.clone(), group.to_owned(), id);
                out.push(Delivery { record, ack });
            }
        }
        Ok(out)
    }

    /// New entries for this client (`XREADGROUP ... >`), waiting up to `wait` for a first.
    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let groups = self.groups()?;
        let partitions = self.partition_count(stream).await?;
        let keys = keys::partitions(stream, partitions);
        let (mut guard, mut conn) = self.blocking_conn(stream).await?;
        // COUNT is per partition: each is asked for its share of `max`, and what comes
        // over `max` is given back below.
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(&groups.me)
            .arg("COUNT")
            .arg(max.div_ceil(keys.len().max(1)));
        if !wait.is_zero() {
            cmd.arg("BLOCK")
                .arg(wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64);
        }
        cmd.arg("STREAMS").arg(&keys);
        for _ in &keys {
            cmd.arg(">");
        }
        let reply: Value = match cmd.query_async(&mut conn).await {
            Ok(reply) => reply,
            // A group missing (deleted by another client): made again by the next pull.
            Err(e) => {
                if says(&e, "NOGROUP") {
                    guard.conn = Some(conn);
                }
                return Err(self.group_error(e, stream, group));
            }
        };
        guard.conn = Some(conn);
        let mut out = Vec::new();
        for (key, found) in read_streams(reply) {
            let Some(p) = partition_of(&key) else {
                continue;
            };
            for entry in found {
                let record = to_record(p, entry)?;
                let id = EntryId::of(record.position.sequence)?.to_string();
                let ack = groups.acker(key.clone(), group.to_owned(), id);
                out.push(Delivery { record, ack });
            }
        }
        // The entries over `max` go back (their ackers dropped), first in line for the next
        // pull, ahead of newer entries of their partitions.
        out.truncate(max);
        Ok(out)
    }
}

#[async_trait]
impl Subscriptions for RedisBackend {
    async fn settle(&self) -> Result<()> {
        self.groups()?.settling.wait(SETTLE_WAIT).await
    }

    async fn subscribe(&self, stream: &str, consumer: &str, start: StartAt) -> Result<()> {
        cloudstream_log::validate_name("consumer", consumer)?;
        self.ensure_groups(stream, consumer, start).await
    }

    async fn pull(
        &self,
        stream: &str,
        consumer: &str,
        start: StartAt,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        cloudstream_log::validate_name("consumer", consumer)?;
        let groups = self.groups()?;
        self.ensure_groups(stream, consumer, start).await?;
        // An acknowledgement that failed is reported by the commit that waits for it; its
        // records simply come again.
        let _ = groups.settling.wait(Duration::from_secs(5)).await;
        let claimed = self.claim_idle(stream, consumer, max).await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        self.read_new(stream, consumer, max, wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_partition() {
        assert_eq!(partition_of("cloudstream:{s}:12"), Some(12));
        assert_eq!(partition_of("cloudstream:{s}"), None);
    }
}
