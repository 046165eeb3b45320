//! AWS SDK errors (Kinesis, DynamoDB) sorted by what the backend does about them: retry (throttling, network),
//! refresh (an expired shard iterator), or report as a typed [`Error`].

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::Error;

/// An AWS failure, classified.
#[derive(Debug)]
pub(crate) enum AwsError {
    /// `ProvisionedThroughputExceededException`, `LimitExceededException` and the like:
    /// back off and retry.
    Throttled(String),
    /// No answer, or a 5xx: retry.
    Transient(String),
    /// The shard iterator is older than five minutes: get a new one.
    ExpiredIterator(String),
    /// The stream (or table) does not exist.
    NotFound(String),
    /// It exists already, or is busy being created, updated or deleted.
    InUse(String),
    /// The request was refused as invalid.
    Invalid(String),
    /// A conditional write found the item in another state (DynamoDB).
    ConditionFailed(String),
    /// Anything else.
    Other(String),
}

/// Error codes AWS uses for "slow down".
const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Classifies an SDK error; `resource` names the stream or table in messages.
pub(crate) fn aws_error<E>(e: SdkError<E, HttpResponse>, resource: &str) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("{resource}: {}", DisplayErrorContext(&e));
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => e
            .raw_response()
            .is_some_and(|r| r.status().is_server_error()),
    };
    match e.code() {
        Some(c) if THROTTLING.contains(&c) => AwsError::Throttled(text),
        Some("ExpiredIteratorException") => AwsError::ExpiredIterator(text),
        Some("ResourceNotFoundException") => AwsError::NotFound(resource.to_owned()),
        Some("ResourceInUseException") => AwsError::InUse(text),
        Some("ConditionalCheckFailedException") => AwsError::ConditionFailed(text),
        Some("InvalidArgumentException" | "ValidationException" | "ValidationError") => {
            AwsError::Invalid(e.message().unwrap_or(&text).to_owned())
        }
        Some("InternalFailure" | "ServiceUnavailable" | "InternalServerError") => {
            AwsError::Transient(text)
        }
        _ if transient => AwsError::Transient(text),
        _ => AwsError::Other(text),
    }
}

impl AwsError {
    /// Whether the same call may succeed if retried after a pause.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, AwsError::Throttled(_) | AwsError::Transient(_))
    }

    /// As the crate's error, where nothing more specific applies.
    pub(crate) fn into_error(self) -> Error {
        match self {
            AwsError::NotFound(stream) => Error::StreamNotFound { stream },
            AwsError::Invalid(m) => Error::InvalidArgument(m),
            AwsError::Throttled(m) => Error::Throttled(m.into()),
            AwsError::Transient(m) => Error::Unavailable(m.into()),
            AwsError::ExpiredIterator(m)
            | AwsError::InUse(m)
            | AwsError::ConditionFailed(m)
            | AwsError::Other(m) => Error::Backend(m.into()),
        }
    }
}
