//! Configuration changes through the Admin API apply to new connections
//! without a restart, while open sessions keep running on the route and
//! upstream they started with.

mod common;

use std::time::Instant;

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_game_server_then_delete_a_route_while_a_session_stays_up() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let addr = gw.tls_addr();
    let client = TlsClient::default();
    let gs1 = GameServer::start("test-server-1").await;
    let gs2 = GameServer::start("test-server-2").await;
    for (n, gs) in [(1, &gs1), (2, &gs2)] {
        let sni = format!("gs-{n}.com");
        admin.post("/apisix/admin/ssls", &TestCert::ecdsa(&[&sni]).ssl_body(&[&sni])).await;
        admin
            .post(
                "/apisix/admin/stream_routes",
                &json!({"sni": sni, "upstream": {"nodes": {gs.node(): 1}, "type": "roundrobin"}}),
            )
            .await;
    }
    let mut session =
        eventually(5, "gs-1 routed", || async { client.connect(addr, Some("gs-1.com")).await.ok() }).await;
    assert_eq!(roundtrip(&mut session, "before").await, "[test-server-1] before");

    // A third game server arrives: certificate and route through the Admin API.
    let gs3 = GameServer::start("test-server-3").await;
    let started = Instant::now();
    let r = admin.post("/apisix/admin/ssls", &TestCert::ecdsa(&["gs-3.com"]).ssl_body(&["gs-3.com"])).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin
        .post("/apisix/admin/stream_routes", &json!({"sni": "gs-3.com", "upstream": {"nodes": {gs3.node(): 1}}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gs1_route = admin.list("stream_routes").await["list"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["value"]["sni"] == "gs-1.com")
        .and_then(|e| e["value"]["id"].as_str())
        .expect("gs-1 route id")
        .to_owned();
    let mut s3 = eventually(5, "gs-3 routed", || async { client.connect(addr, Some("gs-3.com")).await.ok() }).await;
    eprintln!(
        "gs-3 reachable {} ms after its route was written (includes the handshake)",
        started.elapsed().as_millis()
    );
    assert_eq!(roundtrip(&mut s3, "new").await, "[test-server-3] new");
    assert_eq!(roundtrip(&mut session, "during").await, "[test-server-1] during", "the open session is untouched");

    // The gs-1 route is deleted: new players are refused, the open one plays on.
    let r = admin.delete(&format!("/apisix/admin/stream_routes/{gs1_route}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let started = Instant::now();
    eventually(5, "gs-1 refused", || async { client.connect(addr, Some("gs-1.com")).await.err() }).await;
    eprintln!("gs-1 refused {} ms after its route was deleted", started.elapsed().as_millis());
    assert_eq!(roundtrip(&mut session, "after").await, "[test-server-1] after", "the open session survives the delete");
    let mut s2 = client.connect(addr, Some("gs-2.com")).await.expect("gs-2 unaffected");
    assert_eq!(roundtrip(&mut s2, "still").await, "[test-server-2] still");

    // Moving a route to another game server: new sessions follow, the old one stays.
    let r = admin
        .put("/apisix/admin/stream_routes/moved", &json!({"sni": "gs-2.com", "upstream": {"nodes": {gs3.node(): 1}}}))
        .await;
    assert_eq!(r.status, 201);
    // "moved" sorts after the POSTed 20-digit ids, so delete the old gs-2 route.
    let old = admin.list("stream_routes").await["list"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["value"]["sni"] == "gs-2.com" && e["value"]["id"] != "moved")
        .and_then(|e| e["value"]["id"].as_str())
        .expect("old gs-2 route")
        .to_owned();
    assert_eq!(admin.delete(&format!("/apisix/admin/stream_routes/{old}")).await.status, 200);
    let mut moved = eventually(5, "gs-2 moved to server 3", || async {
        let mut s = client.connect(addr, Some("gs-2.com")).await.ok()?;
        (try_roundtrip(&mut s, "where").await.as_deref() == Some("[test-server-3] where")).then_some(s)
    })
    .await;
    assert_eq!(roundtrip(&mut moved, "again").await, "[test-server-3] again");
    assert_eq!(
        roundtrip(&mut s2, "old").await,
        "[test-server-2] old",
        "the session opened before the move stays on its server"
    );
}
