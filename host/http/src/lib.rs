//! The HTTP API of `waymark serve --http`: JSON under `/v1`, behind bearer
//! tokens with roles, every failure an `application/problem+json` document
//! with a stable code.
//!
//! | method and path | role | what |
//! | --- | --- | --- |
//! | `GET /` (and `/console/*`) | none | the web console (its API calls carry the token) |
//! | `GET /healthz`, `GET /readyz` | none | the process lives; the store answers |
//! | `POST /v1/runs` | operate | start a run (`Idempotency-Key`: a retried POST starts one run) |
//! | `GET /v1/runs?status=&workflow=&parent=&session=&created_since_ms=&created_before_ms=&after=&limit=` | read | the newest runs passing the filters, a page at a time |
//! | `GET /v1/runs/{run_id}` | read | the run's state |
//! | `GET /v1/runs/{run_id}/ledger?from=&limit=` | read | its ledger records from a sequence number |
//! | `GET /v1/runs/{run_id}/stream` | read | its ledger records as Server-Sent Events, resumable with `Last-Event-ID` |
//! | `GET /v1/stream/runs?status=&workflow=&session=&parent=&limit=` | read | the run list, live: a run's summary each time it changes |
//! | `GET /v1/runs/{run_id}/verify`, `.../export` | read | its hash chain checked; its history document |
//! | `GET /v1/runs/{run_id}/vars?after=` | read | its vars after a record, replayed from its ledger |
//! | `POST /v1/runs/{run_id}/respond` | operate | answer its wait, with the wait key |
//! | `POST /v1/runs/{run_id}/approve` | operate | decide the tool calls it waits for |
//! | `POST /v1/runs/{run_id}/cancel`, `.../pause`, `.../resume` | operate | cancel, pause, end a pause |
//! | `GET`, `POST /v1/runs/{run_id}/snapshots` | read, operate | list its snapshots; take one |
//! | `POST /v1/snapshots/{snapshot_id}/restore` | operate | put the run back in the saved state |
//! | `POST /v1/events` | operate | emit an event in a scope |
//! | `GET`, `POST /v1/schedules`, `GET`, `DELETE /v1/schedules/{schedule_id}` | read, operate | list, create, show, delete schedules |
//! | `POST /v1/schedules/{schedule_id}/pause`, `.../resume`, `.../trigger` | operate | pause, resume from now, handle an extra instant now |
//! | `GET /v1/workflows`, `GET /v1/tools` | read | what the host runs (with the versions unfinished runs still execute) |
//! | `GET /v1/workflows/{workflow_id}` | read | a workflow's nodes, and the limits and grants the policy gives it |
//! | `POST /v1/workflows/{workflow_id}/upgrade` | admin | move its waiting runs onto another version (`to`, `runs`, `dry_run`) |
//! | `POST /v1/bundles` | admin | load a `.wmb` bundle, verified as `waymark load` does |
//! | `POST /v1/gc` | admin | delete ended runs past their retention (`dry_run`, `older_than`), as `waymark gc` does |
//! | `GET /v1/whoami` | read | the token's name and role |
//! | `GET /v1/openapi.json` | none | the OpenAPI document of all of the above, generated from the handlers |
//!
//! Runtime calls block (SQLite, WebAssembly): handlers run them on tokio's
//! blocking pool, never on the reactor.

mod auth;
mod body;
mod catalog;
mod console;
mod control;
mod error;
mod events;
mod feed;
mod gc;
mod health;
mod history;
mod metrics;
pub mod openapi;
mod runs;
mod schedules;
mod snapshots;
mod status_stream;
mod stream;
mod upgrade;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use waymark_runtime::Runtime;

pub use auth::{Role, TokenEntry, TokenError, TokenSet, hash_token, new_token};
pub use error::ApiError;
pub use feed::RunFeed;
pub use metrics::{Metrics, install_recorder};

/// The largest request body accepted, in bytes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The largest bundle upload accepted, in bytes: it is held in memory
/// while it is verified (`waymark load` takes larger bundles from disk).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The runtime the API drives (the same one the process's driver runs).
    pub runtime: Arc<Runtime>,
    /// The tokens allowed in, with their roles.
    pub tokens: Arc<TokenSet>,
    /// The host's component catalog and tools, for the catalog endpoints.
    pub catalog: Option<CatalogAccess>,
    /// The policy's `[retention]`, for `POST /v1/gc` without `older_than`.
    retention: waymark_runtime::Retention,
    /// This process's commits as they land, waking the live streams.
    feed: Arc<RunFeed>,
    /// The Prometheus recorder, when the process installed it.
    metrics: Option<metrics::Metrics>,
    /// Turns true when the server stops: live streams end then, so the
    /// graceful stop does not wait on them (clients reconnect elsewhere
    /// with `Last-Event-ID`).
    stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ApiState {
    /// The state of an API on `runtime`, letting in `tokens`.
    pub fn new(runtime: Arc<Runtime>, tokens: TokenSet, catalog: Option<CatalogAccess>) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        Self {
            runtime,
            tokens: Arc::new(tokens),
            catalog,
            retention: waymark_runtime::Retention::default(),
            feed: Arc::new(RunFeed::new()),
            metrics: None,
            stopping,
            stop: Arc::new(stop),
        }
    }

    /// Wakes the live streams from `feed`, which must observe the
    /// runtime's store (without one they see commits at their next poll).
    pub fn with_feed(mut self, feed: Arc<RunFeed>) -> Self {
        self.feed = feed;
        self
    }

    /// Collects by `retention` (the policy's) when `POST /v1/gc` names no
    /// `older_than`.
    pub fn with_retention(mut self, retention: waymark_runtime::Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Serves `metrics` at `/metrics`.
    pub fn with_metrics(mut self, metrics: metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The recorder `/metrics` renders, if any.
    pub(crate) fn metrics(&self) -> Option<&metrics::Metrics> {
        self.metrics.as_ref()
    }

    /// The policy's retention.
    pub(crate) fn retention(&self) -> &waymark_runtime::Retention {
        &self.retention
    }

    /// The feed of this process's commits.
    pub(crate) fn feed(&self) -> &RunFeed {
        &self.feed
    }

    /// A receiver that sees the server stop.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// Runs `work` on tokio's blocking pool: runtime calls touch the store
    /// and run guests, and must not hold up the reactor.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Runtime) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || work(&runtime))
            .await
            .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
    }
}

/// The catalog a host loads workflows and tools from.
#[derive(Clone)]
pub struct CatalogAccess {
    /// The components beside the store.
    pub catalog: Arc<waymark_host::Catalog>,
    /// The tools its bundles offer.
    pub tools: Arc<waymark_host::CatalogTools>,
}

/// The API's routes on `state`.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/runs", post(runs::start).get(runs::list))
        .route("/runs/{run_id}", get(runs::get))
        .route("/runs/{run_id}/ledger", get(runs::ledger))
        .route("/runs/{run_id}/stream", get(stream::stream))
        .route("/runs/{run_id}/verify", get(history::verify))
        .route("/runs/{run_id}/export", get(history::export))
        .route("/runs/{run_id}/vars", get(history::vars_after))
        .route("/runs/{run_id}/respond", post(runs::respond))
        .route("/runs/{run_id}/approve", post(control::approve))
        .route("/runs/{run_id}/cancel", post(control::cancel))
        .route("/runs/{run_id}/pause", post(control::pause))
        .route("/runs/{run_id}/resume", post(control::resume))
        .route(
            "/runs/{run_id}/snapshots",
            get(snapshots::list).post(snapshots::take),
        )
        .route("/snapshots/{snapshot_id}/restore", post(snapshots::restore))
        .route("/stream/runs", get(status_stream::watch))
        .route("/events", post(events::emit))
        .route("/gc", post(gc::collect))
        .route("/schedules", post(schedules::create).get(schedules::list))
        .route(
            "/schedules/{schedule_id}",
            get(schedules::get).delete(schedules::delete),
        )
        .route("/schedules/{schedule_id}/pause", post(schedules::pause))
        .route("/schedules/{schedule_id}/resume", post(schedules::resume))
        .route("/schedules/{schedule_id}/trigger", post(schedules::trigger))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/whoami", get(health::whoami))
        .route("/workflows", get(catalog::workflows))
        .route("/workflows/{workflow_id}", get(catalog::describe))
        .route("/workflows/{workflow_id}/upgrade", post(upgrade::upgrade))
        .route("/tools", get(catalog::tools))
        .route(
            "/bundles",
            post(catalog::load_bundle).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        );
    Router::new()
        .route("/", get(console::index))
        .route("/console/console.js", get(console::script))
        .route("/console/console.css", get(console::style))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .nest("/v1", v1)
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then ends the
/// live streams and lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = state.stop.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
}
