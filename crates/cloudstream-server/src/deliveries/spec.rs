//! A delivery's registration: the body of `PUT /v1/streams/{name}/deliveries/{id}` checked
//! and completed with defaults into the [`Spec`] that `deliveries.json` keeps, and where a
//! server may deliver ([`SinkPolicy`]).

use std::path::{Component, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use cloudstream::deliver::{Compression, Format};
use cloudstream::StartAt;
use serde::{Deserialize, Serialize};

use crate::webhooks::WebhookPolicy;
use crate::ApiError;

/// Smallest and largest batch, in bytes of events.
const MAX_BYTES: (u64, u64) = (1024, 256 * 1024 * 1024);
/// Most records in a file.
const MAX_RECORDS: (u64, u64) = (1, 1_000_000);
/// Shortest and longest gathering time of a file.
const MAX_WAIT_MS: (u64, u64) = (100, 900_000);

/// The consumer a delivery reads as.
pub(crate) fn consumer_name(id: &str) -> String {
    format!("deliver-{id}")
}

/// A delivery's settings with every default applied: what `deliveries.json` holds (the
/// sink URL whole, credentials in its query included: the file is its owner's only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    /// The stream it delivers.
    pub(crate) stream: String,
    /// Its id within the stream.
    pub(crate) id: String,
    /// The sink URL.
    pub(crate) to: String,
    /// `jsonl` or `parquet`.
    pub(crate) format: String,
    /// `none`, `gzip`, `zstd` or `snappy`.
    pub(crate) compression: String,
    /// Bytes of events a file gathers at most.
    pub(crate) max_bytes: usize,
    /// Records a file holds at most.
    pub(crate) max_records: usize,
    /// How long a file gathers records after its first one.
    pub(crate) max_wait_ms: u64,
    /// Where it starts without a checkpoint.
    pub(crate) start: StartAt,
}

impl Spec {
    /// The format and compression, as the library takes them.
    pub(crate) fn encoding(&self) -> cloudstream::Result<(Format, Compression)> {
        Ok((self.format.parse()?, self.compression.parse()?))
    }

    /// How long a file gathers records.
    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// The body of `PUT /v1/streams/{name}/deliveries/{id}`: only `to` is required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecIn {
    /// The sink: `s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX` (the
    /// store's options in the query), or `file:///DIR` below the server's `--deliver-root`.
    to: String,
    /// `jsonl` (default) or `parquet`.
    format: Option<String>,
    /// `none` (default), `gzip`, `zstd`, or for Parquet `snappy`.
    compression: Option<String>,
    /// Bytes of events a file gathers at most (default 5 MiB, 1 KiB to 256 MiB).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    max_bytes: Option<u64>,
    /// Records a file holds at most (default and at most 1,000,000).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    max_records: Option<u64>,
    /// How long a file gathers records after its first one (default 60 s, 100 ms to 15 min).
    #[serde(default, deserialize_with = "crate::numbers::opt_u64")]
    max_wait_ms: Option<u64>,
    /// `earliest` (default), `latest` or `time:RFC3339`.
    start: Option<StartAt>,
}

/// A 400 unless `min <= value <= max`.
fn in_range(field: &str, value: u64, (min, max): (u64, u64)) -> Result<usize, ApiError> {
    if !(min..=max).contains(&value) {
        return Err(ApiError::bad_request(format!(
            "{field} must be between {min} and {max}, got {value}"
        )));
    }
    usize::try_from(value).map_err(|_| ApiError::bad_request(format!("{field} is too large")))
}

impl SpecIn {
    /// Checks the spec (not the sink's policy: [`SinkPolicy::check`]) and applies the
    /// defaults.
    pub(crate) fn resolve(self, stream: &str, id: &str) -> Result<Spec, ApiError> {
        let spec = Spec {
            stream: stream.to_owned(),
            id: id.to_owned(),
            to: self.to,
            format: self.format.unwrap_or_else(|| "jsonl".to_owned()),
            compression: self.compression.unwrap_or_else(|| "none".to_owned()),
            max_bytes: in_range(
                "max_bytes",
                self.max_bytes.unwrap_or(5 * 1024 * 1024),
                MAX_BYTES,
            )?,
            max_records: in_range(
                "max_records",
                self.max_records.unwrap_or(1_000_000),
                MAX_RECORDS,
            )?,
            max_wait_ms: in_range(
                "max_wait_ms",
                self.max_wait_ms.unwrap_or(60_000),
                MAX_WAIT_MS,
            )? as u64,
            start: self.start.unwrap_or(StartAt::Earliest),
        };
        let (format, compression) = spec.encoding()?;
        if format == Format::JsonLines && compression == Compression::Snappy {
            return Err(ApiError::bad_request(
                "snappy compresses Parquet files; JSON Lines are none, gzip or zstd",
            ));
        }
        cloudstream::deliver::check_sink(&spec.to)?;
        Ok(spec)
    }
}

/// Where a server may deliver: local files only below its delivery root (none without
/// one), and object stores whose endpoints pass the same guard as webhooks (no link-local
/// or cloud metadata address, or only the hosts of `--webhook-allow`).
#[derive(Debug, Clone, Default)]
pub(crate) struct SinkPolicy {
    /// The directory `file://` sinks must be below.
    pub(crate) root: Option<PathBuf>,
    /// The hosts an endpoint may name.
    pub(crate) outbound: WebhookPolicy,
}

/// A 403 with code `sink_not_allowed`.
fn refused(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "sink_not_allowed", message)
}

impl SinkPolicy {
    /// Checks a sink URL; `Err` (a 403, or a 400 for a URL that is not one) says why the
    /// server may not deliver there. Endpoint names are resolved, and every address they
    /// resolve to must be allowed.
    pub(crate) async fn check(&self, sink: &str) -> Result<(), ApiError> {
        let url = reqwest::Url::parse(sink)
            .map_err(|e| ApiError::bad_request(format!("to: not a URL: {e}")))?;
        if url.scheme() == "file" {
            return self.check_file(&url);
        }
        for (key, value) in url.query_pairs() {
            let Ok(endpoint) = reqwest::Url::parse(&value) else {
                continue;
            };
            if !matches!(endpoint.scheme(), "http" | "https") {
                continue;
            }
            self.outbound
                .check(&endpoint)
                .map_err(|e| refused(format!("to: option {key}: {e}")))?;
            let host = endpoint.host_str().unwrap_or_default().to_owned();
            let port = endpoint.port_or_known_default().unwrap_or(443);
            let found: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default();
            self.outbound
                .admit(&host, found)
                .map_err(|e| refused(format!("to: option {key}: {e}")))?;
        }
        Ok(())
    }

    fn check_file(&self, url: &reqwest::Url) -> Result<(), ApiError> {
        let Some(root) = &self.root else {
            return Err(refused(
                "to: this server delivers to local files only below a root directory it was started with (serve --deliver-root DIR)".into(),
            ));
        };
        let path = url
            .to_file_path()
            .map_err(|()| ApiError::bad_request("to: not a local path"))?;
        let climbs = path.components().any(|c| matches!(c, Component::ParentDir));
        if climbs || !path.starts_with(root) {
            return Err(refused(format!(
                "to: local files go below {} (serve --deliver-root)",
                root.display()
            )));
        }
        Ok(())
    }
}
