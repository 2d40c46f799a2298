//! Tracing: the spans the data plane opens (one per stream connection, UDP
//! session, edge request and origin fetch) and their recording for export
//! to an OpenTelemetry collector. The spans are ordinary `tracing` spans of
//! target [`TARGET`]; [`SpanLayer`] is the only subscriber layer that
//! enables that target, and only when export is configured. Without it the
//! spans are disabled at their callsite (one cached check, no allocation),
//! and the log output never shows them (see [`log_filter`]).
//!
//! # Layout
//! - [`context`]: W3C Trace Context: ids, `traceparent`, `tracestate`, the ratio sampler.
//! - [`layer`]: [`SpanLayer`], which records spans and queues the finished ones (bounded).
//! - [`otlp`]: the OTLP/HTTP JSON body of a batch.
//!
//! Sending the batches (HTTP, retries, metrics) is the binary's job: this
//! crate does no I/O.

pub mod context;
pub mod layer;
pub mod otlp;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

pub use context::{Sampler, SpanId, TraceId, TraceParent};
pub use layer::{FinishedSpan, SpanIds, SpanKind, SpanLayer, StatusCode, Value, span_ids};

/// The target of every exported span. Spans are opened at `INFO`.
pub const TARGET: &str = "shardgate::span";

/// The per-layer filter of [`SpanLayer`]: this crate's spans and nothing else.
pub fn span_filter() -> Targets {
    Targets::new().with_target(TARGET, LevelFilter::INFO)
}

/// A filter that lets everything through but [`TARGET`], combined with the
/// log filter: the log never shows the spans, and, above all, a log level
/// of `info` does not enable them, so with export off they stay disabled
/// at their callsite instead of being built for nothing on every
/// connection and request.
pub fn log_filter() -> Targets {
    Targets::new().with_default(LevelFilter::TRACE).with_target(TARGET, LevelFilter::OFF)
}

#[cfg(test)]
mod tests;
