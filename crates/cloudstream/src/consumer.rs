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

use std::collections::BTreeSet;
use std::ops::Deref;
use std::time::{Duration, SystemTime};

use futures::future::{select_all, FutureExt};
use tokio::sync::Mutex;

use crate::backend::{Acker, Checkpoint, PartitionStart, ReadOptions};
use crate::lease;
use crate::{Error, Record, Result, Stream};

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
    next: Positions,
    committed: Positions,
    turn: u32,
    /// In a group: the partitions this member holds leases on.
    held: BTreeSet<u32>,
    /// With a subscription (Pub/Sub): what the last fetch delivered, acknowledged by the next
    /// fetch or `commit()`, given back (redelivered) if the handle is dropped first.
    pending: Vec<Acker>,
}

/// How long a fetch through a subscription waits for a first record when no wait is set:
/// a subscription has no "nothing more right now" answer, only a wait that ends.
const SUBSCRIPTION_WAIT: Duration = Duration::from_secs(1);

/// A consumer's identity within its group.
#[derive(Debug, Clone)]
struct Membership {
    member: String,
    ttl: Duration,
}

/// A named reader of all partitions of a stream with durable checkpoints.
#[derive(Debug)]
pub struct Consumer {
    stream: Stream,
    name: String,
    start: StartAt,
    max_records: usize,
    wait: Option<Duration>,
    membership: Option<Membership>,
    lease_ttl: Duration,
    state: Mutex<State>,
}

/// Partition → where reading resumes, as a consumer's positions and checkpoints hold them.
pub(crate) type Positions = Checkpoint;

/// A consumer's checkpoint, and each partition's next sequence: the checkpoint's, or `start`
/// where it has none.
pub(crate) async fn resolve_positions(
    stream: &Stream,
    consumer: &str,
    start: StartAt,
) -> Result<(Positions, Positions)> {
    let committed = stream
        .backend()
        .load_checkpoint(stream.name(), consumer)
        .await?
        .unwrap_or_default();
    let info = stream.describe().await?;
    let next = info
        .partitions
        .iter()
        .map(|p| {
            let at = match (committed.get(&p.partition), start) {
                (Some(&resume), _) => resume,
                (None, StartAt::Earliest) => PartitionStart::Earliest,
                (None, StartAt::Latest) => p.latest(),
                (None, StartAt::AtTime(t)) => PartitionStart::AtTime(t),
            };
            (p.partition, at)
        })
        .collect();
    Ok((committed, next))
}

/// Moves a partition's next position past `records` (or to `resumed_at` after a gap).
fn advance(next: &mut Positions, p: u32, resumed_at: Option<PartitionStart>, records: &[Record]) {
    if let Some(at) = resumed_at {
        next.insert(p, at);
    }
    if let Some(last) = records.last() {
        next.insert(p, PartitionStart::After(last.position.sequence));
    }
}

/// Reads a partition from a checkpoint. A checkpoint older than the horizon resumes at the
/// earliest record; one past the end (data lost with `sync` other than `always`, or a stream
/// recreated) resumes at the end. Either way the jump is returned as a [`Gap`] and logged.
pub(crate) async fn read_from_checkpoint(
    stream: &Stream,
    consumer: &str,
    p: u32,
    at: PartitionStart,
    options: &ReadOptions,
) -> Result<(Vec<Record>, Option<Gap>)> {
    let resume = match stream.read_start(p, at, options).await {
        Err(Error::Expired { earliest, .. }) => PartitionStart::At(earliest.sequence),
        Err(Error::BeyondEnd { next, .. }) => PartitionStart::At(next.sequence),
        other => return Ok((other?, None)),
    };
    tracing::warn!(
        stream = stream.name(),
        consumer,
        partition = p,
        from = %at,
        resumed_at = %resume,
        "checkpoint outside the partition's records; resuming at its nearest end"
    );
    let records = stream.read_start(p, resume, options).await?;
    Ok((
        records,
        Some(Gap {
            partition: p,
            from: at,
            resumed_at: resume,
        }),
    ))
}

impl Consumer {
    pub(crate) fn new(stream: Stream, name: &str) -> Self {
        Consumer {
            stream,
            name: name.to_owned(),
            start: StartAt::Earliest,
            max_records: 1000,
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

    /// How long a member's leases outlive its last fetch (default 10 s). A member must fetch
    /// more often than this to keep its partitions.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        if let Some(m) = &mut self.membership {
            m.ttl = ttl;
        }
        self
    }

    /// In a group, renews this member's leases and forgets the partitions it lost (another
    /// member took them after they expired), so it never commits over the new holder.
    async fn renew(&self, state: &mut State) -> Result<()> {
        let Some(m) = &self.membership else {
            return Ok(());
        };
        for p in lease::renew(&self.stream, &self.name, &m.member, m.ttl, &mut state.held).await? {
            state.next.remove(&p);
            state.committed.remove(&p);
        }
        Ok(())
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

    /// When nothing is there, wait up to this long for a record (default: return at once).
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
            cloudstream_log::validate_name("consumer", &self.name)?;
            match &self.membership {
                // A member learns positions as it gains partitions.
                Some(m) => cloudstream_log::validate_name("member", &m.member)?,
                None => {
                    (state.committed, state.next) =
                        resolve_positions(&self.stream, &self.name, self.start).await?
                }
            }
            state.loaded = true;
        }
        Ok(())
    }

    /// The partitions to read: all of them, or in a group those this member holds after a
    /// round of the lease protocol (run after committing, since it may give partitions back).
    async fn partitions(&self, state: &mut State) -> Result<Vec<u32>> {
        let Some(m) = &self.membership else {
            return Ok((0..self.stream.partitions()).collect());
        };
        let change =
            lease::balance(&self.stream, &self.name, &m.member, m.ttl, &mut state.held).await?;
        for p in change.lost.iter().chain(&change.released) {
            state.next.remove(p);
            state.committed.remove(p);
        }
        if !change.gained.is_empty() {
            let (committed, next) = resolve_positions(&self.stream, &self.name, self.start).await?;
            for p in change.gained {
                if let Some(&at) = next.get(&p) {
                    state.next.insert(p, at);
                }
                match committed.get(&p) {
                    Some(&c) => state.committed.insert(p, c),
                    None => state.committed.remove(&p),
                };
            }
        }
        Ok(state.held.iter().copied().collect())
    }

    async fn commit_state(&self, state: &mut State) -> Result<()> {
        let changed: Vec<(u32, PartitionStart)> = state
            .next
            .iter()
            .filter(|(p, n)| state.committed.get(p) != Some(n))
            .map(|(&p, &n)| (p, n))
            .collect();
        if !changed.is_empty() {
            self.stream
                .backend()
                .commit_checkpoint(self.stream.name(), &self.name, &changed)
                .await?;
            state.committed.extend(changed);
        }
        Ok(())
    }

    /// Fetches through the provider's subscription: acknowledges the previous fetch, then
    /// pulls the next records.
    async fn fetch_subscribed(&self, state: &mut State) -> Result<Batch> {
        cloudstream_log::validate_name("consumer", &self.name)?;
        if self.membership.is_some() {
            return Err(Error::Unsupported {
                operation: "consumer-group leases (a subscription already shares its records among the processes that fetch from it: use the same consumer name without member())",
                backend: self.stream.backend().name(),
            });
        }
        let Some(subscriptions) = self.stream.backend().subscriptions() else {
            return Ok(Batch::default());
        };
        state.pending.drain(..).for_each(Acker::ack);
        let wait = self.wait.unwrap_or(SUBSCRIPTION_WAIT);
        let deliveries = subscriptions
            .pull(
                self.stream.name(),
                &self.name,
                self.start,
                self.max_records,
                wait,
            )
            .await?;
        let (records, acks) = deliveries.into_iter().map(|d| (d.record, d.ack)).unzip();
        state.pending = acks;
        Ok(Batch {
            records,
            gaps: Vec::new(),
        })
    }

    /// Commits the previous fetches, then returns the next batch across all partitions.
    ///
    /// Positions move only when the whole fetch succeeds: a fetch that fails, or is dropped
    /// before it completes, hands out nothing and so acknowledges nothing. Through a
    /// subscription (Pub/Sub), committing is acknowledging, and a fetch without a
    /// [`Consumer::wait`] waits up to one second for a first record.
    pub async fn fetch(&self) -> Result<Batch> {
        let mut state = self.state.lock().await;
        if self.stream.backend().subscriptions().is_some() {
            return self.fetch_subscribed(&mut state).await;
        }
        self.load(&mut state).await?;
        self.renew(&mut state).await?;
        self.commit_state(&mut state).await?;
        let partitions = self.partitions(&mut state).await?;
        let mut next = state.next.clone();
        let mut batch = Batch::default();
        let n = partitions.len() as u32;
        for i in 0..n {
            let remaining = self.max_records - batch.records.len();
            if remaining == 0 {
                break;
            }
            let p = partitions[((state.turn + i) % n) as usize];
            let options = ReadOptions {
                max_records: remaining,
                ..ReadOptions::default()
            };
            let at = next.get(&p).copied().unwrap_or(PartitionStart::Earliest);
            let (records, gap) =
                read_from_checkpoint(&self.stream, &self.name, p, at, &options).await?;
            advance(&mut next, p, gap.map(|g| g.resumed_at), &records);
            batch.gaps.extend(gap);
            batch.records.extend(records);
        }
        if batch.records.is_empty() && partitions.is_empty() {
            // A member without partitions yet: pause instead of spinning, then report nothing.
            if let Some(wait) = self.wait {
                tokio::time::sleep(wait).await;
            }
        } else if batch.records.is_empty() {
            if let Some(wait) = self.wait {
                let options = ReadOptions {
                    max_records: self.max_records,
                    wait: Some(wait),
                    ..ReadOptions::default()
                };
                let reads = partitions.iter().map(|&p| {
                    let at = next.get(&p).copied().unwrap_or(PartitionStart::Earliest);
                    self.stream.read_start(p, at, &options).boxed()
                });
                let (first, _, _) = select_all(reads).await;
                let records = first?;
                if let Some(p) = records.first().map(|r| r.position.partition) {
                    advance(&mut next, p, None, &records);
                }
                batch.records = records;
            }
        }
        state.next = next;
        state.turn = (state.turn + 1) % n.max(1);
        Ok(batch)
    }

    /// Commits everything fetched so far, durably (through a subscription: acknowledges it).
    pub async fn commit(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        if self.stream.backend().subscriptions().is_some() {
            state.pending.drain(..).for_each(Acker::ack);
            return Ok(());
        }
        self.load(&mut state).await?;
        self.renew(&mut state).await?;
        self.commit_state(&mut state).await
    }

    /// Where each partition resumes as this consumer sees it (fetched, maybe not committed).
    pub async fn positions(&self) -> Result<Checkpoint> {
        let mut state = self.state.lock().await;
        if self.stream.backend().subscriptions().is_some() {
            return Ok(Checkpoint::new()); // the subscription keeps them, server-side
        }
        self.load(&mut state).await?;
        Ok(state.next.clone())
    }
}
