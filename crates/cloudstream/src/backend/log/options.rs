//! The options of `local://DIR` and `memory://[NAME]` URLs: `sync=always|interval|never`,
//! `sync_interval_ms=100`, `segment_bytes=134217728`, `max_record_bytes=1048576`,
//! `retention_check_ms=30000`.

use std::time::Duration;

use cloudstream_log::SyncPolicy;

use crate::url::ProviderUrl;
use crate::Result;

/// Settings of the embedded engine that a URL may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// When appends are acknowledged (`sync=always|interval|never`).
    pub sync: SyncPolicy,
    /// Segment size (`segment_bytes`).
    pub segment_bytes: u64,
    /// Largest event (`max_record_bytes`).
    pub max_record_bytes: usize,
    /// Retention pass interval (`retention_check_ms`).
    pub retention_check: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            sync: SyncPolicy::Always,
            segment_bytes: 128 * 1024 * 1024,
            max_record_bytes: super::DEFAULT_MAX_RECORD_BYTES,
            retention_check: Duration::from_secs(30),
        }
    }
}

const KNOWN: &[&str] = &[
    "sync",
    "sync_interval_ms",
    "segment_bytes",
    "max_record_bytes",
    "retention_check_ms",
];

impl LocalOptions {
    /// The engine settings in a `local://` or `memory://` URL's query string.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let mut o = LocalOptions::default();
        let mut sync = "always".to_owned();
        let mut interval = Duration::from_millis(100);
        for (k, v) in url.options() {
            match k.as_str() {
                "sync" => sync = v,
                "sync_interval_ms" => interval = Duration::from_millis(url.number(&k, &v)?),
                "segment_bytes" => o.segment_bytes = url.number(&k, &v)?,
                "max_record_bytes" => o.max_record_bytes = url.number(&k, &v)?,
                "retention_check_ms" => {
                    o.retention_check = Duration::from_millis(url.number::<u64>(&k, &v)?.max(1))
                }
                _ => return Err(url.unknown_option(&k, KNOWN)),
            }
        }
        o.sync = match sync.as_str() {
            "always" => SyncPolicy::Always,
            "never" => SyncPolicy::Never,
            "interval" => SyncPolicy::Interval(interval),
            other => {
                return Err(url.invalid(format!(
                    "sync must be always, interval or never, got {other:?}"
                )))
            }
        };
        Ok(o)
    }
}
