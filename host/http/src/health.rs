//! `/healthz` (the process answers), `/readyz` (the store answers too) and
//! `/v1/whoami` (who the token is).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Caller;
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

/// `GET /v1/whoami`: the caller's token name and role, so that a client
/// (the console) offers only what the role may do.
#[utoipa::path(get, path = "/v1/whoami", tag = "health",
    responses(
        (status = 200, description = "`{\"name\", \"role\"}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.name, "role": caller.role.name()}))
}
