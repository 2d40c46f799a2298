//! TLS fingerprints (JA3, JA4) and custom rate keys through the real binary:
//! a bot's fingerprint is known from its ClientHello, before any game byte,
//! on the stream gateway and on the edge; other clients (OpenSSL's
//! `s_client`, curl) are not matched.

mod common;

use std::net::SocketAddr;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::tls::{captured_client_hello, roundtrip};
use shardgate_e2e::{GameServer, Gateway, OriginFile, TestCert, TestOrigin, TlsClient, eventually};
use shardgate_waf::TlsFingerprint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The rustls test client, without resumption so every ClientHello is the same.
fn bot() -> TlsClient {
    TlsClient::default().without_resumption()
}

/// Its fingerprints, from a ClientHello it sends to a local listener.
async fn bot_fingerprint(sni: &str) -> TlsFingerprint {
    let hello = captured_client_hello(&bot(), Some(sni)).await;
    TlsFingerprint::from_records(&hello).expect("rustls sends a whole ClientHello")
}

/// A web ACL that blocks one fingerprint with a ByteMatch EXACTLY rule.
fn block_fingerprint(name: &str, field: &str, value: &str) -> String {
    format!(
        r#"{{"Name": "{name}", "DefaultAction": {{"Allow": {{}}}},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "{name}"}},
  "Rules": [{{"Name": "bot-tls", "Priority": 0, "Action": {{"Block": {{}}}},
    "Statement": {{"ByteMatchStatement": {{"FieldToMatch": {{"{field}": {{"FallbackBehavior": "NO_MATCH"}}}},
      "PositionalConstraint": "EXACTLY", "SearchString": "{value}", "TextTransformations": [{{"Type": "NONE", "Priority": 0}}]}}}},
    "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "bot-tls"}}}}]}}"#
    )
}

async fn openssl_says(addr: SocketAddr, sni: &str, dir: &std::path::Path) -> String {
    let script = format!(
        "(printf 'ping\\n'; sleep 0.5) | timeout 10 openssl s_client -connect {addr} -servername {sni} -quiet -no_ign_eof 2>/dev/null"
    );
    let out = bash(script, dir).await;
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(got.contains("[gs] ping"), "openssl s_client is served: {}", text(&out));
    got
}

async fn stream_setup(gw: &Gateway, gs: &GameServer, web_acl: Option<&str>) {
    let admin = gw.admin();
    let cert = TestCert::ecdsa(&["gs-1.com"]);
    admin.put_ok("/apisix/admin/ssls/1", &cert.ssl_body(&["gs-1.com"])).await;
    let mut route = json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.addr.to_string(): 1}}});
    if let Some(acl) = web_acl {
        route["web_acl_id"] = json!(acl);
    }
    admin.put_ok("/apisix/admin/stream_routes/1", &route).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_route_blocks_a_ja4_fingerprint_before_any_game_byte() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    let ja4 = bot_fingerprint("gs-1.com").await;
    let r = gw
        .admin()
        .request("PUT", "/apisix/admin/web_acls/bots", Some(&block_fingerprint("bots", "JA4Fingerprint", ja4.ja4())))
        .await;
    assert_eq!(r.status, 201, "a fingerprint ACL may guard a stream route: {}", r.body);
    stream_setup(&gw, &gs, Some("bots")).await;
    let addr = gw.tls_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    eventually(5, "the route is live", || async {
        let script = format!("(printf 'ping\\n'; sleep 0.3) | timeout 5 openssl s_client -connect {addr} -servername gs-1.com -quiet -no_ign_eof 2>/dev/null");
        String::from_utf8_lossy(&bash(script, dir.path()).await.stdout).contains("[gs] ping").then_some(())
    })
    .await;
    let served = gs.accepted();
    assert!(bot().connect(addr, Some("gs-1.com")).await.is_err(), "refused by its JA4 before the handshake");
    assert_eq!(gs.accepted(), served, "the bot never reached a game server");
    let refused = gw.metrics_text().await;
    assert!(
        refused.lines().any(|l| l.starts_with("shardgate_stream_waf_refused_total") && l.contains("rule=\"bot-tls\"")),
        "{refused}"
    );
    openssl_says(addr, "gs-1.com", dir.path()).await;
}

/// The ClientHello `openssl s_client` sends (OpenSSL keeps its extension
/// order, so its JA3 is the same on every connection; rustls shuffles its
/// extensions, which changes JA3 but not the sorted JA4).
async fn openssl_fingerprint(sni: &str) -> TlsFingerprint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let script =
        format!("timeout 5 openssl s_client -connect {addr} -servername {sni} </dev/null >/dev/null 2>&1; true");
    let client = tokio::spawn(async move { bash(script, dir.path()).await });
    let (mut sock, _) = listener.accept().await.expect("accept");
    let mut bytes = Vec::new();
    while TlsFingerprint::from_records(&bytes).is_none() {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "openssl closed before its ClientHello");
        bytes.extend_from_slice(&buf[..n]);
    }
    drop(sock);
    client.await.expect("openssl");
    TlsFingerprint::from_records(&bytes).expect("a ClientHello")
}

/// A listener's web ACL that reads a fingerprint runs once the ClientHello
/// is read (there is none at accept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_acl_on_ja3_runs_after_the_client_hello() {
    let gw = gateway().stream_web_acl("bots").spawn().await;
    let gs = GameServer::start("gs").await;
    stream_setup(&gw, &gs, None).await;
    let addr = gw.tls_addr();
    // Live before the ACL exists (a listener ACL that is not loaded lets players through).
    eventually(5, "the route is live", || async {
        let mut s = bot().connect(addr, Some("gs-1.com")).await.ok()?;
        (roundtrip(&mut s, "hello").await == "[gs] hello").then_some(())
    })
    .await;
    let ja3 = openssl_fingerprint("gs-1.com").await;
    let r = gw
        .admin()
        .request("PUT", "/apisix/admin/web_acls/bots", Some(&block_fingerprint("bots", "JA3Fingerprint", ja3.ja3())))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let dir = tempfile::tempdir().expect("tempdir");
    eventually(5, "openssl's JA3 is refused", || async {
        let script = format!("(printf 'ping\\n'; sleep 0.3) | timeout 5 openssl s_client -connect {addr} -servername gs-1.com -quiet -no_ign_eof 2>/dev/null");
        (!String::from_utf8_lossy(&bash(script, dir.path()).await.stdout).contains("[gs] ping")).then_some(())
    })
    .await;
    let refused = gw.metrics_text().await;
    assert!(
        refused.lines().any(|l| l.starts_with("shardgate_stream_waf_refused_total") && l.contains("rule=\"bot-tls\"")),
        "{refused}"
    );
    // Another client (rustls: another JA3) plays.
    let mut s = bot().connect(addr, Some("gs-1.com")).await.expect("another fingerprint");
    assert_eq!(roundtrip(&mut s, "hello").await, "[gs] hello");
}

const HOST: &str = "cdn.game.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_blocks_a_ja4_fingerprint_and_curl_passes() {
    let gw = gateway().tls_listeners(0).edge_https(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let cert = TestCert::ecdsa(&[HOST]);
    gw.admin().put_ok("/apisix/admin/ssls/a", &cert.ssl_body(&[HOST])).await;
    let ja4 = bot_fingerprint(HOST).await;
    let r = gw
        .admin()
        .request("PUT", "/apisix/admin/web_acls/bots", Some(&block_fingerprint("bots", "JA4Fingerprint", ja4.ja4())))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": "bots", "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_tls[0];
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &cert.cert).expect("ca");
    let port = edge.port();
    let curl = format!(
        "curl -sS -o /dev/null -w '%{{http_code}}' --cacert ca.pem --resolve {HOST}:{port}:127.0.0.1 https://{HOST}:{port}/"
    );
    eventually(5, "curl is served", || {
        let curl = curl.clone();
        let dir = dir.path().to_owned();
        async move { (String::from_utf8_lossy(&bash(curl, &dir).await.stdout) == "200").then_some(()) }
    })
    .await;
    // The rustls client, over HTTP/1.1: refused by its TLS fingerprint, on
    // every request of the connection.
    let mut tls = bot().connect(edge, Some(HOST)).await.expect("handshake");
    for _ in 0..2 {
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).await.expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    }
    let blocked = "shardgate_waf_requests_total{web_acl=\"bots\",rule=\"bot-tls\",action=\"block\"}";
    assert_eq!(gw.metric(blocked).await, 2.0);
    let out = bash(curl, dir.path()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl's fingerprint is not the bot's: {}", text(&out));
}

/// A rate-based rule keyed on a header: each player has its own allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_player_header_on_the_edge() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let acl = r#"{"Name": "players", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "players"},
      "Rules": [{"Name": "per-player", "Priority": 0, "Action": {"Block": {}},
        "Statement": {"RateBasedStatement": {"Limit": 10, "EvaluationWindowSec": 60, "AggregateKeyType": "CUSTOM_KEYS",
          "CustomKeys": [{"Header": {"Name": "x-player-id", "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}]}},
        "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "per-player"}}]}"#;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/players", Some(acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": "players", "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async { (get(edge, HOST, "/", &[]).await.0 == 200).then_some(()) }).await;
    let statuses = |player: &'static str| async move {
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(get(edge, HOST, "/", &[("x-player-id", player)]).await.0);
        }
        out
    };
    let a = statuses("alice").await;
    assert_eq!(&a[..10], &[200; 10], "{a:?}");
    assert_eq!(&a[10..], &[403, 403], "{a:?}");
    let b = statuses("bob").await;
    assert_eq!(&b[..10], &[200; 10], "bob has his own allowance: {b:?}");
    // No header: not counted (AWS), never limited.
    for _ in 0..12 {
        assert_eq!(get(edge, HOST, "/", &[]).await.0, 200);
    }
}
