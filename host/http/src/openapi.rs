//! The OpenAPI document of the whole API, generated from the handlers'
//! annotations, served at `/v1/openapi.json`.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// An `application/problem+json` document (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the problem's kind.
    r#type: String,
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// A stable, machine-readable code (`run_not_found`, `wrong_wait_key`).
    code: String,
    /// What went wrong, for people.
    detail: String,
}

/// Declares the bearer tokens every `/v1` operation takes.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Waymark HTTP API", description = "Durable workflows of sandboxed WebAssembly nodes: runs, waits, events and the catalog. Tokens have roles: read, operate, admin."),
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::health::whoami,
        crate::metrics::render,
        crate::runs::start,
        crate::runs::list,
        crate::runs::get,
        crate::runs::ledger,
        crate::runs::respond,
        crate::stream::stream,
        crate::status_stream::watch,
        crate::history::verify,
        crate::history::export,
        crate::history::vars_after,
        crate::control::approve,
        crate::control::cancel,
        crate::control::pause,
        crate::control::resume,
        crate::snapshots::take,
        crate::snapshots::list,
        crate::snapshots::restore,
        crate::events::emit,
        crate::gc::collect,
        crate::schedules::create,
        crate::schedules::list,
        crate::schedules::get,
        crate::schedules::delete,
        crate::schedules::pause,
        crate::schedules::resume,
        crate::schedules::trigger,
        crate::catalog::workflows,
        crate::catalog::describe,
        crate::catalog::tools,
        crate::catalog::load_bundle,
        crate::upgrade::upgrade,
    ),
    components(schemas(Problem)),
    modifiers(&BearerTokens),
)]
struct ApiDoc;

/// The document, as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi_json() -> Json<serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    /// Every route `router` declares is in the document (the suite checks
    /// the other way: every documented operation is routed).
    #[test]
    fn every_route_is_documented() {
        let doc = super::document();
        let documented: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let source = include_str!("lib.rs");
        let mut routes = 0;
        for piece in source
            .split(".route(\n")
            .flat_map(|p| p.split(".route("))
            .skip(1)
        {
            let path = piece.trim_start().trim_start_matches('"');
            let path = &path[..path.find('"').unwrap()];
            // The document itself, and the console's page and assets (not
            // API operations).
            if path == "/openapi.json" || path == "/" || path.starts_with("/console/") {
                continue;
            }
            routes += 1;
            // Health checks and metrics sit at the root; the rest is nested under /v1.
            let full = if ["/healthz", "/readyz", "/metrics"].contains(&path) {
                path.to_owned()
            } else {
                format!("/v1{path}")
            };
            assert!(
                documented.contains(&full.as_str()),
                "{full} is routed but not documented"
            );
        }
        assert!(routes >= 15, "found {routes} routes");
    }
}
