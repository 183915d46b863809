//! `POST /v1/events`: emit an event to the runs waiting for it in a scope.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_core::EventScope;

use crate::auth::{Caller, Role};
use crate::body::JsonBody;
use crate::{ApiError, ApiState};

/// An event to emit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmitRequest {
    /// Its name, as the runs wait for it.
    name: String,
    /// `global`, `session:<id>`, `workflow:<id>` or `run:<id>` (default
    /// `global`).
    #[serde(default)]
    scope: Option<String>,
    /// Its payload (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
}

/// Emits the event: the runs it reached.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EmitRequest,
    responses(
        (status = 200, description = "`{\"delivered\": [run ids]}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn emit(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<EmitRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    let text = request.scope.as_deref().unwrap_or("global");
    let scope = EventScope::parse_key(text).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_scope",
            format!("scope must be global, session:<id>, workflow:<id> or run:<id>, not '{text}'"),
        )
    })?;
    let payload = request.payload.unwrap_or_else(|| json!({}));
    tracing::info!(caller = %caller.name, event = %request.name, scope = %scope, "emit");
    state
        .blocking(move |rt| {
            let delivered = rt.emit_event(&request.name, &scope, payload)?;
            Ok(Json(json!({ "delivered": delivered })))
        })
        .await
}
