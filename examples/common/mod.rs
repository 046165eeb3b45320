//! What the three examples share: the RFC's stream declaration,
//! `new cloud.Stream(horizon: 48h) as "TelemetryIngest"`, on the provider `CLOUDSTREAM_URL`
//! names (default: the embedded engine in `./cloudstream-data`).

use std::time::Duration;

use cloudstream::Stream;

/// The `TelemetryIngest` stream (horizon 48 h), created on first use.
pub(crate) async fn telemetry_ingest() -> cloudstream::Result<Stream> {
    cloudstream::open(&cloudstream::url_from_env())
        .await?
        .stream("TelemetryIngest")
        .horizon(Duration::from_secs(48 * 3600))
        .create_if_missing()
        .await
}
