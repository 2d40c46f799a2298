//! The README's game-server section (health checks, UDP, PROXY protocol
//! with the stream plugins, TLS passthrough, room fleets), run as written:
//! every `sh` block but the setup, which the test replaces with its own
//! game servers, DNS server and gateway on free ports, and the variables
//! the setup block defines.

mod common;

use common::{bash, gateway, text};
use shardgate_e2e::{GameServer, TestCert, TestDns, TlsGameServer, UdpGameServer};

const SECTION: &str = "## Game servers in production: health, UDP, PROXY protocol, passthrough, room fleets";

/// One port free on both 127.0.0.2 and 127.0.0.3 (a template's port is the
/// same for every room).
fn free_on_both() -> u16 {
    for _ in 0..50 {
        let port = shardgate_e2e::ports::free("127.0.0.2").port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_game_server_section_runs_as_written() {
    let blocks = common::readme_blocks(SECTION);
    assert_eq!(blocks.len(), 6, "setup, health, UDP, PROXY protocol, passthrough, room fleets");
    assert!(blocks[0].0, "the first block is the setup block");
    for (setup, _) in &blocks[1..] {
        assert!(!setup, "one setup block");
    }

    // What the setup block starts, on free ports.
    let gs = GameServer::start("gs-1").await;
    let dead = shardgate_e2e::ports::free("127.0.0.1");
    let ugs = UdpGameServer::start("udp-1").await;
    let tls_cert = TestCert::ecdsa(&["room-tls.example.com"]);
    let tgs = TlsGameServer::start("room-tls", "127.0.0.1:0", &tls_cert).await;
    let room_port = free_on_both();
    let _room1 = GameServer::start_on("room-1", &format!("127.0.0.2:{room_port}")).await;
    let _room2 = GameServer::start_on("room-2", &format!("127.0.0.3:{room_port}")).await;
    let dns = TestDns::start().await;
    dns.insert("room-1.rooms.game.test", "127.0.0.2".parse().expect("ip"));
    dns.insert("room-2.rooms.game.test", "127.0.0.3".parse().expect("ip"));
    let udp = shardgate_e2e::udp::free_port("127.0.0.1");
    let gw = gateway()
        .tls_listeners(1)
        .plain_listeners(1)
        .plain_listener_yaml("      proxy_protocol: true")
        .stream_yaml(&format!("  udp: [\"{udp}\"]\n{}", dns.stream_yaml()))
        .spawn()
        .await;

    let vars = format!(
        "K='X-API-KEY: {}'; A=http://{}/apisix/admin; M={}\nGW={}; PP={}; UDP={udp}\nGS={}; DEAD={dead}; UGS={}; TGS={}; ROOM_PORT={room_port}\n",
        shardgate_e2e::ADMIN_KEY,
        gw.admin,
        gw.metrics,
        gw.tls_addr(),
        gw.plain[0].port(),
        gs.node(),
        ugs.node(),
        tgs.node(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outputs = Vec::new();
    for (_, block) in &blocks[1..] {
        let out = bash(format!("set -e\n{vars}{block}\n"), dir.path()).await;
        assert!(out.status.success(), "block failed:\n{block}\n{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!stdout.contains("error_msg"), "every Admin API call succeeded:\n{block}\n{stdout}");
        outputs.push(stdout);
    }

    let health = &outputs[0];
    assert!(health.contains(r#""status":"healthy""#) && health.contains(r#""status":"unhealthy""#), "{health}");
    assert!(health.contains(&format!(r#""port":{}"#, dead.port())), "the dead node is listed: {health}");
    assert!(health.contains(r#""tcp_failure":2"#), "{health}");
    assert!(health.contains("shardgate_upstream_node_healthy{"), "{health}");

    let udp_out = &outputs[1];
    assert!(udp_out.contains("[udp-1] hello"), "the datagram went through the gateway: {udp_out}");
    assert!(udp_out.contains("shardgate_stream_udp_sessions_active"), "{udp_out}");

    let pp = &outputs[2];
    assert!(pp.contains("[gs-1] hello"), "the carried address 203.0.113.7 was routed: {pp}");
    assert!(pp.contains("203.0.113.66: refused"), "ip-restriction judged the carried address: {pp}");
    assert!(pp.contains("no header: refused"), "{pp}");
    assert!(pp.contains("shardgate_proxy_protocol_refused_total"), "{pp}");
    assert!(pp.contains(r#"reason="ip_restricted""#), "{pp}");

    let pt = &outputs[3];
    assert!(
        pt.lines().any(|l| l.starts_with("subject=") && l.contains("room-tls.example.com")),
        "the player saw the game server's own certificate: {pt}"
    );
    assert_eq!(tgs.handshakes(), 1, "the game server did the handshake");

    let rooms = &outputs[4];
    assert!(rooms.contains("[room-1] hello") && rooms.contains("[room-2] hello"), "{rooms}");
    assert!(dns.queries_for("room-1.rooms.game.test") >= 1, "room names were asked of the test's DNS");
}
