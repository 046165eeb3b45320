//! Choosing a backend from a URL: a pure parse into [`ProviderUrl`], then [`crate::open`].
//!
//! | URL | backend |
//! |---|---|
//! | `local://DIR` (`local://./data`, `local:///var/lib/cs`) | embedded engine in `DIR` |
//! | `memory://` or `memory://NAME` | embedded engine in memory; one per `NAME` per process |
//! | `kinesis://[REGION]` | AWS Kinesis Data Streams (feature `kinesis`) |
//! | `pubsub://PROJECT` | Google Cloud Pub/Sub (feature `pubsub`), options in [`PubSubOptions`] |
//!
//! Options of `local://` go in the query string: `sync=always|interval|never`,
//! `sync_interval_ms=100`, `segment_bytes=134217728`, `max_record_bytes=1048576`,
//! `retention_check_ms=30000`.
//!
//! Options of `kinesis://` ([`KinesisOptions`]): `endpoint=http://127.0.0.1:4567` (a
//! Kinesis-compatible server), `profile=NAME`, `access_key_id=...&secret_access_key=...`
//! (else the usual AWS chain: environment, profile, SSO, instance role), `mode=provisioned|
//! on-demand`, and where consumer checkpoints live: `checkpoints=dynamodb` (table
//! `cloudstream-checkpoints`, created if missing), `checkpoints=dynamodb:TABLE`,
//! `checkpoint_endpoint=URL` (DynamoDB elsewhere than Kinesis), or `checkpoints=local:DIR`
//! (the embedded engine's checkpoint store, for local development). The region comes from
//! the host part, else from the AWS chain.
//!
//! Other cloud schemes (`eventhubs://`, `kafka://`, ...) are recognised and refused with a
//! clear error until their backend is built.

use std::path::PathBuf;
use std::time::Duration;

use cloudstream_log::SyncPolicy;

pub use crate::checkpoint::CheckpointLocation;
use crate::{Error, Result};

/// Schemes of providers planned but not in this build.
const PLANNED: &[&str] = &["eventhubs", "kafka", "pulsar", "nats", "redis"];

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
    /// `kinesis://[REGION]`: AWS Kinesis Data Streams.
    Kinesis(KinesisOptions),
    /// `pubsub://PROJECT`: Google Cloud Pub/Sub.
    PubSub(PubSubOptions),
    /// `http://HOST:PORT` or `https://...`: a remote `cloudstream serve`.
    Http(HttpOptions),
}

/// Settings of `http://HOST:PORT[/PREFIX]` (or `https://`) from the URL: a remote
/// `cloudstream serve`, through its REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The server's base URL, without the query (`http://127.0.0.1:7070`).
    pub base: String,
    /// Bearer token sent with every request (`token=`, else `CLOUDSTREAM_TOKEN`).
    pub token: Option<String>,
    /// Longest a request may take, besides the wait of a long poll (`timeout_ms`, default
    /// 30 s).
    pub timeout: Duration,
    /// A PEM certificate to trust besides the system's, for a server with its own
    /// certificate authority (`ca_file=PATH`).
    pub ca_file: Option<PathBuf>,
}

/// Settings of `pubsub://PROJECT` from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubOptions {
    /// The Google Cloud project.
    pub project: String,
    /// A Pub/Sub-compatible endpoint (the emulator), else `PUBSUB_EMULATOR_HOST`, else Google's.
    pub endpoint: Option<String>,
    /// Seconds a delivered message stays leased before redelivery (`ack_deadline_s`, 10 to
    /// 600; default 30). The client extends it while the record is in hand.
    pub ack_deadline_secs: i32,
    /// Deliveries before a message goes to the dead-letter topic `STREAM.dlq`
    /// (`max_delivery_attempts`, 5 to 100; default 5).
    pub max_delivery_attempts: i32,
}

/// How Kinesis streams are provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapacityMode {
    /// A fixed number of shards: one per partition (the default).
    #[default]
    Provisioned,
    /// AWS scales shards itself; the stream has as many partitions as it has open shards.
    OnDemand,
}

/// Settings of `kinesis://` from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisOptions {
    /// The region (the URL's host), else the AWS chain's.
    pub region: Option<String>,
    /// A Kinesis-compatible endpoint (kinesalite, moto, LocalStack), else AWS's.
    pub endpoint: Option<String>,
    /// A named AWS profile.
    pub profile: Option<String>,
    /// Static credentials: access key id and secret (and an optional session token).
    pub credentials: Option<(String, String, Option<String>)>,
    /// Capacity mode of the streams this client creates.
    pub mode: CapacityMode,
    /// Where consumer checkpoints live.
    pub checkpoints: CheckpointLocation,
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
        "kinesis" => Ok(ProviderUrl::Kinesis(kinesis_options(url, location, query)?)),
        "pubsub" => Ok(ProviderUrl::PubSub(pubsub_options(url, location, query)?)),
        "http" | "https" => Ok(ProviderUrl::Http(http_options(
            url, scheme, location, query,
        )?)),
        s if PLANNED.contains(&s) => Err(invalid(
            url,
            format!(
                "the {s} backend is not available in this build yet; use local:// or memory://"
            ),
        )),
        s => Err(invalid(
            url,
            format!("unknown scheme {s:?}; known: local, memory, kinesis, pubsub, http, https"),
        )),
    }
}

fn kinesis_options(url: &str, location: &str, query: &str) -> Result<KinesisOptions> {
    let region = location.trim_end_matches('/');
    let mut o = KinesisOptions {
        region: (!region.is_empty()).then(|| region.to_owned()),
        endpoint: None,
        profile: None,
        credentials: None,
        mode: CapacityMode::Provisioned,
        checkpoints: CheckpointLocation::DynamoDb {
            table: crate::checkpoint::DEFAULT_TABLE.to_owned(),
            endpoint: None,
        },
    };
    let (mut key, mut secret, mut token, mut checkpoint_endpoint) = (None, None, None, None);
    let mut checkpoints = "dynamodb".to_owned();
    for (k, v) in ::url::form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "endpoint" => o.endpoint = Some(v),
            "profile" => o.profile = Some(v),
            "access_key_id" => key = Some(v),
            "secret_access_key" => secret = Some(v),
            "session_token" => token = Some(v),
            "checkpoints" => checkpoints = v,
            "checkpoint_endpoint" => checkpoint_endpoint = Some(v),
            "mode" => {
                o.mode = match v.as_str() {
                    "provisioned" => CapacityMode::Provisioned,
                    "on-demand" => CapacityMode::OnDemand,
                    other => {
                        return Err(invalid(
                            url,
                            format!("mode must be provisioned or on-demand, got {other:?}"),
                        ))
                    }
                }
            }
            _ => {
                return Err(invalid(
                    url,
                    format!("unknown option {k:?}; known: endpoint, profile, access_key_id, secret_access_key, session_token, mode, checkpoints, checkpoint_endpoint"),
                ))
            }
        }
    }
    o.credentials = match (key, secret) {
        (Some(k), Some(s)) => Some((k, s, token)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                url,
                "access_key_id and secret_access_key go together",
            ))
        }
    };
    o.checkpoints = CheckpointLocation::parse(&checkpoints, checkpoint_endpoint)
        .map_err(|e| invalid(url, e))?;
    Ok(o)
}

fn http_options(url: &str, scheme: &str, location: &str, query: &str) -> Result<HttpOptions> {
    let base = format!("{scheme}://{}", location.trim_end_matches('/'));
    ::url::Url::parse(&base)
        .ok()
        .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        .ok_or_else(|| invalid(url, "expected http://HOST:PORT, e.g. http://127.0.0.1:7070"))?;
    let mut o = HttpOptions {
        base,
        token: std::env::var("CLOUDSTREAM_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        timeout: Duration::from_secs(30),
        ca_file: None,
    };
    for (k, v) in ::url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "token" => o.token = Some(v.into_owned()),
            "ca_file" => o.ca_file = Some(PathBuf::from(&*v)),
            "timeout_ms" => {
                let ms: u64 = v.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                    invalid(
                        url,
                        format!("timeout_ms must be a positive whole number, got {v:?}"),
                    )
                })?;
                o.timeout = Duration::from_millis(ms);
            }
            _ => {
                return Err(invalid(
                    url,
                    format!("unknown option {k:?}; known: token, timeout_ms, ca_file"),
                ))
            }
        }
    }
    Ok(o)
}

fn pubsub_options(url: &str, location: &str, query: &str) -> Result<PubSubOptions> {
    let project = location.trim_end_matches('/');
    if project.is_empty() {
        return Err(invalid(
            url,
            "pubsub:// needs a project, e.g. pubsub://my-project",
        ));
    }
    let mut o = PubSubOptions {
        project: project.to_owned(),
        endpoint: None,
        ack_deadline_secs: 30,
        max_delivery_attempts: 5,
    };
    let ranged = |k: &str, v: &str, lo: i32, hi: i32| -> Result<i32> {
        v.parse()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                invalid(
                    url,
                    format!("{k} must be a whole number from {lo} to {hi}, got {v:?}"),
                )
            })
    };
    for (k, v) in ::url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "endpoint" => o.endpoint = Some(v.into_owned()),
            "ack_deadline_s" => o.ack_deadline_secs = ranged(&k, &v, 10, 600)?,
            "max_delivery_attempts" => o.max_delivery_attempts = ranged(&k, &v, 5, 100)?,
            _ => {
                let known = "endpoint, ack_deadline_s, max_delivery_attempts";
                return Err(invalid(
                    url,
                    format!("unknown option {k:?}; known: {known}"),
                ));
            }
        }
    }
    Ok(o)
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
        let ProviderUrl::Kinesis(k) = parse_url(
            "kinesis://eu-west-1?endpoint=http://127.0.0.1:4567&access_key_id=a&secret_access_key=b&checkpoints=local:/tmp/ck&mode=on-demand",
        )?
        else {
            panic!("not kinesis")
        };
        assert_eq!(k.region.as_deref(), Some("eu-west-1"));
        assert_eq!(k.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(k.credentials, Some(("a".into(), "b".into(), None)));
        assert_eq!(k.checkpoints, CheckpointLocation::Local("/tmp/ck".into()));
        assert_eq!(k.mode, CapacityMode::OnDemand);
        Ok(())
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, says) in [
            ("nothing", "SCHEME://"),
            ("local://", "needs a directory"),
            ("ftp://x", "unknown scheme"),
            ("kafka://broker", "not available in this build"),
            ("pubsub://", "needs a project"),
            ("pubsub://p?ack_deadline_s=5", "from 10 to 600"),
            ("kinesis://?mode=fast", "mode must be"),
            ("kinesis://?access_key_id=a", "go together"),
            ("kinesis://?checkpoints=s3", "checkpoints must be"),
            ("local://d?sync=sometimes", "sync must be"),
            ("local://d?segment_bytes=big", "whole number"),
            ("local://d?colour=red", "unknown option"),
        ] {
            let err = parse_url(url).expect_err(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
