//! Choosing a backend from a URL: `SCHEME://LOCATION?OPTIONS`, parsed without touching
//! anything into a [`ProviderUrl`]. The scheme picks a provider from the registry
//! ([`crate::backend::providers`]); that backend reads the location and its own options
//! (each backend's `Options::from_url`), and [`crate::open`] connects.
//!
//! `local://DIR` and `memory://[NAME]` (the embedded engine, options in
//! [`LocalOptions`](crate::backend::LocalOptions)) are always built; every other provider
//! is a cargo feature named like its scheme, listed with its options in the README and in
//! [`crate::backend::providers`]. A scheme whose backend this build leaves out is refused
//! with the feature to enable; schemes of providers still to come with a clear error.

use std::str::FromStr;

use crate::{Error, Result};

/// A provider URL, split but not yet interpreted: the backend its scheme names reads the
/// location and the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUrl {
    url: String,
    scheme_end: usize,
    query_start: Option<usize>,
}

impl ProviderUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The scheme (`local`, `kinesis`, ...).
    pub fn scheme(&self) -> &str {
        &self.url[..self.scheme_end]
    }

    /// What follows `SCHEME://`, up to the query: a directory, a region, a host.
    pub fn location(&self) -> &str {
        let start = self.scheme_end + "://".len();
        let end = self.query_start.unwrap_or(self.url.len());
        &self.url[start..end]
    }

    /// The query string's options, percent-decoded, in order.
    pub fn options(&self) -> Vec<(String, String)> {
        let query = self.query_start.map_or("", |q| &self.url[q + 1..]);
        ::url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// An [`Error::InvalidUrl`] about this URL, with the values of secret options masked
    /// (see [`ProviderUrl::redacted`]).
    pub fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidUrl {
            url: self.redacted(),
            reason: reason.into(),
        }
    }

    /// The URL with its credentials (`user:PASSWORD@` or `TOKEN@` before the host) and the
    /// values of secret options ([`is_secret_option`], names percent-decoded) replaced by
    /// `***`.
    pub fn redacted(&self) -> String {
        let secret = |k: &str| {
            let k = ::url::form_urlencoded::parse(format!("{k}=").as_bytes())
                .next()
                .map_or_else(|| k.to_owned(), |(k, _)| k.into_owned());
            is_secret_option(&k)
        };
        let start = self.scheme_end + "://".len();
        let end = self.query_start.unwrap_or(self.url.len());
        let location = &self.url[start..end];
        let location = match location.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("***@{host}"),
            },
            None => location.to_owned(),
        };
        let base = format!("{}{location}", &self.url[..start]);
        let Some(q) = self.query_start else {
            return base;
        };
        let query: Vec<String> = self.url[q + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        format!("{base}?{}", query.join("&"))
    }

    /// The error for an option the backend does not know, naming those it does.
    pub fn unknown_option(&self, key: &str, known: &[&str]) -> Error {
        self.invalid(format!(
            "unknown option {key:?}; known: {}",
            known.join(", ")
        ))
    }

    /// Option `key`'s value as a whole number (or any type parsed from text).
    pub fn number<T: FromStr>(&self, key: &str, value: &str) -> Result<T> {
        value
            .parse()
            .map_err(|_| self.invalid(format!("{key} must be a whole number, got {value:?}")))
    }
}

/// Whether an option's value is a secret to mask when shown: its name, in lower case,
/// contains `secret`, `token`, `password`, `connection_string`, `jaas` or `.key` (AWS keys,
/// bearer tokens, librdkafka's `sasl.password`, `sasl.jaas.config` and `ssl.key.pem`, an
/// Event Hubs connection string).
pub fn is_secret_option(name: &str) -> bool {
    const SECRETS: &[&str] = &[
        "secret",
        "token",
        "password",
        "connection_string",
        "jaas",
        ".key",
    ];
    let name = name.to_ascii_lowercase();
    SECRETS.iter().any(|s| name.contains(s))
}

/// Splits a provider URL without touching anything; the scheme is not checked here (see
/// [`check_url`]).
pub fn parse_url(url: &str) -> Result<ProviderUrl> {
    let Some(scheme_end) = url.find("://").filter(|&i| i > 0) else {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "expected SCHEME://..., e.g. local://./cloudstream-data or memory://".into(),
        });
    };
    let query_start = url[scheme_end..].find('?').map(|q| scheme_end + q);
    Ok(ProviderUrl {
        url: url.to_owned(),
        scheme_end,
        query_start,
    })
}

/// Parses a provider URL and checks it as [`crate::open`] would, without connecting: its
/// scheme names a backend of this build, and that backend accepts its location and options.
pub fn check_url(url: &str) -> Result<ProviderUrl> {
    let url = parse_url(url)?;
    (crate::backend::registry::constructor(&url)?.check)(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalOptions;

    #[test]
    fn urls_split() -> Result<()> {
        let url = parse_url("local:///var/cs?sync=interval&sync_interval_ms=5")?;
        assert_eq!(
            (url.scheme(), url.location()),
            ("local", "/var/cs"),
            "{url:?}"
        );
        assert_eq!(
            url.options(),
            vec![
                ("sync".to_owned(), "interval".to_owned()),
                ("sync_interval_ms".to_owned(), "5".to_owned())
            ]
        );
        let bare = parse_url("memory://")?;
        assert_eq!((bare.scheme(), bare.location()), ("memory", ""));
        assert!(bare.options().is_empty());
        Ok(())
    }

    #[test]
    fn urls_parse() -> Result<()> {
        use cloudstream_log::SyncPolicy;
        use std::path::PathBuf;
        use std::time::Duration;

        let local = parse_url("local://./data")?;
        assert_eq!(local.location(), "./data");
        assert_eq!(LocalOptions::from_url(&local)?, LocalOptions::default());
        let url = parse_url("local:///var/cs?sync=interval&sync_interval_ms=5")?;
        assert_eq!(PathBuf::from(url.location()), PathBuf::from("/var/cs"));
        assert_eq!(
            LocalOptions::from_url(&url)?.sync,
            SyncPolicy::Interval(Duration::from_millis(5))
        );
        #[cfg(feature = "kinesis")]
        {
            use crate::backend::{CapacityMode, KinesisOptions};
            use crate::checkpoint::CheckpointLocation;
            let k = KinesisOptions::from_url(&parse_url(
                "kinesis://eu-west-1?endpoint=http://127.0.0.1:4567&access_key_id=a&secret_access_key=b&checkpoints=local:/tmp/ck&mode=on-demand",
            )?)?;
            assert_eq!(k.region.as_deref(), Some("eu-west-1"));
            assert_eq!(k.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
            assert_eq!(k.credentials, Some(("a".into(), "b".into(), None)));
            assert_eq!(k.checkpoints, CheckpointLocation::Local("/tmp/ck".into()));
            assert_eq!(k.mode, CapacityMode::OnDemand);
        }
        Ok(())
    }

    #[test]
    fn bad_urls_say_why() {
        let mut cases = vec![
            ("nothing", "SCHEME://"),
            ("local://", "needs a directory"),
            ("ftp://x", "unknown scheme"),
            ("local://d?sync=sometimes", "sync must be"),
            ("local://d?segment_bytes=big", "whole number"),
            ("local://d?colour=red", "unknown option"),
        ];
        #[cfg(feature = "pubsub")]
        cases.extend([
            ("pubsub://", "needs a project"),
            ("pubsub://p?ack_deadline_s=5", "from 10 to 600"),
        ]);
        #[cfg(feature = "kafka")]
        cases.extend([
            ("kafka://", "needs brokers"),
            ("kafka://b:9092?group.id=g", "set by cloudstream itself"),
        ]);
        #[cfg(not(feature = "kafka"))]
        cases.push(("kafka://b:9092", "enable the `kafka` feature"));
        #[cfg(feature = "kinesis")]
        cases.extend([
            ("kinesis://?mode=fast", "mode must be"),
            ("kinesis://?access_key_id=a", "go together"),
            ("kinesis://?checkpoints=s3", "checkpoints must be"),
        ]);
        #[cfg(not(feature = "kinesis"))]
        cases.push(("kinesis://us-east-1", "enable the `kinesis` feature"));
        #[cfg(not(feature = "pubsub"))]
        cases.push(("pubsub://p", "enable the `pubsub` feature"));
        #[cfg(feature = "pulsar")]
        cases.push(("pulsar://h?retention=forever", "retention takes"));
        #[cfg(not(feature = "pulsar"))]
        cases.push(("pulsar://broker", "enable the `pulsar` feature"));
        #[cfg(not(feature = "http"))]
        cases.push(("http://127.0.0.1:7070", "enable the `http` feature"));
        for (url, says) in cases {
            let err = check_url(url).expect_err(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let err = check_url("local://d?token=abc&colour=red")
            .expect_err("unknown option")
            .to_string();
        assert!(!err.contains("abc") && err.contains("token=***"), "{err}");
        let url = parse_url(
            "kafka://b:9093?sasl.username=u&sasl.password=p1&ssl.key.pem=p2&connection_string=p3&SASL%2EPASSWORD=p4&linger.ms=5",
        )
        .expect("url");
        let shown = url.redacted();
        assert!(
            !["p1", "p2", "p3", "p4"].iter().any(|p| shown.contains(p)),
            "{shown}"
        );
        assert!(
            shown.contains("sasl.username=u") && shown.contains("linger.ms=5"),
            "{shown}"
        );
        for (url, kept) in [
            ("redis://u:hunter2@h:1/0?x=1", "redis://u:***@h:1/0?x=1"),
            ("nats://hunter2@h:4222", "nats://***@h:4222"),
        ] {
            assert_eq!(parse_url(url).expect("url").redacted(), kept);
        }
        let err = check_url("redis://u:hunter2@h/x")
            .expect_err("bad db")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
