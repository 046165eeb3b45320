//! The command line's shape.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Named, retained, replayable event streams on the embedded engine or a cloud provider.
#[derive(Debug, Parser)]
#[command(name = "cloudstream", version, about)]
pub(crate) struct Cli {
    /// Provider URL: local://DIR (embedded, durable) or memory://.
    #[arg(
        long,
        global = true,
        env = "CLOUDSTREAM_URL",
        default_value = cloudstream::DEFAULT_URL
    )]
    pub(crate) url: String,
    /// Print JSON (one object per line for records).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options of `cloudstream serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub(crate) listen: std::net::SocketAddr,
    /// Where webhook and delivery registrations are kept across restarts (default:
    /// `server/` inside a local:// data directory; in memory for other providers).
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// A tokens file (`SHA256-HEX SCOPE STREAMS` per line; see `cloudstream token`): every
    /// request then needs a bearer token with the scope it asks for.
    #[arg(long)]
    pub(crate) tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Longest a client may take to send a request's headers (and finish TLS).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) header_timeout: Duration,
    /// Longest a request may take (a live tail excepted).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Most events in one batch request.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) max_batch_events: usize,
    /// Most requests served at once; more get 503.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_in_flight: usize,
    /// Most connections open at once; more are answered 503 and closed (default: the
    /// descriptor limit, raised to its maximum at start, less 256 kept for files).
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Hosts and networks webhooks may post to, and object-store endpoints deliveries may
    /// name, and no others (comma-separated: `hooks.example.com,*.corp.example,10.0.0.0/8`).
    /// Without it, any host but link-local and cloud metadata addresses.
    #[arg(long)]
    pub(crate) webhook_allow: Option<String>,
    /// The directory deliveries registered over the API may write local files below
    /// (`file:///DIR/...`); without it they write to object stores only.
    #[arg(long)]
    pub(crate) deliver_root: Option<PathBuf>,
    /// A pipeline file (TOML) whose aggregations and deliveries run beside the server.
    #[arg(long)]
    pub(crate) pipeline: Option<PathBuf>,
}

/// The options of `cloudstream aggregate`.
#[derive(Debug, clap::Args)]
pub(crate) struct AggregateArgs {
    /// The stream to aggregate.
    pub(crate) name: String,
    /// The stream results go to (made when missing).
    #[arg(long)]
    pub(crate) to: String,
    /// The stream late records go to (made when missing); without it they are counted.
    #[arg(long)]
    pub(crate) late_to: Option<String>,
    /// `tumbling 1m`, `hopping 5m every 1m` or `session 30s`.
    #[arg(long)]
    pub(crate) window: String,
    /// How late an event may come and still count, e.g. 10s.
    #[arg(long, default_value = "0s")]
    pub(crate) lateness: String,
    /// JSON fields whose values make a group (repeat, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) group_by: Vec<String>,
    /// `NAME=EXPR`: count, sum(f), min(f), max(f), avg(f), distinct(f), p95(f),
    /// percentile(f, 0.95) (repeat for each measure).
    #[arg(long = "measure", required = true)]
    pub(crate) measures: Vec<String>,
    /// Where the state is kept: file:///DIR, s3://BUCKET/PREFIX, ... (default:
    /// ./cloudstream-state).
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Its consumer (default aggregate.TO).
    #[arg(long)]
    pub(crate) consumer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a stream.
    Create {
        /// Stream name: 1-128 of [A-Za-z0-9_.-].
        name: String,
        /// Retention horizon, e.g. 48h, 7d, 90min.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        horizon: Duration,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Succeed if the stream exists already.
        #[arg(long)]
        if_missing: bool,
    },
    /// List streams.
    List,
    /// Show a stream: horizon, partitions, extent, consumers and their lag.
    Describe {
        /// Stream name.
        name: String,
    },
    /// Delete a stream with its records and consumers.
    Delete {
        /// Stream name.
        name: String,
    },
    /// Send one event (DATA), or one event per line of stdin (NDJSON for bulk loads).
    Send {
        /// Stream name.
        name: String,
        /// The payload; without it, every line of stdin is one event.
        data: Option<String>,
        /// Partition key.
        #[arg(long)]
        key: Option<String>,
        /// With stdin lines that are JSON objects: take the key from this field.
        #[arg(long, conflicts_with = "key")]
        key_field: Option<String>,
        /// With stdin lines that are JSON objects: take the event time from this field (RFC
        /// 3339 text, or milliseconds since 1970); lines without it are timed when appended.
        #[arg(long)]
        time_field: Option<String>,
        /// A header, NAME=VALUE (repeatable).
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Events per batch when reading stdin.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Read records deterministically from a start point (default: the earliest).
    Read {
        /// Stream name.
        name: String,
        /// earliest | latest | P:S (at) | after:P:S | time:RFC3339 (e.g. time:2026-11-24T10:00:00Z)
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Partition to read for earliest/latest/time.
        #[arg(long, default_value_t = 0)]
        partition: u32,
        /// Most records, or `all` to read to the end of the partition. When more records
        /// follow, a note on standard error says where to read on.
        #[arg(long, default_value = "100", value_parser = parse_max)]
        max: ReadMax,
    },
    /// Follow a stream: print records as they arrive (all partitions), until Ctrl-C.
    Tail {
        /// Stream name.
        name: String,
        /// Start point, as for read (default: latest).
        #[arg(long, default_value = "latest")]
        from: String,
    },
    /// Fetch batches as a named consumer; each fetch checkpoints the previous batch.
    Consume {
        /// Stream name.
        name: String,
        /// Consumer name.
        #[arg(long, short)]
        consumer: String,
        /// Most records per batch.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Fetch only one batch (committed at once).
        #[arg(long)]
        once: bool,
        /// Keep waiting for new records instead of stopping at the end.
        #[arg(long)]
        follow: bool,
    },
    /// Deliver a stream to object storage, like Firehose, until Ctrl-C or SIGTERM: files of
    /// JSON Lines or Parquet by event hour (dt=YYYY-MM-DD/hour=HH/), each record in exactly
    /// one file.
    Deliver {
        /// Stream name.
        name: String,
        /// Where: file:///DIR, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX, gs://BUCKET/PREFIX,
        /// with the store's options in the query (?endpoint=...&region=...).
        #[arg(long)]
        to: String,
        /// The consumer whose checkpoints the delivery keeps.
        #[arg(long, default_value = "deliver")]
        consumer: String,
        /// jsonl or parquet (the payload's JSON fields as columns).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// none, gzip or zstd; for Parquet also snappy (by page).
        #[arg(long, default_value = "none")]
        compression: String,
        /// About how many bytes a file holds at most.
        #[arg(long, default_value_t = 5 * 1024 * 1024)]
        max_bytes: usize,
        /// How long a file gathers records after its first one, e.g. 60s.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        max_wait: Duration,
    },
    /// Aggregate a stream in event-time windows into another stream, until Ctrl-C or
    /// SIGTERM: per window and group, counts, sums, averages, distinct counts and
    /// percentiles; the state kept across restarts; each result once where the output can
    /// be read from a time (every provider but Pub/Sub, where at least once).
    Aggregate(AggregateArgs),
    /// Run the aggregations and deliveries a pipeline file declares (TOML; see
    /// docs/pipelines.md), until Ctrl-C or SIGTERM.
    Pipeline {
        /// The pipeline file.
        file: PathBuf,
        /// Check the file and print its stages, without running them.
        #[arg(long)]
        check: bool,
    },
    /// Serve the REST API (/v1) over the provider, until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Make a bearer token for `serve --tokens`: prints the token (give it to the client)
    /// and the line to add to the tokens file (only its SHA-256 is stored).
    Token {
        /// What the token may do: read, write or admin.
        #[arg(long, default_value = "read")]
        scope: String,
        /// Streams it may do it on: names, `prefix*` patterns or `*`, comma-separated.
        #[arg(long, default_value = "*")]
        streams: String,
    },
    /// Benchmark the embedded engine against raw fdatasync on the same disk.
    Bench {
        /// Directory to benchmark in (default: a temporary directory under the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Write the results as JSON to this file too.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("header {s:?} is not NAME=VALUE"))
}

/// How many records `read` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMax {
    /// At most this many.
    Records(usize),
    /// Every record up to the end of the partition.
    All,
}

/// `--max`: a positive whole number, or `all`.
fn parse_max(text: &str) -> Result<ReadMax, String> {
    if text == "all" {
        return Ok(ReadMax::All);
    }
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(ReadMax::Records(n)),
        _ => Err(format!(
            "{text:?} is not a positive number of records or `all`"
        )),
    }
}
