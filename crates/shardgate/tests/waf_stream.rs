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

    // An unrelated change recompiles every ACL; the flood's count survives it.
    admin
        .put_ok(
            "/apisix/admin/stream_routes/2",
            &json!({"sni": "gs-2.com", "upstream": {"nodes": {gs.addr.to_string(): 1}}}),
        )
        .await;
    admin.put_ok("/apisix/admin/ssls/2", &TestCert::ecdsa(&["gs-2.com"]).ssl_body(&["gs-2.com"])).await;
    eventually(5, "the new route applies", || async {
        let mut s = TlsClient::default().connect(addr, Some("gs-2.com")).await.ok()?;
        (roundtrip(&mut s, "x").await == "[gs] x").then_some(())
    })
    .await;
    assert!(refused_at_accept(addr, "127.0.0.3").await, "still over the limit after a config change");
}

/// A stream route names its own web ACL: it runs once the ClientHello has
/// told which route the player wants, before any certificate work, and other
/// routes on the same port are not affected. The Admin API keeps the pairing
/// sound: the ACL must exist, may only look at the client address, and
/// cannot be deleted or turned into a request-inspecting ACL while in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_route_refers_to_its_own_web_acl() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let gs1 = GameServer::start("gs1").await;
    let gs2 = GameServer::start("gs2").await;
    let cert = TestCert::ecdsa(&["gs-1.com", "gs-2.com"]);
    admin.put_ok("/apisix/admin/ssls/1", &cert.ssl_body(&["gs-1.com", "gs-2.com"])).await;
    let r = admin
        .request(
            "PUT",
            "/apisix/admin/ip_sets/testers",
            Some(r#"{"Name": "testers", "IPAddressVersion": "IPV4", "Addresses": ["127.0.0.1/32"]}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let testers_only = r#"{"Name": "testers-only", "DefaultAction": {"Block": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "t"},
      "Rules": [{"Name": "testers", "Priority": 0, "Action": {"Allow": {}},
         "Statement": {"IPSetReferenceStatement": {"ARN": "arn:aws:wafv2:us-east-1:1:regional/ipset/testers/testers"}},
         "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "t"}}]}"#;
    let by_agent = r#"{"Name": "by-agent", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "a"},
      "Rules": [{"Name": "postman", "Priority": 0, "Action": {"Block": {}},
         "Statement": {"ByteMatchStatement": {"FieldToMatch": {"SingleHeader": {"Name": "user-agent"}},
           "PositionalConstraint": "STARTS_WITH", "SearchString": "PostmanRuntime",
           "TextTransformations": [{"Type": "NONE", "Priority": 0}]}},
         "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "a"}}]}"#;

    // A route may not name an ACL that is missing or that inspects requests.
    let route1 = |acl: &str| {
        json!({"sni": "gs-1.com", "upstream": {"nodes": {gs1.addr.to_string(): 1}}, "web_acl_id": acl}).to_string()
    };
    let r = admin.request("PUT", "/apisix/admin/stream_routes/1", Some(&route1("testers-only"))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("web_acl_id") && r.body.contains("does not exist"), "{}", r.body);
    assert_eq!(admin.request("PUT", "/apisix/admin/web_acls/by-agent", Some(by_agent)).await.status, 201);
    let r = admin.request("PUT", "/apisix/admin/stream_routes/1", Some(&route1("by-agent"))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("web_acl_id") && r.body.contains("\\\"postman\\\" inspects request fields"), "{}", r.body);
    assert_eq!(admin.get("/apisix/admin/stream_routes/1").await.status, 404, "nothing stored on error");

    let r = admin.request("PUT", "/apisix/admin/web_acls/testers-only", Some(testers_only)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.request("PUT", "/apisix/admin/stream_routes/1", Some(&route1("testers-only"))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    admin
        .put_ok(
            "/apisix/admin/stream_routes/2",
            &json!({"sni": "gs-2.com", "upstream": {"nodes": {gs2.addr.to_string(): 1}}}),
        )
        .await;
    let addr = gw.tls_addr();
    let tester = Some("127.0.0.1".parse().expect("ip"));
    let player = Some("127.0.0.2".parse().expect("ip"));

    // The tester reaches gs-1; the player is closed at gs-1 and plays on gs-2.
    eventually(5, "routes and ACL apply", || async {
        let mut s = TlsClient::default().connect_from(tester, addr, Some("gs-1.com")).await.ok()?;
        (roundtrip(&mut s, "hi").await == "[gs1] hi").then_some(())
    })
    .await;
    let denied = TlsClient::default().connect_from(player, addr, Some("gs-1.com")).await;
    assert!(denied.is_err(), "127.0.0.2 is not a tester and must not complete a handshake for gs-1.com");
    // Route 2 was written after route 1: it may apply a moment later.
    eventually(5, "gs-2 is open to all", || async {
        let mut s = TlsClient::default().connect_from(player, addr, Some("gs-2.com")).await.ok()?;
        (roundtrip(&mut s, "hi").await == "[gs2] hi").then_some(())
    })
    .await;
    // The gateway counts the close after the client has seen it: poll.
    eventually(5, "the refusal is counted", || async {
        let text = gw.metrics_text().await;
        let refused = text.lines().any(|l| {
            l.starts_with("shardgate_stream_waf_refused_total{")
                && l.contains("web_acl=\"testers-only\"")
                && l.contains("rule=\"default\"")
        });
        let closed = text.lines().any(|l| {
            l.starts_with("shardgate_stream_connections_closed_total{")
                && l.contains("route=\"1\"")
                && l.contains("reason=\"waf\"")
        });
        (refused && closed).then_some(())
    })
    .await;

    // While route 1 uses it, the ACL cannot be deleted nor start inspecting
    // requests; both refusals leave it as it was.
    let r = admin.delete("/apisix/admin/web_acls/testers-only").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("stream_route [1] is still using it"), "{}", r.body);
    let r = admin.request("PUT", "/apisix/admin/web_acls/testers-only", Some(by_agent)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("stream route [1] uses this web ACL"), "{}", r.body);
    let stored = admin.get("/apisix/admin/web_acls/testers-only").await.json();
    assert_eq!(stored["value"]["Name"], "testers-only", "{stored}");

    // Without the ACL, everyone reaches gs-1 again.
    let r = admin
        .put(
            "/apisix/admin/stream_routes/1",
            &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs1.addr.to_string(): 1}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "the route without ACL applies", || async {
        let mut s = TlsClient::default().connect_from(player, addr, Some("gs-1.com")).await.ok()?;
        (roundtrip(&mut s, "hi").await == "[gs1] hi").then_some(())
    })
    .await;
    assert_eq!(admin.delete("/apisix/admin/web_acls/testers-only").await.status, 200);
}
