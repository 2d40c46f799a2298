//! The health-check part of APISIX's Control API (apache/apisix
//! `apisix/control/v1.lua`, `docs/en/latest/control-api.md`), on the
//! metrics listener next to `/healthz`, `/readyz` and `/metrics`, so
//! existing dashboards and scripts that read APISIX's checker status work:
//!
//! - `GET /v1/healthcheck`: every checker;
//! - `GET /v1/healthcheck/upstreams/{id}`, `GET /v1/healthcheck/stream_routes/{id}`
//!   (a route's inline upstream): one checker, or `{"error_msg"}` with 404
//!   (`no checker for upstreams[1]`, `upstreams[1] not found`) or 400
//!   (`invalid src type routes`), as APISIX answers.
//!
//! This crate does not know upstream runtimes: the answers come from a
//! [`HealthcheckStatus`] the binary wires to the upstream registry.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// Answers the Control API: `None` for `/v1/healthcheck`,
/// `Some((src_type, src_id))` for one checker; returns the HTTP status and
/// the JSON body.
pub type HealthcheckStatus = Arc<dyn Fn(Option<(&str, &str)>) -> (u16, Value) + Send + Sync>;

/// The routes of `/v1/healthcheck`, to merge into the health router.
pub fn healthcheck_router(status: HealthcheckStatus) -> Router {
    Router::new()
        .route("/v1/healthcheck", get(all))
        .route("/v1/healthcheck/{src_type}", get(missing_id))
        .route("/v1/healthcheck/{src_type}/{src_id}", get(one))
        .with_state(status)
}

fn answer((code, body): (u16, Value)) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

async fn all(State(status): State<HealthcheckStatus>) -> Response {
    answer(status(None))
}

async fn one(State(status): State<HealthcheckStatus>, Path((src_type, src_id)): Path<(String, String)>) -> Response {
    answer(status(Some((&src_type, &src_id))))
}

async fn missing_id(Path(src_type): Path<String>) -> Response {
    answer((404, json!({"error_msg": format!("missing src id for src type {src_type}")})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_json(router: &Router, path: &str) -> (u16, Value) {
        let res =
            router.clone().oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("answer");
        let code = res.status().as_u16();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (code, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn paths_reach_the_status_source() {
        let status: HealthcheckStatus = Arc::new(|target| match target {
            None => (200, json!([{"name": "/apisix/upstreams/1"}])),
            Some((t, id)) => (404, json!({"error_msg": format!("{t}[{id}] not found")})),
        });
        let router = healthcheck_router(status);
        assert_eq!(get_json(&router, "/v1/healthcheck").await, (200, json!([{"name": "/apisix/upstreams/1"}])));
        assert_eq!(
            get_json(&router, "/v1/healthcheck/stream_routes/r1").await,
            (404, json!({"error_msg": "stream_routes[r1] not found"}))
        );
        assert_eq!(
            get_json(&router, "/v1/healthcheck/upstreams").await,
            (404, json!({"error_msg": "missing src id for src type upstreams"}))
        );
    }
}
