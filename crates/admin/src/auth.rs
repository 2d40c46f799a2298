//! The Admin API key check, as APISIX does it (`apisix/admin/init.lua`
//! `check_token`): the key comes from the `X-API-KEY` header, the `api_key`
//! query argument or the `x_api_key` cookie. Missing → 401 "missing apikey",
//! wrong → 401 "wrong apikey". There is no built-in key: the process refuses
//! to start without one. `HEAD /apisix/admin` needs no key: APISIX routes it
//! to a handler that answers 200 without checking the token (clients use it
//! to see that the Admin API is up); it reveals nothing else.
//!
//! Roles, as APISIX's `deployment.admin.admin_key[].role`: the admin key may
//! do anything; the optional viewer key (`admin.viewer_key`) may only `GET`
//! (anything else: 401 `invalid method for role viewer`, APISIX's wording)
//! and may not ask for private keys (`?include_secrets=true`: 401
//! `include_secrets is not allowed for role viewer`).
//!
//! Which credential decides, first match wins:
//!
//! 1. the `X-API-KEY` header, else the `api_key` argument: checked as
//!    APISIX checks it, whatever cookies come along (an empty header is a
//!    wrong key, 401 `wrong apikey`, as in APISIX, not a missing one);
//! 2. a dashboard session (the `shardgate_session` cookie, see
//!    [`crate::dashboard`]), when the dashboard is on: its role is the
//!    session's (users with `read_only: true` and viewer-key sessions are
//!    viewers). A request whose method is not `GET`, `HEAD` or `OPTIONS`
//!    must also carry the session's `X-CSRF-Token`, else 403 `missing or
//!    wrong CSRF token`, so the session cookie alone, which a browser
//!    attaches on its own, never changes anything. An expired, signed-out
//!    or forged session is 401 `session expired or signed out; sign in
//!    again`; an `x_api_key` cookie next to it is not looked at;
//! 3. APISIX's `x_api_key` cookie, checked as the header is.
//!
//! The `x_api_key` cookie is the one cookie that can change something on
//! its own: with the admin key in it, a `PUT`, `POST`, `PATCH` or `DELETE`
//! goes through without any CSRF token, exactly as in APISIX (clients
//! written for APISIX may rely on it, so it is kept). That is acceptable
//! because a browser holds that cookie only if someone stored the admin key
//! in it on this host: the dashboard never sets it (it signs in with the
//! `shardgate_session` cookie, `HttpOnly; SameSite=Strict`). And even then,
//! a page on another site can reach the Admin API with it only where
//! browsers still send cookies cross-site: cross-origin `PUT`, `PATCH` and
//! `DELETE` (and `POST` with a JSON content type) need a CORS preflight,
//! which a request with credentials cannot pass against this API's
//! `Access-Control-Allow-Origin: *` (Fetch standard, CORS check), and
//! browsers that treat cookies without a `SameSite` attribute as `Lax`
//! (Chromium, once the cookie is two minutes old) send none on a
//! cross-site form `POST`. A form `POST` from a
//! page on the same site (another port of the same host), or from any site
//! in a browser that sends such cookies cross-site, is not stopped: never
//! store the admin key in a browser cookie; use the dashboard's sign-in.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AdminState, ApiError};

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key from the `X-API-KEY` header or the `api_key` argument.
fn explicit_token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.to_owned());
    }
    if let Some(q) = req.uri().query()
        && let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "api_key")
    {
        return Some(v.into_owned());
    }
    None
}

/// The key from APISIX's `x_api_key` cookie.
fn cookie_token(req: &Request) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "x_api_key")
        .map(|(_, v)| v.to_owned())
}

/// Whose key a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The admin key: every method.
    Admin,
    /// The viewer key: `GET` only, private keys never.
    Viewer,
}

/// Middleware: lets the request through only with the right key, and a
/// viewer's only for what a viewer may do.
pub async fn require_key(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::HEAD && req.uri().path().trim_end_matches('/') == "/apisix/admin" {
        return next.run(req).await;
    }
    let explicit = explicit_token(&req);
    if explicit.is_none()
        && let Some(dashboard) = state.dashboard()
        && let Some(session) = dashboard.session(req.headers())
    {
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(path = %req.uri().path(), reason = %e, "Admin API request with a session that is no longer valid");
                return ApiError::Unauthorized("session expired or signed out; sign in again").into_response();
            }
        };
        let safe =
            matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
        if !safe && !dashboard.csrf_ok(&session, req.headers()) {
            tracing::warn!(path = %req.uri().path(), method = %req.method(), user = %session.claims.user, "Admin API write with a session but without its CSRF token refused");
            return crate::dashboard::csrf_refused();
        }
        let role = match session.claims.role {
            crate::dashboard::Role::Admin => Role::Admin,
            crate::dashboard::Role::Viewer => Role::Viewer,
        };
        return allowed(role, req, next).await;
    }
    let Some(t) = explicit.or_else(|| cookie_token(&req)) else {
        return ApiError::Unauthorized("missing apikey").into_response();
    };
    // Both comparisons always run, so the time taken does not say which key
    // was close.
    let admin = same(t.as_bytes(), state.key().as_bytes());
    let viewer = state.viewer_key().is_some_and(|v| same(t.as_bytes(), v.as_bytes()));
    let role = match (admin, viewer) {
        (true, _) => Role::Admin,
        (false, true) => Role::Viewer,
        (false, false) => {
            tracing::warn!(path = %req.uri().path(), "Admin API request with a wrong key");
            return ApiError::Unauthorized("wrong apikey").into_response();
        }
    };
    allowed(role, req, next).await
}

/// Lets the request through if `role` may make it.
async fn allowed(role: Role, req: Request, next: Next) -> Response {
    if role == Role::Viewer {
        // APISIX `check_token` (apisix/admin/init.lua): a viewer may only GET.
        if req.method() != axum::http::Method::GET {
            tracing::warn!(path = %req.uri().path(), method = %req.method(), "Admin API write refused for the viewer role");
            return ApiError::Unauthorized("invalid method for role viewer").into_response();
        }
        if crate::api::include_secrets(req.uri()) {
            tracing::warn!(path = %req.uri().path(), "private keys refused for the viewer role");
            return ApiError::Unauthorized("include_secrets is not allowed for role viewer").into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn keys_compare_exactly() {
        assert!(same(b"edd1c9f0", b"edd1c9f0"));
        assert!(!same(b"edd1c9f0", b"edd1c9f1"));
        assert!(!same(b"edd1c9f0", b"edd1c9f"));
        assert!(!same(b"", b"x"));
    }
}
