//! What handlers take from a request, with rejections that are problem
//! documents too (axum's own are plain text): JSON bodies, run ids from
//! the path, query strings.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The body length a request announces, if it announces one.
fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A JSON body: 400 if it is not JSON, 422 if it is the wrong shape, 415
/// without a JSON content type, 413 over [`crate::MAX_BODY_BYTES`].
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Refused by its announced length, without reading a byte of it.
        let limit = crate::MAX_BODY_BYTES as u64;
        if let Some(length) = announced_length(req.headers()).filter(|&n| n > limit) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is {length} bytes; the limit is {limit}"),
            ));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let code = match rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "unreadable_body",
    };
    ApiError::new(rejection.status(), code, rejection.body_text())
}

/// A JSON body that may be left out (no content type, no bytes): then the
/// default value.
pub(crate) struct OptionalJsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers();
        let empty = !headers.contains_key(header::CONTENT_TYPE)
            && !headers.contains_key(header::TRANSFER_ENCODING)
            && announced_length(headers).unwrap_or(0) == 0;
        if empty {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(value) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJsonBody(value))
    }
}

/// The id of a path's one parameter, checked before it reaches the store:
/// 400 `invalid_id` for one no store could hold (a path traversal, say).
async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    kind: &'static str,
) -> Result<String, ApiError> {
    let axum::extract::Path(id) = axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    waymark_core::validate_id(kind, &id)
        .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))?;
    Ok(id)
}

/// The run id of a `/v1/runs/{run_id}/...` path, checked.
pub(crate) struct RunId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "run").await.map(RunId)
    }
}

/// The workflow id of a `/v1/workflows/{workflow_id}` path, checked.
pub(crate) struct WorkflowId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for WorkflowId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "workflow").await.map(WorkflowId)
    }
}

/// The snapshot id of a `/v1/snapshots/{snapshot_id}/...` path, checked.
pub(crate) struct SnapshotId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for SnapshotId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "snapshot").await.map(SnapshotId)
    }
}

/// The schedule id of a `/v1/schedules/{schedule_id}/...` path, checked.
pub(crate) struct ScheduleId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ScheduleId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "schedule").await.map(ScheduleId)
    }
}

/// A query string: 400 `invalid_query` when it does not parse.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_query",
                rejection.body_text(),
            )),
        }
    }
}

/// `limit` of a paged request, `default` when absent: 400 unless it is 1
/// to `max`.
pub(crate) fn page_limit(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {max}"),
        ))
    }
}
