//! SNI templates: one route for a fleet of room servers, the node's host
//! rendered from the SNI (`{sni_label_1}.rooms.game.test`) and resolved
//! through a DNS server the test runs (`stream.dns.nameservers`, no
//! `/etc/hosts`): two rooms on two loopback addresses, a name the DNS does
//! not know, SNIs whose labels are not DNS labels (never asked), caching,
//! and the Admin API's refusals. Real binary, real sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::tls::{presented_cert, roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, Gateway, TestCert, TestDns, TlsClient, TlsGameServer, eventually};

/// One port free on both 127.0.0.2 and 127.0.0.3: a template's port is
/// the same for every room.
fn free_on_both() -> u16 {
    for _ in 0..50 {
        let port = shardgate_e2e::ports::free("127.0.0.2").port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// An echo room server on each of 127.0.0.2 and 127.0.0.3, one port.
async fn two_rooms() -> (GameServer, GameServer, u16) {
    let port = free_on_both();
    let one = GameServer::start_on("room-1", &format!("127.0.0.2:{port}")).await;
    let two = GameServer::start_on("room-2", &format!("127.0.0.3:{port}")).await;
    (one, two, port)
}

async fn fleet(dns: &TestDns, port: u16) -> Gateway {
    dns.insert("room-1.rooms.game.test", "127.0.0.2".parse().expect("ip"));
    dns.insert("room-2.rooms.game.test", "127.0.0.3".parse().expect("ip"));
    let gw = gateway().stream_yaml(&dns.stream_yaml()).spawn().await;
    rooms_route(&gw, "{sni_label_1}.rooms.game.test", port).await;
    gw
}

/// The fleet's certificate, an upstream whose one node is `template`, and
/// the route `*.rooms.example.com` to it.
async fn rooms_route(gw: &Gateway, template: &str, port: u16) {
    let admin = gw.admin();
    let cert = TestCert::ecdsa(&["*.rooms.example.com"]);
    admin.put_ok("/apisix/admin/ssls/rooms", &cert.ssl_body(&["*.rooms.example.com"])).await;
    admin
        .put_ok("/apisix/admin/upstreams/rooms", &json!({"nodes": [{"host": template, "port": port, "weight": 1}]}))
        .await;
    admin
        .put_ok("/apisix/admin/stream_routes/rooms", &json!({"sni": "*.rooms.example.com", "upstream_id": "rooms"}))
        .await;
}

async fn metric(gw: &Gateway, series: &str) -> f64 {
    gw.metric(series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_reaches_each_room_by_its_sni_and_unknown_rooms_fail_cleanly() {
    let dns = TestDns::start().await;
    let (room1, room2, port) = two_rooms().await;
    let gw = fleet(&dns, port).await;
    let addr = gw.tls_addr();
    let client = TlsClient::default();

    let mut s = eventually(10, "room-1 through the template route", || async {
        let mut s = client.connect(addr, Some("room-1.rooms.example.com")).await.ok()?;
        try_roundtrip(&mut s, "hi").await.filter(|r| r == "[room-1] hi").map(|_| s)
    })
    .await;
    assert_eq!(roundtrip(&mut s, "again").await, "[room-1] again", "data both ways");
    let mut s2 = client.connect(addr, Some("room-2.rooms.example.com")).await.expect("room-2");
    assert_eq!(roundtrip(&mut s2, "hi").await, "[room-2] hi");
    assert_eq!((room1.accepted(), room2.accepted()), (1, 1), "each room got its own player");
    drop((s, s2));

    // A second player for room-1: the answer is cached, the DNS is not asked again.
    let asked = dns.queries_for("room-1.rooms.game.test");
    assert!(asked >= 1);
    let mut s = client.connect(addr, Some("room-1.rooms.example.com")).await.expect("room-1 again");
    assert_eq!(roundtrip(&mut s, "hi").await, "[room-1] hi");
    assert_eq!(dns.queries_for("room-1.rooms.game.test"), asked, "served from the cache");
    drop(s);

    // A room the DNS does not know: the handshake completes, then the
    // connection closes without a byte from any room; asked once, then
    // remembered for a while.
    let mut s = client.connect(addr, Some("room-9.rooms.example.com")).await.expect("handshake");
    assert_eq!(try_roundtrip(&mut s, "hi").await, None, "closed: no room-9");
    let asked = dns.queries_for("room-9.rooms.game.test");
    assert!(asked >= 1, "the valid name was asked");
    let mut s = client.connect(addr, Some("room-9.rooms.example.com")).await.expect("handshake");
    assert_eq!(try_roundtrip(&mut s, "hi").await, None);
    assert_eq!(dns.queries_for("room-9.rooms.game.test"), asked, "the negative answer is cached");
    let not_found = "shardgate_upstream_dns_failures_total{upstream=\"upstreams/rooms\",reason=\"not_found\"}";
    assert_eq!(metric(&gw, not_found).await, 2.0, "both failed lookups counted, the cached one too");
    let closed = format!(
        "shardgate_stream_connections_closed_total{{listener=\"tls/{addr}\",route=\"rooms\",reason=\"upstream_unavailable\"}}"
    );
    // Counted when the connection's task ends, just after the player sees the close.
    eventually(10, "both room-9 connections counted as closed", || async {
        (metric(&gw, &closed).await == 2.0).then_some(())
    })
    .await;
    assert_eq!((room1.accepted(), room2.accepted()), (2, 1), "no room was reached for room-9");
}

/// The passthrough route of the same fleet: TLS room servers on the two
/// loopback addresses, each with its own certificate.
async fn passthrough_fleet(gw: &Gateway, dns: &TestDns) -> (TlsGameServer, TlsGameServer) {
    let port = free_on_both();
    let room1 =
        TlsGameServer::start("room-1", &format!("127.0.0.2:{port}"), &TestCert::ecdsa(&["room-1.pt.example.com"]))
            .await;
    let room2 =
        TlsGameServer::start("room-2", &format!("127.0.0.3:{port}"), &TestCert::ecdsa(&["room-2.pt.example.com"]))
            .await;
    dns.insert("room-1.pt.game.test", "127.0.0.2".parse().expect("ip"));
    dns.insert("room-2.pt.game.test", "127.0.0.3".parse().expect("ip"));
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/pt",
            &json!({"sni": "*.pt.example.com", "tls_passthrough": true,
                    "upstream": {"nodes": [{"host": "{sni_label_1}.pt.game.test", "port": port, "weight": 1}]}}),
        )
        .await;
    (room1, room2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_labels_that_are_not_dns_labels_never_reach_the_dns() {
    let dns = TestDns::start().await;
    let (_room1, _room2, port) = two_rooms().await;
    let gw = fleet(&dns, port).await;
    let (pt1, pt2) = passthrough_fleet(&gw, &dns).await;
    let addr = gw.tls_addr();
    let client = TlsClient::default();

    // Passthrough with a template: each room's own certificate.
    let room1_cert = eventually(10, "room-1 through the passthrough template", || async {
        let mut s = client.connect(addr, Some("room-1.pt.example.com")).await.ok()?;
        let cert = presented_cert(&s);
        try_roundtrip(&mut s, "hi").await.filter(|r| r == "[room-1] hi").map(|_| cert)
    })
    .await;
    let mut s = client.connect(addr, Some("room-2.pt.example.com")).await.expect("room-2");
    assert_ne!(presented_cert(&s), room1_cert, "each room presents its own certificate");
    assert_eq!(roundtrip(&mut s, "hi").await, "[room-2] hi");
    assert_eq!((pt1.handshakes(), pt2.handshakes()), (1, 1));

    // Terminating route: an underscore is not a DNS label character (rustls
    // takes it as a name; the template refuses it).
    let mut s = client.connect(addr, Some("x_y.rooms.example.com")).await.expect("handshake");
    assert_eq!(try_roundtrip(&mut s, "hi").await, None);
    // Passthrough route, through openssl (any bytes as the name): a label
    // of 64 bytes, one that starts with '-', one that ends with '-'.
    let dir = tempfile::tempdir().expect("tempdir");
    let long = format!("{}.pt.example.com", "a".repeat(64));
    for sni in [long.as_str(), "-room.pt.example.com", "room-.pt.example.com"] {
        let out = bash(
            format!("timeout 10 openssl s_client -connect {addr} -servername '{sni}' </dev/null 2>&1; true"),
            dir.path(),
        )
        .await;
        assert!(!text(&out).contains("subject="), "{sni}: no room answered: {}", text(&out));
    }
    let refused = "shardgate_upstream_template_refused_total{upstream=\"upstreams/rooms\",reason=\"invalid_name\"}";
    assert_eq!(metric(&gw, refused).await, 1.0);
    let refused_pt = "shardgate_upstream_template_refused_total{upstream=\"stream_routes/pt\",reason=\"invalid_name\"}";
    assert_eq!(metric(&gw, refused_pt).await, 3.0);
    let closed = format!(
        "shardgate_stream_connections_closed_total{{listener=\"tls/{addr}\",route=\"pt\",reason=\"template_refused\"}}"
    );
    eventually(10, "three passthrough connections closed as template_refused", || async {
        (metric(&gw, &closed).await == 3.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = dns.names_asked();
    assert!(
        asked.iter().all(|n| ["room-1.pt.game.test", "room-2.pt.game.test"].contains(&n.as_str())),
        "only valid names reached the DNS: {asked:?}"
    );
    assert!(!gw.log().lines().any(|l| l.contains("WARN") && l.contains("x_y")), "junk is not logged at warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_templates_it_cannot_serve_naming_the_field() {
    let dns = TestDns::start().await;
    let gw = gateway().stream_yaml(&dns.stream_yaml()).spawn().await;
    let admin = gw.admin();
    let node = |host: &str| json!({"host": host, "port": 7777, "weight": 1});
    let refused = async |path: &str, body: serde_json::Value, field: &str, says: &str| {
        let r = admin.put(path, &body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(field) && msg.contains(says), "{path}: {msg}");
    };
    refused(
        "/apisix/admin/upstreams/u",
        json!({"nodes": [node("{room}.rooms.svc")]}),
        "nodes[0].host",
        "unknown placeholder {room}",
    )
    .await;
    refused("/apisix/admin/upstreams/u", json!({"nodes": {"{sni_label_1}.rooms.svc:7777": 1}}), "nodes", "array form")
        .await;
    refused(
        "/apisix/admin/upstreams/u",
        json!({"nodes": [node("{sni_label_1}.rooms.svc"), node("127.0.0.1")]}),
        "nodes[1].host",
        "only templates",
    )
    .await;
    refused(
        "/apisix/admin/upstreams/u",
        json!({"nodes": [node("{sni_label_1}.rooms.svc")], "checks": {"active": {"type": "tcp"}}}),
        "checks",
        "no fixed node to probe",
    )
    .await;
    refused(
        "/apisix/admin/upstreams/u",
        json!({"nodes": [node("rooms.{sni_label_1}")]}),
        "nodes[0].host",
        "must end in fixed labels",
    )
    .await;
    refused(
        "/apisix/admin/stream_routes/r",
        json!({"tls_passthrough": true, "upstream": {"nodes": {"127.0.0.1:1": 1}}}),
        "tls_passthrough",
        "sni or snis",
    )
    .await;
    refused(
        "/apisix/admin/stream_routes/r",
        json!({"upstream": {"nodes": [node("{sni_label_1}.rooms.svc")]}}),
        "upstream.nodes[0].host",
        "sni or snis",
    )
    .await;

    // Across references, whichever is written second.
    admin.put_ok("/apisix/admin/upstreams/rooms", &json!({"nodes": [node("{sni_label_1}.rooms.svc")]})).await;
    refused(
        "/apisix/admin/stream_routes/r",
        json!({"server_port": 9100, "upstream_id": "rooms"}),
        "upstream_id",
        "sni or snis",
    )
    .await;
    admin.put_ok("/apisix/admin/upstreams/plain", &json!({"nodes": {"127.0.0.1:7777": 1}})).await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"server_port": 9100, "upstream_id": "plain"})).await;
    refused(
        "/apisix/admin/upstreams/plain",
        json!({"nodes": [node("{sni_label_1}.rooms.svc")]}),
        "stream route [r]",
        "no sni or snis",
    )
    .await;
    let r = admin.get("/apisix/admin/upstreams/plain").await;
    assert!(r.body.contains("127.0.0.1:7777"), "nothing stored was lost: {}", r.body);
    refused(
        "/apisix/admin/distributions/d",
        json!({"hosts": ["cdn.example.com"], "origins": {"o": {"upstream_id": "rooms"}}}),
        "origins.o.upstream_id",
        "an edge origin has none",
    )
    .await;
    // And what is right is accepted.
    admin
        .put_ok("/apisix/admin/stream_routes/ok", &json!({"snis": ["*.rooms.example.com"], "upstream_id": "rooms"}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_nameserver_setting_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "stream:\n  dns:\n    nameservers: [\"127.0.0.1:5353\", \"dns.example\"]\n")
        .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stream.dns.nameservers[1]") && err.contains("dns.example"), "{err}");
    let _: SocketAddr = "127.0.0.1:5353".parse().expect("the first entry is fine");
}

/// A listener's `fallback_sni` stands in for a name no route serves, and
/// it is the fallback, not the player's name, that a template renders: a
/// route's `sni` bounds the names its template can be given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_route_renders_its_template_from_the_fallback_never_the_players_name() {
    let dns = TestDns::start().await;
    let (_room1, _room2, port) = two_rooms().await;
    dns.insert("lobby.rooms.example.com.game.test", "127.0.0.2".parse().expect("ip"));
    let gw = gateway().fallback_sni("lobby.rooms.example.com").stream_yaml(&dns.stream_yaml()).spawn().await;
    rooms_route(&gw, "{sni}.game.test", port).await;
    gw.applied().await;

    let client = TlsClient::default();
    let mut s = eventually(10, "the fallback route", || async {
        let mut s = client.connect(gw.tls_addr(), Some("kubernetes.default")).await.ok()?;
        try_roundtrip(&mut s, "hi").await.filter(|r| r == "[room-1] hi").map(|_| s)
    })
    .await;
    assert_eq!(roundtrip(&mut s, "again").await, "[room-1] again");
    let asked = dns.names_asked();
    assert!(!asked.iter().any(|n| n.contains("kubernetes")), "the player's own name never reached the DNS: {asked:?}");
}
