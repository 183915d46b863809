//! `GET /v1/runs/{run_id}/stream`: a run's ledger records as Server-Sent
//! Events, each with its sequence number as the event id. A client that
//! reconnects with `Last-Event-ID: N` gets the records after N, so across
//! reconnects every record arrives once, in order. Records come from the
//! store (polled every [`POLL`] while nothing is new), so runs moved by any
//! process show; when the run has ended and every record was sent, an `end`
//! event with its status closes the stream. A stopping server ends its
//! streams without an `end` event: the client reconnects with
//! `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use waymark_core::StepRecord;

use crate::auth::{Caller, Role};
use crate::body::{QueryParams, RunId};
use crate::{ApiError, ApiState};

/// How long the stream waits before looking at the store again when
/// nothing was new.
const POLL: Duration = Duration::from_millis(100);
/// Records read from the store at once.
const BATCH: usize = 256;

/// `?from=N`: the first sequence number wanted (default 0; a
/// `Last-Event-ID` header wins).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// The first sequence number wanted (default 0).
    #[serde(default)]
    from: u64,
}

/// Where a stream is.
struct Cursor {
    state: ApiState,
    stopping: tokio::sync::watch::Receiver<bool>,
    run_id: String,
    next: u64,
    pending: VecDeque<StepRecord>,
    ended: bool,
}

/// The stream of the run's records from the cursor on.
#[utoipa::path(get, path = "/v1/runs/{run_id}/stream", tag = "runs",
    params(("run_id" = String, Path, description = "The run's id"), StreamQuery,
           ("Last-Event-ID" = Option<String>, Header,
            description = "The last record seen: the stream resumes after it")),
    responses(
        (status = 200, description = "Events `record` (id: the sequence number) and a final `end`",
         content_type = "text/event-stream"),
        (status = "4XX", description = "Refused", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    caller: Caller,
    RunId(run_id): RunId,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Role::Read)?;
    let next = match headers.get("last-event-id") {
        None => query.from,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|seen| seen.saturating_add(1))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be a sequence number",
                )
            })?,
    };
    // The run must exist before the stream opens (404 otherwise).
    let id = run_id.clone();
    state.blocking(move |rt| Ok(rt.get_state(&id)?)).await?;
    let cursor = Cursor {
        stopping: state.stopping(),
        state,
        run_id,
        next,
        pending: VecDeque::new(),
        ended: false,
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        next_event(&mut cursor)
            .await
            .map(|event| (Ok(event), cursor))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The next event of the stream, or `None` once it has ended.
async fn next_event(cursor: &mut Cursor) -> Option<Event> {
    loop {
        if cursor.ended || *cursor.stopping.borrow() {
            return None;
        }
        if let Some(record) = cursor.pending.pop_front() {
            cursor.next = record.seq.saturating_add(1);
            let data = serde_json::to_string(&record).unwrap_or_else(|_| "null".into());
            return Some(
                Event::default()
                    .id(record.seq.to_string())
                    .event("record")
                    .data(data),
            );
        }
        let (run_id, from) = (cursor.run_id.clone(), cursor.next);
        let read = cursor
            .state
            .blocking(move |rt| {
                let page = rt.ledger_page(&run_id, from, BATCH)?;
                // Read after the page: a run that ended before it was read has
                // all its records in the page or before it.
                let status = if page.is_empty() {
                    Some(rt.get_state(&run_id)?.status)
                } else {
                    None
                };
                Ok((page, status))
            })
            .await;
        match read {
            Ok((page, _)) if !page.is_empty() => cursor.pending.extend(page),
            Ok((_, Some(status))) if status.is_terminal() => {
                cursor.ended = true;
                let data = json!({"status": status}).to_string();
                return Some(Event::default().event("end").data(data));
            }
            Ok(_) => {
                // The server stopping ends the stream at once.
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = cursor.stopping.changed() => {}
                }
            }
            Err(e) => {
                cursor.ended = true;
                let data = json!({"code": e.code, "detail": e.detail}).to_string();
                return Some(Event::default().event("error").data(data));
            }
        }
    }
}
