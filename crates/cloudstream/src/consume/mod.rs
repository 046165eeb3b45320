//! The one consumer runtime's source of records: [`Lane`]s.
//!
//! A lane is one ordered flow of records for a named consumer, with acknowledgements:
//!
//! | backend's [`Consumption`] | lanes | acknowledging | durable when |
//! |---|---|---|---|
//! | `Checkpoints(store)` (engine, Kinesis, `http://`) | one per partition, read from the checkpoint ([`PartitionLane`]) | moves the lane's mark past the records | [`flush`] commits the marks of all lanes to the store in one call |
//! | `Subscriptions` (Pub/Sub) | one for the consumer; the provider spreads records and keeps each key in order ([`SubscriptionLane`]) | acknowledges the records to the provider | at once |
//!
//! [`crate::Consumer`] (fetch with implicit commit), [`crate::Trigger`] (a handler per record
//! or batch) and the server's consumers all run on lanes opened here, and never ask which
//! kind they hold. Records handed out and never acknowledged are delivered again: a
//! partition lane's checkpoint does not move past them, a subscription lane gives them back
//! when it is dropped.

mod partition;
mod subscription;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::partition::{resolve_positions, PartitionLane};
pub(crate) use self::subscription::SubscriptionLane;
use crate::backend::{Checkpoint, Consumption, PartitionStart};
use crate::consumer::{Gap, StartAt};
use crate::{Error, Record, Result, Stream};

/// What one pull handed out: records in order, and any jump of the lane's position.
#[derive(Debug, Default)]
pub(crate) struct Pulled {
    /// The records, in the lane's order.
    pub(crate) records: Vec<Record>,
    /// Records skipped because they expired before this consumer read them (or a checkpoint
    /// past the end), met on the way.
    pub(crate) gap: Option<Gap>,
}

/// How much one pull may hand out: records and bytes (payload, key and headers), at least one
/// record when any is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    /// Most records.
    pub(crate) records: usize,
    /// About this many bytes at most.
    pub(crate) bytes: usize,
}

/// One ordered flow of records for a consumer, with acknowledgements.
#[async_trait]
pub(crate) trait Lane: Send + std::fmt::Debug {
    /// Records after those already handed out, within `take`, waiting up to `wait` for a
    /// first one (`None`: the lane's own default, at once where it can tell "nothing now").
    /// A subscription's provider hands out records, not bytes: there only `take.records`
    /// bounds a pull.
    async fn pull(&mut self, take: Take, wait: Option<Duration>) -> Result<Pulled>;
    /// Acknowledges the oldest `count` records handed out and not acknowledged yet (all of
    /// them if fewer are outstanding).
    fn ack(&mut self, count: usize);
    /// Gives back every record handed out and not acknowledged: a partition lane reads them
    /// again, a subscription hands them back to the provider for redelivery.
    fn give_back(&mut self);
    /// The checkpoint mark acknowledged and not yet made durable (partition, where it
    /// resumes); `None` where acknowledgements are durable as they are made. [`flush`]
    /// commits the marks of many lanes at once.
    fn unflushed(&self) -> Option<(u32, PartitionStart)>;
    /// Records that the store now holds `at` for this lane.
    fn mark_flushed(&mut self, at: PartitionStart);
    /// Where a partition lane reads next (past what it handed out); `None` for lanes whose
    /// provider keeps the position.
    fn position(&self) -> Option<(u32, PartitionStart)>;
}

/// Which lanes to open for a consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lanes<'a> {
    /// Every partition (or the consumer's subscription).
    All,
    /// Only these partitions: a member of a consumer group.
    Partitions(&'a [u32]),
}

/// Opens the lanes of consumer `consumer` of `stream`, starting at `start` where it has no
/// checkpoint yet. With `pin`, the start is fixed now (committed as the checkpoint of
/// partitions that have none, or the subscription created), so that every record sent from
/// now on reaches the consumer however late it first pulls.
pub(crate) async fn open(
    stream: &Stream,
    consumer: &str,
    start: StartAt,
    lanes: Lanes<'_>,
    pin: bool,
) -> Result<Vec<Box<dyn Lane>>> {
    cloudstream_log::validate_name("consumer", consumer)?;
    if let Lanes::Partitions(_) = lanes {
        check_group(stream)?;
    }
    match stream.backend().consumption() {
        Consumption::Subscriptions(subscriptions) => {
            if pin {
                subscriptions
                    .subscribe(stream.name(), consumer, start)
                    .await?;
            }
            Ok(vec![Box::new(SubscriptionLane::new(
                stream.clone(),
                consumer,
                start,
            ))])
        }
        Consumption::Checkpoints(store) => {
            let (committed, next) = resolve_positions(stream, consumer, start).await?;
            let wanted = |p: &u32| match lanes {
                Lanes::All => true,
                Lanes::Partitions(ps) => ps.contains(p),
            };
            if pin {
                let unpinned: Vec<(u32, PartitionStart)> = next
                    .iter()
                    .filter(|(p, _)| wanted(p) && !committed.contains_key(p))
                    .map(|(&p, &n)| (p, n))
                    .collect();
                if !unpinned.is_empty() {
                    store.commit(stream.name(), consumer, &unpinned).await?;
                }
            }
            Ok(next
                .iter()
                .filter(|(p, _)| wanted(p))
                .map(|(&p, &at)| {
                    let durable = if pin {
                        Some(at)
                    } else {
                        committed.get(&p).copied()
                    };
                    Box::new(PartitionLane::new(stream.clone(), consumer, p, at, durable))
                        as Box<dyn Lane>
                })
                .collect())
        }
    }
}

/// Checks that consumers of `stream`'s backend can form a group of members sharing
/// partitions (a subscription shares its records by itself).
pub(crate) fn check_group(stream: &Stream) -> Result<()> {
    match stream.backend().consumption() {
        Consumption::Checkpoints(_) => Ok(()),
        Consumption::Subscriptions(_) => Err(Error::Unsupported {
            operation: "consumer-group leases (a subscription already shares its records among the processes that fetch from it: use the same consumer name without member())".into(),
            backend: stream.backend().name(),
        }),
    }
}

/// Makes what `lanes` acknowledged durable: in one commit to the checkpoint store, or,
/// through subscriptions, once the provider has every acknowledgement made so far.
pub(crate) async fn flush<'a>(
    stream: &Stream,
    consumer: &str,
    lanes: impl IntoIterator<Item = &'a mut Box<dyn Lane>>,
) -> Result<()> {
    if let Consumption::Subscriptions(subscriptions) = stream.backend().consumption() {
        return subscriptions.settle().await;
    }
    let mut lanes: Vec<&mut Box<dyn Lane>> = lanes.into_iter().collect();
    let marks: Vec<(u32, PartitionStart)> = lanes.iter().filter_map(|l| l.unflushed()).collect();
    if marks.is_empty() {
        return Ok(());
    }
    crate::checkpoint::store_of(stream.backend().as_ref())?
        .commit(stream.name(), consumer, &marks)
        .await?;
    for lane in &mut lanes {
        if let Some((_, at)) = lane.unflushed() {
            lane.mark_flushed(at);
        }
    }
    Ok(())
}

/// Where each partition lane reads next.
pub(crate) fn positions<'a>(lanes: impl IntoIterator<Item = &'a Box<dyn Lane>>) -> Checkpoint {
    lanes.into_iter().filter_map(|l| l.position()).collect()
}
