//! A delivery's registration: the body of `PUT /v1/streams/{name}/deliveries/{id}` checked
//! and completed with defaults into the [`Spec`] that `deliveries.json` keeps.

use std::time::Duration;

use cloudstream::deliver::{Compression, Format};
use cloudstream::StartAt;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Smallest and largest batch, in bytes of events.
const MAX_BYTES: (u64, u64) = (1024, 256 * 1024 * 1024);
/// Most records in a file.
const MAX_RECORDS: (u64, u64) = (1, 1_000_000);
/// Shortest and longest gathering time of a file.
const MAX_WAIT_MS: (u64, u64) = (100, 900_000);

/// The consumer a delivery reads as.
pub(crate) fn consumer_name(id: &str) -> String {
    <crate::deliveries::DeliveryJob as crate::jobs::Job>::consumer(id)
}

/// A delivery's settings with every default applied: what `deliveries.json` holds (the
/// sink URL whole, credentials in its query included: the file is its owner's only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Shown without the sink's query, which may hold credentials.
impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("stream", &self.stream)
            .field("id", &self.id)
            .field("to", &shown(&self.to))
            .field("format", &self.format)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// A sink URL as views, logs and messages show it: without its query or user-info.
pub(crate) fn shown(sink: &str) -> String {
    cloudstream::deliver::shown_sink(sink)
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
pub(crate) struct DeliverySpec {
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

/// A 422 `invalid_delivery`: a well-formed spec that cannot be run (a compression its
/// format does not take, a sink the store cannot open).
fn unprocessable(e: cloudstream::Error) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_delivery",
        e.to_string(),
    )
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

impl DeliverySpec {
    /// The sink.
    pub(crate) fn to(&self) -> &str {
        &self.to
    }

    /// Checks the spec (not the sink's policy: `SinkPolicy::check`) and applies the
    /// defaults.
    pub(crate) fn resolve(self, stream: &str, id: &str) -> Result<Spec, ApiError> {
        let format: Format = self.format.as_deref().unwrap_or("jsonl").parse()?;
        let compression: Compression = self.compression.as_deref().unwrap_or("none").parse()?;
        cloudstream::deliver::check_encoding(format, compression).map_err(unprocessable)?;
        let spec = Spec {
            stream: stream.to_owned(),
            id: id.to_owned(),
            to: self.to,
            format: format.name().to_owned(),
            compression: compression.name().to_owned(),
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
        cloudstream::deliver::check_sink(&spec.to).map_err(unprocessable)?;
        Ok(spec)
    }
}
