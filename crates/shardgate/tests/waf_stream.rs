//! Web ACLs on the stream gateway: IP sets and per-address connection rate
//! limits applied at accept, before any TLS.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};
use tokio::io::AsyncReadExt;

/// Connects from `source` and reports whether the gateway closed the
/// connection at once, without a byte (refused before TLS), or kept it open
/// waiting for a ClientHello.
async fn refused_at_accept(gw: SocketAddr, source: &str) -> bool {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{source}:0").parse().expect("source")).expect("bind source address");
    let mut s = sock.connect(gw).await.expect("connect");
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("the gateway sent {n} bytes before any ClientHello"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_addresses_and_floods_are_closed_before_tls() {
    let gw = gateway().stream_web_acl("players").spawn().await;
    let admin = gw.admin();
    let gs = GameServer::start("gs").await;
    let cert = TestCert::ecdsa(&["gs-1.com"]);
    admin.put_ok("/apisix/admin/ssls/1", &cert.ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.addr.to_string(): 1}}}),
        )
        .await;
    let r = admin
        .request(
            "PUT",
            "/apisix/admin/ip_sets/banned",
            Some(r#"{"Name": "banned", "IPAddressVersion": "IPV4", "Addresses": ["127.0.0.2/32"]}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let acl = r#"{"Name": "players", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "players"},
      "Rules": [
        {"Name": "banned", "Priority": 0, "Action": {"Block": {}},
         "Statement": {"IPSetReferenceStatement": {"ARN": "banned"}},
         "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "banned"}},
        {"Name": "login-storm", "Priority": 1, "Action": {"Block": {}},
         "Statement": {"RateBasedStatement": {"Limit": 10, "EvaluationWindowSec": 60, "AggregateKeyType": "IP"}},
         "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "login-storm"}}]}"#;
    let r = admin.request("PUT", "/apisix/admin/web_acls/players", Some(acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let addr = gw.tls_addr();

    // 127.0.0.2 is banned: closed at accept, before a byte of TLS.
    eventually(5, "the ban applies", || async { refused_at_accept(addr, "127.0.0.2").await.then_some(()) }).await;
    let refused = "shardgate_stream_waf_refused_total{listener=\"tls/".to_owned();
    assert!(gw.metrics_text().await.lines().any(|l| l.starts_with(&refused) && l.contains("rule=\"banned\"")));

    // 127.0.0.1 plays.
    let mut s = TlsClient::default().connect(addr, Some("gs-1.com")).await.expect("handshake from 127.0.0.1");
    assert_eq!(roundtrip(&mut s, "hello").await, "[gs] hello");

    // 127.0.0.3 opens connections in a burst: the first ten are served, then
    // the address is over its rate and refused at accept.
    let mut outcomes = Vec::new();
    for _ in 0..14 {
        outcomes.push(refused_at_accept(addr, "127.0.0.3").await);
    }
    assert_eq!(&outcomes[..10], &[false; 10], "within the limit: {outcomes:?}");
    assert!(outcomes[11..].iter().all(|r| *r), "over the limit: {outcomes:?}");
    // Others are not affected by 127.0.0.3's flood.
    assert!(!refused_at_accept(addr, "127.0.0.4").await);
    let text = gw.metrics_text().await;
    assert!(text.lines().any(|l| l.starts_with(&refused) && l.contains("rule=\"login-storm\"")), "{text}");
    assert!(text.contains("reason=\"waf\""), "closed connections carry the reason");
}
