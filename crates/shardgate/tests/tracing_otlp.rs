//! Trace export over OTLP/HTTP through the real binary: a player's TLS
//! connection, a UDP session and edge requests (a miss with its origin
//! fetch, then a hit) reach a collector (`OtlpReceiver`) as linked spans;
//! a viewer's `traceparent` is continued and handed to the origin; a
//! collector that is down or stuck costs the traffic nothing; with export
//! off nothing is sent anywhere.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::otlp::ReceivedSpan;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::udp::free_port;
use shardgate_e2e::{
    GameServer, Gateway, OriginFile, OtlpReceiver, TestCert, TestOrigin, TlsClient, UdpClient, UdpGameServer,
    eventually,
};

const HOST: &str = "assets.example.com";
const SNI: &str = "gs-1.example.com";
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_PARENT: &str = "00f067aa0ba902b7";

/// `tracing:` pointing at `endpoint`, batches sent every 100 ms.
fn tracing_yaml(endpoint: &str, extra: &str) -> String {
    tracing_yaml_every(endpoint, "100ms", extra)
}

fn tracing_yaml_every(endpoint: &str, interval: &str, extra: &str) -> String {
    format!(
        "tracing:\n  otlp:\n    endpoint: \"{endpoint}\"\n    headers:\n      x-tenant: game-ops\n  service_name: edge-test\n  export_interval: {interval}\n{extra}"
    )
}

/// A TLS route to a game server; one roundtrip through it, then closed.
async fn play(gw: &Gateway, gs: &GameServer) {
    drop(connect(gw, gs).await);
}

/// A TLS route to a game server and a player connected through it (one roundtrip done).
async fn connect(gw: &Gateway, gs: &GameServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&[SNI]).ssl_body(&[SNI])).await;
    admin.put_ok("/apisix/admin/stream_routes/r1", &json!({"sni": SNI, "upstream": {"nodes": {gs.node(): 1}}})).await;
    let client = TlsClient::default();
    let addr = gw.tls_addr();
    let mut s = eventually(5, "routed", || async { client.connect(addr, Some(SNI)).await.ok() }).await;
    assert_eq!(roundtrip(&mut s, "hello").await, "[gs] hello");
    s
}

/// A distribution in front of `origin`, live on the edge.
async fn distribution(gw: &Gateway, origin: &TestOrigin) -> SocketAddr {
    let body = json!({
        "hosts": [HOST],
        "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
        "default_behavior": {}
    });
    gw.admin().put_ok("/apisix/admin/distributions/assets", &body).await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
    edge
}

fn one<'a>(spans: &'a [ReceivedSpan], what: &str, pick: impl Fn(&ReceivedSpan) -> bool) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} among {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_sessions_and_requests_reach_the_collector_as_linked_spans() {
    let receiver = OtlpReceiver::start().await;
    // The first export is answered 503: it is tried again, and nothing is lost.
    receiver.answer_next(&[503]);
    let udp = free_port("127.0.0.1");
    let gw = gateway()
        .edge_http(1)
        .stream_yaml(&format!("  udp: [\"{udp}\"]\n  udp_idle_timeout: 1s"))
        .yaml(&tracing_yaml(&receiver.endpoint(), ""))
        .spawn()
        .await;

    // A player on the TLS port, and one on UDP.
    let gs = GameServer::start("gs").await;
    play(&gw, &gs).await;
    let ugs = UdpGameServer::start("udp-1").await;
    let route = json!({"server_port": udp.port(), "upstream": {"scheme": "udp", "nodes": {ugs.node(): 1}}});
    gw.admin().put_ok("/apisix/admin/stream_routes/u1", &route).await;
    let player = UdpClient::new().await;
    let reply = eventually(5, "UDP routed", || async { player.roundtrip(udp, "ping").await }).await;
    assert_eq!(reply, "[udp-1] ping");

    // A viewer continuing its own trace: a miss (origin fetch), then a hit.
    let origin =
        TestOrigin::start(vec![("/asset.bin", OriginFile::new("asset-bytes").cache_control("max-age=600"))]).await;
    let edge = distribution(&gw, &origin).await;
    let traceparent = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-01");
    let viewer = [("traceparent", traceparent.as_str()), ("tracestate", "congo=t61rcWkgMzE")];
    let (status, headers, body) = get(edge, HOST, "/asset.bin?v=2&token=s3cr3t", &viewer).await;
    assert_eq!((status, headers.get("x-cache").map(String::as_str)), (200, Some("Miss from shardgate")));
    assert_eq!(&body[..], b"asset-bytes");
    let (status, headers, _) = get(edge, HOST, "/asset.bin?v=2&token=s3cr3t", &[]).await;
    assert_eq!((status, headers.get("x-cache").map(String::as_str)), (200, Some("Hit from shardgate")));

    let spans = eventually(15, "every span exported", || async {
        let spans = receiver.spans();
        let n = |name: &str, path: Option<&str>| {
            spans
                .iter()
                .filter(|s| s.name() == name && (path.is_none() || s.str("url.path").as_deref() == path))
                .count()
        };
        let conn =
            spans.iter().any(|s| s.name() == "stream.connection" && s.str("shardgate.route").as_deref() == Some("r1"));
        let session = spans.iter().any(|s| s.name() == "stream.udp_session");
        (conn && session && n("edge.request", Some("/asset.bin")) == 2 && n("edge.origin", Some("/asset.bin")) == 1)
            .then_some(spans)
    })
    .await;

    // The TLS connection: who, where, through what, how much, how it ended.
    let conn = one(&spans, "r1 connection", |s| {
        s.name() == "stream.connection" && s.str("shardgate.route").as_deref() == Some("r1")
    });
    assert_eq!(conn.kind(), 2, "server span");
    assert_eq!(conn.parent_span_id(), None);
    assert_eq!(conn.str("server.address").as_deref(), Some(SNI));
    assert_eq!(conn.str("shardgate.listener"), Some(format!("tls/{}", gw.tls_addr())));
    assert_eq!(conn.str("shardgate.upstream.node"), Some(gs.node()));
    assert_eq!(conn.str("client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(conn.str("network.transport").as_deref(), Some("tcp"));
    assert_eq!(conn.str("shardgate.mode").as_deref(), Some("tls"));
    assert_eq!(conn.int("shardgate.bytes_from_client"), Some(5));
    assert_eq!(conn.int("shardgate.bytes_to_client"), Some(10));
    assert_eq!(conn.str("shardgate.close_reason").as_deref(), Some("client_closed"));
    assert_eq!(conn.status_code(), 0, "a player leaving is no error");
    let (start, end) = conn.times();
    assert!(start > 0 && end >= start);

    let session = one(&spans, "UDP session", |s| s.name() == "stream.udp_session");
    assert_eq!(session.str("shardgate.route").as_deref(), Some("u1"));
    assert_eq!(session.str("shardgate.listener"), Some(format!("udp/{udp}")));
    assert_eq!(session.str("shardgate.upstream.node"), Some(ugs.node()));
    assert_eq!(session.str("network.transport").as_deref(), Some("udp"));
    assert!(session.int("shardgate.datagrams_from_client").is_some_and(|n| n >= 1));
    assert!(session.int("shardgate.bytes_to_client").is_some_and(|n| n >= "[udp-1] ping".len() as i64));
    assert_eq!(session.str("shardgate.close_reason").as_deref(), Some("idle_timeout"));

    // The miss continues the viewer's trace; the path has no query values.
    let requests: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name() == "edge.request" && s.str("url.path").as_deref() == Some("/asset.bin"))
        .collect();
    let asset = |s: &ReceivedSpan, name: &str| s.name() == name && s.str("url.path").as_deref() == Some("/asset.bin");
    let miss = one(&spans, "miss", |s| asset(s, "edge.request") && s.str("shardgate.cache").as_deref() == Some("miss"));
    assert_eq!(miss.trace_id(), INCOMING_TRACE);
    assert_eq!(miss.parent_span_id(), Some(INCOMING_PARENT));
    assert_eq!(miss.span["traceState"], "congo=t61rcWkgMzE");
    assert_eq!(miss.kind(), 2);
    assert_eq!(miss.str("http.request.method").as_deref(), Some("GET"));
    assert_eq!(miss.str("server.address").as_deref(), Some(HOST));
    assert_eq!(miss.int("http.response.status_code"), Some(200));
    assert_eq!(miss.str("shardgate.distribution").as_deref(), Some("assets"));
    assert_eq!(miss.str("shardgate.variant").as_deref(), Some("primary"));
    assert_eq!(miss.str("shardgate.behavior").as_deref(), Some("default"));
    for r in &requests {
        for key in r.keys() {
            assert!(!r.str(&key).unwrap_or_default().contains("s3cr3t"), "{key} holds a query value: {r:?}");
        }
    }

    // The origin fetch is the miss's child, and the origin was told so.
    let fetch = one(&spans, "origin fetch", |s| asset(s, "edge.origin"));
    assert_eq!(fetch.trace_id(), INCOMING_TRACE);
    assert_eq!(fetch.parent_span_id(), Some(miss.span_id()));
    assert_eq!(fetch.kind(), 3, "client span");
    assert_eq!(fetch.str("shardgate.origin").as_deref(), Some("o"));
    assert_eq!(fetch.str("server.address").as_deref(), Some(HOST));
    assert_eq!(fetch.str("shardgate.upstream.node"), Some(origin.addr.to_string()));
    assert_eq!(fetch.int("http.response.status_code"), Some(200));
    let (miss_start, miss_end) = miss.times();
    let (fetch_start, fetch_end) = fetch.times();
    assert!(miss_start <= fetch_start && fetch_end <= miss_end, "the fetch lies within the request");
    let seen: std::collections::HashMap<String, String> = origin.last_headers("/asset.bin").into_iter().collect();
    assert_eq!(seen.get("traceparent"), Some(&format!("00-{INCOMING_TRACE}-{}-01", fetch.span_id())));
    assert_eq!(seen.get("tracestate").map(String::as_str), Some("congo=t61rcWkgMzE"));

    // The hit starts a trace of its own and fetches nothing.
    let hit = one(&spans, "hit", |s| asset(s, "edge.request") && s.str("shardgate.cache").as_deref() == Some("hit"));
    assert_ne!(hit.trace_id(), INCOMING_TRACE);
    assert_eq!(hit.parent_span_id(), None);
    assert!(!spans.iter().any(|s| s.parent_span_id() == Some(hit.span_id())));

    // Who sent them, and how.
    assert_eq!(conn.resource_str("service.name").as_deref(), Some("edge-test"));
    assert!(conn.resource_str("service.version").is_some() && conn.resource_str("service.instance.id").is_some());
    for r in receiver.requests() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-tenant"), Some("game-ops"));
    }
    let exported = gw.metric("shardgate_trace_spans_exported_total{result=\"success\"}").await;
    assert!(exported >= spans.len() as f64, "{exported} < {}", spans.len());
    assert_eq!(gw.metric("shardgate_trace_spans_exported_total{result=\"failure\"}").await, 0.0);
    assert_eq!(gw.metric("shardgate_trace_spans_dropped_total").await, 0.0);
    // The log shows no span (they are export-only).
    assert!(!gw.log().contains("edge.request"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_export_off_nothing_is_sent_and_the_sdk_environment_is_ignored() {
    let receiver = OtlpReceiver::start().await;
    // What an OpenTelemetry SDK would obey: shardgate exports only when its
    // bootstrap file says so.
    let gw = gateway()
        .edge_http(1)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{}", receiver.addr))
        .yaml("tracing:\n  service_name: not-exported\n  export_interval: 100ms\n")
        .spawn()
        .await;
    let gs = GameServer::start("gs").await;
    play(&gw, &gs).await;
    let origin =
        TestOrigin::start(vec![("/asset.bin", OriginFile::new("asset-bytes").cache_control("max-age=600"))]).await;
    let edge = distribution(&gw, &origin).await;
    let traceparent = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-01");
    let (status, _, _) = get(edge, HOST, "/asset.bin", &[("traceparent", traceparent.as_str())]).await;
    assert_eq!(status, 200);
    // Ten export intervals: an exporter would have sent by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.connections(), 0, "no connection to the collector address");
    let seen: std::collections::HashMap<String, String> = origin.last_headers("/asset.bin").into_iter().collect();
    assert!(!seen.contains_key("traceparent"), "the origin gets no trace header: {seen:?}");
    assert!(!gw.metrics_text().await.contains("shardgate_trace_spans"), "no export metrics without export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_refuses_or_is_stuck_costs_the_traffic_nothing() {
    // Down: nothing listens on the endpoint.
    let collector = shardgate_e2e::ports::free("127.0.0.1");
    let endpoint = format!("http://{collector}/v1/traces");
    let gw = gateway().edge_http(1).yaml(&tracing_yaml(&endpoint, "")).spawn().await;
    let gs = GameServer::start("gs").await;
    play(&gw, &gs).await;
    let file = || OriginFile::new("asset-bytes").cache_control("max-age=600");
    let origin = TestOrigin::start(vec![("/asset.bin", file()), ("/back.bin", file())]).await;
    let edge = distribution(&gw, &origin).await;
    assert_eq!(get(edge, HOST, "/asset.bin", &[]).await.0, 200);
    let failed = "shardgate_trace_spans_exported_total{result=\"failure\"}";
    // Three attempts (1 s, then 2 s apart, with jitter), then counted lost.
    let lost = eventually(30, "spans counted as failed", || async {
        let v = gw.metric(failed).await;
        (v >= 1.0).then_some(v)
    })
    .await;
    assert!(gw.log().contains("trace spans not exported"), "{}", gw.log());

    // The collector comes up on that address: later spans get through (a
    // miss: the request and its origin fetch). The exporter sends batches
    // in order, so once these are in, it has nothing older left.
    let receiver = OtlpReceiver::start_on(collector).await;
    assert_eq!(get(edge, HOST, "/back.bin", &[]).await.0, 200);
    let back = |name: &'static str| {
        let spans = receiver.spans();
        spans.iter().filter(|s| s.name() == name && s.str("url.path").as_deref() == Some("/back.bin")).count()
    };
    eventually(30, "spans after the collector is back", || async {
        (back("edge.request") == 1 && back("edge.origin") == 1).then_some(())
    })
    .await;

    // It refuses a batch (400): counted lost at once, never tried again.
    let lost_before = gw.metric(failed).await;
    assert!(lost_before >= lost);
    receiver.answer_next(&[400]);
    let (status, headers, _) = get(edge, HOST, "/back.bin", &[]).await;
    assert_eq!((status, headers.get("x-cache").map(String::as_str)), (200, Some("Hit from shardgate")), "one span");
    eventually(10, "the refused batch counted", || async { (gw.metric(failed).await > lost_before).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(back("edge.request"), 1, "the refused span was not sent again");

    // Stuck: a collector that never answers, a queue of 4. Traffic goes on;
    // the spans beyond the queue are dropped and counted.
    let stuck = OtlpReceiver::start().await;
    stuck.hang(true);
    let gw2 = gateway()
        .edge_http(1)
        .yaml(&tracing_yaml(&stuck.endpoint(), "  max_queue: 4\n  batch_size: 1\n"))
        .spawn()
        .await;
    let edge2 = distribution(&gw2, &origin).await;
    for _ in 0..20 {
        let (status, _, body) =
            tokio::time::timeout(Duration::from_secs(5), get(edge2, HOST, "/asset.bin", &[])).await.expect("served");
        assert_eq!((status, &body[..]), (200, &b"asset-bytes"[..]));
    }
    eventually(10, "dropped spans counted", || async {
        (gw2.metric("shardgate_trace_spans_dropped_total").await >= 1.0).then_some(())
    })
    .await;
    eventually(10, "the drop logged", || async { gw2.log().contains("export queue was full").then_some(()) }).await;
    assert!(stuck.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_connections_the_drain_cuts_are_sent_before_exit() {
    let receiver = OtlpReceiver::start().await;
    // A batch interval longer than the test: only the flush at stop sends.
    let mut gw = gateway().drain_timeout("1s").yaml(&tracing_yaml_every(&receiver.endpoint(), "10m", "")).spawn().await;
    let gs = GameServer::start("gs").await;
    let player = connect(&gw, &gs).await;
    gw.sigterm();
    assert!(gw.wait_exit(20).await.success(), "{}", gw.log());
    drop(player);
    let spans = receiver.spans();
    let cut = one(&spans, "the cut connection", |s| {
        s.name() == "stream.connection" && s.str("shardgate.route").as_deref() == Some("r1")
    });
    assert_eq!(cut.str("shardgate.close_reason").as_deref(), Some("drain"));
    assert_eq!(cut.int("shardgate.bytes_to_client"), Some(10));
}

/// A collector that asked to be retried in 30 s does not hold the exit up:
/// the stop ends the wait, the batch is tried once more at once, and the
/// drain's cut connection is flushed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_a_retry_wait_and_nothing_queued_is_lost() {
    let receiver = OtlpReceiver::start().await;
    receiver.retry_after(30);
    receiver.answer_next(&[503]);
    let mut gw =
        gateway().drain_timeout("1s").yaml(&tracing_yaml_every(&receiver.endpoint(), "100ms", "")).spawn().await;
    let gs = GameServer::start("gs").await;
    play(&gw, &gs).await;
    // The first batch (this player) was answered 503: the exporter now waits 30 s.
    eventually(10, "the first export answered", || async { (receiver.connections() >= 1).then_some(()) }).await;
    let player = connect(&gw, &gs).await;
    gw.sigterm();
    assert!(gw.wait_exit(20).await.success(), "{}", gw.log());
    drop(player);
    let spans = receiver.spans();
    let routed: Vec<_> = spans
        .iter()
        .filter(|s| s.name() == "stream.connection" && s.str("shardgate.route").as_deref() == Some("r1"))
        .collect();
    assert_eq!(routed.len(), 2, "the retried batch and the flushed one: {spans:#?}\n{}", gw.log());
    assert!(routed.iter().any(|s| s.str("shardgate.close_reason").as_deref() == Some("drain")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_of_zero_records_only_traces_their_callers_sampled() {
    let receiver = OtlpReceiver::start().await;
    let gw = gateway().edge_http(1).yaml(&tracing_yaml(&receiver.endpoint(), "  sample_ratio: 0\n")).spawn().await;
    let gs = GameServer::start("gs").await;
    play(&gw, &gs).await;
    let file = || OriginFile::new("asset-bytes").cache_control("no-store");
    let origin =
        TestOrigin::start(vec![("/new.bin", file()), ("/sampled.bin", file()), ("/unsampled.bin", file())]).await;
    let edge = distribution(&gw, &origin).await;
    let sampled = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-01");
    let unsampled = format!("00-{INCOMING_TRACE}-{INCOMING_PARENT}-00");
    assert_eq!(get(edge, HOST, "/new.bin", &[]).await.0, 200);
    assert_eq!(get(edge, HOST, "/unsampled.bin", &[("traceparent", unsampled.as_str())]).await.0, 200);
    assert_eq!(get(edge, HOST, "/sampled.bin", &[("traceparent", sampled.as_str())]).await.0, 200);
    let spans = eventually(10, "the sampled caller's spans", || async {
        let spans = receiver.spans();
        (spans.iter().filter(|s| s.trace_id() == INCOMING_TRACE).count() == 2).then_some(spans)
    })
    .await;
    // Batches go in order: anything of the earlier requests would be here by now.
    let paths: Vec<String> = spans.iter().filter_map(|s| s.str("url.path")).collect();
    assert!(paths.iter().all(|p| p == "/sampled.bin"), "only the sampled caller's request: {paths:?}");
    assert!(!spans.iter().any(|s| s.name().starts_with("stream.")), "no new trace: {spans:?}");
    // The unsampled caller's trace still reaches the origin, marked unsampled.
    let seen: std::collections::HashMap<String, String> = origin.last_headers("/unsampled.bin").into_iter().collect();
    let tp = seen.get("traceparent").expect("traceparent passed on");
    assert!(tp.starts_with(&format!("00-{INCOMING_TRACE}-")) && tp.ends_with("-00"), "{tp}");
    assert!(!tp.contains(INCOMING_PARENT), "the parent is the fetch, not the viewer: {tp}");
    let seen: std::collections::HashMap<String, String> = origin.last_headers("/new.bin").into_iter().collect();
    assert!(!seen.contains_key("traceparent"), "a new trace left out is not started at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_reached_with_the_ca_that_signs_it_and_only_then() {
    let cert = TestCert::ecdsa(&["localhost"]);
    let receiver = OtlpReceiver::start_tls(&cert).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, other) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca, &cert.cert).expect("write CA");
    std::fs::write(&other, TestCert::ecdsa(&["localhost"]).cert).expect("write CA");
    let endpoint = format!("https://localhost:{}/v1/traces", receiver.addr.port());
    let yaml = |ca: &std::path::Path| {
        format!(
            "tracing:\n  otlp:\n    endpoint: \"{endpoint}\"\n    ca_file: \"{}\"\n  export_interval: 100ms\n",
            ca.display()
        )
    };
    let gs = GameServer::start("gs").await;

    let gw = gateway().yaml(&yaml(&ca)).spawn().await;
    play(&gw, &gs).await;
    eventually(10, "the connection's span over HTTPS", || async {
        receiver
            .spans()
            .iter()
            .any(|s| s.name() == "stream.connection" && s.str("shardgate.route").as_deref() == Some("r1"))
            .then_some(())
    })
    .await;
    drop(gw);

    // Another CA: the collector's certificate is not trusted, nothing is sent.
    let received = receiver.requests().len();
    let gw = gateway().yaml(&yaml(&other)).spawn().await;
    play(&gw, &gs).await;
    eventually(30, "spans counted as failed", || async {
        (gw.metric("shardgate_trace_spans_exported_total{result=\"failure\"}").await >= 1.0).then_some(())
    })
    .await;
    assert!(gw.log().contains("TLS with localhost"), "the log names the TLS failure: {}", gw.log());
    assert_eq!(receiver.requests().len(), received);
}

#[test]
fn validate_refuses_a_bad_tracing_section_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (yaml, expected) in [
        (
            "tracing:\n  otlp:\n    endpoint: \"collector:4318/v1/traces\"\n",
            "tracing.otlp.endpoint: \"collector:4318/v1/traces\" must start with http:// or https://",
        ),
        ("tracing:\n  otlp:\n    endpoint: \"http://collector:4318\"\n", "tracing.otlp.endpoint"),
        ("tracing:\n  sample_ratio: 2\n", "tracing.sample_ratio: 2 is not between 0 and 1"),
        ("tracing:\n  otlp:\n    endpont: \"http://c:4318/v1/traces\"\n", "tracing.otlp"),
    ] {
        let file = dir.path().join("shardgate.yaml");
        std::fs::write(&file, format!("admin:\n  key: an-admin-key-0123456789\n{yaml}")).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["validate", "--config"])
            .arg(&file)
            .output()
            .expect("run validate");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}: accepted");
        assert!(text.contains(expected), "{yaml}: {text}");
    }
    // A good section passes, and credentials sent in clear text are warned about.
    let file = dir.path().join("good.yaml");
    std::fs::write(
        &file,
        "admin:\n  key: an-admin-key-0123456789\ntracing:\n  otlp:\n    endpoint: \"http://otel-collector.observability:4318/v1/traces\"\n    headers:\n      authorization: Bearer abc\n  sample_ratio: 0.1\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .expect("run validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("clear text") && !text.contains("Bearer abc"), "{text}");
}
