//! Pulsar's errors by meaning.

use pulsar::error::{ConnectionError, ConsumerError, ProducerError, ServiceDiscoveryError};
use pulsar::proto::ServerError;

use crate::Error;

/// The crate's error for a Pulsar error: `Throttled` where the broker asks to slow down,
/// `Unavailable` where it cannot serve now (connection lost, not ready, timed out),
/// `Backend` otherwise; the Pulsar error kept as the source.
pub(super) fn pulsar_error(e: pulsar::Error) -> Error {
    let connection = match &e {
        pulsar::Error::Connection(c) => Some(c),
        pulsar::Error::Consumer(ConsumerError::Connection(c)) => Some(c),
        pulsar::Error::Producer(ProducerError::Connection(c)) => Some(c),
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(c)) => Some(c),
        _ => None,
    };
    let server = match (&e, connection) {
        (_, Some(ConnectionError::PulsarError(code, _))) => *code,
        (pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(code, _)), _) => *code,
        _ => None,
    };
    match (server, connection) {
        (
            Some(ServerError::TooManyRequests | ServerError::ProducerBlockedQuotaExceededError),
            _,
        )
        | (_, Some(ConnectionError::SlowDown)) => Error::Throttled(Box::new(e)),
        (
            Some(
                ServerError::ServiceNotReady
                | ServerError::MetadataError
                | ServerError::PersistenceError
                | ServerError::ProducerBusy
                | ServerError::ConsumerBusy,
            ),
            _,
        )
        | (
            None,
            Some(
                ConnectionError::Io(_)
                | ConnectionError::Disconnected
                | ConnectionError::Canceled
                | ConnectionError::Shutdown,
            ),
        ) => Error::Unavailable(Box::new(e)),
        _ if matches!(
            e,
            pulsar::Error::Consumer(ConsumerError::Closed)
                | pulsar::Error::Producer(ProducerError::Closed)
                | pulsar::Error::ServiceDiscovery(
                    ServiceDiscoveryError::Canceled | ServiceDiscoveryError::Shutdown
                )
        ) =>
        {
            Error::Unavailable(Box::new(e))
        }
        _ => Error::Backend(Box::new(e)),
    }
}
