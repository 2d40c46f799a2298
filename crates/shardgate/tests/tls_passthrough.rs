//! TLS passthrough by SNI: on one TLS listener, a `tls_passthrough` route
//! forwards the ClientHello and everything after it untouched to a game
//! server that holds its own certificate, while a terminating route still
//! gets the gateway's; the route's web ACL still runs; a ClientHello rustls
//! would refuse (TLS 1.0) still passes through. Real binary, real sockets,
//! `openssl s_client`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::tls::{presented_cert, roundtrip};
use shardgate_e2e::{GameServer, Gateway, TestCert, TlsClient, TlsGameServer, eventually};

/// `openssl s_client` to `addr` with `sni`, sending `ping` and waiting
/// `wait` seconds for the answer; stdout and stderr, for their `subject=`,
/// `issuer=` and data lines.
async fn s_client(addr: std::net::SocketAddr, sni: &str, extra: &str, wait: f64) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!(
            "(printf 'ping\\n'; sleep {wait}) | timeout 10 openssl s_client -connect {addr} -servername '{sni}' {extra} -no_ign_eof 2>&1; true"
        ),
        dir.path(),
    )
    .await;
    text(&out)
}

/// The certificate's subject line as `openssl s_client` prints it.
fn subject(out: &str) -> Option<&str> {
    out.lines().find(|l| l.starts_with("subject="))
}

fn issuer(out: &str) -> Option<&str> {
    out.lines().find(|l| l.starts_with("issuer="))
}

async fn passthrough_and_terminating_routes(gw: &Gateway, room: &TlsGameServer, gs: &GameServer) {
    let admin = gw.admin();
    let gateway_cert = TestCert::ecdsa(&["gs-1.com"]);
    admin.put_ok("/apisix/admin/ssls/gs-1", &gateway_cert.ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok("/apisix/admin/stream_routes/term", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/pt",
            &json!({"sni": "room.passthrough.test", "tls_passthrough": true, "upstream": {"nodes": {room.node(): 1}}}),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_the_game_servers_own_certificate_and_the_terminating_route_the_gateways() {
    let gw = gateway().spawn().await;
    let room_cert = TestCert::ecdsa(&["room.passthrough.test"]);
    let room = TlsGameServer::start("room", "127.0.0.1:0", &room_cert).await;
    let gs = GameServer::start("gs").await;
    passthrough_and_terminating_routes(&gw, &room, &gs).await;
    let addr = gw.tls_addr();

    // Passthrough: the game server's own certificate, and data both ways.
    let out = eventually(10, "openssl reaches the game server through the gateway", || async {
        let out = s_client(addr, "room.passthrough.test", "", 0.5).await;
        out.contains("[room] ping").then_some(out)
    })
    .await;
    assert!(subject(&out).is_some_and(|s| s.contains("CN = room.passthrough.test")), "{out}");
    assert!(issuer(&out).is_some_and(|s| s.contains("CN = room.passthrough.test")), "self-signed by the room: {out}");
    assert!(!out.contains("gs-1.com"), "never the gateway's certificate: {out}");
    assert!(room.handshakes() >= 1, "the game server did the handshake itself");

    // Terminating, same listener: the gateway's certificate.
    let out = s_client(addr, "gs-1.com", "", 0.5).await;
    assert!(subject(&out).is_some_and(|s| s.contains("CN = gs-1.com")), "{out}");
    assert!(out.contains("[gs] ping"), "{out}");

    // A rustls client sees the same, and talks back and forth.
    let client = TlsClient::default();
    let mut s = client.connect(addr, Some("room.passthrough.test")).await.expect("passthrough handshake");
    assert_eq!(presented_cert(&s), room_cert.der);
    for msg in ["one", "two", "three"] {
        assert_eq!(roundtrip(&mut s, msg).await, format!("[room] {msg}"));
    }
    drop(s);
    let s = client.connect(addr, Some("gs-1.com")).await.expect("terminating handshake");
    assert_ne!(presented_cert(&s), room_cert.der);
    drop(s);

    // A name no route has is refused as before.
    let err = client.connect(addr, Some("nobody.passthrough.test")).await.expect_err("no route");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");

    let listener = format!("tls/{addr}");
    let series = format!("shardgate_stream_tls_passthrough_total{{listener=\"{listener}\",route=\"pt\"}}");
    assert!(gw.metric(&series).await >= 2.0, "counted per passthrough connection");
    eventually(10, "the access log says passthrough", || async {
        let log = gw.log();
        log.lines()
            .any(|l| {
                l.contains("stream connection closed")
                    && l.contains("mode=\"passthrough\"")
                    && l.contains("route=\"pt\"")
            })
            .then_some(())
    })
    .await;
    assert!(gw.log().lines().any(|l| l.contains("mode=\"tls\"") && l.contains("route=\"term\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_routes_web_acl_blocks_before_the_game_server_sees_a_byte() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let room_cert = TestCert::ecdsa(&["room.passthrough.test"]);
    let room = TlsGameServer::start("room", "127.0.0.1:0", &room_cert).await;
    common::ban_with_web_acl(&admin, "127.0.0.2/32", "rooms").await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/pt",
            &json!({"sni": "room.passthrough.test", "tls_passthrough": true, "web_acl_id": "rooms",
                    "upstream": {"nodes": {room.node(): 1}}}),
        )
        .await;
    let addr = gw.tls_addr();
    let client = TlsClient::default();
    let mut s = eventually(10, "an allowed player passes through", || async {
        client.connect_from(Some("127.0.0.1".parse().ok()?), addr, Some("room.passthrough.test")).await.ok()
    })
    .await;
    assert_eq!(roundtrip(&mut s, "hi").await, "[room] hi");
    drop(s);
    let before = room.handshakes();

    let err = client
        .connect_from(Some("127.0.0.2".parse().expect("ip")), addr, Some("room.passthrough.test"))
        .await
        .expect_err("a banned player is closed");
    assert!(!err.to_string().contains("UnrecognisedName"), "closed with no reply, not an alert: {err}");
    let series =
        format!("shardgate_stream_waf_refused_total{{listener=\"tls/{addr}\",web_acl=\"rooms\",rule=\"banned\"}}");
    assert_eq!(gw.metric(&series).await, 1.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(room.handshakes(), before, "the game server never saw the banned player's ClientHello");
    eventually(10, "the refusal is logged as a passthrough connection closed by the WAF", || async {
        gw.log()
            .lines()
            .any(|l| l.contains("mode=\"passthrough\"") && l.contains("reason=\"waf\"") && l.contains("127.0.0.2"))
            .then_some(())
    })
    .await;
}

/// `openssl s_server` speaking TLS 1.0 only; killed when dropped.
struct LegacyServer(Child);

impl LegacyServer {
    fn start(dir: &Path, port: u16) -> Self {
        let cert = TestCert::rsa(&["legacy.passthrough.test"]);
        std::fs::write(dir.join("legacy.crt"), &cert.cert).expect("write cert");
        std::fs::write(dir.join("legacy.key"), &cert.key).expect("write key");
        // -rev answers each line reversed.
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert", "legacy.crt", "-key", "legacy.key"])
            .args(["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", "-rev"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        LegacyServer(child)
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        // Only this test's own process, by its handle.
        if self.0.kill().is_ok() {
            drop(self.0.wait());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_passes_through_although_the_gateway_would_not_terminate_it() {
    let gw = gateway().spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = shardgate_e2e::ports::free("127.0.0.1").port();
    let _legacy = LegacyServer::start(dir.path(), port);
    let gs = GameServer::start("gs").await;
    let room = TlsGameServer::start("room", "127.0.0.1:0", &TestCert::ecdsa(&["room.passthrough.test"])).await;
    passthrough_and_terminating_routes(&gw, &room, &gs).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/legacy",
            &json!({"sni": "legacy.passthrough.test", "tls_passthrough": true,
                    "upstream": {"nodes": {format!("127.0.0.1:{port}"): 1}}}),
        )
        .await;
    let addr = gw.tls_addr();
    let old = "-tls1 -cipher DEFAULT:@SECLEVEL=0";
    let out = eventually(15, "a TLS 1.0 client reaches the TLS 1.0 server", || async {
        let out = s_client(addr, "legacy.passthrough.test", old, 1.0).await;
        out.contains("gnip").then_some(out)
    })
    .await;
    assert!(out.contains("Protocol  : TLSv1\n") || out.contains("TLSv1,"), "a TLS 1.0 session: {out}");
    assert!(subject(&out).is_some_and(|s| s.contains("CN = legacy.passthrough.test")), "{out}");

    // The same client on a terminating route: rustls refuses TLS 1.0.
    let out = s_client(addr, "gs-1.com", old, 0.3).await;
    assert!(subject(&out).is_none() && !out.contains("[gs] ping"), "not terminated: {out}");
    let failures =
        format!("shardgate_stream_tls_handshake_failures_total{{listener=\"tls/{addr}\",reason=\"protocol_error\"}}");
    assert!(gw.metric(&failures).await >= 1.0);
}
