//! Live reload of the bootstrap file: SIGHUP (and `shardgate reload`) adds,
//! removes and changes listeners without dropping an open session; an
//! invalid file, or one naming an address that cannot be bound, is refused
//! whole and the gateway keeps serving; SIGHUP never kills the process.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::admin::http;
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{ADMIN_KEY, GameServer, Gateway, TestCert, TlsClient, eventually, ports};
use tokio::net::TcpStream;

/// Waits until the gateway has counted `n` reloads with `result`.
async fn reloads(gw: &Gateway, result: &str, n: u64) {
    let series = format!("shardgate_config_reloads_total{{result=\"{result}\"}}");
    eventually(20, &format!("{n} reload(s) with result {result}"), || async {
        (gw.metric(&series).await as u64 >= n).then_some(())
    })
    .await;
}

/// The reload status the metrics listener serves.
async fn status(gw: &Gateway) -> Value {
    let r = http(gw.metrics, "GET", "/status/reload", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// A plain session through `addr` that has echoed once.
async fn plain_session(addr: SocketAddr, name: &str) -> TcpStream {
    eventually(5, "a routed plain session", || async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hello").await.as_deref() == Some(&format!("[{name}] hello"))).then_some(s)
    })
    .await
}

/// Close reasons that mean a session was cut rather than ended by a peer.
fn cut_closes(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("shardgate_stream_connections_closed_total{"))
        .filter(|l| {
            ["drain", "client_error", "upstream_error", "idle_timeout"]
                .iter()
                .any(|r| l.contains(&format!("reason=\"{r}\"")))
        })
        .map(str::to_owned)
        .collect()
}

/// A player who keeps sending and reading echoes until told to stop.
struct Player {
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Most round trips one player makes (a bound on the loop, not a target).
const PLAYER_MAX_ROUNDS: usize = 20_000;

fn play(mut session: TcpStream, name: &'static str, stop: Arc<AtomicBool>) -> Player {
    let done = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&done);
    let task = tokio::spawn(async move {
        for i in 0..PLAYER_MAX_ROUNDS {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let msg = format!("m{i}");
            match tokio::time::timeout(Duration::from_secs(10), try_roundtrip(&mut session, &msg)).await {
                Ok(Some(reply)) if reply == format!("[{name}] {msg}") => {}
                other => return Err(format!("round trip {i}: {other:?}")),
            }
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    });
    Player { done, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_a_third_listener_keep_playing_while_one_listener_is_added_and_another_removed() {
    let mut gw = gateway().tls_listeners(0).plain_listeners(2).drain_timeout("60s").spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let (kept, removed) = (gw.plain[0], gw.plain[1]);
    let added = ports::free("127.0.0.1");

    let stop = Arc::new(AtomicBool::new(false));
    let mut players = Vec::new();
    for _ in 0..4 {
        players.push(play(plain_session(kept, "gs").await, "gs", Arc::clone(&stop)));
    }
    let mut on_removed = Vec::new();
    for _ in 0..2 {
        on_removed.push(plain_session(removed, "gs").await);
    }

    let yaml = gw.config_text();
    assert!(yaml.contains(&format!("\"{removed}\"")), "{yaml}");
    gw.write_config(&yaml.replace(&format!("\"{removed}\""), &format!("\"{added}\"")));
    let before: Vec<usize> = players.iter().map(|p| p.done.load(Ordering::SeqCst)).collect();
    gw.sighup();
    reloads(&gw, "success", 1).await;

    // The added listener accepts and routes; the removed one refuses.
    let mut s = plain_session(added, "gs").await;
    assert_eq!(roundtrip(&mut s, "new").await, "[gs] new");
    drop(s);
    let refused = TcpStream::connect(removed).await;
    assert!(refused.is_err(), "the removed listener still accepts: {refused:?}");
    // Sessions the removed listener started keep playing...
    for s in &mut on_removed {
        assert_eq!(roundtrip(s, "after").await, "[gs] after");
    }
    // ...and so do the players on the third listener, through and after the reload.
    eventually(20, "every player plays on after the reload", || async {
        players.iter().zip(&before).all(|(p, b)| p.done.load(Ordering::SeqCst) >= b + 5).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for p in players {
        p.task.await.expect("player task").expect("no player was dropped");
    }
    let st = status(&gw).await;
    assert_eq!(st["last"]["result"], "success", "{st}");
    assert_eq!(st["last"]["added"], json!([format!("stream tcp/{added}")]), "{st}");
    assert_eq!(st["last"]["removed"], json!([format!("stream tcp/{removed}")]), "{st}");
    let metrics = gw.metrics_text().await;
    assert!(cut_closes(&metrics).is_empty(), "no session was cut: {:?}", cut_closes(&metrics));
    let active = format!("shardgate_stream_connections_active{{listener=\"tcp/{removed}\"}}");
    assert_eq!(gw.metric(&active).await, 2.0, "the removed listener's sessions still count");
    assert!(!gw.log().contains("ERROR"), "{}", gw.log());

    // The removed listener's sessions still count for the drain: SIGTERM
    // waits for them (up to the 60 s deadline), and they play on meanwhile.
    gw.sigterm();
    eventually(10, "draining", || async { (gw.readyz().await == 503).then_some(()) }).await;
    for s in &mut on_removed {
        assert_eq!(roundtrip(s, "draining").await, "[gs] draining");
    }
    assert!(gw.is_running(), "the drain waits for the removed listener's sessions");
    drop(on_removed);
    assert!(gw.wait_exit(30).await.success(), "exits once they end, before the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_switched_to_plain_and_one_given_a_web_acl_change_only_new_connections() {
    let gw = gateway().tls_listeners(1).plain_listeners(1).spawn().await;
    let admin = gw.admin();
    let gs1 = GameServer::start("gs1").await;
    let gs2 = GameServer::start("gs2").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs1.node(): 1}}}))
        .await;
    admin.put_ok("/apisix/admin/stream_routes/2", &json!({"upstream": {"nodes": {gs2.node(): 1}}})).await;
    let deny_all = r#"{"Name": "deny-all", "DefaultAction": {"Block": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "d"},
      "Rules": []}"#;
    assert_eq!(admin.request("PUT", "/apisix/admin/web_acls/deny-all", Some(deny_all)).await.status, 201);
    let (tls, plain) = (gw.tls[0], gw.plain[0]);
    let client = TlsClient::default();
    let mut tls_session = eventually(5, "gs-1 routed", || async {
        let mut s = client.connect(tls, Some("gs-1.com")).await.ok()?;
        (try_roundtrip(&mut s, "a").await.as_deref() == Some("[gs1] a")).then_some(s)
    })
    .await;
    let mut plain_old = plain_session(plain, "gs2").await;

    let yaml = gw.config_text();
    let tls_entry = format!("    - addr: \"{tls}\"\n      tls: true\n");
    let plain_entry = format!("    - addr: \"{plain}\"\n      tls: false\n");
    assert!(yaml.contains(&tls_entry) && yaml.contains(&plain_entry), "{yaml}");
    let yaml = yaml
        .replace(&tls_entry, &format!("    - addr: \"{tls}\"\n      tls: false\n"))
        .replace(&plain_entry, &format!("{plain_entry}      web_acl: deny-all\n"));
    gw.write_config(&yaml);
    gw.sighup();
    reloads(&gw, "success", 1).await;

    // The TLS listener is plain now: a new player speaks plain TCP there
    // (and is routed by port, to gs2), while the TLS session plays on.
    let mut s = plain_session(tls, "gs2").await;
    assert_eq!(roundtrip(&mut s, "plain now").await, "[gs2] plain now");
    assert_eq!(roundtrip(&mut tls_session, "b").await, "[gs1] b");
    // The other listener refuses new players by its web ACL; the open session plays on.
    let mut denied = TcpStream::connect(plain).await.expect("connect");
    assert_eq!(try_roundtrip(&mut denied, "let me in").await, None, "closed by the web ACL");
    assert_eq!(roundtrip(&mut plain_old, "c").await, "[gs2] c");

    let st = status(&gw).await;
    let changed = st["last"]["changed"].as_array().expect("changed").clone();
    assert!(changed.contains(&json!(format!("stream tls/{tls} -> stream tcp/{tls}"))), "{st}");
    assert!(changed.contains(&json!(format!("stream tcp/{plain}"))), "{st}");
    let cut = cut_closes(&gw.metrics_text().await);
    assert!(cut.is_empty(), "{cut:?}");
    // (Last: the failed handshake below is a client error on the gateway's side.)
    assert!(client.connect(tls, Some("gs-1.com")).await.is_err(), "no TLS handshake on a plain listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_or_an_unbindable_address_is_refused_and_nothing_changes() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let a = gw.plain[0];
    let mut session = plain_session(a, "gs").await;
    let good = gw.config_text();
    let entry = format!("    - addr: \"{a}\"\n      tls: false\n");
    assert!(good.contains(&entry), "{good}");

    // A misspelt field: refused with its path, counted, and the listener serves on.
    gw.write_config(&good.replace(&entry, &format!("{entry}      tsl: true\n")));
    gw.sighup();
    reloads(&gw, "failure", 1).await;
    let log = gw.log();
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR") && line.contains("field=\"stream.tcp[0].tsl\"") && line.contains("tsl"), "{line}");
    assert_eq!(gw.metric("shardgate_config_last_reload_successful").await, 0.0);
    assert_eq!(status(&gw).await["last"]["result"], "failure");
    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");
    plain_session(a, "gs").await;

    // An address that is taken: the whole reload is refused, the error names
    // it, and the other listener of that reload is not opened either.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken_addr = taken.local_addr().expect("addr");
    let free = ports::free("127.0.0.1");
    let two_more = format!("{entry}    - addr: \"{free}\"\n    - addr: \"{taken_addr}\"\n");
    gw.write_config(&good.replace(&entry, &two_more));
    gw.sighup();
    reloads(&gw, "failure", 2).await;
    let error = status(&gw).await["last"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(&format!("stream.tcp[2].addr: binding stream listener {taken_addr}")), "{error}");
    assert!(TcpStream::connect(free).await.is_err(), "nothing from the refused reload was opened");
    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");

    // Once the port is free the same file applies; a setting that cannot
    // change live is named in one warning and counted, and the rest applies.
    drop(taken);
    gw.write_config(&format!("{}limits:\n  max_connections: 5000\n", good.replace(&entry, &two_more)));
    gw.sighup();
    reloads(&gw, "success", 1).await;
    plain_session(free, "gs").await;
    plain_session(taken_addr, "gs").await;
    let log = gw.log();
    let warning = log.lines().find(|l| l.contains("need a restart")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("limits.max_connections") && warning.contains("WARN"), "{warning}");
    assert_eq!(gw.metric("shardgate_config_restart_required").await, 1.0);
    assert_eq!(gw.metric("shardgate_config_last_reload_successful").await, 1.0);
    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");
}

/// Runs `shardgate reload` with `args`, without the admin key in its
/// environment (the gateway has it in its own).
async fn reload_cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command.arg("reload").arg("--config").arg(gw.config_path()).args(args);
    command.env_remove("SHARDGATE_ADMIN_KEY").stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().expect("run shardgate reload")).await.expect("task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shardgate_reload_applies_the_file_and_refuses_what_it_cannot_apply() {
    let mut gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let a = gw.plain[0];
    let mut session = plain_session(a, "gs").await;
    let pid_file = gw.data_dir.join("shardgate.pid");
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid file").trim(), gw.pid().to_string());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pid_file).expect("pid file").permissions().mode() & 0o777;
    assert_eq!(mode & !0o644, 0, "pid file mode {mode:o}");

    let good = gw.config_text();
    let entry = format!("    - addr: \"{a}\"\n      tls: false\n");
    let added = ports::free("127.0.0.1");
    gw.write_config(&good.replace(&entry, &format!("{entry}    - addr: \"{added}\"\n")));
    let out = reload_cli(&gw, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("added: stream tcp/{added}")), "{}", text(&out));
    plain_session(added, "gs").await;
    assert_eq!(gw.metric("shardgate_config_reloads_total{result=\"success\"}").await, 1.0);

    // An invalid file is refused here, and the gateway is not signalled.
    gw.write_config(&good.replace(&entry, &format!("{entry}      tls: maybe\n")));
    let out = reload_cli(&gw, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("stream.tcp[0]") && text(&out).contains("nothing was signalled"), "{}", text(&out));
    assert_eq!(status(&gw).await["reloads"], 1, "not signalled");

    // The gateway's own refusal (a taken address) comes back with its reason.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken_addr = taken.local_addr().expect("addr");
    gw.write_config(&good.replace(&entry, &format!("{entry}    - addr: \"{taken_addr}\"\n")));
    let out = reload_cli(&gw, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refused the reload") && text(&out).contains(&taken_addr.to_string()),
        "{}",
        text(&out)
    );
    assert!(TcpStream::connect(added).await.is_ok(), "the refused file removed nothing");
    drop(taken);

    // A pid file naming another program, or a process that is gone: refused,
    // and the other program is not signalled.
    let other_pid_file = gw.data_dir.join("other.pid");
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
    std::fs::write(&other_pid_file, format!("{}\n", sleeper.id())).expect("write");
    let out = reload_cli(&gw, &["--pid-file", other_pid_file.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not `shardgate run`"), "{}", text(&out));
    assert!(sleeper.try_wait().expect("try_wait").is_none(), "sleep was not signalled");
    sleeper.kill().expect("kill our sleep");
    sleeper.wait().expect("reap");
    std::fs::write(&other_pid_file, format!("{}\n", sleeper.id())).expect("write");
    let out = reload_cli(&gw, &["--pid-file", other_pid_file.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("stale pid file"), "{}", text(&out));

    // Another file than the one the gateway runs with: refused.
    gw.write_config(&good);
    let copy = gw.data_dir.join("copy.yaml");
    std::fs::write(&copy, &good).expect("copy");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["reload", "--config"])
            .arg(&copy)
            .env("SHARDGATE_ADMIN_KEY", ADMIN_KEY)
            .output()
            .expect("run")
    })
    .await
    .expect("task");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("runs with"), "{}", text(&out));

    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");
    drop(session);
    gw.sigterm();
    assert!(gw.wait_exit(30).await.success());
    assert!(!pid_file.exists(), "the pid file is removed on a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighups_in_a_row_never_kill_the_gateway() {
    let mut gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let mut session = plain_session(gw.plain[0], "gs").await;
    let added = ports::free("127.0.0.1");
    let yaml = gw.config_text();
    let entry = format!("    - addr: \"{}\"\n      tls: false\n", gw.plain[0]);
    gw.write_config(&yaml.replace(&entry, &format!("{entry}    - addr: \"{added}\"\n")));
    for _ in 0..20 {
        gw.sighup();
    }
    reloads(&gw, "success", 1).await;
    // Signals that arrive during a reload are coalesced into one more: all
    // settle, and none of them was fatal.
    let settled = eventually(20, "reloads settle", || async {
        let a = status(&gw).await["reloads"].as_u64()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = status(&gw).await["reloads"].as_u64()?;
        (a == b).then_some(b)
    })
    .await;
    assert!((1..=20).contains(&settled), "{settled} reloads for 20 signals");
    assert!(gw.is_running(), "{}", gw.log());
    assert_eq!(gw.readyz().await, 200);
    assert_eq!(gw.metric("shardgate_config_reloads_total{result=\"failure\"}").await, 0.0);
    plain_session(added, "gs").await;
    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");
}

/// Kills a process this test started, by its handle, when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if self.0.kill().is_ok() {
            drop(self.0.wait());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_starting_is_applied_once_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let picked = ports::free_many("127.0.0.1", 4);
    let (listener, added, admin, metrics) = (picked[0], picked[1], picked[2], picked[3]);
    let config = dir.path().join("shardgate.yaml");
    let data = dir.path().join("data");
    let yaml = |listeners: &str| {
        format!(
            "stream:\n  tcp:\n{listeners}admin:\n  listen: \"{admin}\"\nmetrics:\n  listen: \"{metrics}\"\nstore:\n  data_dir: \"{}\"\n",
            data.display()
        )
    };
    std::fs::write(&config, yaml(&format!("    - addr: \"{listener}\"\n"))).expect("write");
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["run", "--config"])
            .arg(&config)
            .env("SHARDGATE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    let pid = child.0.id();
    // The pid file appears once SIGHUP is handled, before anything is bound.
    let pid_file = data.join("shardgate.pid");
    eventually(30, "the pid file", || async { pid_file.exists().then_some(()) }).await;
    std::fs::write(&config, yaml(&format!("    - addr: \"{listener}\"\n    - addr: \"{added}\"\n"))).expect("write");
    for _ in 0..3 {
        let status = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
    }
    let logged = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    eventually(30, "ready", || async {
        let r = shardgate_e2e::admin::try_http(metrics, "GET", "/readyz", &[], None).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    eventually(30, "the queued reload applied", || async {
        let r = http(metrics, "GET", "/status/reload", &[], None).await;
        (r.json()["last"]["result"] == "success").then_some(())
    })
    .await;
    assert!(child.0.try_wait().expect("try_wait").is_none(), "{}", logged());
    assert!(TcpStream::connect(added).await.is_ok(), "the listener added while starting serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listener_and_a_log_level_apply_live() {
    let gw =
        gateway().tls_listeners(0).plain_listeners(1).log_level_from_file().yaml("log:\n  level: warn").spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    drop(plain_session(gw.plain[0], "gs").await);
    let edge = ports::free("127.0.0.1");
    let yaml = gw
        .config_text()
        .replace("only: true", "only: false")
        .replace("log:\n  level: warn", &format!("log:\n  level: info\nedge:\n  http:\n    - addr: \"{edge}\""));
    gw.write_config(&yaml);
    gw.sighup();
    reloads(&gw, "success", 1).await;
    // The edge (and its cache) starts with its first listener.
    let r = http(edge, "GET", "/", &[("Host", "nothing.example")], None).await;
    assert!((400..500).contains(&r.status), "an edge answer for an unknown host: {}", r.status);
    // info now reaches the log: a closed session's access line.
    assert!(!gw.log().contains("stream connection closed"), "warn hid the access log before the reload");
    drop(plain_session(gw.plain[0], "gs").await);
    eventually(10, "the access log at info", || async { gw.log().contains("stream connection closed").then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_drain_timeouts_apply_live() {
    let mut gw =
        gateway().tls_listeners(1).drain_timeout("120s").yaml("limits:\n  handshake_timeout: 120s").spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    gw.admin()
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let addr = gw.tls_addr();
    let mut session = eventually(5, "routed", || async {
        let mut s = TlsClient::default().connect(addr, Some("gs-1.com")).await.ok()?;
        (try_roundtrip(&mut s, "a").await.as_deref() == Some("[gs] a")).then_some(s)
    })
    .await;
    let yaml = gw
        .config_text()
        .replace("timeout: \"120s\"", "timeout: \"1s\"")
        .replace("handshake_timeout: 120s", "handshake_timeout: 1s");
    gw.write_config(&yaml);
    gw.sighup();
    reloads(&gw, "success", 1).await;
    assert_eq!(
        status(&gw).await["last"]["changed"],
        json!([format!("stream tls/{addr}")]),
        "new timeouts, same socket"
    );
    assert_eq!(roundtrip(&mut session, "b").await, "[gs] b");

    // A new connection that sends no ClientHello is closed at the new
    // handshake timeout (the old one was two minutes).
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read =
        tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncReadExt::read(&mut silent, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed by the new handshake timeout: {read:?}");

    // SIGTERM drains with the new drain.timeout: the open session is cut
    // and the process exits well before the old two minutes.
    gw.sigterm();
    let status = gw.wait_exit(60).await;
    assert!(status.success(), "{status}");
    assert!(gw.log().contains("reason=\"drain\""), "the session was cut at the new deadline");
}

/// A second gateway pointed at the first one's pid file leaves it alone,
/// then and on its own exit, so `shardgate reload` still finds the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_file_held_by_a_running_gateway_is_not_taken_over() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let pid_file = gw.data_dir.join("shardgate.pid");
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid file").trim(), gw.pid().to_string());

    let dir = tempfile::tempdir().expect("tempdir");
    let picked = ports::free_many("127.0.0.1", 3);
    let config = dir.path().join("second.yaml");
    std::fs::write(
        &config,
        format!(
            "stream:\n  tcp:\n    - addr: \"{}\"\nadmin:\n  listen: \"{}\"\nmetrics:\n  listen: \"{}\"\nstore:\n  data_dir: \"{}\"\n",
            picked[0],
            picked[1],
            picked[2],
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut second = Child(
        Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--pid-file")
            .arg(&pid_file)
            .env("SHARDGATE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    eventually(30, "the second gateway ready", || async {
        let r = shardgate_e2e::admin::try_http(picked[2], "GET", "/readyz", &[], None).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(logged.contains("another running shardgate holds the pid file"), "{logged}");
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid file").trim(), gw.pid().to_string());
    let status = Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let mut exited = None;
    for _ in 0..3000 {
        exited = second.0.try_wait().expect("try_wait");
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exited = exited.expect("the second gateway exits within 30 s");
    assert!(exited.success(), "{exited}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("still there").trim(),
        gw.pid().to_string(),
        "the first gateway's pid file survives the second's exit"
    );
}

/// A UDP listener added and removed by reloads on the port of a running
/// TCP listener: the two are separate listeners, so removing the UDP one
/// leaves the TCP one serving (and its open session untouched), and a
/// UDP listener's settings cannot change in place (refused, with the field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_listener_comes_and_goes_beside_a_tcp_listener_on_its_port() {
    let game = GameServer::start("gs-1").await;
    let ugs = shardgate_e2e::UdpGameServer::start("udp-1").await;
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let tcp = gw.plain[0];
    // Stream routes do not tell TCP from UDP (as APISIX's): the players
    // come from two loopback addresses.
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/tcp",
            &json!({"remote_addr": "127.0.0.1", "upstream": {"nodes": {game.node(): 1}}}),
        )
        .await;
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/udp",
            &json!({"server_port": tcp.port(), "remote_addr": "127.0.0.2", "upstream": {"scheme": "udp", "nodes": {ugs.node(): 1}}}),
        )
        .await;
    gw.applied().await;
    let mut player = plain_session(tcp, "gs-1").await;

    let plain = gw.config_text();
    let with_udp = plain.replace("stream:\n", &format!("stream:\n  udp: [\"{tcp}\"]\n"));
    assert_ne!(with_udp, plain, "the test found the stream block");
    gw.write_config(&with_udp);
    gw.sighup();
    reloads(&gw, "success", 1).await;
    let client = shardgate_e2e::UdpClient::from_ip("127.0.0.2").await;
    let reply = client.roundtrip_tries(tcp, "ping", 20, Duration::from_millis(250)).await;
    assert_eq!(reply.as_deref(), Some("[udp-1] ping"), "the added UDP listener relays on the TCP listener's port");

    // Its settings cannot change in place: the reload is refused whole.
    gw.write_config(&with_udp.replace(
        &format!("  udp: [\"{tcp}\"]\n"),
        &format!("  udp:\n    - addr: \"{tcp}\"\n      web_acl: players\n"),
    ));
    gw.sighup();
    reloads(&gw, "failure", 1).await;
    let refusal = status(&gw).await.to_string();
    assert!(refusal.contains("stream.udp[0]") && refusal.contains("cannot change"), "{refusal}");

    // Removed: the TCP listener on the same port keeps accepting.
    gw.write_config(&plain);
    gw.sighup();
    reloads(&gw, "success", 2).await;
    assert_eq!(roundtrip(&mut player, "still here").await, "[gs-1] still here", "the open TCP session is untouched");
    let mut again = plain_session(tcp, "gs-1").await;
    assert_eq!(roundtrip(&mut again, "new").await, "[gs-1] new", "the TCP listener still accepts");
}
