//! The web console: one page and its script and style, embedded in the
//! binary (no CDN, no build step: the files under `host/http/console/` are
//! the sources). The page holds no authority of its own: it keeps the
//! bearer token in the tab's `sessionStorage` and sends it in the
//! `Authorization` header of each API call, so no cookie rides along on a
//! cross-site request and there is nothing to forge (see docs/CONSOLE.md).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// Only the console's own files may load, nothing may frame it, and no form
/// or base URL may point elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// `GET /`: the console's page.
pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/console.js`.
pub(crate) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /console/console.css`.
pub(crate) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Small files; a new binary must show its own console at once.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
