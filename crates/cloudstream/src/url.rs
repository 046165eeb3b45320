//! Choosing a backend from a URL: a pure parse into [`ProviderUrl`], then [`crate::open`].
//!
//! | URL | backend |
//! |---|---|
//! | `local://DIR` (`local://./data`, `local:///var/lib/cs`) | embedded engine in `DIR` |
//! | `memory://` or `memory://NAME` | embedded engine in memory; one per `NAME` per process |
//!
//! Options of `local://` go in the query string: `sync=always|interval|never`,
//! `sync_interval_ms=100`, `segment_bytes=134217728`, `max_record_bytes=1048576`,
//! `retention_check_ms=30000`. Cloud schemes (`kinesis://`, `pubsub://`, `kafka://`, ...) are
//! recognised and refused with a clear error until their backend is built.

use std::path::PathBuf;
use std::time::Duration;

use cloudstream_log::SyncPolicy;

use crate::{Error, Result};

/// Schemes of providers planned but not in this build.
const PLANNED: &[&str] = &[
    "kinesis",
    "pubsub",
    "eventhubs",
    "kafka",
    "pulsar",
    "nats",
    "redis",
    "http",
    "https",
];

/// A parsed provider URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderUrl {
    /// `local://DIR`: the embedded engine on disk.
    Local {
        /// The data directory.
        path: PathBuf,
        /// Engine settings from the query string.
        options: LocalOptions,
    },
    /// `memory://NAME`: the embedded engine in memory, shared by name within the process.
    Memory {
        /// The instance name ("" for a private, unnamed one).
        name: String,
        /// Engine settings from the query string.
        options: LocalOptions,
    },
}

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
            max_record_bytes: crate::backend::DEFAULT_MAX_RECORD_BYTES,
            retention_check: Duration::from_secs(30),
        }
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a provider URL without touching anything.
pub fn parse_url(url: &str) -> Result<ProviderUrl> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        invalid(
            url,
            "expected SCHEME://..., e.g. local://./cloudstream-data or memory://",
        )
    })?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    match scheme {
        "local" => {
            if location.is_empty() {
                return Err(invalid(
                    url,
                    "local:// needs a directory, e.g. local://./cloudstream-data",
                ));
            }
            Ok(ProviderUrl::Local {
                path: PathBuf::from(location),
                options: local_options(url, query)?,
            })
        }
        "memory" => Ok(ProviderUrl::Memory {
            name: location.trim_end_matches('/').to_owned(),
            options: local_options(url, query)?,
        }),
        s if PLANNED.contains(&s) => Err(invalid(
            url,
            format!(
                "the {s} backend is not available in this build yet; use local:// or memory://"
            ),
        )),
        s => Err(invalid(
            url,
            format!("unknown scheme {s:?}; known: local, memory"),
        )),
    }
}

fn local_options(url: &str, query: &str) -> Result<LocalOptions> {
    let mut o = LocalOptions::default();
    let mut sync = "always".to_owned();
    let mut interval = Duration::from_millis(100);
    let num = |k: &str, v: &str| -> Result<u64> {
        v.parse()
            .map_err(|_| invalid(url, format!("{k} must be a whole number, got {v:?}")))
    };
    for (k, v) in ::url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "sync" => sync = v.into_owned(),
            "sync_interval_ms" => interval = Duration::from_millis(num(&k, &v)?),
            "segment_bytes" => o.segment_bytes = num(&k, &v)?,
            "max_record_bytes" => o.max_record_bytes = num(&k, &v)? as usize,
            "retention_check_ms" => o.retention_check = Duration::from_millis(num(&k, &v)?.max(1)),
            _ => {
                return Err(invalid(
                    url,
                    format!("unknown option {k:?}; known: sync, sync_interval_ms, segment_bytes, max_record_bytes, retention_check_ms"),
                ))
            }
        }
    }
    o.sync = match sync.as_str() {
        "always" => SyncPolicy::Always,
        "never" => SyncPolicy::Never,
        "interval" => SyncPolicy::Interval(interval),
        other => {
            return Err(invalid(
                url,
                format!("sync must be always, interval or never, got {other:?}"),
            ))
        }
    };
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() -> Result<()> {
        assert_eq!(
            parse_url("local://./data")?,
            ProviderUrl::Local {
                path: "./data".into(),
                options: LocalOptions::default()
            }
        );
        let ProviderUrl::Local { path, options } =
            parse_url("local:///var/cs?sync=interval&sync_interval_ms=5")?
        else {
            panic!("not local")
        };
        assert_eq!(path, PathBuf::from("/var/cs"));
        assert_eq!(options.sync, SyncPolicy::Interval(Duration::from_millis(5)));
        assert!(
            matches!(parse_url("memory://")?, ProviderUrl::Memory { name, .. } if name.is_empty())
        );
        Ok(())
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, says) in [
            ("nothing", "SCHEME://"),
            ("local://", "needs a directory"),
            ("ftp://x", "unknown scheme"),
            ("kinesis://us-east-1", "not available in this build"),
            ("local://d?sync=sometimes", "sync must be"),
            ("local://d?segment_bytes=big", "whole number"),
            ("local://d?colour=red", "unknown option"),
        ] {
            let err = parse_url(url).expect_err(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
