//! Named snapshots of a run's state: take, list, restore.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_core::{RunState, Snapshot, SnapshotQuery};

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, RunId, SnapshotId};
use crate::{ApiError, ApiState};

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
    RunId(run_id): RunId,
    JsonBody(request): JsonBody<SnapshotRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Operate)?;
    state
        .blocking(move |rt| {
            let s = rt.snapshot_run(&run_id, &request.name, &request.description, &request.tags)?;
            Ok((StatusCode::CREATED, Json(s.summary())))
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
    RunId(run_id): RunId,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| {
            rt.get_state(&run_id)?;
            let found = rt.find_snapshots(&SnapshotQuery {
                run_id: Some(run_id),
                ..SnapshotQuery::default()
            })?;
            let list: Vec<Value> = found.iter().map(Snapshot::summary).collect();
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
    SnapshotId(snapshot_id): SnapshotId,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, snapshot_id = %snapshot_id, "restore");
    state
        .blocking(move |rt| Ok(Json(rt.restore_snapshot(&snapshot_id)?)))
        .await
}
