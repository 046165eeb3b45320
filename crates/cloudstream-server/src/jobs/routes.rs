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

/// The routes of a kind of job beside its own `register` handler: `list`, `describe` and
/// `delete`, documented for OpenAPI, and `router()`, which mounts all four under
/// `/v1/streams/{name}/PLURAL`. Each kind's `routes.rs` calls it once.
macro_rules! job_routes {
    (
        job: $job:ty,
        tag: $tag:literal,
        list_path: $list_path:literal,
        one_path: $one_path:literal,
        id: $id:literal,
        list_body: $list_body:ty,
        body: $body:ty $(,)?
    ) => {
        /// `GET`: the stream's jobs of this kind, `{"PLURAL": [view, ...]}`.
        #[utoipa::path(
            get, path = $list_path, tag = $tag,
            params(("name" = String, Path, description = "Stream name")),
            responses(
                (status = 200, description = "The stream's registrations", body = $list_body),
                crate::openapi::Failures
            )
        )]
        pub(crate) async fn list(
            state: crate::State,
            crate::Path(stream): crate::Path<String>,
        ) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
            crate::jobs::routes::list::<$job>(&state.0, &stream).await
        }

        /// `GET`: one registration's view, with its counters.
        #[utoipa::path(
            get, path = $one_path, tag = $tag,
            params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = $id)),
            responses(
                (status = 200, description = "The registration", body = $body),
                crate::openapi::Failures
            )
        )]
        pub(crate) async fn describe(
            state: crate::State,
            crate::Path((stream, id)): crate::Path<(String, String)>,
        ) -> Result<axum::Json<serde_json::Value>, crate::ApiError> {
            crate::jobs::routes::describe::<$job>(&state.0, &stream, &id).await
        }

        /// `DELETE`: stops the job and deletes its consumer (what it wrote stays).
        #[utoipa::path(
            delete, path = $one_path, tag = $tag,
            params(("name" = String, Path, description = "Stream name"), ("id" = String, Path, description = $id)),
            responses(
                (status = 204, description = "Stopped, its consumer deleted"),
                crate::openapi::Failures
            )
        )]
        pub(crate) async fn delete(
            state: crate::State,
            crate::Path((stream, id)): crate::Path<(String, String)>,
        ) -> Result<axum::http::StatusCode, crate::ApiError> {
            crate::jobs::routes::delete::<$job>(std::sync::Arc::clone(&state.0), stream, id).await
        }

        /// The kind's four routes.
        pub(crate) fn router() -> axum::Router<std::sync::Arc<crate::AppState>> {
            use axum::routing::{get, put};
            axum::Router::new()
                .route($list_path, get(list))
                .route($one_path, put(register).get(describe).delete(delete))
        }
    };
}
pub(crate) use job_routes;
