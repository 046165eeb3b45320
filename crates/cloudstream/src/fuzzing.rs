//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), built only with the
//! `fuzzing` feature and not part of the API.
//!
//! Each function takes arbitrary bytes and runs the library's parsers over them. Whether a
//! parser accepts them does not matter; a panic, a hang or a huge allocation is the
//! finding, and so is a value that parses but whose printed form does not parse again.

use std::fmt::Display;
use std::str::FromStr;

use serde_json::Value;

use crate::backend::PartitionStart;
use crate::checkpoint::{parse_resume, CheckpointLocation};
use crate::wire::{
    self, Appended, CapabilitiesBody, CheckpointBody, ConsumerList, Existed, Fetched, Held,
    LeaseList, Records, Sent, StreamCreated, StreamDescription, StreamList,
};
use crate::{Position, ReadFrom, Sequence, StartAt};

/// Every text grammar, on the input as text (invalid UTF-8 replaced): the start points of a
/// stream, a partition and a new consumer, positions and sequences (each printed back and
/// parsed again), the REST API's `from=` and RFC 3339 times, a stored checkpoint entry
/// (`PARTITION=START`, as `0=after:41`), the `checkpoints=` option and provider URLs.
pub fn start_points(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    reparses::<ReadFrom>(text);
    reparses::<PartitionStart>(text);
    reparses::<StartAt>(text);
    reparses::<Position>(text);
    reparses::<Sequence>(text);
    let _ = wire::parse_from(text);
    let _ = wire::parse_time("time", text);
    if let Some((partition, start)) = text.split_once('=') {
        let _ = parse_resume(partition, start);
    }
    let _ = CheckpointLocation::parse(text, None);
    if let Ok(url) = crate::url::parse_url(text) {
        let _ = (url.scheme(), url.location(), url.options(), url.redacted());
    }
    let _ = crate::url::check_url(text);
}

/// The bodies the `http://` client reads from a server: an error body (`{"error": {"code",
/// "message", "details"}}`) under several statuses, a record, and every typed answer.
pub fn wire_bodies(data: &[u8]) {
    let value: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
    for status in [400, 401, 404, 409, 413, 429, 500, 503] {
        let _ = wire::error_from_body(status, &value);
    }
    let _ = wire::record_from_json(value);
    if let Ok(body) = serde_json::from_slice::<Records>(data) {
        for record in body.records {
            let _ = record.into_record();
        }
    }
    if let Ok(body) = serde_json::from_slice::<Fetched>(data) {
        for record in body.records {
            let _ = record.into_record();
        }
    }
    let _ = serde_json::from_slice::<Appended>(data);
    let _ = serde_json::from_slice::<CapabilitiesBody>(data);
    let _ = serde_json::from_slice::<CheckpointBody>(data);
    let _ = serde_json::from_slice::<ConsumerList>(data);
    let _ = serde_json::from_slice::<Existed>(data);
    let _ = serde_json::from_slice::<Held>(data);
    let _ = serde_json::from_slice::<LeaseList>(data);
    let _ = serde_json::from_slice::<Sent>(data);
    let _ = serde_json::from_slice::<StreamCreated>(data);
    let _ = serde_json::from_slice::<StreamDescription>(data);
    let _ = serde_json::from_slice::<StreamList>(data);
}

/// Parses `text` as a `T`; one that parses must print a form that parses again (the form
/// checkpoints, webhook specs and the `http://` client's queries carry).
fn reparses<T: FromStr + Display>(text: &str) {
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        assert!(
            printed.parse::<T>().is_ok(),
            "{text:?} parses, but its printed form {printed:?} does not"
        );
    }
}
