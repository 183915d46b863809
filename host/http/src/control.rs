//! Acting on a run beyond answering it: approve or deny its tool calls,
//! cancel, pause, resume.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use waymark_core::{RunStatus, WaitReason};

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, OptionalJsonBody, PathParams};
use crate::runs::{blocking, checked_run_id, state_json};
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
    PathParams(run_id): PathParams<String>,
    JsonBody(request): JsonBody<ApproveRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    checked_run_id(&run_id)?;
    tracing::info!(caller = %caller.name, run_id = %run_id, approve = request.approve, "approve");
    blocking(&state, move |rt| {
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
        let decision = waymark_tools_decision(request.approve, request.calls, request.reason);
        let run = rt.resume(&run_id, &request.wait_key, decision)?;
        Ok(Json(state_json(&run)?))
    })
    .await
}

/// The resume payload of an approval wait (the `tool_calls` handler's
/// decision: `approve`, per-call exceptions, a reason).
fn waymark_tools_decision(
    approve: bool,
    calls: std::collections::BTreeMap<String, bool>,
    reason: Option<String>,
) -> Value {
    let mut decision = serde_json::json!({ "approve": approve });
    if !calls.is_empty() {
        decision["calls"] = serde_json::json!(calls);
    }
    if let Some(reason) = reason {
        decision["reason"] = Value::String(reason);
    }
    decision
}

/// The body of cancel and pause.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonRequest {
    /// Why, recorded in the ledger.
    #[serde(default)]
    reason: Option<String>,
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
    PathParams(run_id): PathParams<String>,
    OptionalJsonBody(request): OptionalJsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    checked_run_id(&run_id)?;
    let reason = request
        .reason
        .unwrap_or_else(|| format!("cancelled by {}", caller.name));
    blocking(&state, move |rt| {
        Ok(Json(state_json(&rt.cancel(&run_id, &reason)?)?))
    })
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
    PathParams(run_id): PathParams<String>,
    OptionalJsonBody(request): OptionalJsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    checked_run_id(&run_id)?;
    let reason = request
        .reason
        .unwrap_or_else(|| format!("paused by {}", caller.name));
    blocking(&state, move |rt| {
        Ok(Json(state_json(&rt.pause_run(&run_id, &reason)?)?))
    })
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
    PathParams(run_id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    checked_run_id(&run_id)?;
    blocking(&state, move |rt| {
        Ok(Json(state_json(&rt.resume_run(&run_id)?)?))
    })
    .await
}
