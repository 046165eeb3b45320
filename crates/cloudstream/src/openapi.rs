//! OpenAPI schemas of the types the HTTP API carries as text (feature `openapi`): positions,
//! sequences and start points travel as strings (a sequence as a number when it fits), so
//! their schemas say so rather than describe the Rust structs.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
// utoipa derives `PartialSchema` (and composes `Option<T>`, `Vec<T>`, `BTreeMap<K, T>`) from
// this trait, which its derive implements; these types have no generics to compose.
use utoipa::__dev::ComposeSchema;
use utoipa::ToSchema;

use crate::backend::PartitionStart;
use crate::{Position, Sequence, StartAt};

fn text(description: &str, pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

impl ComposeSchema for Position {
    fn compose(_: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        text(
            "Where a record is: PARTITION:SEQUENCE, e.g. 0:42.",
            "^[0-9]+:[0-9]+$",
        )
    }
}

impl ToSchema for Position {}

impl ComposeSchema for Sequence {
    fn compose(_: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .item(text(
                "A sequence too large for a JSON number (Kinesis), in decimal.",
                "^[0-9]+$",
            ))
            .description(Some("A record's sequence number within its partition."))
            .into()
    }
}

impl ToSchema for Sequence {}

impl ComposeSchema for PartitionStart {
    fn compose(_: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        text(
            "Where a partition is read from: earliest, latest, at:SEQ, after:SEQ or time:MS.",
            "^(earliest|latest|at:[0-9]+|after:[0-9]+|time:-?[0-9]+)$",
        )
    }
}

impl ToSchema for PartitionStart {}

impl ComposeSchema for StartAt {
    fn compose(_: Vec<RefOr<Schema>>) -> RefOr<Schema> {
        text(
            "Where a consumer without a checkpoint starts: earliest, latest, or time:RFC3339 (or time:MS).",
            "^(earliest|latest|time:.+)$",
        )
    }
}

impl ToSchema for StartAt {}
