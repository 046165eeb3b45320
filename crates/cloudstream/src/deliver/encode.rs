//! The bytes of a delivered file, in its format: JSON Lines, one record a line in the REST
//! API's record form ([`crate::wire::RecordJson`]), compressed whole or not; or Parquet
//! (`parquet.rs`), compressed by page. The same records always make the same bytes (gzip's
//! header carries no time), so a file written again is the same file.

use std::io::Write;

use arrow_schema::SchemaRef;

use crate::wire::RecordJson;
use crate::{Error, Record, Result};

/// The format of delivered files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON Lines: one record a line, as the REST API writes it (`.jsonl`, `.jsonl.gz`,
    /// `.jsonl.zst`).
    #[default]
    JsonLines,
    /// Apache Parquet (`.parquet`), compressed by page; the payload's JSON fields are
    /// columns (see [`crate::deliver::Delivery::schema`]).
    Parquet,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "jsonl" | "json" | "ndjson" => Ok(Format::JsonLines),
            "parquet" => Ok(Format::Parquet),
            _ => Err(Error::InvalidArgument(format!(
                "a format is jsonl or parquet, not {s:?}"
            ))),
        }
    }
}

/// How delivered files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip (`.jsonl.gz`), as Firehose writes JSON.
    Gzip,
    /// Zstandard, level 3 (`.jsonl.zst`).
    Zstd,
    /// Snappy, as Firehose writes Parquet (Parquet only).
    Snappy,
}

/// How a delivery's files are encoded: format, compression and, for Parquet, the payload's
/// columns where given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Encoding {
    pub format: Format,
    pub compression: Compression,
    pub schema: Option<SchemaRef>,
}

/// Refuses a compression the format does not take (snappy for JSON Lines).
pub fn check_encoding(format: Format, compression: Compression) -> Result<()> {
    if format == Format::JsonLines && compression == Compression::Snappy {
        return Err(Error::InvalidArgument(
            "snappy compresses Parquet files; JSON Lines are none, gzip or zstd".into(),
        ));
    }
    Ok(())
}

impl Format {
    /// Its name, as it is parsed: `jsonl` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

impl Compression {
    /// Its name, as it is parsed: `none`, `gzip`, `zstd` or `snappy`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
        }
    }
}

impl Encoding {
    /// Refuses what cannot be written.
    pub(crate) fn check(&self) -> Result<()> {
        check_encoding(self.format, self.compression)?;
        if self.format == Format::JsonLines && self.schema.is_some() {
            return Err(Error::InvalidArgument(
                "a schema is for Parquet files; JSON Lines keep the payload as it is".into(),
            ));
        }
        Ok(())
    }

    /// The extension of the files.
    pub(crate) fn extension(&self) -> &'static str {
        match (self.format, self.compression) {
            (Format::Parquet, _) => "parquet",
            (Format::JsonLines, Compression::Gzip) => "jsonl.gz",
            (Format::JsonLines, Compression::Zstd) => "jsonl.zst",
            (Format::JsonLines, _) => "jsonl",
        }
    }

    /// The file holding `records` (one partition's, in order).
    pub(crate) fn encode(&self, records: &[Record]) -> Result<Vec<u8>> {
        match self.format {
            Format::JsonLines => json_lines(records, self.compression),
            Format::Parquet => {
                super::parquet::parquet(records, self.schema.as_ref(), self.compression)
            }
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
            "snappy" => Ok(Compression::Snappy),
            _ => Err(Error::InvalidArgument(format!(
                "a compression is none, gzip, zstd or snappy, not {s:?}"
            ))),
        }
    }
}

/// The file holding `records`, one JSON object a line.
fn json_lines(records: &[Record], compression: Compression) -> Result<Vec<u8>> {
    let mut lines = Vec::with_capacity(records.iter().map(|r| r.event.payload.len() + 160).sum());
    for r in records {
        serde_json::to_writer(&mut lines, &RecordJson::from(r))
            .map_err(|e| Error::Backend(Box::new(e)))?;
        lines.push(b'\n');
    }
    let io = |e: std::io::Error| Error::Backend(Box::new(e));
    match compression {
        Compression::None | Compression::Snappy => Ok(lines),
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
