//! [`Stream`]: the handle through which events are written and read.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::stream::{self, BoxStream, StreamExt};

use crate::backend::{Backend, Capabilities, Checkpoint, PartitionStart, ReadOptions, StreamInfo};
use crate::consumer::Consumer;
use crate::partitioner::Partitioner;
use crate::trigger::Trigger;
use crate::{Error, Event, Position, Receipt, Record, Result};

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest record held (of partition 0, or of the partition asked for).
    Earliest,
    /// After the newest record: only what is written from now on.
    Latest,
    /// The record at this position.
    At(Position),
    /// The record after this position (to continue from a record already seen).
    After(Position),
    /// The first record appended at or after this time.
    AtTime(SystemTime),
}

impl ReadFrom {
    /// The partition this start point names, if it names one.
    pub fn partition(&self) -> Option<u32> {
        match self {
            ReadFrom::At(p) | ReadFrom::After(p) => Some(p.partition),
            _ => None,
        }
    }

    /// The start point `start` of partition `partition`, as a start point of the stream.
    pub fn within(partition: u32, start: PartitionStart) -> ReadFrom {
        match start {
            PartitionStart::Earliest => ReadFrom::Earliest,
            PartitionStart::Latest => ReadFrom::Latest,
            PartitionStart::At(s) => ReadFrom::At(Position::new(partition, s)),
            PartitionStart::After(s) => ReadFrom::After(Position::new(partition, s)),
            PartitionStart::AtTime(t) => ReadFrom::AtTime(t),
        }
    }

    /// Where the read starts within its partition.
    pub fn start(&self) -> PartitionStart {
        match *self {
            ReadFrom::Earliest => PartitionStart::Earliest,
            ReadFrom::Latest => PartitionStart::Latest,
            ReadFrom::At(p) => PartitionStart::At(p.sequence),
            ReadFrom::After(p) => PartitionStart::After(p.sequence),
            ReadFrom::AtTime(t) => PartitionStart::AtTime(t),
        }
    }
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    name: String,
    partitions: u32,
    partitioner: Partitioner,
}

/// A named stream of a provider. Cheap to clone; clones share the handle.
#[derive(Debug, Clone)]
pub struct Stream {
    inner: Arc<Inner>,
}

impl Stream {
    pub(crate) fn new(backend: Arc<dyn Backend>, info: StreamInfo) -> Self {
        let partitions = info.partitions.len() as u32;
        Stream {
            inner: Arc::new(Inner {
                capabilities: backend.capabilities(),
                backend,
                name: info.name,
                partitions,
                partitioner: Partitioner::default(),
            }),
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The provider's view of the stream: horizon and the extent of each partition.
    pub async fn describe(&self) -> Result<StreamInfo> {
        self.inner.backend.describe_stream(&self.inner.name).await
    }

    /// Checks an event against every limit of the backend (size, header count, header name
    /// and value lengths) before it is written, so that a bad event fails alone instead of
    /// failing the append it would share with others.
    pub fn check_event(&self, event: &Event) -> Result<()> {
        crate::event::check_fields(event)?;
        let caps = &self.inner.capabilities;
        if event.size() > caps.max_record_bytes {
            return Err(Error::RecordTooLarge {
                size: event.size(),
                max: caps.max_record_bytes,
            });
        }
        if event.headers.len() > caps.max_headers {
            return Err(Error::InvalidArgument(format!(
                "{} headers on one event; the {} backend takes at most {}",
                event.headers.len(),
                self.inner.backend.name(),
                caps.max_headers
            )));
        }
        for (name, value) in &event.headers {
            if name.len() > caps.max_header_name_bytes {
                return Err(Error::InvalidArgument(format!(
                    "a header name of {} bytes; the {} backend takes at most {}",
                    name.len(),
                    self.inner.backend.name(),
                    caps.max_header_name_bytes
                )));
            }
            if value.len() > caps.max_header_value_bytes {
                return Err(Error::InvalidArgument(format!(
                    "header {name:?} has a value of {} bytes; the {} backend takes at most {}",
                    value.len(),
                    self.inner.backend.name(),
                    caps.max_header_value_bytes
                )));
            }
        }
        Ok(())
    }

    fn partition_for(&self, event: &Event) -> u32 {
        self.inner
            .partitioner
            .partition(event.key.as_deref(), self.inner.partitions)
    }

    /// Writes one event; returns where it was stored once it is durable.
    pub async fn send(&self, event: Event) -> Result<Receipt> {
        self.check_event(&event)?;
        let partition = self.partition_for(&event);
        let receipts = self
            .inner
            .backend
            .append(&self.inner.name, partition, std::slice::from_ref(&event))
            .await?;
        receipts
            .into_iter()
            .next()
            .ok_or_else(|| Error::Backend("append returned no receipt".into()))
    }

    /// Writes many events; returns one result per event, in the order given.
    ///
    /// Events are grouped by partition (same key, same partition, order kept) and each
    /// group is split to the backend's batch limits and written in order. An event that is
    /// invalid (too large) fails alone; when a chunk of a partition fails, the chunks after it
    /// in that partition are not attempted, so no key's events are ever reordered.
    pub async fn send_batch(&self, events: Vec<Event>) -> Vec<Result<Receipt>> {
        let mut results: Vec<Option<Result<Receipt>>> = (0..events.len()).map(|_| None).collect();
        let mut groups: Vec<Vec<(usize, Event)>> = vec![Vec::new(); self.inner.partitions as usize];
        for (i, event) in events.into_iter().enumerate() {
            match self.check_event(&event) {
                Ok(()) => groups[self.partition_for(&event) as usize].push((i, event)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let writes = groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(p, group)| async move {
                let indexes: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
                (indexes, self.write_group(p as u32, group).await)
            });
        for (indexes, outcome) in futures::future::join_all(writes).await {
            for (i, r) in indexes.into_iter().zip(outcome) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Backend("event was not written".into()))))
            .collect()
    }

    async fn write_group(
        &self,
        partition: u32,
        group: Vec<(usize, Event)>,
    ) -> Vec<Result<Receipt>> {
        let caps = &self.inner.capabilities;
        let events: Vec<Event> = group.into_iter().map(|(_, e)| e).collect();
        let mut out = Vec::with_capacity(events.len());
        // After a failed chunk, later chunks of the partition are not attempted (that would
        // reorder a key's events); each of their events reports the same error.
        let mut failed: Option<Error> = None;
        for chunk in chunks(&events, caps.max_batch_records, caps.max_batch_bytes) {
            if failed.is_none() {
                match self
                    .inner
                    .backend
                    .append(&self.inner.name, partition, chunk)
                    .await
                {
                    Ok(receipts) => {
                        out.extend(receipts.into_iter().map(Ok));
                        continue;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = &failed {
                out.extend(chunk.iter().map(|_| Err(e.replicate())));
            }
        }
        out
    }

    /// Reads up to `max` records from `from`, deterministically: the same `from` gives the
    /// same records in the same order while they are within the horizon.
    ///
    /// Reads are per partition, as Kinesis reads a shard and Kafka a partition: `At` and
    /// `After` read the position's partition, the others partition 0. Use
    /// [`Stream::read_partition`] for another partition, and a [`Consumer`] to read all of
    /// them.
    pub async fn read(&self, from: ReadFrom, max: usize) -> Result<Vec<Record>> {
        self.read_partition(from.partition().unwrap_or(0), from, max)
            .await
    }

    /// Reads up to `max` records of one partition from `from`.
    pub async fn read_partition(
        &self,
        partition: u32,
        from: ReadFrom,
        max: usize,
    ) -> Result<Vec<Record>> {
        let options = ReadOptions {
            max_records: max,
            ..ReadOptions::default()
        };
        self.read_with(partition, from, &options).await
    }

    /// Reads one partition with explicit limits and an optional long-poll wait.
    pub async fn read_with(
        &self,
        partition: u32,
        from: ReadFrom,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        if let Some(p) = from.partition().filter(|&p| p != partition) {
            return Err(Error::InvalidArgument(format!(
                "position in partition {p} given for a read of partition {partition}"
            )));
        }
        self.read_start(partition, from.start(), options).await
    }

    /// Reads one partition from a start point within it.
    pub(crate) async fn read_start(
        &self,
        partition: u32,
        start: PartitionStart,
        options: &ReadOptions,
    ) -> Result<Vec<Record>> {
        if partition >= self.inner.partitions {
            return Err(Error::PartitionNotFound {
                stream: self.inner.name.clone(),
                partition,
                partitions: self.inner.partitions,
            });
        }
        self.inner
            .backend
            .read(&self.inner.name, partition, start, options)
            .await
    }

    /// Every record from `from` on, as they arrive: all partitions merged (each in order),
    /// or only the position's partition for `At` / `After`. `Latest` means records written
    /// after this call returns. The stream never ends by itself; it yields an error and ends
    /// if a read fails.
    pub async fn tail(&self, from: ReadFrom) -> Result<BoxStream<'static, Result<Record>>> {
        self.tail_resuming(from, &[]).await
    }

    /// [`Stream::tail`], resuming: each partition named in `seen` continues after that
    /// position instead of at `from` (how a reconnecting client, such as an SSE client with
    /// `Last-Event-ID`, picks up where it left off).
    pub async fn tail_resuming(
        &self,
        from: ReadFrom,
        seen: &[Position],
    ) -> Result<BoxStream<'static, Result<Record>>> {
        let resume: Vec<(u32, PartitionStart)> = seen
            .iter()
            .map(|p| (p.partition, PartitionStart::After(p.sequence)))
            .collect();
        let starts = self.tail_starts(from, &resume).await?;
        Ok(self.tail_from(&starts))
    }

    /// Where a tail from `from` starts in each partition it covers, pinned now (`Latest`
    /// becomes the current end), with `resume` overriding the partitions it names. Hand the
    /// result to [`Stream::tail_from`]; keep it (updated past each record) to resume later
    /// without a gap, even in partitions that have had no record yet.
    pub async fn tail_starts(
        &self,
        from: ReadFrom,
        resume: &[(u32, PartitionStart)],
    ) -> Result<Checkpoint> {
        for p in from
            .partition()
            .into_iter()
            .chain(resume.iter().map(|(p, _)| *p))
        {
            if p >= self.inner.partitions {
                return Err(Error::PartitionNotFound {
                    stream: self.inner.name.clone(),
                    partition: p,
                    partitions: self.inner.partitions,
                });
            }
        }
        let mut starts: Checkpoint = match from {
            ReadFrom::At(p) | ReadFrom::After(p) => [(p.partition, from.start())].into(),
            ReadFrom::Latest => {
                let info = self.describe().await?;
                info.partitions
                    .iter()
                    .map(|p| (p.partition, p.latest()))
                    .collect()
            }
            _ => (0..self.inner.partitions)
                .map(|p| (p, from.start()))
                .collect(),
        };
        starts.extend(resume.iter().copied());
        Ok(starts)
    }

    /// Every record from the given start of each partition on, as they arrive, the
    /// partitions merged (each in order); see [`Stream::tail_starts`].
    ///
    /// A tail holds one read batch per partition until its reader takes the records: the
    /// partitions share one budget of records and bytes (a default read's), so a slow
    /// reader of a 64-partition stream pins about 8 MiB, not 64 reads' worth.
    pub fn tail_from(&self, starts: &Checkpoint) -> BoxStream<'static, Result<Record>> {
        let options = tail_share(starts.len());
        let tails = starts
            .iter()
            .map(|(&p, &from)| self.tail_partition(p, from, options));
        stream::select_all(tails).boxed()
    }

    fn tail_partition(
        &self,
        partition: u32,
        from: PartitionStart,
        options: ReadOptions,
    ) -> BoxStream<'static, Result<Record>> {
        let state = (self.clone(), from, false);
        stream::unfold(state, move |(stream, from, failed)| async move {
            if failed {
                return None;
            }
            loop {
                match stream.read_start(partition, from, &options).await {
                    Ok(records) if records.is_empty() => continue,
                    Ok(records) => {
                        let last = records.last()?.position.sequence;
                        let next = PartitionStart::After(last);
                        return Some((Ok(records), (stream, next, false)));
                    }
                    Err(e) => return Some((Err(e), (stream, from, true))),
                }
            }
        })
        .flat_map(|batch: Result<Vec<Record>>| match batch {
            Ok(records) => stream::iter(records.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => stream::iter(vec![Err(e)]),
        })
        .boxed()
    }

    /// A named consumer: reads every partition from its checkpoint, and commits implicitly
    /// when it fetches the next batch.
    pub fn consumer(&self, name: &str) -> Consumer {
        Consumer::new(self.clone(), name)
    }

    /// A trigger: calls `handler` for every event, as consumer `consumer`, in order within
    /// each partition. Configure it, then [`Trigger::run_until`].
    pub fn on_event<H, F, E>(&self, consumer: &str, handler: H) -> Trigger
    where
        H: Fn(Record) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Trigger::per_record(self.clone(), consumer, handler)
    }

    /// A trigger that calls `handler` with batches of up to [`Trigger::batch_size`] records of
    /// one partition, gathered until the batch is full or [`Trigger::max_wait`] has passed
    /// since its first record. A failing batch is retried whole, then dead-lettered whole.
    pub fn on_batch<H, F, E>(&self, consumer: &str, handler: H) -> Trigger
    where
        H: Fn(Vec<Record>) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Trigger::per_batch(self.clone(), consumer, handler)
    }
}

/// Splits events into runs within both limits (an event larger than `max_bytes` goes alone).
fn chunks(events: &[Event], max_records: usize, max_bytes: usize) -> Vec<&[Event]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let full = i > start && (i - start >= max_records || bytes + e.size() > max_bytes);
        if full {
            out.push(&events[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += e.size();
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

/// The reads of each of `partitions` tailed partitions: a default read's records and bytes
/// shared among them (at least one record each), waiting up to a second for a first one.
fn tail_share(partitions: usize) -> ReadOptions {
    let whole = ReadOptions::default();
    let n = partitions.max(1);
    ReadOptions {
        max_records: (whole.max_records / n).max(1),
        max_bytes: (whole.max_bytes / n).max(1),
        wait: Some(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tail_shares_one_read_budget_across_its_partitions() {
        let whole = super::ReadOptions::default();
        for n in [1, 2, 64, 5000] {
            let share = super::tail_share(n);
            assert!(share.max_records >= 1 && share.max_bytes >= 1);
            assert!(share.max_bytes * n <= whole.max_bytes.max(n), "{n}");
            assert!(share.max_records * n <= whole.max_records.max(n), "{n}");
        }
    }

    use super::*;

    #[test]
    fn chunks_respect_both_limits() {
        let events: Vec<Event> = (0..10)
            .map(|i| Event::new(vec![0u8; 10 * (i % 3 + 1)]))
            .collect();
        for (max_records, max_bytes) in [(3, 1000), (100, 50), (1, 1), (4, 60)] {
            let cs = chunks(&events, max_records, max_bytes);
            assert_eq!(cs.iter().map(|c| c.len()).sum::<usize>(), 10);
            for c in &cs {
                assert!(c.len() <= max_records);
                assert!(c.len() == 1 || c.iter().map(Event::size).sum::<usize>() <= max_bytes);
            }
        }
    }
}
