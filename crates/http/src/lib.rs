//! shardgate-http owns the L7 data plane, the game-resource edge: HTTP/1.1
//! and HTTP/2 listeners (plain, or TLS with certificates chosen by SNI), the
//! request pipeline (distribution by host, canary variant, behavior by path
//! pattern, channel rewrite, cache key, cache lookup with coalescing, origin
//! fetch) and the edge metrics.
//!
//! # Layout
//! - [`listener`]: accept loop, TLS by SNI with ALPN, hyper server, drain.
//! - `streams`: an HTTP/2 connection's streams run in the connection's task, so one write carries many responses.
//! - [`service`]: the edge service and each request's entry (span, access log, responses metric).
//! - [`pipeline`]: the request's phases, route to respond, one file per phase or group of close phases.
//! - [`canary`]: which side of a continuous deployment policy serves a request. Pure.
//! - [`key`]: channel rewrite, cache key, forwarded query and cookies. Pure.
//! - [`compress`]: `Accept-Encoding` normalisation, what the edge compresses, gzip and brotli. Pure.
//! - [`origin`]: one request to an origin through its upstream runtime.
//! - [`body`]: response bodies (cached fill windows, pass-through).
//! - [`metrics`]: the `shardgate_edge_*` families.
//! - [`access_log`]: one line per request, in CloudFront's standard-log fields.
//! - [`trace`]: the spans of requests and origin fetches; W3C `traceparent` in and out.

pub mod access_log;
pub mod body;
pub mod canary;
pub mod compress;
pub mod key;
pub mod listener;
pub mod metrics;
pub mod origin;
pub mod pipeline;
pub mod service;
mod streams;
pub mod trace;
pub mod warm;

pub use access_log::{AccessLog, AccessLogFormat, AccessLogSettings};
pub use listener::{HttpListenerSpec, HttpSettings, serve};
pub use metrics::EdgeMetrics;
pub use pipeline::ViewerBody;
pub use service::{ConnInfo, EdgeService, VARIANT_HEADER, purge_invalidated};
