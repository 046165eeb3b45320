//! Every failure as a 4xx or 5xx with a JSON body that says what was wrong:
//! `{"error": {"code": "stream_not_found", "message": "stream \"x\" does not exist",
//! "details": {"stream": "x"}}}`; the codes and details of library errors are those of
//! [`cloudstream::wire`], so the `http://` client backend rebuilds the same error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::openapi::{ErrorBody, ErrorDetail};

/// An API failure: a status, a stable machine-readable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<serde_json::Value>,
}

impl ApiError {
    /// A 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            details: None,
        }
    }

    /// What was wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A failure with this status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// This error with `details`, the figures a client may act on.
    pub(crate) fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The error's JSON body (also used for per-event results of a batch).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.error_body()).unwrap_or_else(|_| json!({}))
    }

    /// The error's body as its documented type.
    pub(crate) fn error_body(&self) -> ErrorBody {
        let details = match &self.details {
            Some(serde_json::Value::Object(map)) => Some(map.clone().into_iter().collect()),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details,
            },
        }
    }
}

impl From<cloudstream::Error> for ApiError {
    fn from(e: cloudstream::Error) -> Self {
        let (status, code) = cloudstream::wire::error_status(&e);
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: e.to_string(),
            details: cloudstream::wire::error_details(&e),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        // Malformed JSON and JSON of the wrong shape are both a 400 `bad_json` (axum would
        // answer 422 for the second); a missing content type stays a 415.
        let (status, code) = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_json"),
        };
        ApiError::new(status, code, e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(e.status(), code, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.body_text())
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
