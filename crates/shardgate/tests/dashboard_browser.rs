//! The web dashboard in a real browser: headless Chromium (Debian's
//! `chromium`), driven through `chromium-driver` by Selenium
//! (`python3-selenium`), all installed by `scripts/test`. The gateway, a
//! game server and an origin are real and on loopback; the dashboard has a
//! `dashboard.users` block with hashed passwords (from `shardgate dashboard
//! hash-password`). `tests/browser/dashboard.py` signs in, creates an
//! upstream and a stream route, sees validation errors next to their
//! fields, uploads a certificate, moves the canary weight and promotes,
//! reads a web ACL's sampled requests, ends a session from outside (the
//! page returns to sign-in saying why, and stops polling), checks that no
//! poll outlives its page or the session, that a read-only user sees none
//! of the write controls an admin sees, and that a phone-width page has no
//! horizontal overflow.
//! It checks each step against the Admin API as it goes; this test then
//! checks what the pages showed against the gateway itself (metrics, the
//! Admin API, a player's TLS connection, the edge). Screenshots of the main
//! pages land in `target/tmp/dashboard-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{ADMIN_KEY, GameServer, OriginFile, TestOrigin, TlsClient, eventually};

/// The whole browser run, from starting Chromium to its last check. The
/// script bounds itself a little earlier (`SCRIPT_LIMIT`), so a hang ends as
/// a failure with the script's own report whenever it can.
const BROWSER_LIMIT: Duration = Duration::from_secs(480);
/// Stream routes made before the browser starts: the tables must page them.
const ROUTES: usize = 1000;
/// Player connections held open while the overview is read.
const PLAYERS: usize = 3;
/// Longest one request or player visit of the background traffic may take.
const TURN: Duration = Duration::from_secs(10);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's python3, which has Debian's python3-selenium (a python3 earlier
/// on PATH, such as pyenv's, may not).
const PYTHON: &str = "/usr/bin/python3";

const ADMIN_USER: (&str, &str) = ("ops", "correct horse battery staple");
const VIEWER_USER: (&str, &str) = ("watcher", "read only, not a writer");

/// The user agent the seed's web ACL blocks.
const POSTMAN: &str = "PostmanRuntime/7.29.2";

const PROMOTED_FILE: &str = "the new version of the patch\n";

/// Fails with what to install when the browser tools are missing: the test
/// is part of the suite, so it must not pass without running.
fn require_browser_tools() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER, PYTHON].into_iter().filter(|p| !Path::new(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: run scripts/test, which installs Debian's chromium, chromium-driver and python3-selenium"
    );
    let selenium = std::process::Command::new(PYTHON).args(["-c", "import selenium"]).output().expect("run python3");
    assert!(
        selenium.status.success(),
        "python3-selenium is missing for {PYTHON} (scripts/test installs it): {}",
        String::from_utf8_lossy(&selenium.stderr)
    );
}

/// `shardgate dashboard hash-password`, fed the password on stdin.
async fn hash_password(password: &str) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["dashboard", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardgate dashboard hash-password");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("{password}\n").as_bytes()).await.expect("write the password");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("hash-password finished within 60 s")
        .expect("hash-password output");
    assert!(out.status.success(), "hash-password failed: {}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    assert!(hash.starts_with("$pbkdf2-sha256$"), "not a PHC string: {hash}");
    hash
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// A self-signed certificate for `names` that expires at `not_after` (unix
/// seconds), made with rcgen: PEM certificate, PEM key, DER certificate.
fn cert_expiring(names: &[&str], not_after: u64) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(now_secs() - 86_400);
    params.not_after = epoch + Duration::from_secs(not_after);
    let cert = params.self_signed(&key).expect("self-sign");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// `YYYY-MM-DD HH:MM UTC` of unix seconds, as the dashboard writes dates
/// (days to civil date: Howard Hinnant's `civil_from_days`).
fn utc_minute(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem / 60 % 60)
}

#[test]
fn utc_minute_matches_known_dates() {
    assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
    assert_eq!(utc_minute(951_782_400 + 3_661), "2000-02-29 01:01 UTC");
    assert_eq!(utc_minute(1_798_761_599), "2026-12-31 23:59 UTC");
}

/// Runs the browser script with `config`; returns its output. The script
/// leads its own process group (Python, chromedriver, Chromium); the group
/// is killed once the script has ended, however it ended, so nothing it
/// started outlives the test, and the script is killed with it if it
/// outlives `BROWSER_LIMIT`.
async fn run_browser(config: &Path, log: &Path) -> (bool, String) {
    let out = std::fs::File::create(log).expect("browser log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut command = std::process::Command::new(PYTHON);
    command.arg(&script).arg(config).stdout(out.try_clone().expect("log")).stderr(out);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("start the browser script");
    let pid = child.id();
    let started = tokio::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the browser script") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_LIMIT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    kill_group(pid);
    if status.is_none() {
        let reaped = child.wait();
        assert!(reaped.is_ok(), "reaping the browser script");
    }
    let ok = status.is_some_and(|s| s.success());
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let text = if status.is_none() { format!("{text}\n(killed after {BROWSER_LIMIT:?})") } else { text };
    (ok, text)
}

/// Kills the process group `pgid` (the browser script's: only what this
/// test started). A group already empty (ESRCH, `kill` says "No such
/// process") is fine: the script quit its browser itself.
fn kill_group(pgid: u32) {
    let killed =
        std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).output().expect("run kill");
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(
        killed.status.success() || stderr.contains("No such process"),
        "could not end the browser script's process group {pgid}: {stderr}"
    );
}

/// PNG width and height from the IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    require_browser_tools();
    let admin_hash = hash_password(ADMIN_USER.1).await;
    let viewer_hash = hash_password(VIEWER_USER.1).await;

    let game = GameServer::start("gs-ui").await;
    let origin = TestOrigin::start(vec![
        ("/example.file", OriginFile::new("the current version\n")),
        ("/resource_b/example.file", OriginFile::new(PROMOTED_FILE)),
    ])
    .await;
    let gw = gateway()
        .tls_listeners(1)
        .edge_http(1)
        .yaml(&format!(
            "dashboard:\n  users:\n    - username: \"{}\"\n      password_hash: \"{admin_hash}\"\n    - username: \"{}\"\n      password_hash: \"{viewer_hash}\"\n      read_only: true\n",
            ADMIN_USER.0, VIEWER_USER.0
        ))
        .spawn()
        .await;
    let admin = gw.admin();
    let edge = gw.edge_plain[0];
    let o = origin.addr.to_string();

    // A thousand routes for the tables to page through.
    admin.put_ok("/apisix/admin/upstreams/rooms", &json!({"nodes": {game.node(): 1}})).await;
    for i in 1..=ROUTES {
        admin
            .put_ok(
                &format!("/apisix/admin/stream_routes/r-{i:04}"),
                &json!({"sni": format!("room-{i:04}.rooms.example.com"), "name": format!("room {i:04}"), "upstream_id": "rooms"}),
            )
            .await;
    }
    // Players: a certificate, a route, and connections held open.
    let now = now_secs();
    let (cert, key, _) = cert_expiring(&["players.example.com"], now + 200 * 86_400);
    admin
        .put_ok("/apisix/admin/ssls/players", &json!({"cert": cert, "key": key, "snis": ["players.example.com"]}))
        .await;
    admin
        .put_ok("/apisix/admin/stream_routes/players", &json!({"sni": "players.example.com", "upstream_id": "rooms"}))
        .await;
    // Two more certificates around the one the browser uploads (45 days):
    // one that expires sooner, one later.
    for (id, days) in [("soon", 10u64), ("later", 400)] {
        let (cert, key, _) = cert_expiring(&[&format!("{id}.example.com")], now + days * 86_400);
        admin
            .put_ok(
                &format!("/apisix/admin/ssls/{id}"),
                &json!({"cert": cert, "key": key, "snis": [format!("{id}.example.com")]}),
            )
            .await;
    }
    let upload_not_after = (now + 45 * 86_400) / 60 * 60;
    let (upload_cert, upload_key, upload_der) = cert_expiring(&["gs-ui.example.com"], upload_not_after);

    // The edge: a distribution with a canary (half the requests to staging)
    // and the seed's web ACL.
    admin
        .put_ok(
            "/apisix/admin/cache_policies/assets",
            &json!({"default_ttl": 3600, "query_strings": {"behavior": "all"}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/web_acls/game-assets",
            &json!({"Name": "game-assets", "DefaultAction": {"Allow": {}},
                    "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "game-assets"},
                    "Rules": [{"Name": "StringMatch", "Priority": 0, "Action": {"Block": {}},
                               "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "StringMatch"},
                               "Statement": {"ByteMatchStatement": {"FieldToMatch": {"SingleHeader": {"Name": "user-agent"}},
                                   "PositionalConstraint": "STARTS_WITH", "SearchString": "PostmanRuntime",
                                   "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}}]}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/assets-staging",
            &json!({"staging": true, "origins": {"s3": {"upstream": {"nodes": {o.clone(): 1}}, "origin_path": "/resource_b"}},
                    "default_behavior": {"cache_policy_id": "assets"}, "web_acl_id": "game-assets"}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/continuous_deployment_policies/canary",
            &json!({"staging_distribution_id": "assets-staging", "enabled": true, "traffic": {"type": "single_weight", "weight": 0.5}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({"hosts": ["assets.example.com"], "origins": {"s3": {"upstream": {"nodes": {o.clone(): 1}}}},
                    "default_behavior": {"cache_policy_id": "assets"},
                    "continuous_deployment_policy_id": "canary", "web_acl_id": "game-assets"}),
        )
        .await;

    // Requests the web ACL blocks (the seed's Postman rule); the traffic
    // below sends more, so recent ones stay among the samples.
    let blocked_path = "/blocked-by-waf";
    eventually(10, "the web ACL blocks Postman", || async {
        let (status, _, _) =
            get(edge, "assets.example.com", &format!("{blocked_path}?n=0"), &[("user-agent", POSTMAN)]).await;
        (status == 403).then_some(())
    })
    .await;

    let client = TlsClient::new(None, &[&rustls::version::TLS13]);
    let mut held = Vec::new();
    for _ in 0..PLAYERS {
        let mut s = client.connect(gw.tls_addr(), Some("players.example.com")).await.expect("player connects");
        assert_eq!(roundtrip(&mut s, "hello\n").await, "[gs-ui] hello\n");
        held.push(s);
    }

    // Traffic while the browser looks: edge requests, mostly cache hits, a
    // miss in ten, half of them to staging, a request the web ACL blocks in
    // twenty; and a player who connects (a TLS handshake) and leaves every
    // fifth turn. Bounded in count and stopped at the end.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let stop = Arc::clone(&stop);
        let client = client.clone();
        let tls_addr = gw.tls_addr();
        async move {
            for i in 0..20_000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if i % 5 == 0 {
                    let player = async {
                        let mut s = client.connect(tls_addr, Some("players.example.com")).await.expect("connect");
                        roundtrip(&mut s, "hi\n").await
                    };
                    let echo = tokio::time::timeout(TURN, player).await.expect("a player's visit in time");
                    assert_eq!(echo, "[gs-ui] hi\n");
                }
                if i % 20 == 0 {
                    let path = format!("{blocked_path}?n={i}");
                    let blocked = get(edge, "assets.example.com", &path, &[("user-agent", POSTMAN)]);
                    let (status, _, _) = tokio::time::timeout(TURN, blocked).await.expect("edge answer in time");
                    assert_eq!(status, 403, "{path}");
                }
                let path =
                    if i % 10 == 0 { format!("/example.file?miss={i}") } else { format!("/example.file?v={}", i % 5) };
                let asset = get(edge, "assets.example.com", &path, &[("user-agent", "X-UnrealEngine-Agent")]);
                let (status, _, _) = tokio::time::timeout(TURN, asset).await.expect("edge answer in time");
                assert_eq!(status, 200, "{path}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let screens = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    if screens.exists() {
        std::fs::remove_dir_all(&screens).expect("clear old screenshots");
    }
    std::fs::create_dir_all(&screens).expect("screenshot directory");
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("browser.json");
    let cfg = json!({
        "base": format!("http://{}", gw.admin),
        "admin_key": ADMIN_KEY,
        "users": {"admin": [ADMIN_USER.0, ADMIN_USER.1], "viewer": [VIEWER_USER.0, VIEWER_USER.1]},
        "screens": screens,
        "chromium": CHROMIUM,
        "chromedriver": CHROMEDRIVER,
        "game_node": game.node(),
        "cert": {"snis": ["gs-ui.example.com"], "cert": upload_cert, "key": upload_key},
        "connections": PLAYERS,
        // The thousand, the players' route, and the one the browser makes.
        "routes_total": ROUTES + 2,
        "canary": "canary",
        "distribution": "assets",
        "acl": "game-assets",
        "acl_rule": "StringMatch",
        "blocked_path": blocked_path,
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&cfg).expect("json")).expect("write browser config");

    let (ok, output) = run_browser(&config, &work.path().join("browser.log")).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.expect("edge traffic");
    assert!(ok, "the browser script failed:\n{output}\n--- gateway log (tail) ---\n{}", tail(&gw.log(), 60));
    for step in [
        "sign_in",
        "overview",
        "upstream",
        "invalid_upstream",
        "stream_route",
        "pagination",
        "certificate",
        "web_acl",
        "canary",
        "invalidation",
        "session_ends",
        "admin_controls",
        "read_only",
        "phone",
    ] {
        assert!(output.contains(&format!("STEP {step} ok")), "step {step} did not run:\n{output}");
    }
    let result: Value = output
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).expect("RESULT json"))
        .unwrap_or_else(|| panic!("no RESULT line:\n{output}"));

    // Sign-in: the gateway's words for a wrong password.
    assert_eq!(result["wrong_password_message"], "wrong username or password");

    // Overview: the connections the chart showed are the players held open
    // (those who come and go are gone once the traffic has stopped).
    assert_eq!(result["connections_seen"], PLAYERS.to_string(), "{result}");
    eventually(10, "the held players are the active connections", || async {
        let active: f64 = gw
            .metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with("shardgate_stream_connections_active{"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum();
        (active == PLAYERS as f64).then_some(())
    })
    .await;
    let handshakes: f64 = result["overview"]["handshakes"].as_str().and_then(|v| v.parse().ok()).expect("handshakes/s");
    assert!(handshakes > 0.0, "{result}");
    // The overview counted the routes there were then: the thousand and the players'.
    assert!(result["tile_stream_routes"].as_str().is_some_and(|t| t.starts_with("1,001")), "{result}");
    assert_eq!(admin.list("stream_routes").await["total"], json!(ROUTES + 2));

    // The node health the page showed is the checker's (APISIX's Control API).
    assert!(result["node_health"].as_str().is_some_and(|t| t.ends_with(" healthy")), "{result}");
    let checker =
        shardgate_e2e::admin::http(gw.metrics, "GET", "/v1/healthcheck/upstreams/gs-ui", &[], None).await.json();
    assert_eq!(checker["nodes"][0]["status"], "healthy", "{checker}");

    // The upstream and route the browser made serve a player, with the
    // certificate it uploaded.
    let mut s = client.connect(gw.tls_addr(), Some("gs-ui.example.com")).await.expect("connect by the UI's route");
    assert_eq!(roundtrip(&mut s, "from the ui\n").await, "[gs-ui] from the ui\n");
    assert_eq!(
        shardgate_e2e::tls::presented_cert(&s),
        upload_der,
        "the gateway presents the certificate uploaded in the browser"
    );
    drop(s);

    // Validation errors named their fields.
    assert!(result["nodes_error"].as_str().is_some_and(|e| e.contains("property \"nodes[")), "{result}");
    assert!(result["checks_error"].as_str().is_some_and(|e| e.contains("checks.active.healthy.interval")), "{result}");
    assert_eq!(admin.get("/apisix/admin/upstreams/bad-ui").await.status, 404);

    // Certificates: the expiry and days left the page showed are the
    // certificate's, and the soonest is first.
    assert_eq!(result["ssl"]["expires"], utc_minute(upload_not_after), "{result}");
    let days_left = (upload_not_after - now_secs()) / 86_400;
    let shown: u64 = result["ssl"]["days"]
        .as_str()
        .and_then(|d| d.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("days left shown");
    assert!(shown == days_left || shown == days_left + 1, "days left shown {shown}, computed {days_left}");
    let order: Vec<&str> = result["ssl"]["order"].as_array().expect("order").iter().filter_map(Value::as_str).collect();
    let pos = |id: &str| order.iter().position(|x| *x == id).unwrap_or_else(|| panic!("{id} not listed: {order:?}"));
    assert!(pos("soon") < pos("gs-ui") && pos("gs-ui") < pos("later"), "not soonest first: {order:?}");

    // Canary: the weight the browser set is stored, and the promote made
    // staging's configuration the primary's: players now get the new file.
    let policy = admin.get("/apisix/admin/continuous_deployment_policies/canary").await.json();
    assert_eq!(policy["value"]["traffic"]["weight"], json!(0.2), "{policy}");
    assert_eq!(policy["value"]["enabled"], json!(false), "{policy}");
    let primary = admin.get("/apisix/admin/distributions/assets").await.json();
    assert_eq!(primary["value"]["origins"]["s3"]["origin_path"], "/resource_b", "{primary}");
    eventually(10, "the promoted version is served", || async {
        let (status, _, body) = get(edge, "assets.example.com", "/example.file?after=promote", &[]).await;
        (status == 200 && body == PROMOTED_FILE.as_bytes()).then_some(())
    })
    .await;
    assert!(result["split_after"].as_str().is_some_and(|t| t.contains("Staging 20 %")), "{result}");
    let staging_shown: u64 = result["staging_hits_text"]
        .as_str()
        .and_then(|t| t.split(' ').next())
        .map(|n| n.replace(',', ""))
        .and_then(|n| n.parse().ok())
        .expect("staging hits");
    let staging_served: f64 = gw
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("shardgate_edge_requests_total{") && l.contains("variant=\"staging\""))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        .sum();
    assert!(
        staging_shown > 0 && staging_shown as f64 <= staging_served,
        "staging hits shown {staging_shown}, served {staging_served}"
    );

    // Web ACL: the rule's samples the page showed are requests it blocked,
    // and its counter is the gateway's.
    let rows: Vec<&str> =
        result["sample_rows"].as_array().expect("sample rows").iter().filter_map(Value::as_str).collect();
    assert!(!rows.is_empty(), "{result}");
    for row in &rows {
        assert!(
            row.contains(blocked_path) && row.contains(POSTMAN) && row.contains("BLOCK") && row.contains("StringMatch"),
            "{row}"
        );
    }
    let rule_count: u64 =
        result["rule_count"].as_str().and_then(|t| t.replace(',', "").parse().ok()).expect("rule count");
    let blocked =
        gw.metric("shardgate_waf_requests_total{web_acl=\"game-assets\",rule=\"StringMatch\",action=\"block\"}").await;
    assert!(rule_count > 0 && rule_count as f64 <= blocked, "the page counted {rule_count}, the gateway {blocked}");

    // The stream routes' last page: 1,001–1,002 of the 1,002 routes.
    assert_eq!(result["last_page_text"], "1,001–1,002 · page 21 of 21", "{result}");

    // A session ended from outside: the sign-in form said why.
    assert!(result["session_end_reason"].as_str().is_some_and(|t| t.contains("not signed in")), "{result}");

    // Read-only: the write from the viewer's session was refused in APISIX's words.
    assert!(
        result["viewer_write"][1].as_str().is_some_and(|b| b.contains("invalid method for role viewer")),
        "{result}"
    );
    assert_eq!(admin.get("/apisix/admin/upstreams/viewer-write").await.status, 404);

    // Phone width: no page wider than 375 px.
    for (page, o) in result["phone"].as_object().expect("phone") {
        assert!(o["scrollWidth"].as_u64() <= o["innerWidth"].as_u64() && o["innerWidth"] == 375, "{page}: {o}");
    }

    // Screenshots of the main pages, desktop and phone.
    for (name, width) in [
        ("overview", 1280),
        ("stream-routes", 1280),
        ("ssls", 1280),
        ("canary", 1280),
        ("web-acl-samples", 1280),
        ("upstream-validation", 1280),
        ("phone-stream-routes", 375),
    ] {
        let (w, _) = png_size(&screens.join(format!("{name}.png")));
        assert_eq!(w, width, "{name}.png");
    }
    drop(held);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
