//! Health checks (APISIX's `checks`) through the real binary: active TCP,
//! HTTP and HTTPS probes, passive results from real connects, fail-open,
//! the Control API's `/v1/healthcheck`, state kept across an edit, and the
//! schema's errors. Game servers and health endpoints are real sockets on
//! loopback.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::admin::http;
use shardgate_e2e::{GameServer, Gateway, HealthServer, TestCert, eventually, ports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Which game server answers one plain connection through `listener`.
async fn who(listener: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(listener).await.ok()?;
    s.write_all(b"who").await.ok()?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    reply.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(name, _)| name.to_owned())
}

/// `GET` on the metrics listener, as JSON.
async fn control(gw: &Gateway, path: &str) -> (u16, Value) {
    let r = http(gw.metrics, "GET", path, &[], None).await;
    (r.status, r.json())
}

/// The control API's entry for node `port` of `src` (`upstreams/u`), if
/// the checker exists (yet).
async fn try_node(gw: &Gateway, src: &str, port: u16) -> Option<Value> {
    let (code, body) = control(gw, &format!("/v1/healthcheck/{src}")).await;
    if code != 200 {
        return None;
    }
    body["nodes"].as_array().and_then(|n| n.iter().find(|n| n["port"] == port).cloned())
}

async fn node(gw: &Gateway, src: &str, port: u16) -> Value {
    try_node(gw, src, port).await.unwrap_or_else(|| panic!("no node {port} in the checker of {src}"))
}

async fn status_of(gw: &Gateway, src: &str, port: u16) -> String {
    node(gw, src, port).await["status"].as_str().expect("status").to_owned()
}

/// Waits until node `port` of `src` has `status`; returns when it saw it.
async fn wait_status(gw: &Gateway, src: &str, port: u16, status: &str, secs: u64) -> Instant {
    eventually(secs, &format!("{src} node {port} {status}"), || async {
        let now = try_node(gw, src, port).await?;
        (now["status"] == status).then(Instant::now)
    })
    .await
}

/// When a connection ended, and which game server answered it (`None`: it failed).
type Answers = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Connections made one after another through a listener, each asking who
/// answers, until stopped (at most 60 s or 3,000 connections).
struct Load {
    stop: Arc<AtomicBool>,
    seen: Answers,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(listener: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Answers = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..3000 {
                if s.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let answer = who(listener).await;
                v.lock().expect("lock").push((Instant::now(), answer));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Load { stop, seen, task }
    }

    fn since(&self, t: Instant) -> Vec<Option<String>> {
        self.seen.lock().expect("lock").iter().filter(|(at, _)| *at > t).map(|(_, a)| a.clone()).collect()
    }

    async fn stop(self) -> Vec<Option<String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("load task");
        self.seen.lock().expect("lock").iter().map(|(_, a)| a.clone()).collect()
    }
}

fn tcp_checks() -> Value {
    json!({"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 2},
                      "unhealthy": {"interval": 1, "tcp_failures": 2}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_leaves_rotation_and_returns_after_restart() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let listener = gw.plain[0];
    let a_addr = ports::free("127.0.0.1").to_string();
    let a = GameServer::start_on("a", &a_addr).await;
    let b = GameServer::start("b").await;
    let a_port = a.addr.port();
    let admin = gw.admin();
    admin
        .put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {a.node(): 1, b.node(): 1}, "checks": tcp_checks()}))
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"upstream_id": "u"})).await;
    eventually(5, "the route serves", || async { who(listener).await.map(|_| ()) }).await;

    let load = Load::start(listener);
    eventually(10, "both nodes serve the load", || async {
        let seen = load.since(Instant::now() - Duration::from_secs(60));
        (seen.contains(&Some("a".into())) && seen.contains(&Some("b".into()))).then_some(())
    })
    .await;

    drop(a);
    let killed = Instant::now();
    let out = wait_status(&gw, "upstreams/u", a_port, "unhealthy", 10).await;
    let failures =
        format!("shardgate_upstream_connect_failures_total{{upstream=\"upstreams/u\",node=\"127.0.0.1:{a_port}\"}}");
    let attempts_then = gw.metric(&failures).await;
    println!("killed node marked unhealthy after {:?}", out - killed);
    assert!(out - killed < Duration::from_secs(5), "left rotation after {:?}", out - killed);
    assert_eq!(node(&gw, "upstreams/u", a_port).await["counter"]["tcp_failure"], 2, "two failures in a row");

    // Out of rotation: the load goes on, and no connect is even tried on it.
    let after = Instant::now();
    eventually(10, "30 more connections", || async { (load.since(after).len() >= 30).then_some(()) }).await;
    assert_eq!(gw.metric(&failures).await, attempts_then, "no connect tried on the unhealthy node");
    assert!(load.since(after).iter().all(|w| w.as_deref() == Some("b")), "{:?}", load.since(after));

    // Restarted on the same address: back after its successes.
    let a = GameServer::start_on("a", &a_addr).await;
    let back = Instant::now();
    wait_status(&gw, "upstreams/u", a_port, "healthy", 10).await;
    assert_eq!(node(&gw, "upstreams/u", a_port).await["counter"]["success"], 2);
    eventually(10, "the restarted node serves again", || async {
        load.since(back).contains(&Some("a".into())).then_some(())
    })
    .await;
    assert!(a.accepted() > 0);
    let all = load.stop().await;
    assert!(all.iter().all(Option::is_some), "no player connection failed: {all:?}");
    assert!(gw.log().contains("upstream node is unhealthy: no new connections go to it"));
    assert!(gw.log().contains("upstream node is healthy again"));
}

/// Two game servers, `a` on 127.0.0.1 and `b` on 127.0.0.2, each with a
/// health endpoint on the same port (`active.port`) answering 200, and
/// `passive` checks.
async fn game_servers_with_health_ports(
    gw: &Gateway,
    passive: Value,
) -> (GameServer, GameServer, HealthServer, HealthServer) {
    let a = GameServer::start_on("a", "127.0.0.1:0").await;
    let b = GameServer::start_on("b", "127.0.0.2:0").await;
    let port = ports::free("127.0.0.1").port();
    let ha = HealthServer::start(&format!("127.0.0.1:{port}"), 200).await;
    let hb = HealthServer::start(&format!("127.0.0.2:{port}"), 200).await;
    let checks = json!({"active": {
        "type": "http", "port": port, "http_path": "/healthz", "host": "health.game.example",
        "req_headers": ["User-Agent: shardgate-test"],
        "healthy": {"interval": 1, "successes": 2}, "unhealthy": {"interval": 1, "http_failures": 2}
    }, "passive": passive});
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {a.node(): 1, b.node(): 1}, "checks": checks})).await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"upstream_id": "u"})).await;
    eventually(10, "both health endpoints probed", || async { (ha.requests() > 0 && hb.requests() > 0).then_some(()) })
        .await;
    eventually(5, "the route serves", || async { who(gw.plain[0]).await.map(|_| ()) }).await;
    (a, b, ha, hb)
}

async fn answers(listener: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(who(listener).await.expect("an answer"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_statuses_take_a_node_out_and_bring_it_back() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let listener = gw.plain[0];
    let (a, b, ha, _hb) = game_servers_with_health_ports(&gw, json!({})).await;
    let (pa, pb) = (a.addr.port(), b.addr.port());
    let request = ha.last_request();
    assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("\r\nHost: health.game.example\r\n"), "{request}");
    assert!(request.contains("\r\nUser-Agent: shardgate-test\r\n"), "{request}");
    let served = answers(listener, 6).await;
    assert!(served.contains(&"a".into()) && served.contains(&"b".into()), "{served:?}");

    // 200 → 500: out after two failed probes, while its game port still accepts.
    ha.set_status(500);
    wait_status(&gw, "upstreams/u", pa, "unhealthy", 10).await;
    assert_eq!(node(&gw, "upstreams/u", pa).await["counter"]["http_failure"], 2);
    assert_eq!(status_of(&gw, "upstreams/u", pb).await, "healthy");
    let accepted = a.accepted();
    assert!(answers(listener, 10).await.iter().all(|w| w == "b"));
    assert_eq!(a.accepted(), accepted, "no new connection reached the unhealthy node");

    // 500 → 200: back after two good probes.
    ha.set_status(200);
    wait_status(&gw, "upstreams/u", pa, "healthy", 10).await;
    assert!(answers(listener, 6).await.contains(&"a".into()));
    assert!(a.accepted() > accepted);
    let probes = format!(
        "shardgate_upstream_health_probes_total{{upstream=\"upstreams/u\",node=\"{}\",result=\"http_failure\"}}",
        a.node()
    );
    assert!(gw.metric(&probes).await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_unhealthy_fails_open_with_one_warning_and_a_metric() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let listener = gw.plain[0];
    // A connect that succeeds is a passive success (5 bring a node back by
    // default): here the game ports accept while the health endpoints fail,
    // so the test asks for more than it makes.
    let (a, b, ha, hb) = game_servers_with_health_ports(&gw, json!({"healthy": {"successes": 254}})).await;
    let gauge = "shardgate_upstream_fail_open{upstream=\"upstreams/u\"}";
    assert_eq!(gw.metric(gauge).await, 0.0);
    ha.set_status(503);
    hb.set_status(503);
    wait_status(&gw, "upstreams/u", a.addr.port(), "unhealthy", 10).await;
    wait_status(&gw, "upstreams/u", b.addr.port(), "unhealthy", 10).await;
    assert_eq!(gw.metric(gauge).await, 1.0);

    // As APISIX: connections still go to the nodes rather than being refused.
    let served = answers(listener, 10).await;
    assert!(served.contains(&"a".into()) && served.contains(&"b".into()), "{served:?}");
    assert!(gw.metric("shardgate_upstream_fail_open_connects_total{upstream=\"upstreams/u\"}").await >= 10.0);
    let warning = "every node of the upstream is unhealthy; failing open";
    assert_eq!(gw.log().matches(warning).count(), 1, "said once, not per connection");

    // One node back: only it takes traffic, and fail-open ends.
    ha.set_status(200);
    wait_status(&gw, "upstreams/u", a.addr.port(), "healthy", 10).await;
    assert_eq!(gw.metric(gauge).await, 0.0);
    assert!(answers(listener, 6).await.iter().all(|w| w == "a"));
    assert!(gw.log().contains("no longer failing open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_lists_every_checker_in_apisix_s_shape() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    let dead = ports::free("127.0.0.1");
    let admin = gw.admin();
    // No route uses this one: its checker still starts at load.
    admin
        .put_ok(
            "/apisix/admin/upstreams/lonely",
            &json!({"nodes": {gs.node(): 1, dead.to_string(): 1}, "checks": tcp_checks()}),
        )
        .await;
    admin.put_ok("/apisix/admin/upstreams/plain", &json!({"nodes": {gs.node(): 1}})).await;
    admin.put_ok("/apisix/admin/stream_routes/p", &json!({"upstream_id": "plain", "server_port": 1})).await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/inline",
            &json!({"upstream": {"nodes": {gs.node(): 1}, "checks": {"active": {"type": "http"}}}}),
        )
        .await;

    wait_status(&gw, "upstreams/lonely", dead.port(), "unhealthy", 10).await;
    let (code, all) = control(&gw, "/v1/healthcheck").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = all.as_array().expect("list").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["/apisix/stream_routes/inline", "/apisix/upstreams/lonely"], "{all}");

    let (code, lonely) = control(&gw, "/v1/healthcheck/upstreams/lonely").await;
    assert_eq!(code, 200);
    let mut nodes = lonely["nodes"].as_array().expect("nodes").clone();
    nodes.sort_by_key(|n| n["port"].as_u64());
    let counter = |s: u64, t: u64| json!({"success": s, "http_failure": 0, "tcp_failure": t, "timeout_failure": 0});
    let entry = |port: u16, status: &str, c: Value| json!({"ip": "127.0.0.1", "port": port, "hostname": "127.0.0.1", "status": status, "counter": c});
    let mut expected =
        vec![entry(gs.addr.port(), "healthy", counter(0, 0)), entry(dead.port(), "unhealthy", counter(0, 2))];
    expected.sort_by_key(|n| n["port"].as_u64());
    assert_eq!(lonely, json!({"name": "/apisix/upstreams/lonely", "type": "tcp", "nodes": lonely["nodes"]}));
    assert_eq!(nodes, expected);

    let (code, inline) = control(&gw, "/v1/healthcheck/stream_routes/inline").await;
    assert_eq!(
        (code, inline["name"].as_str(), inline["type"].as_str()),
        (200, Some("/apisix/stream_routes/inline"), Some("http"))
    );
    assert_eq!(
        control(&gw, "/v1/healthcheck/upstreams/plain").await,
        (404, json!({"error_msg": "no checker for upstreams[plain]"}))
    );
    assert_eq!(
        control(&gw, "/v1/healthcheck/upstreams/nope").await,
        (404, json!({"error_msg": "upstreams[nope] not found"}))
    );
    assert_eq!(control(&gw, "/v1/healthcheck/routes/1").await, (400, json!({"error_msg": "invalid src type routes"})));

    // Deleting the upstream stops its checker and drops it from the list.
    assert_eq!(admin.delete("/apisix/admin/upstreams/lonely").await.status, 200);
    eventually(5, "lonely leaves the list", || async {
        let (_, all) = control(&gw, "/v1/healthcheck").await;
        (all.as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let gauge = format!("shardgate_upstream_node_healthy{{upstream=\"upstreams/lonely\",node=\"{dead}\"}}");
    assert!(!gw.metrics_text().await.contains(&gauge), "no stale gauge of a removed upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_edits() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let listener = gw.plain[0];
    let b = GameServer::start("b").await;
    let c = GameServer::start("c").await;
    let dead = ports::free("127.0.0.1");
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/upstreams/u",
            &json!({"nodes": {dead.to_string(): 1, b.node(): 1}, "checks": tcp_checks()}),
        )
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"upstream_id": "u"})).await;
    admin.put_ok("/apisix/admin/upstreams/other", &json!({"nodes": {c.node(): 1}, "checks": tcp_checks()})).await;
    wait_status(&gw, "upstreams/u", dead.port(), "unhealthy", 10).await;

    // An edit of another upstream changes nothing here.
    admin.put_ok("/apisix/admin/upstreams/other", &json!({"nodes": {c.node(): 2}, "checks": tcp_checks()})).await;
    assert_eq!(node(&gw, "upstreams/u", dead.port()).await["counter"]["tcp_failure"], 2);

    // An edit of this one (a node added, another retry count): the nodes
    // that stay keep their state from the first moment the edit serves, so
    // the dead node takes no connection while the new checker warms up.
    admin
        .put_ok(
            "/apisix/admin/upstreams/u",
            &json!({"nodes": {dead.to_string(): 1, b.node(): 1, c.node(): 1}, "retries": 0, "checks": tcp_checks()}),
        )
        .await;
    let edited = eventually(5, "the edit serves", || async {
        let (_, body) = control(&gw, "/v1/healthcheck/upstreams/u").await;
        (body["nodes"].as_array().map(Vec::len) == Some(3)).then_some(body)
    })
    .await;
    let find = |port: u16| edited["nodes"].as_array().and_then(|n| n.iter().find(|n| n["port"] == port).cloned());
    let d = find(dead.port()).expect("dead node");
    assert_eq!((d["status"].as_str(), d["counter"]["tcp_failure"].as_u64()), (Some("unhealthy"), Some(2)), "{edited}");
    assert_eq!(find(c.addr.port()).expect("new node")["status"], "healthy");
    // With retries 0 a connect to the dead node would fail the player: none does.
    let served = answers(listener, 12).await;
    assert!(served.iter().all(|w| w == "b" || w == "c"), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probes_accept_self_signed_game_servers_only_when_told() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    let cert = TestCert::ecdsa(&["gs.game.example"]);
    let hs = HealthServer::start_tls("127.0.0.1:0", 200, &cert).await;
    let checks = |verify: bool| {
        json!({"active": {"type": "https", "port": hs.addr.port(), "host": "gs.game.example",
                          "https_verify_certificate": verify,
                          "healthy": {"interval": 1}, "unhealthy": {"interval": 1, "tcp_failures": 2}}})
    };
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {gs.node(): 1}, "checks": checks(false)})).await;
    eventually(10, "probes over TLS", || async { (hs.requests() >= 2).then_some(()) }).await;
    assert_eq!(status_of(&gw, "upstreams/u", gs.addr.port()).await, "healthy");
    assert!(hs.last_request().contains("Host: gs.game.example"));

    // Verifying against the system's roots: a self-signed certificate fails the handshake.
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {gs.node(): 1}, "checks": checks(true)})).await;
    wait_status(&gw, "upstreams/u", gs.addr.port(), "unhealthy", 10).await;
    assert!(gw.log().contains("TLS handshake"), "the reason is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_only_and_out_of_range_checks_are_refused_naming_the_field() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let admin = gw.admin();
    for (path, body, field) in [
        (
            "/apisix/admin/upstreams/x",
            json!({"nodes": {"127.0.0.1:9": 1}, "checks": {"passive": {"unhealthy": {"tcp_failures": 2}}}}),
            "checks.active",
        ),
        (
            "/apisix/admin/upstreams/x",
            json!({"nodes": {"127.0.0.1:9": 1}, "checks": {"active": {"healthy": {"interval": 0}}}}),
            "checks.active.healthy.interval",
        ),
        (
            "/apisix/admin/stream_routes/x",
            json!({"upstream": {"nodes": {"127.0.0.1:9": 1}, "checks": {"passive": {}}}}),
            "upstream.checks.active",
        ),
        (
            "/apisix/admin/stream_routes/x",
            json!({"upstream": {"nodes": {"127.0.0.1:9": 1}, "checks": {"active": {"req_headers": ["Host: x"]}}}}),
            "upstream.checks.active.req_headers[0]",
        ),
    ] {
        let r = admin.put(path, &body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        let msg = r.json()["error_msg"].as_str().expect("error_msg").to_owned();
        assert!(msg.contains(&format!("property \"{field}\" validation failed")), "{msg}");
        assert_eq!(admin.get(path).await.status, 404, "nothing stored");
    }
}
