//! What a connection's span costs the data path: opened as the stream plane
//! opens it, eight fields recorded at close, then dropped. Three set-ups:
//! export off (the log filter at `info`, no span layer: the default),
//! export on with every trace sampled, and export on with none sampled
//! (`sample_ratio: 0`). The exporter's side (encoding, HTTP) is not
//! on the data path and not measured here.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use prometheus_client::metrics::counter::Counter;
use shardgate_core::trace::{Sampler, SpanLayer, TARGET, log_filter, record_new_traces, span_filter};
use tracing::Span;
use tracing::field::Empty;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `stream.connection` as crates/stream/src/trace.rs opens it.
fn connection(listener: &str, peer: SocketAddr) -> Span {
    if !shardgate_core::trace::sample_new_trace() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "stream.connection",
        otel.kind = "server",
        otel.status_code = Empty,
        network.transport = "tcp",
        shardgate.listener = listener,
        client.address = %peer.ip(),
        client.port = peer.port(),
        network.local.port = 8888u16,
        network.peer.address = Empty,
        server.address = Empty,
        shardgate.route = Empty,
        shardgate.mode = Empty,
        shardgate.upstream.node = Empty,
        shardgate.generation = Empty,
        shardgate.bytes_from_client = Empty,
        shardgate.bytes_to_client = Empty,
        shardgate.close_reason = Empty,
    )
}

fn one_connection(peer: SocketAddr) {
    let span = connection("tls/0.0.0.0:8888", peer);
    if !span.is_disabled() {
        span.record("server.address", "gs-1.example.com");
        span.record("shardgate.route", "r1");
        span.record("shardgate.upstream.node", "192.0.2.10:9000");
        span.record("shardgate.mode", "tls");
        span.record("shardgate.generation", 42u64);
        span.record("shardgate.bytes_from_client", 1234u64);
        span.record("shardgate.bytes_to_client", 5678u64);
        span.record("shardgate.close_reason", "client_closed");
    }
    black_box(&span);
}

fn fmt_layer() -> impl Layer<tracing_subscriber::Registry> {
    let filter = EnvFilter::new("info").and(log_filter());
    tracing_subscriber::fmt::layer().with_writer(std::io::sink).with_filter(filter)
}

fn bench(c: &mut Criterion) {
    let peer: SocketAddr = "203.0.113.7:51000".parse().expect("addr");

    let off = tracing_subscriber::registry().with(fmt_layer());
    tracing::subscriber::with_default(off, || {
        c.bench_function("connection span, export off", |b| b.iter(|| one_connection(black_box(peer))));
    });

    for (name, ratio) in
        [("connection span, export on, sampled", 1.0), ("connection span, export on, not sampled", 0.0)]
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
        let layer = SpanLayer::new(tx, Counter::default());
        record_new_traces(Sampler::ratio(ratio));
        let on = tracing_subscriber::registry().with(fmt_layer()).with(layer.with_filter(span_filter()));
        tracing::subscriber::with_default(on, || {
            c.bench_function(name, |b| {
                // The exporter's receive happens outside the measurement.
                b.iter_batched(
                    || while rx.try_recv().is_ok() {},
                    |()| one_connection(black_box(peer)),
                    BatchSize::SmallInput,
                )
            });
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
