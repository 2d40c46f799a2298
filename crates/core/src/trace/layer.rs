//! [`SpanLayer`]: a `tracing_subscriber` layer that turns the spans of
//! target [`TARGET`](super::TARGET) into finished OpenTelemetry spans.
//!
//! ```text
//! new span  -> ids: the parent span's trace and decision (same process),
//!              else the `traceparent` field's (a viewer's W3C header: its
//!              trace, its sampled flag), else a new trace, recorded (the
//!              data path opens a new trace's first span only when
//!              `sample_new_trace` said so); a new span id
//!           -> sampled: start time and fields recorded (strings cut at
//!              MAX_ATTRIBUTE_BYTES); otherwise ids only (they still travel
//!              in `traceparent`, flag 00)
//! record    -> fields recorded (sampled spans only)
//! close     -> end time; sampled spans go into the bounded queue with
//!              try_send: never waits; a full queue drops the span and counts it
//! ```
//!
//! The data path never waits on the exporter, and never logs from here (a
//! log line inside a subscriber callback would re-enter the subscriber):
//! drops are counted, and the exporter task reports them.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::context::{FLAG_SAMPLED, IdGenerator, SpanId, TraceId, TraceParent, checked_tracestate};

/// Longest string attribute kept, in bytes (cut at a character boundary).
/// With at most 32 fields a span (tracing's bound per callsite) and the
/// `tracestate` bound, a span encodes to about 34 KiB at most, so a batch of
/// 512 (the largest `tracing.batch_size`) stays under the 20 MiB request
/// limit OTLP receivers commonly apply.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// Field names that steer the span instead of becoming attributes (the
/// names `tracing-opentelemetry` uses for the first three).
const KIND_FIELD: &str = "otel.kind";
const STATUS_FIELD: &str = "otel.status_code";
const STATUS_MESSAGE_FIELD: &str = "otel.status_message";
/// A W3C `traceparent` value to continue (edge requests set it from the
/// viewer's header).
pub const TRACEPARENT_FIELD: &str = "traceparent";
/// The `tracestate` that came with it.
pub const TRACESTATE_FIELD: &str = "tracestate";

/// OpenTelemetry's span kinds (the numbers are OTLP's `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An operation inside the gateway.
    Internal = 1,
    /// Serving a remote caller (a player's connection, a viewer's request).
    Server = 2,
    /// Calling a remote service (an origin).
    Client = 3,
}

/// OpenTelemetry's span status (the numbers are OTLP's `StatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// Nothing said (the default: a span is not an error unless marked).
    Unset = 0,
    /// Marked successful.
    Ok = 1,
    /// Marked failed.
    Error = 2,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (at most [`MAX_ATTRIBUTE_BYTES`]).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A floating-point number.
    Double(f64),
}

/// A finished, sampled span, as the exporter sends it.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// The parent span, in this process or the caller's (`traceparent`).
    pub parent_span_id: Option<SpanId>,
    /// Whether the parent is remote (it came in a `traceparent`).
    pub remote_parent: bool,
    /// W3C `trace-flags`.
    pub flags: u8,
    /// The `tracestate` that came with the trace, passed on unchanged.
    pub trace_state: Option<Arc<str>>,
    /// The span's name (`stream.connection`, `edge.request`, ...).
    pub name: &'static str,
    /// Server, client or internal.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// The fields recorded, in order.
    pub attributes: Vec<(&'static str, Value)>,
    /// Status.
    pub status: StatusCode,
    /// Status message (errors).
    pub status_message: Option<String>,
}

/// What the layer keeps in a span's extensions.
struct SpanState {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    trace_state: Option<Arc<str>>,
    /// `Some` only for sampled spans.
    recording: Option<Box<Recording>>,
}

struct Recording {
    name: &'static str,
    parent: Option<SpanId>,
    remote_parent: bool,
    start_unix_nanos: u64,
    started: Instant,
    kind: SpanKind,
    status: StatusCode,
    status_message: Option<String>,
    attributes: Vec<(&'static str, Value)>,
}

/// The ids a span carries, for propagation and logs.
#[derive(Debug, Clone)]
pub struct SpanIds {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// Recorded (and exported) or not.
    pub sampled: bool,
    /// The `tracestate` to pass on with it.
    pub trace_state: Option<Arc<str>>,
}

impl SpanIds {
    /// The `traceparent` that makes this span the parent of a callee's.
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { FLAG_SAMPLED } else { 0 };
        TraceParent { trace_id: self.trace_id, parent_id: self.span_id, flags }.header()
    }
}

/// Records the spans of [`TARGET`](super::TARGET) and queues the finished,
/// sampled ones for the exporter (see the module's flow).
pub struct SpanLayer {
    ids: IdGenerator,
    queue: mpsc::Sender<FinishedSpan>,
    dropped: Counter,
}

impl std::fmt::Debug for SpanLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanLayer").finish_non_exhaustive()
    }
}

impl SpanLayer {
    /// A layer that queues finished spans on `queue` (bounded: its capacity
    /// is the queue limit) and counts a span it could not queue in
    /// `dropped`. Which new traces are recorded is decided before their
    /// first span opens ([`super::sample_new_trace`]).
    pub fn new(queue: mpsc::Sender<FinishedSpan>, dropped: Counter) -> Self {
        SpanLayer { ids: IdGenerator::default(), queue, dropped }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Cuts `s` to at most [`MAX_ATTRIBUTE_BYTES`] at a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_ATTRIBUTE_BYTES {
        let mut end = MAX_ATTRIBUTE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Reads only `traceparent` and `tracestate` (cheap: every other value is
/// skipped without being formatted).
#[derive(Default)]
struct Incoming {
    parent: Option<TraceParent>,
    state: Option<Arc<str>>,
}

impl Visit for Incoming {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            TRACEPARENT_FIELD => self.parent = TraceParent::parse(value.trim()),
            TRACESTATE_FIELD => self.state = checked_tracestate(value).map(Arc::from),
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl Recording {
    fn set(&mut self, name: &'static str, value: Value) {
        match name {
            TRACEPARENT_FIELD | TRACESTATE_FIELD => {}
            KIND_FIELD => {
                if let Value::Str(s) = &value {
                    self.kind = match s.to_ascii_lowercase().as_str() {
                        "server" => SpanKind::Server,
                        "client" => SpanKind::Client,
                        _ => SpanKind::Internal,
                    };
                }
            }
            STATUS_FIELD => {
                if let Value::Str(s) = &value {
                    self.status = match s.to_ascii_lowercase().as_str() {
                        "error" => StatusCode::Error,
                        "ok" => StatusCode::Ok,
                        _ => StatusCode::Unset,
                    };
                }
            }
            STATUS_MESSAGE_FIELD => {
                if let Value::Str(s) = value {
                    self.status_message = Some(s);
                }
            }
            _ => match self.attributes.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => self.attributes.push((name, value)),
            },
        }
    }
}

impl Visit for Recording {
    fn record_str(&mut self, field: &Field, value: &str) {
        let s = if value.len() > MAX_ATTRIBUTE_BYTES { bounded(value.to_owned()) } else { value.to_owned() };
        self.set(field.name(), Value::Str(s));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::Int(i64::try_from(value).unwrap_or(i64::MAX)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::Double(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; their Debug is their Display.
        self.set(field.name(), Value::Str(bounded(format!("{value:?}"))));
    }
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let local_parent = span.parent().and_then(|p| {
            let ext = p.extensions();
            ext.get::<SpanState>().map(|s| (s.trace_id, s.span_id, s.flags, s.trace_state.clone()))
        });
        let (trace_id, parent, remote_parent, flags, trace_state) = match local_parent {
            Some((trace_id, parent, flags, state)) => (trace_id, Some(parent), false, flags, state),
            None => {
                let mut incoming = Incoming::default();
                attrs.record(&mut incoming);
                match incoming.parent {
                    Some(p) => (p.trace_id, Some(p.parent_id), true, p.flags, incoming.state),
                    None => (self.ids.trace_id(), None, false, FLAG_SAMPLED, None),
                }
            }
        };
        let recording = (flags & FLAG_SAMPLED != 0).then(|| {
            let meta: &Metadata<'_> = attrs.metadata();
            let mut r = Box::new(Recording {
                name: meta.name(),
                parent,
                remote_parent,
                start_unix_nanos: unix_nanos(SystemTime::now()),
                started: Instant::now(),
                kind: SpanKind::Internal,
                status: StatusCode::Unset,
                status_message: None,
                attributes: Vec::with_capacity(meta.fields().len()),
            });
            attrs.record(r.as_mut());
            r
        });
        let state = SpanState { trace_id, span_id: self.ids.span_id(), flags, trace_state, recording };
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(r) = ext.get_mut::<SpanState>().and_then(|s| s.recording.as_mut()) {
            values.record(r.as_mut());
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else { return };
        let Some(r) = state.recording else { return };
        let elapsed = u64::try_from(r.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let finished = FinishedSpan {
            trace_id: state.trace_id,
            span_id: state.span_id,
            parent_span_id: r.parent,
            remote_parent: r.remote_parent,
            flags: state.flags,
            trace_state: state.trace_state,
            name: r.name,
            kind: r.kind,
            start_unix_nanos: r.start_unix_nanos,
            end_unix_nanos: r.start_unix_nanos.saturating_add(elapsed),
            attributes: r.attributes,
            status: r.status,
            status_message: r.status_message,
        };
        // Full (the exporter is behind) or closed (it stopped): drop, count.
        if self.queue.try_send(finished).is_err() {
            self.dropped.inc();
        }
    }
}

/// The ids of `span`, when it is one [`SpanLayer`] records (export on);
/// `None` for a disabled span or another subscriber.
pub fn span_ids(span: &tracing::Span) -> Option<SpanIds> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span(id)?;
        let ext = data.extensions();
        let s = ext.get::<SpanState>()?;
        Some(SpanIds {
            trace_id: s.trace_id,
            span_id: s.span_id,
            sampled: s.flags & FLAG_SAMPLED != 0,
            trace_state: s.trace_state.clone(),
        })
    })
    .flatten()
}
