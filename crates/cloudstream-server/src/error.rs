//! Every failure as a 4xx or 5xx with a JSON body that says what was wrong:
//! `{"error": {"code": "stream_not_found", "message": "stream \"x\" does not exist"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API failure: a status, a stable machine-readable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// A failure with this status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The error's JSON body (also used for per-event results of a batch).
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl From<cloudstream::Error> for ApiError {
    fn from(e: cloudstream::Error) -> Self {
        use cloudstream::Error as E;
        let (status, code) = match &e {
            E::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid_name"),
            E::InvalidArgument(_) | E::InvalidUrl { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            E::StreamNotFound { .. } => (StatusCode::NOT_FOUND, "stream_not_found"),
            E::StreamExists { .. } => (StatusCode::CONFLICT, "stream_exists"),
            E::RecordTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large"),
            E::Expired { .. } => (StatusCode::GONE, "expired"),
            E::BeyondEnd { .. } => (StatusCode::BAD_REQUEST, "beyond_end"),
            E::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_json"
        };
        ApiError::new(e.status(), code, e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        ApiError::new(e.status(), "bad_body", e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::new(e.status(), "bad_query", e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
