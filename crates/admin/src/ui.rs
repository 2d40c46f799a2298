//! The web dashboard's static files, embedded in the binary (no CDN, no
//! separate service, no build step): `GET /ui` redirects (308) to `/ui/`,
//! `GET /ui/` is the single page's `index.html`, `GET /ui/assets/<file>` its
//! scripts, stylesheet and icon. They hold no data, so they need neither key
//! nor session; everything the pages show comes from `/ui/api/*` and the
//! Admin API, which do.
//!
//! Every answer carries a Content-Security-Policy that allows only this
//! origin's own scripts and styles (no inline script or style, no plugin
//! `<object>`/`<embed>`, no framing, no `<base>`), `X-Content-Type-Options: nosniff` (a module script must be
//! served as JavaScript) and `Referrer-Policy: no-referrer`. Files are
//! revalidated on every use (`Cache-Control: no-cache` with an `ETag` from
//! their bytes), so an upgraded gateway never serves a stale page.

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The dashboard's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file.
struct Asset {
    /// The path under `/ui/assets/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A strong validator computed from the bytes at compile time.
    etag: u64,
}

/// FNV-1a, 64 bits: enough to tell two versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../ui/", $name)),
            etag: fnv1a(include_bytes!(concat!("../ui/", $name))),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Every file `/ui/assets/` serves. A file added to `crates/admin/ui/`
/// must be listed here (the tests check that every file the pages load is).
static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("form.js", JS),
    asset!("table.js", JS),
    asset!("chart.js", JS),
    asset!("stats.js", JS),
    asset!("pages/signin.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/resource.js", JS),
    asset!("pages/stream_routes.js", JS),
    asset!("pages/upstreams.js", JS),
    asset!("pages/ssls.js", JS),
    asset!("pages/distributions.js", JS),
    asset!("pages/cache_policies.js", JS),
    asset!("pages/canary.js", JS),
    asset!("pages/invalidations.js", JS),
    asset!("pages/web_acls.js", JS),
];

/// The dashboard's routes, to be merged into the Admin listener's router
/// outside its key check. With the dashboard off (`dashboard.enabled:
/// false`), every `/ui` page answers 404 saying so.
pub fn router(on: bool) -> Router {
    if !on {
        return Router::new()
            .route("/ui", get(off))
            .route("/ui/", get(off))
            .route("/ui/assets/{*file}", get(off))
            .route("/ui/assets/", get(off));
    }
    Router::new()
        .route("/ui", get(redirect))
        .route("/ui/", get(index))
        .route("/ui/assets/{*file}", get(asset))
        .route("/ui/assets/", get(not_found))
}

/// Headers every dashboard answer carries, errors included.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn redirect() -> Response {
    secure((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "/ui/")]).into_response())
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a, &headers),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    secure(
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such dashboard file\n")
            .into_response(),
    )
}

async fn off() -> Response {
    secure(
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "the dashboard is off (dashboard.enabled: false)\n",
        )
            .into_response(),
    )
}

/// Whether `If-None-Match` names this ETag (or is `*`), RFC 9110 §13.1.2
/// (weak comparison: a `W/` prefix is ignored).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", a.etag);
    let status = if not_modified(headers, &etag) { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let body = if status == StatusCode::OK { Body::from(a.body) } else { Body::empty() };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    secure(response)
}

#[cfg(test)]
mod tests;
