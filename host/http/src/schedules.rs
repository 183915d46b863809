//! `/v1/schedules`: durable schedules that start a workflow's runs at the
//! instants of a cron expression (what `waymark schedule` does). The
//! driver of each `serve` fires them, one run per instant across hosts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_core::{OverlapPolicy, Schedule};
use waymark_runtime::ScheduleSpec;

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, ScheduleId};
use crate::{ApiError, ApiState};

/// `POST /v1/schedules`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRequest {
    /// Its id.
    schedule_id: String,
    /// The workflow each instant starts (loaded already).
    workflow_id: String,
    /// Six fields (seconds first) or five.
    cron: String,
    /// The IANA time zone; default UTC.
    #[serde(default = "utc")]
    time_zone: String,
    /// The vars of each run; default `{}`.
    #[serde(default = "empty_object")]
    vars: Value,
    /// `skip` (default), `buffer_one`, `allow_all` or `cancel_previous`.
    #[serde(default)]
    #[schema(value_type = String)]
    overlap: OverlapPolicy,
    /// How far back missed instants are still started, in ms; default a
    /// minute.
    #[serde(default = "a_minute")]
    catch_up_window_ms: u64,
    /// Create it paused.
    #[serde(default)]
    paused: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn empty_object() -> Value {
    json!({})
}

fn a_minute() -> u64 {
    60_000
}

const REFUSED: &str = "Refused; nothing changed";

/// Creates a schedule; its first instant is the first after now. 422
/// `invalid_schedule` (cron, zone, vars), 404 `workflow_not_found`, 409
/// `schedule_exists`.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Created: the schedule", body = Object),
        (status = "4XX", description = REFUSED, body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(r): JsonBody<ScheduleRequest>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, schedule_id = %r.schedule_id, "create schedule");
    state
        .blocking(move |rt| {
            let s = rt.create_schedule(ScheduleSpec {
                schedule_id: r.schedule_id,
                workflow_id: r.workflow_id,
                cron: r.cron,
                time_zone: r.time_zone,
                vars: r.vars,
                overlap: r.overlap,
                catch_up_window_ms: r.catch_up_window_ms,
                paused: r.paused,
            })?;
            Ok((StatusCode::CREATED, Json(s)))
        })
        .await
}

/// Every schedule, by id.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "`{\"schedules\": [...]}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| Ok(Json(json!({ "schedules": rt.list_schedules()? }))))
        .await
}

/// A schedule; 404 `schedule_not_found`.
#[utoipa::path(get, path = "/v1/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    ScheduleId(id): ScheduleId,
) -> Result<Json<Schedule>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| Ok(Json(rt.get_schedule(&id)?)))
        .await
}

/// Deletes a schedule (the runs it started stay); 404
/// `schedule_not_found`.
#[utoipa::path(delete, path = "/v1/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    ScheduleId(id): ScheduleId,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, schedule_id = %id, "delete schedule");
    state
        .blocking(move |rt| {
            if rt.delete_schedule(&id)? {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "schedule_not_found",
                    format!("schedule '{id}' not found"),
                ))
            }
        })
        .await
}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/pause", tag = "schedules",
    params(("schedule_id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    ScheduleId(id): ScheduleId,
) -> Result<Json<Schedule>, ApiError> {
    caller.require(Role::Operate)?;
    state
        .blocking(move |rt| Ok(Json(rt.pause_schedule(&id)?)))
        .await
}

/// Resumes a paused schedule from now.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/resume", tag = "schedules",
    params(("schedule_id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    ScheduleId(id): ScheduleId,
) -> Result<Json<Schedule>, ApiError> {
    caller.require(Role::Operate)?;
    state
        .blocking(move |rt| Ok(Json(rt.resume_schedule(&id)?)))
        .await
}

/// Handles an extra instant now under the overlap policy: `{"outcome":
/// "started" | "buffered" | "skipped" | "failed", "run_id"?, "error"?}`. This process's driver
/// takes a started run on.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/trigger", tag = "schedules",
    params(("schedule_id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "What the instant came to", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn trigger(
    State(state): State<ApiState>,
    caller: Caller,
    ScheduleId(id): ScheduleId,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, schedule_id = %id, "trigger schedule");
    state
        .blocking(move |rt| Ok(Json(rt.trigger_schedule(&id)?.summary())))
        .await
}
