//! # cloudstream
//!
//! Named, retained, replayable event streams behind one API: the `cloud.Stream` resource of
//! the Wing Cloud Stream spec, in Rust. A URL picks the provider — the embedded durable
//! engine (`local://DIR`, the default), an in-memory one (`memory://`), a remote
//! `cloudstream serve` (`http://`), or a cloud provider behind its cargo feature (see
//! [`backend::providers`]) — and the code stays the same.
//!
//! ```
//! use std::time::Duration;
//! use cloudstream::{Event, ReadFrom};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cloudstream::Result<()> {
//! let client = cloudstream::open("memory://").await?;
//! let stream = client
//!     .stream("TelemetryIngest")
//!     .horizon(Duration::from_secs(48 * 3600))
//!     .create_if_missing()
//!     .await?;
//!
//! // TelemetryWriter: one event, acknowledged once durable.
//! let receipt = stream.send(Event::json(&serde_json::json!({"device": 7, "temp": 21.5}))?).await?;
//!
//! // Deterministic read from a position.
//! let records = stream.read(ReadFrom::At(receipt), 10).await?;
//! assert_eq!(records[0].position, receipt);
//!
//! // telemetry-reader: the newest batch for a named consumer, checkpointed implicitly.
//! let reader = stream.consumer("telemetry-reader");
//! let batch = reader.fetch().await?;
//! assert_eq!(batch.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The pieces: [`open`] parses a URL ([`url`]) into a [`backend::Backend`], the small trait
//! every provider implements; [`Client`] creates and lists streams; [`Stream`] sends, reads
//! and tails; [`Consumer`] fetches with implicit checkpoints; [`Trigger`] runs a handler on
//! every event with retries and a dead-letter stream.

#[cfg(feature = "aggregate")]
pub mod aggregate;
#[cfg(feature = "dynamodb")]
mod aws_errors;
pub mod backend;
pub mod checkpoint;
mod client;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod consume;
mod consumer;
#[cfg(feature = "deliver")]
pub mod deliver;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod grammar;
mod lease;
#[cfg(feature = "openapi")]
mod openapi;
mod partitioner;
#[cfg(feature = "aggregate")]
pub mod pipeline;
mod retry;
mod sequence;
pub mod start;
mod stream;
mod trigger;
pub mod url;
pub mod wire;

pub use client::{open, url_from_env, Client, StreamBuilder, DEFAULT_URL};
pub use consumer::{Batch, Consumer, Gap, StartAt};
pub use error::{Error, Result};
pub use event::{Event, Position, Receipt, Record, ID_HEADER, MAX_ID_BYTES};
pub use retry::RetryPolicy;
pub use sequence::Sequence;
pub use stream::{ReadFrom, Stream};
pub use trigger::{dlq_headers, BatchOutcome, BatchReport, Trigger, TriggerReport, TriggerTotals};

/// Longest stream, consumer or member name.
pub const MAX_NAME_LEN: usize = cloudstream_log::MAX_NAME_LEN;

/// Checks a stream or consumer name (`kind` is "stream" or "consumer"): 1 to 128 letters,
/// digits, `_`, `.` and `-`, not `.` or `..`; [`Error::InvalidName`] otherwise.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    Ok(cloudstream_log::validate_name(kind, name)?)
}
