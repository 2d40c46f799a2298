//! Health checks against real loopback sockets: probes, the checker's
//! schedule, the passive path, fail-open, and what survives a change.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shardgate_core::Metrics;
use shardgate_model::ResourceId;
use shardgate_model::Upstream as UpstreamConfig;
use shardgate_model::json::from_value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::probe::{Target, probe};
use super::*;
use crate::registry::{ConnectCtx, ConnectDefaults, Registry, Upstream, UpstreamKey};
use crate::{Resolver, UpstreamMetrics};

fn registry() -> (Registry, Metrics) {
    let metrics = Metrics::new();
    let reg = Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::register(&metrics),
        ConnectDefaults { connect_timeout: Duration::from_secs(2), ..ConnectDefaults::default() },
    );
    (reg, metrics)
}

fn config(v: Value) -> Arc<UpstreamConfig> {
    let w = from_value(v).expect("wire");
    Arc::new(UpstreamConfig::from_wire(None, &w).expect("valid"))
}

/// Nodes on 127.0.0.1 in the order given (the map form sorts them).
fn nodes(ports: &[u16]) -> Value {
    ports.iter().map(|p| json!({"host": "127.0.0.1", "port": p, "weight": 1})).collect()
}

fn key(id: &str) -> UpstreamKey {
    UpstreamKey::Named(ResourceId::parse(id).expect("id"))
}

fn ctx() -> ConnectCtx<'static> {
    ConnectCtx {
        client: "127.0.0.1:40000".parse().expect("addr"),
        local: "127.0.0.1:8888".parse().expect("addr"),
        sni: None,
    }
}

/// A port that refuses connections: bound, then closed.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// A listener that accepts and holds every connection for a while.
async fn accepting(bind: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind(bind).await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            });
        }
    });
    (port, task)
}

/// A server that answers every connection with `reply` after reading its
/// request head (or, with `reply` empty, never answers).
async fn answering(reply: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                if s.read(&mut buf).await.is_err() {
                    return;
                }
                if reply.is_empty() {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    return;
                }
                s.write_all(reply).await.ok();
            });
        }
    });
    port
}

async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(up: &Upstream, i: usize) -> Status {
    up.health().expect("checks").node(i).status()
}

fn failures(reg_metrics: &Metrics, upstream: &str, port: u16) -> f64 {
    let text = reg_metrics.encode_prometheus().expect("encode");
    let series =
        format!("shardgate_upstream_connect_failures_total{{upstream=\"{upstream}\",node=\"127.0.0.1:{port}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.trim().parse().expect("number"))
}

#[tokio::test]
async fn a_failing_node_leaves_rotation_after_its_probes_and_returns_after_its_successes() {
    let (reg, metrics) = registry();
    let (a, a_task) = accepting("127.0.0.1:0").await;
    let (b, _b_task) = accepting("127.0.0.1:0").await;
    let checks = json!({"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 2},
                                   "unhealthy": {"interval": 1, "tcp_failures": 2}}});
    let up = reg.get_or_create(key("u"), &config(json!({"nodes": nodes(&[a, b]), "checks": checks})));
    let h = Arc::clone(up.health().expect("checks"));
    assert_eq!(status(&up, 0), Status::Healthy, "nodes start healthy");

    a_task.abort();
    eventually(10, "node a unhealthy", || status(&up, 0) == Status::Unhealthy).await;
    assert_eq!(h.node(0).state().counters.tcp_failure, 2, "two failed probes in a row, as configured");
    assert_eq!(status(&up, 1), Status::Healthy);
    let before = failures(&metrics, "upstreams/u", a);
    for _ in 0..10 {
        let c = up.connect(&ctx()).await.expect("node b answers");
        assert_eq!(c.peer.addr().port(), b, "an unhealthy node is never chosen");
    }
    assert_eq!(failures(&metrics, "upstreams/u", a), before, "no connect was even tried on it");

    let (_, _a_again) = accepting(&format!("127.0.0.1:{a}")).await;
    eventually(10, "node a healthy again", || status(&up, 0) == Status::Healthy).await;
    assert_eq!(h.node(0).state().counters.success, 2);
    let mut ports = HashSet::new();
    for _ in 0..4 {
        ports.insert(up.connect(&ctx()).await.expect("connect").peer.addr().port());
    }
    assert!(ports.contains(&a), "back in rotation: {ports:?}");
    let text = metrics.encode_prometheus().expect("encode");
    assert!(
        text.contains(&format!(
            "shardgate_upstream_health_probes_total{{upstream=\"upstreams/u\",node=\"127.0.0.1:{a}\",result=\"tcp_failure\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("shardgate_upstream_node_healthy{{upstream=\"upstreams/u\",node=\"127.0.0.1:{a}\"}} 1"))
    );
}

/// Checks whose probes do not run during a test (the first round starts
/// within the healthy interval, an hour here).
fn passive_only_in_practice(passive: Value) -> Value {
    json!({"active": {"type": "tcp", "healthy": {"interval": 3600}, "unhealthy": {"interval": 3600}}, "passive": passive})
}

#[tokio::test]
async fn real_connect_failures_count_as_passive_tcp_failures() {
    let (reg, metrics) = registry();
    let dead = dead_port().await;
    let (live, _task) = accepting("127.0.0.1:0").await;
    let up = reg.get_or_create(
        key("p"),
        &config(json!({
            "nodes": nodes(&[dead, live]),
            "checks": passive_only_in_practice(json!({"unhealthy": {"tcp_failures": 3}}))
        })),
    );
    for _ in 0..12 {
        assert_eq!(up.connect(&ctx()).await.expect("retried on the live node").peer.addr().port(), live);
    }
    // Three failed connects make it unhealthy (not nginx's one-failure
    // fail_timeout mark, which would have stopped at one), then none.
    assert_eq!(failures(&metrics, "upstreams/p", dead), 3.0);
    assert_eq!(status(&up, 0), Status::Unhealthy);
    assert_eq!(up.health().expect("checks").node(0).state().counters.tcp_failure, 3);
}

#[tokio::test]
async fn a_change_keeps_the_health_of_nodes_that_stay_and_stops_the_old_checker() {
    let (reg, metrics) = registry();
    let dead = dead_port().await;
    let (live, _task) = accepting("127.0.0.1:0").await;
    let (other, _other_task) = accepting("127.0.0.1:0").await;
    let old = reg.get_or_create(
        key("c"),
        &config(json!({"nodes": nodes(&[dead, live]), "checks": passive_only_in_practice(json!({}))})),
    );
    for _ in 0..6 {
        old.connect(&ctx()).await.expect("connect");
    }
    assert_eq!(status(&old, 0), Status::Unhealthy);
    assert!(old.health().expect("checks").task.lock().expect("lock").is_some(), "checker running");

    // An edit: one more node and another retry count.
    let new = reg.get_or_create(
        key("c"),
        &config(json!({
            "nodes": nodes(&[dead, live, other]),
            "retries": 4, "checks": passive_only_in_practice(json!({}))
        })),
    );
    assert!(!Arc::ptr_eq(&old, &new), "a new runtime");
    assert_eq!(status(&new, 0), Status::Unhealthy, "the dead node is still known to be dead");
    assert_eq!(new.health().expect("checks").node(0).state().counters.tcp_failure, 2);
    assert_eq!((status(&new, 1), status(&new, 2)), (Status::Healthy, Status::Healthy));
    assert!(old.health().expect("checks").task.lock().expect("lock").is_none(), "the old checker stopped");
    assert!(new.health().expect("checks").task.lock().expect("lock").is_some());

    // A node that leaves takes its gauge with it; leaving the registry stops the checker.
    let last = reg.get_or_create(
        key("c"),
        &config(json!({"nodes": {format!("127.0.0.1:{live}"): 1}, "checks": passive_only_in_practice(json!({}))})),
    );
    let text = metrics.encode_prometheus().expect("encode");
    assert!(
        !text.contains(&format!(
            "shardgate_upstream_node_healthy{{upstream=\"upstreams/c\",node=\"127.0.0.1:{dead}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "shardgate_upstream_node_healthy{{upstream=\"upstreams/c\",node=\"127.0.0.1:{live}\"}} 1"
        ))
    );
    reg.retain(&HashSet::new());
    assert!(last.health().expect("checks").task.lock().expect("lock").is_none(), "removed: the checker stopped");
}

#[tokio::test]
async fn every_node_unhealthy_fails_open_and_says_so() {
    let (reg, metrics) = registry();
    let (a, b) = (dead_port().await, dead_port().await);
    let up = reg.get_or_create(
        key("f"),
        &config(json!({
            "nodes": nodes(&[a, b]),
            "checks": passive_only_in_practice(json!({"unhealthy": {"tcp_failures": 1}}))
        })),
    );
    let h = Arc::clone(up.health().expect("checks"));
    assert!(up.connect(&ctx()).await.is_err(), "both refuse");
    assert_eq!((status(&up, 0), status(&up, 1)), (Status::Unhealthy, Status::Unhealthy));
    assert!(h.failing_open());
    let text = metrics.encode_prometheus().expect("encode");
    assert!(text.contains("shardgate_upstream_fail_open{upstream=\"upstreams/f\"} 1"), "{text}");
    // Failing open: connections still go to the nodes (as APISIX), and are counted.
    let before = failures(&metrics, "upstreams/f", a) + failures(&metrics, "upstreams/f", b);
    assert!(matches!(up.connect(&ctx()).await, Err(crate::ConnectError::Failed { attempts: 2, .. })));
    assert_eq!(failures(&metrics, "upstreams/f", a) + failures(&metrics, "upstreams/f", b), before + 2.0);
    let text = metrics.encode_prometheus().expect("encode");
    assert!(text.contains("shardgate_upstream_fail_open_connects_total{upstream=\"upstreams/f\"} 1"), "{text}");

    // A node that connects again ends it.
    let (_, _task) = accepting(&format!("127.0.0.1:{a}")).await;
    for _ in 0..5 {
        if up.connect(&ctx()).await.is_ok() {
            break;
        }
    }
    // Passive successes (5 by default) bring it back; the connects above
    // made some, the ones below the rest.
    for _ in 0..6 {
        up.connect(&ctx()).await.expect("node a answers");
    }
    assert_eq!(status(&up, 0), Status::Healthy);
    assert!(!h.failing_open());
    let text = metrics.encode_prometheus().expect("encode");
    assert!(text.contains("shardgate_upstream_fail_open{upstream=\"upstreams/f\"} 0"), "{text}");
}

fn active(v: Value) -> shardgate_model::health::ActiveCheck {
    shardgate_model::HealthChecks::from_json(&v).expect("valid").active
}

async fn probe_port(port: u16, checks: Value) -> Outcome {
    let a = active(checks);
    let node = shardgate_model::Node {
        host: shardgate_model::Host::Ip("127.0.0.1".parse().expect("ip")),
        port,
        weight: 1,
        priority: 0,
    };
    let resolver = Resolver::new(Duration::from_secs(30), Duration::from_secs(5));
    probe(&Target::new(&node, &a), &a, &resolver).await.outcome
}

#[tokio::test]
async fn http_probes_are_judged_by_their_status_line() {
    let http = json!({"active": {"type": "http", "timeout": 0.5}});
    assert_eq!(probe_port(answering(b"HTTP/1.1 200 OK\r\n\r\n").await, http.clone()).await, Outcome::Success);
    assert_eq!(probe_port(answering(b"HTTP/1.0 302 Found\r\n").await, http.clone()).await, Outcome::Success);
    assert_eq!(probe_port(answering(b"HTTP/1.1 500 Oops\r\n\r\n").await, http.clone()).await, Outcome::HttpFailure);
    assert_eq!(probe_port(answering(b"HTTP/1.1 204 No Content\r\n\r\n").await, http.clone()).await, Outcome::Ignored);
    assert_eq!(probe_port(answering(b"SSH-2.0-OpenSSH_9.2\r\n").await, http.clone()).await, Outcome::HttpFailure);
    assert_eq!(probe_port(answering(&[b'x'; 600]).await, http.clone()).await, Outcome::HttpFailure, "line cap");
    assert_eq!(probe_port(answering(b"HTTP/1.1 200").await, http.clone()).await, Outcome::TcpFailure, "closed early");
    assert_eq!(probe_port(answering(b"").await, http.clone()).await, Outcome::Timeout);
    assert_eq!(probe_port(dead_port().await, http.clone()).await, Outcome::TcpFailure);
    // The statuses are the configuration's.
    let strict = json!({"active": {"healthy": {"http_statuses": [204]}, "unhealthy": {"http_statuses": [200]}}});
    assert_eq!(probe_port(answering(b"HTTP/1.1 204 No Content\r\n\r\n").await, strict.clone()).await, Outcome::Success);
    assert_eq!(probe_port(answering(b"HTTP/1.1 200 OK\r\n\r\n").await, strict).await, Outcome::HttpFailure);
    // TCP probes only connect.
    assert_eq!(probe_port(answering(b"").await, json!({"active": {"type": "tcp"}})).await, Outcome::Success);
}

#[tokio::test]
async fn the_probe_sends_the_configured_request() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ping") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "request ended early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
        String::from_utf8(got).expect("ascii")
    });
    let outcome = probe_port(
        port,
        json!({"active": {"http_method": "POST", "http_path": "/health?full=1", "host": "gs.example",
                          "req_headers": ["X-Probe: 1"], "http_req_body": "ping"}}),
    )
    .await;
    assert_eq!(outcome, Outcome::Success);
    assert_eq!(
        server.await.expect("server"),
        "POST /health?full=1 HTTP/1.1\r\nConnection: close\r\nX-Probe: 1\r\nHost: gs.example\r\nContent-Length: 4\r\n\r\nping"
    );
}

#[tokio::test]
async fn https_probes_verify_unless_told_not_to() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["gs.example".to_owned()]).expect("params").self_signed(&key).expect("cert");
    let server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let mut buf = [0u8; 1024];
                if tls.read(&mut buf).await.is_ok() {
                    tls.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.ok();
                    tls.flush().await.ok();
                }
            });
        }
    });
    let self_signed = json!({"active": {"type": "https", "host": "gs.example", "https_verify_certificate": false}});
    assert_eq!(probe_port(port, self_signed).await, Outcome::Success);
    let verified = json!({"active": {"type": "https", "host": "gs.example"}});
    assert_eq!(probe_port(port, verified).await, Outcome::TcpFailure, "an unknown issuer fails the handshake");
}

#[tokio::test]
async fn the_status_is_apisix_s_control_api_json() {
    let (reg, _metrics) = registry();
    let dead = dead_port().await;
    let up = reg.get_or_create(
        key("s1"),
        &config(
            json!({"nodes": [{"host": "127.0.0.1", "port": dead, "weight": 1}, {"host": "::1", "port": 9, "weight": 0}],
                       "checks": passive_only_in_practice(json!({"unhealthy": {"tcp_failures": 1}}))}),
        ),
    );
    reg.get_or_create(
        UpstreamKey::InlineStream(ResourceId::parse("r1").expect("id")),
        &config(json!({"nodes": {"127.0.0.1:1": 1}, "checks": {"active": {"type": "http"}}})),
    );
    reg.get_or_create(key("plain"), &config(json!({"nodes": {"127.0.0.1:1": 1}})));
    assert!(up.connect(&ctx()).await.is_err());

    let (code, all) = reg.healthcheck_status("/apisix", None);
    assert_eq!(code, 200);
    let names: Vec<&str> = all.as_array().expect("list").iter().map(|c| c["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["/apisix/stream_routes/r1", "/apisix/upstreams/s1"], "every checker, and only checkers");

    let (code, one) = reg.healthcheck_status("/apisix", Some(("upstreams", "s1")));
    assert_eq!(code, 200);
    assert_eq!(
        one,
        json!({"name": "/apisix/upstreams/s1", "type": "tcp", "nodes": [
            {"ip": "127.0.0.1", "port": dead, "hostname": "127.0.0.1", "status": "unhealthy",
             "counter": {"success": 0, "http_failure": 0, "tcp_failure": 1, "timeout_failure": 0}},
            {"ip": "::1", "port": 9, "hostname": "::1", "status": "healthy",
             "counter": {"success": 0, "http_failure": 0, "tcp_failure": 0, "timeout_failure": 0}}
        ]})
    );
    let (code, inline) = reg.healthcheck_status("/apisix", Some(("stream_routes", "r1")));
    assert_eq!((code, inline["type"].as_str()), (200, Some("http")));
    assert_eq!(
        reg.healthcheck_status("/apisix", Some(("upstreams", "plain"))),
        (404, json!({"error_msg": "no checker for upstreams[plain]"}))
    );
    assert_eq!(
        reg.healthcheck_status("/apisix", Some(("upstreams", "nope"))),
        (404, json!({"error_msg": "upstreams[nope] not found"}))
    );
    assert_eq!(
        reg.healthcheck_status("/apisix", Some(("routes", "1"))),
        (400, json!({"error_msg": "invalid src type routes"}))
    );
}

#[tokio::test]
async fn retries_never_fall_back_to_an_unhealthy_node_while_another_is_healthy() {
    let (reg, metrics) = registry();
    let dead = dead_port().await;
    let (live, live_task) = accepting("127.0.0.1:0").await;
    let up = reg.get_or_create(
        key("r"),
        &config(json!({
            "nodes": nodes(&[dead, live]),
            "checks": passive_only_in_practice(json!({"unhealthy": {"tcp_failures": 3}}))
        })),
    );
    for _ in 0..8 {
        up.connect(&ctx()).await.expect("the live node answers");
    }
    assert_eq!(status(&up, 0), Status::Unhealthy);
    let dead_tries = failures(&metrics, "upstreams/r", dead);

    // The healthy node now refuses too: its two attempts (one retry) leave
    // it mostly healthy (two failures of three), and the unhealthy node is
    // not tried in its place.
    live_task.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(up.connect(&ctx()).await, Err(crate::ConnectError::Failed { .. })));
    assert_eq!(status(&up, 1), Status::MostlyHealthy);
    assert_eq!(failures(&metrics, "upstreams/r", dead), dead_tries, "the unhealthy node was not tried");
}
