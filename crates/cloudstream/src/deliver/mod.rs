//! Delivery: a stream written to object storage as files, like Kinesis Data Firehose (the
//! spec's Stream-06). `stream.deliver_to(URL)` is a consumer of the shared runtime (an
//! `on_batch` trigger): it gathers records until a batch is big enough
//! ([`Delivery::max_bytes`] of events, default 5 MiB) or old enough ([`Delivery::max_wait`],
//! default 60 s), writes each partition's records of it as files, and only then lets the
//! checkpoint move past them.
//!
//! Files are JSON Lines (gzip or zstd optional) or Parquet (the payload's JSON fields as
//! columns), laid out by event time in Hive-style prefixes (`dt=2026-11-24/hour=13/`), and
//! named after the positions they hold (`STREAM-PPPPP-FIRST-LAST.jsonl`). Exactly once
//! where consumers read partitions by position (the embedded engine, Kinesis, Kafka, Event
//! Hubs, Redis, `http://`): a file
//! appears whole or not at all; on start, the delivery lists its files and skips what they
//! hold; a batch delivered again after a crash writes the same names with the same bytes.
//! So a crash anywhere leaves neither a gap nor a record in two files. Where the provider
//! delivers through subscriptions (Pub/Sub, NATS, Pulsar, Redis `consumers=groups`), it is
//! at least once. One delivery writes to a prefix at a time.

mod encode;
mod layout;
mod parquet;
pub(crate) mod sink;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Arrow schema types a Parquet delivery's payload columns are given in.
pub use arrow_schema;

use self::encode::Encoding;
pub use self::encode::{check_encoding, Compression, Format};
use self::layout::{runs_by_hour, FileName};
use self::sink::Sink;
use crate::backend::Consumption;
use crate::trigger::Stalling;
use crate::{BatchReport, Error, Record, Result, Sequence, StartAt, Stream, TriggerReport};

/// A delivery of a stream to object storage: configure it, then [`Delivery::run_until`].
pub struct Delivery {
    stream: Stream,
    sink_url: String,
    consumer: String,
    encoding: Encoding,
    run: Stalling,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("stream", &self.stream.name())
            .field("consumer", &self.consumer)
            .field("encoding", &self.encoding)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
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
            encoding: Encoding::default(),
            run: Stalling {
                max_bytes: Some(5 * 1024 * 1024),
                ..Stalling::new(1_000_000, Duration::from_secs(60))
            },
        }
    }
}

/// Checks that `sink` names a store a delivery can write to, without reaching it (building
/// the store client may read files its options name); returns it as [`shown_sink`] does.
pub fn check_sink(sink: &str) -> Result<String> {
    Ok(Sink::open(sink)?.shown().to_owned())
}

/// What the name of a delivered file of `stream` says: its partition and the first and last
/// positions it holds (`STREAM-PPPPP-FIRST-LAST.jsonl`); `None` for any other name.
pub fn file_positions(stream: &str, name: &str) -> Option<(u32, Sequence, Sequence)> {
    FileName::parse(stream, name).map(|f| (f.partition, f.first, f.last))
}

/// The `file://` URL of a local directory, for a sink or a state store: made absolute
/// against the current directory, its special characters (`#`, `?`, `%`, spaces) escaped.
pub fn local_sink(dir: &std::path::Path) -> Result<String> {
    sink::local_url(dir)
}

/// A sink URL as messages and views show it: without its query (which may hold
/// credentials) or user-info. Opens nothing.
pub fn shown_sink(sink: &str) -> String {
    sink::shown(sink)
}

impl Delivery {
    /// The consumer whose checkpoints the delivery keeps (default `deliver`): two
    /// deliveries of one stream need two names.
    pub fn consumer(mut self, name: &str) -> Self {
        self.consumer = name.to_owned();
        self
    }

    /// The files' format (default JSON Lines).
    pub fn format(mut self, format: Format) -> Self {
        self.encoding.format = format;
        self
    }

    /// How files are compressed (default none): JSON Lines whole (none, gzip, zstd),
    /// Parquet by page (none, snappy, gzip, zstd).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.encoding.compression = compression;
        self
    }

    /// The columns of a Parquet file's `payload`, instead of those inferred from each file's
    /// JSON objects: fields not in it are left out, and a payload that does not fit it is
    /// kept whole in `payload_text`.
    pub fn schema(mut self, schema: arrow_schema::SchemaRef) -> Self {
        self.encoding.schema = Some(schema);
        self
    }

    /// About how many bytes of events (payloads, keys and headers) a batch gathers at most
    /// before it is written (default 5 MiB); a JSON Lines file is about twice that before
    /// compression.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.run.max_bytes = Some(n.max(1));
        self
    }

    /// Most records in a file (default 1,000,000).
    pub fn max_records(mut self, n: usize) -> Self {
        self.run.max_records = n.max(1);
        self
    }

    /// How long a file may gather records after its first one (default 60 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.run.max_wait = wait;
        self
    }

    /// Where the delivery starts when its consumer has no checkpoint (default earliest).
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.run.start = start;
        self
    }

    /// Tells `observer` of every batch's outcome (written, or failed and retried, with the
    /// error), as [`crate::Trigger::observe`] does: a server counts deliveries with it.
    pub fn observe(mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) -> Self {
        self.run.observe(observer);
        self
    }

    /// Runs until `shutdown` completes; a batch still gathering then is left for the next
    /// run (its records are read again). A sink that fails is retried with backoff (up to a
    /// minute between tries) for as long as it fails: delivery stalls, it never skips.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<TriggerReport> {
        self.encoding.check()?;
        let sink = Sink::open(&self.sink_url)?;
        let backend = self.stream.backend();
        let ordered = backend.capabilities().replay_by_position
            && matches!(backend.consumption(), Consumption::Checkpoints(_));
        let mut shutdown = std::pin::pin!(shutdown);
        let delivered = if ordered {
            // A store that does not answer is retried by its client for minutes: a shutdown
            // meanwhile stops the delivery before it starts.
            let listed = tokio::select! {
                listed = sink.delivered(self.stream.name()) => listed?,
                () = &mut shutdown => return Ok(TriggerReport::default()),
            };
            check_within(&self.stream, &sink, &listed).await?;
            listed
        } else {
            HashMap::new()
        };
        let writer = Arc::new(Writer {
            stream: self.stream.name().to_owned(),
            sink,
            encoding: self.encoding,
            ordered,
            delivered: Mutex::new(delivered),
        });
        let trigger = self.stream.on_batch(&self.consumer, move |records| {
            let writer = writer.clone();
            async move { writer.write(records).await }
        });
        self.run.apply(trigger).run_until(shutdown).await
    }
}

/// Writes batches as files, and knows what is delivered already.
struct Writer {
    stream: String,
    sink: Sink,
    encoding: Encoding,
    /// Consumers read partitions by position, so what files hold can be skipped by position.
    ordered: bool,
    /// The last position delivered, by partition.
    delivered: Mutex<HashMap<u32, Sequence>>,
}

impl Writer {
    /// Writes a batch: each partition's records not delivered yet (and each once, should
    /// the provider have handed one out twice), one file per run of records in the same
    /// hour, in order.
    async fn write(&self, records: Vec<Record>) -> Result<()> {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(r.position.partition)
                .or_default()
                .push(r);
        }
        for (partition, records) in by_partition {
            self.write_partition(partition, records).await?;
        }
        Ok(())
    }

    async fn write_partition(&self, partition: u32, records: Vec<Record>) -> Result<()> {
        let done = self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied();
        let mut fresh: Vec<Record> = Vec::with_capacity(records.len());
        let mut seen = HashSet::new();
        for r in records {
            let written = self.ordered && done.is_some_and(|d| r.position.sequence <= d);
            if !written && seen.insert(r.position.sequence) {
                fresh.push(r);
            }
        }
        // Encoding a batch takes the CPU for a while: off the async workers.
        let (stream, encoding) = (self.stream.clone(), self.encoding.clone());
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for (hour, run) in runs_by_hour(&fresh) {
                let (Some(name), Some(last)) =
                    (FileName::of(&stream, run, encoding.extension()), run.last())
                else {
                    continue;
                };
                files.push((
                    format!("{hour}/{name}"),
                    encoding.encode(run)?,
                    last.position.sequence,
                ));
            }
            Ok::<_, Error>(files)
        })
        .await
        .map_err(|e| Error::Backend(format!("encoding a file failed: {e}").into()))??;
        for (path, bytes, last) in files {
            self.sink.put(&path, bytes).await?;
            self.delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(partition, last);
        }
        Ok(())
    }
}

/// Refuses to start when files under the prefix hold positions past a partition's end:
/// they are another stream's of the same name (one deleted and made again, or on another
/// provider), and skipping up to them would skip this stream's records.
async fn check_within(
    stream: &Stream,
    sink: &Sink,
    delivered: &HashMap<u32, Sequence>,
) -> Result<()> {
    let info = stream.describe().await?;
    for p in &info.partitions {
        let (Some(last), Some(next)) = (delivered.get(&p.partition), p.next) else {
            continue;
        };
        if *last >= next {
            return Err(Error::InvalidArgument(format!(
                "the files under {} hold position {last} of partition {} of {}, past its end ({next}): they are another stream's; deliver to another prefix",
                sink.shown(),
                p.partition,
                stream.name()
            )));
        }
    }
    Ok(())
}
