//! The Admin API key check, as APISIX does it (`apisix/admin/init.lua`
//! `check_token`): the key comes from the `X-API-KEY` header, the `api_key`
//! query argument or the `x_api_key` cookie. Missing → 401 "missing apikey",
//! wrong → 401 "wrong apikey". There is no built-in key: the process refuses
//! to start without one. `HEAD /apisix/admin` needs no key: APISIX routes it
//! to a handler that answers 200 without checking the token (clients use it
//! to see that the Admin API is up); it reveals nothing else.

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

fn token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.to_owned());
    }
    if let Some(q) = req.uri().query()
        && let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "api_key")
    {
        return Some(v.into_owned());
    }
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "x_api_key")
        .map(|(_, v)| v.to_owned())
}

/// Middleware: lets the request through only with the right key.
pub async fn require_key(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::HEAD && req.uri().path().trim_end_matches('/') == "/apisix/admin" {
        return next.run(req).await;
    }
    match token(&req) {
        None => ApiError::Unauthorized("missing apikey").into_response(),
        Some(t) if !same(t.as_bytes(), state.key().as_bytes()) => {
            tracing::warn!(path = %req.uri().path(), "Admin API request with a wrong key");
            ApiError::Unauthorized("wrong apikey").into_response()
        }
        Some(_) => next.run(req).await,
    }
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
