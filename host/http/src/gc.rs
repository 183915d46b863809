//! `POST /v1/gc`: one retention pass, as `waymark gc` makes it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_runtime::{GcOptions, Retention};

use crate::auth::{Caller, Role};
use crate::body::OptionalJsonBody;
use crate::{ApiError, ApiState};

/// Trees a request deletes at most; the caller asks again for more.
const TREES_PER_REQUEST: usize = 100;

/// The body of a pass; every field may be left out.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GcRequest {
    /// List what would be deleted; delete nothing.
    #[serde(default)]
    dry_run: bool,
    /// Keep ended runs this long (`30d`, `12h`) instead of the policy's
    /// `[retention]`, for every workflow.
    #[serde(default)]
    older_than: Option<String>,
}

/// Deletes ended runs kept past their retention (at most 100 trees a
/// request: `more` says whether to ask again), each with its ledger,
/// snapshots and effect-log entries, then the artifacts only they
/// referenced and the inbox commands every consumer processed. 422
/// `invalid_duration`; 409 `no_retention` when neither the policy nor the
/// request sets one.
#[utoipa::path(post, path = "/v1/gc", tag = "runs",
    request_body(content = Option<GcRequest>, description = "Optional"),
    responses(
        (status = 200, description = "What was (or would be) deleted", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn collect(
    State(state): State<ApiState>,
    caller: Caller,
    OptionalJsonBody(request): OptionalJsonBody<GcRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let retention = match &request.older_than {
        Some(text) => Retention {
            keep_finished_ms: Some(waymark_core::parse_duration_ms(text).map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_duration", e)
            })?),
            ..Retention::default()
        },
        None => state.retention().clone(),
    };
    if !retention.collects() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_retention",
            "no retention is set: ended runs are kept forever (set [retention] in the policy, \
             or send older_than)",
        ));
    }
    tracing::info!(caller = %caller.name, dry_run = request.dry_run, "gc");
    let options = GcOptions {
        dry_run: request.dry_run,
        max_trees: TREES_PER_REQUEST,
    };
    state
        .blocking(move |rt| {
            let r = rt.collect_garbage(&retention, &options, &mut |_| Ok(()))?;
            Ok(Json(json!({
                "dry_run": options.dry_run, "runs": r.runs, "records": r.records,
                "snapshots": r.snapshots, "effects": r.effects, "artifacts": r.artifacts,
                "commands": r.commands, "kept": r.kept, "moved": r.moved,
                "more": r.trees as usize >= TREES_PER_REQUEST,
            })))
        })
        .await
}
