//! The rule of the claims log that keeps consumer-group leases in Kafka (`leases.rs` moves
//! the claims; this file decides them).
//!
//! A claim asks to take (or renew) a lease for a member for a time to live, or gives one
//! back. Every process replays the same log in the same order and applies this one rule, so
//! all of them reach the same decision about every claim without talking to each other:
//!
//! - a **take** at broker time `T` is granted when the lease is free, already the claimer's,
//!   or expired at `T` (its holder's last granted take plus that take's TTL is not after
//!   `T`); a grant holds until `T + ttl`;
//! - a **release** frees the lease if the releaser holds it, and is otherwise ignored.
//!
//! Time is the claim's own timestamp, which the broker stamps (`LogAppendTime`), so one clock
//! decides every claim (a stamp earlier than one already applied counts as that one). Only
//! [`Ledger::live`], which members use to count each other, reads the host's clock. TTLs above [`MAX_TTL`] are never granted, so a process that starts
//! replaying [`REPLAY_BACK`] before now agrees with every other about every claim made after
//! it started: a lease granted before its replay began has expired an hour into it, and a
//! member claims only a lease it sees free or holds, so any claim the late replay decided
//! otherwise lost its effect by the time the process makes its own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The version of the claims this rule decides. A claim of another version stops the
/// answers: its writer may follow a rule this process does not know.
pub(super) const VERSION: u32 = 1;

/// The longest TTL a claim may ask.
pub(super) const MAX_TTL: Duration = crate::lease::MAX_TTL;

/// How far back a process starts its replay: two of the longest lease lifetimes.
pub(super) const REPLAY_BACK: Duration = Duration::from_secs(2 * MAX_TTL.as_secs());

/// What a claim asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Op {
    /// Take or renew the lease.
    Take,
    /// Give the lease back.
    Release,
}

/// One record of the claims log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Claim {
    /// The rule's version ([`VERSION`]).
    pub(super) v: u32,
    /// Take or release.
    pub(super) op: Op,
    /// The stream, the consumer group and the lease's name within it.
    pub(super) stream: String,
    pub(super) group: String,
    pub(super) lease: String,
    /// Who claims.
    pub(super) member: String,
    /// How long a granted take holds, in milliseconds (0 for a release).
    #[serde(default)]
    pub(super) ttl_ms: u64,
    /// Unique to this claim: how its writer finds the decision in the replay.
    pub(super) nonce: String,
}

/// What a record of the claims log is, as this rule reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// A claim to decide.
    Claim(Claim),
    /// A claim of a version this rule does not know: stop deciding.
    Unknown(u32),
    /// Not a claim at all (another writer's record): every process ignores it alike.
    Foreign,
}

/// Reads one record's payload.
pub(super) fn read(payload: &[u8]) -> Read {
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    match serde_json::from_slice::<Versioned>(payload) {
        Ok(Versioned { v }) if v != VERSION => Read::Unknown(v),
        Ok(_) => serde_json::from_slice(payload).map_or(Read::Foreign, Read::Claim),
        Err(_) => Read::Foreign,
    }
}

/// Who holds a lease, and until when (broker time, ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    owner: String,
    expires_ms: i64,
}

/// The leases as the claims replayed so far decided them.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// (stream, group, lease) → holder.
    leases: HashMap<(String, String, String), Held>,
    /// Claims applied since the last pruning.
    since_prune: usize,
    /// The latest claim time applied: a claim stamped earlier (a clock stepping back, on a
    /// topic stamped by its producers) is decided at this time instead, so time never runs
    /// backwards in the rule and pruning never forgets a lease a later claim could meet.
    clock: i64,
}

/// Claims between two prunings of expired leases.
const PRUNE_EVERY: usize = 4096;

impl Ledger {
    /// Applies a claim appended at `at_ms` (broker time); whether it was granted.
    pub(super) fn apply(&mut self, claim: &Claim, at_ms: i64) -> bool {
        let at_ms = at_ms.max(self.clock);
        self.clock = at_ms;
        self.since_prune += 1;
        if self.since_prune >= PRUNE_EVERY {
            self.prune(at_ms);
        }
        let key = (
            claim.stream.clone(),
            claim.group.clone(),
            claim.lease.clone(),
        );
        match claim.op {
            Op::Take => {
                if claim.ttl_ms == 0 || claim.ttl_ms > MAX_TTL.as_millis() as u64 {
                    return false;
                }
                let free = self
                    .leases
                    .get(&key)
                    .is_none_or(|h| h.owner == claim.member || h.expires_ms <= at_ms);
                if free {
                    let expires_ms = at_ms.saturating_add(claim.ttl_ms as i64);
                    self.leases.insert(
                        key,
                        Held {
                            owner: claim.member.clone(),
                            expires_ms,
                        },
                    );
                }
                free
            }
            Op::Release => {
                let held = self
                    .leases
                    .get(&key)
                    .is_some_and(|h| h.owner == claim.member);
                if held {
                    self.leases.remove(&key);
                }
                held
            }
        }
    }

    /// The leases of a group live at `now_ms`: lease name → member.
    pub(super) fn live(&self, stream: &str, group: &str, now_ms: i64) -> BTreeMap<String, String> {
        self.leases
            .iter()
            .filter(|((s, g, _), h)| s == stream && g == group && h.expires_ms > now_ms)
            .map(|((_, _, lease), h)| (lease.clone(), h.owner.clone()))
            .collect()
    }

    /// Forgets the leases expired at `now_ms`: no later claim can depend on them.
    fn prune(&mut self, now_ms: i64) {
        self.leases.retain(|_, h| h.expires_ms > now_ms);
        self.since_prune = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(op: Op, lease: &str, member: &str, ttl_ms: u64) -> Claim {
        Claim {
            v: VERSION,
            op,
            stream: "s".into(),
            group: "g".into(),
            lease: lease.into(),
            member: member.into(),
            ttl_ms,
            nonce: format!("{member}-{lease}-{ttl_ms}"),
        }
    }

    #[test]
    fn the_log_order_and_the_claims_own_time_decide() {
        let mut l = Ledger::default();
        let take = |m: &str| claim(Op::Take, "partition:0", m, 1000);
        assert!(l.apply(&take("a"), 0), "free");
        assert!(!l.apply(&take("b"), 999), "a holds it until 1000");
        assert!(l.apply(&take("a"), 999), "a renews until 1999");
        assert!(!l.apply(&take("b"), 1500), "renewed");
        assert!(l.apply(&take("b"), 1999), "expired at the claim's own time");
        assert_eq!(l.live("s", "g", 2000)["partition:0"], "b");
        assert!(
            !l.apply(&claim(Op::Release, "partition:0", "a", 0), 2001),
            "only the holder releases"
        );
        assert!(l.apply(&claim(Op::Release, "partition:0", "b", 0), 2002));
        assert!(l.live("s", "g", 2003).is_empty());
        assert!(l.apply(&take("a"), 2003), "free again");
        assert!(l.live("s", "other", 2004).is_empty(), "groups are separate");
        assert!(l.live("s", "g", 3003).is_empty(), "expired");
    }

    #[test]
    fn ttls_out_of_bounds_are_never_granted() {
        let mut l = Ledger::default();
        let over = MAX_TTL.as_millis() as u64 + 1;
        assert!(!l.apply(&claim(Op::Take, "x", "a", over), 0));
        assert!(!l.apply(&claim(Op::Take, "x", "a", 0), 0));
        assert!(l.live("s", "g", 0).is_empty());
    }

    #[test]
    fn a_late_replay_agrees_about_claims_made_after_it_started() {
        // Members with 1-hour leases claim every 10 minutes over 10 hours, as members do:
        // only a lease they see free or hold, so they race for it when it is free. a lives
        // for hours 0-3 and 6-10, b for 0-8, c for 8-10.
        let (hour, step) = (3_600_000_i64, 600_000_i64);
        let alive = |m: &str, t: i64| match m {
            "a" => t < 3 * hour || t >= 6 * hour,
            "b" => t < 8 * hour,
            _ => t >= 8 * hour,
        };
        let mut seen = Ledger::default();
        let mut claims: Vec<(i64, Claim)> = Vec::new();
        for t in (0..10 * hour).step_by(step as usize) {
            // Both look before either claims, so they race for a free lease.
            let holder = seen.live("s", "g", t).get("p").cloned();
            for m in ["a", "b", "c"] {
                if alive(m, t) && holder.as_deref().is_none_or(|h| h == m) {
                    let c = claim(Op::Take, "p", m, hour as u64);
                    seen.apply(&c, t);
                    claims.push((t, c));
                }
            }
        }
        let decide = |from: i64| -> Vec<(i64, bool)> {
            let mut l = Ledger::default();
            claims
                .iter()
                .filter(|(t, _)| *t >= from)
                .map(|(t, c)| (*t, l.apply(c, *t)))
                .collect()
        };
        let full = decide(0);
        assert!(full.iter().any(|(_, granted)| !granted), "some claims lose");
        for start in (2..10).map(|h| h * hour + step / 2) {
            let late = decide(start - REPLAY_BACK.as_millis() as i64);
            let after = |d: &[(i64, bool)]| -> Vec<(i64, bool)> {
                d.iter().filter(|(t, _)| *t >= start).copied().collect()
            };
            assert_eq!(after(&late), after(&full), "replay from {start}");
        }
    }

    #[test]
    fn records_are_read_by_version() {
        let c = claim(Op::Take, "p", "a", 5);
        let bytes = serde_json::to_vec(&c).expect("json");
        assert_eq!(read(&bytes), Read::Claim(c));
        assert_eq!(read(br#"{"v":2,"op":"grab"}"#), Read::Unknown(2));
        assert_eq!(read(b"not json"), Read::Foreign);
        assert_eq!(read(br#"{"v":1,"op":"grab"}"#), Read::Foreign);
    }
}
