//! librdkafka's errors as the crate's [`Error`], by meaning.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

use crate::Error;

/// The crate's error for a Kafka error met while working on `stream`.
pub(super) fn kafka_error(e: KafkaError, stream: &str) -> Error {
    let code = match e {
        KafkaError::AdminOp(code) => Some(code),
        ref e => e.rdkafka_error_code(),
    };
    match code {
        Some(code) => code_error(code, e, stream),
        None => Error::Backend(Box::new(e)),
    }
}

fn code_error(code: Code, e: KafkaError, stream: &str) -> Error {
    match code {
        Code::UnknownTopicOrPartition | Code::UnknownTopic => Error::StreamNotFound {
            stream: stream.to_owned(),
        },
        Code::TopicAlreadyExists => Error::StreamExists {
            stream: stream.to_owned(),
        },
        Code::MessageSizeTooLarge | Code::InvalidMessageSize => {
            Error::InvalidArgument(format!("the broker refused a record as too large: {e}"))
        }
        Code::InvalidTopic
        | Code::InvalidPartitions
        | Code::InvalidReplicationFactor
        | Code::InvalidConfig
        | Code::InvalidRequest
        | Code::PolicyViolation
        | Code::InvalidArgument => Error::InvalidArgument(format!("{stream}: {e}")),
        Code::SaslAuthenticationFailed | Code::Authentication => {
            Error::Unauthenticated(e.to_string())
        }
        Code::TopicAuthorizationFailed
        | Code::GroupAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed => Error::Forbidden(e.to_string()),
        Code::QueueFull | Code::ThrottlingQuotaExceeded => Error::Throttled(Box::new(e)),
        Code::OperationTimedOut
        | Code::RequestTimedOut
        | Code::MessageTimedOut
        | Code::BrokerTransportFailure
        | Code::AllBrokersDown
        | Code::NetworkException
        | Code::NotLeaderForPartition
        | Code::LeaderNotAvailable
        | Code::NotCoordinator
        | Code::CoordinatorNotAvailable
        | Code::CoordinatorLoadInProgress
        | Code::NotEnoughReplicas
        | Code::NotEnoughReplicasAfterAppend
        | Code::Resolve => Error::Unavailable(Box::new(e)),
        Code::UnsupportedVersion | Code::UnsupportedFeature => Error::Unsupported {
            operation: e.to_string().into(),
            backend: "kafka",
        },
        _ => Error::Backend(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_by_meaning() {
        let e = |code| kafka_error(KafkaError::MetadataFetch(code), "s");
        assert!(matches!(
            e(Code::UnknownTopicOrPartition),
            Error::StreamNotFound { .. }
        ));
        assert!(matches!(
            e(Code::TopicAlreadyExists),
            Error::StreamExists { .. }
        ));
        assert!(matches!(e(Code::QueueFull), Error::Throttled(_)));
        assert!(matches!(e(Code::AllBrokersDown), Error::Unavailable(_)));
        assert!(matches!(
            e(Code::SaslAuthenticationFailed),
            Error::Unauthenticated(_)
        ));
        assert!(matches!(
            e(Code::TopicAuthorizationFailed),
            Error::Forbidden(_)
        ));
        assert!(matches!(e(Code::InvalidConfig), Error::InvalidArgument(_)));
    }
}
