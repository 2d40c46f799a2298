//! Unit tests of the dashboard's backend through the real router
//! (`tower::ServiceExt::oneshot`, no sockets): sign-in with users and keys,
//! session cookies and CSRF tokens on the Admin API, how the key header, the
//! session cookie and APISIX's `x_api_key` cookie take precedence, roles,
//! sign-out, throttling, the timing decoy, and the `/ui/api/*` JSON answers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use shardgate_core::Limits;
use shardgate_store::{EmbeddedOptions, EmbeddedStore, Store};
use tower::ServiceExt;

use super::*;

const KEY: &str = "test-admin-key-0123456789";
const VIEWER_KEY: &str = "test-viewer-key-0123456789";

struct Ui {
    router: Router,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn cookie(&self) -> String {
        let c = self.headers.get(header::SET_COOKIE).expect("set-cookie").to_str().expect("ascii");
        c.split(';').next().expect("pair").to_owned()
    }
}

fn users() -> Vec<User> {
    vec![
        User {
            username: "ops".into(),
            password_hash: PasswordHash::derive(b"correct horse", &[1u8; 16]),
            read_only: false,
        },
        User {
            username: "watcher".into(),
            password_hash: PasswordHash::derive(b"battery staple", &[2u8; 16]),
            read_only: true,
        },
    ]
}

fn settings(secret: &str, users: Vec<User>) -> DashboardSettings {
    DashboardSettings {
        users,
        session_ttl: Duration::from_secs(3600),
        key: SessionKey::from_source(secret.as_bytes()),
        secure_cookie: false,
        body_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

fn ui_with(settings: DashboardSettings) -> Ui {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let state = AdminState::new(store as Arc<dyn Store>, "/apisix", KEY, Limits::default())
        .with_dashboard(Some(Dashboard::new(settings, KEY, Some(VIEWER_KEY))))
        .with_viewer_key(Some(VIEWER_KEY.into()));
    Ui { router: crate::router(state.clone()).merge(router(state)), _dir: dir }
}

fn ui() -> Ui {
    ui_with(settings("a-dashboard-secret-0123456789", users()))
}

impl Ui {
    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn login(&self, body: Value) -> Answer {
        self.call("POST", "/ui/api/login", &[("content-type", "application/json")], &body.to_string()).await
    }

    /// Signs in and returns the cookie pair and the CSRF token.
    async fn session(&self, body: Value) -> (String, String) {
        let a = self.login(body).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        (a.cookie(), a.body["csrf"].as_str().expect("csrf").to_owned())
    }
}

#[tokio::test]
async fn a_user_signs_in_and_the_session_is_found_again() {
    let ui = ui();
    let a = ui.login(json!({"username": "ops", "password": "correct horse"})).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["user"], "ops");
    assert_eq!(a.body["role"], "admin");
    let set = a.headers.get(header::SET_COOKIE).expect("cookie").to_str().expect("ascii").to_owned();
    assert!(set.starts_with("shardgate_session=v1."), "{set}");
    assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Strict"), "{set}");
    assert_eq!(a.headers.get(header::CACHE_CONTROL).expect("no-store"), "no-store");
    let expires = a.body["expires_at"].as_i64().expect("expiry");
    assert!((expires - now_unix() - 3600).abs() <= 2, "{expires}");

    let again = ui.call("GET", "/ui/api/session", &[("cookie", &a.cookie())], "").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, a.body, "a reloaded page gets the same CSRF token");
    let none = ui.call("GET", "/ui/api/session", &[], "").await;
    assert_eq!((none.status, none.body), (StatusCode::UNAUTHORIZED, json!({"error_msg": "not signed in"})));
}

#[tokio::test]
async fn wrong_password_unknown_user_and_wrong_key_answer_alike() {
    let ui = ui();
    let expected = json!({"error_msg": "wrong username or password"});
    for body in [
        json!({"username": "ops", "password": "wrong"}),
        json!({"username": "nobody", "password": "correct horse"}),
        json!({"key": "not-the-key-0123456789"}),
    ] {
        let a = ui.login(body.clone()).await;
        assert_eq!((a.status, &a.body), (StatusCode::UNAUTHORIZED, &expected), "{body}");
        assert!(a.headers.get(header::SET_COOKIE).is_none());
    }
}

#[tokio::test]
async fn the_keys_sign_in_with_their_roles() {
    let ui = ui();
    let a = ui.login(json!({"key": KEY})).await;
    assert_eq!((a.body["role"].as_str(), a.body["user"].as_str()), (Some("admin"), Some(ADMIN_KEY_USER)));
    let v = ui.login(json!({"key": VIEWER_KEY})).await;
    assert_eq!((v.body["role"].as_str(), v.body["user"].as_str()), (Some("viewer"), Some(VIEWER_KEY_USER)));
    assert!(
        !a.headers.get_all(header::SET_COOKIE).iter().any(|c| c.to_str().unwrap_or("").contains("x_api_key")),
        "the dashboard never sets APISIX's key cookie"
    );
}

#[tokio::test]
async fn malformed_sign_in_bodies_name_the_field() {
    let ui = ui();
    for (body, msg) in [
        ("{\"username\":\"ops\"}", "invalid request body: password: missing"),
        ("{\"password\":\"x\"}", "invalid request body: username: missing"),
        ("{\"username\":7,\"password\":\"x\"}", "invalid request body: username: expected a string"),
        (
            "{\"username\":\"ops\",\"password\":\"x\",\"key\":\"k\"}",
            "invalid request body: key: give username and password, or key, not both",
        ),
        ("{\"user\":\"ops\"}", "invalid request body: unknown field \"user\" (expected username and password, or key)"),
        ("{\"username\":\"\",\"password\":\"x\"}", "invalid request body: username: empty"),
        ("[]", "invalid request body: expected a JSON object with username and password, or key"),
    ] {
        let a = ui.call("POST", "/ui/api/login", &[("content-type", "application/json")], body).await;
        assert_eq!((a.status, a.body["error_msg"].as_str()), (StatusCode::BAD_REQUEST, Some(msg)), "{body}");
    }
    let a = ui.call("POST", "/ui/api/login", &[("content-type", "application/json")], "{").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let form = ui.call("POST", "/ui/api/login", &[("content-type", "text/plain")], "{\"key\":\"x\"}").await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "a cross-site form cannot sign anyone in");
    let big = format!("{{\"username\":\"ops\",\"password\":\"{}\"}}", "a".repeat(MAX_LOGIN_BODY));
    let a = ui.call("POST", "/ui/api/login", &[("content-type", "application/json")], &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn admin_api_writes_with_a_session_need_the_csrf_token() {
    let ui = ui();
    let (cookie, csrf) = ui.session(json!({"username": "ops", "password": "correct horse"})).await;
    let body = r#"{"nodes":{"127.0.0.1:1":1}}"#;
    let a = ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &cookie)], body).await;
    assert_eq!((a.status, a.body), (StatusCode::FORBIDDEN, json!({"error_msg": "missing or wrong CSRF token"})));
    let a = ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &cookie), ("x-csrf-token", "nope")], body).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = ui.call("GET", "/apisix/admin/upstreams/1", &[("cookie", &cookie)], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "the refused write stored nothing");
    let a = ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &cookie), ("x-csrf-token", &csrf)], body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = ui.call("GET", "/apisix/admin/upstreams/1", &[("cookie", &cookie)], "").await;
    assert_eq!(a.status, StatusCode::OK, "reads need no CSRF token");
    // Another session's CSRF token does not fit.
    let (_, other_csrf) = ui.session(json!({"key": KEY})).await;
    let a =
        ui.call("DELETE", "/apisix/admin/upstreams/1", &[("cookie", &cookie), ("x-csrf-token", &other_csrf)], "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn viewers_may_only_read() {
    let ui = ui();
    for creds in [json!({"username": "watcher", "password": "battery staple"}), json!({"key": VIEWER_KEY})] {
        let (cookie, csrf) = ui.session(creds.clone()).await;
        let a =
            ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &cookie), ("x-csrf-token", &csrf)], "{}").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{creds}");
        assert_eq!(a.body["description"], "invalid method for role viewer");
        let a = ui.call("GET", "/apisix/admin/ssls?include_secrets=true", &[("cookie", &cookie)], "").await;
        assert_eq!(a.body["description"], "include_secrets is not allowed for role viewer");
        let a = ui.call("GET", "/apisix/admin/upstreams", &[("cookie", &cookie)], "").await;
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_key_header_wins_over_a_session() {
    let ui = ui();
    let (cookie, _) = ui.session(json!({"key": VIEWER_KEY})).await;
    let a = ui
        .call(
            "PUT",
            "/apisix/admin/upstreams/1",
            &[("cookie", &cookie), ("x-api-key", KEY)],
            r#"{"nodes":{"127.0.0.1:1":1}}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "the explicit admin key decides, no CSRF token needed");
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_ends_the_session() {
    let ui = ui();
    let (cookie, csrf) = ui.session(json!({"username": "ops", "password": "correct horse"})).await;
    let a = ui.call("POST", "/ui/api/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = ui.call("POST", "/ui/api/logout", &[("cookie", &cookie), ("x-csrf-token", &csrf)], "").await;
    assert_eq!((a.status, &a.body), (StatusCode::OK, &json!({})));
    let cleared = a.headers.get(header::SET_COOKIE).expect("cleared").to_str().expect("ascii");
    assert!(cleared.starts_with("shardgate_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let a = ui.call("GET", "/ui/api/session", &[("cookie", &cookie)], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = ui.call("GET", "/apisix/admin/upstreams", &[("cookie", &cookie)], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "the token is useless on the Admin API too");
}

#[tokio::test]
async fn sessions_follow_the_credential_and_the_key() {
    let secret = "a-dashboard-secret-0123456789";
    let first = ui_with(settings(secret, users()));
    let (cookie, _) = first.session(json!({"username": "ops", "password": "correct horse"})).await;
    // A replica with the same secret and users accepts it.
    let replica = ui_with(settings(secret, users()));
    assert_eq!(replica.call("GET", "/ui/api/session", &[("cookie", &cookie)], "").await.status, StatusCode::OK);
    // Another secret does not.
    let other = ui_with(settings("another-secret-0123456789", users()));
    assert_eq!(other.call("GET", "/ui/api/session", &[("cookie", &cookie)], "").await.status, StatusCode::UNAUTHORIZED);
    // The user made read-only, or given a new password: the session ends.
    let mut demoted = users();
    demoted[0].read_only = true;
    let demoted = ui_with(settings(secret, demoted));
    assert_eq!(
        demoted.call("GET", "/ui/api/session", &[("cookie", &cookie)], "").await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut changed = users();
    changed[0].password_hash = PasswordHash::derive(b"new password", &[1u8; 16]);
    let changed = ui_with(settings(secret, changed));
    assert_eq!(
        changed.call("GET", "/ui/api/session", &[("cookie", &cookie)], "").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_user_name() {
    let ui = ui();
    for i in 0..throttle::USER_FREE_FAILURES {
        let a = ui.login(json!({"username": "ops", "password": format!("guess {i}")})).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let a = ui.login(json!({"username": "ops", "password": "correct horse"})).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let msg = a.body["error_msg"].as_str().expect("msg");
    assert!(msg.starts_with("too many sign-in attempts; retry in ") && msg.ends_with(" s"), "{msg}");
    let retry: u64 =
        a.headers.get(header::RETRY_AFTER).expect("retry-after").to_str().expect("ascii").parse().expect("n");
    assert!((1..=throttle::FIRST_WAIT.as_secs()).contains(&retry), "{retry}");
    // Another user name is not held back by these failures.
    let other = ui.login(json!({"username": "watcher", "password": "battery staple"})).await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_dashboard_there_is_no_ui_api_and_cookies_mean_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let state = AdminState::new(store as Arc<dyn Store>, "/apisix", KEY, Limits::default());
    let ui = Ui { router: crate::router(state.clone()).merge(router(state)), _dir: dir };
    let a = ui.login(json!({"key": KEY})).await;
    assert_eq!(
        (a.status, a.body["error_msg"].as_str()),
        (StatusCode::NOT_FOUND, Some("the dashboard is off (dashboard.enabled: false)"))
    );
    // A session from a dashboard elsewhere is just an unknown cookie here.
    let a = ui.call("GET", "/apisix/admin/upstreams", &[("cookie", "shardgate_session=v1.x.y")], "").await;
    assert_eq!(a.body["description"], "missing apikey");
}

#[tokio::test]
async fn stats_health_and_certificates_need_a_session_and_answer_json() {
    use prometheus_client::metrics::gauge::Gauge;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let metrics = Metrics::new();
    let g: Gauge = Gauge::default();
    g.set(42);
    metrics.register(|r| r.register("test_level", "A level", g.clone()));
    let health: HealthcheckStatus = Arc::new(|_| (200, json!([{"name": "/apisix/upstreams/1", "nodes": []}])));
    let dashboard = Dashboard::new(settings("a-dashboard-secret-0123456789", users()), KEY, None)
        .with_metrics(metrics)
        .with_health(health);
    let state = AdminState::new(Arc::clone(&store) as Arc<dyn Store>, "/apisix", KEY, Limits::default())
        .with_dashboard(Some(dashboard));
    // An object written by something else than this API, which no parser reads.
    store
        .put(
            "/apisix/ssls/broken",
            b"{\"cert\":\"garbage\",\"snis\":[\"b.example\"]}".to_vec(),
            shardgate_store::Condition::Always,
        )
        .await
        .expect("put");
    let ui = Ui { router: crate::router(state.clone()).merge(router(state)), _dir: dir };
    for path in ["/ui/api/stats", "/ui/api/health", "/ui/api/certificates"] {
        let a = ui.call("GET", path, &[], "").await;
        assert_eq!((a.status, &a.body), (StatusCode::UNAUTHORIZED, &json!({"error_msg": "not signed in"})), "{path}");
    }
    let (cookie, _) = ui.session(json!({"username": "watcher", "password": "battery staple"})).await;
    let stats = ui.call("GET", "/ui/api/stats", &[("cookie", &cookie)], "").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert!((stats.body["time"].as_f64().expect("time") - now_unix() as f64).abs() < 5.0);
    assert_eq!(stats.body["samples"], json!([{"name": "shardgate_test_level", "labels": {}, "value": 42.0}]));
    let health = ui.call("GET", "/ui/api/health", &[("cookie", &cookie)], "").await;
    assert_eq!((health.status, health.body), (StatusCode::OK, json!([{"name": "/apisix/upstreams/1", "nodes": []}])));
    let certs = ui.call("GET", "/ui/api/certificates", &[("cookie", &cookie)], "").await;
    assert_eq!(certs.status, StatusCode::OK);
    assert_eq!(certs.body["list"][0]["id"], "broken");
    assert_eq!(certs.body["list"][0]["snis"], json!(["b.example"]));
    assert_eq!(certs.body["list"][0]["error"], "cert: no PEM block found");
}

#[tokio::test]
async fn secure_cookie_adds_secure() {
    let mut s = settings("a-dashboard-secret-0123456789", users());
    s.secure_cookie = true;
    let ui = ui_with(s);
    let a = ui.login(json!({"key": KEY})).await;
    let set = a.headers.get(header::SET_COOKIE).expect("cookie").to_str().expect("ascii").to_owned();
    assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Strict; Secure"), "{set}");
    let (cookie, csrf) = (a.cookie(), a.body["csrf"].as_str().expect("csrf").to_owned());
    let out = ui.call("POST", "/ui/api/logout", &[("cookie", &cookie), ("x-csrf-token", &csrf)], "").await;
    let cleared = out.headers.get(header::SET_COOKIE).expect("cleared").to_str().expect("ascii").to_owned();
    assert!(cleared.ends_with("; Max-Age=0; Secure"), "{cleared}");
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "with_dashboard called on a state already cloned")]
fn the_dashboard_cannot_be_added_to_a_shared_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let state = AdminState::new(store as Arc<dyn Store>, "/apisix", KEY, Limits::default());
    let _shared = state.clone();
    let dashboard = Dashboard::new(settings("a-dashboard-secret-0123456789", users()), KEY, None);
    drop(state.with_dashboard(Some(dashboard)));
}

/// A user whose hash was made with `iterations` (the hash itself matches
/// no password: only its cost matters here).
fn user_with_iterations(name: &str, iterations: u32) -> User {
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD_NO_PAD.encode(vec![7u8; n]);
    let phc = format!("$pbkdf2-sha256$i={iterations}${}${}", b64(16), b64(32));
    User { username: name.into(), password_hash: PasswordHash::parse(&phc).expect("phc"), read_only: false }
}

#[test]
fn the_decoy_costs_as_much_as_the_costliest_user() {
    let key = "a-dashboard-secret-0123456789";
    let d = Dashboard::new(
        settings(key, vec![user_with_iterations("cheap", 100_000), user_with_iterations("dear", 2_000_000)]),
        KEY,
        None,
    );
    assert_eq!(d.decoy.iterations(), 2_000_000);
    let d = Dashboard::new(settings(key, vec![user_with_iterations("cheap", 100_000)]), KEY, None);
    assert_eq!(d.decoy.iterations(), 100_000);
    let d = Dashboard::new(settings(key, Vec::new()), KEY, None);
    assert_eq!(d.decoy.iterations(), password::ITERATIONS, "no users: what a new hash costs");
}

#[tokio::test(start_paused = true)]
async fn stats_answers_are_reused_for_a_second() {
    use prometheus_client::metrics::gauge::Gauge;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let metrics = Metrics::new();
    let g: Gauge = Gauge::default();
    g.set(1);
    metrics.register(|r| r.register("test_level", "A level", g.clone()));
    let dashboard = Dashboard::new(settings("a-dashboard-secret-0123456789", users()), KEY, None).with_metrics(metrics);
    let state =
        AdminState::new(store as Arc<dyn Store>, "/apisix", KEY, Limits::default()).with_dashboard(Some(dashboard));
    let ui = Ui { router: crate::router(state.clone()).merge(router(state)), _dir: dir };
    let (cookie, _) = ui.session(json!({"key": KEY})).await;
    let level = |a: &Answer| a.body["samples"][0]["value"].as_f64();

    let first = ui.call("GET", "/ui/api/stats", &[("cookie", &cookie)], "").await;
    assert_eq!((first.status, level(&first)), (StatusCode::OK, Some(1.0)), "{:?}", first.body);
    assert_eq!(first.body["truncated"], false);
    assert_eq!(first.headers.get(header::CONTENT_TYPE).expect("type"), "application/json");
    assert_eq!(first.headers.get(header::CACHE_CONTROL).expect("no-store"), "no-store");
    g.set(2);
    let again = ui.call("GET", "/ui/api/stats", &[("cookie", &cookie)], "").await;
    assert_eq!(again.body, first.body, "within a second: the same answer");
    tokio::time::advance(stats::CACHE_FOR).await;
    let fresh = ui.call("GET", "/ui/api/stats", &[("cookie", &cookie)], "").await;
    assert_eq!(level(&fresh), Some(2.0), "{:?}", fresh.body);
    // The cache serves signed-in callers only.
    let anonymous = ui.call("GET", "/ui/api/stats", &[], "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_key_header_then_the_session_then_the_key_cookie_decide() {
    let ui = ui();
    let body = r#"{"nodes":{"127.0.0.1:1":1}}"#;
    let (admin, admin_csrf) = ui.session(json!({"username": "ops", "password": "correct horse"})).await;
    let (viewer, viewer_csrf) = ui.session(json!({"username": "watcher", "password": "battery staple"})).await;

    // A key header decides, even a wrong or empty one: the session is not a fallback.
    for key in ["not-the-key-0123456789", ""] {
        let headers = [("cookie", admin.as_str()), ("x-csrf-token", admin_csrf.as_str()), ("x-api-key", key)];
        let a = ui.call("GET", "/apisix/admin/upstreams", &headers, "").await;
        assert_eq!(
            (a.status, a.body["description"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("wrong apikey")),
            "{key:?}"
        );
        let a = ui.call("PUT", "/apisix/admin/upstreams/1", &headers, body).await;
        assert_eq!(
            (a.status, a.body["description"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("wrong apikey")),
            "{key:?}"
        );
    }

    // A valid session wins over the x_api_key cookie: its CSRF rule and its role hold.
    let with_key_cookie = |session: &str| format!("{session}; x_api_key={KEY}");
    let a = ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &with_key_cookie(&admin))], body).await;
    assert_eq!((a.status, a.body), (StatusCode::FORBIDDEN, json!({"error_msg": "missing or wrong CSRF token"})));
    let a = ui
        .call(
            "PUT",
            "/apisix/admin/upstreams/1",
            &[("cookie", &with_key_cookie(&viewer)), ("x-csrf-token", &viewer_csrf)],
            body,
        )
        .await;
    assert_eq!(
        (a.status, a.body["description"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid method for role viewer"))
    );
    // A session that is no longer valid is refused, not replaced by the key cookie.
    let a = ui
        .call("GET", "/apisix/admin/upstreams", &[("cookie", &with_key_cookie("shardgate_session=v1.forged.x"))], "")
        .await;
    assert_eq!(
        (a.status, a.body["description"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session expired or signed out; sign in again"))
    );
    assert_eq!(
        ui.call("GET", "/apisix/admin/upstreams/1", &[("x-api-key", KEY)], "").await.status,
        StatusCode::NOT_FOUND
    );

    // The x_api_key cookie alone is APISIX's key: it may write, with no CSRF token.
    let cookie = format!("x_api_key={KEY}");
    let a = ui.call("PUT", "/apisix/admin/upstreams/1", &[("cookie", &cookie)], body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let cookie = format!("x_api_key={VIEWER_KEY}");
    let a = ui.call("DELETE", "/apisix/admin/upstreams/1", &[("cookie", &cookie)], "").await;
    assert_eq!(a.body["description"], "invalid method for role viewer");
}
