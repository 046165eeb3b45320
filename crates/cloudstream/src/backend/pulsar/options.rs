//! The options of `pulsar://HOST[:PORT]` URLs.
//!
//! | option | meaning |
//! |---|---|
//! | `tenant=T`, `namespace=N` | where the streams' topics live (default `public/default`) |
//! | `admin=http://HOST:8080` | Pulsar's admin REST API: streams are made as partitioned topics there, their horizon set as each partition topic's retention, and deleted there (not verified against a broker: pulsar-lite has no admin API) |
//! | `retention=broker` | without `admin`: the namespace's own retention policy keeps the records; cloudstream records each stream's horizon but cannot set it on the broker |
//! | `op_timeout_ms=N` | how long one broker request may take (default 10,000): a broker that does not implement a request never answers it |
//!
//! With neither, creating a stream is refused with an error naming what is missing:
//! cloudstream cannot set a topic's retention through the binary protocol.

use std::time::Duration;

use crate::url::ProviderUrl;
use crate::Result;

/// Our own options.
const KNOWN: &[&str] = &["admin", "tenant", "namespace", "retention", "op_timeout_ms"];

/// Who keeps a stream's records for its horizon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retention {
    /// Nobody said: creating a stream is refused (the horizon cannot be set on the broker).
    Unset,
    /// The namespace's retention policy, set by the broker's operator.
    Broker,
    /// Each partition topic's retention, set through the admin API at this base URL.
    Admin(String),
}

/// Settings of `pulsar://` from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulsarOptions {
    /// The URL the client connects with.
    pub(super) connect: String,
    /// The broker's address, as shown in descriptions.
    pub host: String,
    /// The topics' tenant.
    pub tenant: String,
    /// The topics' namespace.
    pub namespace: String,
    /// Who keeps records for their horizon.
    pub retention: Retention,
    /// How long one broker request may take.
    pub op_timeout: Duration,
}

impl PulsarOptions {
    /// The settings of a `pulsar://` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let host = url.location().trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', '#', ' ', '@']) {
            return Err(url.invalid("pulsar:// needs a host, e.g. pulsar://127.0.0.1:6650"));
        }
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:6650")
        };
        let mut o = PulsarOptions {
            connect: format!("pulsar://{host}"),
            host,
            tenant: "public".into(),
            namespace: "default".into(),
            retention: Retention::Unset,
            op_timeout: Duration::from_secs(10),
        };
        for (k, v) in url.options() {
            match k.as_str() {
                "tenant" | "namespace" => {
                    if v.is_empty()
                        || !v
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    {
                        return Err(url.invalid(format!(
                            "{k} must be letters, digits, '-', '_' or '.', got {v:?}"
                        )));
                    }
                    if k == "tenant" {
                        o.tenant = v;
                    } else {
                        o.namespace = v;
                    }
                }
                "admin" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(url.invalid(format!(
                            "admin is the admin REST API's base URL, e.g. http://127.0.0.1:8080, got {v:?}"
                        )));
                    }
                    o.retention = Retention::Admin(v);
                }
                "retention" => {
                    if v != "broker" {
                        return Err(url.invalid(format!(
                            "retention takes one value, broker (the namespace's policy keeps records), got {v:?}"
                        )));
                    }
                    if matches!(o.retention, Retention::Admin(_)) {
                        return Err(url.invalid("give admin or retention=broker, not both"));
                    }
                    o.retention = Retention::Broker;
                }
                "op_timeout_ms" => {
                    let ms: u64 = url.number(&k, &v)?;
                    if !(100..=600_000).contains(&ms) {
                        return Err(
                            url.invalid(format!("op_timeout_ms must be 100 to 600000, got {ms}"))
                        );
                    }
                    o.op_timeout = Duration::from_millis(ms);
                }
                _ => return Err(url.unknown_option(&k, KNOWN)),
            }
        }
        Ok(o)
    }

    /// The full name of topic `topic` of this namespace.
    pub(super) fn topic(&self, topic: &str) -> String {
        format!("persistent://{}/{}/{topic}", self.tenant, self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    fn options(url: &str) -> Result<PulsarOptions> {
        PulsarOptions::from_url(&parse_url(url).expect("url"))
    }

    #[test]
    fn hosts_and_options_are_read() {
        let o = options("pulsar://127.0.0.1").expect("plain");
        assert_eq!(
            (o.host.as_str(), o.retention.clone()),
            ("127.0.0.1:6650", Retention::Unset)
        );
        assert_eq!(
            o.topic("s-partition-0"),
            "persistent://public/default/s-partition-0"
        );
        let o = options("pulsar://h:1?tenant=t&namespace=n&retention=broker&op_timeout_ms=500")
            .expect("full");
        assert_eq!(
            (o.topic("x"), o.retention, o.op_timeout),
            (
                "persistent://t/n/x".to_owned(),
                Retention::Broker,
                Duration::from_millis(500)
            )
        );
        let o = options("pulsar://h?admin=http://h:8080/").expect("admin");
        assert_eq!(o.retention, Retention::Admin("http://h:8080/".into()));
        for (url, why) in [
            ("pulsar://", "needs a host"),
            ("pulsar://h?tenant=a/b", "tenant must be"),
            ("pulsar://h?retention=forever", "retention takes"),
            ("pulsar://h?op_timeout_ms=1", "op_timeout_ms must be"),
            ("pulsar://h?odd=1", "odd"),
            ("pulsar://h?admin=ftp://x", "admin is"),
            ("pulsar://h?admin=http://x&retention=broker", "not both"),
        ] {
            let e = options(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
