//! Every failure as `application/problem+json` (RFC 9457) with a stable
//! `code` clients may match on; the `detail` is for people.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use waymark_core::StoreError;
use waymark_runtime::{RuntimeError, error_text};

/// A failed request: its status, a stable code and what went wrong.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`run_not_found`, `wrong_wait_key`).
    pub code: &'static str,
    /// What went wrong, for people.
    pub detail: String,
}

impl ApiError {
    /// A failure with `status` and `code`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub(crate) fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("https://waymark.invalid/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let detail = error_text(&e);
        let (status, code) = match &e {
            RuntimeError::Store(StoreError::RunNotFound(_)) => {
                (StatusCode::NOT_FOUND, "run_not_found")
            }
            RuntimeError::Store(StoreError::NotFound { kind, .. }) if *kind == "snapshot" => {
                (StatusCode::NOT_FOUND, "snapshot_not_found")
            }
            RuntimeError::Store(StoreError::NotFound { kind, .. }) if *kind == "schedule" => {
                (StatusCode::NOT_FOUND, "schedule_not_found")
            }
            RuntimeError::Store(StoreError::Exists { kind, .. }) if *kind == "schedule" => {
                (StatusCode::CONFLICT, "schedule_exists")
            }
            RuntimeError::Store(StoreError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            RuntimeError::Store(StoreError::InvalidId { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_id")
            }
            RuntimeError::Store(StoreError::RunExists(_)) => (StatusCode::CONFLICT, "run_exists"),
            RuntimeError::UnknownWorkflow(_) => (StatusCode::NOT_FOUND, "workflow_not_found"),
            RuntimeError::NotWaiting { .. } | RuntimeError::Terminal { .. } => {
                (StatusCode::CONFLICT, "not_waiting")
            }
            RuntimeError::WrongWaitKey { .. } => (StatusCode::CONFLICT, "wrong_wait_key"),
            RuntimeError::WaitAlreadyAnswered { .. } => {
                (StatusCode::CONFLICT, "wait_already_answered")
            }
            RuntimeError::HostOnlyWait { .. } => (StatusCode::CONFLICT, "host_only_wait"),
            RuntimeError::InvalidResponse { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_response")
            }
            RuntimeError::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            RuntimeError::LeaseLost { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            RuntimeError::UpgradeRefused { .. } => (StatusCode::CONFLICT, "upgrade_refused"),
            RuntimeError::InvalidSchedule(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_schedule")
            }
            _ => {
                tracing::error!(error = %detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Self::new(status, code, detail)
    }
}

/// Any path no route takes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
