//! Protection against requests that would hold the server: a deadline on every request and
//! a cap on requests in progress. Both answer with a JSON error, like every other failure.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, State};

/// Middleware: refuses a request when `max_in_flight` are already being served (503, so a
/// client backs off instead of queueing without bound), and ends one that outlives
/// `request_timeout` (408).
pub(crate) async fn guard(state: State, request: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{} requests are in progress already; retry shortly",
                state.limits.max_in_flight
            ),
        )
        .into_response();
    };
    match tokio::time::timeout(state.limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} ms",
                state.limits.request_timeout.as_millis()
            ),
        )
        .into_response(),
    }
}
