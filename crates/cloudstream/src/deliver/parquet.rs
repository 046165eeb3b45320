//! The bytes of a delivered Parquet file. Its columns are the record's envelope and its
//! payload:
//!
//! | column | Arrow type | holds |
//! |---|---|---|
//! | `partition` | UInt32 | the partition |
//! | `sequence` | Utf8 | the sequence, in decimal (sequences go up to 256 bits) |
//! | `append_time` | Timestamp(µs, UTC) | when the provider stored it |
//! | `event_time` | Timestamp(µs, UTC), nullable | when it happened, as its writer said |
//! | `key` | Utf8, nullable | the partition key |
//! | `headers` | Map(Utf8 → Utf8) | the headers |
//! | `payload` | Struct, nullable | a payload that is a JSON object, as columns |
//! | `payload_text` | Utf8, nullable | a UTF-8 payload that is not a JSON object, or does not fit `payload` |
//! | `payload_bytes` | Binary, nullable | a payload that is not UTF-8 |
//!
//! `payload`'s fields are the given schema, or else inferred from the file's own JSON
//! objects (nested objects are structs, arrays lists, a field seen with two scalar types a
//! string); the column is left out when no field is known. Every record keeps its payload:
//! one that does not decode into `payload` is kept whole in `payload_text`. The same
//! records always make the same bytes, so a file written again is the same file.

use std::sync::Arc;

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow_json::reader::infer_json_schema_from_iterator;
use arrow_json::ReaderBuilder;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::encode::Compression;
use crate::{Error, Record, Result};

/// Where a record's payload goes.
enum Payload<'a> {
    /// A JSON object: a row of `payload`.
    Object(&'a [u8]),
    /// UTF-8 text that is not a JSON object.
    Text(&'a str),
    /// Not UTF-8.
    Bytes(&'a [u8]),
}

fn classify(payload: &[u8]) -> Payload<'_> {
    match std::str::from_utf8(payload) {
        Ok(text) if text.trim_start().starts_with('{') => {
            let valid = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
            if valid {
                Payload::Object(payload)
            } else {
                Payload::Text(text)
            }
        }
        Ok(text) => Payload::Text(text),
        Err(_) => Payload::Bytes(payload),
    }
}

fn arrow_error(e: ArrowError) -> Error {
    Error::Backend(format!("writing Parquet: {e}").into())
}

/// The file holding `records` (at least one), their payloads' columns `schema` where given.
pub(crate) fn parquet(
    records: &[Record],
    schema: Option<&SchemaRef>,
    compression: Compression,
) -> Result<Vec<u8>> {
    let payloads: Vec<Payload<'_>> = records.iter().map(|r| classify(&r.event.payload)).collect();
    let objects: Vec<(usize, &[u8])> = payloads
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Payload::Object(bytes) => Some((i, *bytes)),
            _ => None,
        })
        .collect();
    let schema = match schema {
        Some(given) => Some(given.clone()),
        None => infer(&objects),
    }
    .filter(|s| !s.fields().is_empty());
    // Rows of `payload`, by record; a record whose object did not decode is kept as text.
    let (payload, decoded) = match &schema {
        Some(schema) => {
            let (array, decoded) = decode_objects(schema, records.len(), &objects)?;
            (Some(array), decoded)
        }
        None => (None, vec![false; records.len()]),
    };

    let mut fields = vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("sequence", DataType::Utf8, false),
        Field::new("append_time", timestamp(), false),
        Field::new("event_time", timestamp(), true),
        Field::new("key", DataType::Utf8, true),
    ];
    let headers = headers(records)?;
    fields.push(Field::new("headers", headers.data_type().clone(), false));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.position.partition),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.position.sequence.to_string()),
        )),
        Arc::new(micros(records.iter().map(|r| Some(r.append_time)))),
        Arc::new(micros(records.iter().map(|r| r.event.time))),
        Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.event.key.as_deref()),
        )),
        Arc::new(headers),
    ];
    if let Some(payload) = payload {
        fields.push(Field::new("payload", payload.data_type().clone(), true));
        columns.push(payload);
    }
    let text = payloads.iter().zip(&decoded).map(|(p, decoded)| match p {
        Payload::Object(bytes) if !decoded => std::str::from_utf8(bytes).ok(),
        Payload::Text(text) => Some(*text),
        _ => None,
    });
    fields.push(Field::new("payload_text", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from_iter(text)));
    fields.push(Field::new("payload_bytes", DataType::Binary, true));
    columns.push(Arc::new(BinaryArray::from_iter(payloads.iter().map(
        |p| match p {
            Payload::Bytes(bytes) => Some(*bytes),
            _ => None,
        },
    ))));

    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_error)?;
    let properties = WriterProperties::builder()
        .set_compression(codec(compression))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))
        .map_err(|e| Error::Backend(Box::new(e)))?;
    writer
        .write(&batch)
        .map_err(|e| Error::Backend(Box::new(e)))?;
    writer.into_inner().map_err(|e| Error::Backend(Box::new(e)))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn codec(compression: Compression) -> Codec {
    match compression {
        Compression::None => Codec::UNCOMPRESSED,
        Compression::Snappy => Codec::SNAPPY,
        Compression::Gzip => Codec::GZIP(GzipLevel::default()),
        Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
    }
}

/// Microseconds since 1970 in UTC (saturating far outside it).
fn micros(times: impl Iterator<Item = Option<std::time::SystemTime>>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from_iter(times.map(|t| {
        t.map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros())
                .map(|m| -m)
                .unwrap_or(i64::MIN),
        })
    }))
    .with_timezone("UTC")
}

fn headers(records: &[Record]) -> Result<arrow_array::MapArray> {
    let mut builder = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for r in records {
        for (name, value) in &r.event.headers {
            builder.keys().append_value(name);
            builder.values().append_value(value);
        }
        builder.append(true).map_err(arrow_error)?;
    }
    Ok(builder.finish())
}

/// The schema of the objects' fields, in the order they are first seen; `None` when they
/// have no common schema (a field an object in one and a number in another).
fn infer(objects: &[(usize, &[u8])]) -> Option<SchemaRef> {
    let values = objects.iter().map(|(_, bytes)| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|e| ArrowError::JsonError(e.to_string()))
    });
    infer_json_schema_from_iterator(values).ok().map(Arc::new)
}

/// The `payload` column (one row a record, null where the record's payload is not an
/// object that decoded) and which records decoded. All objects are decoded at once; when
/// that fails, one by one, so that only the objects that do not fit are left out.
fn decode_objects(
    schema: &SchemaRef,
    rows: usize,
    objects: &[(usize, &[u8])],
) -> Result<(ArrayRef, Vec<bool>)> {
    let mut decoded = vec![false; rows];
    let mut parts: Vec<RecordBatch> = Vec::new();
    let mut indices: Vec<Option<u32>> = vec![None; rows];
    let all: Vec<&[u8]> = objects.iter().map(|(_, b)| *b).collect();
    if let Some(batch) = decode(schema, &all) {
        for (n, (row, _)) in objects.iter().enumerate() {
            decoded[*row] = true;
            indices[*row] = u32::try_from(n).ok();
        }
        parts.push(batch);
    } else {
        let mut n = 0u32;
        for (row, bytes) in objects {
            if let Some(batch) = decode(schema, &[*bytes]) {
                decoded[*row] = true;
                indices[*row] = Some(n);
                n += 1;
                parts.push(batch);
            }
        }
    }
    let batch = arrow_select::concat::concat_batches(schema, &parts).map_err(arrow_error)?;
    let objects: ArrayRef = Arc::new(StructArray::from(batch));
    let take = UInt32Array::from(indices);
    let column = arrow_select::take::take(&objects, &take, None).map_err(arrow_error)?;
    Ok((column, decoded))
}

/// `objects` decoded into `schema`'s columns, or `None` when one does not fit.
fn decode(schema: &SchemaRef, objects: &[&[u8]]) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(objects.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .ok()?;
    // Objects are whole JSON texts: one a line, each its own row.
    let mut text = Vec::with_capacity(objects.iter().map(|o| o.len() + 1).sum());
    for object in objects {
        text.extend_from_slice(object);
        text.push(b'\n');
    }
    let mut batches = Vec::new();
    let mut rest = text.as_slice();
    while !rest.is_empty() {
        let read = decoder.decode(rest).ok()?;
        if read == 0 {
            // A full batch waits to be taken; nothing taken means nothing can progress.
            batches.push(decoder.flush().ok()??);
        }
        rest = &rest[read..];
    }
    batches.extend(decoder.flush().ok()?);
    arrow_select::concat::concat_batches(schema, &batches).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Position};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn record(i: u64, payload: &[u8]) -> Record {
        let mut event = Event::new(Bytes::copy_from_slice(payload));
        event.key = i.is_multiple_of(2).then(|| format!("k{i}"));
        event.headers.insert("h".into(), format!("v{i}"));
        Record {
            position: Position::new(3, i),
            append_time: std::time::UNIX_EPOCH + std::time::Duration::from_secs(i),
            event,
        }
    }

    fn read(bytes: Vec<u8>) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .expect("a Parquet file")
            .build()
            .expect("a reader");
        let batches: Vec<RecordBatch> = reader.map(|b| b.expect("a batch")).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
    }

    #[test]
    fn every_payload_is_kept_and_objects_become_columns() {
        let records = vec![
            record(
                0,
                br#"{"device":"d1","temp":20.5,"tags":["a"],"at":{"x":1}}"#,
            ),
            record(1, br#"{"device":"d2","temp":21,"extra":null}"#),
            record(2, b"plain text"),
            record(3, &[0xff, 0x00, 0xfe]),
            record(4, br#"{"broken": "#),
            record(5, br#"[1, 2]"#),
        ];
        let bytes = parquet(&records, None, Compression::Snappy).expect("encoded");
        assert_eq!(
            bytes,
            parquet(&records, None, Compression::Snappy).expect("again"),
            "the same records make the same bytes"
        );
        let batch = read(bytes);
        assert_eq!(batch.num_rows(), 6);
        let payload = batch
            .column_by_name("payload")
            .expect("payload")
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("a struct");
        assert_eq!(payload.null_count(), 4);
        let device = payload
            .column_by_name("device")
            .expect("device")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(device.value(1), "d2");
        let text = batch
            .column_by_name("payload_text")
            .expect("text")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(text.value(2), "plain text");
        assert_eq!(text.value(4), r#"{"broken": "#);
        assert_eq!(text.value(5), "[1, 2]");
        assert!(text.is_null(0));
        let raw = batch
            .column_by_name("payload_bytes")
            .expect("bytes")
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("binary");
        assert_eq!(raw.value(3), &[0xff, 0x00, 0xfe]);
        let sequence = batch
            .column_by_name("sequence")
            .expect("sequence")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(sequence.value(5), "5");
    }

    #[test]
    fn objects_that_do_not_fit_a_given_schema_are_kept_as_text() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "temp",
            DataType::Float64,
            true,
        )]));
        let records = vec![
            record(0, br#"{"temp":20.5}"#),
            record(1, br#"{"temp":{"nested":true}}"#),
            record(2, br#"{"temp":22}"#),
        ];
        let batch = read(parquet(&records, Some(&schema), Compression::Zstd).expect("encoded"));
        let payload = batch
            .column_by_name("payload")
            .expect("payload")
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("a struct");
        assert!(payload.is_valid(0) && payload.is_null(1) && payload.is_valid(2));
        let text = batch
            .column_by_name("payload_text")
            .expect("text")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(text.value(1), r#"{"temp":{"nested":true}}"#);
    }

    #[test]
    fn conflicting_objects_are_kept_as_text() {
        let records = vec![record(0, br#"{"a":{"b":1}}"#), record(1, br#"{"a":2}"#)];
        let batch = read(parquet(&records, None, Compression::None).expect("encoded"));
        let text = batch
            .column_by_name("payload_text")
            .expect("text")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(text.null_count(), 0, "every payload is kept");
    }
}
