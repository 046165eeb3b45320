//! The options of `http://HOST:PORT` (and `https://`) URLs: `token=`, `timeout_ms=`,
//! `ca_file=`.

use std::path::PathBuf;
use std::time::Duration;

use crate::url::ProviderUrl;
use crate::Result;

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

impl HttpOptions {
    /// The settings of an `http://` or `https://` URL.
    pub fn from_url(url: &ProviderUrl) -> Result<Self> {
        let base = format!(
            "{}://{}",
            url.scheme(),
            url.location().trim_end_matches('/')
        );
        ::url::Url::parse(&base)
            .ok()
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| url.invalid("expected http://HOST:PORT, e.g. http://127.0.0.1:7070"))?;
        let mut o = HttpOptions {
            base,
            token: std::env::var("CLOUDSTREAM_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            timeout: Duration::from_secs(30),
            ca_file: None,
        };
        for (k, v) in url.options() {
            match k.as_str() {
                "token" => o.token = Some(v),
                "ca_file" => o.ca_file = Some(PathBuf::from(v)),
                "timeout_ms" => {
                    let ms: u64 = v.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                        url.invalid(format!(
                            "timeout_ms must be a positive whole number, got {v:?}"
                        ))
                    })?;
                    o.timeout = Duration::from_millis(ms);
                }
                _ => return Err(url.unknown_option(&k, &["token", "timeout_ms", "ca_file"])),
            }
        }
        Ok(o)
    }
}
