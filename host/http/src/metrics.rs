//! `GET /metrics`: the process's metrics in the Prometheus text format,
//! for a read token (a scrape config sets it as its bearer credentials).
//! The recorder is process-wide: [`install_recorder`] installs it once,
//! and what the kernel and the driver count through the `metrics` facade
//! appears here.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{Caller, Role};
use crate::{ApiError, ApiState};

/// Latency buckets, in seconds: a step is tens of µs to seconds, a commit
/// tens of µs (no fsync) to tens of ms.
const SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Fuel buckets: from a trivial node to the default ceiling and past it.
const FUEL: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Runs per commit: one run's turn up to a large group.
const RUNS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process's metrics, as the Prometheus recorder renders them.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

/// Installs the Prometheus recorder for this process, with histogram
/// buckets for the kernel's metrics. Fails if a recorder is installed
/// already (one per process).
pub fn install_recorder() -> Result<Metrics, String> {
    use waymark_runtime::metrics as m;
    let builder = [
        (m::STEP_SECONDS, SECONDS),
        (m::COMMIT_SECONDS, SECONDS),
        (m::TIMER_LATENESS_SECONDS, SECONDS),
        (m::STEP_FUEL, FUEL),
        (m::COMMIT_RUNS, RUNS),
    ]
    .into_iter()
    .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
    })
    .map_err(|e| e.to_string())?;
    builder
        .install_recorder()
        .map(Metrics)
        .map_err(|e| e.to_string())
}

/// The metrics in the Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The Prometheus text format (version 0.0.4)", body = String,
         content_type = "text/plain"),
        (status = "4XX", description = "Refused, or metrics are off", body = crate::openapi::Problem,
         content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn render(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    let Some(Metrics(handle)) = state.metrics() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "this process records no metrics",
        ));
    };
    let text = handle.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
