//! How an [`Event`] travels in a Kinesis record, which has only a data blob and a partition
//! key.
//!
//! An event with a key and nothing else is stored as its raw payload, so other Kinesis
//! readers see exactly what was written. An event with headers, an event time or no key is
//! wrapped in an envelope: the 8-byte magic `\0CSEVT1\0`, the length of a JSON header (u32,
//! big-endian), the JSON header (`{"h":{...},"t":MS,"u":true}`: headers, event time, and
//! "unkeyed"), then the payload. A raw payload that happens to begin with the magic is
//! wrapped too, so reading is never ambiguous.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::event::{from_millis, to_millis};
use crate::Event;

const MAGIC: &[u8; 8] = b"\0CSEVT1\0";

/// The partition key of events written without a key. Routing never depends on it: records
/// go to their shard by explicit hash key.
pub(super) const UNKEYED: &str = "-";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Header {
    #[serde(rename = "h", default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    time_ms: Option<i64>,
    #[serde(rename = "u", default, skip_serializing_if = "std::ops::Not::not")]
    unkeyed: bool,
}

/// The data blob and partition key for `event`.
pub(super) fn encode(event: &Event) -> (Bytes, String) {
    let key = event.key.clone().unwrap_or_else(|| UNKEYED.to_owned());
    let wrap = !event.headers.is_empty()
        || event.time.is_some()
        || event.key.is_none()
        || event.payload.starts_with(MAGIC);
    if !wrap {
        return (event.payload.clone(), key);
    }
    let header = Header {
        headers: event.headers.clone(),
        time_ms: event.time.map(to_millis),
        unkeyed: event.key.is_none(),
    };
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = BytesMut::with_capacity(MAGIC.len() + 4 + json.len() + event.payload.len());
    out.put_slice(MAGIC);
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    out.put_slice(&event.payload);
    (out.freeze(), key)
}

/// The event a record holds. Data that is not a well-formed envelope is a raw payload.
pub(super) fn decode(data: Bytes, partition_key: &str) -> Event {
    let raw = |data: Bytes| Event {
        payload: data,
        key: Some(partition_key.to_owned()),
        ..Event::default()
    };
    let Some(rest) = data.strip_prefix(MAGIC.as_slice()) else {
        return raw(data);
    };
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return raw(data);
    };
    let len = u32::from_be_bytes(*len) as usize;
    let Some(header) = rest
        .get(..len)
        .and_then(|json| serde_json::from_slice::<Header>(json).ok())
    else {
        return raw(data);
    };
    let start = MAGIC.len() + 4 + len;
    Event {
        payload: data.slice(start..),
        key: (!header.unkeyed).then(|| partition_key.to_owned()),
        headers: header.headers,
        time: header.time_ms.map(from_millis),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn round_trip(event: &Event) -> Event {
        let (data, key) = encode(event);
        decode(data, &key)
    }

    #[test]
    fn keyed_plain_events_are_stored_raw() {
        let event = Event::new("hello").with_key("device-7");
        let (data, key) = encode(&event);
        assert_eq!(&data[..], b"hello");
        assert_eq!(key, "device-7");
        assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn everything_else_round_trips() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for event in [
            Event::new("x"),
            Event::new("x").with_header("n", "1").with_key("k"),
            Event::new("").with_time(time),
            Event::new([MAGIC.as_slice(), b"tricky"].concat()).with_key("k"),
            Event::new("payload")
                .with_key(UNKEYED)
                .with_header("a", "b")
                .with_time(time),
        ] {
            assert_eq!(round_trip(&event), event);
        }
    }

    #[test]
    fn foreign_data_is_a_raw_payload() {
        for data in [
            &b"\0CSEVT1\0"[..],
            b"\0CSEVT1\0\0\0\0\x09{not json",
            b"plain",
        ] {
            let event = decode(Bytes::copy_from_slice(data), "pk");
            assert_eq!(&event.payload[..], data);
            assert_eq!(event.key.as_deref(), Some("pk"));
        }
    }
}
