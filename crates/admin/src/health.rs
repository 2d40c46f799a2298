//! `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (config
//! loaded, listeners bound, not draining), on their own listener so that
//! probes and scrapes never need the admin key.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
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

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic
/// text format otherwise (curl, promtool), as the Go client library does.
async fn metrics_text(State(s): State<HealthState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let encoded = if openmetrics { s.metrics.encode_openmetrics() } else { s.metrics.encode_prometheus() };
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    match encoded {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
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
