//! `/healthz` (the process answers) and `/readyz` (the store answers too).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::{ApiError, ApiState};

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers too.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "The store does not answer", body = crate::openapi::Problem,
         content_type = "application/problem+json")))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    state
        .blocking(|rt| {
            rt.next_timer_at().map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    waymark_runtime::error_text(&e),
                )
            })
        })
        .await?;
    Ok(Json(json!({"status": "ready"})))
}
