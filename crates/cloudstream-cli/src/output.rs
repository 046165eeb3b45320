//! How records and descriptions are printed: a readable line, or JSON.

use std::time::SystemTime;

use cloudstream::{Position, ReadFrom, Record};
use serde_json::{json, Value};

/// A record as JSON: the payload as text when it is UTF-8, else base64 in `payload_base64`.
pub(crate) fn record_json(r: &Record) -> Value {
    let mut v = json!({
        "position": r.position,
        "partition": r.position.partition,
        "sequence": r.position.sequence,
        "append_time": humantime::format_rfc3339_millis(r.append_time).to_string(),
        "key": r.event.key,
        "headers": r.event.headers,
    });
    if let Some(t) = r.event.time {
        v["event_time"] = json!(humantime::format_rfc3339_millis(t).to_string());
    }
    match std::str::from_utf8(&r.event.payload) {
        Ok(text) => v["payload"] = json!(text),
        Err(_) => v["payload_base64"] = json!(base64(&r.event.payload)),
    }
    v
}

/// Writes one line to stdout. A closed pipe (`cloudstream read s | head`) is an error the
/// caller ends quietly on, never a panic.
pub(crate) fn emit(line: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")
}

/// One line per record.
pub(crate) fn print_record(r: &Record, as_json: bool) -> std::io::Result<()> {
    if as_json {
        return emit(record_json(r));
    }
    let payload = match std::str::from_utf8(&r.event.payload) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", base64(&r.event.payload)),
    };
    let key = r
        .event
        .key
        .as_deref()
        .map(|k| format!(" key={k}"))
        .unwrap_or_default();
    emit(format_args!(
        "{}\t{}{}\t{}",
        r.position,
        humantime::format_rfc3339_millis(r.append_time),
        key,
        payload
    ))
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Parses a start point: `earliest`, `latest`, `P:S`, `after:P:S`, `time:RFC3339`.
pub(crate) fn parse_from(s: &str) -> anyhow::Result<ReadFrom> {
    Ok(match s {
        "earliest" => ReadFrom::Earliest,
        "latest" => ReadFrom::Latest,
        _ => {
            if let Some(p) = s.strip_prefix("after:") {
                ReadFrom::After(p.parse::<Position>()?)
            } else if let Some(t) = s.strip_prefix("time:") {
                let t: SystemTime = humantime::parse_rfc3339_weak(t)
                    .map_err(|e| anyhow::anyhow!("{t:?} is not an RFC 3339 time: {e}"))?;
                ReadFrom::AtTime(t)
            } else {
                ReadFrom::At(s.parse::<Position>().map_err(|_| {
                    anyhow::anyhow!("{s:?} is not a start point: use earliest, latest, P:S, after:P:S or time:RFC3339")
                })?)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn start_points_parse() -> anyhow::Result<()> {
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
