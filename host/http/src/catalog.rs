//! What the host runs: its workflows and tools, and loading a bundle.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::body::WorkflowId;
use crate::{ApiError, ApiState};

/// The catalog of a host, or 503 for an API without one.
pub(crate) fn catalog(state: &ApiState) -> Result<&crate::CatalogAccess, ApiError> {
    state.catalog.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_catalog",
            "this API serves no component catalog",
        )
    })
}

/// `GET /v1/workflows`: the current version of each loaded workflow, with
/// the versions its unfinished runs still execute (`unfinished`: version,
/// digest, runs), what an operator drains or upgrades before retiring one.
#[utoipa::path(get, path = "/v1/workflows", tag = "catalog",
    responses(
        (status = 200, description = "`{\"workflows\": [...]}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn workflows(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    let catalog = catalog(&state)?.catalog.clone();
    state
        .blocking(move |rt| {
            let entries = catalog
                .entries()
                .map_err(|e| ApiError::internal(waymark_runtime::error_text(&e)))?;
            let in_use = rt.versions_in_use()?;
            let workflows: Vec<Value> = entries
                .into_iter()
                .map(|(id, e)| {
                    let unfinished: Vec<Value> = in_use
                        .iter()
                        .filter(|v| v.workflow_id == id)
                        .map(|v| json!({"version": v.version, "digest": v.digest, "runs": v.unfinished}))
                        .collect();
                    json!({"workflow_id": id, "version": e.version, "digest": e.digest,
                       "bundle": e.bundle, "source": e.source, "unfinished": unfinished})
                })
                .collect();
            Ok(Json(json!({ "workflows": workflows })))
        })
        .await
}

/// `GET /v1/tools`: every tool the loaded bundles offer, with the approval
/// the policy gives its calls.
#[utoipa::path(get, path = "/v1/tools", tag = "catalog",
    responses(
        (status = 200, description = "`{\"tools\": [...]}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn tools(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    let tools = catalog(&state)?.tools.clone();
    state
        .blocking(move |_| {
            let rows = tools
                .list()
                .map_err(|e| ApiError::internal(waymark_runtime::error_text(&e)))?;
            let tools: Vec<Value> = rows
                .into_iter()
                .map(|t| {
                    json!({"name": t.name, "description": t.description, "read_only": t.read_only,
                       "approval": t.approval.as_str(),
                       "bundle": t.bundle, "bundle_version": t.bundle_version})
                })
                .collect();
            Ok(Json(json!({ "tools": tools })))
        })
        .await
}

/// `GET /v1/workflows/{workflow_id}`: the current version of a workflow as
/// the host runs it: its nodes, and what the policy granted it (per-step
/// limits, effects, child workflows) and refused.
#[utoipa::path(get, path = "/v1/workflows/{workflow_id}", tag = "catalog",
    params(("workflow_id" = String, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow, its grants and limits", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn describe(
    State(state): State<ApiState>,
    caller: Caller,
    WorkflowId(workflow_id): WorkflowId,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Read)?;
    let catalog = catalog(&state)?.catalog.clone();
    state
        .blocking(move |_| {
            let internal =
                |e: waymark_host::CatalogError| ApiError::internal(waymark_runtime::error_text(&e));
            let Some(loaded) = catalog.describe(&workflow_id).map_err(internal)? else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "workflow_not_found",
                    format!("no workflow '{workflow_id}' is loaded"),
                ));
            };
            let info = loaded.workflow.info();
            let (limits, grants) = (&loaded.effective.limits, &loaded.effective.grants);
            Ok(Json(json!({
                "workflow_id": info.workflow_id,
                "version": info.version,
                "digest": loaded.workflow.digest(),
                "entry_node": info.entry_node,
                "nodes": info.nodes,
                "limits": {
                    "fuel": limits.fuel,
                    "max_memory_bytes": limits.max_memory_bytes,
                    "timeout_ms": limits.timeout.as_millis() as u64,
                    "max_plan_bytes": limits.max_plan_bytes,
                    "max_log_bytes": limits.max_log_bytes,
                    "max_log_lines": limits.max_log_lines,
                },
                // None: anything (a workflow the host trusts).
                "effects": grants.effects,
                "child_workflows": grants.child_workflows,
                "refused": loaded.effective.refused,
            })))
        })
        .await
}

/// `POST /v1/bundles`: a `.wmb` archive as the body
/// (`application/octet-stream`), verified exactly as `waymark load` does
/// and loaded: its workflows are the current ones of their ids from then
/// on. 201 with what was loaded; 422 `invalid_bundle` with why not.
#[utoipa::path(post, path = "/v1/bundles", tag = "catalog",
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
                 description = "A .wmb archive"),
    responses(
        (status = 201, description = "Loaded: the bundle and its workflows", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn load_bundle(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Role::Admin)?;
    let octets = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
    if !octets {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the .wmb archive as application/octet-stream",
        ));
    }
    let access = catalog(&state)?;
    let catalog = access.catalog.clone();
    tracing::info!(caller = %caller.name, bytes = body.len(), "load bundle");
    state
        .blocking(move |rt| {
            let invalid = |detail: String| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", detail)
            };
            let bundle = waymark_bundle::Bundle::from_tar_bytes(&body)
                .map_err(|e| invalid(waymark_runtime::error_text(&e)))?;
            let loaded = catalog
                .add_bundle(&bundle)
                .map_err(|e| invalid(waymark_runtime::error_text(&e)))?;
            let mut workflows = Vec::new();
            for wf in loaded.workflows {
                let info = wf.workflow.info().clone();
                workflows.push(
                    json!({"workflow_id": info.workflow_id, "version": info.version,
                                  "digest": wf.workflow.digest()}),
                );
                rt.register(wf.workflow)?;
            }
            Ok((
                StatusCode::CREATED,
                Json(json!({"bundle": loaded.id, "version": loaded.version,
                        "digest": loaded.digest, "workflows": workflows})),
            ))
        })
        .await
}
