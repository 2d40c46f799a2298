use std::sync::Arc;
use std::time::Duration;

use shardgate_model::Upstream as UpstreamConfig;
use shardgate_model::json::from_value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::test_dns::{TestDns, asked};
use crate::{ConnectCtx, ConnectDefaults, ConnectError, Registry, Resolver, UpstreamKey, UpstreamMetrics};

fn registry(ns: std::net::SocketAddr, metrics: UpstreamMetrics) -> Registry {
    Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5)).with_nameservers(&[ns])),
        metrics,
        ConnectDefaults { connect_timeout: Duration::from_secs(2), ..ConnectDefaults::default() },
    )
}

fn config(v: serde_json::Value) -> Arc<UpstreamConfig> {
    let w = from_value(v).expect("wire");
    Arc::new(
        UpstreamConfig::from_wire(Some(shardgate_model::ResourceId::parse("rooms").expect("id")), &w).expect("valid"),
    )
}

fn ctx(sni: Option<&str>) -> ConnectCtx<'_> {
    ConnectCtx { client: "127.0.0.1:40000".parse().expect("addr"), local: "127.0.0.1:8888".parse().expect("addr"), sni }
}

/// An echo server on `ip:port` (port 0: any) that prefixes replies with `name`.
async fn echo(name: &'static str, ip: &str, port: u16) -> u16 {
    let l = TcpListener::bind((ip, port)).await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await {
                    let reply = format!("[{name}] {}", String::from_utf8_lossy(&buf[..n]));
                    s.write_all(reply.as_bytes()).await.ok();
                }
            });
        }
    });
    port
}

async fn say(s: &mut tokio::net::TcpStream, msg: &str) -> String {
    s.write_all(msg.as_bytes()).await.expect("send");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("reply").expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn refused(m: &UpstreamMetrics, reason: super::TemplateRefusal) -> u64 {
    m.names.refused.get_or_create(&super::RefusedLabels { upstream: "upstreams/rooms".into(), reason }).get()
}

#[tokio::test]
async fn the_sni_picks_the_room_and_junk_never_reaches_the_dns() {
    let port = echo("room-1", "127.0.0.1", 0).await;
    let (ns, queries) = TestDns::start(&[("room-1.rooms.test", "127.0.0.1")], false).await;
    let metrics = UpstreamMetrics::default();
    let reg = registry(ns, metrics.clone());
    let up = reg.get_or_create(
        UpstreamKey::Named(shardgate_model::ResourceId::parse("rooms").expect("id")),
        &config(serde_json::json!({"nodes": [{"host": "{sni_label_1}.rooms.test", "port": port, "weight": 1}]})),
    );
    let c = up.connect(&ctx(Some("room-1.rooms.example.com"))).await.expect("room-1");
    let mut s = c.stream;
    assert_eq!(say(&mut s, "hi").await, "[room-1] hi");
    assert_eq!(c.peer.node(), format!("{{sni_label_1}}.rooms.test:{port}"), "the node is the template");
    assert!(asked(&queries, "room-1.rooms.test") >= 1);

    for junk in ["x_y.rooms.example.com", "-a.rooms.example.com", &format!("{}.rooms.example.com", "a".repeat(64))] {
        match up.connect(&ctx(Some(junk))).await {
            Err(ConnectError::Refused { reason, .. }) => assert!(reason.contains("not a valid DNS name"), "{reason}"),
            other => panic!("{junk}: {other:?}"),
        }
    }
    assert_eq!(refused(&metrics, super::TemplateRefusal::invalid_name), 3);
    match up.connect(&ctx(None)).await {
        Err(e @ ConnectError::Refused { .. }) => assert_eq!(e.side(), shardgate_core::ErrorSource::Downstream),
        other => panic!("no SNI: {other:?}"),
    }
    assert_eq!(refused(&metrics, super::TemplateRefusal::no_sni), 1);
    let names: Vec<String> = queries.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(names, vec!["room-1.rooms.test".to_owned()], "only the valid name was ever asked");

    // A name the DNS does not know fails this connection, counted.
    let e = up.connect(&ctx(Some("room-9.rooms.example.com"))).await.expect_err("unknown room");
    assert!(matches!(e, ConnectError::Failed { .. }), "{e:?}");
    let not_found = super::DnsLabels { upstream: "upstreams/rooms".into(), reason: "not_found" };
    assert_eq!(metrics.names.dns_failures.get_or_create(&not_found).get(), 1);
}

/// A dead room does not mark its template down: with a primary and a
/// backup template, the next room still goes to the primary.
#[tokio::test]
async fn one_dead_room_is_not_a_dead_fleet() {
    let port = echo("primary", "127.0.0.1", 0).await;
    echo("backup", "127.0.0.3", port).await;
    let (ns, _) = TestDns::start(
        &[
            // 127.0.0.2 has nothing on the port: refused.
            ("dead.primary.test", "127.0.0.2"),
            ("live.primary.test", "127.0.0.1"),
            ("live.backup.test", "127.0.0.3"),
        ],
        false,
    )
    .await;
    let reg = registry(ns, UpstreamMetrics::default());
    let up = reg.get_or_create(
        UpstreamKey::Named(shardgate_model::ResourceId::parse("rooms").expect("id")),
        &config(serde_json::json!({"nodes": [
            {"host": "{sni_label_1}.primary.test", "port": port, "weight": 1, "priority": 1},
            {"host": "{sni_label_1}.backup.test", "port": port, "weight": 1, "priority": 0},
        ], "retries": 0})),
    );
    let e = up.connect(&ctx(Some("dead.rooms.example.com"))).await.expect_err("a dead room");
    assert!(matches!(e, ConnectError::Failed { attempts: 1, .. }), "{e:?}");
    let mut s = up.connect(&ctx(Some("live.rooms.example.com"))).await.expect("live").stream;
    assert_eq!(say(&mut s, "hi").await, "[primary] hi", "the primary template was not marked down");
}
