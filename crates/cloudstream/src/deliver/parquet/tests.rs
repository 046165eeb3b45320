//! The Parquet encoder's tests: every payload kept, columns inferred and fallen back from.

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

/// Column `name` of `batch`, as an array of type `T`.
fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} of another type"))
}

/// Field `name` of the struct column `parent`, as an array of type `T`.
fn field<'a, T: 'static>(parent: &'a StructArray, name: &str) -> &'a T {
    parent
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("field {name} of another type"))
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
    let payload = column::<StructArray>(&batch, "payload");
    assert_eq!(payload.null_count(), 4);
    let device = field::<StringArray>(payload, "device");
    assert_eq!(device.value(1), "d2");
    let text = column::<StringArray>(&batch, "payload_text");
    assert_eq!(text.value(2), "plain text");
    assert_eq!(text.value(4), r#"{"broken": "#);
    assert_eq!(text.value(5), "[1, 2]");
    assert!(text.is_null(0));
    let raw = column::<BinaryArray>(&batch, "payload_bytes");
    assert_eq!(raw.value(3), &[0xff, 0x00, 0xfe]);
    let sequence = column::<StringArray>(&batch, "sequence");
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
    let payload = column::<StructArray>(&batch, "payload");
    assert!(payload.is_valid(0) && payload.is_null(1) && payload.is_valid(2));
    let text = column::<StringArray>(&batch, "payload_text");
    assert_eq!(text.value(1), r#"{"temp":{"nested":true}}"#);
}

#[test]
fn a_field_first_seen_after_the_sample_is_a_column_too() {
    let records: Vec<Record> = (0..SAMPLE as u64 + 500)
        .map(|i| {
            let payload = if i == SAMPLE as u64 + 200 {
                format!(r#"{{"n":{i},"late":"here"}}"#)
            } else if i == SAMPLE as u64 + 300 {
                format!(r#"{{"n":{i}.5}}"#)
            } else {
                format!(r#"{{"n":{i}}}"#)
            };
            record(i, payload.as_bytes())
        })
        .collect();
    let batch = read(parquet(&records, None, Compression::Snappy).expect("encoded"));
    let payload = column::<StructArray>(&batch, "payload");
    assert_eq!(payload.null_count(), 0, "every object decoded");
    let late = payload.column_by_name("late").expect("the late field");
    assert_eq!(late.null_count(), records.len() - 1);
    assert_eq!(
        payload.column_by_name("n").expect("n").data_type(),
        &DataType::Float64,
        "widened by the value after the sample"
    );
}

fn text_column(batch: &RecordBatch) -> &StringArray {
    column::<StringArray>(batch, "payload_text")
}

#[test]
fn objects_parquet_cannot_hold_or_too_many_fields_are_kept_as_text() {
    // A struct without fields cannot be written: the file is still written.
    let empty = vec![record(0, br#"{"a":{}}"#), record(1, br#"{"a":{}}"#)];
    let batch = read(parquet(&empty, None, Compression::None).expect("encoded"));
    assert_eq!(text_column(&batch).value(0), r#"{"a":{}}"#);
    // An object per id: more distinct fields than columns.
    let wide: Vec<Record> = (0..MAX_COLUMNS as u64 + 1)
        .map(|i| record(i, format!(r#"{{"k{i}":0}}"#).as_bytes()))
        .collect();
    let batch = read(parquet(&wide, None, Compression::None).expect("encoded"));
    assert!(batch.column_by_name("payload").is_none());
    assert_eq!(text_column(&batch).null_count(), 0);
}

#[test]
fn a_few_objects_that_do_not_fit_leave_the_others_as_columns() {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
    let records: Vec<Record> = (0..4096u64)
        .map(|i| match i {
            7 | 2000 | 4095 => record(i, br#"{"n":"not a number"}"#),
            _ => record(i, format!(r#"{{"n":{i}}}"#).as_bytes()),
        })
        .collect();
    let batch = read(parquet(&records, Some(&schema), Compression::None).expect("encoded"));
    let payload = column::<StructArray>(&batch, "payload");
    assert_eq!(payload.null_count(), 3);
    let text = text_column(&batch);
    assert_eq!(text.null_count(), 4096 - 3);
    assert!(payload.is_null(2000) && text.value(2000).contains("not a number"));
    let n = field::<arrow_array::Int64Array>(payload, "n");
    assert_eq!(
        n.value(2001),
        2001,
        "rows stay in order around the bad ones"
    );
}

#[test]
fn conflicting_objects_are_kept_as_text() {
    let records = vec![record(0, br#"{"a":{"b":1}}"#), record(1, br#"{"a":2}"#)];
    let batch = read(parquet(&records, None, Compression::None).expect("encoded"));
    let text = column::<StringArray>(&batch, "payload_text");
    assert_eq!(text.null_count(), 0, "every payload is kept");
}
