//! What the routes of every kind of job share (`/v1/streams/{name}/webhooks`,
//! `/v1/streams/{name}/deliveries`): each kind's handlers check what is theirs, document
//! themselves for OpenAPI, and call these.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{internal, Job};
use crate::{ApiError, AppState};

/// Parses the body of a registration: a 400 `bad_json` unless it is a spec of the kind.
pub(crate) fn parse_spec<J: Job>(body: Result<Bytes, BytesRejection>) -> Result<J::SpecIn, ApiError>
where
    J::SpecIn: DeserializeOwned,
{
    let body = body?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("not a {} spec: {e}", J::KIND),
        )
    })
}

/// A change's task failed (it panicked): a 500.
fn task_failed(e: tokio::task::JoinError) -> ApiError {
    internal(format!("the change failed: {e}"))
}

/// Registers (201) or replaces (200) a job, in a task of its own, so that a request that
/// times out or is dropped does not leave the change half done.
pub(crate) async fn register<J: Job>(
    state: Arc<AppState>,
    stream: String,
    id: String,
    spec: J::SpecIn,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (created, view) =
        tokio::spawn(async move { J::registry(&state).register(&stream, &id, spec).await })
            .await
            .map_err(task_failed)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `{"<kind>s": [view, ...]}`: a stream's jobs of the kind.
pub(crate) async fn list<J: Job>(state: &AppState, stream: &str) -> Result<Json<Value>, ApiError> {
    let views = J::registry(state).views(stream).await?;
    Ok(Json(json!({ J::PLURAL: views })))
}

/// One job's view.
pub(crate) async fn describe<J: Job>(
    state: &AppState,
    stream: &str,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(J::registry(state).view(stream, id).await?))
}

/// Stops a job and deletes its consumer (204), in a task of its own.
pub(crate) async fn delete<J: Job>(
    state: Arc<AppState>,
    stream: String,
    id: String,
) -> Result<StatusCode, ApiError> {
    tokio::spawn(async move { J::registry(&state).delete(&stream, &id).await })
        .await
        .map_err(task_failed)??;
    Ok(StatusCode::NO_CONTENT)
}
