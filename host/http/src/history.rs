//! A run's history: the verification of its hash chain, its export, and
//! its vars after any record.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use waymark_runtime::VarsAfter;

use crate::auth::{Caller, Role};
use crate::body::{QueryParams, RunId};
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

/// `?after=SEQ` of the vars replay.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct VarsQuery {
    /// The record after which the vars are wanted (default: the last).
    #[serde(default)]
    after: Option<u64>,
}

/// `GET /v1/runs/{run_id}/vars?after=SEQ`: the run's vars right after
/// record `SEQ`, replayed from its ledger. 409 `vars_not_in_ledger` when a
/// restore from a snapshot lies between.
#[utoipa::path(get, path = "/v1/runs/{run_id}/vars", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id"), VarsQuery),
    responses(
        (status = 200, description = "`{\"seq\", \"vars\"}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn vars_after(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    QueryParams(query): QueryParams<VarsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| {
            let last = rt.get_state(&run_id)?.ledger.next_seq.saturating_sub(1);
            let seq = query.after.unwrap_or(last).min(last);
            match rt.vars_after(&run_id, seq)? {
                VarsAfter::Known(vars) => Ok(Json(json!({"seq": seq, "vars": vars}))),
                VarsAfter::Restored(at) => Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "vars_not_in_ledger",
                    format!(
                        "record {at} restored a snapshot: the vars after it are not in the ledger"
                    ),
                )),
            }
        })
        .await
}
