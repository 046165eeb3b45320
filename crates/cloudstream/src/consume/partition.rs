//! [`PartitionLane`]: a partition read from a consumer's checkpoint, for backends whose
//! consumers keep checkpoints in a [`crate::backend::CheckpointStore`].

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;

use super::{Lane, Pulled, Take};
use crate::backend::{Checkpoint, PartitionStart, ReadOptions};
use crate::checkpoint::store_of;
use crate::consumer::{Gap, StartAt};
use crate::{Error, Record, Result, Sequence, Stream};

/// A consumer's checkpoint, and each partition's next position: the checkpoint's, or `start`
/// where it has none.
pub(crate) async fn resolve_positions(
    stream: &Stream,
    consumer: &str,
    start: StartAt,
) -> Result<(Checkpoint, Checkpoint)> {
    let committed = store_of(stream.backend().as_ref())?
        .load(stream.name(), consumer)
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

/// One partition of a stream, read by a consumer from its checkpoint.
///
/// Three marks move forward: `next` (where the next read starts, past everything handed
/// out), `acked` (past everything acknowledged) and `committed` (what the store holds).
#[derive(Debug)]
pub(crate) struct PartitionLane {
    stream: Stream,
    consumer: String,
    partition: u32,
    next: PartitionStart,
    acked: PartitionStart,
    committed: Option<PartitionStart>,
    /// Sequences handed out and not acknowledged yet, oldest first.
    outstanding: VecDeque<Sequence>,
    /// A jump over records lost to the horizon (or a checkpoint past the end), met by the
    /// last pull and not acknowledged yet: it moves `acked` with the next acknowledgement,
    /// so a pull whose records are given back reports the gap again rather than commit it.
    jump: Option<PartitionStart>,
}

impl PartitionLane {
    /// A lane reading `partition` from `at`; `committed` is what the store holds for it.
    pub(crate) fn new(
        stream: Stream,
        consumer: &str,
        partition: u32,
        at: PartitionStart,
        committed: Option<PartitionStart>,
    ) -> Self {
        PartitionLane {
            stream,
            consumer: consumer.to_owned(),
            partition,
            next: at,
            acked: at,
            committed,
            outstanding: VecDeque::new(),
            jump: None,
        }
    }

    /// Reads from `at`. A checkpoint older than the horizon resumes at the earliest record;
    /// one past the end (data lost with `sync` other than `always`, or a stream recreated)
    /// resumes at the end. Either way the jump is returned as a [`Gap`] and logged.
    async fn read_from(
        &self,
        at: PartitionStart,
        options: &ReadOptions,
    ) -> Result<(Vec<Record>, Option<Gap>)> {
        let p = self.partition;
        let mut from = at;
        // Retention may move the partition's start again between two reads: follow it a few
        // times, then report what the partition says.
        for _ in 0..3 {
            let resume = match self.stream.read_start(p, from, options).await {
                Err(Error::Expired { earliest, .. }) => PartitionStart::At(earliest.sequence),
                Err(Error::BeyondEnd { next, .. }) => PartitionStart::At(next.sequence),
                Ok(records) if from == at => return Ok((records, None)),
                Ok(records) => {
                    let gap = Gap {
                        partition: p,
                        from: at,
                        resumed_at: from,
                    };
                    return Ok((records, Some(gap)));
                }
                Err(e) => return Err(e),
            };
            tracing::warn!(
                stream = self.stream.name(),
                consumer = self.consumer,
                partition = p,
                from = %at,
                resumed_at = %resume,
                "checkpoint outside the partition's records; resuming at its nearest end"
            );
            from = resume;
        }
        let records = self.stream.read_start(p, from, options).await?;
        let gap = Gap {
            partition: p,
            from: at,
            resumed_at: from,
        };
        Ok((records, Some(gap)))
    }
}

#[async_trait]
impl Lane for PartitionLane {
    async fn pull(&mut self, take: Take, wait: Option<Duration>) -> Result<Pulled> {
        let options = ReadOptions {
            max_records: take.records.max(1),
            max_bytes: take.bytes.max(1),
            wait,
        };
        // Nothing moves until the read is complete: a pull dropped half-way hands out nothing.
        let (records, gap) = self.read_from(self.next, &options).await?;
        if let Some(gap) = &gap {
            self.next = gap.resumed_at;
            if self.outstanding.is_empty() {
                self.jump = Some(gap.resumed_at);
            }
        }
        if let Some(last) = records.last() {
            self.next = PartitionStart::After(last.position.sequence);
        }
        self.outstanding
            .extend(records.iter().map(|r| r.position.sequence));
        Ok(Pulled { records, gap })
    }

    fn ack(&mut self, count: usize) {
        if let Some(jump) = self.jump.take() {
            self.acked = jump;
        }
        let count = count.min(self.outstanding.len());
        if let Some(last) = self.outstanding.drain(..count).next_back() {
            self.acked = PartitionStart::After(last);
        }
    }

    fn give_back(&mut self) {
        self.outstanding.clear();
        self.jump = None;
        self.next = self.acked;
    }

    fn unflushed(&self) -> Option<(u32, PartitionStart)> {
        (self.committed != Some(self.acked)).then_some((self.partition, self.acked))
    }

    fn mark_flushed(&mut self, at: PartitionStart) {
        self.committed = Some(at);
    }

    fn position(&self) -> Option<(u32, PartitionStart)> {
        Some((self.partition, self.next))
    }
}
