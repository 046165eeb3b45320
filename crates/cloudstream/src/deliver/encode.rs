//! The bytes of a delivered file: JSON Lines, one record a line in the REST API's record
//! form ([`crate::wire::RecordJson`]), compressed or not. The same records always make the
//! same bytes (gzip's header carries no time), so a file written again is the same file.

use std::io::Write;

use crate::wire::RecordJson;
use crate::{Error, Record, Result};

/// How delivered files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Not compressed (`.jsonl`).
    #[default]
    None,
    /// gzip (`.jsonl.gz`), as Firehose writes it.
    Gzip,
    /// Zstandard, level 3 (`.jsonl.zst`).
    Zstd,
}

impl Compression {
    /// The file extension of JSON Lines compressed so.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Compression::None => "jsonl",
            Compression::Gzip => "jsonl.gz",
            Compression::Zstd => "jsonl.zst",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            _ => Err(Error::InvalidArgument(format!(
                "a compression is none, gzip or zstd, not {s:?}"
            ))),
        }
    }
}

/// The file holding `records`, one JSON object a line.
pub(crate) fn json_lines(records: &[Record], compression: Compression) -> Result<Vec<u8>> {
    let mut lines = Vec::with_capacity(records.iter().map(|r| r.event.payload.len() + 160).sum());
    for r in records {
        serde_json::to_writer(&mut lines, &RecordJson::from(r))
            .map_err(|e| Error::Backend(Box::new(e)))?;
        lines.push(b'\n');
    }
    let io = |e: std::io::Error| Error::Backend(Box::new(e));
    match compression {
        Compression::None => Ok(lines),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&lines).map_err(io)?;
            gz.finish().map_err(io)
        }
        Compression::Zstd => zstd::encode_all(lines.as_slice(), 3).map_err(io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Position};
    use std::io::Read;

    fn records() -> Vec<Record> {
        (0..3u64)
            .map(|i| Record {
                position: Position::new(0, i),
                append_time: std::time::SystemTime::UNIX_EPOCH,
                event: Event::json(&serde_json::json!({"n": i})).expect("json"),
            })
            .collect()
    }

    #[test]
    fn lines_are_records_and_compression_round_trips_and_repeats() {
        let plain = json_lines(&records(), Compression::None).expect("plain");
        let text = String::from_utf8(plain.clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 3);
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
        assert_eq!(first["payload"]["n"], 0);
        assert_eq!(first["sequence"], 0);
        let gz = json_lines(&records(), Compression::Gzip).expect("gzip");
        assert_eq!(
            gz,
            json_lines(&records(), Compression::Gzip).expect("again")
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
        let zst = json_lines(&records(), Compression::Zstd).expect("zstd");
        assert_eq!(zstd::decode_all(zst.as_slice()).expect("unzstd"), plain);
        assert!("brotli".parse::<Compression>().is_err());
    }
}
