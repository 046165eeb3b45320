//! Leases for consumer groups: which member of a group reads which partition.
//!
//! A group is a consumer name; its members are the processes (or handles) that fetch under
//! that name with [`crate::Consumer::member`]. Leases live in the backend's checkpoint
//! store; the DynamoDB store compares wall clocks, so members' clocks must agree to well
//! within a lease's time to live. Every lease has a name, an owner and an expiry:
//! `member:ID` is a member's heartbeat, `partition:N` says who reads partition N. A lease is
//! taken when it is free, expired, or already the taker's; otherwise the taker is refused.
//! How a backend stores them: in memory for the embedded engine (one process owns a data
//! directory), a DynamoDB table with conditional writes for Kinesis, as the Kinesis Client
//! Library does.
//!
//! [`balance`] is the protocol every member runs on each fetch: renew what it holds, count
//! the live members, take free partitions up to its fair share, and give back the ones above
//! it (after committing them), so partitions spread evenly and a member that stops renewing
//! loses its partitions to the others when its leases expire.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::checkpoint::store_of;
use crate::{Result, Stream};

/// The lease naming a member's heartbeat.
pub(crate) fn member_lease(member: &str) -> String {
    format!("member:{member}")
}

/// The lease naming the reader of a partition.
pub(crate) fn partition_lease(partition: u32) -> String {
    format!("partition:{partition}")
}

/// (stream, group, lease name) → (owner, expiry).
type Table = HashMap<(String, String, String), (String, Instant)>;

/// An in-process lease table, for backends whose data one process owns.
#[derive(Debug, Default)]
pub(crate) struct MemoryLeases {
    table: Mutex<Table>,
}

impl MemoryLeases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes or renews a lease; whether `member` holds it afterwards.
    pub(crate) fn take_lease(
        &self,
        stream: &str,
        group: &str,
        name: &str,
        member: &str,
        ttl: Duration,
    ) -> bool {
        let now = Instant::now();
        let key = (stream.to_owned(), group.to_owned(), name.to_owned());
        let mut table = self.lock();
        if let Some((owner, expires)) = table.get(&key) {
            if owner != member && *expires > now {
                return false;
            }
        }
        table.insert(key, (member.to_owned(), now + ttl));
        true
    }

    /// Gives a lease back, if `member` holds it.
    pub(crate) fn release_lease(&self, stream: &str, group: &str, name: &str, member: &str) {
        let key = (stream.to_owned(), group.to_owned(), name.to_owned());
        let mut table = self.lock();
        if table.get(&key).is_some_and(|(owner, _)| owner == member) {
            table.remove(&key);
        }
    }

    /// The unexpired leases of a group: name → owner.
    pub(crate) fn live_leases(&self, stream: &str, group: &str) -> BTreeMap<String, String> {
        let now = Instant::now();
        let mut table = self.lock();
        table.retain(|_, (_, expires)| *expires > now);
        table
            .iter()
            .filter(|((s, g, _), _)| s == stream && g == group)
            .map(|((_, _, name), (owner, _))| (name.clone(), owner.clone()))
            .collect()
    }

    /// Forgets every lease of a stream (when it is deleted).
    pub(crate) fn forget_stream(&self, stream: &str) {
        self.lock().retain(|(s, _, _), _| s != stream);
    }
}

/// What one round of [`balance`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Partitions taken this round: read them from the group's checkpoint.
    pub(crate) gained: Vec<u32>,
    /// Partitions another member holds now (this member's leases expired): forget them.
    pub(crate) lost: Vec<u32>,
    /// Partitions above the fair share, given back (the caller committed them first).
    pub(crate) released: Vec<u32>,
}

/// Renews `member`'s heartbeat and the leases of the partitions it holds; returns (and
/// removes from `held`) those another member took after they expired.
pub(crate) async fn renew(
    stream: &Stream,
    group: &str,
    member: &str,
    ttl: Duration,
    held: &mut BTreeSet<u32>,
) -> Result<Vec<u32>> {
    let store = store_of(stream.backend().as_ref())?;
    let name = stream.name();
    store
        .take_lease(name, group, &member_lease(member), member, ttl)
        .await?;
    let mut lost = Vec::new();
    for &p in held.iter() {
        if !store
            .take_lease(name, group, &partition_lease(p), member, ttl)
            .await?
        {
            lost.push(p);
        }
    }
    for p in &lost {
        held.remove(p);
    }
    Ok(lost)
}

/// One round of the group protocol for `member`, which holds `held`. The caller must have
/// committed everything it fetched from `held` before calling, since partitions above the
/// fair share are given back here.
pub(crate) async fn balance(
    stream: &Stream,
    group: &str,
    member: &str,
    ttl: Duration,
    held: &mut BTreeSet<u32>,
) -> Result<Change> {
    let store = store_of(stream.backend().as_ref())?;
    let name = stream.name();
    let mut change = Change {
        lost: renew(stream, group, member, ttl, held).await?,
        ..Change::default()
    };
    let live = store.live_leases(name, group).await?;
    let members = live
        .keys()
        .filter(|k| k.starts_with("member:"))
        .count()
        .max(1);
    let partitions = stream.partitions();
    let fair = partitions.div_ceil(members as u32) as usize;
    while held.len() > fair {
        let Some(p) = held.pop_last() else { break };
        store
            .release_lease(name, group, &partition_lease(p), member)
            .await?;
        change.released.push(p);
    }
    for p in 0..partitions {
        if held.len() >= fair {
            break;
        }
        // A partition whose live lease is already this member's (a handle of the same
        // member made anew, as after a restart) is taken back at once, as Kafka's static
        // members do; one another member holds live is left to it.
        let owner = live.get(&partition_lease(p));
        if held.contains(&p) || owner.is_some_and(|o| o != member) {
            continue;
        }
        if store
            .take_lease(name, group, &partition_lease(p), member, ttl)
            .await?
        {
            held.insert(p);
            change.gained.push(p);
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_until_it_expires_or_is_released() {
        let leases = MemoryLeases::default();
        let ttl = Duration::from_millis(50);
        assert!(leases.take_lease("s", "g", "partition:0", "a", ttl));
        assert!(
            !leases.take_lease("s", "g", "partition:0", "b", ttl),
            "held by a"
        );
        assert!(
            leases.take_lease("s", "g", "partition:0", "a", ttl),
            "renewed"
        );
        assert!(
            leases.take_lease("s", "other", "partition:0", "b", ttl),
            "groups are separate"
        );
        std::thread::sleep(ttl * 2);
        assert!(leases.live_leases("s", "g").is_empty(), "expired");
        assert!(
            leases.take_lease("s", "g", "partition:0", "b", ttl),
            "taken over"
        );
        leases.release_lease("s", "g", "partition:0", "a");
        assert_eq!(
            leases
                .live_leases("s", "g")
                .get("partition:0")
                .map(String::as_str),
            Some("b"),
            "only the owner releases"
        );
        leases.release_lease("s", "g", "partition:0", "b");
        assert!(leases.live_leases("s", "g").is_empty());
    }
}
