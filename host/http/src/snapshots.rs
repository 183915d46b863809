//! Named snapshots of a run's state: take, list, restore.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_core::{Snapshot, SnapshotQuery};

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, PathParams};
use crate::runs::{blocking, checked_run_id, state_json};
use crate::{ApiError, ApiState};

/// A snapshot without the state it holds (which may be large).
fn summary(s: &Snapshot) -> Value {
    json!({
        "snapshot_id": s.snapshot_id,
        "run_id": s.run_id,
        "name": s.name,
        "description": s.description,
        "tags": s.tags,
        "created_at_ms": s.created_at_ms,
    })
}

/// `POST /v1/runs/{run_id}/snapshots`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotRequest {
    /// What to call it (not empty).
    name: String,
    /// What it is for.
    #[serde(default)]
    description: String,
    /// Labels to find it by.
    #[serde(default)]
    tags: Vec<String>,
}

/// Saves a named copy of the run's current state.
#[utoipa::path(post, path = "/v1/runs/{run_id}/snapshots", tag = "snapshots",
    params(("run_id" = String, Path, description = "The run's id")),
    request_body = SnapshotRequest,
    responses(
        (status = 201, description = "Saved: the snapshot, without the state", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn take(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(run_id): PathParams<String>,
    JsonBody(request): JsonBody<SnapshotRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Operate)?;
    checked_run_id(&run_id)?;
    blocking(&state, move |rt| {
        let s = rt.snapshot_run(&run_id, &request.name, &request.description, &request.tags)?;
        Ok((StatusCode::CREATED, Json(summary(&s))))
    })
    .await
}

/// The run's snapshots, newest first.
#[utoipa::path(get, path = "/v1/runs/{run_id}/snapshots", tag = "snapshots",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "`{\"snapshots\": [...]}`, without their states", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(run_id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    checked_run_id(&run_id)?;
    blocking(&state, move |rt| {
        rt.get_state(&run_id)?;
        let found = rt.find_snapshots(&SnapshotQuery {
            run_id: Some(run_id),
            ..SnapshotQuery::default()
        })?;
        let list: Vec<Value> = found.iter().map(summary).collect();
        Ok(Json(json!({ "snapshots": list })))
    })
    .await
}

/// Puts the run back in the state the snapshot saved (recorded in its
/// ledger as a `restore` record); the run's state after.
#[utoipa::path(post, path = "/v1/snapshots/{snapshot_id}/restore", tag = "snapshots",
    params(("snapshot_id" = String, Path, description = "The snapshot's id")),
    responses(
        (status = 200, description = "Restored: the run's state", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn restore(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(snapshot_id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    waymark_core::validate_id("snapshot", &snapshot_id)
        .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))?;
    tracing::info!(caller = %caller.name, snapshot_id = %snapshot_id, "restore");
    blocking(&state, move |rt| {
        Ok(Json(state_json(&rt.restore_snapshot(&snapshot_id)?)?))
    })
    .await
}
