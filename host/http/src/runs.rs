//! `/v1/runs`: start a run, read its state and ledger, answer its wait.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use waymark_core::{Concurrency, RunCursor, RunQuery, RunState, RunStatus, StepRecord, StoreError};
use waymark_driver::{LeasedTurn, tick_under_lease};
use waymark_runtime::{RuntimeError, StartOptions};

use crate::auth::{Caller, Role};
use crate::body::{JsonBody, QueryParams, RunId, page_limit};
use crate::{ApiError, ApiState};

/// Ledger records one request returns unless `limit` says fewer.
const LEDGER_PAGE: usize = 100;
/// The most ledger records one request returns.
const LEDGER_PAGE_MAX: usize = 1000;
/// Runs one list request returns unless `limit` says fewer.
const LIST_PAGE: usize = 50;
/// The most runs one list request returns.
const LIST_PAGE_MAX: usize = 1000;
/// How long the request's first turn of a new run may hold its lease.
const START_TURN_LEASE_MS: u64 = 30_000;

/// The longest `Idempotency-Key` accepted, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /v1/runs`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    /// The workflow to start, by id (loaded into the host's catalog).
    workflow: String,
    /// Its initial vars, a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    vars: Option<Value>,
    /// A session to join (default: the run's own).
    #[serde(default)]
    session: Option<String>,
    /// Flow control: at most `limit` runs with `key` run at once; the run is
    /// `queued` until one of the key's slots is free.
    #[serde(default)]
    concurrency: Option<ConcurrencyRequest>,
    /// Among queued runs, higher begins first (default 0).
    #[serde(default)]
    priority: Option<i32>,
}

/// A run's concurrency key and limit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConcurrencyRequest {
    /// Runs sharing the key share its slots (1 to 200 bytes, no control
    /// characters), for example `customer:42`.
    key: String,
    /// How many may run at once; at least 1.
    limit: i64,
}

impl ConcurrencyRequest {
    fn checked(self) -> Result<Concurrency, ApiError> {
        Concurrency::from_signed(self.key, self.limit).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_concurrency",
                e.to_string(),
            )
        })
    }
}

/// The run id a start with `key` gets, so a retried POST finds the run
/// the first one started (across processes: the store refuses a second
/// run of one id).
fn idempotent_run_id(key: &str) -> String {
    let digest = Sha256::digest(format!("waymark idempotency key\0{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII bytes.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic())
    });
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    })
}

/// Starts a run and advances it until it waits or ends: 201 with its
/// state; with an `Idempotency-Key` already used, 200 with the state of the
/// run that key started.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = StartRequest,
    params(("Idempotency-Key" = Option<String>, Header,
            description = "1-255 visible ASCII characters: a retried POST starts one run")),
    responses(
        (status = 201, description = "Started; the run's state", body = Object),
        (status = 200, description = "The run this Idempotency-Key started", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn start(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request): JsonBody<StartRequest>,
) -> Result<(StatusCode, Json<RunState>), ApiError> {
    caller.require(Role::Operate)?;
    let key = idempotency_key(&headers)?;
    let vars = request.vars.unwrap_or_else(|| json!({}));
    if !vars.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "vars must be a JSON object",
        ));
    }
    let concurrency = request
        .concurrency
        .map(ConcurrencyRequest::checked)
        .transpose()?;
    let run_id = key.as_deref().map(idempotent_run_id);
    tracing::info!(caller = %caller.name, workflow = %request.workflow, "start");
    state
        .blocking(move |rt| {
            let options = StartOptions {
                run_id: run_id.clone(),
                session_id: request.session,
                concurrency,
                priority: request.priority.unwrap_or(0),
                ..StartOptions::default()
            };
            match rt.start_with(&request.workflow, vars, options) {
                Ok(id) => {
                    // Under the run's lease, as a driver's turn: a driver
                    // sweeping (or handed an admitted run) at this moment
                    // leaves it alone, so no effect is performed twice. A
                    // queued run's tick does nothing; whatever this turn
                    // cannot do, the driver carries on.
                    let owner = format!("http:{}", uuid::Uuid::new_v4());
                    let turn = tick_under_lease(rt, &id, &owner, START_TURN_LEASE_MS, &());
                    let run = match turn {
                        Ok(LeasedTurn::Ticked(run)) => *run,
                        _ => rt.get_state(&id)?,
                    };
                    Ok((StatusCode::CREATED, Json(run)))
                }
                Err(RuntimeError::Store(StoreError::RunExists(id))) if run_id.is_some() => {
                    let run = rt.get_state(&id)?;
                    if run.workflow_id != request.workflow {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "idempotency_key_reused",
                            format!(
                                "this Idempotency-Key started a run of '{}', not '{}'",
                                run.workflow_id, request.workflow
                            ),
                        ));
                    }
                    Ok((StatusCode::OK, Json(run)))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
}

/// `?status=&workflow=&parent=&session=&created_since_ms=&created_before_ms=&after=&limit=`
/// of the run list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs with this status (`waiting`, `completed`, ...).
    #[serde(default)]
    status: Option<String>,
    /// Only runs of this workflow.
    #[serde(default)]
    workflow: Option<String>,
    /// Only children of this run.
    #[serde(default)]
    parent: Option<String>,
    /// Only runs of this session.
    #[serde(default)]
    session: Option<String>,
    /// Only runs created at or after this time (ms since the Unix epoch).
    #[serde(default)]
    created_since_ms: Option<u64>,
    /// Only runs created before this time (ms since the Unix epoch).
    #[serde(default)]
    created_before_ms: Option<u64>,
    /// Only runs with this concurrency key (with `status=queued`: its queue).
    #[serde(default)]
    concurrency_key: Option<String>,
    /// The `next` cursor of the previous page: continue after it.
    #[serde(default)]
    after: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/runs`: the newest runs passing the filters.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses(
        (status = 200, description = "`{\"runs\": [...], \"next\": cursor}`, newest first (by \
         creation time, then id); `next` is set when the page is full", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(query.limit, LIST_PAGE, LIST_PAGE_MAX)?;
    let filters = run_filters(
        query.status.as_deref(),
        query.workflow,
        query.parent,
        query.session,
    )?;
    let after = query
        .after
        .as_deref()
        .map(|text| {
            RunCursor::parse(text).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", format!("'{text}' is not a run cursor"))
            })
        })
        .transpose()?;
    let filter = RunQuery {
        created_since_ms: query.created_since_ms,
        created_before_ms: query.created_before_ms,
        concurrency_key: query.concurrency_key,
        after,
        limit: Some(limit),
        ..filters
    };
    state
        .blocking(move |rt| {
            let runs = rt.store().list_runs(&filter).map_err(RuntimeError::from)?;
            let next = (runs.len() == limit)
                .then(|| runs.last().map(|r| RunCursor::of(r).to_string()))
                .flatten();
            Ok(Json(RunsPage { runs, next }))
        })
        .await
}

/// The filters of the run list and of the live run list, checked: a known
/// status, valid parent and session ids.
pub(crate) fn run_filters(
    status: Option<&str>,
    workflow: Option<String>,
    parent: Option<String>,
    session: Option<String>,
) -> Result<RunQuery, ApiError> {
    let status = status
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("unknown status '{s}'"))
            })
        })
        .transpose()?;
    for (what, id) in [("run", &parent), ("session", &session)] {
        if let Some(id) = id {
            waymark_core::validate_id(what, id)
                .map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))?;
        }
    }
    Ok(RunQuery {
        status,
        workflow_id: workflow,
        parent_run_id: parent,
        session_id: session,
        ..RunQuery::default()
    })
}

/// The answer of the run list.
#[derive(Serialize)]
pub(crate) struct RunsPage {
    runs: Vec<RunState>,
    /// Where the next page starts; None when this page is the last.
    next: Option<String>,
}

/// `GET /v1/runs/{run_id}`: the run's state.
#[utoipa::path(get, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's state", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Read)?;
    state
        .blocking(move |rt| Ok(Json(rt.get_state(&run_id)?)))
        .await
}

/// `?from=&limit=` of the ledger endpoint.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerQuery {
    /// The first sequence number wanted (default 0).
    #[serde(default)]
    from: u64,
    /// How many records at most (default 100, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/runs/{run_id}/ledger`: records from `from` on, and the
/// sequence number to ask for next (`null` at the end).
#[utoipa::path(get, path = "/v1/runs/{run_id}/ledger", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id"), LedgerQuery),
    responses(
        (status = 200, description = "`{\"records\": [...], \"next\": seq or null}`", body = Object),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn ledger(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    QueryParams(query): QueryParams<LedgerQuery>,
) -> Result<Json<LedgerPage>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(query.limit, LEDGER_PAGE, LEDGER_PAGE_MAX)?;
    state
        .blocking(move |rt| {
            // One record more than asked tells whether there is a next page.
            let mut records = rt.ledger_page(&run_id, query.from, limit + 1)?;
            let next = records.get(limit).map(|r| r.seq);
            records.truncate(limit);
            Ok(Json(LedgerPage { records, next }))
        })
        .await
}

/// The answer of the ledger endpoint.
#[derive(Serialize)]
pub(crate) struct LedgerPage {
    records: Vec<StepRecord>,
    /// The sequence number to ask for next; none at the end.
    next: Option<u64>,
}

/// `POST /v1/runs/{run_id}/respond`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RespondRequest {
    /// The key of the wait being answered (the run's `waiting.wait_key`),
    /// so an answer meant for an earlier wait cannot end a later one.
    wait_key: String,
    /// The answer.
    #[schema(value_type = Object)]
    payload: Value,
}

/// Answers the run's wait and advances it: its state after.
#[utoipa::path(post, path = "/v1/runs/{run_id}/respond", tag = "waits",
    params(("run_id" = String, Path, description = "The run's id")),
    request_body = RespondRequest,
    responses(
        (status = 200, description = "Answered; the run's state after the answer", body = Object),
        (status = "4XX", description = "Refused; nothing changed", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn respond(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    JsonBody(request): JsonBody<RespondRequest>,
) -> Result<Json<RunState>, ApiError> {
    caller.require(Role::Operate)?;
    tracing::info!(caller = %caller.name, run_id = %run_id, "respond");
    state
        .blocking(move |rt| {
            Ok(Json(rt.resume(
                &run_id,
                &request.wait_key,
                request.payload,
            )?))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_gives_one_valid_run_id() {
        let a = idempotent_run_id("order-17");
        assert_eq!(a, idempotent_run_id("order-17"));
        assert_ne!(a, idempotent_run_id("order-18"));
        assert!(waymark_core::validate_id("run", &a).is_ok(), "{a}");
    }
}
