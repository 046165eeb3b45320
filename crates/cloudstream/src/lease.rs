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
//! [`round`] is the protocol every member runs (a consumer on each fetch, a trigger every
//! third of its TTL): renew what it holds, count the live members, take free partitions up
//! to its fair share, and name the ones above it, which the member gives back with
//! [`release`] once it has committed them. Partitions spread evenly, and a member that stops
//! renewing loses its partitions to the others when its leases expire.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::checkpoint::store_of;
use crate::{Error, Result, Stream};

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

/// Shortest lease TTL: a lease must outlive the round trips that renew it.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(100);

/// Longest lease TTL: a member that died holds its partitions at most this long, and the
/// Kafka claims log's replay window is a multiple of it.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);

/// A consumer's (or trigger's) identity within its group, and how long its leases last.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    /// The member's id, unique within the group.
    pub(crate) member: String,
    /// How long its leases outlive its last round.
    pub(crate) ttl: Duration,
}

impl Membership {
    /// Checks the member's id and TTL for consumer group `group`.
    pub(crate) fn check(&self, group: &str) -> Result<()> {
        cloudstream_log::validate_name("consumer", group)?;
        cloudstream_log::validate_name("member", &self.member)?;
        check_ttl(self.ttl)
    }
}

/// Checks a lease TTL: between [`MIN_TTL`] and [`MAX_TTL`].
pub(crate) fn check_ttl(ttl: Duration) -> Result<()> {
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(Error::InvalidArgument(format!(
            "a lease TTL must be between {} ms and {} s, got {} ms",
            MIN_TTL.as_millis(),
            MAX_TTL.as_secs(),
            ttl.as_millis()
        )));
    }
    Ok(())
}

/// What one [`round`] of the group protocol found (partitions gained are those now in the
/// member's `held` without a lane).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Round {
    /// Partitions another member holds now (this member's leases expired): forget them, and
    /// commit nothing more for them.
    pub(crate) lost: Vec<u32>,
    /// Partitions above the fair share, still held: commit what was handled of them, then
    /// give them back with [`release`].
    pub(crate) surplus: Vec<u32>,
}

/// Renews `member`'s heartbeat and the leases of the partitions it holds, in one store call;
/// returns (and removes from `held`) those another member took after they expired.
pub(crate) async fn renew(
    stream: &Stream,
    group: &str,
    m: &Membership,
    held: &mut BTreeSet<u32>,
) -> Result<Vec<u32>> {
    let store = store_of(stream.backend().as_ref())?;
    let mut names = vec![member_lease(&m.member)];
    names.extend(held.iter().map(|&p| partition_lease(p)));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let taken = store
        .take_leases(stream.name(), group, &names, &m.member, m.ttl)
        .await?;
    if taken.len() != names.len() {
        return Err(Error::Backend(
            format!(
                "the lease store answered {} of {} leases",
                taken.len(),
                names.len()
            )
            .into(),
        ));
    }
    let lost: Vec<u32> = held
        .iter()
        .zip(taken.iter().skip(1))
        .filter(|(_, &kept)| !kept)
        .map(|(&p, _)| p)
        .collect();
    for p in &lost {
        held.remove(p);
    }
    Ok(lost)
}

/// One round of the group protocol for member `m`, which holds `held`: [`renew`], then
/// [`share`].
pub(crate) async fn round(
    stream: &Stream,
    group: &str,
    m: &Membership,
    held: &mut BTreeSet<u32>,
) -> Result<Round> {
    let lost = renew(stream, group, m, held).await?;
    let surplus = share(stream, group, m, held).await?;
    Ok(Round { lost, surplus })
}

/// Counts the live members, takes free partitions up to `m`'s share ([`quota`]; in one store
/// call) into `held`, and returns those above it. Partitions spread evenly this way, and a
/// member that stops renewing loses its partitions to the others when its leases expire.
/// Call it right after [`renew`].
pub(crate) async fn share(
    stream: &Stream,
    group: &str,
    m: &Membership,
    held: &mut BTreeSet<u32>,
) -> Result<Vec<u32>> {
    let store = store_of(stream.backend().as_ref())?;
    let name = stream.name();
    let live = store.live_leases(name, group).await?;
    let partitions = stream.partitions();
    let fair = quota(&live, &m.member, partitions);
    if held.len() > fair {
        return Ok(held.iter().rev().take(held.len() - fair).copied().collect());
    }
    // A partition whose live lease is already this member's (a handle of the same member
    // made anew, as after a restart) is taken back at once, as Kafka's static members do;
    // one another member holds live is left to it. Member ids must therefore be unique
    // among live processes.
    let wanted: Vec<u32> = (0..partitions)
        .filter(|p| !held.contains(p))
        .filter(|p| {
            live.get(&partition_lease(*p))
                .is_none_or(|o| *o == m.member)
        })
        .take(fair - held.len())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = wanted.iter().map(|&p| partition_lease(p)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let taken = store
        .take_leases(name, group, &names, &m.member, m.ttl)
        .await?;
    for (&p, &ok) in wanted.iter().zip(&taken) {
        if ok {
            held.insert(p);
        }
    }
    Ok(Vec::new())
}

/// How many partitions `member` should hold, given the live leases: the partitions split
/// evenly, the first `partitions % members` live members (by id) holding one more, so that
/// no member holds two more than another and every partition has a place.
fn quota(live: &BTreeMap<String, String>, member: &str, partitions: u32) -> usize {
    let mut members: Vec<&str> = live
        .keys()
        .filter_map(|k| k.strip_prefix("member:"))
        .collect();
    if !members.contains(&member) {
        members.push(member);
        members.sort_unstable();
    }
    let n = members.len() as u32;
    let rank = members.iter().position(|m| *m == member).unwrap_or(0) as u32;
    (partitions / n + u32::from(rank < partitions % n)) as usize
}

/// Gives back the leases of `partitions` (which the caller committed), and forgets them
/// from `held` even where the store did not answer: they expire by themselves.
pub(crate) async fn release(
    stream: &Stream,
    group: &str,
    member: &str,
    partitions: &[u32],
    held: &mut BTreeSet<u32>,
) -> Result<()> {
    let store = store_of(stream.backend().as_ref())?;
    let mut result = Ok(());
    for &p in partitions {
        held.remove(&p);
        let released = store
            .release_lease(stream.name(), group, &partition_lease(p), member)
            .await;
        result = result.and(released);
    }
    result
}

/// Gives back every lease of a member that stops (its partitions and its heartbeat), best
/// effort: what the store does not take back expires by itself.
pub(crate) async fn leave(stream: &Stream, group: &str, member: &str, held: &mut BTreeSet<u32>) {
    let partitions: Vec<u32> = held.iter().copied().collect();
    let mut left = release(stream, group, member, &partitions, held).await;
    if let Ok(store) = store_of(stream.backend().as_ref()) {
        let heartbeat = store
            .release_lease(stream.name(), group, &member_lease(member), member)
            .await;
        left = left.and(heartbeat);
    }
    if let Err(e) = left {
        tracing::warn!(stream = stream.name(), group, member, error = %e, "leases not given back; they expire by themselves");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_split_evenly_and_every_one_has_a_place() {
        let live = |members: &[&str]| -> BTreeMap<String, String> {
            members
                .iter()
                .map(|m| (member_lease(m), (*m).to_owned()))
                .collect()
        };
        let shares = |members: &[&str], partitions| -> Vec<usize> {
            let l = live(members);
            members.iter().map(|m| quota(&l, m, partitions)).collect()
        };
        assert_eq!(shares(&["a", "b", "c"], 4), [2, 1, 1]);
        assert_eq!(shares(&["a", "b"], 4), [2, 2]);
        assert_eq!(shares(&["a", "b", "c", "d", "e"], 4), [1, 1, 1, 1, 0]);
        assert_eq!(shares(&["a"], 7), [7]);
        assert_eq!(
            quota(&live(&["a", "c"]), "b", 4),
            1,
            "a member not seen yet counts itself"
        );
    }

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
