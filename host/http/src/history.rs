//! A run's history: the verification of its hash chain and its export.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::body::RunId;
use crate::{ApiError, ApiState};

/// `GET /v1/runs/{run_id}/verify`: whether every ledger record checks out,
/// and the first that does not.
#[utoipa::path(get, path = "/v1/runs/{run_id}/verify", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "`{\"ok\", \"records\", \"first_bad\"}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn verify(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| {
            let v = rt.verify_ledger(&run_id)?;
            let first_bad = v
                .first_bad
                .as_ref()
                .map(|(seq, problem)| json!({"seq": seq, "problem": problem.to_string()}));
            Ok(Json(json!({
                "run_id": v.run_id,
                "records": v.records,
                "ok": v.is_ok(),
                "first_bad": first_bad,
            })))
        })
        .await
}

/// `GET /v1/runs/{run_id}/export`: the history document of the run and
/// its descendants, as `waymark export` writes it.
#[utoipa::path(get, path = "/v1/runs/{run_id}/export", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The history document", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn export(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| Ok(Json(rt.export_history(&run_id)?)))
        .await
}
