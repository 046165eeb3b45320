//! Errors over HTTP, both ways: every [`Error`] has an HTTP status, a stable code and, where
//! it carries figures (sizes, positions), a `details` object, so that the client backend
//! (`http://`) rebuilds the same variant the server's provider returned.
//!
//! The body is `{"error": {"code": "stream_not_found", "message": "...", "details": {...}}}`.

use serde_json::{json, Value};

use crate::{Error, Position};

/// The HTTP status and the stable code of an error.
pub fn error_status(e: &Error) -> (u16, &'static str) {
    match e {
        Error::InvalidName { .. } => (400, "invalid_name"),
        Error::InvalidArgument(_) | Error::InvalidUrl { .. } => (400, "invalid_argument"),
        Error::StreamNotFound { .. } => (404, "stream_not_found"),
        Error::ConsumerNotFound { .. } => (404, "consumer_not_found"),
        Error::StreamExists { .. } => (409, "stream_exists"),
        Error::PartitionNotFound { .. } => (404, "partition_not_found"),
        Error::RecordTooLarge { .. } => (413, "record_too_large"),
        Error::Expired { .. } => (410, "expired"),
        // Range Not Satisfiable: the request is well formed, the partition not there yet.
        Error::BeyondEnd { .. } => (416, "beyond_end"),
        Error::Unsupported { .. } => (501, "unsupported"),
        Error::Throttled(_) => (429, "throttled"),
        Error::Unavailable(_) => (503, "unavailable"),
        Error::Unauthenticated(_) => (401, "unauthorized"),
        Error::Forbidden(_) => (403, "forbidden"),
        Error::Corrupt(_) => (500, "corrupt"),
        Error::Backend(_) => (500, "internal"),
    }
}

/// The figures an error carries, for the `details` of its body.
pub fn error_details(e: &Error) -> Option<Value> {
    Some(match e {
        Error::InvalidName { kind, name, reason } => {
            json!({ "kind": kind, "name": name, "reason": reason })
        }
        Error::InvalidArgument(reason) => json!({ "reason": reason }),
        Error::StreamNotFound { stream } | Error::StreamExists { stream } => {
            json!({ "stream": stream })
        }
        Error::ConsumerNotFound { stream, consumer } => {
            json!({ "stream": stream, "consumer": consumer })
        }
        Error::RecordTooLarge { size, max } => json!({ "size": size, "max": max }),
        Error::PartitionNotFound {
            stream,
            partition,
            partitions,
        } => json!({ "stream": stream, "partition": partition, "partitions": partitions }),
        Error::Expired {
            requested,
            earliest,
        } => json!({ "requested": requested, "earliest": earliest }),
        Error::BeyondEnd { requested, next } => json!({ "requested": requested, "next": next }),
        Error::Unsupported { operation, backend } => {
            json!({ "operation": operation, "backend": backend })
        }
        _ => return None,
    })
}

/// The message of a remote error, as the source of the error rebuilt from it.
#[derive(Debug)]
struct Remote(String);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Remote {}

/// The error an HTTP error response stands for: the variant its code and details name,
/// else by status (401 `Unauthenticated`, 403 `Forbidden`, 429 `Throttled`; 408, 503 and
/// 504 `Unavailable`, as retrying may succeed; other 5xx `Backend`, other 4xx
/// `InvalidArgument`).
pub fn error_from_body(status: u16, body: &Value) -> Error {
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or("");
    let message = error["message"]
        .as_str()
        .map_or_else(|| format!("HTTP status {status}"), str::to_owned);
    let d = &error["details"];
    let text = |name: &str| d[name].as_str().map(str::to_owned);
    let number = |name: &str| d[name].as_u64().and_then(|n| usize::try_from(n).ok());
    let position = |name: &str| text(name).and_then(|p| p.parse::<Position>().ok());
    let rebuilt = match code {
        "invalid_name" => text("name").map(|name| Error::InvalidName {
            kind: known(&text("kind").unwrap_or_default(), NAME_KINDS, "remote"),
            name,
            reason: text("reason").unwrap_or_default().into(),
        }),
        "invalid_argument" => text("reason").map(Error::InvalidArgument),
        "stream_not_found" => text("stream").map(|stream| Error::StreamNotFound { stream }),
        "stream_exists" => text("stream").map(|stream| Error::StreamExists { stream }),
        "consumer_not_found" => text("stream")
            .zip(text("consumer"))
            .map(|(stream, consumer)| Error::ConsumerNotFound { stream, consumer }),
        "partition_not_found" => text("stream")
            .zip(number("partition"))
            .zip(number("partitions"))
            .map(
                |((stream, partition), partitions)| Error::PartitionNotFound {
                    stream,
                    partition: u32::try_from(partition).unwrap_or(u32::MAX),
                    partitions: u32::try_from(partitions).unwrap_or(u32::MAX),
                },
            ),
        "throttled" => Some(Error::Throttled(Box::new(Remote(message.clone())))),
        "record_too_large" => number("size")
            .zip(number("max"))
            .map(|(size, max)| Error::RecordTooLarge { size, max }),
        "expired" => {
            position("requested")
                .zip(position("earliest"))
                .map(|(requested, earliest)| Error::Expired {
                    requested,
                    earliest,
                })
        }
        "beyond_end" => position("requested")
            .zip(position("next"))
            .map(|(requested, next)| Error::BeyondEnd { requested, next }),
        "unsupported" => text("operation").map(|operation| Error::Unsupported {
            operation: operation.into(),
            backend: known(
                &text("backend").unwrap_or_default(),
                &backend_names(),
                "remote",
            ),
        }),
        _ => None,
    };
    rebuilt.unwrap_or_else(|| match status {
        401 => Error::Unauthenticated(message),
        403 => Error::Forbidden(message),
        // A request that was shed, timed out or was refused for now may succeed when tried
        // again.
        429 => Error::Throttled(Box::new(Remote(message))),
        408 | 503 | 504 => Error::Unavailable(Box::new(Remote(message))),
        500.. => Error::Backend(Box::new(Remote(message))),
        _ => Error::InvalidArgument(message),
    })
}

/// The kinds of name an `invalid_name` error may name.
const NAME_KINDS: &[&str] = &["stream", "consumer", "member", "webhook"];

/// The names a backend or a checkpoint store goes by: the providers' schemes and the stores'
/// kinds.
fn backend_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = crate::backend::providers()
        .iter()
        .flat_map(|p| p.schemes)
        .copied()
        .collect();
    names.extend(["engine", "local", "memory", "dynamodb", "http"]);
    names
}

/// `text` as the `'static` name it equals among `names`, else `otherwise`: names from a
/// server are matched against the vocabulary, never leaked into `'static` strings.
fn known(text: &str, names: &[&'static str], otherwise: &'static str) -> &'static str {
    names
        .iter()
        .copied()
        .find(|&n| n == text)
        .unwrap_or(otherwise)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: Error) -> Error {
        let (status, code) = error_status(&e);
        let body = json!({ "error": { "code": code, "message": e.to_string(), "details": error_details(&e) } });
        error_from_body(status, &body)
    }

    #[test]
    fn errors_keep_their_variant_over_http() {
        let p = Position::new(1, 5);
        for e in [
            Error::StreamNotFound { stream: "s".into() },
            Error::StreamExists { stream: "s".into() },
            Error::RecordTooLarge { size: 10, max: 5 },
            Error::Expired {
                requested: p,
                earliest: p,
            },
            Error::BeyondEnd {
                requested: p,
                next: p,
            },
            Error::Unsupported {
                operation: "reads".into(),
                backend: "pubsub",
            },
            Error::InvalidName {
                kind: "stream",
                name: "a/b".into(),
                reason: "bad".into(),
            },
            Error::InvalidArgument("x".into()),
            Error::ConsumerNotFound {
                stream: "s".into(),
                consumer: "c".into(),
            },
            Error::PartitionNotFound {
                stream: "s".into(),
                partition: 7,
                partitions: 2,
            },
        ] {
            let back = round_trip(e.replicate());
            assert_eq!(back.to_string(), e.to_string());
        }
        assert!(matches!(
            round_trip(Error::Unavailable("down".into())),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            round_trip(Error::Throttled("slow down".into())),
            Error::Throttled(_)
        ));
    }
}
