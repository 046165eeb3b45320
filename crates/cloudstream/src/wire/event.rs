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
        if let Some(t) = self.event_time {
            event.time = Some(parse_time("event_time", &t)?);
        }
        Ok(event)
    }
}

/// A time from RFC 3339; `InvalidArgument` naming `field` otherwise.
pub fn parse_time(field: &str, text: &str) -> Result<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        Error::InvalidArgument(format!("{field} {text:?} is not an RFC 3339 time: {e}"))
    })
}

/// A record as the API carries it: `{"position": "0:42", "partition": 0, "sequence": 42,
/// "append_time": RFC3339, "key": ..., "headers": {...}, "event_time": RFC3339?, "payload":
/// TEXT}`, with `payload_base64` instead of `payload` when the payload is not UTF-8.
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
    /// The payload, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl From<&Record> for RecordJson {
    fn from(r: &Record) -> Self {
        let (payload, payload_base64) = match std::str::from_utf8(&r.event.payload) {
            Ok(text) => (Some(text.to_owned()), None),
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
}

impl RecordJson {
    /// The record this describes; `InvalidArgument` says what is wrong with it.
    pub fn into_record(self) -> Result<Record> {
        let payload = match (self.payload, self.payload_base64) {
            (Some(text), None) => text.into_bytes(),
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
