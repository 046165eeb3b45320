//! The served document made exactly as strict as the server: what the handlers' annotations
//! cannot say (the grammars of names and start points, the ranges of numbers, one payload
//! field of two, the required CloudEvent attributes), and what depends on how this server
//! runs (bearer tokens only when it requires them, the provider's partition limit). Each
//! pattern comes from [`cloudstream::grammar`], whose tests hold it to its parser;
//! schemathesis, run against a live server in CI, holds the whole document to the server.

use serde_json::{json, Map, Value};

use cloudstream::grammar;

/// What the document depends on besides the code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Served {
    /// Whether requests need a bearer token.
    pub(crate) tokens: bool,
    /// The provider's most partitions per stream.
    pub(crate) max_partitions: u32,
}

/// Largest value of a query parameter read as an unsigned 64-bit number.
const U64_MAX: u64 = u64::MAX;

/// Tightens `doc` (the document as JSON) to what this server accepts.
pub(crate) fn tighten(doc: &mut Value, served: Served) {
    security(doc, served.tokens);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                parameters(path, method, op);
                bodies(path, op);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        components(schemas, served);
    }
}

/// Bearer tokens are declared only when the server requires them; `/metrics` then needs
/// one too (admin), while `/healthz` and the document never do.
fn security(doc: &mut Value, tokens: bool) {
    if tokens {
        if let Some(op) = doc.pointer_mut("/paths/~1metrics/get") {
            if let Some(op) = op.as_object_mut() {
                op.remove("security");
            }
        }
        return;
    }
    if let Some(doc) = doc.as_object_mut() {
        doc.remove("security");
    }
    if let Some(components) = doc
        .pointer_mut("/components")
        .and_then(Value::as_object_mut)
    {
        components.remove("securitySchemes");
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                op.remove("security");
            }
        }
    }
}

/// A name of at most `max` characters.
fn name(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": grammar::name(max)})
}

/// `schema`, or `null` (an optional field of a body).
fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// An unsigned integer up to `max`.
fn unsigned(max: u64) -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": max})
}

/// The prefix of the consumers of the jobs whose routes `path` is under (`webhook-`).
fn job_consumer_prefix(path: &str) -> &'static str {
    let kinds = crate::jobs::kinds::ROUTES.iter();
    kinds
        .zip(crate::jobs::kinds::CONSUMERS)
        .find(|(route, _)| path.contains(&format!("/{route}/")))
        .map_or("", |(_, prefix)| prefix)
}

/// The parameters' schemas, by parameter name.
fn parameters(path: &str, method: &str, op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    let webhook_put = method == "put" && path.contains("/webhooks/");
    for param in params.iter_mut() {
        let Some(param) = param.as_object_mut() else {
            continue;
        };
        let schema = match param.get("name").and_then(Value::as_str) {
            Some("name") if webhook_put => name(crate::webhooks::routes::MAX_STREAM_NAME),
            Some("name" | "consumer" | "member") => name(cloudstream::MAX_NAME_LEN),
            // A job's consumer (`webhook-ID`, `aggregate-ID`, ...) is a name too.
            Some("id") => name(cloudstream::MAX_NAME_LEN - job_consumer_prefix(path).len()),
            Some("from") => json!({"type": "string", "pattern": grammar::read_from()}),
            Some("partition") => unsigned(u64::from(u32::MAX)),
            Some("max" | "max_bytes" | "wait_ms" | "ttl_ms") => unsigned(U64_MAX),
            Some("lease_ms") => unsigned(3_600_000),
            Some("Last-Event-ID") => {
                let item = format!(
                    "(?:{}|{}@{})",
                    grammar::position(),
                    grammar::partition(),
                    grammar::partition_start_unanchored()
                );
                json!({"type": "string", "pattern": format!("^(?:{item}(?:,{item})*)?$")})
            }
            _ => continue,
        };
        param.insert("schema".to_owned(), schema);
    }
}

/// Request bodies that are not one of the component schemas.
fn bodies(path: &str, op: &mut Value) {
    let Some(content) = op
        .pointer_mut("/requestBody/content")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if path.ends_with("/partitions/{partition}/events") {
        if let Some(schema) = content
            .get_mut("application/json")
            .and_then(|c| c.get_mut("schema"))
        {
            schema["minItems"] = json!(1);
        }
    }
    if let Some(c) = content.get_mut("application/octet-stream") {
        c["schema"] = json!({"type": "string", "format": "binary"});
    }
    if let Some(c) = content.get_mut("application/cloudevents+json") {
        c["schema"] = cloud_event();
    }
    if let Some(c) = content.get_mut("application/cloudevents-batch+json") {
        c["schema"] = json!({"type": "array", "items": cloud_event()});
    }
    if let Some(c) = content.get_mut("application/x-ndjson") {
        // One event's JSON per line; the pattern gives the simplest form of one.
        c["schema"] = json!({
            "type": "string",
            "description": "One event per line, each in the form of application/json.",
            "pattern": "^(?:\\{\"payload\":\"[A-Za-z0-9 ]{0,32}\"\\}\\n){1,64}$",
        });
    }
    if path.ends_with("/consumers/{consumer}/checkpoint") {
        if let Some(schema) = content
            .get_mut("application/json")
            .and_then(|c| c.get_mut("schema"))
        {
            schema["propertyNames"] =
                json!({"type": "string", "pattern": format!("^{}$", grammar::partition())});
        }
    }
}

/// A structured-mode CloudEvent as the server takes it.
fn cloud_event() -> Value {
    let text = json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["id", "source", "type", "specversion"],
        "properties": {
            "id": text, "source": text, "type": text,
            "specversion": {"type": "string", "enum": ["1.0"]},
            "time": {"type": "string", "pattern": format!("^{}$", grammar::RFC3339)},
            "partitionkey": text,
            "datacontenttype": text,
            "data": {"not": {"type": "null"}},
            "data_base64": {"type": "string", "pattern": grammar::BASE64},
        },
        "not": {"required": ["data", "data_base64"]},
    })
}

/// The component schemas the handlers share.
fn components(schemas: &mut Map<String, Value>, served: Served) {
    if let Some(event) = schemas.get_mut("EventJson") {
        event["oneOf"] = json!([{"required": ["payload"]}, {"required": ["payload_base64"]}]);
        event["properties"]["payload"] = json!({
            "description": "The payload as text (a string) or as JSON (any other value)",
            "not": {"type": "null"},
        });
        event["properties"]["payload_base64"] =
            json!({"type": "string", "pattern": grammar::BASE64});
        event["properties"]["id"] = nullable(
            json!({"type": "string", "minLength": 1, "maxLength": cloudstream::MAX_ID_BYTES}),
        );
        event["properties"]["event_time"] =
            json!({"type": "string", "pattern": format!("^{}$", grammar::RFC3339)});
    }
    if let Some(create) = schemas.get_mut("CreateStream") {
        create["properties"]["partitions"] =
            nullable(json!({"type": "integer", "minimum": 1, "maximum": served.max_partitions}));
        create["properties"]["horizon"] =
            nullable(json!({"type": "string", "pattern": crate::streams::HORIZON_PATTERN}));
    }
    for (schema, pattern) in [
        ("PartitionStart", grammar::partition_start()),
        ("StartAt", grammar::start_at()),
    ] {
        if let Some(s) = schemas.get_mut(schema) {
            *s = json!({"type": "string", "pattern": pattern});
        }
    }
    if let Some(spec) = schemas.get_mut("WebhookSpec") {
        let p = &mut spec["properties"];
        p["url"] = json!({"type": "string", "pattern": "^https?://[a-z0-9]+(?:\\.[a-z0-9]+)*(?::[1-9][0-9]{0,3})?/[a-z0-9/]*$"});
        for (field, min, max) in [
            ("batch_size", 1, 1000),
            ("max_wait_ms", 10, 60_000),
            ("max_attempts", 1, 100),
            ("backoff_ms", 0, 60_000),
            ("timeout_ms", 1, 60_000),
        ] {
            p[field] = nullable(json!({"type": "integer", "minimum": min, "maximum": max}));
        }
        p["dead_letter"] = json!({"oneOf": [name(cloudstream::MAX_NAME_LEN), {"type": "boolean"}, {"type": "null"}]});
    }
    if let Some(spec) = schemas.get_mut("AggregateSpec") {
        // The server takes the input from the path and names the consumer itself: neither
        // is part of its body (a 400).
        if let Some(p) = spec["properties"].as_object_mut() {
            p.remove("from");
            p.remove("consumer");
        }
        spec["additionalProperties"] = json!(false);
        // Streams are names; windows, lateness and measures are strings whose meaning the
        // server checks (a 422 when it cannot compute them).
        let p = &mut spec["properties"];
        p["to"] = name(cloudstream::MAX_NAME_LEN);
        p["late_to"] = nullable(name(cloudstream::MAX_NAME_LEN));
    }
    if let Some(spec) = schemas.get_mut("DeliverySpec") {
        let p = &mut spec["properties"];
        // Any text: a sink the server cannot use or may not write to is a 422 or a 403.
        p["to"] = json!({"type": "string"});
        p["format"] = nullable(json!({"type": "string", "enum": ["jsonl", "parquet"]}));
        p["compression"] =
            nullable(json!({"type": "string", "enum": ["none", "gzip", "zstd", "snappy"]}));
        for (field, min, max) in [
            ("max_bytes", 1024, 256 * 1024 * 1024),
            ("max_records", 1, 1_000_000),
            ("max_wait_ms", 100, 900_000),
        ] {
            p[field] = nullable(json!({"type": "integer", "minimum": min, "maximum": max}));
        }
    }
}
