//! Optional bearer tokens with a scope per stream. The server keeps only each token's
//! SHA-256, so its tokens file reveals no token.
//!
//! A tokens file has one grant per line, `SHA256-HEX SCOPE STREAMS`, where SCOPE is `read`,
//! `write` or `admin` and STREAMS a comma-separated list of names, `prefix*` patterns or
//! `*`. A token may have several lines. `cloudstream token` makes a token and its line.
//!
//! ```text
//! # sha256 of the token                                              scope  streams
//! 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824   write  TelemetryIngest
//! 486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7   admin  *
//! ```
//!
//! | what | scope needed |
//! |---|---|
//! | `/healthz`, `/v1/openapi.json` | none |
//! | `/metrics` (it names every stream and consumer) | `admin` on any stream |
//! | `GET /v1/capabilities`, describe a stream | any scope on it |
//! | `GET /v1/streams` | any; only the streams the token has a grant on are listed |
//! | send (one, batch, partition append) | `write` |
//! | read, tail, consumers (fetch, commit, checkpoints, leases) | `read` |
//! | create, delete a stream; delete a consumer; webhooks, their consumers (`webhook-*`) and their dead-letter streams; deliveries and their consumers (`deliver-*`); aggregations, their consumers (`aggregate-*`) and their output streams | `admin` |
//!
//! `admin` includes `read` and `write`. Without a token (or with an unknown one) a request
//! gets 401; with a token lacking the scope, 403.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::{ApiError, State};

/// What a grant allows on its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Reads, tails, consumers.
    Read,
    /// Sends.
    Write,
    /// Everything, creating and deleting streams and webhooks too.
    Admin,
}

impl Scope {
    fn allows(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin
    }

    /// As the tokens file writes it.
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// Streams a grant covers: a name, a `prefix*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(String);

impl Pattern {
    fn covers(&self, stream: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => stream.starts_with(prefix),
            None => self.0 == stream,
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone)]
struct Grant {
    scope: Scope,
    streams: Vec<Pattern>,
}

/// The tokens the server accepts, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    grants: HashMap<String, Vec<Grant>>,
}

/// The SHA-256 of a token, in lowercase hex: what the tokens file holds.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl Tokens {
    /// Parses a tokens file; the error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hash, scope, streams] = fields[..] else {
                return Err(bad("expected SHA256-HEX SCOPE STREAMS"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("the first field is not a SHA-256 in hex (64 digits)"));
            }
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                "admin" => Scope::Admin,
                _ => return Err(bad("the scope is not read, write or admin")),
            };
            let streams = streams
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Pattern(s.to_owned()))
                .collect::<Vec<_>>();
            if streams.is_empty() {
                return Err(bad("no stream named"));
            }
            tokens
                .grants
                .entry(hash.to_ascii_lowercase())
                .or_default()
                .push(Grant { scope, streams });
        }
        Ok(tokens)
    }

    /// How many distinct tokens there are.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether there is no token at all.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    fn principal(&self, token: &str) -> Option<Principal> {
        self.grants
            .get(&token_hash(token))
            .map(|grants| Principal(Arc::new(grants.clone())))
    }
}

/// The grants of the token a request came with; handlers that list streams filter by it.
#[derive(Debug, Clone)]
pub(crate) struct Principal(Arc<Vec<Grant>>);

impl Principal {
    fn allows(&self, stream: Option<&str>, needed: Option<Scope>) -> bool {
        self.0.iter().any(|g| {
            needed.is_none_or(|n| g.scope.allows(n))
                && stream.is_none_or(|s| g.streams.iter().any(|p| p.covers(s)))
        })
    }

    /// Whether the token has any grant on `stream`.
    pub(crate) fn sees(&self, stream: &str) -> bool {
        self.allows(Some(stream), None)
    }

    /// The grants as `GET /v1/whoami` shows them.
    fn grants(&self) -> Vec<serde_json::Value> {
        self.0
            .iter()
            .map(|g| {
                let streams: Vec<&str> = g.streams.iter().map(|p| p.0.as_str()).collect();
                serde_json::json!({ "scope": g.scope.name(), "streams": streams })
            })
            .collect()
    }
}

/// `GET /v1/whoami`: what the request's token may do, so that a client (the web console)
/// can offer only what it may; the server still checks every request.
#[utoipa::path(
    get, path = "/v1/whoami", tag = "meta",
    responses(
        (status = 200, description = "What the token may do", body = crate::openapi::Whoami),
        crate::openapi::Failures
    )
)]
pub(crate) async fn whoami(
    state: State,
    principal: Option<axum::Extension<Principal>>,
) -> axum::Json<serde_json::Value> {
    let grants = principal.map(|axum::Extension(p)| p.grants());
    axum::Json(serde_json::json!({
        "tokens_required": state.0.tokens.is_some(),
        "grants": grants,
    }))
}

/// The scope a request needs, and on which stream (percent-decoded, as the handlers see
/// it); `None` for open routes.
fn needed(method: &Method, path: &str) -> Option<(Option<String>, Option<Scope>)> {
    let decoded: Vec<std::borrow::Cow<'_, str>> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
        .collect();
    let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let (stream, scope) = match segments[..] {
        // The console's page and files: public (its calls to /v1 carry the token).
        ["healthz"] | ["v1", "openapi.json"] | [""] | ["console", ..] => return None,
        // Metrics name every stream and consumer.
        ["metrics"] => (None, Some(Scope::Admin)),
        ["v1", "streams", name] => (
            Some(name),
            match *method {
                Method::GET | Method::HEAD => None,
                _ => Some(Scope::Admin),
            },
        ),
        // Rates, like the description: any grant on the stream (a writer sees its rate).
        ["v1", "streams", name, "stats"] => (Some(name), None),
        ["v1", "streams", name, "events", ..] | ["v1", "streams", name, "partitions", ..] => {
            (Some(name), Some(Scope::Write))
        }
        ["v1", "streams", name, kind, ..] if crate::jobs::kinds::ROUTES.contains(&kind) => {
            (Some(name), Some(Scope::Admin))
        }
        // A job's own consumer, and deleting any consumer, are the admin's.
        ["v1", "streams", name, "consumers", consumer, ..]
            if crate::jobs::kinds::CONSUMERS
                .iter()
                .any(|prefix| consumer.starts_with(prefix)) =>
        {
            (Some(name), Some(Scope::Admin))
        }
        ["v1", "streams", name, "consumers", _] if *method == Method::DELETE => {
            (Some(name), Some(Scope::Admin))
        }
        ["v1", "streams", name, ..] => (Some(name), Some(Scope::Read)),
        // The capabilities, the list of streams (filtered), unknown routes (404 for anyone
        // with a token).
        _ => (None, None),
    };
    Some((stream.map(str::to_owned), scope))
}

/// A 403 saying which scope is missing, on which stream.
fn forbidden(scope: Option<Scope>, stream: Option<&str>) -> ApiError {
    let what = match scope {
        Some(Scope::Read) => "read",
        Some(Scope::Write) => "write",
        Some(Scope::Admin) => "admin",
        None => "any",
    };
    let on = stream.map_or_else(String::new, |s| format!(" on stream {s:?}"));
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this token has no {what} scope{on}"),
    )
}

/// Checks, inside a handler, a scope the route alone does not tell (the dead-letter stream
/// of a webhook): passes when the server has no tokens.
pub(crate) fn require(
    principal: Option<&Principal>,
    stream: &str,
    scope: Scope,
) -> Result<(), ApiError> {
    match principal {
        Some(p) if !p.allows(Some(stream), Some(scope)) => {
            Err(forbidden(Some(scope), Some(stream)))
        }
        _ => Ok(()),
    }
}

/// Middleware: checks the bearer token when the server has tokens.
pub(crate) async fn check(state: State, mut request: Request, next: Next) -> Response {
    let Some(tokens) = &state.tokens else {
        return next.run(request).await;
    };
    let Some((stream, scope)) = needed(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(principal) = token.and_then(|t| tokens.principal(t)) else {
        let error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs a bearer token (Authorization: Bearer TOKEN) it knows",
        );
        return ([(header::WWW_AUTHENTICATE, "Bearer")], error).into_response();
    };
    if !principal.allows(stream.as_deref(), scope) {
        return forbidden(scope, stream.as_deref()).into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            token_hash("hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn grants_check_scope_and_stream() -> Result<(), String> {
        let tokens = Tokens::parse(&format!(
            "# comment\n{} write Telemetry*,Audit\n{} admin *\n",
            token_hash("device"),
            token_hash("root")
        ))?;
        assert_eq!(tokens.len(), 2);
        let device = tokens.principal("device").ok_or("device")?;
        assert!(device.allows(Some("TelemetryIngest"), Some(Scope::Write)));
        assert!(device.allows(Some("Audit"), Some(Scope::Write)));
        assert!(!device.allows(Some("TelemetryIngest"), Some(Scope::Read)));
        assert!(!device.allows(Some("Other"), Some(Scope::Write)));
        assert!(device.sees("Audit") && !device.sees("Auditor"));
        let root = tokens.principal("root").ok_or("root")?;
        assert!(root.allows(Some("x"), Some(Scope::Read)) && root.allows(None, None));
        assert!(tokens.principal("nobody").is_none());
        Ok(())
    }

    #[test]
    fn bad_lines_are_named() {
        for bad in [
            "abc write x",
            &format!("{} delete x", token_hash("t")),
            &format!("{} write", token_hash("t")),
        ] {
            let e = Tokens::parse(bad).expect_err("refused");
            assert!(e.starts_with("line 1:"), "{e}");
        }
    }

    #[test]
    fn routes_need_their_scope() {
        let get = Method::GET;
        let post = Method::POST;
        let on = |s: &str, scope| Some((Some(s.to_owned()), scope));
        assert_eq!(needed(&get, "/healthz"), None);
        assert_eq!(needed(&get, "/"), None);
        assert_eq!(needed(&get, "/console/js/app.js"), None);
        assert_eq!(needed(&get, "/metrics"), Some((None, Some(Scope::Admin))));
        assert_eq!(
            needed(&post, "/v1/streams/s/events/batch"),
            on("s", Some(Scope::Write))
        );
        assert_eq!(
            needed(&get, "/v1/streams/s/tail"),
            on("s", Some(Scope::Read))
        );
        assert_eq!(
            needed(&Method::PUT, "/v1/streams/s"),
            on("s", Some(Scope::Admin))
        );
        assert_eq!(needed(&get, "/v1/streams/s"), on("s", None));
        assert_eq!(needed(&get, "/v1/streams/s/stats"), on("s", None));
        assert_eq!(
            needed(&get, "/v1/streams/s/aggregations/a"),
            on("s", Some(Scope::Admin))
        );
        assert_eq!(
            needed(&get, "/v1/streams/s/consumers/aggregate-a/checkpoint"),
            on("s", Some(Scope::Admin))
        );
        assert_eq!(needed(&get, "/v1/streams"), Some((None, None)));
        assert_eq!(needed(&get, "/v1/whoami"), Some((None, None)));
        // Names are checked as the handlers see them, percent-decoded.
        assert_eq!(
            needed(&post, "/v1/streams/my%2Dx/events"),
            on("my-x", Some(Scope::Write))
        );
        assert_eq!(
            needed(&Method::PUT, "/v1/streams/s/consumers/c/checkpoint"),
            on("s", Some(Scope::Read))
        );
        assert_eq!(
            needed(&Method::DELETE, "/v1/streams/s/consumers/c"),
            on("s", Some(Scope::Admin))
        );
        assert_eq!(
            needed(&post, "/v1/streams/s/consumers/webhook-x/fetch"),
            on("s", Some(Scope::Admin))
        );
    }
}
