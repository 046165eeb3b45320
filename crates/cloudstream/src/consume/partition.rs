//! [`PartitionLane`]: a partition read from a consumer's checkpoint, for backends whose
//! consumers keep checkpoints in a [`crate::backend::CheckpointStore`].

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;

use super::{Lane, Pulled};
use crate::backend::{Checkpoint, CheckpointStore, PartitionStart, ReadOptions};
use crate::consumer::{Gap, StartAt};
use crate::{Error, Record, Result, Sequence, Stream};

/// A consumer's checkpoint, and each partition's next position: the checkpoint's, or `start`
/// where it has none.
pub(crate) async fn resolve_positions(
    stream: &Stream,
    consumer: &str,
    start: StartAt,
) -> Result<(Checkpoint, Checkpoint)> {
    let committed = checkpoint_store(stream)?
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

/// The checkpoint store of the stream's backend.
pub(crate) fn checkpoint_store(stream: &Stream) -> Result<&dyn CheckpointStore> {
    crate::checkpoint::store_of(stream.backend().as_ref())
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
        let resume = match self.stream.read_start(p, at, options).await {
            Err(Error::Expired { earliest, .. }) => PartitionStart::At(earliest.sequence),
            Err(Error::BeyondEnd { next, .. }) => PartitionStart::At(next.sequence),
            other => return Ok((other?, None)),
        };
        tracing::warn!(
            stream = self.stream.name(),
            consumer = self.consumer,
            partition = p,
            from = %at,
            resumed_at = %resume,
            "checkpoint outside the partition's records; resuming at its nearest end"
        );
        let records = self.stream.read_start(p, resume, options).await?;
        let gap = Gap {
            partition: p,
            from: at,
            resumed_at: resume,
        };
        Ok((records, Some(gap)))
    }
}

#[async_trait]
impl Lane for PartitionLane {
    async fn pull(&mut self, max: usize, wait: Option<Duration>) -> Result<Pulled> {
        let options = ReadOptions {
            max_records: max.max(1),
            wait,
            ..ReadOptions::default()
        };
        // Nothing moves until the read is complete: a pull dropped half-way hands out nothing.
        let (records, gap) = self.read_from(self.next, &options).await?;
        if let Some(gap) = &gap {
            self.next = gap.resumed_at;
            if self.outstanding.is_empty() {
                self.acked = gap.resumed_at;
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
        let count = count.min(self.outstanding.len());
        if let Some(last) = self.outstanding.drain(..count).next_back() {
            self.acked = PartitionStart::After(last);
        }
    }

    fn give_back(&mut self) {
        self.outstanding.clear();
        self.next = self.acked;
    }

    async fn flush(&mut self) -> Result<()> {
        if self.committed == Some(self.acked) {
            return Ok(());
        }
        let resume = [(self.partition, self.acked)];
        checkpoint_store(&self.stream)?
            .commit(self.stream.name(), &self.consumer, &resume)
            .await?;
        self.committed = Some(self.acked);
        Ok(())
    }

    fn position(&self) -> Option<(u32, PartitionStart)> {
        Some((self.partition, self.next))
    }
}
