//! Named consumers with implicit checkpointing (Stream-04).
//!
//! A consumer reads every partition from its checkpoint. Fetching the next batch first
//! commits everything the previous fetches returned, like Kafka's auto-commit on poll: a
//! crash between two fetches redelivers the last batch (at-least-once), never skips it.
//!
//! Several processes can share one consumer name as a group: each calls
//! [`Consumer::member`] with its own id, and then reads only the partitions it holds a lease
//! on ([`crate::lease`]). Members never read the same partition at once; a member that stops
//! fetching loses its partitions when its leases expire, and the next holder resumes at the
//! group's checkpoint, so what the lost member fetched but never committed is delivered again.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::time::{Duration, SystemTime};

use futures::future::select_all;
use tokio::sync::Mutex;

use crate::backend::{Checkpoint, PartitionStart};
use crate::consume::{self, Lane, Lanes, Take};
use crate::lease::{self, Membership};
use crate::{Record, Result, Stream};

/// Where a consumer without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest record held (the default).
    #[default]
    Earliest,
    /// Only records written after the consumer first fetches.
    Latest,
    /// Records appended at or after this time.
    AtTime(SystemTime),
}

/// A jump of a consumer's position: forward when retention removed records before it read
/// them, backward when its checkpoint was past the end of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The partition.
    pub partition: u32,
    /// Where the consumer's checkpoint was.
    pub from: PartitionStart,
    /// Where it resumed: the earliest record still held, or the end of the partition.
    pub resumed_at: PartitionStart,
}

/// One fetch's records, with any gaps met on the way.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The records, partition by partition, each partition in order.
    pub records: Vec<Record>,
    /// Records skipped because they expired before this consumer read them.
    pub gaps: Vec<Gap>,
}

impl Deref for Batch {
    type Target = [Record];
    fn deref(&self) -> &[Record] {
        &self.records
    }
}

impl IntoIterator for Batch {
    type Item = Record;
    type IntoIter = std::vec::IntoIter<Record>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// The consumer's lanes by partition (a subscription's one lane as 0). In a group, only
    /// those of the partitions this member holds leases on.
    lanes: BTreeMap<u32, Box<dyn Lane>>,
    turn: u32,
    /// A fetch is pulling: records its lanes hand out reach the caller only if it completes.
    fetching: bool,
    /// In a group: the partitions this member holds leases on.
    held: BTreeSet<u32>,
}

/// A named reader of all partitions of a stream with durable checkpoints.
#[derive(Debug)]
pub struct Consumer {
    stream: Stream,
    name: String,
    start: StartAt,
    max_records: usize,
    max_bytes: usize,
    wait: Option<Duration>,
    membership: Option<Membership>,
    lease_ttl: Duration,
    state: Mutex<State>,
}

/// Lanes keyed by the partition they read (a subscription's one lane as 0).
fn by_partition(lanes: Vec<Box<dyn Lane>>) -> BTreeMap<u32, Box<dyn Lane>> {
    lanes
        .into_iter()
        .enumerate()
        .map(|(i, lane)| (lane.position().map_or(i as u32, |(p, _)| p), lane))
        .collect()
}

impl Consumer {
    pub(crate) fn new(stream: Stream, name: &str) -> Self {
        Consumer {
            stream,
            name: name.to_owned(),
            start: StartAt::Earliest,
            max_records: 1000,
            max_bytes: crate::backend::ReadOptions::default().max_bytes,
            wait: None,
            membership: None,
            lease_ttl: Duration::from_secs(10),
            state: Mutex::default(),
        }
    }

    /// Joins the consumer group of this name as member `id`: the members share the stream's
    /// partitions through leases, each reading only the ones it holds, and each fetch renews
    /// them. Leases last 10 s unless [`Consumer::lease_ttl`] says otherwise.
    pub fn member(mut self, id: impl Into<String>) -> Self {
        self.membership = Some(Membership {
            member: id.into(),
            ttl: self.lease_ttl,
        });
        self
    }

    /// How long a member's leases outlive its last fetch (default 10 s; 100 ms to 1 hour).
    /// A member must fetch more often than this to keep its partitions.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        if let Some(m) = &mut self.membership {
            m.ttl = ttl;
        }
        self
    }

    /// Where to start when the consumer has no checkpoint yet (default: earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Most records per fetch (default 1,000).
    pub fn max_records(mut self, max: usize) -> Self {
        self.max_records = max.max(1);
        self
    }

    /// About this many bytes per fetch at most, across every partition (default 8 MiB; at
    /// least one record when any is there). Through a subscription only `max_records`
    /// bounds a fetch.
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max.max(1);
        self
    }

    /// When nothing is there, wait up to this long for a record (default: return at once;
    /// through a subscription, up to one second).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn load(&self, state: &mut State) -> Result<()> {
        if !state.loaded {
            match &self.membership {
                // A member opens lanes as it gains partitions.
                Some(m) => {
                    m.check(&self.name)?;
                    consume::check_group(&self.stream)?;
                }
                None => {
                    let lanes =
                        consume::open(&self.stream, &self.name, self.start, Lanes::All, false)
                            .await?;
                    state.lanes = by_partition(lanes);
                }
            }
            state.loaded = true;
        }
        Ok(())
    }

    /// In a group, renews this member's leases and drops the lanes of partitions it lost
    /// (another member took them after they expired), so it never commits over the new
    /// holder.
    async fn renew(&self, state: &mut State) -> Result<()> {
        let Some(m) = &self.membership else {
            return Ok(());
        };
        let renewed = lease::renew(&self.stream, &self.name, m, &mut state.held).await;
        state.lanes.retain(|p, _| state.held.contains(p));
        renewed.map(drop)
    }

    /// In a group, a round of the lease protocol (run after committing, since it may give
    /// partitions back), then the lanes made to match the partitions held: those of
    /// partitions lost or given back dropped, those of partitions gained opened at the
    /// group's checkpoint. The lanes follow what is held even when the round fails half-way
    /// (a lease call refused, a fetch dropped), so no member reads a partition it lost or
    /// leaves one it holds unread.
    async fn rebalance(&self, state: &mut State) -> Result<()> {
        let Some(m) = &self.membership else {
            return Ok(());
        };
        // Everything fetched is committed by now: partitions above the fair share go back
        // at once.
        // (The leases were renewed before the commit.)
        let balanced = match lease::share(&self.stream, &self.name, m, &mut state.held).await {
            Ok(surplus) => {
                let (stream, member) = (&self.stream, &m.member);
                lease::release(stream, &self.name, member, &surplus, &mut state.held).await
            }
            Err(e) => Err(e),
        };
        state.lanes.retain(|p, _| state.held.contains(p));
        let missing: Vec<u32> = state
            .held
            .iter()
            .filter(|p| !state.lanes.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            let gained = Lanes::Partitions(&missing);
            let lanes = consume::open(&self.stream, &self.name, self.start, gained, false).await?;
            state.lanes.extend(by_partition(lanes));
        }
        balanced
    }

    /// Acknowledges everything handed out, and makes it durable. What a fetch that never
    /// completed (failed, or dropped) pulled never reached the caller: it is given back.
    async fn commit_state(&self, state: &mut State) -> Result<()> {
        if std::mem::take(&mut state.fetching) {
            state.lanes.values_mut().for_each(|lane| lane.give_back());
        }
        state
            .lanes
            .values_mut()
            .for_each(|lane| lane.ack(usize::MAX));
        consume::flush(&self.stream, &self.name, state.lanes.values_mut()).await
    }

    /// Commits the previous fetches, then returns the next batch across all partitions.
    ///
    /// Positions move only when the whole fetch succeeds: a fetch that fails, or is dropped
    /// before it completes, hands out nothing and so acknowledges nothing. Through a
    /// subscription (Pub/Sub), committing is acknowledging, and a fetch without a
    /// [`Consumer::wait`] waits up to one second for a first record.
    pub async fn fetch(&self) -> Result<Batch> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        self.load(state).await?;
        self.renew(state).await?;
        self.commit_state(state).await?;
        self.rebalance(state).await?;
        let renewed_at = std::time::Instant::now();
        let mut batch = Batch::default();
        let turn = state.turn;
        let n = state.lanes.len() as u32;
        if n == 0 {
            // A member without partitions yet: pause instead of spinning, then report nothing.
            if let Some(wait) = self.wait {
                tokio::time::sleep(wait).await;
            }
            return Ok(batch);
        }
        state.fetching = true;
        let mut lanes: Vec<&mut Box<dyn Lane>> = state.lanes.values_mut().collect();
        if n == 1 {
            let take = Take {
                records: self.max_records,
                bytes: self.max_bytes,
            };
            let pulled = lanes[0].pull(take, self.wait).await?;
            batch.gaps.extend(pulled.gap);
            batch.records = pulled.records;
        } else {
            // One budget of records and bytes for the whole fetch, across partitions.
            let mut bytes_left = self.max_bytes;
            for i in 0..n {
                let remaining = self.max_records - batch.records.len();
                if remaining == 0 || bytes_left == 0 {
                    break;
                }
                let take = Take {
                    records: remaining,
                    bytes: bytes_left,
                };
                let pulled = lanes[((turn + i) % n) as usize].pull(take, None).await?;
                let bytes: usize = pulled.records.iter().map(|r| r.event.size()).sum();
                bytes_left = bytes_left.saturating_sub(bytes);
                batch.gaps.extend(pulled.gap);
                batch.records.extend(pulled.records);
            }
            if let Some(wait) = self.wait.filter(|_| batch.records.is_empty()) {
                let take = Take {
                    records: self.max_records,
                    bytes: self.max_bytes,
                };
                let pulls = lanes.iter_mut().map(|lane| lane.pull(take, Some(wait)));
                let (first, _, _) = select_all(pulls).await;
                let pulled = first?;
                batch.gaps.extend(pulled.gap);
                batch.records = pulled.records;
            }
        }
        state.turn = (turn + 1) % n;
        if let Some(m) = &self.membership {
            // A slow fetch renews its leases before it hands records out, and hands out none
            // of a partition another member took meanwhile.
            if renewed_at.elapsed() > m.ttl / 3 {
                self.renew(state).await?;
                let held = &state.held;
                batch
                    .records
                    .retain(|r| held.contains(&r.position.partition));
                batch.gaps.retain(|g| held.contains(&g.partition));
            }
        }
        state.fetching = false;
        Ok(batch)
    }

    /// Commits everything fetched so far, durably (through a subscription: acknowledges it).
    pub async fn commit(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        self.load(&mut state).await?;
        self.renew(&mut state).await?;
        self.commit_state(&mut state).await
    }

    /// Leaves the consumer group (after [`Consumer::member`]): commits what was fetched, then
    /// gives every lease back, so the other members take the partitions at once rather than
    /// when the leases expire. Without a group, only commits.
    pub async fn leave(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        self.load(&mut state).await?;
        self.renew(&mut state).await?;
        self.commit_state(&mut state).await?;
        if let Some(m) = &self.membership {
            lease::leave(&self.stream, &self.name, &m.member, &mut state.held).await;
            state.lanes.clear();
        }
        Ok(())
    }

    /// Gives back everything fetched and not committed, so that the next fetch returns it
    /// again instead of committing it: for a caller that lost a batch before handling it (a
    /// REST answer lost in transit, a batch handed to a client that went away).
    pub async fn redeliver(&self) {
        let mut state = self.state.lock().await;
        state.fetching = false;
        state.lanes.values_mut().for_each(|lane| lane.give_back());
    }

    /// Where each partition resumes as this consumer sees it (fetched, maybe not committed);
    /// empty through a subscription, whose provider keeps it.
    pub async fn positions(&self) -> Result<Checkpoint> {
        let mut state = self.state.lock().await;
        self.load(&mut state).await?;
        if std::mem::take(&mut state.fetching) {
            state.lanes.values_mut().for_each(|lane| lane.give_back());
        }
        Ok(consume::positions(state.lanes.values()))
    }
}
