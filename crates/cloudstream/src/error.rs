//! The one public error type.

use std::borrow::Cow;

use crate::Position;

/// Everything a cloudstream call can fail with, named by what it means to the caller.
///
/// Backends keep their own errors private and convert them; the original error stays
/// reachable through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream or consumer name outside the allowed alphabet or length.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "stream", "consumer", "member" or "webhook".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: Cow<'static, str>,
    },
    /// An argument out of range or inconsistent with the stream.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A provider URL that cannot be used.
    #[error("invalid stream URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No stream of that name.
    #[error("stream {stream:?} does not exist")]
    StreamNotFound {
        /// The stream.
        stream: String,
    },
    /// No consumer of that name on the stream (a subscription deleted under a running
    /// consumer, a webhook's consumer gone).
    #[error("stream {stream:?} has no consumer {consumer:?}")]
    ConsumerNotFound {
        /// The stream.
        stream: String,
        /// The consumer.
        consumer: String,
    },
    /// A partition the stream does not have.
    #[error("stream {stream:?} has no partition {partition} (it has {partitions})")]
    PartitionNotFound {
        /// The stream.
        stream: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the stream has.
        partitions: u32,
    },
    /// A stream of that name exists already.
    #[error("stream {stream:?} already exists")]
    StreamExists {
        /// The stream.
        stream: String,
    },
    /// An event larger than the backend accepts.
    #[error("event of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Size of payload, key and headers.
        size: usize,
        /// The backend's limit.
        max: usize,
    },
    /// A position older than the stream's horizon: its records were removed.
    #[error("position {requested} is older than the horizon; the earliest position is {earliest}")]
    Expired {
        /// The position asked for.
        requested: Position,
        /// The earliest position still held in that partition.
        earliest: Position,
    },
    /// A position past the end of its partition.
    #[error("position {requested} is beyond the end of the partition (next is {next})")]
    BeyondEnd {
        /// The position asked for.
        requested: Position,
        /// The position the next event will get.
        next: Position,
    },
    /// The backend cannot do this operation.
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        /// What was asked.
        operation: Cow<'static, str>,
        /// Which backend.
        backend: &'static str,
    },
    /// The provider does not know the caller: no credentials, or unknown ones (a remote
    /// server's 401).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The caller's credentials do not allow this operation (a remote server's 403).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// Stored data failed its integrity checks.
    #[error("corrupt data: {0}")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The provider asks the caller to slow down (Kinesis `ProvisionedThroughputExceeded`,
    /// Pub/Sub `RESOURCE_EXHAUSTED`, an HTTP 429): retry after a backoff.
    #[error("throttled: {0}")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot serve now: unreachable, closed, stopped after a failed fsync, or
    /// locked by another process. Retrying later may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other failure of the backend's storage or network.
    #[error("backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error reduced to its message, where one failure has to be reported several times.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl Error {
    /// The same error again, for reporting one failure once per event it concerns: the
    /// variant and its fields are kept, a boxed source is kept as its message.
    pub fn replicate(&self) -> Error {
        let message = |e: &(dyn std::error::Error + Send + Sync)| -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(Message(e.to_string()))
        };
        match self {
            Error::InvalidName { kind, name, reason } => Error::InvalidName {
                kind,
                name: name.clone(),
                reason: reason.clone(),
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::InvalidUrl { url, reason } => Error::InvalidUrl {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::StreamNotFound { stream } => Error::StreamNotFound {
                stream: stream.clone(),
            },
            Error::StreamExists { stream } => Error::StreamExists {
                stream: stream.clone(),
            },
            Error::PartitionNotFound {
                stream,
                partition,
                partitions,
            } => Error::PartitionNotFound {
                stream: stream.clone(),
                partition: *partition,
                partitions: *partitions,
            },
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge {
                size: *size,
                max: *max,
            },
            Error::Expired {
                requested,
                earliest,
            } => Error::Expired {
                requested: *requested,
                earliest: *earliest,
            },
            Error::BeyondEnd { requested, next } => Error::BeyondEnd {
                requested: *requested,
                next: *next,
            },
            Error::ConsumerNotFound { stream, consumer } => Error::ConsumerNotFound {
                stream: stream.clone(),
                consumer: consumer.clone(),
            },
            Error::Unsupported { operation, backend } => Error::Unsupported {
                operation: operation.clone(),
                backend,
            },
            Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
            Error::Forbidden(m) => Error::Forbidden(m.clone()),
            Error::Corrupt(e) => Error::Corrupt(message(e.as_ref())),
            Error::Throttled(e) => Error::Throttled(message(e.as_ref())),
            Error::Unavailable(e) => Error::Unavailable(message(e.as_ref())),
            Error::Backend(e) => Error::Backend(message(e.as_ref())),
        }
    }
}

impl From<cloudstream_log::LogError> for Error {
    fn from(e: cloudstream_log::LogError) -> Self {
        use cloudstream_log::LogError as L;
        match e {
            L::InvalidName { kind, name, reason } => Error::InvalidName {
                kind,
                name,
                reason: reason.into(),
            },
            L::StreamNotFound(stream) => Error::StreamNotFound { stream },
            L::StreamExists(stream) => Error::StreamExists { stream },
            L::InvalidConfig(m) => Error::InvalidArgument(m),
            L::PartitionNotFound { .. } => Error::InvalidArgument(e.to_string()),
            L::BatchTooLarge { size, max } => Error::RecordTooLarge { size, max },
            e @ L::Corrupt { .. } => Error::Corrupt(Box::new(e)),
            e @ (L::Poisoned(_) | L::Locked { .. } | L::Closed) => Error::Unavailable(Box::new(e)),
            e => Error::Backend(Box::new(e)),
        }
    }
}

impl Error {
    /// Whether the same call may succeed if made again after a pause: throttling, a backend
    /// unavailable for now, or a failure of its storage or network. Invalid input, missing
    /// streams or consumers, unsupported operations, corrupt data and refused credentials
    /// are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Throttled(_) | Error::Unavailable(_) | Error::Backend(_)
        )
    }
}
