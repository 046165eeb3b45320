//! Where webhooks may post: a guard against server-side request forgery.
//!
//! A webhook makes the server send requests to a URL somebody else chose, from inside the
//! server's network. By default any host may receive webhooks except the addresses no
//! webhook has a reason to reach: link-local networks (169.254.0.0/16, fe80::/10), where
//! cloud metadata services answer with credentials, and the metadata services' other
//! addresses and names. With `serve --webhook-allow`, only the hosts and networks listed may
//! receive them. The check runs when a webhook is registered (on the URL's host) and on every
//! connection (on each address the host resolves to, so a name that resolves to a denied
//! address later, as in DNS rebinding, is refused too). Errors and dead-letter headers name
//! a webhook's URL only as [`redact`] prints it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Networks refused unless an entry of the allowlist names them: link-local (cloud metadata
/// services live there) and the metadata addresses outside it.
const DENIED_NETWORKS: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",   // AWS's IPv6 instance metadata
    "100.100.100.200/32",  // Alibaba Cloud's metadata
    "168.63.129.16/32",    // Azure's WireServer
    "192.0.0.192/32",      // Oracle Cloud's metadata
    "64:ff9b::a9fe:0/112", // 169.254.0.0/16 through NAT64
    "2002:a9fe::/32",      // 169.254.0.0/16 through 6to4
];

/// Host names of metadata services, refused unless the allowlist names them.
const DENIED_NAMES: &[&str] = &["metadata.google.internal", "metadata", "instance-data"];

/// One entry of `--webhook-allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A host name, matched exactly (case-insensitively).
    Host(String),
    /// `*.example.com`: any name below `example.com`.
    Below(String),
    /// An address or network: addresses inside it.
    Net(IpNet),
}

/// Which hosts may receive webhooks (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `None`: any host but the denied ones.
    allow: Option<Vec<Entry>>,
}

impl WebhookPolicy {
    /// Only the hosts and networks of `list` (comma-separated: `hooks.example.com`,
    /// `*.example.com`, `10.1.0.0/16`, `192.0.2.7`, `::1`), and nothing else.
    pub fn allow_only(list: &str) -> Result<WebhookPolicy, String> {
        let mut entries = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let entry = if let Ok(net) = item.parse::<IpNet>() {
                Entry::Net(net)
            } else if let Ok(ip) = item.trim_matches(['[', ']']).parse::<IpAddr>() {
                Entry::Net(IpNet::from(ip))
            } else if let Some(domain) = item.strip_prefix("*.") {
                Entry::Below(host_name(domain)?)
            } else {
                Entry::Host(host_name(item)?)
            };
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err("--webhook-allow names no host or network".to_owned());
        }
        Ok(WebhookPolicy {
            allow: Some(entries),
        })
    }

    /// Whether the allowlist names a network holding `ip`.
    fn listed_ip(&self, ip: IpAddr) -> bool {
        self.allow.iter().flatten().any(|e| match e {
            Entry::Net(net) => net.contains(&ip),
            _ => false,
        })
    }

    /// Whether a webhook may connect to `ip`, reached through a host name the allowlist
    /// names (`by_listed_name`) or not: a listed network, else no denied network and either
    /// no allowlist or a listed name.
    pub(crate) fn allows_ip(&self, ip: IpAddr, by_listed_name: bool) -> bool {
        let ip = ip.to_canonical();
        if self.listed_ip(ip) {
            return true;
        }
        let denied = DENIED_NETWORKS
            .iter()
            .filter_map(|n| n.parse::<IpNet>().ok())
            .any(|net| net.contains(&ip));
        !denied && (self.allow.is_none() || by_listed_name)
    }

    /// The addresses `host` resolved to that a webhook may connect to; an error naming the
    /// policy when there are some and none is allowed.
    pub(crate) fn admit(
        &self,
        host: &str,
        found: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, String> {
        let by_name = self.allow.is_some() && self.allows_name(host);
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.allows_ip(a.ip(), by_name))
            .collect();
        if allowed.is_empty() && !found.is_empty() {
            return Err(format!(
                "{host} resolves only to addresses webhooks may not reach: {}",
                self.refusal()
            ));
        }
        Ok(allowed)
    }

    /// Whether a webhook may post to host name `name` (before it is resolved).
    fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match &self.allow {
            None => !DENIED_NAMES.contains(&name.as_str()),
            Some(entries) => entries.iter().any(|e| match e {
                Entry::Host(host) => *host == name,
                Entry::Below(domain) => name
                    .strip_suffix(domain.as_str())
                    .is_some_and(|rest| rest.ends_with('.')),
                Entry::Net(_) => false,
            }),
        }
    }

    /// Checks a webhook URL's host: `Err` says why it may not receive webhooks.
    pub(crate) fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or("");
        let allowed = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => self.allows_ip(ip, false),
            Err(_) => !host.is_empty() && self.allows_name(host),
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "webhooks may not post to {}: {}",
                redact(url),
                self.refusal()
            ))
        }
    }

    /// Why a host is refused, for error messages.
    fn refusal(&self) -> &'static str {
        match self.allow {
            None => "link-local and cloud metadata addresses are refused (name them in serve --webhook-allow to allow them)",
            Some(_) => "the host is not in serve --webhook-allow",
        }
    }

    /// A resolver for the webhooks' HTTP client that hands out only the addresses this
    /// policy allows.
    pub(crate) fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            policy: self.clone(),
        })
    }
}

/// A host name of the allowlist, lower-cased; an error if it cannot be one.
fn host_name(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "--webhook-allow: {text:?} is not a host name, an address or a network (CIDR)"
        ))
    }
}

/// Resolves webhook hosts with the system resolver, keeping only allowed addresses.
#[derive(Debug)]
pub(crate) struct GuardedResolver {
    policy: WebhookPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.admit(&host, found)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A URL as errors and headers may show it: scheme, host and port, without user-info, path
/// or query (chat webhooks carry their secret in the path).
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = url.path() != "/" || url.query().is_some() || !url.username().is_empty();
    let rest = if hidden { "/…" } else { "/" };
    format!("{}://{host}{port}{rest}", url.scheme())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("url")
    }

    #[test]
    fn by_default_link_local_and_metadata_hosts_are_refused() {
        let policy = WebhookPolicy::default();
        for denied in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
        ] {
            assert!(policy.check(&url(denied)).is_err(), "{denied}");
        }
        for allowed in ["http://127.0.0.1:9000/hook", "https://hooks.example.com/x"] {
            assert_eq!(policy.check(&url(allowed)), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn an_allowlist_admits_only_what_it_names() {
        let policy =
            WebhookPolicy::allow_only("hooks.example.com, *.corp.example, 10.0.0.0/8, ::1")
                .expect("list");
        for allowed in [
            "https://hooks.example.com/x",
            "https://a.b.corp.example/x",
            "http://10.2.3.4/",
            "http://[::1]:80/",
        ] {
            assert_eq!(policy.check(&url(allowed)), Ok(()), "{allowed}");
        }
        for denied in [
            "https://example.com/",
            "https://corp.example/",
            "https://evilcorp.example/",
            "http://127.0.0.1/",
            "http://169.254.169.254/",
        ] {
            assert!(policy.check(&url(denied)).is_err(), "{denied}");
        }
        let metadata = WebhookPolicy::allow_only("169.254.169.254").expect("list");
        assert_eq!(
            metadata.check(&url("http://169.254.169.254/")),
            Ok(()),
            "named explicitly"
        );
        assert!(WebhookPolicy::allow_only("").is_err());
        assert!(WebhookPolicy::allow_only("bad host!").is_err());
    }

    #[test]
    fn resolved_addresses_are_checked_against_the_policy() {
        let addr = |text: &str| SocketAddr::new(text.parse().expect("ip"), 0);
        let open = WebhookPolicy::default();
        // DNS rebinding: a name that resolves to a metadata address.
        assert!(open
            .admit("rebind.example.com", vec![addr("169.254.169.254")])
            .is_err());
        assert_eq!(
            open.admit(
                "mixed.example.com",
                vec![addr("169.254.169.254"), addr("192.0.2.7")]
            ),
            Ok(vec![addr("192.0.2.7")])
        );
        let listed = WebhookPolicy::allow_only("hooks.example.com,10.0.0.0/8").expect("list");
        assert_eq!(
            listed.admit("hooks.example.com", vec![addr("203.0.113.9")]),
            Ok(vec![addr("203.0.113.9")]),
            "a listed name reaches whatever public address it has"
        );
        assert!(listed
            .admit("hooks.example.com", vec![addr("169.254.169.254")])
            .is_err());
        assert!(listed
            .admit("other.example.com", vec![addr("203.0.113.9")])
            .is_err());
        assert_eq!(
            listed.admit("other.example.com", vec![addr("10.1.2.3")]),
            Ok(vec![addr("10.1.2.3")]),
            "a listed network"
        );
        for nat in [
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!open.allows_ip(nat.parse().expect("ip"), false), "{nat}");
        }
    }

    #[test]
    fn urls_are_shown_without_credentials_paths_or_queries() {
        assert_eq!(
            redact(&url(
                "https://user:secret@hooks.slack.com/services/T0/B0/XYZ?x=1"
            )),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact(&url("http://127.0.0.1:9000/")),
            "http://127.0.0.1:9000/"
        );
    }
}
