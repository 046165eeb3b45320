//! A trigger as a member of a consumer group ([`Trigger::member`]): a supervisor runs the
//! lease protocol ([`crate::lease::round`]) every third of the lease TTL and whenever a lane
//! ends, and keeps one lane running per partition the member holds. It never waits on a
//! handler.
//!
//! | the round says | the supervisor |
//! |---|---|
//! | a partition gained | opens its lane at the group's checkpoint |
//! | a partition above the fair share | stops its lane (the lane finishes the record in hand and commits), and gives the lease back once the lane has ended |
//! | a partition lost (another member took it after this member's lease expired) | fences its lane at once (it commits nothing more) and stops it |
//! | nothing (the store did not answer) | lanes go on; from two thirds of the TTL after the last round that answered, no lane commits until a round renews the leases |
//!
//! On shutdown every lane stops and commits, then the member gives its leases back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::outcome::TriggerTotals;
use super::{joined, Trigger};
use crate::backend::PartitionStart;
use crate::consume::{self, Lane, Lanes, Pulled, Take};
use crate::lease::{self, Membership};
use crate::{Error, Result, Stream};

/// Until when this member's leases hold (shared by its lanes: one round renews them all).
#[derive(Debug)]
struct Validity(Mutex<Instant>);

impl Validity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a lane may still commit: its partition not lost, the member's leases unexpired.
#[derive(Debug)]
struct Fence {
    lost: AtomicBool,
    validity: Arc<Validity>,
}

impl Fence {
    fn open(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && Instant::now() < *self.validity.lock()
    }
}

/// A lane whose acknowledgements are committed only while its fence is open: what a member
/// handled after losing a partition is handled again by the member that took it over.
#[derive(Debug)]
struct Fenced {
    lane: Box<dyn Lane>,
    fence: Arc<Fence>,
}

#[async_trait]
impl Lane for Fenced {
    async fn pull(&mut self, take: Take, wait: Option<Duration>) -> Result<Pulled> {
        self.lane.pull(take, wait).await
    }
    fn ack(&mut self, count: usize) {
        self.lane.ack(count);
    }
    fn give_back(&mut self) {
        self.lane.give_back();
    }
    fn unflushed(&self) -> Option<(u32, PartitionStart)> {
        self.lane.unflushed().filter(|_| self.fence.open())
    }
    fn mark_flushed(&mut self, at: PartitionStart) {
        self.lane.mark_flushed(at);
    }
    fn position(&self) -> Option<(u32, PartitionStart)> {
        self.lane.position()
    }
}

/// A lane's task, as the supervisor sees it.
struct Running {
    stop: watch::Sender<bool>,
    fence: Arc<Fence>,
    /// Stopped to give its partition back: release the lease once it has ended.
    giving_back: bool,
}

/// The supervisor's state: the partitions held and their lanes.
struct Member<'a> {
    trigger: &'a Arc<Trigger>,
    m: Membership,
    dlq: Option<Stream>,
    counters: Arc<TriggerTotals>,
    validity: Arc<Validity>,
    held: BTreeSet<u32>,
    lanes: BTreeMap<u32, Running>,
    /// The lanes' tasks, aborted if the trigger is dropped before it returns.
    tasks: JoinSet<(u32, Result<()>)>,
}

impl Trigger {
    /// Runs the trigger as member `m` of its consumer's group until `shutdown` completes or
    /// a lane stops on an error no retry can fix.
    pub(super) async fn run_member(
        self: Arc<Self>,
        m: Membership,
        dlq: Option<Stream>,
        counters: Arc<TriggerTotals>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<()> {
        let mut member = Member {
            trigger: &self,
            validity: Arc::new(Validity(Mutex::new(Instant::now()))),
            m,
            dlq,
            counters,
            held: BTreeSet::new(),
            lanes: BTreeMap::new(),
            tasks: JoinSet::new(),
        };
        let period = member.m.ttl / 3;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next_round = Instant::now();
        let mut result = Ok(());
        loop {
            if Instant::now() >= next_round {
                let began = Instant::now();
                // A round against a store that does not answer must not hold up a shutdown.
                let round = tokio::select! {
                    r = member.round(began) => r,
                    _ = &mut shutdown => break,
                };
                if let Err(e) = round {
                    if !e.is_retryable() {
                        result = Err(e);
                        break;
                    }
                    tracing::warn!(stream = self.stream.name(), consumer = self.consumer, error = %e, "lease round failed; retrying");
                }
                next_round = began + period;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next_round) => {}
                Some(done) = member.tasks.join_next() => {
                    if let Err(e) = member.ended(done).await {
                        result = Err(e);
                        break;
                    }
                    next_round = Instant::now(); // a round whenever a lane ends
                }
            }
        }
        member.stop_all().await.and(result)
    }
}

impl Member<'_> {
    /// One round of the lease protocol, then the lanes made to match what is held: even
    /// when the round failed half-way, no lane goes on committing for a partition no longer
    /// held.
    async fn round(&mut self, began: Instant) -> Result<()> {
        let t = self.trigger;
        let round = lease::round(&t.stream, &t.consumer, &self.m, &mut self.held).await;
        for (p, lane) in &mut self.lanes {
            if !self.held.contains(p) {
                lane.fence.lost.store(true, Ordering::Release);
                let _ = lane.stop.send(true);
            }
        }
        let round = round?;
        // Commits stop a third of the TTL before the leases expire: one started just before
        // then still lands while they hold.
        *self.validity.lock() = began + self.m.ttl * 2 / 3;
        for p in &round.surplus {
            match self.lanes.get_mut(p) {
                Some(lane) => {
                    lane.giving_back = true;
                    let _ = lane.stop.send(true);
                }
                None => self.release(*p).await,
            }
        }
        let missing: Vec<u32> = self
            .held
            .iter()
            .filter(|p| !self.lanes.contains_key(p) && !round.surplus.contains(p))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let start = t.start;
        let opened = consume::open(
            &t.stream,
            &t.consumer,
            start,
            Lanes::Partitions(&missing),
            true,
        )
        .await;
        match opened {
            Ok(lanes) => lanes.into_iter().for_each(|lane| self.spawn(lane)),
            Err(e) => {
                // Held without a lane: give them back for another member (or a later round).
                for p in missing {
                    self.release(p).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs a lane of a partition just gained on a task of its own.
    fn spawn(&mut self, lane: Box<dyn Lane>) {
        let Some((p, _)) = lane.position() else {
            return;
        };
        let fence = Arc::new(Fence {
            lost: AtomicBool::new(false),
            validity: self.validity.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let lane: Box<dyn Lane> = Box::new(Fenced {
            lane,
            fence: fence.clone(),
        });
        let (t, dlq, counters) = (
            self.trigger.clone(),
            self.dlq.clone(),
            self.counters.clone(),
        );
        self.tasks
            .spawn(async move { (p, t.run_lane(lane, dlq, stopped, &counters).await) });
        self.lanes.insert(
            p,
            Running {
                stop,
                fence,
                giving_back: false,
            },
        );
    }

    /// A lane's task ended: the lease goes back if it was given up; an error stops the
    /// trigger.
    async fn ended(
        &mut self,
        done: std::result::Result<(u32, Result<()>), tokio::task::JoinError>,
    ) -> Result<()> {
        let (p, result) = done.map_err(|e| Error::Backend(Box::new(e)))?;
        let running = self.lanes.remove(&p);
        result?;
        if running.is_some_and(|r| r.giving_back && !r.fence.lost.load(Ordering::Acquire)) {
            self.release(p).await;
        }
        Ok(())
    }

    /// Gives one partition's lease back (it expires by itself where the store does not
    /// answer).
    async fn release(&mut self, p: u32) {
        let t = self.trigger;
        let released =
            lease::release(&t.stream, &t.consumer, &self.m.member, &[p], &mut self.held).await;
        if let Err(e) = released {
            tracing::warn!(stream = t.stream.name(), consumer = t.consumer, partition = p, error = %e, "lease not given back; it expires by itself");
        }
    }

    /// Stops every lane (each commits what it handled), then gives every lease back.
    async fn stop_all(mut self) -> Result<()> {
        for lane in self.lanes.values() {
            let _ = lane.stop.send(true);
        }
        let mut result = Ok(());
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = joined(done.map(|(_, r)| r)) {
                result = result.and(Err(e));
            }
        }
        let t = self.trigger;
        lease::leave(&t.stream, &t.consumer, &self.m.member, &mut self.held).await;
        result
    }
}
