//! What writers send ([`Event`]) and readers get ([`Record`]), and where a record is
//! ([`Position`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result, Sequence};

/// An event to write: payload bytes, an optional partition key, string headers and an
/// optional event time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The payload.
    pub payload: Bytes,
    /// Events with the same key go to the same partition, in order.
    pub key: Option<String>,
    /// String headers (attributes); CloudEvents attributes go here as `ce_*`.
    pub headers: BTreeMap<String, String>,
    /// When the event happened, as the writer saw it.
    pub time: Option<SystemTime>,
}

impl Event {
    /// An event with this payload.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Event {
            payload: payload.into(),
            ..Event::default()
        }
    }

    /// An event whose payload is `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode event as JSON: {e}")))?;
        Ok(Event::new(payload).with_header("content-type", "application/json"))
    }

    /// Sets the event's id (the `cloudstream-id` header): sending it again within the
    /// provider's deduplication window stores it once, and answers with the first copy's
    /// position (the embedded engine: two minutes per stream, across restarts; see the
    /// README's capability table for the others). A CloudEvent's `source` and `id` serve
    /// the same way.
    pub fn with_id(self, id: impl Into<String>) -> Self {
        self.with_header(ID_HEADER, id)
    }

    /// The event's id, if it has one (see [`Event::with_id`]).
    pub fn id(&self) -> Option<&str> {
        self.headers.get(ID_HEADER).map(String::as_str)
    }

    /// Sets the partition key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the event time.
    pub fn with_time(mut self, time: SystemTime) -> Self {
        self.time = Some(time);
        self
    }

    /// Bytes the event counts for against record size limits: payload, key and headers.
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, String::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// The payload decoded from JSON.
    pub fn json_payload<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::InvalidArgument(format!("payload is not the expected JSON: {e}")))
    }
}

/// Where a record is: its partition and its sequence number within the partition.
///
/// Printed as `PARTITION:SEQUENCE` (e.g. `0:42`) and parsed back, so it can be stored as a
/// checkpoint and handed back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The partition.
    pub partition: u32,
    /// The sequence number, strictly increasing within the partition.
    pub sequence: Sequence,
}

impl Position {
    /// A position.
    pub fn new(partition: u32, sequence: impl Into<Sequence>) -> Self {
        Position {
            partition,
            sequence: sequence.into(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.sequence)
    }
}

impl FromStr for Position {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "{s:?} is not a position (expected PARTITION:SEQUENCE, e.g. 0:42)"
            ))
        };
        let (p, seq) = s.split_once(':').ok_or_else(bad)?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Position {
            partition: p.parse().map_err(|_| bad())?,
            sequence: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a successful write returns: where the event was stored.
pub type Receipt = Position;

/// An event as read back, with where and when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition and sequence.
    pub position: Position,
    /// When the backend appended it.
    pub append_time: SystemTime,
    /// The event as written.
    pub event: Event,
}

impl Record {
    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.event.payload
    }

    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        self.event.json_payload()
    }
}

/// The header holding an event's id (see [`Event::with_id`]).
pub const ID_HEADER: &str = "cloudstream-id";

/// Longest event id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Checks what every provider needs of an event's own fields: an id of 1 to
/// [`MAX_ID_BYTES`] bytes, and an event time from 1970 to the end of 9999 (what RFC 3339
/// prints, so that every reader gets back the time that was sent).
pub(crate) fn check_fields(event: &Event) -> Result<()> {
    if let Some(id) = event.id() {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Error::InvalidArgument(format!(
                "an event id has 1 to {MAX_ID_BYTES} bytes, this one {}",
                id.len()
            )));
        }
    }
    if let Some(t) = event.time {
        let ms = to_millis(t);
        if !(0..=MAX_TIME_MS).contains(&ms) || t < UNIX_EPOCH {
            return Err(Error::InvalidArgument(
                "an event time lies between 1970 and the end of 9999".into(),
            ));
        }
    }
    Ok(())
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    to_millis(SystemTime::now())
}

/// The last millisecond RFC 3339 can print: 9999-12-31T23:59:59.999Z.
pub(crate) const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// The deduplication identity of an event whose headers `headers` reads: its id, or its
/// CloudEvent source and id (the embedded engine and NATS deduplicate by it).
pub(crate) fn identity(headers: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(id) = headers(ID_HEADER) {
        return Some(format!("id:{id}"));
    }
    let source = headers("ce_source")?;
    let id = headers("ce_id")?;
    Some(format!("ce:{}:{source}{id}", source.len()))
}

/// The identity of an event, if it has one.
pub(crate) fn event_identity(event: &Event) -> Option<String> {
    identity(|name| event.headers.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse() {
        let p = Position::new(3, 42);
        assert_eq!(p.to_string(), "3:42");
        assert_eq!("3:42".parse::<Position>().ok(), Some(p));
        for bad in ["", "3", "3:", ":4", "a:1", "1:-2", "1:2:3"] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, -1, 1_700_000_000_000] {
            assert_eq!(to_millis(from_millis(ms)), ms);
        }
    }
}
