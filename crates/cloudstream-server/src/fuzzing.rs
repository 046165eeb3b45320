//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), built only with the
//! `fuzzing` feature and not part of the API.
//!
//! Each function takes arbitrary bytes and runs the server's parsers of request bodies and
//! of its own files over them. Whether a parser accepts them does not matter; a panic, a
//! hang or a huge allocation is the finding, and so is a cursor or a checkpoint that does
//! not parse again once printed.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use cloudstream::backend::Checkpoint;
use cloudstream::wire::EventJson;

use crate::jobs::store;
use crate::{Tokens, WebhookPolicy};

/// `webhooks/spec.rs` compiled again here: the webhook types are private to their module.
#[path = "webhooks/spec.rs"]
#[allow(dead_code, unreachable_pub, clippy::duplicate_mod)]
mod spec;

/// The most events of a batch here: few, so that inputs reach the limit.
const MAX_EVENTS: usize = 16;

/// A request to `POST .../events`, `POST .../events/batch` and
/// `POST .../partitions/{p}/events`, each route's parser over it: header lines
/// (`NAME: VALUE`, such as `content-type` or `ce-specversion`), an empty line, then the
/// body; an input without an empty line is a body without headers.
pub fn event_bodies(data: &[u8]) {
    let (headers, body) = request(data);
    let body = Bytes::copy_from_slice(body);
    let _ = crate::ingest::event(&headers, &body);
    let _ = crate::ingest::batch(&headers, &body, MAX_EVENTS);
    if let Ok(items) = crate::ingest::bounded_array(&body, MAX_EVENTS) {
        for item in items {
            if let Ok(json) = serde_json::from_str::<EventJson>(item.get()) {
                let _ = json.into_event();
            }
        }
    }
}

/// `webhooks.json` as [`crate::Server::open`] reads it, each registration checked as it is
/// started again and the file encoded as every change saves it; then the input as the body
/// of `PUT .../webhooks/{id}`, resolved and saved the same way.
pub fn webhook_store(data: &[u8]) {
    let policy = WebhookPolicy::default();
    if let Ok(registered) = store::parse::<spec::Spec>(data, "webhooks") {
        for registered in &registered {
            if let Ok(url) = spec::parse_url(&registered.url) {
                let _ = policy.check(&url);
            }
            let _ = registered.retry();
            let _ = cloudstream::validate_name("consumer", &spec::consumer_name(&registered.id));
        }
        let _ = store::encode("webhooks", &registered);
    }
    if let Ok(body) = serde_json::from_slice::<spec::WebhookSpec>(data) {
        let _ = body.dead_letter_stream("orders");
        if let Ok((resolved, url)) = body.resolve("orders", "billing") {
            let _ = policy.check(&url);
            let _ = store::encode("webhooks", &[resolved]);
        }
    }
}

/// The smaller inputs, on the input as text or JSON: the query strings of reads, tails,
/// fetches and leases; a `Last-Event-ID` cursor and the body of `PUT .../checkpoint` (each
/// printed back as a cursor and read again); the body of `PUT /v1/streams/{name}` and its
/// horizon; the tokens file; `serve --webhook-allow`.
pub fn request_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    if let Ok(uri) = Uri::try_from(format!("/v1?{text}")) {
        let _ = Query::<crate::events::ReadQuery>::try_from_uri(&uri);
        let _ = Query::<crate::tail::TailQuery>::try_from_uri(&uri);
        let _ = Query::<crate::consumers::FetchQuery>::try_from_uri(&uri);
        let _ = Query::<crate::leases::LeaseQuery>::try_from_uri(&uri);
    }
    if let Ok(resume) = crate::tail::parse_cursor(text) {
        let resume: Checkpoint = resume.into_iter().collect();
        cursor_reparses(&resume);
    }
    if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(data) {
        cursor_reparses(&checkpoint);
    }
    let _ = crate::streams::parse_spec(data);
    let _ = crate::streams::parse_horizon(text);
    if let Ok(tokens) = Tokens::parse(text) {
        let _ = tokens.len();
    }
    let _ = WebhookPolicy::allow_only(text);
}

/// Header lines up to the first empty line, and the body after it (all body without an
/// empty line). A line that is not a valid header is skipped.
fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}

/// Prints `resume` as the tail writes its event ids, which must read back.
fn cursor_reparses(resume: &Checkpoint) {
    let id = crate::tail::cursor_id(resume);
    assert!(
        crate::tail::parse_cursor(&id).is_ok(),
        "cursor {id:?} does not read back"
    );
}
