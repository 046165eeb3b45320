//! redis-rs errors as the crate's [`Error`], by meaning.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::Error;

/// Whether an error reply (of one of our scripts) begins with `word`, whether redis-rs read
/// it as the code or as the detail of a generic error.
pub(super) fn says(e: &RedisError, word: &str) -> bool {
    e.code() == Some(word) || e.detail().is_some_and(|d| d.starts_with(word))
}

/// Whether the server did not know a script.
pub(super) fn no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The crate's error for a Redis error met while working on `stream`.
pub(super) fn redis_error(e: RedisError, stream: &str) -> Error {
    let detail = e.detail().unwrap_or_default().to_owned();
    match e.kind() {
        _ if says(&e, "NOSTREAM") => Error::StreamNotFound {
            stream: stream.to_owned(),
        },
        ErrorKind::AuthenticationFailed => Error::Unauthenticated(e.to_string()),
        ErrorKind::Server(ServerErrorKind::NoPerm) => Error::Forbidden(e.to_string()),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => Error::Unavailable(Box::new(e)),
        // maxmemory reached with a policy that evicts nothing: slow down.
        _ if e.code() == Some("OOM") || detail.starts_with("OOM") => Error::Throttled(Box::new(e)),
        ErrorKind::Io => Error::Unavailable(Box::new(e)),
        _ if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => {
            Error::Unavailable(Box::new(e))
        }
        ErrorKind::InvalidClientConfig => Error::InvalidArgument(e.to_string()),
        _ => Error::Backend(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_meaning() {
        let server = |code: &str| {
            RedisError::from((
                ErrorKind::Server(ServerErrorKind::ResponseError),
                "x",
                code.to_owned(),
            ))
        };
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(redis_error(io, "s"), Error::Unavailable(_)));
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(matches!(redis_error(loading, "s"), Error::Unavailable(_)));
        let perm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "no"));
        assert!(matches!(redis_error(perm, "s"), Error::Forbidden(_)));
        assert!(matches!(redis_error(server("odd"), "s"), Error::Backend(_)));
    }
}
