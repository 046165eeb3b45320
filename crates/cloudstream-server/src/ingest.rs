//! Events from request bodies, by content type.
//!
//! One event (`POST .../events`):
//! - `application/json` (or no content type): the event's JSON form ([`EventJson`]);
//! - `application/cloudevents+json`: a CloudEvent in structured mode;
//! - any content type with a `ce-specversion` header: a CloudEvent in binary mode, the body
//!   being its data;
//! - any other content type (`application/octet-stream`, `text/plain`, ...): the body is the
//!   payload, as bytes; the key comes from the `cloudstream-key` header, the event time from
//!   `cloudstream-event-time` (RFC 3339), the id from `cloudstream-id`, headers from
//!   `cloudstream-header-NAME: VALUE`, and
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

/// A batch body with more events than allowed: refused as soon as the count passes the
/// limit, before the rest of the body is parsed.
pub(crate) fn too_many(max: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
        format!("more than {max} events in one batch; at most {max}"),
    )
}

/// The elements of a JSON array, each kept as its raw text, counted as they are read: more
/// than `max` stops the parse at once (a 16 MiB body of `{}` is millions of elements).
pub(crate) fn bounded_array(body: &[u8], max: usize) -> Result<Vec<&RawValue>, ApiError> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    use std::cell::Cell;

    struct Bounded<'c> {
        max: usize,
        over: &'c Cell<bool>,
    }
    impl<'de> Visitor<'de> for Bounded<'_> {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<&RawValue>()? {
                if items.len() == self.max {
                    self.over.set(true);
                    return Err(serde::de::Error::custom("too many events"));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    impl<'de> DeserializeSeed<'de> for Bounded<'_> {
        type Value = Vec<&'de RawValue>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }

    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Bounded { max, over: &over }
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|()| items));
    match parsed {
        Ok(items) => Ok(items),
        Err(_) if over.get() => Err(too_many(max)),
        Err(e) => Err(bad_json(format!("not a JSON array of events: {e}"))),
    }
}

/// The events of a `POST .../events/batch` body, each parsed alone so that one bad event
/// fails alone; an unreadable body as a whole is an error, and so is one with more than
/// `max` events, found as soon as the count passes it.
pub(crate) fn batch(
    headers: &HeaderMap,
    body: &Bytes,
    max: usize,
) -> Result<Vec<Result<Event, ApiError>>, ApiError> {
    let event_from = |text: &str| {
        serde_json::from_str::<EventJson>(text)
            .map_err(|e| ApiError::bad_request(format!("not an event: {e}")))
            .and_then(|json| Ok(json.into_event()?))
    };
    match media_type(headers).as_deref() {
        None | Some("application/json") => Ok(bounded_array(body, max)?
            .into_iter()
            .map(|item| event_from(item.get()))
            .collect()),
        Some("application/x-ndjson" | "application/jsonl" | "application/json-seq") => {
            let mut events = Vec::new();
            for line in body.split(|&b| b == b'\n') {
                let line = std::str::from_utf8(line)
                    .map_err(|_| ApiError::bad_request("an NDJSON body must be UTF-8"))?;
                if line.trim().is_empty() {
                    continue;
                }
                if events.len() == max {
                    return Err(too_many(max));
                }
                events.push(event_from(line));
            }
            Ok(events)
        }
        Some("application/cloudevents-batch+json") => Ok(bounded_array(body, max)?
            .into_iter()
            .map(|item| {
                serde_json::from_str::<Value>(item.get())
                    .map_err(|e| bad_json(format!("not a CloudEvent: {e}")))
                    .and_then(structured)
            })
            .collect()),
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
        (Some(Value::Null), _) => {
            return Err(ApiError::bad_request(
                "a CloudEvent's data is not null (leave it out for no data)",
            ))
        }
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
        } else if name == cloudstream::ID_HEADER {
            event = event.with_id(text()?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().expect("header"));
        h
    }

    /// More events than allowed are refused as soon as the count passes the limit: the
    /// rest of the body (here unreadable) is never parsed, let alone materialized.
    #[test]
    fn a_batch_over_the_limit_is_refused_before_the_rest_is_parsed() {
        let max = 3;
        let cases = [
            ("application/json", "[{},{},{},{},{} not json at all"),
            ("application/cloudevents-batch+json", "[{},{},{},{} \u{0}"),
            (
                "application/x-ndjson",
                "{}\n{}\n{}\n{}\n\u{ff}\u{fe}garbage",
            ),
        ];
        for (content_type, body) in cases {
            let body = Bytes::from(body.as_bytes().to_vec());
            let err = match batch(&headers(content_type), &body, max) {
                Ok(events) => panic!("{content_type}: {} events accepted", events.len()),
                Err(e) => e,
            };
            assert_eq!(
                err.error_body().error.code,
                "batch_too_large",
                "{content_type}"
            );
        }
        let ok = Bytes::from_static(b"[{\"payload\":\"a\"},{\"payload\":\"b\"}]");
        let events = batch(&headers("application/json"), &ok, max).expect("within the limit");
        assert_eq!(events.len(), 2);
        let broken = Bytes::from_static(b"[{},");
        let err = batch(&headers("application/json"), &broken, max).expect_err("broken");
        assert_eq!(err.error_body().error.code, "bad_json");
    }
}
