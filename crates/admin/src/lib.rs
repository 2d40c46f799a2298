//! shardgate-admin serves the Admin API and the health and metrics endpoints.
//!
//! The Admin API speaks APISIX's Admin API v3 for `ssls`, `upstreams` and
//! `stream_routes` (paths, `X-API-KEY`, status codes, `{"key","value"}` and
//! `{"total","list"}` envelopes, `{"error_msg"}` errors), so a studio's
//! scripts work unchanged. Every write is validated by `shardgate-model`
//! before it reaches the store; a rejected write changes nothing.
//!
//! # Layout
//! - [`api`]: [`router`], the resource handlers, [`AdminState`].
//! - [`error`]: [`ApiError`], APISIX-shaped error responses.
//! - [`auth`]: the API-key and dashboard-session check.
//! - [`dashboard`]: the dashboard's sign-in, sessions and `/ui/api/*`.
//! - [`patch`]: JSON merge patch and sub-path replacement for PATCH.
//! - [`health`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`control`]: APISIX's Control API `/v1/healthcheck` (health checkers'
//!   status), on the same listener.
//! - [`mod@serve`]: HTTP/1.1 serving with bounded connections and head time
//!   (for the Admin API and the metrics listener alike).
//! - [`ui`]: the web dashboard's static files under `/ui/`, embedded in the
//!   binary and served on the Admin listener without a key.

pub mod api;
pub mod auth;
pub mod control;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod patch;
pub mod serve;
pub mod ui;

pub use api::warm::{WarmFuture, WarmOutcome, WarmVariant, Warmer};
pub use api::{AdminState, router};
pub use control::{HealthcheckStatus, healthcheck_router};
pub use error::ApiError;
pub use health::health_router;
pub use serve::{ServeSettings, serve};
