//! `GET /v1/runs/{run_id}/stream`: a run's ledger records as Server-Sent
//! Events, each with its sequence number as the event id. A client that
//! reconnects with `Last-Event-ID: N` gets the records after N, so across
//! reconnects every record arrives once, in order.
//!
//! Records this process commits arrive from the [`RunFeed`](crate::RunFeed)
//! as they land; the store is read when the stream opens, when the feed
//! skips (a gap in sequence numbers, a stream too slow for its backlog) and
//! every [`POLL`] while idle, so runs other processes move show too. When
//! the run has ended and every record was sent, an `end` event with its
//! status closes the stream. A stopping server ends its streams without an
//! `end` event: the client reconnects with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::auth::{Caller, Role};
use crate::body::{QueryParams, RunId};
use crate::feed::RunChange;
use crate::{ApiError, ApiState};

/// How long an idle stream waits for the feed before looking at the store
/// again: the longest delay of a record another process committed.
pub(crate) const POLL: Duration = Duration::from_millis(250);
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
    changes: broadcast::Receiver<Arc<RunChange>>,
    run_id: String,
    /// The sequence number of the next record to send.
    next: u64,
    /// Records read but not sent yet: (seq, the record as JSON).
    pending: VecDeque<(u64, String)>,
    /// The store must be read before waiting again: at the start, after a
    /// gap in what the feed brought, at each poll, and when the run ended.
    /// Records the feed brings in order need no read, so a commit costs the
    /// store nothing however many streams follow the run.
    read_store: bool,
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
    // Subscribe before the first read of the store, so that nothing lands
    // unseen between the two.
    let changes = state.feed().subscribe();
    // The run must exist before the stream opens (404 otherwise).
    let id = run_id.clone();
    state.blocking(move |rt| Ok(rt.get_state(&id)?)).await?;
    let cursor = Cursor {
        changes,
        stopping: state.stopping(),
        state,
        run_id,
        next,
        pending: VecDeque::new(),
        read_store: true,
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
        if let Some((seq, data)) = cursor.pending.pop_front() {
            cursor.next = seq.saturating_add(1);
            return Some(
                Event::default()
                    .id(seq.to_string())
                    .event("record")
                    .data(data),
            );
        }
        if !cursor.read_store {
            wait_for_records(cursor).await;
            continue;
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
            Ok((page, _)) if !page.is_empty() => {
                // A full page may have more behind it.
                cursor.read_store = page.len() == BATCH;
                cursor.pending.extend(page.iter().map(|record| {
                    let data = serde_json::to_string(record).unwrap_or_else(|_| "null".into());
                    (record.seq, data)
                }));
            }
            Ok((_, Some(status))) if status.is_terminal() => {
                cursor.ended = true;
                let data = json!({"status": status}).to_string();
                return Some(Event::default().event("end").data(data));
            }
            Ok(_) => cursor.read_store = false,
            Err(e) => {
                cursor.ended = true;
                let data = json!({"code": e.code, "detail": e.detail}).to_string();
                return Some(Event::default().event("error").data(data));
            }
        }
    }
}

/// Waits until the feed brings the run's next records (queued in
/// `pending`), or something calls for a read of the store: the poll
/// interval passed, the feed skipped (a gap, a lag), or the run ended. The
/// server stopping ends the wait too.
async fn wait_for_records(cursor: &mut Cursor) {
    let poll = tokio::time::sleep(POLL);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            () = &mut poll => break,
            _ = cursor.stopping.changed() => return,
            change = cursor.changes.recv() => match change {
                Ok(change) if change.run.run_id == cursor.run_id => {
                    let fresh = change.records.iter().skip_while(|r| r.seq < cursor.next);
                    let mut expected = cursor.next;
                    for record in fresh {
                        if record.seq != expected {
                            break;
                        }
                        cursor.pending.push_back((record.seq, record.json.clone()));
                        expected += 1;
                    }
                    // Read the store unless the feed brought the ledger up
                    // to the run's head; at the end, to send `end`.
                    let head = change.run.ledger.next_seq;
                    cursor.read_store = expected != head || change.run.status.is_terminal();
                    return;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => {
                    poll.as_mut().await;
                    break;
                }
            },
        }
    }
    cursor.read_store = true;
}
