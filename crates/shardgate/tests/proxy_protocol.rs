//! PROXY protocol (HAProxy's `proxy-protocol.txt`) in and out, on the real
//! binary: listeners with `proxy_protocol: true` take the client address
//! from a v1 or v2 header (sent by a test client and by HAProxy from
//! Debian), route, filter and log by it, and refuse connections without a
//! valid header; routes and upstreams send a header to game servers (read
//! by a test server and by HAProxy with `accept-proxy`).

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::proxy_protocol::{self as pp, Frontend, Haproxy, PpGameServer, Received};
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, OriginFile, TestCert, TestOrigin, TlsClient, eventually};
use tokio::io::AsyncWriteExt;

const PP_IN: &str = "      proxy_protocol: true";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// One round trip on a plain listener after `header`.
async fn via_header(gw: SocketAddr, header: &[u8], msg: &str) -> String {
    let mut s = pp::connect_with(gw, None, header).await;
    roundtrip(&mut s, msg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carried_address_routes_balances_and_is_logged() {
    let gw = gateway().tls_listeners(1).plain_listeners(1).stream_listener_yaml(PP_IN).spawn().await;
    let admin = gw.admin();
    let lb = GameServer::start("from-203").await;
    let others = GameServer::start("others").await;
    let (c1, c2) = (GameServer::start("c1").await, GameServer::start("c2").await);
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    for (id, route) in [
        (
            "0",
            json!({"remote_addr": "192.0.2.0/24",
                     "upstream": {"type": "chash", "key": "remote_addr", "nodes": {c1.node(): 1, c2.node(): 1}}}),
        ),
        ("1", json!({"remote_addr": "203.0.113.0/24", "upstream": {"nodes": {lb.node(): 1}}})),
        ("2", json!({"upstream": {"nodes": {others.node(): 1}}})),
        ("3", json!({"sni": "gs-1.com", "remote_addr": "203.0.113.0/24", "upstream": {"nodes": {lb.node(): 1}}})),
        ("4", json!({"sni": "gs-1.com", "upstream": {"nodes": {others.node(): 1}}})),
    ] {
        admin.put_ok(&format!("/apisix/admin/stream_routes/{id}"), &route).await;
    }
    let plain = gw.plain[0];
    let dst = plain;
    gw.applied().await;

    // v1 and v2 headers: the carried address picks the route.
    assert_eq!(via_header(plain, &pp::v1(sa("203.0.113.7:51000"), dst), "hi").await, "[from-203] hi");
    assert_eq!(via_header(plain, &pp::v2(sa("203.0.113.8:51001"), dst), "hi").await, "[from-203] hi");
    assert_eq!(via_header(plain, &pp::v2(sa("198.51.100.7:51002"), dst), "hi").await, "[others] hi");
    assert_eq!(via_header(plain, &pp::v1(sa("[2001:db8::7]:4"), sa("[2001:db8::1]:5")), "hi").await, "[others] hi");
    // A TLV after the addresses (AWS's VPC endpoint id) is skipped.
    let tlv = [&[0xEAu8, 0x00, 0x05, 0x01][..], b"vpce"].concat();
    assert_eq!(via_header(plain, &pp::v2_with_tlvs(sa("203.0.113.9:9"), dst, &tlv), "t").await, "[from-203] t");
    // LOCAL (a load balancer's health check) and UNKNOWN: the socket's own address (127.0.0.1).
    assert_eq!(via_header(plain, &pp::v2_local(), "hc").await, "[others] hc");
    assert_eq!(via_header(plain, b"PROXY UNKNOWN\r\n", "u").await, "[others] u");

    // TLS listener: the header, then the ClientHello on the same connection.
    let tls = gw.tls_addr();
    for (src, want) in [("203.0.113.9:4000", "[from-203] tls"), ("198.51.100.9:4000", "[others] tls")] {
        let tcp = pp::connect_with(tls, None, &pp::v2(sa(src), tls)).await;
        let mut s = TlsClient::default().connect_over(tcp, "gs-1.com").await.expect("TLS after the header");
        assert_eq!(roundtrip(&mut s, "tls").await, want, "{src}");
    }

    // chash on remote_addr hashes the carried address, not the socket's
    // (127.0.0.1 for every connection here): one carried address keeps its
    // node, and different ones spread over both.
    let mut nodes = std::collections::BTreeSet::new();
    for i in 1..=20u8 {
        let src = SocketAddr::new(IpAddr::from([192, 0, 2, i]), 1000);
        let first = via_header(plain, &pp::v1(src, dst), "c").await;
        for port in [2000, 3000] {
            let again = via_header(plain, &pp::v1(SocketAddr::new(src.ip(), port), dst), "c").await;
            assert_eq!(again, first, "{src}: the same player lands on the same node");
        }
        nodes.insert(first);
    }
    assert_eq!(nodes.len(), 2, "carried addresses spread over both nodes: {nodes:?}");

    // The access log names the carried address as the peer, and the load balancer as `via`.
    eventually(5, "access log", || async {
        let log = gw.log();
        log.lines().any(|l| l.contains("peer=203.0.113.7:51000") && l.contains("via=\"127.0.0.1:")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_garbage_truncated_and_slow_headers_are_closed_and_counted() {
    let gw = gateway()
        .tls_listeners(1)
        .plain_listeners(1)
        .stream_listener_yaml(PP_IN)
        .yaml("limits:\n  handshake_timeout: 1s")
        .spawn()
        .await;
    let admin = gw.admin();
    let gs = GameServer::start("gs").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin.put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    admin
        .put_ok("/apisix/admin/stream_routes/2", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let (plain, tls) = (gw.plain[0], gw.tls_addr());
    gw.applied().await;
    assert_eq!(via_header(plain, &pp::v2_local(), "x").await, "[gs] x");
    let served = gs.accepted();

    let mut bad_version = pp::v2(sa("203.0.113.7:1"), plain);
    bad_version[12] = 0x11;
    let mut huge = pp::v2(sa("203.0.113.7:1"), plain);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    for (bytes, what) in [
        (&b"hello game server\r\n"[..], "no header"),
        (b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 1\r\n", "a port out of range"),
        (&bad_version[..], "a v2 header of version 1"),
        (&huge[..], "a v2 header announcing 64 KiB"),
    ] {
        let mut s = pp::connect_with(plain, None, bytes).await;
        assert!(pp::closed_without_reply(&mut s).await, "{what}: closed");
    }
    // Half a header, then the client closes its side.
    let mut s = pp::connect_with(plain, None, b"PROXY TCP4 203.0.113.7 19").await;
    s.shutdown().await.expect("half-close");
    assert!(pp::closed_without_reply(&mut s).await, "truncated: closed");
    // Half a header, then nothing: closed at the handshake timeout (1 s).
    let mut s = pp::connect_with(plain, None, b"PROXY TCP4 ").await;
    assert!(pp::closed_without_reply(&mut s).await, "slow: closed by the timeout");
    // A TLS client that sends no header: its ClientHello is not a header.
    assert!(TlsClient::default().connect(tls, Some("gs-1.com")).await.is_err(), "TLS without a header is refused");

    assert_eq!(gs.accepted(), served, "nothing reached the game server");
    let series = |listener: &str, reason: &str| {
        format!("shardgate_proxy_protocol_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}")
    };
    let tcp = format!("tcp/{plain}");
    for (reason, n) in [("missing", 1.0), ("malformed", 2.0), ("too_large", 1.0), ("truncated", 1.0), ("timeout", 1.0)]
    {
        assert_eq!(gw.metric(&series(&tcp, reason)).await, n, "{reason}");
    }
    assert_eq!(gw.metric(&series(&format!("tls/{tls}"), "missing")).await, 1.0);
    let closed =
        format!("shardgate_stream_connections_closed_total{{listener=\"{tcp}\",route=\"\",reason=\"proxy_protocol\"}}");
    assert_eq!(gw.metric(&closed).await, 6.0);

    // One warning per listener, not one per connection.
    let warnings =
        gw.log().lines().filter(|l| l.contains("WARN") && l.contains("requires a PROXY protocol header")).count();
    assert_eq!(warnings, 2, "rate-limited warnings:\n{}", gw.log());

    // A valid header still works on the same listener.
    assert_eq!(via_header(plain, &pp::v1(sa("203.0.113.7:5"), plain), "ok").await, "[gs] ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_and_send_proxy_v2_carry_the_players_address() {
    let gw = gateway().tls_listeners(1).plain_listeners(1).stream_listener_yaml(PP_IN).spawn().await;
    let admin = gw.admin();
    let two = GameServer::start("from-127.0.0.2").await;
    let others = GameServer::start("others").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    for (id, route) in [
        ("1", json!({"remote_addr": "127.0.0.2", "upstream": {"nodes": {two.node(): 1}}})),
        ("2", json!({"upstream": {"nodes": {others.node(): 1}}})),
        ("3", json!({"sni": "gs-1.com", "remote_addr": "127.0.0.2", "upstream": {"nodes": {two.node(): 1}}})),
        ("4", json!({"sni": "gs-1.com", "upstream": {"nodes": {others.node(): 1}}})),
    ] {
        admin.put_ok(&format!("/apisix/admin/stream_routes/{id}"), &route).await;
    }
    let haproxy = Haproxy::start(&[
        Frontend { accept_proxy: false, server: gw.plain[0], send: "send-proxy" },
        Frontend { accept_proxy: false, server: gw.tls_addr(), send: "send-proxy-v2" },
    ])
    .await;
    let (v1_front, v2_front) = (haproxy.frontends[0], haproxy.frontends[1]);

    // HAProxy connects to the gateway from 127.0.0.1; its header says 127.0.0.2.
    gw.applied().await;
    let mut s = pp::connect_with(v1_front, Some(ip("127.0.0.2")), b"").await;
    assert_eq!(roundtrip(&mut s, "x").await, "[from-127.0.0.2] x");
    let mut s = pp::connect_with(v1_front, Some(ip("127.0.0.3")), b"").await;
    assert_eq!(roundtrip(&mut s, "y").await, "[others] y");

    for (source, want) in [("127.0.0.2", "[from-127.0.0.2] tls"), ("127.0.0.1", "[others] tls")] {
        let tcp = pp::connect_with(v2_front, Some(ip(source)), b"").await;
        let mut s = TlsClient::default().connect_over(tcp, "gs-1.com").await.expect("TLS through HAProxy");
        assert_eq!(roundtrip(&mut s, "tls").await, want, "send-proxy-v2 from {source}");
    }
    assert_eq!(
        gw.metric(&format!(
            "shardgate_proxy_protocol_refused_total{{listener=\"tcp/{}\",reason=\"missing\"}}",
            gw.plain[0]
        ))
        .await,
        0.0
    );
    drop(haproxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_upstreams_send_headers_to_game_servers() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).stream_listener_yaml(PP_IN).spawn().await;
    let admin = gw.admin();
    let plain = gw.plain[0];
    let server = PpGameServer::start("pp").await;
    let behind_haproxy = PpGameServer::start("behind-haproxy").await;
    // HAProxy as a real receiver: it accepts shardgate's header and passes
    // what it read on as its own v2 header.
    let haproxy =
        Haproxy::start(&[Frontend { accept_proxy: true, server: behind_haproxy.addr, send: "send-proxy-v2" }]).await;

    admin
        .put_ok("/apisix/admin/upstreams/v2", &json!({"nodes": {server.node(): 1}, "send_proxy_protocol": "v2"}))
        .await;
    admin.put_ok("/apisix/admin/upstreams/haproxy", &json!({"nodes": {haproxy.frontends[0].to_string(): 1}})).await;
    for (id, route) in [
        ("1", json!({"remote_addr": "203.0.113.0/24", "upstream_id": "v2"})),
        ("2", json!({"remote_addr": "198.51.100.0/24", "upstream_id": "v2", "send_proxy_protocol": "v1"})),
        ("3", json!({"remote_addr": "192.0.2.0/24", "upstream_id": "haproxy", "send_proxy_protocol": "v1"})),
        ("4", json!({"remote_addr": "2001:db8::/32", "upstream_id": "haproxy", "send_proxy_protocol": "v2"})),
        ("5", json!({"upstream_id": "v2"})),
    ] {
        admin.put_ok(&format!("/apisix/admin/stream_routes/{id}"), &route).await;
    }
    gw.applied().await;
    let before = server.received().len();

    // The upstream's v2, the route's v1 over it; the carried address and
    // the address the client connected to.
    assert_eq!(via_header(plain, &pp::v1(sa("203.0.113.7:4242"), plain), "a").await, "[pp] a");
    assert_eq!(via_header(plain, &pp::v2(sa("198.51.100.7:4343"), plain), "b").await, "[pp] b");
    // No carried address (LOCAL): the socket's own, here from 127.0.0.2.
    let mut s = pp::connect_with(plain, Some(ip("127.0.0.2")), &pp::v2_local()).await;
    let client = s.local_addr().expect("client address");
    assert_eq!(roundtrip(&mut s, "c").await, "[pp] c");
    drop(s);
    let got: Vec<_> = server.received()[before..].to_vec();
    assert_eq!(
        got,
        vec![
            Ok(Received { version: 2, addresses: Some((sa("203.0.113.7:4242"), plain)) }),
            Ok(Received { version: 1, addresses: Some((sa("198.51.100.7:4343"), plain)) }),
            Ok(Received { version: 2, addresses: Some((client, plain)) }),
        ]
    );

    // Through HAProxy (`accept-proxy`): it accepts shardgate's v1 and v2
    // headers, IPv4 and (mixed with the gateway's IPv4 address) IPv6.
    assert_eq!(via_header(plain, &pp::v2(sa("192.0.2.55:5555"), plain), "h1").await, "[behind-haproxy] h1");
    let v6_client = sa("[2001:db8::55]:5556");
    assert_eq!(via_header(plain, &pp::v1(v6_client, sa("[2001:db8::1]:1")), "h2").await, "[behind-haproxy] h2");
    let got = behind_haproxy.received();
    assert_eq!(got.len(), 2, "{got:?}\n{}", haproxy.log());
    assert_eq!(got[0], Ok(Received { version: 2, addresses: Some((sa("192.0.2.55:5555"), plain)) }));
    let Ok(Received { addresses: Some((src, dst)), .. }) = &got[1] else { panic!("{got:?}") };
    assert_eq!(*src, v6_client, "IPv6 player");
    assert_eq!((dst.ip().to_canonical(), dst.port()), (plain.ip(), plain.port()), "the gateway's address, IPv4-mapped");

    // The Admin API names the field.
    for (path, body, field) in [
        (
            "/apisix/admin/upstreams/x",
            json!({"nodes": {"127.0.0.1:1": 1}, "send_proxy_protocol": "v3"}),
            "send_proxy_protocol",
        ),
        (
            "/apisix/admin/stream_routes/x",
            json!({"upstream_id": "v2", "send_proxy_protocol": 2}),
            "send_proxy_protocol",
        ),
        (
            "/apisix/admin/stream_routes/y",
            json!({"upstream": {"nodes": {"127.0.0.1:1": 1}, "send_proxy_protocol": "yes"}}),
            "upstream.send_proxy_protocol",
        ),
    ] {
        let r = admin.put(path, &body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(&format!("property \"{field}\"")), "{path}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listeners_proxy_protocol_to_upstream_sends_v1_unless_a_route_says_off() {
    let gw = gateway()
        .tls_listeners(0)
        .plain_listeners(1)
        .stream_listener_yaml("      proxy_protocol_to_upstream: true")
        .spawn()
        .await;
    let admin = gw.admin();
    let plain = gw.plain[0];
    let server = PpGameServer::start("pp").await;
    let bare = GameServer::start("bare").await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"remote_addr": "127.0.0.2", "send_proxy_protocol": "off",
                                                           "upstream": {"nodes": {bare.node(): 1}}}),
        )
        .await;
    admin.put_ok("/apisix/admin/stream_routes/2", &json!({"upstream": {"nodes": {server.node(): 1}}})).await;
    gw.applied().await;
    let mut s = pp::connect_with(plain, Some(ip("127.0.0.3")), b"").await;
    let client = s.local_addr().expect("client address");
    assert_eq!(roundtrip(&mut s, "hi").await, "[pp] hi");
    assert_eq!(server.received(), vec![Ok(Received { version: 1, addresses: Some((client, plain)) })]);
    // "off": the echo server gets the player's bytes and nothing before them.
    let mut s = pp::connect_with(plain, Some(ip("127.0.0.2")), b"").await;
    assert_eq!(roundtrip(&mut s, "plain").await, "[bare] plain");
}

/// Web ACLs and plugins judge the carried address: the listener's ACL,
/// the route's ip-restriction and limit-conn's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_acls_and_plugins_judge_the_carried_address() {
    let gw = gateway()
        .tls_listeners(0)
        .plain_listeners(1)
        .stream_listener_yaml(PP_IN)
        .stream_listener_yaml("      web_acl: \"players\"")
        .spawn()
        .await;
    let admin = gw.admin();
    let plain = gw.plain[0];
    let gs = GameServer::start("gs").await;
    common::ban_with_web_acl(&admin, "203.0.113.66/32", "players").await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"upstream": {"nodes": {gs.node(): 1}}, "plugins": {
                "ip-restriction": {"blacklist": ["203.0.113.77"]},
                "limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}}}),
        )
        .await;
    eventually(5, "route applied", || async {
        let mut s = pp::connect_with(plain, None, &pp::v1(sa("203.0.113.1:1"), plain)).await;
        (try_roundtrip(&mut s, "x").await? == "[gs] x").then_some(())
    })
    .await;
    let closed_by = |bytes: Vec<u8>| async move {
        let mut s = pp::connect_with(plain, None, &bytes).await;
        pp::closed_without_reply(&mut s).await
    };
    assert!(closed_by(pp::v1(sa("203.0.113.66:1"), plain)).await, "the listener's ACL bans the carried address");
    assert!(closed_by(pp::v1(sa("203.0.113.77:1"), plain)).await, "ip-restriction on the carried address");
    // limit-conn keyed by the carried address: one each, though every
    // connection comes from 127.0.0.1.
    let mut held = pp::connect_with(plain, None, &pp::v1(sa("203.0.113.88:1"), plain)).await;
    assert_eq!(roundtrip(&mut held, "1").await, "[gs] 1");
    assert!(closed_by(pp::v2(sa("203.0.113.88:2"), plain)).await, "a second connection for the same player");
    assert_eq!(via_header(plain, &pp::v2(sa("203.0.113.89:2"), plain), "2").await, "[gs] 2", "another player");
    let text = gw.metrics_text().await;
    for reason in ["waf", "ip_restricted", "limit_conn"] {
        assert!(text.contains(&format!("reason=\"{reason}\"")), "{reason}: {text}");
    }
    drop(held);
}

/// `edge.http[].proxy_protocol`: the viewer's address is the carried one
/// for the web ACL, its samples and rate rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listener_takes_the_viewer_from_the_header() {
    const HOST: &str = "assets.example.com";
    let gw = gateway().tls_listeners(0).edge_http(1).edge_listener_yaml(PP_IN).spawn().await;
    let admin = gw.admin();
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let r = admin
        .request(
            "PUT",
            "/apisix/admin/ip_sets/banned",
            Some(r#"{"Name": "banned", "Scope": "CLOUDFRONT", "IPAddressVersion": "IPV4", "Addresses": ["203.0.113.9/32"]}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let acl = r#"{"Name": "assets", "Scope": "CLOUDFRONT", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "assets"},
      "Rules": [{"Name": "banned", "Priority": 0, "Action": {"Block": {}},
         "Statement": {"IPSetReferenceStatement": {"ARN": "banned"}},
         "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "banned"}}]}"#;
    assert_eq!(admin.request("PUT", "/apisix/admin/web_acls/assets", Some(acl)).await.status, 201);
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": "assets",
                    "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    let status = |header: Vec<u8>| async move {
        let mut s = pp::connect_with(edge, None, &header).await;
        pp::http_status(&mut s, HOST, "/").await
    };
    eventually(5, "distribution live", || async {
        (status(pp::v1(sa("203.0.113.10:1"), edge)).await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(status(pp::v1(sa("203.0.113.9:1"), edge)).await, Some(403), "v1: the carried address is banned");
    assert_eq!(status(pp::v2(sa("203.0.113.9:2"), edge)).await, Some(403), "v2: the carried address is banned");
    assert_eq!(status(pp::v2(sa("203.0.113.10:2"), edge)).await, Some(200));
    let samples = admin.get("/apisix/admin/web_acls/assets/sampled_requests").await;
    assert!(samples.body.contains("203.0.113.9"), "the WAF saw the carried address: {}", samples.body);

    // curl as a real client: with --haproxy-protocol (a v1 header with its
    // own address) it is served; without, the connection is closed.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{edge}/");
    let out = bash(
        format!("curl -s -o /dev/null -w '%{{http_code}}' --haproxy-protocol -H 'Host: {HOST}' {url}"),
        dir.path(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", text(&out));
    let out = bash(format!("curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {HOST}' {url}"), dir.path()).await;
    // The request is never answered: an empty reply (52) or, as the unread
    // request is discarded with the socket, a reset (56).
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000", "{}", text(&out));
    assert!(matches!(out.status.code(), Some(52 | 56)), "curl: no answer without a header: {}", text(&out));
    assert_eq!(
        gw.metric(&format!("shardgate_proxy_protocol_refused_total{{listener=\"http/{edge}\",reason=\"missing\"}}"))
            .await,
        1.0
    );
}
