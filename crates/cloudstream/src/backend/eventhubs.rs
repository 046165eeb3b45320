//! `eventhubs://NAMESPACE[/HUB]`: Azure Event Hubs through its Kafka endpoint, on the Kafka
//! backend's code (`super::kafka`), with Event Hubs' own limits checked before any call.
//!
//! | cloudstream | Event Hubs | how, on a real namespace |
//! |---|---|---|
//! | provider URL | namespace `NAMESPACE.servicebus.windows.net`, Kafka endpoint on port 9093 | `SASL_SSL`, `PLAIN`, user `$ConnectionString`, the connection string as password ([Kafka overview]) |
//! | stream | event hub (= Kafka topic) | created through Kafka's `CreateTopics` where the namespace allows it; Microsoft advises creating hubs in Azure (portal, CLI, ARM) ([client configurations]) |
//! | horizon | retention, whole hours: Standard up to 7 days, Premium and Dedicated up to 90 ([quotas]) | set when the hub is made; the Kafka endpoint cannot change it (no `AlterConfigs`) |
//! | partitions | partitions: Standard 32, Premium 100, Dedicated 1,024 per hub ([quotas]) | fixed at creation on Standard |
//! | event size | 1 MB (Standard, Premium, Dedicated) ([quotas]) | checked before sending |
//! | consumer `NAME` of stream `S` | Kafka consumer group `S:NAME`, created on first commit; separate from the hub's AMQP consumer groups ([Kafka FAQ]) | committed offsets kept by the service |
//! | sequence | offset | — |
//! | consumer group members (`member(id)`) | leases claimed on hub `cloudstream-leases` (`leases_topic=`), made on first use | needs a namespace-scoped connection string: a hub-scoped one cannot reach the claims hub, so its clients refuse `member()` |
//!
//! The Basic tier has no Kafka endpoint and is refused. Compression is gzip only, on
//! Premium and Dedicated. A hub-scoped connection string (`EntityPath=HUB`), or a URL naming
//! `/HUB`, limits the client to that one stream.
//!
//! Options: `connection_string=` (else `EVENTHUBS_CONNECTION_STRING`), `tier=standard|premium|dedicated`,
//! `endpoint=HOST:PORT` (another Kafka endpoint: a test broker on loopback, with
//! `security.protocol=PLAINTEXT`), and every `kafka://` option (librdkafka settings with a dot,
//! `config=FILE`, `readers=`, `leases_topic=`). Without a connection string, configure another SASL
//! mechanism yourself (`sasl.mechanism=OAUTHBEARER` with librdkafka's OIDC settings).
//!
//! [Kafka overview]: https://learn.microsoft.com/azure/event-hubs/azure-event-hubs-apache-kafka-overview
//! [client configurations]: https://learn.microsoft.com/azure/event-hubs/apache-kafka-configurations
//! [quotas]: https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas
//! [Kafka FAQ]: https://learn.microsoft.com/azure/event-hubs/apache-kafka-frequently-asked-questions

use std::sync::Arc;

use super::kafka::{EventHubsTier, KafkaBackend, KafkaOptions, Service};
use super::Backend;
use crate::url::ProviderUrl;
use crate::Result;

/// The environment variable read when the URL carries no connection string.
pub const CONNECTION_STRING_VAR: &str = "EVENTHUBS_CONNECTION_STRING";

/// The Kafka endpoint's port.
const KAFKA_PORT: u16 = 9093;

/// The domain of a namespace named without one (Azure's public cloud).
const DEFAULT_DOMAIN: &str = "servicebus.windows.net";

/// Our own options (no dot), beside the Kafka backend's.
const KNOWN: &[&str] = &[
    "connection_string",
    "tier",
    "endpoint",
    "config",
    "readers",
    "replication",
    "leases_topic",
];

/// What an Event Hubs connection string says. Its `Debug` leaves the string itself out.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host (`NAMESPACE.servicebus.windows.net`).
    pub host: String,
    /// The shared access policy's name.
    pub key_name: String,
    /// The hub the string is scoped to (`EntityPath`), if any.
    pub entity_path: Option<String>,
    /// The whole string, the SASL password.
    pub raw: String,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("entity_path", &self.entity_path)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// Parses `Endpoint=sb://HOST/;SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=HUB]`
    /// (keys in any order and case). Shared access signatures are refused: the Kafka
    /// endpoint does not take them.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (mut host, mut key_name, mut key, mut entity_path) = (None, None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "connection string part {:?} is not KEY=VALUE",
                    redact(part)
                ));
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => {
                    let rest = v.trim().strip_prefix("sb://").ok_or_else(|| {
                        "the connection string's Endpoint must start with sb://".to_owned()
                    })?;
                    let h = rest.trim_end_matches('/');
                    if h.is_empty() || h.contains('/') {
                        return Err(format!("Endpoint {v:?} names no namespace host"));
                    }
                    host = Some(h.to_owned());
                }
                "sharedaccesskeyname" => key_name = Some(v.trim().to_owned()),
                "sharedaccesskey" => key = Some(()),
                "entitypath" => entity_path = Some(v.trim().to_owned()).filter(|e| !e.is_empty()),
                "sharedaccesssignature" => {
                    return Err("a SharedAccessSignature cannot sign in to the Kafka endpoint; use a connection string with SharedAccessKeyName and SharedAccessKey".into())
                }
                _ => {}
            }
        }
        let host = host.ok_or("the connection string has no Endpoint")?;
        let key_name = key_name.ok_or("the connection string has no SharedAccessKeyName")?;
        key.ok_or("the connection string has no SharedAccessKey")?;
        Ok(ConnectionString {
            host,
            key_name,
            entity_path,
            raw: text.trim().to_owned(),
        })
    }

    /// The librdkafka settings that sign in with it, as Microsoft documents them.
    pub fn sasl_settings(&self) -> [(&'static str, String); 4] {
        [
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", "PLAIN".to_owned()),
            ("sasl.username", "$ConnectionString".to_owned()),
            ("sasl.password", self.raw.clone()),
        ]
    }
}

/// `KEY=***` for a part of a connection string shown in an error.
fn redact(part: &str) -> String {
    match part.split_once('=') {
        Some((k, _)) => format!("{k}=***"),
        None => format!("{}…", part.chars().take(12).collect::<String>()),
    }
}

/// The Kafka backend's options for an `eventhubs://` URL, with `env` standing for the
/// process environment.
pub fn options_from_url(
    url: &ProviderUrl,
    env: impl Fn(&str) -> Option<String>,
) -> Result<KafkaOptions> {
    let (namespace, hub) = match url.location().trim_end_matches('/').split_once('/') {
        Some((ns, hub)) => (ns, Some(hub.to_owned())),
        None => (url.location().trim_end_matches('/'), None),
    };
    let mut tier = EventHubsTier::Standard;
    let mut endpoint = None;
    let mut connection = None;
    let mut options = KafkaOptions::new("", Service::EventHubs(tier));
    options.apply(url, &url.options(), KNOWN, |k, v| {
        match k {
            "connection_string" => connection = Some(v.to_owned()),
            "endpoint" => endpoint = Some(v.to_owned()),
            "tier" => {
                tier = match v {
                    "basic" => EventHubsTier::Basic,
                    "standard" => EventHubsTier::Standard,
                    "premium" => EventHubsTier::Premium,
                    "dedicated" => EventHubsTier::Dedicated,
                    other => {
                        return Err(url.invalid(format!(
                            "tier must be standard, premium or dedicated, got {other:?}"
                        )))
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if tier == EventHubsTier::Basic {
        return Err(url.invalid(
            "the Basic tier of Event Hubs has no Kafka endpoint; use a Standard, Premium or Dedicated namespace",
        ));
    }
    options.service = Service::EventHubs(tier);
    let connection = match connection.or_else(|| env(CONNECTION_STRING_VAR)) {
        Some(text) => Some(ConnectionString::parse(&text).map_err(|e| url.invalid(e))?),
        None => None,
    };
    let host = match (&connection, namespace) {
        (Some(c), "") => c.host.clone(),
        (Some(c), ns) if namespace_host(ns) != c.host => {
            return Err(url.invalid(format!(
                "the URL names namespace {ns} but the connection string is for {}",
                c.host
            )))
        }
        (_, "") => {
            return Err(url.invalid(
                "eventhubs:// needs a namespace (eventhubs://NAMESPACE) or a connection string",
            ))
        }
        (_, ns) => namespace_host(ns),
    };
    options.only_topic = match (hub, connection.as_ref().and_then(|c| c.entity_path.clone())) {
        (Some(h), Some(e)) if h != e => {
            return Err(url.invalid(format!(
                "the URL names hub {h} but the connection string is for hub {e}"
            )))
        }
        (h, e) => h.or(e),
    };
    if let Some(hub) = &options.only_topic {
        cloudstream_log::validate_name("stream", hub).map_err(|e| url.invalid(e.to_string()))?;
    }
    options.brokers = endpoint.unwrap_or_else(|| format!("{host}:{KAFKA_PORT}"));
    match &connection {
        Some(c) => {
            for (k, v) in c.sasl_settings() {
                options.settings.entry(k.to_owned()).or_insert(v);
            }
        }
        None if !options.settings.contains_key("sasl.mechanism") => {
            return Err(url.invalid(format!(
                "eventhubs:// needs a connection string (connection_string= or {CONNECTION_STRING_VAR}), or SASL settings of your own (sasl.mechanism=OAUTHBEARER and librdkafka's OIDC settings)"
            )))
        }
        None => {}
    }
    check_compression(url, &options, tier)?;
    Ok(options)
}

/// The host of a namespace named bare (`myns`) or in full (`myns.servicebus.windows.net`).
fn namespace_host(namespace: &str) -> String {
    if namespace.contains('.') {
        namespace.to_owned()
    } else {
        format!("{namespace}.{DEFAULT_DOMAIN}")
    }
}

/// Event Hubs compresses with gzip only, and only on Premium and Dedicated.
fn check_compression(url: &ProviderUrl, options: &KafkaOptions, tier: EventHubsTier) -> Result<()> {
    for key in ["compression.type", "compression.codec"] {
        match options.settings.get(key).map(String::as_str) {
            None | Some("none") => {}
            Some("gzip") if matches!(tier, EventHubsTier::Premium | EventHubsTier::Dedicated) => {}
            Some(other) => {
                return Err(url.invalid(format!(
                    "Event Hubs ({tier:?} tier) does not take {key}={other}: gzip only, on Premium and Dedicated"
                )))
            }
        }
    }
    Ok(())
}

/// Checks an `eventhubs` URL without connecting.
pub(crate) fn check(url: &ProviderUrl) -> Result<()> {
    options_from_url(url, |k| std::env::var(k).ok()).map(drop)
}

/// Connects to what an `eventhubs` URL names.
pub(crate) async fn open(url: ProviderUrl) -> Result<Arc<dyn Backend>> {
    let options = options_from_url(&url, |k| std::env::var(k).ok())?;
    Ok(Arc::new(KafkaBackend::connect(options).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    const STRING: &str = "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc/def+ghi=";

    fn options(url: &str, env: Option<&str>) -> Result<KafkaOptions> {
        let env = env.map(str::to_owned);
        options_from_url(&parse_url(url).expect("url"), move |k| {
            (k == CONNECTION_STRING_VAR).then(|| env.clone()).flatten()
        })
    }

    #[test]
    fn a_connection_string_gives_exactly_the_documented_client_settings() {
        let url = format!(
            "eventhubs://myns?connection_string={}",
            ::url::form_urlencoded::byte_serialize(STRING.as_bytes()).collect::<String>()
        );
        let o = options(&url, None).expect("options");
        assert_eq!(o.brokers, "myns.servicebus.windows.net:9093");
        let setting = |k: &str| o.settings.get(k).map(String::as_str);
        assert_eq!(setting("security.protocol"), Some("SASL_SSL"));
        assert_eq!(setting("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(setting("sasl.username"), Some("$ConnectionString"));
        assert_eq!(setting("sasl.password"), Some(STRING));
        assert_eq!(o.service, Service::EventHubs(EventHubsTier::Standard));
        assert_eq!(o.only_topic, None);
        // From the environment, with the namespace taken from the string.
        let o = options("eventhubs://?tier=premium", Some(STRING)).expect("options");
        assert_eq!(o.brokers, "myns.servicebus.windows.net:9093");
        assert_eq!(o.service, Service::EventHubs(EventHubsTier::Premium));
    }

    #[test]
    fn a_hub_scoped_string_or_url_limits_the_client_to_that_hub() {
        let scoped = format!("{STRING};EntityPath=orders");
        let o = options("eventhubs://myns", Some(&scoped)).expect("options");
        assert_eq!(o.only_topic.as_deref(), Some("orders"));
        let o = options("eventhubs://myns/orders", Some(STRING)).expect("options");
        assert_eq!(o.only_topic.as_deref(), Some("orders"));
        let err = options("eventhubs://myns/billing", Some(&scoped))
            .expect_err("two hubs")
            .to_string();
        assert!(
            err.contains("hub billing") && err.contains("orders"),
            "{err}"
        );
    }

    #[test]
    fn a_loopback_broker_is_reached_through_the_same_path() {
        let o = options(
            "eventhubs://testns?endpoint=127.0.0.1:9092&security.protocol=PLAINTEXT",
            Some(STRING),
        );
        let err = o.expect_err("namespace differs").to_string();
        assert!(err.contains("namespace testns"), "{err}");
        let o = options(
            "eventhubs://myns?endpoint=127.0.0.1:9092&security.protocol=PLAINTEXT",
            Some(STRING),
        )
        .expect("options");
        assert_eq!(o.brokers, "127.0.0.1:9092");
        assert_eq!(
            o.settings.get("security.protocol").map(String::as_str),
            Some("PLAINTEXT")
        );
        assert_eq!(
            o.settings.get("sasl.username").map(String::as_str),
            Some("$ConnectionString")
        );
    }

    #[test]
    fn what_event_hubs_cannot_do_is_refused_before_any_call() {
        for (url, env, says) in [
            ("eventhubs://myns?tier=basic", Some(STRING), "no Kafka endpoint"),
            ("eventhubs://myns?tier=gold", Some(STRING), "tier must be"),
            ("eventhubs://myns", None, "needs a connection string"),
            ("eventhubs://", None, "needs a namespace"),
            ("eventhubs://myns?compression.type=lz4", Some(STRING), "gzip only"),
            ("eventhubs://myns?compression.type=gzip", Some(STRING), "gzip only"),
            ("eventhubs://myns?group.id=x", Some(STRING), "set by cloudstream"),
            ("eventhubs://myns?colour=red", Some(STRING), "unknown option"),
            (
                "eventhubs://myns",
                Some("Endpoint=sb://myns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x"),
                "SharedAccessSignature",
            ),
            ("eventhubs://myns", Some("Endpoint=sb://myns.servicebus.windows.net/"), "SharedAccessKeyName"),
            ("eventhubs://myns", Some("Endpoint=https://x/;SharedAccessKeyName=a;SharedAccessKey=b"), "sb://"),
        ] {
            let err = options(url, env).expect_err(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("abc/def"), "a secret leaked: {err}");
        }
        assert!(options(
            "eventhubs://myns?tier=premium&compression.type=gzip",
            Some(STRING)
        )
        .is_ok());
        // OAuth with the user's own settings needs no connection string.
        assert!(options("eventhubs://myns?sasl.mechanism=OAUTHBEARER", None).is_ok());
    }
}
