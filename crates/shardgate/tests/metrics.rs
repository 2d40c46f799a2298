//! Prometheus metrics: the series operators need, in a format promtool accepts.

mod common;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_connections_tls_routes_bytes_upstreams_and_config() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    let dead = shardgate_e2e::ports::free("127.0.0.1");
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    // The dead node has the higher priority, so it is tried (and fails) first.
    let nodes = json!([
        {"host": "127.0.0.1", "port": dead.port(), "weight": 1, "priority": 1},
        {"host": "127.0.0.1", "port": gs.addr.port(), "weight": 1, "priority": 0}
    ]);
    admin.put_ok("/apisix/admin/stream_routes/r1", &json!({"sni": "gs-1.com", "upstream": {"nodes": nodes}})).await;
    let addr = gw.tls_addr();
    let client = TlsClient::default();
    let mut s = eventually(5, "routed", || async { client.connect(addr, Some("gs-1.com")).await.ok() }).await;
    assert_eq!(roundtrip(&mut s, "0123456789").await, "[gs] 0123456789");
    assert!(client.connect(addr, Some("nobody.com")).await.is_err());

    let text_now = gw.metrics_text().await;
    let listener = format!("listener=\"tls/{addr}\"");
    for series in [
        format!("shardgate_stream_connections_accepted_total{{{listener}}}"),
        format!("shardgate_stream_connections_active{{{listener}}}"),
        "shardgate_stream_route_connections_active{route=\"r1\"} 1".into(),
        format!("shardgate_stream_no_route_total{{{listener}}}"),
        "shardgate_stream_received_bytes_total{route=\"r1\"} 10".into(),
        "shardgate_stream_sent_bytes_total{route=\"r1\"} 15".into(),
        format!("shardgate_upstream_connect_failures_total{{upstream=\"stream_routes/r1\",node=\"{dead}\"}} 1"),
        "shardgate_config_generation".into(),
        "shardgate_config_apply_errors_total{kind=\"stream_routes\"} 0".into(),
        "shardgate_stream_tls_handshake_duration_seconds_count".into(),
        "shardgate_tls_certificate_expiry_timestamp_seconds{ssl=\"1\",sni=\"gs-1.com\"}".into(),
    ] {
        assert!(text_now.contains(&series), "missing {series} in:\n{text_now}");
    }
    drop(s);
    eventually(5, "close counted per route and reason", || async {
        let v = gw
            .metric(&format!(
                "shardgate_stream_connections_closed_total{{{listener},route=\"r1\",reason=\"client_closed\"}}"
            ))
            .await;
        (v == 1.0).then_some(())
    })
    .await;
    let unknown = gw.metric(&format!("shardgate_stream_no_route_total{{{listener}}}")).await;
    assert!(unknown >= 1.0);

    // promtool, from Debian's prometheus package, installed by the test command.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("metrics.txt"), gw.metrics_text().await).expect("write");
    let out = bash("promtool check metrics < metrics.txt".into(), dir.path()).await;
    assert!(
        out.status.success(),
        "promtool check metrics (is promtool installed? the README's test command installs it):\n{}",
        text(&out)
    );
    assert!(text(&out).trim().is_empty(), "promtool reports nothing: {}", text(&out));
}
