//! Events from request bodies, by content type.
//!
//! One event (`POST .../events`):
//! - `application/json` (or no content type): the event's JSON form ([`EventJson`]);
//! - `application/cloudevents+json`: a CloudEvent in structured mode;
//! - any content type with a `ce-specversion` header: a CloudEvent in binary mode, the body
//!   being its data;
//! - any other content type (`application/octet-stream`, `text/plain`, ...): the body is the
//!   payload, as bytes; the key comes from the `cloudstream-key` header, the event time from
//!   `cloudstream-event-time` (RFC 3339), headers from `cloudstream-header-NAME: VALUE`, and
//!   a content type other than octet-stream is kept as the `content-type` header.
//!
//! A batch (`POST .../events/batch`): a JSON array of events (`application/json`), NDJSON
//! (`application/x-ndjson`, one event per line), or a JSON array of structured CloudEvents
//! (`application/cloudevents-batch+json`).
//!
//! A CloudEvent's attributes become `ce_*` headers (`ce_id`, `ce_source`, `ce_type`,
//! `ce_specversion`, `ce_subject`, extensions), its `time` the event time, its
//! `datacontenttype` the `content-type` header, and its `partitionkey` extension (the
//! CloudEvents partitioning extension) the key.

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use cloudstream::wire::{base64_decode, parse_time, EventJson};
use cloudstream::Event;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::ApiError;

/// How a body is read.
enum Kind {
    Json,
    CloudEvent,
    CloudEventBinary,
    Raw(Option<String>),
}

/// The media type of a content type, without its parameters: `application/json`.
fn media(content_type: &str) -> String {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.to_ascii_lowercase()
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    Some(media(headers.get(header::CONTENT_TYPE)?.to_str().ok()?))
}

fn kind(headers: &HeaderMap) -> Kind {
    if headers.contains_key("ce-specversion") {
        return Kind::CloudEventBinary;
    }
    match media_type(headers).as_deref() {
        None | Some("application/json") => Kind::Json,
        Some("application/cloudevents+json") => Kind::CloudEvent,
        Some(other) => Kind::Raw(Some(other.to_owned())),
    }
}

fn bad_json(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::BAD_REQUEST, "bad_json", message)
}

/// The one event a `POST .../events` body carries.
pub(crate) fn event(headers: &HeaderMap, body: &Bytes) -> Result<Event, ApiError> {
    match kind(headers) {
        Kind::Json => {
            let json: EventJson =
                serde_json::from_slice(body).map_err(|e| bad_json(format!("not an event: {e}")))?;
            Ok(json.into_event()?)
        }
        Kind::CloudEvent => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| bad_json(format!("not a CloudEvent: {e}")))?;
            structured(value)
        }
        Kind::CloudEventBinary => binary(headers, body),
        Kind::Raw(content_type) => raw(headers, body, content_type),
    }
}

/// The events of a `POST .../events/batch` body, each parsed alone so that one bad event
/// fails alone; an unreadable body as a whole is an error.
pub(crate) fn batch(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<Result<Event, ApiError>>, ApiError> {
    let event_from = |text: &str| {
        serde_json::from_str::<EventJson>(text)
            .map_err(|e| ApiError::bad_request(format!("not an event: {e}")))
            .and_then(|json| Ok(json.into_event()?))
    };
    match media_type(headers).as_deref() {
        None | Some("application/json") => {
            // Each element is kept as its raw text and parsed alone.
            let items: Vec<&RawValue> = serde_json::from_slice(body)
                .map_err(|e| bad_json(format!("not a JSON array of events: {e}")))?;
            Ok(items
                .into_iter()
                .map(|item| event_from(item.get()))
                .collect())
        }
        Some("application/x-ndjson" | "application/jsonl" | "application/json-seq") => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("an NDJSON body must be UTF-8"))?;
            Ok(text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(event_from)
                .collect())
        }
        Some("application/cloudevents-batch+json") => {
            let items: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| bad_json(format!("not a JSON array of CloudEvents: {e}")))?;
            Ok(items.into_iter().map(structured).collect())
        }
        Some(other) => Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "a batch is application/json, application/x-ndjson or \
                 application/cloudevents-batch+json, not {other}"
            ),
        )),
    }
}

/// A structured-mode CloudEvent.
fn structured(value: Value) -> Result<Event, ApiError> {
    let Value::Object(mut attributes) = value else {
        return Err(ApiError::bad_request("a CloudEvent is a JSON object"));
    };
    let data = attributes.remove("data");
    let data_base64 = attributes.remove("data_base64");
    let content_type = attributes
        .get("datacontenttype")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let payload: Vec<u8> = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "a CloudEvent has data or data_base64, not both",
            ))
        }
        (Some(Value::String(text)), None) if !content_type.as_deref().is_some_and(is_json) => {
            text.into_bytes()
        }
        (Some(value), None) => serde_json::to_vec(&value)
            .map_err(|e| ApiError::bad_request(format!("data cannot be encoded: {e}")))?,
        (None, Some(Value::String(b64))) => base64_decode(&b64)?,
        (None, Some(_)) => return Err(ApiError::bad_request("data_base64 must be a string")),
        (None, None) => Vec::new(),
    };
    let mut event = Event::new(payload);
    let strings: Vec<(String, String)> = attributes
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| match value {
            Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect();
    apply_attributes(
        &mut event,
        strings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok(event)
}

/// A binary-mode CloudEvent: `ce-*` headers and the body as its data.
fn binary(headers: &HeaderMap, body: &Bytes) -> Result<Event, ApiError> {
    let mut event = Event::new(body.clone());
    let mut attributes = Vec::new();
    for (name, value) in headers {
        if let Some(attribute) = name.as_str().strip_prefix("ce-") {
            let value = value
                .to_str()
                .map_err(|_| ApiError::bad_request(format!("header {name} is not text")))?;
            attributes.push((attribute.to_owned(), value.to_owned()));
        }
    }
    if let Some(content_type) = media_type(headers) {
        attributes.push(("datacontenttype".to_owned(), content_type));
    }
    apply_attributes(
        &mut event,
        attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok(event)
}

/// CloudEvent attributes onto an event: the required ones checked, `time`, `partitionkey`
/// and `datacontenttype` mapped, every one kept as a `ce_*` header.
fn apply_attributes<'a>(
    event: &mut Event,
    attributes: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), ApiError> {
    for (name, value) in attributes {
        match name {
            "specversion" if value != "1.0" => {
                return Err(ApiError::bad_request(format!(
                    "CloudEvents specversion {value:?} is not supported; use 1.0"
                )))
            }
            "time" => event.time = Some(parse_time("time", value)?),
            "partitionkey" => event.key = Some(value.to_owned()),
            "datacontenttype" => {
                event
                    .headers
                    .insert("content-type".to_owned(), value.to_owned());
                continue;
            }
            _ => {}
        }
        event.headers.insert(format!("ce_{name}"), value.to_owned());
    }
    for required in ["id", "source", "type", "specversion"] {
        if !event.headers.contains_key(&format!("ce_{required}")) {
            return Err(ApiError::bad_request(format!(
                "a CloudEvent needs the {required} attribute"
            )));
        }
    }
    Ok(())
}

/// A raw body: the payload, with key, time and headers from `cloudstream-*` headers.
fn raw(headers: &HeaderMap, body: &Bytes, content_type: Option<String>) -> Result<Event, ApiError> {
    let mut event = Event::new(body.clone());
    if let Some(content_type) = content_type.filter(|c| c != "application/octet-stream") {
        event
            .headers
            .insert("content-type".to_owned(), content_type);
    }
    for (name, value) in headers {
        let name = name.as_str();
        let text = || {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request(format!("header {name} is not text")))
        };
        if name == "cloudstream-key" {
            event.key = Some(text()?);
        } else if name == "cloudstream-event-time" {
            event.time = Some(parse_time(name, &text()?)?);
        } else if let Some(header) = name.strip_prefix("cloudstream-header-") {
            event.headers.insert(header.to_owned(), text()?);
        }
    }
    Ok(event)
}

fn is_json(content_type: &str) -> bool {
    let media = media(content_type);
    media == "application/json" || media.ends_with("+json")
}
