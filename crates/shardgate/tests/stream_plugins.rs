//! APISIX's stream plugins `ip-restriction` and `limit-conn` on stream
//! routes, with real concurrent connections: enforced once the connection
//! is routed and before any TLS work; other plugins refused with a reason.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::gateway;
use serde_json::json;
use shardgate_e2e::proxy_protocol::closed_without_reply;
use shardgate_e2e::tls::{captured_client_hello, roundtrip};
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A plain connection from the loopback address `source`.
async fn connect_from(addr: SocketAddr, source: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(ip(source), 0)).expect("bind the source address");
    sock.connect(addr).await.expect("connect")
}

/// Sends `bytes` (a ClientHello) from `source` and reports whether the
/// gateway closed the connection without sending a byte: refused before
/// any TLS answer.
async fn hello_refused(addr: SocketAddr, source: &str, hello: &[u8]) -> bool {
    let mut s = connect_from(addr, source).await;
    s.write_all(hello).await.expect("send the ClientHello");
    closed_without_reply(&mut s).await
}

fn closed(route: &str, listener: &str, reason: &str) -> String {
    format!(
        "shardgate_stream_connections_closed_total{{listener=\"{listener}\",route=\"{route}\",reason=\"{reason}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_allows_and_denies_before_tls() {
    let gw = gateway().tls_listeners(1).plain_listeners(1).spawn().await;
    let admin = gw.admin();
    let gs = GameServer::start("gs").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"upstream": {"nodes": {gs.node(): 1}},
                    "plugins": {"ip-restriction": {"whitelist": ["127.0.0.1", "127.0.0.4/32"]}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/2",
            &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}},
                    "plugins": {"ip-restriction": {"blacklist": ["127.0.0.2"], "message": "banned"}}}),
        )
        .await;
    let (plain, tls) = (gw.plain[0], gw.tls_addr());
    gw.applied().await;

    // whitelist on the plain route.
    let mut s = connect_from(plain, "127.0.0.1").await;
    assert_eq!(roundtrip(&mut s, "allowed").await, "[gs] allowed");
    let accepted = gs.accepted();
    let mut s = connect_from(plain, "127.0.0.2").await;
    s.write_all(b"let me in").await.expect("send");
    assert!(closed_without_reply(&mut s).await, "not on the whitelist: closed");
    assert_eq!(gs.accepted(), accepted, "the game server never saw it");

    // blacklist on the TLS route: closed after the ClientHello, before any
    // answer (no ServerHello, no alert).
    let hello = captured_client_hello(&TlsClient::default(), Some("gs-1.com")).await;
    assert!(hello_refused(tls, "127.0.0.2", &hello).await, "blacklisted: no TLS answer at all");
    let mut ok =
        TlsClient::default().connect_from(Some(ip("127.0.0.3")), tls, Some("gs-1.com")).await.expect("handshake");
    assert_eq!(roundtrip(&mut ok, "tls").await, "[gs] tls");

    assert_eq!(gw.metric(&closed("1", &format!("tcp/{plain}"), "ip_restricted")).await, 1.0);
    assert_eq!(gw.metric(&closed("2", &format!("tls/{tls}"), "ip_restricted")).await, 1.0);
}

/// conn = 2, burst = 1: two connections go on at once, the third waits
/// `default_conn_delay`, the fourth is closed; closing connections gives
/// the counts back; the counts survive a configuration change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_delays_then_refuses_and_gives_counts_back() {
    let gw = gateway().tls_listeners(1).plain_listeners(1).yaml("limits:\n  handshake_timeout: 1s").spawn().await;
    let admin = gw.admin();
    let gs = GameServer::start("gs").await;
    let delay = Duration::from_secs(1);
    admin
        .put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com", "gs-2.com"]).ssl_body(&["gs-1.com", "gs-2.com"]))
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"upstream": {"nodes": {gs.node(): 1}},
                    "plugins": {"limit-conn": {"conn": 2, "burst": 1, "default_conn_delay": 1, "key": "remote_addr"}}}),
        )
        .await;
    let plain = gw.plain[0];
    let listener = format!("tcp/{plain}");
    gw.applied().await;
    let released = |n: f64| {
        let series = closed("1", &listener, "client_closed");
        let gw = &gw;
        async move {
            eventually(5, "closed connections released", || async { (gw.metric(&series).await >= n).then_some(()) })
                .await
        }
    };

    let round = |tag: &'static str| async move {
        let mut c1 = connect_from(plain, "127.0.0.2").await;
        assert_eq!(roundtrip(&mut c1, "1").await, "[gs] 1", "{tag}: first");
        let mut c2 = connect_from(plain, "127.0.0.2").await;
        assert_eq!(roundtrip(&mut c2, "2").await, "[gs] 2", "{tag}: second");
        let started = Instant::now();
        let mut c3 = connect_from(plain, "127.0.0.2").await;
        assert_eq!(roundtrip(&mut c3, "3").await, "[gs] 3", "{tag}: third, delayed then served");
        assert!(
            started.elapsed() >= delay,
            "{tag}: the third waited at least default_conn_delay: {:?}",
            started.elapsed()
        );
        let mut c4 = connect_from(plain, "127.0.0.2").await;
        c4.write_all(b"4").await.expect("send");
        assert!(closed_without_reply(&mut c4).await, "{tag}: the fourth is refused");
        // Another player has a count of its own.
        let mut other = connect_from(plain, "127.0.0.3").await;
        assert_eq!(roundtrip(&mut other, "o").await, "[gs] o", "{tag}: another address");
        (c1, c2, c3, other)
    };
    let held = round("first round").await;

    // A configuration change elsewhere keeps the counts: still full.
    admin
        .put_ok("/apisix/admin/stream_routes/9", &json!({"sni": "gs-9.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    gw.applied().await;
    let mut c = connect_from(plain, "127.0.0.2").await;
    c.write_all(b"5").await.expect("send");
    assert!(closed_without_reply(&mut c).await, "the counts survived the new snapshot");

    // Closing the connections gives the counts back: the same again.
    let before = gw.metric(&closed("1", &listener, "client_closed")).await;
    drop(held);
    released(before + 4.0).await;
    let held = round("after the counts came back").await;
    drop(held);

    assert_eq!(gw.metric(&closed("1", &listener, "limit_conn")).await, 3.0);
    assert_eq!(gw.metric("shardgate_stream_limit_conn_delayed_total{route=\"1\"}").await, 2.0);
}

/// On a TLS listener limit-conn runs after the ClientHello chose the
/// route, before any TLS answer; a delay does not eat into the handshake
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_conn_on_tls_routes_refuses_before_tls_and_delays_within_the_handshake() {
    let gw = gateway().tls_listeners(1).yaml("limits:\n  handshake_timeout: 1s").spawn().await;
    let admin = gw.admin();
    let gs = GameServer::start("gs").await;
    admin
        .put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com", "gs-2.com"]).ssl_body(&["gs-1.com", "gs-2.com"]))
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/1",
            &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}},
                    "plugins": {"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/2",
            &json!({"sni": "gs-2.com", "upstream": {"nodes": {gs.node(): 1}},
                    "plugins": {"limit-conn": {"conn": 1, "burst": 1, "default_conn_delay": 1.5,
                                               "key": "$remote_addr-$server_addr", "key_type": "var_combination"}}}),
        )
        .await;
    let tls = gw.tls_addr();
    let client = TlsClient::default();
    gw.applied().await;
    let mut first = client.connect_from(Some(ip("127.0.0.2")), tls, Some("gs-1.com")).await.expect("first");
    assert_eq!(roundtrip(&mut first, "1").await, "[gs] 1");
    let hello = captured_client_hello(&client, Some("gs-1.com")).await;
    assert!(hello_refused(tls, "127.0.0.2", &hello).await, "over the limit: no TLS answer at all");

    // gs-2.com: the second connection waits 1.5 s, longer than the 1 s
    // handshake timeout, and still completes its handshake.
    let mut a = client.connect_from(Some(ip("127.0.0.3")), tls, Some("gs-2.com")).await.expect("first");
    assert_eq!(roundtrip(&mut a, "a").await, "[gs] a");
    let started = Instant::now();
    let mut b = client.connect_from(Some(ip("127.0.0.3")), tls, Some("gs-2.com")).await.expect("delayed handshake");
    assert!(started.elapsed() >= Duration::from_millis(1500), "delayed: {:?}", started.elapsed());
    assert_eq!(roundtrip(&mut b, "b").await, "[gs] b");
    assert_eq!(gw.metric(&closed("1", &format!("tls/{tls}"), "limit_conn")).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_plugins_and_unsupported_keys_are_refused_with_the_reason() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    for (body, field, words) in [
        (json!({"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}}), "plugins.mqtt-proxy", "not supported"),
        (
            json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1, "key": "http_x_real_ip"}}),
            "plugins.limit-conn.key",
            "remote_addr or server_addr",
        ),
        (
            json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1, "key": "remote_addr", "rejected_code": 503}}),
            "plugins.limit-conn.rejected_code",
            "closed",
        ),
        (
            json!({"ip-restriction": {"whitelist": ["198.51.100.300"]}}),
            "plugins.ip-restriction.whitelist[0]",
            "invalid ip address",
        ),
        (json!({"ip-restriction": {}}), "plugins.ip-restriction.whitelist", "one of whitelist or blacklist"),
    ] {
        let r = admin
            .put("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {"127.0.0.1:1": 1}}, "plugins": body}))
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(&format!("property \"{field}\"")) && msg.contains(words), "{field}: {msg}");
    }
    assert_eq!(admin.get("/apisix/admin/stream_routes/1").await.status, 404, "nothing stored");
}
