//! The options of `nats://[USER:PASSWORD@]HOST[:PORT]` URLs.
//!
//! | option | meaning |
//! |---|---|
//! | `replicas=N` | replicas of the streams this client creates, on a JetStream cluster (default 1) |
//! | `ack_wait_ms=N` | how long a named consumer's message may stay unacknowledged before the server delivers it again (default 30,000) |
//!
//! Credentials go in the URL's user part; they never appear in errors.

use std::time::Duration;

use crate::url::ProviderUrl;
use crate::Result;

/// Our own options.
const KNOWN: &[&str] = &["replicas", "ack_wait_ms"];

/// Settings of `nats://` from the URL. Its `Debug` leaves credentials out.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The URL async-nats connects with.
    pub(super) connect: String,
    /// The server's address, as shown in descriptions.
    pub host: String,
    /// Replicas of created streams.
    pub replicas: usize,
    /// How long a delivered message may go unacknowledged.
    pub ack_wait: Duration,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("host", &self.host)
            .field("replicas", &self.replicas)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

impl NatsOptions {
    /// The settings of a `nats://` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let location = url.location().trim_end_matches('/');
        let host = location.rsplit_once('@').map_or(location, |(_, h)| h);
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(url.invalid("nats:// needs a host, e.g. nats://127.0.0.1:4222"));
        }
        let mut o = NatsOptions {
            connect: format!("nats://{location}"),
            host: host.to_owned(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
        };
        for (k, v) in url.options() {
            match k.as_str() {
                "replicas" => {
                    let n: usize = url.number(&k, &v)?;
                    if !(1..=5).contains(&n) {
                        return Err(url.invalid(format!("replicas must be 1 to 5, got {n}")));
                    }
                    o.replicas = n;
                }
                "ack_wait_ms" => {
                    let ms: u64 = url.number(&k, &v)?;
                    if !(1_000..=86_400_000).contains(&ms) {
                        return Err(
                            url.invalid(format!("ack_wait_ms must be 1000 to 86400000, got {ms}"))
                        );
                    }
                    o.ack_wait = Duration::from_millis(ms);
                }
                _ => return Err(url.unknown_option(&k, KNOWN)),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    fn options(url: &str) -> Result<NatsOptions> {
        NatsOptions::from_url(&parse_url(url).expect("url"))
    }

    #[test]
    fn hosts_credentials_and_options_are_read() {
        let o = options("nats://127.0.0.1:4232").expect("plain");
        assert_eq!((o.host.as_str(), o.replicas), ("127.0.0.1:4232", 1));
        let o = options("nats://u:secret@h:1?replicas=3&ack_wait_ms=5000").expect("full");
        assert_eq!(
            (o.host.as_str(), o.replicas, o.ack_wait),
            ("h:1", 3, Duration::from_secs(5))
        );
        assert!(!format!("{o:?}").contains("secret"));
        for (url, why) in [
            ("nats://", "needs a host"),
            ("nats://h?replicas=9", "replicas must be"),
            ("nats://h?ack_wait_ms=1", "ack_wait_ms must be"),
            ("nats://h?odd=1", "odd"),
        ] {
            let e = options(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
