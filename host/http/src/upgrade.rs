//! `POST /v1/workflows/{workflow_id}/upgrade`: moving a workflow's waiting
//! runs onto another version from the catalog (what `waymark upgrade` does).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use waymark_host::{CatalogError, UpgradeError, UpgradeReport, UpgradeRequest};
use waymark_runtime::error_text;

use crate::auth::{Caller, Role};
use crate::body::{OptionalJsonBody, WorkflowId};
use crate::{ApiError, ApiState};

/// The body of an upgrade; every field may be left out.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpgradeBody {
    /// The digest of the version to move to; default: the current one.
    #[serde(default)]
    to: Option<String>,
    /// Only these runs; default: every unfinished run not on the target.
    #[serde(default)]
    runs: Option<Vec<String>>,
    /// Say what would happen; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Moves the workflow's waiting runs onto a version from the catalog, each
/// run in its own commit with an `upgrade` record naming both digests; the
/// report gives each run's outcome (`moved`, `would_move`, or `refused`
/// with the reason). 404 `workflow_not_found` / `version_not_found`, 422
/// `not_a_version` for another workflow's component, 400 `invalid_digest`.
#[utoipa::path(post, path = "/v1/workflows/{workflow_id}/upgrade", tag = "catalog",
    params(("workflow_id" = String, Path, description = "The workflow's id")),
    request_body(content = Option<UpgradeBody>, description = "Optional"),
    responses(
        (status = 200, description = "What became of each run", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn upgrade(
    State(state): State<ApiState>,
    caller: Caller,
    WorkflowId(workflow_id): WorkflowId,
    OptionalJsonBody(body): OptionalJsonBody<UpgradeBody>,
) -> Result<Json<UpgradeReport>, ApiError> {
    caller.require(Role::Admin)?;
    let catalog = crate::catalog::catalog(&state)?.catalog.clone();
    tracing::info!(caller = %caller.name, workflow_id = %workflow_id, dry_run = body.dry_run, "upgrade");
    let request = UpgradeRequest {
        workflow_id,
        to: body.to,
        runs: body.runs,
        dry_run: body.dry_run,
    };
    state
        .blocking(move |rt| {
            waymark_host::upgrade(rt, &catalog, &request)
                .map(Json)
                .map_err(problem)
        })
        .await
}

fn problem(e: UpgradeError) -> ApiError {
    let e = match e {
        UpgradeError::Runtime(e) => return e.into(),
        other => other,
    };
    let detail = error_text(&e);
    let (status, code) = match &e {
        UpgradeError::UnknownWorkflow(_) => (StatusCode::NOT_FOUND, "workflow_not_found"),
        UpgradeError::Catalog(CatalogError::UnknownVersion(_)) => {
            (StatusCode::NOT_FOUND, "version_not_found")
        }
        UpgradeError::Catalog(CatalogError::NotAVersion { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "not_a_version")
        }
        UpgradeError::Catalog(CatalogError::NotADigest(_)) => {
            (StatusCode::BAD_REQUEST, "invalid_digest")
        }
        UpgradeError::Catalog(CatalogError::Load { .. }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "version_not_loadable")
        }
        UpgradeError::Catalog(_) | UpgradeError::Runtime(_) => {
            tracing::error!(error = %detail, "upgrade failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    ApiError::new(status, code, detail)
}
