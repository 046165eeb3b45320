//! The options of `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` URLs.
//!
//! | option | meaning |
//! |---|---|
//! | `trim_interval_ms=N` | how often partitions nobody writes to are trimmed to the horizon (default 10,000) |
//! | `consumers=checkpoints\|groups` | how named consumers read: from their Redis consumer group's last delivered id as a checkpoint (default), or through the group itself (`XREADGROUP`, `XACK`, `XAUTOCLAIM`; see `groups.rs`) |
//! | `claim_idle_ms=N` | with `consumers=groups`: how long an entry a member holds may go unrenewed before another member takes it over (default 30,000) |
//!
//! Credentials go in the URL's user part, as redis-rs and `redis-cli -u` take them; they
//! never appear in errors.

use std::time::Duration;

use crate::url::ProviderUrl;
use crate::Result;

/// Our own options.
const KNOWN: &[&str] = &["trim_interval_ms", "consumers", "claim_idle_ms"];

/// How named consumers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisConsumers {
    /// From checkpoints: each Redis consumer group's last delivered id (the default).
    Checkpoints,
    /// Through the Redis consumer groups themselves.
    Groups,
}

/// Settings of `redis://` from the URL. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The URL redis-rs connects with (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`).
    pub(super) connect: String,
    /// The server's address, as shown in descriptions.
    pub host: String,
    /// The database number.
    pub db: i64,
    /// How often idle partitions are trimmed.
    pub trim_interval: Duration,
    /// How named consumers read.
    pub consumers: RedisConsumers,
    /// With [`RedisConsumers::Groups`]: how long an entry in hand may go unrenewed.
    pub claim_idle: Duration,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("host", &self.host)
            .field("db", &self.db)
            .field("trim_interval", &self.trim_interval)
            .field("consumers", &self.consumers)
            .field("claim_idle", &self.claim_idle)
            .finish_non_exhaustive()
    }
}

impl RedisOptions {
    /// The settings of a `redis://` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let location = url.location();
        let (auth, rest) = match location.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, location),
        };
        let (host, db) = match rest.split_once('/') {
            Some((host, "")) => (host, 0),
            Some((host, db)) => (
                host,
                db.parse::<i64>()
                    .ok()
                    .filter(|d| (0..=1_000_000).contains(d))
                    .ok_or_else(|| {
                        url.invalid(format!("the database must be a number, got {db:?}"))
                    })?,
            ),
            None => (rest, 0),
        };
        if host.is_empty() || host.contains(['?', '#', ' ']) {
            return Err(url.invalid("redis:// needs a host, e.g. redis://127.0.0.1:6379"));
        }
        let mut o = RedisOptions {
            connect: match auth {
                Some(auth) => format!("redis://{auth}@{host}/{db}"),
                None => format!("redis://{host}/{db}"),
            },
            host: host.to_owned(),
            db,
            trim_interval: Duration::from_secs(10),
            consumers: RedisConsumers::Checkpoints,
            claim_idle: Duration::from_secs(30),
        };
        for (k, v) in url.options() {
            match k.as_str() {
                "trim_interval_ms" => {
                    let ms: u64 = url.number(&k, &v)?;
                    if !(100..=3_600_000).contains(&ms) {
                        return Err(url.invalid(format!(
                            "trim_interval_ms must be 100 to 3600000, got {ms}"
                        )));
                    }
                    o.trim_interval = Duration::from_millis(ms);
                }
                "consumers" => {
                    o.consumers = match v.as_str() {
                        "checkpoints" => RedisConsumers::Checkpoints,
                        "groups" => RedisConsumers::Groups,
                        other => {
                            return Err(url.invalid(format!(
                                "consumers must be checkpoints or groups, got {other:?}"
                            )))
                        }
                    }
                }
                "claim_idle_ms" => {
                    let ms: u64 = url.number(&k, &v)?;
                    if !(300..=86_400_000).contains(&ms) {
                        return Err(
                            url.invalid(format!("claim_idle_ms must be 300 to 86400000, got {ms}"))
                        );
                    }
                    o.claim_idle = Duration::from_millis(ms);
                }
                _ => return Err(url.unknown_option(&k, KNOWN)),
            }
        }
        // redis-rs reads the same URL: check it now, without connecting.
        redis::Client::open(o.connect.as_str())
            .map_err(|e| url.invalid(format!("redis-rs refused it: {}", e.kind_str())))?;
        Ok(o)
    }
}

/// A short name for a redis-rs error kind, never its message (it may echo the URL).
trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    fn options(url: &str) -> Result<RedisOptions> {
        RedisOptions::from_url(&parse_url(url).expect("url"))
    }

    #[test]
    fn hosts_databases_and_credentials_are_read() {
        let o = options("redis://127.0.0.1:6390").expect("plain");
        assert_eq!((o.host.as_str(), o.db), ("127.0.0.1:6390", 0));
        let o = options("redis://u:secret@h:1/3?trim_interval_ms=500").expect("full");
        assert_eq!((o.host.as_str(), o.db), ("h:1", 3));
        assert_eq!(o.trim_interval, Duration::from_millis(500));
        let o = options("redis://h?consumers=groups&claim_idle_ms=1000").expect("groups");
        assert_eq!(
            (o.consumers, o.claim_idle),
            (RedisConsumers::Groups, Duration::from_secs(1))
        );
        assert!(!format!("{o:?}").contains("secret"));
    }

    #[test]
    fn bad_options_say_why() {
        for (url, why) in [
            ("redis://", "needs a host"),
            ("redis://h/x", "database must be a number"),
            ("redis://h?trim_interval_ms=1", "trim_interval_ms must be"),
            ("redis://h?odd=1", "odd"),
            ("redis://h?consumers=pubsub", "consumers must be"),
            ("redis://h?claim_idle_ms=5", "claim_idle_ms must be"),
        ] {
            let e = options(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
