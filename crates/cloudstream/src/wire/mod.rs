//! The JSON forms of records and start points, shared by the command line and the HTTP
//! server so that both speak the same shapes.
//!
//! A record is `{"position": "0:42", "partition": 0, "sequence": 42, "append_time":
//! RFC3339, "key": ..., "headers": {...}, "event_time": RFC3339?, "payload": TEXT}`, with
//! `payload_base64` instead of `payload` when the payload is not UTF-8. Start points follow
//! the one grammar of [`crate::start`]. Errors travel as
//! `{"error": {"code", "message", "details"}}` ([`error_status`], [`error_from_body`]).

use std::time::SystemTime;

mod bodies;
mod errors;
mod event;

use base64::Engine as _;

pub use bodies::{
    Appended, CapabilitiesBody, CheckpointBody, ConsumerList, Existed, Fetched, GapJson, Held,
    LeaseList, Records, Sent, StreamCreated, StreamDescription, StreamList,
};
pub use errors::{error_details, error_from_body, error_status};
pub use event::{parse_time, record_from_json, record_json, EventJson, PayloadForm, RecordJson};

use crate::{Error, ReadFrom, Result};

/// A time as RFC 3339 with milliseconds, UTC.
///
/// Times before 1970 print as 1970-01-01T00:00:00.000Z and times after 9999 as the end of
/// 9999, the range RFC 3339 prints (a stored event time may lie outside it).
pub fn rfc3339(t: SystemTime) -> String {
    let last = crate::event::from_millis(crate::event::MAX_TIME_MS);
    humantime::format_rfc3339_millis(t.clamp(std::time::UNIX_EPOCH, last)).to_string()
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes from standard base64; a clear `InvalidArgument` otherwise.
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::InvalidArgument(format!("not base64: {e}")))
}

/// Parses a start point of a stream (the grammar of [`crate::start`]): `earliest`,
/// `latest`, `P:S`, `after:P:S`, `time:RFC3339` or `time:MS`.
pub fn parse_from(s: &str) -> Result<ReadFrom> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    #[test]
    fn base64_matches_the_standard() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).expect("valid"), raw.as_bytes());
        }
        assert!(base64_decode("not base64!").is_err());
    }

    #[test]
    fn start_points_parse() -> Result<()> {
        assert_eq!(parse_from("earliest")?, ReadFrom::Earliest);
        assert_eq!(parse_from("2:7")?, ReadFrom::At(Position::new(2, 7)));
        assert_eq!(
            parse_from("after:0:1")?,
            ReadFrom::After(Position::new(0, 1))
        );
        assert!(matches!(
            parse_from("time:2026-11-24T10:00:00Z")?,
            ReadFrom::AtTime(_)
        ));
        assert!(parse_from("yesterday").is_err());
        Ok(())
    }
}
