//! UDP listeners (`stream.udp`): per-client sessions through the real binary,
//! with real UDP game servers and clients on loopback.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::udp::free_port;
use shardgate_e2e::{Gateway, GatewayBuilder, UdpClient, UdpGameServer, eventually};

/// A gateway builder with one UDP listener per address in `udp`, no TLS listener.
fn udp_gateway(udp: &[SocketAddr]) -> GatewayBuilder {
    let list: Vec<String> = udp.iter().map(|a| format!("\"{a}\"")).collect();
    gateway().tls_listeners(0).stream_yaml(&format!("  udp: [{}]", list.join(", ")))
}

/// The listener label of `addr` in metrics.
fn label(addr: SocketAddr) -> String {
    format!("udp/{addr}")
}

/// Stores the stream routes and waits until the data plane has them.
async fn routes(gw: &Gateway, routes: &[(&str, Value)]) {
    let admin = gw.admin();
    for (id, body) in routes {
        admin.put_ok(&format!("/apisix/admin/stream_routes/{id}"), body).await;
    }
    let series = format!("shardgate_config_resources{{kind=\"stream_routes\"}} {}", routes.len());
    eventually(10, "the routes are applied", || async { gw.metrics_text().await.contains(&series).then_some(()) })
        .await;
}

/// The name in a reply: `[name] ...` -> `name`.
fn server_of(reply: &str) -> &str {
    reply.strip_prefix('[').and_then(|r| r.split_once(']')).map_or("", |(name, _)| name)
}

async fn sessions_active(gw: &Gateway, listener: SocketAddr) -> f64 {
    gw.metric(&format!("shardgate_stream_udp_sessions_active{{listener=\"{}\"}}", label(listener))).await
}

async fn dropped(gw: &Gateway, listener: SocketAddr, reason: &str) -> f64 {
    gw.metric(&format!(
        "shardgate_stream_udp_dropped_datagrams_total{{listener=\"{}\",reason=\"{reason}\"}}",
        label(listener)
    ))
    .await
}

async fn closed(gw: &Gateway, listener: SocketAddr, route: &str, reason: &str) -> f64 {
    gw.metric(&format!(
        "shardgate_stream_udp_sessions_closed_total{{listener=\"{}\",route=\"{route}\",reason=\"{reason}\"}}",
        label(listener)
    ))
    .await
}

async fn created(gw: &Gateway, listener: SocketAddr, route: &str) -> f64 {
    gw.metric(&format!(
        "shardgate_stream_udp_sessions_created_total{{listener=\"{}\",route=\"{route}\"}}",
        label(listener)
    ))
    .await
}

/// 1,000 players on their own ports at once: every one gets its own session
/// and its own replies, from the address it sent to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_the_gateway_with_a_thousand_concurrent_client_ports() {
    let listen = free_port("127.0.0.1");
    let gw = udp_gateway(&[listen]).spawn().await;
    let gs = UdpGameServer::start("gs").await;
    routes(&gw, &[("game", json!({"server_port": listen.port(), "upstream": {"nodes": {gs.node(): 1}}}))]).await;

    const CLIENTS: usize = 1000;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(Arc::new(UdpClient::new().await));
    }
    // All at once; each resends (bounded) if the burst overflows a socket buffer.
    let mut tasks = Vec::with_capacity(CLIENTS);
    for (i, c) in clients.iter().enumerate() {
        let c = Arc::clone(c);
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for round in 0..3 {
                let msg = format!("player-{i}-{round}-{}", "x".repeat(i % 200));
                replies.push((c.roundtrip_tries(listen, &msg, 5, Duration::from_secs(2)).await, msg));
            }
            replies
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let replies = tokio::time::timeout(Duration::from_secs(90), t).await.expect("bounded").expect("task");
        for (reply, msg) in replies {
            assert_eq!(reply.as_deref(), Some(format!("[gs] {msg}").as_str()), "{msg}");
            answered += 1;
        }
    }
    assert_eq!(answered, 3 * CLIENTS);

    // One session per client address and port, all open (idle timeout 120 s).
    assert_eq!(created(&gw, listen, "game").await, CLIENTS as f64);
    assert_eq!(sessions_active(&gw, listen).await, CLIENTS as f64);
    assert!(gs.received() >= 3 * CLIENTS);
    let text = gw.metrics_text().await;
    assert!(text.lines().any(|l| l.starts_with("shardgate_stream_udp_sent_datagrams_total{route=\"game\"}")), "{text}");
    drop(clients);
}

/// Two servers behind round robin: sessions alternate between them, and
/// every datagram of one session reaches the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sticks_to_its_server_while_sessions_are_balanced() {
    let listen = free_port("127.0.0.1");
    let gw = udp_gateway(&[listen]).spawn().await;
    let (a, b) = (UdpGameServer::start("a").await, UdpGameServer::start("b").await);
    routes(
        &gw,
        &[(
            "rooms",
            json!({"server_port": listen.port(), "upstream": {"type": "roundrobin", "nodes": {a.node(): 1, b.node(): 1}}}),
        )],
    )
    .await;

    let mut players = Vec::new();
    for i in 0..10 {
        let c = UdpClient::new().await;
        // Sent once: a session's first datagram waits while its upstream
        // socket opens and is forwarded then, never dropped.
        let first = c
            .roundtrip_tries(listen, &format!("hello {i}"), 1, Duration::from_secs(5))
            .await
            .expect("the first datagram of a session is forwarded");
        players.push((c, server_of(&first).to_owned()));
    }
    let on_a = players.iter().filter(|(_, s)| s == "a").count();
    assert_eq!(on_a, 5, "round robin alternates sessions: {:?}", players.iter().map(|p| &p.1).collect::<Vec<_>>());

    // Interleaved traffic from every player: each stays with its server.
    for round in 0..5 {
        for (i, (c, server)) in players.iter().enumerate() {
            let reply = c.roundtrip(listen, &format!("move {i} {round}")).await.expect("reply");
            assert_eq!(server_of(&reply), server, "player {i} moved from its server: {reply}");
        }
    }
    assert_eq!(created(&gw, listen, "rooms").await, 10.0);
}

/// A silent session expires after the idle timeout (traffic keeps it, age
/// does not end it); the client's next datagram opens a new session, which
/// round robin sends to the other server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_the_next_one_is_balanced_again() {
    let listen = free_port("127.0.0.1");
    let gw = udp_gateway(&[listen]).stream_yaml("  udp_idle_timeout: 1s").spawn().await;
    let (a, b) = (UdpGameServer::start("a").await, UdpGameServer::start("b").await);
    routes(&gw, &[("r", json!({"server_port": listen.port(), "upstream": {"nodes": {a.node(): 1, b.node(): 1}}}))])
        .await;

    let c = UdpClient::new().await;
    let first = server_of(&c.roundtrip(listen, "hello").await.expect("reply")).to_owned();
    // Busy for three idle timeouts: one session, one server.
    for i in 0..12 {
        let reply = c.roundtrip(listen, &format!("tick {i}")).await.expect("reply");
        assert_eq!(server_of(&reply), first);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(created(&gw, listen, "r").await, 1.0, "activity keeps the session");
    assert_eq!(sessions_active(&gw, listen).await, 1.0);

    // Silence: the session ends and its gauge drops.
    eventually(15, "the session expires", || async { (sessions_active(&gw, listen).await == 0.0).then_some(()) }).await;
    assert_eq!(closed(&gw, listen, "r", "idle_timeout").await, 1.0);
    assert!(gw.log().contains("udp session closed") && gw.log().contains("reason=\"idle_timeout\""));

    let again = c.roundtrip(listen, "back").await.expect("reply");
    assert_ne!(server_of(&again), first, "a new session, balanced again: {again}");
    assert_eq!(created(&gw, listen, "r").await, 2.0);
}

/// A game server restarts. The session on it ends when the server's host
/// answers ICMP port unreachable (the datagram that found the port closed
/// is lost), the node is marked failed, and the client's next datagram opens
/// a new session on the other server; the restarted server does not take
/// that player back (the new session sticks). A single-node upstream reaches
/// the restarted process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_server_restart_ends_its_sessions_and_players_move_on() {
    let listen = free_port("127.0.0.1");
    let solo = free_port("127.0.0.1");
    let gw = udp_gateway(&[listen, solo]).spawn().await;
    let (a, b) = (UdpGameServer::start("a").await, UdpGameServer::start("b").await);
    let only = UdpGameServer::start("v1").await;
    routes(
        &gw,
        &[
            ("pair", json!({"server_port": listen.port(), "upstream": {"nodes": {a.node(): 1, b.node(): 1}}})),
            ("solo", json!({"server_port": solo.port(), "upstream": {"nodes": {only.node(): 1}}})),
        ],
    )
    .await;

    let c = UdpClient::new().await;
    let first = c.roundtrip(listen, "hello").await.expect("reply");
    let (gone, stays) = if server_of(&first) == "a" { (a, b) } else { (b, a) };
    let (gone_name, gone_addr, stays_name) = (gone.name.clone(), gone.addr, stays.name.clone());
    gone.stop().await;

    // The next datagram reaches the closed port: lost, and the session ends.
    c.send(listen, b"into the void").await;
    eventually(10, "the session ends on the refusal", || async {
        (closed(&gw, listen, "pair", "upstream_refused").await == 1.0).then_some(())
    })
    .await;
    let failures =
        format!("shardgate_upstream_connect_failures_total{{upstream=\"stream_routes/pair\",node=\"{gone_addr}\"}}");
    assert_eq!(gw.metric(&failures).await, 1.0, "the node is counted failed");

    let moved = c.roundtrip(listen, "still here").await.expect("reply from the other server");
    assert_eq!(server_of(&moved), stays_name);
    let restarted = UdpGameServer::start_on(&gone_name, gone_addr).await;
    for i in 0..3 {
        let reply = c.roundtrip(listen, &format!("after restart {i}")).await.expect("reply");
        assert_eq!(server_of(&reply), stays_name, "the new session sticks: {reply}");
    }
    assert_eq!(restarted.received(), 0);
    assert_eq!(created(&gw, listen, "pair").await, 2.0);
    assert!(gw.log().contains("reason=\"upstream_refused\""));

    // One node: the client is back on the restarted process.
    let d = UdpClient::new().await;
    assert_eq!(d.roundtrip(solo, "one").await.as_deref(), Some("[v1] one"));
    let only_addr = only.addr;
    only.stop().await;
    d.send(solo, b"lost").await;
    eventually(10, "the solo session ends", || async {
        (closed(&gw, solo, "solo", "upstream_refused").await == 1.0).then_some(())
    })
    .await;
    let _v2 = UdpGameServer::start_on("v2", only_addr).await;
    assert_eq!(d.roundtrip(solo, "two").await.as_deref(), Some("[v2] two"));
}

/// Stream routes match datagrams by `server_port` and `remote_addr`; a route
/// with an SNI never matches one; a datagram no route matches is dropped
/// and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_are_routed_by_server_port_and_remote_addr() {
    let (p1, p2, p3) = (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let gw = udp_gateway(&[p1, p2, p3]).spawn().await;
    let (a, b, c) = (UdpGameServer::start("a").await, UdpGameServer::start("b").await, UdpGameServer::start("c").await);
    let tls = UdpGameServer::start("tls").await;
    routes(
        &gw,
        &[
            (
                "port-1",
                json!({"server_port": p1.port(), "remote_addr": "127.0.0.1", "upstream": {"nodes": {a.node(): 1}}}),
            ),
            ("port-2", json!({"server_port": p2.port(), "upstream": {"nodes": {b.node(): 1}}})),
            (
                "from-2",
                json!({"remote_addr": "127.0.0.2/32", "server_port": p1.port(), "upstream": {"nodes": {c.node(): 1}}}),
            ),
            ("by-sni", json!({"sni": "gs-1.com", "server_port": p3.port(), "upstream": {"nodes": {tls.node(): 1}}})),
        ],
    )
    .await;

    let one = UdpClient::from_ip("127.0.0.1").await;
    let two = UdpClient::from_ip("127.0.0.2").await;
    assert_eq!(one.roundtrip(p1, "x").await.as_deref(), Some("[a] x"));
    assert_eq!(one.roundtrip(p2, "y").await.as_deref(), Some("[b] y"));
    assert_eq!(two.roundtrip(p1, "z").await.as_deref(), Some("[c] z"));

    assert_eq!(one.roundtrip_tries(p3, "sni?", 2, Duration::from_millis(500)).await, None);
    assert!(dropped(&gw, p3, "no_route").await >= 1.0);
    assert_eq!(tls.received(), 0);
    assert!(gw.log().contains("no stream route matches this UDP datagram"));
}

/// `limits.udp_max_sessions`: a datagram that needs a session beyond it is
/// dropped and counted; open sessions keep working; a slot freed by an idle
/// session serves the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_table_is_bounded() {
    let listen = free_port("127.0.0.1");
    let gw = udp_gateway(&[listen])
        .stream_yaml("  udp_idle_timeout: 3s")
        .yaml("limits:\n  udp_max_sessions: 3")
        .spawn()
        .await;
    let gs = UdpGameServer::start("gs").await;
    routes(&gw, &[("r", json!({"server_port": listen.port(), "upstream": {"nodes": {gs.node(): 1}}}))]).await;

    let mut seated = Vec::new();
    for i in 0..3 {
        let c = UdpClient::new().await;
        assert!(c.roundtrip(listen, &format!("seat {i}")).await.is_some());
        seated.push(c);
    }
    let late = UdpClient::new().await;
    assert_eq!(late.roundtrip_tries(listen, "me too", 1, Duration::from_millis(500)).await, None);
    assert!(dropped(&gw, listen, "session_limit").await >= 1.0);
    assert_eq!(created(&gw, listen, "r").await, 3.0);
    for (i, c) in seated.iter().enumerate() {
        assert!(c.roundtrip(listen, &format!("still {i}")).await.is_some(), "open sessions keep working");
    }

    eventually(20, "the seated sessions idle out", || async {
        (sessions_active(&gw, listen).await == 0.0).then_some(())
    })
    .await;
    assert_eq!(late.roundtrip(listen, "now").await.as_deref(), Some("[gs] now"));
}

/// A web ACL on the route, and one on the listener, refuse an address
/// before any session exists (nothing reaches the game server), counted
/// like a refused TCP connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_acls_refuse_an_address_before_a_session_is_created() {
    let (p1, p2) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let gw = gateway()
        .tls_listeners(0)
        .stream_yaml(&format!("  udp:\n    - \"{p1}\"\n    - addr: \"{p2}\"\n      web_acl: players"))
        .spawn()
        .await;
    let admin = gw.admin();
    common::ban_with_web_acl(&admin, "127.0.0.2/32", "players").await;
    let gs = UdpGameServer::start("gs").await;
    routes(
        &gw,
        &[
            (
                "guarded",
                json!({"server_port": p1.port(), "web_acl_id": "players", "upstream": {"nodes": {gs.node(): 1}}}),
            ),
            ("open", json!({"server_port": p2.port(), "upstream": {"nodes": {gs.node(): 1}}})),
        ],
    )
    .await;

    let banned = UdpClient::from_ip("127.0.0.2").await;
    let player = UdpClient::from_ip("127.0.0.1").await;
    for listen in [p1, p2] {
        assert_eq!(banned.roundtrip_tries(listen, "let me in", 2, Duration::from_millis(500)).await, None);
        assert!(dropped(&gw, listen, "waf").await >= 1.0);
        let refused = format!(
            "shardgate_stream_waf_refused_total{{listener=\"{}\",web_acl=\"players\",rule=\"banned\"}}",
            label(listen)
        );
        assert!(gw.metric(&refused).await >= 1.0, "{refused}");
        assert_eq!(player.roundtrip(listen, "hi").await.as_deref(), Some("[gs] hi"));
    }
    assert_eq!(gs.received(), 2, "only the allowed player's datagrams reached the server");
    assert_eq!(created(&gw, p1, "guarded").await + created(&gw, p2, "open").await, 2.0);
}

/// SIGTERM: open sessions keep their server while the gateway drains, a
/// new client gets no session, and the process exits once the sessions
/// idle out, long before the drain deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_open_sessions_and_refuses_new_ones() {
    let listen = free_port("127.0.0.1");
    let mut gw = udp_gateway(&[listen]).stream_yaml("  udp_idle_timeout: 2s").drain_timeout("60s").spawn().await;
    let gs = UdpGameServer::start("gs").await;
    routes(&gw, &[("r", json!({"server_port": listen.port(), "upstream": {"nodes": {gs.node(): 1}}}))]).await;

    let player = UdpClient::new().await;
    assert!(player.roundtrip(listen, "before").await.is_some());
    gw.sigterm();
    eventually(10, "the gateway drains", || async { (gw.readyz().await == 503).then_some(()) }).await;
    for i in 0..3 {
        let reply = player.roundtrip(listen, &format!("during {i}")).await;
        assert_eq!(reply, Some(format!("[gs] during {i}")), "an open session keeps playing while draining");
    }
    let newcomer = UdpClient::new().await;
    assert_eq!(newcomer.roundtrip_tries(listen, "hello?", 1, Duration::from_millis(500)).await, None);
    assert!(dropped(&gw, listen, "draining").await >= 1.0);

    // The player goes quiet: its session idles out and the process exits.
    let status = gw.wait_exit(30).await;
    assert!(status.success(), "{status}");
    assert!(gw.log().contains("reason=\"idle_timeout\""), "{}", gw.log());
}

/// A UDP port that is taken fails the start, naming the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_udp_port_fails_the_start_naming_it() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, metrics) = (shardgate_e2e::ports::free("127.0.0.1"), shardgate_e2e::ports::free("127.0.0.1"));
    let cfg = dir.path().join("shardgate.yaml");
    std::fs::write(
        &cfg,
        format!(
            "stream:\n  tcp: []\n  udp: [\"{addr}\"]\nadmin:\n  listen: \"{admin}\"\nmetrics:\n  listen: \"{metrics}\"\nstore:\n  data_dir: \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SHARDGATE_ADMIN_KEY", shardgate_e2e::ADMIN_KEY)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("exits").expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("binding UDP stream listener {addr}")), "{err}");
    drop(taken);
}

/// A route's stream plugins judge a UDP session too: `ip-restriction`
/// refuses a client address before any session, and `limit-conn` counts
/// sessions per key (over `conn + burst`, a new client's datagrams are
/// dropped; an open session keeps flowing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_plugins_judge_a_session_before_it_is_created() {
    let listen = free_port("127.0.0.1");
    let gw = gateway().tls_listeners(0).stream_yaml(&format!("  udp: [\"{listen}\"]")).spawn().await;
    let gs = UdpGameServer::start("gs").await;
    routes(
        &gw,
        &[(
            "limited",
            json!({"server_port": listen.port(), "upstream": {"nodes": {gs.node(): 1}},
                   "plugins": {"ip-restriction": {"blacklist": ["127.0.0.3"]},
                               "limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "server_addr"}}}),
        )],
    )
    .await;

    let banned = UdpClient::from_ip("127.0.0.3").await;
    assert_eq!(banned.roundtrip_tries(listen, "let me in", 2, Duration::from_millis(500)).await, None);
    assert!(dropped(&gw, listen, "plugin").await >= 1.0, "counted as refused by a plugin");
    assert_eq!(gs.received(), 0, "the game server saw nothing from the banned address");

    let first = UdpClient::from_ip("127.0.0.1").await;
    let reply = first.roundtrip_tries(listen, "one", 20, Duration::from_millis(250)).await;
    assert_eq!(reply.as_deref(), Some("[gs] one"), "the first session is within conn");
    let second = UdpClient::from_ip("127.0.0.2").await;
    assert_eq!(second.roundtrip_tries(listen, "two", 2, Duration::from_millis(500)).await, None, "over conn + burst");
    assert_eq!(first.roundtrip(listen, "still").await.as_deref(), Some("[gs] still"), "the open session flows");
}
