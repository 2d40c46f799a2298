//! Tracing: the spans the data plane opens (one per stream connection, UDP
//! session, edge request and origin fetch) and their recording for export
//! to an OpenTelemetry collector. The spans are ordinary `tracing` spans of
//! target [`TARGET`]; [`SpanLayer`] is the only subscriber layer that
//! enables that target, and only when export is configured. The data path
//! asks [`sample_new_trace`] before it opens a new trace's first span: with
//! export off, or for a trace the ratio leaves out, it opens none
//! (`Span::none()`, nothing built or recorded). A span that would still
//! reach a callsite without the layer is disabled there (one cached check),
//! and the log output never shows these spans (see [`log_filter`]).
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

pub use context::{Sampler, SpanId, TraceId, TraceParent};
pub use layer::{FinishedSpan, SpanIds, SpanKind, SpanLayer, StatusCode, Value, span_ids};

/// The target of every exported span. Spans are opened at `INFO`.
pub const TARGET: &str = "shardgate::span";

/// The sampler of new traces, process-wide (its threshold): records
/// nothing until the binary turns export on with [`record_new_traces`].
static NEW_TRACES: AtomicU64 = AtomicU64::new(0);

/// Whether export is on: continued traces are then recorded as their caller
/// decided, whatever the ratio of new ones.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Turns recording on: a `sampler` share of new traces is recorded from now
/// on. The binary calls it once, when it installs [`SpanLayer`].
pub fn record_new_traces(sampler: Sampler) {
    NEW_TRACES.store(sampler.threshold(), Ordering::Relaxed);
    RECORDING.store(true, Ordering::Relaxed);
}

/// Whether the data path opens the root span of a new trace (a connection,
/// a UDP session, a request without a caller's `traceparent`): one atomic
/// load and, below a ratio of 1, one random draw. `false` while export is
/// off, so the span is then never built: `Span::none()` costs nothing.
pub fn sample_new_trace() -> bool {
    let threshold = NEW_TRACES.load(Ordering::Relaxed);
    threshold != 0 && Sampler::from_threshold(threshold).sample(context::random_u64())
}

/// Whether spans are recorded at all (export on): for a span that
/// continues a caller's trace, whose decision is the caller's.
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

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
