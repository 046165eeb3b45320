//! Events and records as JSON, both ways: what a client sends ([`EventJson`]) and what a
//! reader gets back ([`record_json`], parsed again by [`record_from_json`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{base64_decode, base64_encode, rfc3339};
use crate::{Error, Event, Position, Record, Result, Sequence};

/// An event in a request: `payload` (a string is stored as its text, any other JSON value
/// as JSON with `content-type: application/json`) or `payload_base64` for raw bytes, plus
/// an optional key, headers and event time (RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventJson {
    /// The payload as text or JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The payload as base64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// String headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// When the event happened, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// The event's id: sent again within the provider's deduplication window, it is stored
    /// once (the `cloudstream-id` header; see `Event::with_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl EventJson {
    /// The event exactly as given: payload as base64, event time to the nanosecond.
    pub fn exact(event: &Event) -> Self {
        EventJson {
            payload: None,
            payload_base64: Some(base64_encode(&event.payload)),
            key: event.key.clone(),
            headers: event.headers.clone(),
            event_time: event
                .time
                .map(|t| humantime::format_rfc3339_nanos(t).to_string()),
            // Carried by the headers.
            id: None,
        }
    }

    /// The event this describes; `InvalidArgument` says what is wrong with it.
    pub fn into_event(self) -> Result<Event> {
        let mut event = match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "give payload or payload_base64, not both".into(),
                ))
            }
            (None, None) => return Err(Error::InvalidArgument("an event needs a payload".into())),
            (Some(Value::String(text)), None) => Event::new(text),
            (Some(value), None) => Event::json(&value)?,
            (None, Some(b64)) => Event::new(base64_decode(&b64)?),
        };
        event.key = self.key;
        event.headers.extend(self.headers);
        if let Some(id) = self.id {
            event = event.with_id(id);
        }
        if let Some(t) = self.event_time {
            event.time = Some(parse_time("event_time", &t)?);
        }
        Ok(event)
    }
}

/// A time from RFC 3339; `InvalidArgument` naming `field` otherwise.
pub fn parse_time(field: &str, text: &str) -> Result<std::time::SystemTime> {
    humantime::parse_rfc3339(text).map_err(|e| {
        Error::InvalidArgument(format!("{field} {text:?} is not an RFC 3339 time: {e}"))
    })
}

/// How a record's payload is written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PayloadForm {
    /// A JSON payload (its `content-type` says JSON) as the JSON value itself, any other
    /// UTF-8 payload as a string, bytes as `payload_base64`.
    #[default]
    Json,
    /// Every UTF-8 payload as a string holding its exact text; bytes as `payload_base64`.
    Text,
}

/// Whether `content_type` names JSON (`application/json`, `application/cloudevents+json`,
/// `...; charset=utf-8`).
fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// `text` as a JSON value, if it is the compact JSON of a value other than a string, so
/// that a client writing the value back gets exactly `text` again.
fn as_json_value(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    // A string would read back as text, and null as no payload at all.
    let exact =
        !value.is_string() && !value.is_null() && serde_json::to_string(&value).ok()? == text;
    exact.then_some(value)
}

/// A record as the API carries it: `{"position": "0:42", "partition": 0, "sequence": 42,
/// "append_time": RFC3339, "key": ..., "headers": {...}, "event_time": RFC3339?, "payload":
/// ...}`. `payload` is the JSON value itself when the record holds JSON (its `content-type`
/// header says so, and the payload is the compact JSON of a value other than a string),
/// else its text; `payload_base64` replaces it when the payload is not UTF-8. With
/// [`PayloadForm::Text`], every UTF-8 payload is a string of its exact text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    serde(deny_unknown_fields)
)]
pub struct RecordJson {
    /// Where it is.
    pub position: Position,
    /// Its partition.
    pub partition: u32,
    /// Its sequence within the partition.
    pub sequence: Sequence,
    /// When the provider stored it (RFC 3339).
    pub append_time: String,
    /// The partition key.
    pub key: Option<String>,
    /// String headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// When the event happened, as its writer said (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// The payload: its JSON value where it holds JSON, else its text (when UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The payload in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl From<&Record> for RecordJson {
    fn from(r: &Record) -> Self {
        RecordJson::new(r, PayloadForm::Json)
    }
}

impl RecordJson {
    /// The JSON of `r`, its payload written in `form`.
    pub fn new(r: &Record, form: PayloadForm) -> Self {
        let json_typed = || {
            r.event
                .headers
                .get("content-type")
                .is_some_and(|t| is_json_type(t))
        };
        let (payload, payload_base64) = match std::str::from_utf8(&r.event.payload) {
            Ok(text) => {
                let value = match form {
                    PayloadForm::Json if json_typed() => as_json_value(text),
                    _ => None,
                };
                (
                    Some(value.unwrap_or_else(|| Value::String(text.to_owned()))),
                    None,
                )
            }
            Err(_) => (None, Some(base64_encode(&r.event.payload))),
        };
        RecordJson {
            position: r.position,
            partition: r.position.partition,
            sequence: r.position.sequence,
            append_time: rfc3339(r.append_time),
            key: r.event.key.clone(),
            headers: r.event.headers.clone(),
            event_time: r.event.time.map(rfc3339),
            payload,
            payload_base64,
        }
    }

    /// The record this describes; `InvalidArgument` says what is wrong with it.
    pub fn into_record(self) -> Result<Record> {
        let payload = match (self.payload, self.payload_base64) {
            (Some(Value::String(text)), None) => text.into_bytes(),
            (Some(value), None) => serde_json::to_vec(&value)
                .map_err(|e| Error::InvalidArgument(format!("payload: {e}")))?,
            (None, Some(b64)) => base64_decode(&b64)?,
            _ => {
                return Err(Error::InvalidArgument(
                    "a record has payload or payload_base64".into(),
                ))
            }
        };
        Ok(Record {
            position: self.position,
            append_time: parse_time("append_time", &self.append_time)?,
            event: Event {
                payload: payload.into(),
                key: self.key,
                headers: self.headers,
                time: self
                    .event_time
                    .map(|t| parse_time("event_time", &t))
                    .transpose()?,
            },
        })
    }
}

/// A record as JSON ([`RecordJson`]).
pub fn record_json(r: &Record) -> Value {
    serde_json::to_value(RecordJson::from(r)).unwrap_or(Value::Null)
}

/// A record back from the JSON [`record_json`] made of it.
pub fn record_from_json(value: Value) -> Result<Record> {
    let r: RecordJson = serde_json::from_value(value)
        .map_err(|e| Error::InvalidArgument(format!("not a record: {e}")))?;
    r.into_record()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn records_survive_their_json() -> Result<()> {
        let time = UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        for payload in [&b"text"[..], &[0xff, 0x00, 0x80][..]] {
            let record = Record {
                position: Position::new(3, 42),
                append_time: time,
                event: Event::new(payload.to_vec())
                    .with_key("k")
                    .with_header("h", "v")
                    .with_time(time),
            };
            assert_eq!(record_from_json(record_json(&record))?, record);
        }
        Ok(())
    }

    #[test]
    fn json_payloads_are_json_values_and_survive_exactly() -> Result<()> {
        let time = UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        let record = |payload: &str, content_type: Option<&str>| {
            let mut event = Event::new(payload.as_bytes().to_vec());
            if let Some(t) = content_type {
                event = event.with_header("content-type", t);
            }
            Record {
                position: Position::new(0, 1),
                append_time: time,
                event,
            }
        };
        let json = Some("application/json; charset=utf-8");
        for (payload, content_type, as_value) in [
            (r#"{"temp":21.5,"tags":["a"]}"#, json, true),
            ("[1,2,3]", Some("application/cloudevents+json"), true),
            ("42", json, true),
            ("null", json, false),
            (r#"{"temp": 21.5}"#, json, false), // not compact: its exact text
            (r#""a string""#, json, false),     // would read as text
            ("1e2", json, false),               // would print as 100.0
            ("{not json", json, false),
            (r#"{"temp":21.5}"#, None, false), // not said to be JSON
            (r#"{"temp":21.5}"#, Some("text/plain"), false),
        ] {
            let r = record(payload, content_type);
            let value = record_json(&r);
            assert_eq!(
                !value["payload"].is_string(),
                as_value,
                "{payload} {content_type:?}: {value}"
            );
            assert_eq!(record_from_json(value)?, r, "{payload} survives");
            let text = serde_json::to_value(RecordJson::new(&r, PayloadForm::Text))
                .map_err(|e| Error::Backend(e.into()))?;
            assert_eq!(text["payload"], payload, "text form");
        }
        Ok(())
    }

    #[test]
    fn exact_events_survive_their_json() -> Result<()> {
        let event = Event::new(vec![0xde, 0xad])
            .with_key("k")
            .with_time(UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789));
        let json =
            serde_json::to_value(EventJson::exact(&event)).map_err(|e| Error::Backend(e.into()))?;
        let back: EventJson = serde_json::from_value(json).map_err(|e| Error::Backend(e.into()))?;
        assert_eq!(back.into_event()?, event);
        Ok(())
    }
}
