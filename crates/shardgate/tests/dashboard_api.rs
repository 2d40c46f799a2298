//! The dashboard's backend over real sockets: sign-in with hashed and
//! plaintext (seed 000) users and with the keys, the session cookie on the
//! Admin API with its CSRF token, read-only users, expiry, sign-out, shared
//! sessions between replicas, throttling, `validate`'s warning, and the
//! JSON the dashboard reads: metrics samples, health checkers, certificates.

mod common;

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_admin::dashboard::PasswordHash;
use shardgate_e2e::admin::{Response, http};
use shardgate_e2e::{ADMIN_KEY, GameServer, Gateway, TestCert, eventually, ports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hashed user, a read-only hashed user, and seed 000's block verbatim
/// (`authentication.users`, plaintext password, comment and all).
fn users_yaml() -> String {
    let ops = PasswordHash::new_random(b"correct horse battery").expect("hash").to_phc();
    let watcher = PasswordHash::new_random(b"watch only please").expect("hash").to_phc();
    format!(
        "dashboard:\n  users:\n    - username: ops\n      password_hash: \"{ops}\"\n    - username: watcher\n      password_hash: \"{watcher}\"\n      read_only: true\n    - username: admin # dashboard 用户名\n      password: Admin@2025 # dashboard 密碼\n"
    )
}

async fn login(gw: &Gateway, body: &Value) -> Response {
    http(gw.admin, "POST", "/ui/api/login", &[("Content-Type", "application/json")], Some(body.to_string().as_bytes()))
        .await
}

/// The `shardgate_session=...` pair of a sign-in answer, and its CSRF token.
fn session_of(r: &Response) -> (String, String) {
    assert_eq!(r.status, 200, "sign-in failed: {}", r.body);
    let cookie = r.header("set-cookie").expect("set-cookie").split(';').next().expect("pair").to_owned();
    (cookie, r.json()["csrf"].as_str().expect("csrf").to_owned())
}

async fn with_session(
    gw: &Gateway,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(c) = csrf {
        headers.push(("X-CSRF-Token", c));
    }
    let body = body.map(Value::to_string);
    http(gw.admin, method, path, &headers, body.as_deref().map(str::as_bytes)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_and_write_through_the_admin_api_with_their_csrf_token() {
    let gw = gateway().tls_listeners(0).yaml(&users_yaml()).spawn().await;

    // curl, as a browser would see it: the cookie's attributes.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!(
            "curl -s -i -X POST http://{}/ui/api/login -H 'Content-Type: application/json' -d '{{\"username\":\"ops\",\"password\":\"correct horse battery\"}}'",
            gw.admin
        ),
        dir.path(),
    )
    .await;
    let answer = text(&out);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let set_cookie = answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("cookie");
    let attributes: Vec<&str> = set_cookie.trim().split("; ").skip(1).collect();
    assert_eq!(attributes, ["Path=/", "HttpOnly", "SameSite=Strict"], "{set_cookie}");
    assert!(!answer.contains("x_api_key"), "the dashboard never sets APISIX's key cookie");

    let r = login(&gw, &json!({"username": "ops", "password": "correct horse battery"})).await;
    let body = r.json();
    assert_eq!((body["user"].as_str(), body["role"].as_str()), (Some("ops"), Some("admin")));
    let (cookie, csrf) = session_of(&r);
    let session = http(gw.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await;
    assert_eq!(session.json(), body, "a reloaded page finds its session and CSRF token");

    // The seed's plaintext block signs in too.
    let seed = login(&gw, &json!({"username": "admin", "password": "Admin@2025"})).await;
    assert_eq!(seed.status, 200, "{}", seed.body);
    assert_eq!(seed.json()["role"], "admin");

    // A write with the cookie alone is refused and stores nothing.
    let upstream = json!({"nodes": {"127.0.0.1:9": 1}, "type": "roundrobin"});
    let r = with_session(&gw, "PUT", "/apisix/admin/upstreams/u1", &cookie, None, Some(&upstream)).await;
    assert_eq!((r.status, r.json()), (403, json!({"error_msg": "missing or wrong CSRF token"})));
    let r = with_session(&gw, "PUT", "/apisix/admin/upstreams/u1", &cookie, Some("forged"), Some(&upstream)).await;
    assert_eq!(r.status, 403);
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/u1").await.status, 404, "nothing stored");
    let r = with_session(&gw, "PUT", "/apisix/admin/upstreams/u1", &cookie, Some(&csrf), Some(&upstream)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/u1").await.json()["value"]["nodes"], upstream["nodes"]);

    // A read-only user reads, and is refused a write in APISIX's words.
    let (viewer, viewer_csrf) =
        session_of(&login(&gw, &json!({"username": "watcher", "password": "watch only please"})).await);
    let r = with_session(&gw, "GET", "/apisix/admin/upstreams/u1", &viewer, None, None).await;
    assert_eq!(r.status, 200);
    let r = with_session(&gw, "PUT", "/apisix/admin/upstreams/u1", &viewer, Some(&viewer_csrf), Some(&upstream)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["description"], "invalid method for role viewer");

    // The keys sign in with their roles.
    let admin_key = login(&gw, &json!({"key": ADMIN_KEY})).await;
    assert_eq!(admin_key.json()["role"], "admin");

    // Nothing secret reaches the log.
    let log = gw.log();
    let token = cookie.trim_start_matches("shardgate_session=");
    for secret in [token, csrf.as_str(), "correct horse battery", "Admin@2025", "$pbkdf2-sha256", ADMIN_KEY] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let gw = gateway().tls_listeners(0).yaml(&users_yaml()).spawn().await;
    let wrong = login(&gw, &json!({"username": "ops", "password": "Correct horse battery"})).await;
    let unknown = login(&gw, &json!({"username": "root", "password": "correct horse battery"})).await;
    let wrong_key = login(&gw, &json!({"key": "0123456789abcdef0123"})).await;
    for r in [&wrong, &unknown, &wrong_key] {
        assert_eq!((r.status, r.json()), (401, json!({"error_msg": "wrong username or password"})));
        assert!(r.header("set-cookie").is_none());
    }
    let log = gw.log();
    assert!(!log.contains("Correct horse battery") && !log.contains("0123456789abcdef0123"), "no password in the log");

    // A password typed into the name field is not a user name: it stays out
    // of the log, which says only that the name is unknown.
    let typo = login(&gw, &json!({"username": "Tr0ub4dor&3-in-the-name-field", "password": "x"})).await;
    assert_eq!(typo.status, 401);
    let log = gw.log();
    assert!(!log.contains("Tr0ub4dor"), "an unknown user name is not logged:\n{log}");
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("dashboard sign-in failed")).collect();
    assert!(failures.iter().any(|l| l.contains("wrong password") && l.contains("user=ops")), "{failures:#?}");
    assert_eq!(failures.iter().filter(|l| l.contains("unknown user name")).count(), 2, "{failures:#?}");
    assert!(failures.iter().all(|l| !l.contains("user=root")), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_sign_out_ends_them() {
    let gw = gateway().tls_listeners(0).yaml(&format!("{}  session_ttl: 2s\n", users_yaml())).spawn().await;
    let r = login(&gw, &json!({"username": "ops", "password": "correct horse battery"})).await;
    let expires_at = r.json()["expires_at"].as_i64().expect("expiry");
    let (cookie, _) = session_of(&r);
    assert_eq!(with_session(&gw, "GET", "/apisix/admin/upstreams", &cookie, None, None).await.status, 200);
    eventually(10, "the session expires", || async {
        let r = http(gw.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await;
        (r.status == 401).then_some(())
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!(now >= expires_at, "not before its expiry ({now} < {expires_at})");
    let r = with_session(&gw, "GET", "/apisix/admin/upstreams", &cookie, None, None).await;
    assert_eq!(
        (r.status, r.json()["description"].as_str()),
        (401, Some("session expired or signed out; sign in again"))
    );

    // Sign-out: needs the CSRF token, clears the cookie, and the token is useless after.
    let (cookie, csrf) =
        session_of(&login(&gw, &json!({"username": "ops", "password": "correct horse battery"})).await);
    let r = with_session(&gw, "POST", "/ui/api/logout", &cookie, None, None).await;
    assert_eq!(r.status, 403);
    let r = with_session(&gw, "POST", "/ui/api/logout", &cookie, Some(&csrf), None).await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let cleared = r.header("set-cookie").expect("cleared");
    assert!(cleared.starts_with("shardgate_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(http(gw.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await.status, 401);
    assert_eq!(with_session(&gw, "GET", "/apisix/admin/upstreams", &cookie, None, None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_one_secret_share_sessions_and_another_secret_is_refused() {
    let shared = "  secret: 5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5\n";
    let users = users_yaml();
    let a = gateway().tls_listeners(0).yaml(&format!("{users}{shared}")).spawn().await;
    let b = gateway().tls_listeners(0).yaml(&format!("{users}{shared}")).spawn().await;
    let other = gateway().tls_listeners(0).yaml(&format!("{users}  secret: another-secret-0123456789\n")).spawn().await;

    // The seed's plaintext user: both replicas hash it alike.
    let (cookie, csrf) = session_of(&login(&a, &json!({"username": "admin", "password": "Admin@2025"})).await);
    let on_b = http(b.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await;
    assert_eq!(on_b.status, 200, "{}", on_b.body);
    assert_eq!(on_b.json()["csrf"], csrf, "the CSRF token is derived, not stored");
    let r = with_session(
        &b,
        "PUT",
        "/apisix/admin/upstreams/1",
        &cookie,
        Some(&csrf),
        Some(&json!({"nodes": {"127.0.0.1:9": 1}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = http(other.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 401, "a token signed with another secret");
    let r = with_session(&other, "GET", "/apisix/admin/upstreams", &cookie, None, None).await;
    assert_eq!(r.status, 401);

    // Without a secret, sessions are signed with a key derived from the
    // admin key: replicas sharing the key share sessions.
    let c = gateway().tls_listeners(0).yaml(&users).spawn().await;
    let d = gateway().tls_listeners(0).yaml(&users).spawn().await;
    let (cookie, _) = session_of(&login(&c, &json!({"username": "ops", "password": "correct horse battery"})).await);
    assert_eq!(http(d.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await.status, 200);
    assert_eq!(http(a.admin, "GET", "/ui/api/session", &[("Cookie", &cookie)], None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_answered_429_with_the_wait() {
    let gw = gateway().tls_listeners(0).yaml(&users_yaml()).spawn().await;
    // Per user name: five failures, then even the right password waits.
    for i in 0..5 {
        let r = login(&gw, &json!({"username": "ops", "password": format!("guess {i}")})).await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    let r = login(&gw, &json!({"username": "ops", "password": "correct horse battery"})).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let msg = r.json()["error_msg"].as_str().expect("msg").to_owned();
    let secs: u64 = msg
        .strip_prefix("too many sign-in attempts; retry in ")
        .and_then(|m| m.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    assert!((1..=2).contains(&secs), "{msg}");
    assert_eq!(r.header("retry-after"), Some(secs.to_string().as_str()));
    // The wait ends, and the right password works again.
    eventually(10, "the wait ends", || async {
        let r = login(&gw, &json!({"username": "ops", "password": "correct horse battery"})).await;
        (r.status == 200).then_some(())
    })
    .await;

    // Per client address: ten failures across user names, then 429 for any name.
    for i in 0..5 {
        let r = login(&gw, &json!({"username": format!("nobody{i}"), "password": "x"})).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = login(&gw, &json!({"key": "not-a-key-0123456789"})).await;
    assert_eq!(r.status, 429, "the address has failed ten times: {}", r.body);
    let r = login(&gw, &json!({"username": "watcher", "password": "watch only please"})).await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_warns_about_plaintext_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.yaml"),
        "admin:\n  key: admin-key-0123456789\ndashboard:\n  users:\n    - username: admin\n      password: Admin@2025\n",
    )
    .expect("write");
    let bin = env!("CARGO_BIN_EXE_shardgate");
    let out = bash(format!("'{bin}' validate --config c.yaml"), dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: dashboard.users[0].password: user \"admin\" has a plaintext password in the file")
            && stderr.contains("shardgate dashboard hash-password"),
        "{stderr}"
    );
    assert!(!text(&out).contains("Admin@2025"), "the password is not echoed");

    std::fs::write(
        dir.path().join("bad.yaml"),
        "admin:\n  key: admin-key-0123456789\ndashboard:\n  users:\n    - username: a\n      password: x\n    - username: b\n",
    )
    .expect("write");
    let out = bash(format!("'{bin}' validate --config bad.yaml"), dir.path()).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("dashboard.users[1].password_hash is missing"), "{}", text(&out));
}

/// One echo through a plain stream listener.
async fn echo(listener: std::net::SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(listener).await.ok()?;
    s.write_all(b"ping").await.ok()?;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_health_come_from_the_gateway_itself() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).yaml(&users_yaml()).spawn().await;
    let gs = GameServer::start("gs").await;
    let dead = ports::free("127.0.0.1");
    let checks = json!({"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 1}, "unhealthy": {"interval": 1, "tcp_failures": 1}}});
    let admin = gw.admin();
    // The game server has the higher priority: every connection goes there.
    let nodes = json!([
        {"host": "127.0.0.1", "port": gs.addr.port(), "weight": 1, "priority": 1},
        {"host": "127.0.0.1", "port": dead.port(), "weight": 1, "priority": 0}
    ]);
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": nodes, "checks": checks})).await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"upstream_id": "u"})).await;
    let listener = gw.plain[0];
    let reply = eventually(5, "the route serves", || async { echo(listener).await }).await;
    assert_eq!(reply, "[gs] ping");

    let (cookie, _) = session_of(&login(&gw, &json!({"username": "watcher", "password": "watch only please"})).await);
    assert_eq!(http(gw.admin, "GET", "/ui/api/stats", &[], None).await.status, 401, "a session is needed");
    let series = "shardgate_stream_connections_accepted_total";
    let listener_label = format!("tcp/{listener}");
    let accepted = |body: &Value| {
        body["samples"].as_array().expect("samples").iter().find_map(|s| {
            (s["name"] == series && s["labels"]["listener"] == listener_label.as_str())
                .then(|| s["value"].as_f64().expect("value"))
        })
    };
    let first = http(gw.admin, "GET", "/ui/api/stats", &[("Cookie", &cookie)], None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let before = accepted(&first.json()).unwrap_or_else(|| panic!("{series} for {listener_label}: {}", first.body));
    let from_metrics = gw.metric(&format!("{series}{{listener=\"{listener_label}\"}}")).await;
    assert_eq!(before, from_metrics, "the same number /metrics shows");
    assert!(before >= 1.0);
    assert_eq!(first.json()["truncated"], false);
    assert_eq!(echo(listener).await.as_deref(), Some("[gs] ping"));
    // An answer is reused for up to a second; a later poll counts the new connection.
    let second = eventually(10, "a fresh stats answer", || async {
        let body = http(gw.admin, "GET", "/ui/api/stats", &[("Cookie", &cookie)], None).await.json();
        (accepted(&body) != Some(before)).then_some(body)
    })
    .await;
    assert_eq!(accepted(&second), Some(before + 1.0), "two polls give a rate");
    assert!(second["time"].as_f64().expect("time") > first.json()["time"].as_f64().expect("time"));

    // Health: the Control API's answer of the metrics listener, once the dead node is seen.
    eventually(10, "the dead node is unhealthy", || async {
        let r = http(gw.admin, "GET", "/ui/api/health", &[("Cookie", &cookie)], None).await;
        let text = r.body.clone();
        (r.status == 200 && text.contains("unhealthy")).then_some(())
    })
    .await;
    let ours = http(gw.admin, "GET", "/ui/api/health", &[("Cookie", &cookie)], None).await.json();
    let control = http(gw.metrics, "GET", "/v1/healthcheck", &[], None).await.json();
    assert_eq!(ours[0]["name"], "/apisix/upstreams/u");
    let strip = |v: &Value| {
        let mut nodes: Vec<(u64, String)> = v[0]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| (n["port"].as_u64().expect("port"), n["status"].as_str().expect("status").to_owned()))
            .collect();
        nodes.sort();
        nodes
    };
    assert_eq!(strip(&ours), strip(&control), "the same checker status as /v1/healthcheck");
    assert_eq!(strip(&ours), {
        let mut v =
            vec![(u64::from(gs.addr.port()), "healthy".to_owned()), (u64::from(dead.port()), "unhealthy".to_owned())];
        v.sort();
        v
    });
}

/// A certificate for `name` valid for `days` days, made by `openssl req`.
async fn openssl_cert(dir: &std::path::Path, name: &str, days: u32) -> (String, String) {
    let out = bash(
        format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days {days} -subj /CN={name} -addext subjectAltName=DNS:{name} -keyout {name}.key -out {name}.crt 2>&1"
        ),
        dir,
    )
    .await;
    assert!(out.status.success(), "openssl: {}", text(&out));
    let read = |f: String| std::fs::read_to_string(dir.join(f)).expect("read");
    (read(format!("{name}.crt")), read(format!("{name}.key")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_listed_soonest_expiry_first() {
    let gw = gateway().tls_listeners(0).yaml(&users_yaml()).spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (late_cert, late_key) = openssl_cert(dir.path(), "late.example", 90).await;
    let (soon_cert, soon_key) = openssl_cert(dir.path(), "soon.example", 30).await;
    let admin = gw.admin();
    // Stored late first, so the order is the answer's own.
    admin.put_ok("/apisix/admin/ssls/a", &json!({"cert": late_cert, "key": late_key, "snis": ["late.example"]})).await;
    admin
        .put_ok(
            "/apisix/admin/ssls/b",
            &json!({"cert": soon_cert, "key": soon_key, "snis": ["soon.example", "*.soon.example"]}),
        )
        .await;

    let (cookie, _) = session_of(&login(&gw, &json!({"username": "watcher", "password": "watch only please"})).await);
    let r = http(gw.admin, "GET", "/ui/api/certificates", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json()["list"].as_array().expect("list").clone();
    let ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["b", "a"], "soonest first: {}", r.body);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    for (entry, days, name) in [(&list[0], 30, "soon.example"), (&list[1], 90, "late.example")] {
        let left = entry["days_left"].as_i64().expect("days_left");
        assert!((days - 1..=days).contains(&left), "{entry}");
        let not_after = entry["not_after"].as_i64().expect("not_after");
        assert!((not_after - now - days * 86_400).abs() < 120, "{entry}");
        assert!(entry["not_before"].as_i64().expect("not_before") <= now);
        assert_eq!(entry["subject"], format!("CN={name}"));
        assert_eq!(entry["issuer"], format!("CN={name}"));
    }
    assert_eq!(list[0]["snis"], json!(["soon.example", "*.soon.example"]));
    assert!(!r.body.contains("PRIVATE KEY"), "no key in the answer");

    // An expired certificate (accepted, as APISIX accepts it) comes first, below zero days.
    let old = TestCert::expired(&["old.example"]);
    admin.put_ok("/apisix/admin/ssls/c", &old.ssl_body(&["old.example"])).await;
    let list = http(gw.admin, "GET", "/ui/api/certificates", &[("Cookie", &cookie)], None).await.json();
    assert_eq!(list["list"][0]["id"], "c");
    assert!(list["list"][0]["days_left"].as_i64().expect("days") < -365);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_password_output_signs_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_shardgate");
    let out =
        bash(format!("printf '%s\\n' 'pass with spaces & $igns' | '{bin}' dashboard hash-password"), dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));
    let phc = String::from_utf8(out.stdout.clone()).expect("utf-8").trim().to_owned();
    assert!(phc.starts_with("$pbkdf2-sha256$i=600000$") && phc.split('$').count() == 5, "{phc}");
    assert!(!text(&out).contains("pass with spaces"), "the password is not echoed back");

    // Empty input and a password on the command line are refused.
    let out = bash(format!("'{bin}' dashboard hash-password < /dev/null"), dir.path()).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("no password on standard input"), "{}", text(&out));
    let out = bash(format!("'{bin}' dashboard hash-password 'pass with spaces'"), dir.path()).await;
    assert!(!out.status.success(), "{}", text(&out));
    let out = bash(format!("'{bin}' dashboard hash-password --help"), dir.path()).await;
    assert!(text(&out).contains("password_hash:") && text(&out).contains("dashboard:"), "{}", text(&out));

    let gw = gateway()
        .tls_listeners(0)
        .yaml(&format!("dashboard:\n  users:\n    - username: ops\n      password_hash: \"{phc}\"\n"))
        .spawn()
        .await;
    let r = login(&gw, &json!({"username": "ops", "password": "pass with spaces & $igns"})).await;
    assert_eq!((r.status, r.json()["role"].as_str()), (200, Some("admin")), "{}", r.body);
    let r = login(&gw, &json!({"username": "ops", "password": "pass with spaces & $igns\n"})).await;
    assert_eq!(r.status, 401, "the line end was not part of the password");
}

/// How long a `hash-password` run may take before it counts as hung.
const HASH_PASSWORD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `cmd` with piped standard streams; once `wait_for` shows in its
/// output (stdout and stderr), writes `input` and leaves standard input
/// open. Returns whether it exited by itself before the deadline (it is
/// killed otherwise), its success, and its output.
fn drive(mut cmd: std::process::Command, wait_for: &str, input: &[u8]) -> (bool, bool, String) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|mut r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let deadline = std::time::Instant::now() + HASH_PASSWORD_DEADLINE;
    let mut out = Vec::new();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut written = false;
    let mut closed = false;
    while !closed {
        if !written && String::from_utf8_lossy(&out).contains(wait_for) {
            stdin.write_all(input).expect("write the input");
            stdin.flush().expect("flush");
            written = true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => closed = true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
        }
    }
    let exited = closed;
    if !exited && let Err(e) = child.kill() {
        panic!("cannot stop the hung child: {e}");
    }
    let status = child.wait().expect("wait");
    drop(stdin);
    for r in readers {
        r.join().expect("reader");
    }
    (exited, status.success(), String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn hash_password_reads_one_line_and_needs_no_end_of_input() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"));
    cmd.args(["dashboard", "hash-password"]);
    // Standard input stays open after the line, as a terminal's would.
    let (exited, ok, out) = drive(cmd, "", b"one line only\n");
    assert!(exited, "still waiting for more input after Enter: {out}");
    assert!(ok, "{out}");
    let phc = out.trim();
    let hash = PasswordHash::parse(phc).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(hash.verify(b"one line only") && !hash.verify(b"one line only\n"));
}

/// `hash-password` on a terminal (a pseudo-terminal made by util-linux
/// `script`, whose slave side echoes input): the password typed is not
/// shown, and the echo is on again afterwards (`stty -a`), after a refused
/// password too.
#[test]
fn hash_password_hides_what_is_typed_on_a_terminal() {
    let bin = env!("CARGO_BIN_EXE_shardgate");
    for (typed, succeeds) in [("typed-on-a-tty s3cret", true), ("", false)] {
        let mut cmd = std::process::Command::new("script");
        cmd.args([
            "--quiet",
            "--flush",
            "--echo",
            "always",
            "--return",
            "--command",
            &format!("'{bin}' dashboard hash-password; echo \"exit=$?\"; stty -a"),
            "/dev/null",
        ]);
        let (exited, ok, out) = drive(cmd, "it is not shown", format!("{typed}\n").as_bytes());
        assert!(exited && ok, "{out}");
        if succeeds {
            assert!(!out.contains(typed), "the password was echoed: {out}");
            assert!(out.contains("$pbkdf2-sha256$i=600000$") && out.contains("exit=0"), "{out}");
        } else {
            assert!(out.contains("no password on standard input") && out.contains("exit=1"), "{out}");
        }
        let modes: Vec<&str> = out.split_whitespace().collect();
        assert!(modes.contains(&"echo") && !modes.contains(&"-echo"), "the echo is back on: {out}");
    }
}
