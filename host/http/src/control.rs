//! Acting on a run beyond answering it: approve or deny its tool calls,
//! cancel, pause, resume.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use waymark_core::{RunState, RunStatus, WaitReason};
use waymark_runtime::Runtime;
use waymark_tools::Decision;

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, OptionalJsonBody, RunId};
use crate::{ApiError, ApiState};

/// `POST /v1/runs/{run_id}/approve`: a decision on the tool calls the run
/// waits for.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveRequest {
    /// The key of the approval wait.
    wait_key: String,
    /// Approve (or deny) every call that needs approval...
    approve: bool,
    /// ...except those named here, by call id.
    #[serde(default)]
    calls: std::collections::BTreeMap<String, bool>,
    /// Why; given to the workflow with each denied call.
    #[serde(default)]
    reason: Option<String>,
}

/// Decides the run's approval wait; its state after the decision.
#[utoipa::path(post, path = "/v1/runs/{run_id}/approve", tag = "waits",
    params(("run_id" = String, Path, description = "The run's id")),
    request_body = ApproveRequest,
    responses(
        (status = 200, description = "Decided; the run's state after", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    JsonBody(request): JsonBody<ApproveRequest>,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, run_id = %run_id, approve = request.approve, "approve");
    state
        .blocking(move |rt| {
            let run = rt.get_state(&run_id)?;
            let waits_for_approval = run.status == RunStatus::Waiting
                && run
                    .waiting
                    .as_ref()
                    .is_some_and(|w| w.reason == WaitReason::Approval);
            if !waits_for_approval {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_an_approval",
                    format!("run '{run_id}' does not wait for an approval"),
                ));
            }
            // The resume payload the `tool_calls` handler reads.
            let decision = Decision {
                approve: request.approve,
                calls: request.calls,
                reason: request.reason,
            };
            let payload =
                serde_json::to_value(decision).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(Json(rt.resume(&run_id, &request.wait_key, payload)?))
        })
        .await
}

/// The body of cancel and pause.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonRequest {
    /// Why, recorded in the ledger.
    #[serde(default)]
    reason: Option<String>,
}

/// Cancel or pause (`verb`, for the default reason) the run with `act`.
async fn act_with_reason(
    state: ApiState,
    caller: Caller,
    run_id: String,
    reason: Option<String>,
    verb: &str,
    act: fn(&Runtime, &str, &str) -> Result<RunState, waymark_runtime::RuntimeError>,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Operate)?;
    let reason = reason.unwrap_or_else(|| format!("{verb} by {}", caller.name));
    state
        .blocking(move |rt| Ok(Json(act(rt, &run_id, &reason)?)))
        .await
}

/// `POST /v1/runs/{run_id}/cancel`: cancels the run and its unfinished
/// descendants.
#[utoipa::path(post, path = "/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    request_body(content = Option<ReasonRequest>, description = "Optional"),
    responses(
        (status = 200, description = "Cancelled; the run's state", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    OptionalJsonBody(request): OptionalJsonBody<ReasonRequest>,
) -> Result<Json<RunState>, ApiError> {
    act_with_reason(
        state,
        caller,
        run_id,
        request.reason,
        "cancelled",
        Runtime::cancel,
    )
    .await
}

/// `POST /v1/runs/{run_id}/pause`: pauses the run and its descendants.
#[utoipa::path(post, path = "/v1/runs/{run_id}/pause", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    request_body(content = Option<ReasonRequest>, description = "Optional"),
    responses(
        (status = 200, description = "Paused; the run's state", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    OptionalJsonBody(request): OptionalJsonBody<ReasonRequest>,
) -> Result<Json<RunState>, ApiError> {
    act_with_reason(
        state,
        caller,
        run_id,
        request.reason,
        "paused",
        Runtime::pause_run,
    )
    .await
}

/// `POST /v1/runs/{run_id}/resume`: ends a pause.
#[utoipa::path(post, path = "/v1/runs/{run_id}/resume", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Resumed; the run's state", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Operate)?;
    state
        .blocking(move |rt| Ok(Json(rt.resume_run(&run_id)?)))
        .await
}
