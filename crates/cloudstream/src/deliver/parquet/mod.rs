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

/// Where a payload goes, by its first bytes: whether an object is valid JSON is found when
/// it is read (`infer`, or the decoder), and one that is not is kept as text.
fn classify(payload: &[u8]) -> Payload<'_> {
    match std::str::from_utf8(payload) {
        Ok(text) if text.trim_start().starts_with('{') => Payload::Object(payload),
        Ok(text) => Payload::Text(text),
        Err(_) => Payload::Bytes(payload),
    }
}

/// The objects among `payloads`, with their rows.
fn objects<'a>(payloads: &[Payload<'a>]) -> Vec<(usize, &'a [u8])> {
    payloads
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Payload::Object(bytes) => Some((i, *bytes)),
            _ => None,
        })
        .collect()
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
    let mut payloads: Vec<Payload<'_>> =
        records.iter().map(|r| classify(&r.event.payload)).collect();
    let (payload, decoded) = match schema {
        Some(given) => payload_column(given, &payloads)?,
        None => match inferred_fast(&payloads)? {
            Some(column) => column,
            None => {
                let (schema, not_json) = infer(&objects(&payloads));
                for row in not_json {
                    if let Payload::Object(bytes) = payloads[row] {
                        // Known UTF-8: classify checked it.
                        payloads[row] =
                            Payload::Text(std::str::from_utf8(bytes).unwrap_or_default());
                    }
                }
                match schema {
                    Some(schema) => payload_column(&schema, &payloads)?,
                    None => (None, vec![false; records.len()]),
                }
            }
        },
    };

    let structured = write(records, &payloads, payload.clone(), &decoded, compression);
    match structured {
        // The payload's columns cannot be written (a struct without fields, say): every
        // object is kept as text instead.
        Err(_) if payload.is_some() => write(
            records,
            &payloads,
            None,
            &vec![false; records.len()],
            compression,
        ),
        written => written,
    }
}

/// The file of `records`, with `payload` as the payload's columns (`decoded` says which
/// records it holds; the others' payloads go to `payload_text` or `payload_bytes`).
fn write(
    records: &[Record],
    payloads: &[Payload<'_>],
    payload: Option<ArrayRef>,
    decoded: &[bool],
    compression: Compression,
) -> Result<Vec<u8>> {
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
    let text = payloads.iter().zip(decoded).map(|(p, decoded)| match p {
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

/// How many objects the fast path infers the schema from.
const SAMPLE: usize = 1000;

/// The `payload` column and which records it holds, or `None` when there is no field.
type PayloadColumn = (Option<ArrayRef>, Vec<bool>);

/// The payload column in `schema` (none when it has no field), objects that do not fit it
/// left out.
fn payload_column(schema: &SchemaRef, payloads: &[Payload<'_>]) -> Result<PayloadColumn> {
    if schema.fields().is_empty() {
        return Ok((None, vec![false; payloads.len()]));
    }
    let (column, decoded) = decode_objects(schema, payloads.len(), &objects(payloads), false)?
        .ok_or_else(|| Error::Backend("a lenient decode gave no column".into()))?;
    Ok((Some(column), decoded))
}

/// The fast path of inference: the schema of the first [`SAMPLE`] objects, when every
/// object decodes into it with nothing left over (no field outside it, no value of another
/// type, all valid JSON); `None` sends the file down the full path.
fn inferred_fast(payloads: &[Payload<'_>]) -> Result<Option<PayloadColumn>> {
    let objects = objects(payloads);
    let (Some(schema), not_json) = infer(&objects[..objects.len().min(SAMPLE)]) else {
        return Ok(None);
    };
    if !not_json.is_empty() || schema.fields().is_empty() {
        return Ok(None);
    }
    Ok(decode_objects(&schema, payloads.len(), &objects, true)?
        .map(|(column, decoded)| (Some(column), decoded)))
}

/// Most leaf columns an inferred payload schema may have; objects with more distinct
/// fields (a map written as an object, keyed by ids) are kept as text.
const MAX_COLUMNS: usize = 1000;

/// The schema of the objects' fields, in the order they are first seen (`None` when they
/// have no common schema, a field an object in one and a number in another, or more than
/// [`MAX_COLUMNS`] columns), and the rows of those that are not JSON at all. Objects are
/// parsed one at a time, not all held at once.
fn infer(objects: &[(usize, &[u8])]) -> (Option<SchemaRef>, Vec<usize>) {
    let mut not_json = Vec::new();
    let values = objects.iter().filter_map(|(row, bytes)| {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => Some(Ok::<_, ArrowError>(value)),
            Err(_) => {
                not_json.push(*row);
                None
            }
        }
    });
    let schema = infer_json_schema_from_iterator(values)
        .ok()
        .filter(|schema| leaves(schema.fields()) <= MAX_COLUMNS)
        .map(Arc::new);
    (schema, not_json)
}

/// How many leaf columns `fields` make.
fn leaves(fields: &arrow_schema::Fields) -> usize {
    fields.iter().map(|f| leaf_count(f.data_type())).sum()
}

fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => leaves(fields),
        DataType::List(item) | DataType::LargeList(item) => leaf_count(item.data_type()),
        _ => 1,
    }
}

/// The `payload` column (one row a record, null where the record's payload is not an
/// object that decoded) and which records decoded. All objects are decoded at once; when
/// that fails, `None` if `strict` (which also refuses fields outside the schema), else one
/// by one, so that only the objects that do not fit are left out.
fn decode_objects(
    schema: &SchemaRef,
    rows: usize,
    objects: &[(usize, &[u8])],
    strict: bool,
) -> Result<Option<(ArrayRef, Vec<bool>)>> {
    let mut decoded = vec![false; rows];
    let mut parts: Vec<RecordBatch> = Vec::new();
    let mut indices: Vec<Option<u32>> = vec![None; rows];
    let all: Vec<&[u8]> = objects.iter().map(|(_, b)| *b).collect();
    if let Some(batch) = decode(schema, &all, strict) {
        for (n, (row, _)) in objects.iter().enumerate() {
            decoded[*row] = true;
            indices[*row] = u32::try_from(n).ok();
        }
        parts.push(batch);
    } else if strict {
        return Ok(None);
    } else {
        let mut n = 0u32;
        for (range, batch) in decode_halves(schema, &all, 0..all.len()) {
            for (row, _) in &objects[range] {
                decoded[*row] = true;
                indices[*row] = Some(n);
                n += 1;
            }
            parts.push(batch);
        }
    }
    let batch = arrow_select::concat::concat_batches(schema, &parts).map_err(arrow_error)?;
    let objects: ArrayRef = Arc::new(StructArray::from(batch));
    let take = UInt32Array::from(indices);
    let column = arrow_select::take::take(&objects, &take, None).map_err(arrow_error)?;
    Ok(Some((column, decoded)))
}

/// The objects of `range` that decode into `schema`, as runs of consecutive objects and
/// their batches: a range that fails is halved until the objects that do not fit stand
/// alone, so a few bad objects cost a few decodes each, not one decode per object.
fn decode_halves(
    schema: &SchemaRef,
    objects: &[&[u8]],
    range: std::ops::Range<usize>,
) -> Vec<(std::ops::Range<usize>, RecordBatch)> {
    if range.is_empty() {
        return Vec::new();
    }
    if let Some(batch) = decode(schema, &objects[range.clone()], false) {
        return vec![(range, batch)];
    }
    if range.len() == 1 {
        return Vec::new();
    }
    let middle = range.start + range.len() / 2;
    let mut out = decode_halves(schema, objects, range.start..middle);
    out.extend(decode_halves(schema, objects, middle..range.end));
    out
}

/// `objects` decoded into `schema`'s columns, or `None` when one does not fit (or, if
/// `strict`, has a field outside it).
fn decode(schema: &SchemaRef, objects: &[&[u8]], strict: bool) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(objects.len().max(1))
        .with_coerce_primitive(true)
        .with_strict_mode(strict)
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
mod tests;
