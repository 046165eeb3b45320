//! Delivery: a stream written to object storage as files, like Kinesis Data Firehose (the
//! spec's Stream-06). `stream.deliver_to(URL)` is a consumer of the shared runtime (an
//! `on_batch` trigger): it gathers each partition's records until a file is big enough
//! ([`Delivery::max_bytes`], default 5 MiB) or old enough ([`Delivery::max_wait`], default
//! 60 s), writes them as one file, and only then lets the checkpoint move past them.
//!
//! Files are JSON Lines (gzip or zstd optional), laid out by event time in Hive-style
//! prefixes (`dt=2026-11-24/hour=13/`), and named after the positions they hold
//! (`STREAM-PPPPP-FIRST-LAST.jsonl`). Exactly once, where positions are ordered within a
//! partition (every backend that reads by position): a file appears whole or not at all; on
//! start, the delivery lists its files and skips what they hold; a batch delivered again
//! after a crash writes the same names with the same bytes. So a crash anywhere leaves
//! neither a gap nor a record in two files. Where positions are not ordered (Pub/Sub), it
//! is at least once.

mod encode;
mod layout;
mod sink;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::encode::Compression;
use self::layout::{runs_by_hour, FileName};
use self::sink::Sink;
use crate::{Error, Record, Result, RetryPolicy, Sequence, StartAt, Stream, TriggerReport};

/// A delivery of a stream to object storage: configure it, then [`Delivery::run_until`].
#[derive(Debug)]
pub struct Delivery {
    stream: Stream,
    sink_url: String,
    consumer: String,
    compression: Compression,
    max_bytes: usize,
    max_records: usize,
    max_wait: Duration,
    start: StartAt,
}

impl Stream {
    /// A delivery of this stream to the object store `sink` names: `file:///DIR` (or an
    /// absolute path), `s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX`,
    /// with the store's options in the query (`?endpoint=...&region=...`). Its consumer is
    /// `deliver` unless [`Delivery::consumer`] names another.
    pub fn deliver_to(&self, sink: &str) -> Delivery {
        Delivery {
            stream: self.clone(),
            sink_url: sink.to_owned(),
            consumer: "deliver".to_owned(),
            compression: Compression::None,
            max_bytes: 5 * 1024 * 1024,
            max_records: 1_000_000,
            max_wait: Duration::from_secs(60),
            start: StartAt::Earliest,
        }
    }
}

impl Delivery {
    /// The consumer whose checkpoints the delivery keeps (default `deliver`): two
    /// deliveries of one stream need two names.
    pub fn consumer(mut self, name: &str) -> Self {
        self.consumer = name.to_owned();
        self
    }

    /// How files are compressed (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// About how many bytes of events a file holds at most (default 5 MiB).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// Most records in a file (default 1,000,000).
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }

    /// How long a file may gather records after its first one (default 60 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Where the delivery starts when its consumer has no checkpoint (default earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Runs until `shutdown` completes; the records in hand are written first. A sink that
    /// fails is retried with backoff (up to a minute between tries) for as long as it
    /// fails: delivery stalls, it never skips.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        let sink = Sink::open(&self.sink_url)?;
        let ordered = self.stream.backend().capabilities().replay_by_position;
        let delivered = if ordered {
            sink.delivered(self.stream.name()).await?
        } else {
            HashMap::new()
        };
        let writer = Arc::new(Writer {
            stream: self.stream.name().to_owned(),
            sink,
            compression: self.compression,
            ordered,
            delivered: Mutex::new(delivered),
        });
        self.stream
            .on_batch(&self.consumer, move |records| {
                let writer = writer.clone();
                async move { writer.write(records).await }
            })
            .batch_size(self.max_records)
            .batch_bytes(self.max_bytes)
            .max_wait(self.max_wait)
            .start_at(self.start)
            .retry(RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(60),
            })
            .no_dead_letter()
            .run_until(shutdown)
            .await
    }
}

/// Writes batches as files, and knows what is delivered already.
struct Writer {
    stream: String,
    sink: Sink,
    compression: Compression,
    /// Positions rise within a partition, so what files hold can be skipped by position.
    ordered: bool,
    /// The last position delivered, by partition.
    delivered: Mutex<HashMap<u32, Sequence>>,
}

impl Writer {
    /// Writes one partition's batch: the records not delivered yet, one file per run of
    /// records in the same hour, in order.
    async fn write(&self, records: Vec<Record>) -> Result<()> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let partition = first.position.partition;
        let done = self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied();
        let fresh: Vec<Record> = match (self.ordered, done) {
            (true, Some(done)) => records
                .into_iter()
                .filter(|r| r.position.sequence > done)
                .collect(),
            _ => records,
        };
        for (hour, run) in runs_by_hour(&fresh) {
            let extension = self.compression.extension();
            let Some(name) = FileName::of(&self.stream, run, extension) else {
                continue;
            };
            let bytes = encode::json_lines(run, self.compression)?;
            self.sink
                .put(&format!("{hour}/{name}"), bytes)
                .await
                .map_err(|e| {
                    Error::Unavailable(format!("delivery to {}: {e}", self.sink.shown()).into())
                })?;
            if let Some(last) = run.last() {
                self.delivered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(partition, last.position.sequence);
            }
        }
        Ok(())
    }
}
