//! The layer under a real subscriber: ids, parents, the incoming
//! `traceparent`, sampling, the bounded queue, and spans that stay off
//! without the layer.

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tracing::field::Empty;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

fn with_layer<R>(capacity: usize, f: impl FnOnce() -> R) -> (R, Vec<FinishedSpan>, u64) {
    let (tx, mut rx) = mpsc::channel(capacity);
    let dropped = Counter::default();
    let layer = SpanLayer::new(tx, dropped.clone());
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(span_filter()));
    let r = tracing::subscriber::with_default(subscriber, f);
    let mut spans = Vec::new();
    while let Ok(s) = rx.try_recv() {
        spans.push(s);
    }
    (r, spans, dropped.get())
}

fn attr<'a>(s: &'a FinishedSpan, key: &str) -> Option<&'a Value> {
    s.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

#[test]
fn a_root_span_and_its_child_share_a_trace_and_carry_their_fields() {
    let ((root_ids, child_ids), spans, dropped) = with_layer(16, || {
        let root = tracing::info_span!(target: TARGET, parent: None, "test.root", otel.kind = "server", peer = %"192.0.2.7:5000", n = 3u64, late = Empty);
        let child = tracing::info_span!(target: TARGET, parent: &root, "test.child", otel.kind = "client", otel.status_code = Empty);
        root.record("late", "recorded at the end");
        child.record("otel.status_code", "ERROR");
        let ids = (span_ids(&root).expect("root ids"), span_ids(&child).expect("child ids"));
        drop(child);
        drop(root);
        ids
    });
    assert_eq!(dropped, 0);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (child, root) = (&spans[0], &spans[1]);
    assert_eq!((root.name, child.name), ("test.root", "test.child"));
    assert_eq!(root.trace_id, child.trace_id);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert!(!child.remote_parent);
    assert_eq!((root.kind, child.kind), (SpanKind::Server, SpanKind::Client));
    assert_eq!((root.status, child.status), (StatusCode::Unset, StatusCode::Error));
    assert_eq!(attr(root, "peer"), Some(&Value::Str("192.0.2.7:5000".into())));
    assert_eq!(attr(root, "n"), Some(&Value::Int(3)));
    assert_eq!(attr(root, "late"), Some(&Value::Str("recorded at the end".into())));
    assert_eq!(attr(root, "otel.kind"), None, "steering fields are not attributes");
    assert!(root.start_unix_nanos <= child.start_unix_nanos && child.end_unix_nanos <= root.end_unix_nanos);
    assert!(root.start_unix_nanos > 1_600_000_000_000_000_000, "wall-clock nanoseconds");
    assert_eq!((root_ids.trace_id, root_ids.span_id), (root.trace_id, root.span_id));
    assert_eq!(child_ids.span_id, child.span_id);
    assert_eq!(child_ids.traceparent(), format!("00-{}-{}-01", child.trace_id, child.span_id));
}

#[test]
fn an_incoming_traceparent_is_continued_and_its_decision_kept() {
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // The caller's decision records this trace (whatever the ratio of new ones).
    let (ids, spans, _) = with_layer(16, || {
        let root = tracing::info_span!(target: TARGET, parent: None, "test.request", traceparent = incoming, tracestate = "congo=t61rcWkgMzE");
        let child = tracing::info_span!(target: TARGET, parent: &root, "test.fetch");
        span_ids(&child).expect("ids")
    });
    assert_eq!(spans.len(), 2);
    let (child, root) = (&spans[0], &spans[1]);
    assert_eq!(root.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(root.parent_span_id.map(|p| p.to_string()).as_deref(), Some("00f067aa0ba902b7"));
    assert!(root.remote_parent);
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(attr(root, "traceparent"), None, "the header is not repeated as an attribute");
    assert_eq!(ids.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
    assert!(ids.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));

    // An unsampled caller: nothing recorded, yet the ids travel on (flag 00).
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (ids, spans, _) = with_layer(16, || {
        let root = tracing::info_span!(target: TARGET, parent: None, "test.request", traceparent = unsampled);
        span_ids(&root).expect("ids")
    });
    assert!(spans.is_empty());
    assert!(!ids.sampled && ids.traceparent().ends_with("-00"));

    // A malformed header starts a trace of its own.
    let (ids, spans, _) = with_layer(16, || {
        let root = tracing::info_span!(target: TARGET, parent: None, "test.request", traceparent = "00-bogus");
        span_ids(&root).expect("ids")
    });
    assert_eq!(spans.len(), 1);
    assert_ne!(ids.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(spans[0].parent_span_id, None);
}

#[test]
fn an_unsampled_callers_trace_records_nothing_but_keeps_its_ids_down_the_tree() {
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (ids, spans, dropped) = with_layer(16, || {
        let root = tracing::info_span!(target: TARGET, parent: None, "test.root", traceparent = unsampled, x = 1u64);
        let child = tracing::info_span!(target: TARGET, parent: &root, "test.child");
        (span_ids(&root).expect("root"), span_ids(&child).expect("child"))
    });
    assert!(spans.is_empty() && dropped == 0);
    assert_eq!(ids.0.trace_id, ids.1.trace_id);
    assert!(!ids.0.sampled && !ids.1.sampled);
    assert!(ids.1.traceparent().ends_with("-00"));
}

#[test]
fn new_traces_are_opened_only_once_recording_is_on_and_by_ratio() {
    // One test owns the process-wide sampler (tests run in threads).
    assert!(!recording() && !sample_new_trace(), "off until the binary turns export on");
    record_new_traces(Sampler::ratio(0.25));
    assert!(recording());
    let kept = (0..20_000).filter(|_| sample_new_trace()).count();
    assert!((4_500..=5_500).contains(&kept), "{kept}");
    record_new_traces(Sampler::ratio(0.0));
    assert!(recording(), "continued traces are still recorded");
    assert!(!(0..1000).any(|_| sample_new_trace()));
    record_new_traces(Sampler::ratio(1.0));
    assert!((0..1000).all(|_| sample_new_trace()));
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (_, spans, dropped) = with_layer(2, || {
        for _ in 0..5 {
            drop(tracing::info_span!(target: TARGET, parent: None, "test.root"));
        }
    });
    assert_eq!((spans.len(), dropped), (2, 3));
}

#[test]
fn long_strings_are_cut_at_a_character_boundary() {
    let long = "é".repeat(layer::MAX_ATTRIBUTE_BYTES);
    let (_, spans, _) = with_layer(2, || {
        drop(tracing::info_span!(target: TARGET, parent: None, "test.root", path = long.as_str(), shown = %long));
    });
    for key in ["path", "shown"] {
        let Some(Value::Str(s)) = attr(&spans[0], key) else { panic!("{key}: {spans:?}") };
        assert!(s.len() <= layer::MAX_ATTRIBUTE_BYTES && s.len() >= layer::MAX_ATTRIBUTE_BYTES - 1, "{}", s.len());
        assert!(s.chars().all(|c| c == 'é'));
    }
}

#[test]
fn without_the_layer_the_spans_are_off_and_the_log_never_shows_them() {
    let writer = SharedBuf::default();
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer.clone()).with_ansi(false);
    let subscriber = tracing_subscriber::registry().with(fmt.with_filter(log_filter()));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(target: TARGET, parent: None, "test.root", secret = "not in the log");
        assert!(span.is_disabled());
        assert!(span_ids(&span).is_none());
        let _in = span.enter();
        tracing::info!(target: "shardgate::access", "an access line");
    });
    let text = writer.text();
    assert!(text.contains("an access line") && !text.contains("test.root"), "{text}");
}

/// A log writer whose output a test reads back.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer")).into_owned()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedBuf {
    type Writer = SharedBuf;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
