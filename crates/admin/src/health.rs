//! `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (config
//! loaded, listeners bound, not draining), on their own listener so that
//! probes and scrapes never need the admin key.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shardgate_core::{Health, Metrics};

#[derive(Clone)]
struct HealthState {
    health: Arc<Health>,
    metrics: Metrics,
}

/// The router of the health and metrics listener.
pub fn health_router(health: Arc<Health>, metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HealthState { health, metrics })
}

async fn metrics_text(State(s): State<HealthState>) -> Response {
    match s.metrics.encode() {
        Ok(text) => (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn ready(State(s): State<HealthState>) -> Response {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", why.as_str())).into_response(),
    }
}
