//! `GET /v1/stream/runs`: the run list, live. The stream opens with a `run`
//! event for each run of the first page passing the filters (newest first),
//! then sends a `run` event whenever one of them, or a new run passing the
//! filters, changes status, node, pause or step count. A run that stops
//! passing the filters (a `waiting` filter and a run that completed) gets
//! one last event, so a list can drop it.
//!
//! Changes this process commits come from the [`RunFeed`](crate::RunFeed)
//! at once; every [`POLL`](crate::stream::POLL) the page is read again and
//! compared, for runs other processes move. A reconnecting client starts
//! over with a fresh page; nothing needs resuming.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use waymark_core::{RunQuery, RunState, RunStatus, WaitReason};
use waymark_runtime::RuntimeError;

use crate::auth::{Caller, Role};
use crate::body::{QueryParams, page_limit};
use crate::feed::RunChange;
use crate::runs::run_filters;
use crate::stream::POLL;
use crate::{ApiError, ApiState};

/// Runs the stream follows unless `limit` says otherwise.
const WATCH_PAGE: usize = 50;
/// The most runs one stream follows.
const WATCH_PAGE_MAX: usize = 500;

/// `?status=&workflow=&session=&parent=&limit=` of the live run list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    /// Only runs with this status.
    #[serde(default)]
    status: Option<String>,
    /// Only runs of this workflow.
    #[serde(default)]
    workflow: Option<String>,
    /// Only runs of this session.
    #[serde(default)]
    session: Option<String>,
    /// Only children of this run.
    #[serde(default)]
    parent: Option<String>,
    /// How many of the newest runs to follow (default 50, at most 500).
    #[serde(default)]
    limit: Option<usize>,
}

/// What a `run` event says of a run: enough for a row of a list.
#[derive(Serialize, Clone, PartialEq)]
pub(crate) struct RunSummary {
    run_id: String,
    workflow_id: String,
    status: RunStatus,
    current_node: String,
    paused: bool,
    waiting: Option<WaitReason>,
    session_id: String,
    parent_run_id: Option<String>,
    steps: u64,
    created_at_ms: u64,
    updated_at_ms: u64,
}

impl RunSummary {
    fn of(run: &RunState) -> Self {
        Self {
            run_id: run.run_id.clone(),
            workflow_id: run.workflow_id.clone(),
            status: run.status,
            current_node: run.current_node.clone(),
            paused: run.paused,
            waiting: run.waiting.as_ref().map(|w| w.reason),
            session_id: run.session_id.clone(),
            parent_run_id: run.parent_run_id.clone(),
            steps: run.steps,
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.updated_at_ms,
        }
    }

    fn event(&self) -> Event {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "null".into());
        Event::default().event("run").data(data)
    }
}

/// The live list of one client.
struct Watch {
    state: ApiState,
    stopping: tokio::sync::watch::Receiver<bool>,
    changes: broadcast::Receiver<Arc<RunChange>>,
    filter: RunQuery,
    /// What the client was last told of each run it follows.
    told: HashMap<String, RunSummary>,
    /// Events ready to send.
    pending: std::collections::VecDeque<Event>,
    /// Whether the page was read since the last poll interval began.
    fresh: bool,
}

/// The live run list.
#[utoipa::path(get, path = "/v1/stream/runs", tag = "runs", params(WatchQuery),
    responses(
        (status = 200, description = "Events `run`, each a run's summary", content_type = "text/event-stream"),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn watch(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<WatchQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(query.limit, WATCH_PAGE, WATCH_PAGE_MAX)?;
    let filter = RunQuery {
        limit: Some(limit),
        ..run_filters(
            query.status.as_deref(),
            query.workflow,
            query.parent,
            query.session,
        )?
    };
    let watch = Watch {
        changes: state.feed().subscribe(),
        stopping: state.stopping(),
        state,
        filter,
        told: HashMap::new(),
        pending: Default::default(),
        fresh: false,
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        next_event(&mut watch).await.map(|event| (Ok(event), watch))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The next event of the live list, or `None` once the server stops.
async fn next_event(watch: &mut Watch) -> Option<Event> {
    loop {
        if *watch.stopping.borrow() {
            return None;
        }
        if let Some(event) = watch.pending.pop_front() {
            return Some(event);
        }
        if !watch.fresh {
            watch.fresh = true;
            match read_page(watch).await {
                Ok(runs) => {
                    for run in runs.iter().rev() {
                        tell(watch, RunSummary::of(run));
                    }
                }
                Err(e) => {
                    let data = serde_json::json!({"code": e.code, "detail": e.detail});
                    return Some(Event::default().event("error").data(data.to_string()));
                }
            }
            continue;
        }
        let poll = tokio::time::sleep(POLL);
        tokio::pin!(poll);
        while watch.pending.is_empty() && watch.fresh {
            tokio::select! {
                () = &mut poll => watch.fresh = false,
                _ = watch.stopping.changed() => return None,
                change = watch.changes.recv() => match change {
                    Ok(change) => {
                        let run = &change.run;
                        if watch.filter.matches(run) || watch.told.contains_key(&run.run_id) {
                            tell(watch, RunSummary::of(run));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => watch.fresh = false,
                    Err(broadcast::error::RecvError::Closed) => {
                        poll.as_mut().await;
                        watch.fresh = false;
                    }
                },
            }
        }
    }
}

/// Queues a `run` event unless the client already knows this of the run.
/// Runs it follows stay bounded: the oldest are forgotten past twice the
/// page size (a later change to one of them is sent again as new).
fn tell(watch: &mut Watch, summary: RunSummary) {
    if watch.told.get(&summary.run_id) == Some(&summary) {
        return;
    }
    watch.pending.push_back(summary.event());
    watch.told.insert(summary.run_id.clone(), summary);
    let bound = watch.filter.limit.unwrap_or(WATCH_PAGE) * 2;
    if watch.told.len() > bound {
        let mut by_age: Vec<(u64, String)> = watch
            .told
            .values()
            .map(|s| (s.updated_at_ms, s.run_id.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(watch.told.len() - bound) {
            watch.told.remove(&id);
        }
    }
}

/// The first page passing the filters, from the store.
async fn read_page(watch: &Watch) -> Result<Vec<RunState>, ApiError> {
    let filter = watch.filter.clone();
    watch
        .state
        .blocking(move |rt| Ok(rt.store().list_runs(&filter).map_err(RuntimeError::from)?))
        .await
}
