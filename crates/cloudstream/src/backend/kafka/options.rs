//! The options of `kafka://BROKER[,BROKER...]` URLs.
//!
//! Every option whose name has a dot is a librdkafka setting and passes through as given
//! (`security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512&linger.ms=5`); `config=FILE`
//! reads more from a Java-style properties file (`key=value` lines, `#` comments), which
//! the URL's own settings override. Our own options have no dot:
//!
//! | option | meaning |
//! |---|---|
//! | `config=FILE` | librdkafka settings from a properties file |
//! | `replication=N` | replication factor of the topics this client creates (default: the broker's `default.replication.factor`) |
//! | `readers=N` | most partition reads under way at once (each holds a librdkafka consumer; default 32) |
//! | `leases_topic=NAME` | the topic that keeps consumer groups' lease claims (default `__cloudstream_leases`; on Event Hubs `cloudstream-leases`) |
//!
//! The settings cloudstream itself owns per client (`bootstrap.servers`, which is the URL's
//! location, `group.id`, `enable.auto.commit`, `enable.auto.offset.store`,
//! `enable.partition.eof`, `auto.offset.reset`) are refused with a clear error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::url::{is_secret_option, ProviderUrl};
use crate::Result;

/// Settings cloudstream sets itself on each client it makes.
const OWNED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
];

/// Our own options (no dot).
const KNOWN: &[&str] = &["config", "replication", "readers", "leases_topic"];

/// Most partition reads under way at once, unless `readers=` says otherwise.
const DEFAULT_READERS: usize = 32;

/// What kind of Kafka-protocol service the client talks to: it decides the backend's
/// name and the limits checked before any call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Apache Kafka, or any broker that speaks its protocol.
    Kafka,
    /// Azure Event Hubs' Kafka endpoint, in a namespace of this tier.
    EventHubs(EventHubsTier),
}

/// The tier of an Event Hubs namespace: its limits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventHubsTier {
    /// Basic: no Kafka endpoint (refused when the URL names it).
    Basic,
    /// Standard (the default).
    Standard,
    /// Premium.
    Premium,
    /// Dedicated.
    Dedicated,
}

/// Settings of `kafka://` (and of `eventhubs://`, which makes them) from the URL. Its
/// `Debug` masks the values of secret settings.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// The bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka settings, from the config file, then the URL.
    pub settings: BTreeMap<String, String>,
    /// Replication factor of created topics; `None`: the broker's default.
    pub replication: Option<i32>,
    /// Most partition reads under way at once.
    pub readers: usize,
    /// What the brokers are.
    pub service: Service,
    /// The one topic this client may use (an Event Hubs URL or connection string scoped to
    /// one hub); `None`: any.
    pub only_topic: Option<String>,
    /// The topic that keeps consumer groups' lease claims; `None`: the service's default
    /// (none for a client limited to one hub).
    pub leases_topic: Option<String>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings: BTreeMap<&str, &str> = self
            .settings
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_option(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("settings", &settings)
            .field("replication", &self.replication)
            .field("readers", &self.readers)
            .field("service", &self.service)
            .field("only_topic", &self.only_topic)
            .field("leases_topic", &self.leases_topic)
            .finish()
    }
}

impl KafkaOptions {
    /// Options for `brokers` with nothing else set.
    pub fn new(brokers: impl Into<String>, service: Service) -> Self {
        KafkaOptions {
            brokers: brokers.into(),
            settings: BTreeMap::new(),
            replication: None,
            readers: DEFAULT_READERS,
            service,
            only_topic: None,
            leases_topic: None,
        }
    }

    /// The settings of a `kafka://BROKER[,BROKER...]` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let brokers = url.location().trim_end_matches('/');
        if brokers.is_empty() || brokers.split(',').any(|b| b.trim().is_empty()) {
            return Err(url.invalid("kafka:// needs brokers, e.g. kafka://127.0.0.1:9092"));
        }
        if brokers.contains('@') {
            return Err(url
                .invalid("credentials go in sasl.username and sasl.password, not in the brokers"));
        }
        let mut o = KafkaOptions::new(brokers, Service::Kafka);
        o.apply(url, &url.options(), KNOWN, |_, _| Ok(false))?;
        Ok(o)
    }

    /// Applies a URL's options: librdkafka settings (with a dot), `config=`,
    /// `replication=`, `readers=`, `leases_topic=`, and whatever `own` takes (it answers whether it took
    /// the option); `known` names the options without a dot for the error of an unknown one.
    pub(crate) fn apply(
        &mut self,
        url: &ProviderUrl,
        options: &[(String, String)],
        known: &[&str],
        mut own: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<()> {
        let mut from_url = BTreeMap::new();
        for (k, v) in options {
            match k.as_str() {
                "config" => {
                    let file = read_properties(Path::new(v)).map_err(|e| url.invalid(e))?;
                    for (fk, fv) in file {
                        check_setting(&fk).map_err(|e| url.invalid(format!("{v}: {e}")))?;
                        self.settings.insert(fk, fv);
                    }
                }
                "replication" => {
                    let n: i32 = url.number(k, v)?;
                    if !(1..=32_767).contains(&n) {
                        return Err(url.invalid(format!("replication must be 1 or more, got {n}")));
                    }
                    self.replication = Some(n);
                }
                "readers" => {
                    let n: usize = url.number(k, v)?;
                    if !(1..=4096).contains(&n) {
                        return Err(url.invalid(format!("readers must be 1 to 4096, got {n}")));
                    }
                    self.readers = n;
                }
                "leases_topic" => {
                    cloudstream_log::validate_name("stream", v)
                        .map_err(|e| url.invalid(format!("leases_topic: {e}")))?;
                    self.leases_topic = Some(v.clone());
                }
                _ if k.contains('.') => {
                    check_setting(k).map_err(|e| url.invalid(e))?;
                    from_url.insert(k.clone(), v.clone());
                }
                _ => {
                    if !own(k, v)? {
                        return Err(url.unknown_option(k, known));
                    }
                }
            }
        }
        // The URL's settings win over the file's, whatever their order.
        self.settings.extend(from_url);
        Ok(())
    }

    /// Largest message the producer sends (librdkafka's `message.max.bytes`, 1,000,000 by
    /// default as in Kafka's own clients).
    pub(crate) fn message_max_bytes(&self) -> usize {
        self.settings
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// How long the producer tries to deliver a message (`message.timeout.ms`, default 30 s
    /// here rather than librdkafka's 300 s, so an unreachable cluster is reported promptly).
    pub(crate) fn delivery_timeout(&self) -> Duration {
        let ms = ["message.timeout.ms", "delivery.timeout.ms"]
            .iter()
            .find_map(|k| self.settings.get(*k)?.parse().ok())
            .unwrap_or(30_000);
        Duration::from_millis(ms)
    }
}

/// Whether cloudstream sets `key` itself on the clients it makes.
pub(crate) fn is_owned(key: &str) -> bool {
    OWNED.contains(&key)
}

/// Refuses a setting cloudstream sets itself, or one librdkafka does not take.
fn check_setting(key: &str) -> std::result::Result<(), String> {
    if key == "sasl.jaas.config" {
        return Err(
            "sasl.jaas.config is Java's; librdkafka takes sasl.mechanism, sasl.username and \
             sasl.password (for Event Hubs, give the connection string as connection_string=)"
                .into(),
        );
    }
    if is_owned(key) {
        return Err(format!(
            "{key} is set by cloudstream itself (the brokers are the URL's location; consumers \
             are named by the API); leave it out"
        ));
    }
    Ok(())
}

/// Reads a Java-style properties file: `key=value` (or `key: value`) lines; blank lines and
/// lines starting with `#` or `!` are skipped.
pub(crate) fn read_properties(path: &Path) -> std::result::Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    parse_properties(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_properties(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            // The line itself is not shown: it may hold a password.
            return Err(format!("line {}: expected key=value", n + 1));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("line {}: empty key", n + 1));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    fn options(url: &str) -> Result<KafkaOptions> {
        KafkaOptions::from_url(&parse_url(url).expect("url"))
    }

    #[test]
    fn settings_pass_through_and_ours_are_read() {
        let o = options(
            "kafka://a:9092,b:9092?linger.ms=5&security.protocol=SASL_SSL&replication=3&readers=8",
        )
        .expect("options");
        assert_eq!(o.brokers, "a:9092,b:9092");
        assert_eq!(o.settings.get("linger.ms").map(String::as_str), Some("5"));
        assert_eq!(
            o.settings.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!((o.replication, o.readers), (Some(3), 8));
    }

    #[test]
    fn a_config_file_is_read_and_the_url_overrides_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# comment\nlinger.ms = 20\nsasl.mechanism: PLAIN\n\ncompression.type=zstd\n",
        )
        .expect("write");
        let o = options(&format!(
            "kafka://a:9092?linger.ms=1&config={}",
            file.display()
        ))
        .expect("options");
        assert_eq!(o.settings.get("linger.ms").map(String::as_str), Some("1"));
        assert_eq!(
            o.settings.get("sasl.mechanism").map(String::as_str),
            Some("PLAIN")
        );
        assert_eq!(
            o.settings.get("compression.type").map(String::as_str),
            Some("zstd")
        );
    }

    #[test]
    fn bad_options_say_why() {
        for (url, says) in [
            ("kafka://", "needs brokers"),
            ("kafka://a:1,", "needs brokers"),
            ("kafka://a:1?group.id=x", "set by cloudstream itself"),
            ("kafka://u:p@a:1", "sasl.username"),
            ("kafka://a:1?sasl.jaas.config=x", "Java's"),
            (
                "kafka://a:1?bootstrap.servers=x",
                "set by cloudstream itself",
            ),
            ("kafka://a:1?replication=0", "replication must be"),
            ("kafka://a:1?readers=x", "readers must be a whole number"),
            ("kafka://a:1?colour=red", "unknown option"),
            (
                "kafka://a:1?config=/nonexistent/file",
                "cannot read config file",
            ),
        ] {
            let err = options(url).expect_err(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        assert!(parse_properties("novalue").is_err());
    }
}
