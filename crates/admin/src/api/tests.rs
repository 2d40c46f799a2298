use super::*;
use axum::http::Request;
use shardgate_store::{EmbeddedOptions, EmbeddedStore};
use tower::ServiceExt;

const KEY: &str = "test-admin-key-0123456789";

struct Api {
    router: Router,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

const VIEWER_KEY: &str = "test-viewer-key-0123456789";

fn api() -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let limits = Limits { admin_body_max_bytes: 64 * 1024, ..Limits::default() };
    let state = AdminState::new(Arc::clone(&store) as Arc<dyn Store>, "/apisix", KEY, limits)
        .with_viewer_key(Some(VIEWER_KEY.into()));
    Api { router: router(state), store, _dir: dir }
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        self.call_with(method, path, body, Some(KEY)).await
    }

    async fn call_with(&self, method: &str, path: &str, body: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("X-API-KEY", k);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn snapshot(&self) -> (u64, Vec<KeyValue>) {
        let l = self.store.list("/apisix/").await.expect("list");
        (l.revision, l.kvs)
    }
}

fn cert(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

/// The seed's body, built the way its shell command builds it: PEM text
/// pasted raw (real newlines) between the quotes.
fn seed_ssl_body(cert: &str, key: &str, sni: &str) -> String {
    format!("\n{{\n\"cert\": \"{}\",\n\"key\": \"{}\",\n\"snis\": [\"{sni}\"]\n}}", cert.trim_end(), key.trim_end())
}

#[tokio::test]
async fn the_key_is_required_from_header_query_or_cookie() {
    let a = api();
    let (s, v) = a.call_with("GET", "/apisix/admin/ssls", "", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["description"], "missing apikey");
    let (s, v) = a.call_with("GET", "/apisix/admin/ssls", "", Some("wrong")).await;
    assert_eq!((s, v["description"].as_str()), (StatusCode::UNAUTHORIZED, Some("wrong apikey")));
    let (s, _) = a.call_with("GET", &format!("/apisix/admin/ssls?api_key={KEY}"), "", None).await;
    assert_eq!(s, StatusCode::OK);
    let req = Request::get("/apisix/admin/ssls")
        .header("cookie", format!("a=b; x_api_key={KEY}"))
        .body(Body::empty())
        .expect("req");
    assert_eq!(a.router.clone().oneshot(req).await.expect("resp").status(), StatusCode::OK);
}

#[tokio::test]
async fn seed_ssl_post_list_and_get_never_show_the_key() {
    let a = api();
    let (c, k) = cert("gs-1.com");
    let (s, v) = a.call("POST", "/apisix/admin/ssls", &seed_ssl_body(&c, &k, "gs-1.com")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["key"].as_str().expect("key").to_owned();
    let id = key.rsplit('/').next().expect("id").to_owned();
    assert_eq!(id.len(), 20, "APISIX-style generated id: {id}");
    assert!(v["value"].get("key").is_none(), "no private key in the answer");
    assert_eq!(v["value"]["snis"][0], "gs-1.com");

    let (s, v) = a.call("GET", "/apisix/admin/ssls", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 1);
    assert_eq!(v["list"][0]["key"], key.as_str());
    assert!(v["list"][0]["value"].get("key").is_none());
    assert!(v["list"][0]["value"]["create_time"].is_i64());

    let (s, v) = a.call("GET", &format!("/apisix/admin/ssls/{id}"), "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["value"].get("key").is_none());
    assert!(v["modifiedIndex"].is_u64());
}

/// `?include_secrets=true` returns the stored private keys to the admin
/// key, on the listing and on one object; the viewer key may read but not
/// write, and not ask for keys (401, APISIX's wording for roles).
#[tokio::test]
async fn only_the_admin_key_reads_private_keys_and_the_viewer_key_only_reads() {
    let a = api();
    let (c, k) = cert("gs-1.com");
    let (c2, k2) = cert("gs-1.com");
    let body = json!({"cert": c, "key": k, "certs": [c2], "keys": [k2], "snis": ["gs-1.com"]});
    let (s, v) = a.call("PUT", "/apisix/admin/ssls/1", &body.to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let (s, v) = a.call("GET", "/apisix/admin/ssls?include_secrets=true", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["list"][0]["value"]["key"], k.as_str());
    assert_eq!(v["list"][0]["value"]["keys"], json!([k2]));
    for path in ["/apisix/admin/ssls/1?include_secrets=true", "/apisix/admin/ssls/1/cert?include_secrets=true"] {
        let (s, v) = a.call("GET", path, "").await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["value"]["key"], k.as_str(), "{path}");
        assert_eq!(v["value"]["cert"], c.as_str(), "{path}");
    }
    for path in ["/apisix/admin/ssls/1?include_secrets=false", "/apisix/admin/ssls/1"] {
        let (s, v) = a.call("GET", path, "").await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["value"].get("key").is_none() && v["value"].get("keys").is_none(), "{path}: {v}");
    }
    let (s, v) = a.call("GET", "/apisix/admin/ssls?include_secrets=yes", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error_msg"].as_str().is_some_and(|m| m.contains("include_secrets")), "{v}");
    let (s, v) = a.call("GET", "/apisix/admin/ssls/nope?include_secrets=true", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    let viewer = Some(VIEWER_KEY);
    let (s, v) = a.call_with("GET", "/apisix/admin/ssls/1", "", viewer).await;
    assert_eq!(s, StatusCode::OK, "a viewer reads");
    assert!(v["value"].get("key").is_none());
    for path in ["/apisix/admin/ssls?include_secrets=true", "/apisix/admin/ssls/1?include_secrets=true"] {
        let (s, v) = a.call_with("GET", path, "", viewer).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["description"], "include_secrets is not allowed for role viewer", "{path}");
        assert!(v.get("value").is_none());
    }
    let (s, v) = a.call_with("PUT", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:1":1}}"#, viewer).await;
    assert_eq!((s, v["description"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid method for role viewer")));
    let (s, _) = a.call_with("DELETE", "/apisix/admin/ssls/1", "", viewer).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(a.call("GET", "/apisix/admin/upstreams/u", "").await.0, StatusCode::NOT_FOUND, "nothing written");
    assert_eq!(a.call("GET", "/apisix/admin/ssls/1", "").await.0, StatusCode::OK, "nothing deleted");
}

#[tokio::test]
async fn put_creates_then_replaces_and_keeps_create_time() {
    let a = api();
    let body = r#"{"nodes": {"127.0.0.1:9000": 1}, "type": "roundrobin"}"#;
    let (s, v) = a.call("PUT", "/apisix/admin/upstreams/1", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["key"], "/apisix/upstreams/1");
    assert_eq!(v["value"]["id"], "1");
    let created = v["value"]["create_time"].clone();
    let (s, v) = a.call("PUT", "/apisix/admin/upstreams/1", body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"]["create_time"], created);
    let (s, v) = a.call("PUT", "/apisix/admin/upstreams/1", r#"{"id": "2", "nodes": {"127.0.0.1:9000": 1}}"#).await;
    assert_eq!((s, v["error_msg"].as_str()), (StatusCode::BAD_REQUEST, Some("wrong upstream id")));
    let (s, v) = a.call("POST", "/apisix/admin/upstreams", r#"{"id": "2", "nodes": {"127.0.0.1:9000": 1}}"#).await;
    assert_eq!((s, v["error_msg"].as_str()), (StatusCode::BAD_REQUEST, Some("wrong upstream id, do not need it")));
}

#[tokio::test]
async fn every_bad_write_is_refused_and_changes_nothing() {
    let a = api();
    let (c, k) = cert("gs-1.com");
    let (_, other_key) = cert("gs-2.com");
    assert_eq!(a.call("PUT", "/apisix/admin/ssls/1", &seed_ssl_body(&c, &k, "gs-1.com")).await.0, StatusCode::CREATED);
    assert_eq!(
        a.call("PUT", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:1":1}}"#).await.0,
        StatusCode::CREATED
    );
    let before = a.snapshot().await;

    let cases: Vec<(&str, String, &str)> = vec![
        ("/apisix/admin/stream_routes/r", "{not json".into(), "invalid request body"),
        ("/apisix/admin/stream_routes/r", "".into(), "invalid request body"),
        ("/apisix/admin/stream_routes/r", r#"{"sni":"a.com","upstream_id":"u","bogus":1}"#.into(), "\"bogus\""),
        ("/apisix/admin/stream_routes/r", r#"{"sni":"a.com"}"#.into(), "\"upstream\""),
        ("/apisix/admin/stream_routes/r", r#"{"sni":"a..com","upstream_id":"u"}"#.into(), "\"sni\""),
        (
            "/apisix/admin/stream_routes/r",
            r#"{"sni":"a.com","upstream":{"nodes":{"gs-1:port":1}}}"#.into(),
            "upstream.nodes",
        ),
        ("/apisix/admin/stream_routes/r", r#"{"sni":"a.com","upstream_id":"missing"}"#.into(), "upstream id [missing]"),
        ("/apisix/admin/ssls/1", seed_ssl_body(&c, &other_key, "gs-1.com"), "does not match"),
        (
            "/apisix/admin/ssls/1",
            seed_ssl_body("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", &k, "gs-1.com"),
            "\"cert\"",
        ),
        ("/apisix/admin/ssls/1", format!(r#"{{"cert":{c:?},"key":{k:?}}}"#), "\"snis\""),
        ("/apisix/admin/ssls/1", format!(r#"{{"cert":{c:?},"key":{k:?},"snis":["127.0.0.1"]}}"#), "IP address"),
        ("/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:99999":1}}"#.into(), "nodes"),
    ];
    for (path, body, needle) in cases {
        let (s, v) = a.call("PUT", path, &body).await;
        let msg = v["error_msg"].as_str().unwrap_or_default().to_owned();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body:.60}: {v}");
        assert!(msg.contains(needle), "{path}: {msg:?} should name {needle:?}");
        assert_eq!(a.snapshot().await, before, "{path}: the store is unchanged after {msg:?}");
    }
}

#[tokio::test]
async fn an_upstream_in_use_cannot_be_deleted_unless_forced() {
    let a = api();
    assert_eq!(
        a.call("PUT", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:1":1}}"#).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        a.call("PUT", "/apisix/admin/stream_routes/r1", r#"{"sni":"a.com","upstream_id":"u"}"#).await.0,
        StatusCode::CREATED
    );
    let (s, v) = a.call("DELETE", "/apisix/admin/upstreams/u", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error_msg"], "can not delete this upstream, stream_route [r1] is still using it now");
    assert!(a.store.get("/apisix/upstreams/u").await.expect("get").is_some());

    let (s, v) = a.call("DELETE", "/apisix/admin/stream_routes/r1", "").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"deleted": "1", "key": "/apisix/stream_routes/r1"})));
    assert_eq!(a.call("DELETE", "/apisix/admin/upstreams/u", "").await.0, StatusCode::OK);
    let (s, v) = a.call("DELETE", "/apisix/admin/upstreams/u", "").await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::NOT_FOUND, Some("Key not found")));
}

#[tokio::test]
async fn patch_merges_for_upstreams_and_is_refused_for_stream_routes() {
    let a = api();
    a.call("PUT", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:1":1,"127.0.0.1:2":1},"desc":"x"}"#).await;
    let (s, v) = a
        .call("PATCH", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:2":null,"127.0.0.1:3":4},"desc":null}"#)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["value"]["nodes"], json!({"127.0.0.1:1": 1, "127.0.0.1:3": 4}));
    assert!(v["value"].get("desc").is_none());
    let (s, v) = a.call("PATCH", "/apisix/admin/upstreams/u/retries", "2").await;
    assert_eq!((s, v["value"]["retries"].as_i64()), (StatusCode::OK, Some(2)));
    let (s, _) = a.call("PATCH", "/apisix/admin/upstreams/u/retries", "\"two\"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a patch that breaks validation is refused");
    let (s, v) = a.call("PATCH", "/apisix/admin/stream_routes/r", "{}").await;
    assert_eq!(
        (s, v["error_msg"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("not supported `PATCH` method for stream route"))
    );
}

#[tokio::test]
async fn unknown_kinds_oversized_bodies_and_dry_runs() {
    let a = api();
    let (s, v) = a.call("GET", "/apisix/admin/routes", "").await;
    assert_eq!((s, v["error_msg"].as_str()), (StatusCode::NOT_FOUND, Some("Unsupported resource type: routes")));
    let big = format!(r#"{{"desc":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(a.call("PUT", "/apisix/admin/upstreams/u", &big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = a.call("POST", "/apisix/admin/schema/validate/upstreams", r#"{"nodes":{"127.0.0.1:1":1}}"#).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = a.call("POST", "/apisix/admin/schema/validate/upstreams", r#"{"nodes":{"127.0.0.1:x":1}}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(a.snapshot().await.0, 0, "dry runs store nothing");
    let (s, _) = a.call("PUT", "/apisix/admin/upstreams/bad%2Fid", r#"{"nodes":{}}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[test]
fn ttl_is_a_positive_number_of_seconds() {
    let q = |v: &str| HashMap::from([("ttl".to_owned(), v.to_owned())]);
    assert_eq!(ttl_of(&HashMap::new()).expect("absent"), None);
    assert_eq!(ttl_of(&q("60")).expect("integer"), Some(Duration::from_secs(60)));
    assert_eq!(ttl_of(&q("60.0")).expect("a whole number written as a float"), Some(Duration::from_secs(60)));
    assert_eq!(ttl_of(&q("1e3")).expect("exponent"), Some(Duration::from_secs(1000)));
    assert_eq!(ttl_of(&q("9000000000")).expect("etcd's MaxLeaseTTL"), Some(Duration::from_secs(9_000_000_000)));
    // lua-resty-etcd's grant refuses a TTL that is not an integer.
    for fraction in ["0.5", "1.5", "-0.5"] {
        let e = ttl_of(&q(fraction)).unwrap_err();
        assert!(matches!(&e, ApiError::BadRequest(m) if m == "invalid argument ttl: ttl must be integer"), "{e:?}");
    }
    for bad in ["abc", "", "NaN", "inf", "1e400"] {
        let e = ttl_of(&q(bad)).unwrap_err();
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m == "invalid argument ttl: should be a number"),
            "{bad}: {e:?}"
        );
    }
    for bad in ["0", "-5", "9000000001"] {
        assert!(matches!(ttl_of(&q(bad)), Err(ApiError::BadRequest(m)) if m.contains("greater than 0")), "{bad}");
    }
}

#[test]
fn path_segments_are_decoded_one_by_one() {
    assert_eq!(percent_decode("bad%2Fid").expect("decoded"), "bad/id");
    assert_eq!(percent_decode("%2E%2E").expect("decoded"), "..");
    assert_eq!(percent_decode("100%").expect("a lone % stays"), "100%");
    assert!(percent_decode("%FF").is_err(), "not UTF-8");
}

/// A request body that says when it is first polled (the handler has
/// started reading it), then never ends.
struct SignalledBody {
    first_poll: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for SignalledBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Some(tx) = self.first_poll.take() {
            // The test may have stopped waiting; nothing to tell then.
            tx.send(()).unwrap_or_default();
        }
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn slow_bodies_hold_no_write_turn() {
    // One write turn; a body that never arrives must not take it.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let limits = Limits {
        admin_max_writes: 1,
        admin_body_read_timeout: shardgate_core::ConfigDuration::from_secs(60),
        ..Limits::default()
    };
    let router = router(AdminState::new(store as Arc<dyn Store>, "/apisix", KEY, limits));
    let (reading, being_read) = tokio::sync::oneshot::channel();
    let slow_body = Body::new(SignalledBody { first_poll: Some(reading) });
    let slow = Request::put("/apisix/admin/upstreams/slow").header("X-API-KEY", KEY).body(slow_body).expect("req");
    let pending = tokio::spawn(router.clone().oneshot(slow));
    // The slow write is inside read_body: past the key check, before any turn.
    tokio::time::timeout(Duration::from_secs(30), being_read).await.expect("body polled").expect("signal");
    let fast = Request::put("/apisix/admin/upstreams/fast")
        .header("X-API-KEY", KEY)
        .body(Body::from(r#"{"nodes":{"127.0.0.1:1":1}}"#))
        .expect("req");
    let resp =
        tokio::time::timeout(Duration::from_secs(30), router.oneshot(fast)).await.expect("answered").expect("resp");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!pending.is_finished(), "the slow write is still waiting for its body");
    pending.abort();
}

/// A store whose puts (and, when asked, lists) wait at a gate the test
/// opens, to hold a write or a read in the middle of its store call.
struct Gated {
    inner: EmbeddedStore,
    hold_puts: std::sync::atomic::AtomicBool,
    hold_lists: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    gate: Semaphore,
}

impl Gated {
    fn new(inner: EmbeddedStore) -> Self {
        Gated {
            inner,
            hold_puts: Default::default(),
            hold_lists: Default::default(),
            entered: tokio::sync::Notify::new(),
            gate: Semaphore::new(0),
        }
    }

    async fn wait_at_gate(&self) {
        self.entered.notify_one();
        drop(self.gate.acquire().await.expect("gate"));
    }

    /// Opens the gate for good.
    fn open(&self) {
        self.gate.add_permits(1);
    }
}

#[async_trait::async_trait]
impl Store for Gated {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, shardgate_store::StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<shardgate_store::Listing, shardgate_store::StoreError> {
        if self.hold_lists.load(std::sync::atomic::Ordering::SeqCst) {
            self.wait_at_gate().await;
        }
        self.inner.list(prefix).await
    }
    async fn count(&self, prefix: &str) -> Result<usize, shardgate_store::StoreError> {
        self.inner.count(prefix).await
    }
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
    ) -> Result<shardgate_store::PutResult, shardgate_store::StoreError> {
        if self.hold_puts.load(std::sync::atomic::Ordering::SeqCst) {
            self.wait_at_gate().await;
        }
        self.inner.put_with_ttl(key, value, cond, ttl).await
    }
    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, shardgate_store::StoreError> {
        self.inner.delete(key, cond).await
    }
    async fn watch(&self, prefix: &str, from: u64) -> Result<shardgate_store::Watch, shardgate_store::StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn revision(&self) -> Result<u64, shardgate_store::StoreError> {
        self.inner.revision().await
    }
}

fn gated(timeout: Duration) -> (Arc<Gated>, AdminState, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Gated::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store")));
    let limits = Limits { admin_request_timeout: shardgate_core::ConfigDuration(timeout), ..Limits::default() };
    let state = AdminState::new(Arc::clone(&store) as Arc<dyn Store>, "/apisix", KEY, limits);
    (store, state, dir)
}

async fn send(router: &Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("X-API-KEY", KEY)
        .body(Body::from(body.to_owned()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(60), router.clone().oneshot(req))
        .await
        .expect("answered within 60 s")
        .expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A write whose store call outlives the request timeout is answered 503,
/// but keeps the write lock until the store returns: a DELETE of the
/// upstream it refers to cannot check references in between (and delete
/// the upstream of a route about to be stored); it waits and gives up.
#[tokio::test]
async fn a_timed_out_write_keeps_the_lock_until_its_store_write_returns() {
    let (store, state, _dir) = gated(Duration::from_secs(2));
    let router = router(state.clone());
    let (s, v) = send(&router, "PUT", "/apisix/admin/upstreams/u", r#"{"nodes":{"127.0.0.1:1":1}}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    store.hold_puts.store(true, std::sync::atomic::Ordering::SeqCst);
    let route = {
        let router = router.clone();
        tokio::spawn(async move {
            send(&router, "PUT", "/apisix/admin/stream_routes/r", r#"{"sni":"a.com","upstream_id":"u"}"#).await
        })
    };
    // The route passed its reference check and is in the store write.
    tokio::time::timeout(Duration::from_secs(30), store.entered.notified()).await.expect("route write started");
    let (s, v) = route.await.expect("route request");
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "the request timed out: {v}");
    assert!(v["error_msg"].as_str().unwrap_or_default().contains("check with GET"), "{v}");
    assert!(state.inner.write.try_lock().is_err(), "the write lock is still held while the store write runs");

    let (s, v) = send(&router, "DELETE", "/apisix/admin/upstreams/u", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "the delete waited for the lock and gave up: {v}");
    assert!(store.inner.get("/apisix/upstreams/u").await.expect("get").is_some(), "the upstream is still there");

    store.open();
    for _ in 0..3000 {
        if state.inner.write.try_lock().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(state.inner.write.try_lock().is_ok(), "the lock is released once the store write returned");
    assert!(store.inner.get("/apisix/stream_routes/r").await.expect("get").is_some(), "the route was stored");
    let (s, v) = send(&router, "DELETE", "/apisix/admin/upstreams/u", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error_msg"].as_str().unwrap_or_default().contains("stream_route [r] is still using it"), "{v}");
}

/// Reads are bounded by `admin_request_timeout` too: a listing stuck in the
/// store is answered 503, and the read turn is held no longer than needed.
#[tokio::test]
async fn a_read_past_the_request_timeout_is_answered_503() {
    let (store, state, _dir) = gated(Duration::from_millis(300));
    let router = router(state);
    store.hold_lists.store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = send(&router, "GET", "/apisix/admin/upstreams", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error_msg"].as_str().unwrap_or_default().contains("the read did not finish"), "{v}");
    store.open();
    let (s, v) = send(&router, "GET", "/apisix/admin/upstreams", "").await;
    assert_eq!((s, v["total"].as_u64()), (StatusCode::OK, Some(0)), "{v}");
}

/// A store shared with other instances that keep writing: its first
/// `losses` fenced writes lose to them ([`StoreError::Fenced`]).
struct Contended {
    inner: EmbeddedStore,
    losses: std::sync::atomic::AtomicUsize,
    /// After the first `losses`, how many fenced writes win before every
    /// later one loses (`usize::MAX`: all win).
    wins: std::sync::atomic::AtomicUsize,
    fences_read: std::sync::atomic::AtomicUsize,
}

impl Contended {
    fn lose(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if self.losses.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
            return true;
        }
        self.wins.fetch_update(SeqCst, SeqCst, |n| if n == usize::MAX { Some(n) } else { n.checked_sub(1) }).is_err()
    }
}

#[async_trait::async_trait]
impl Store for Contended {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<shardgate_store::Listing, StoreError> {
        self.inner.list(prefix).await
    }
    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        self.inner.count(prefix).await
    }
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
    ) -> Result<shardgate_store::PutResult, StoreError> {
        self.inner.put_with_ttl(key, value, cond, ttl).await
    }
    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError> {
        self.inner.delete(key, cond).await
    }
    async fn watch(&self, prefix: &str, from: u64) -> Result<shardgate_store::Watch, StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision().await
    }
    async fn fence(&self) -> Result<Fence, StoreError> {
        let n = self.fences_read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Fence(n as u64))
    }
    async fn put_fenced(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
        _fence: &mut Fence,
    ) -> Result<shardgate_store::PutResult, StoreError> {
        if self.lose() {
            return Err(StoreError::Fenced);
        }
        self.inner.put_with_ttl(key, value, cond, ttl).await
    }
    async fn delete_fenced(
        &self,
        key: &str,
        cond: Condition,
        _fence: &mut Fence,
    ) -> Result<Option<KeyValue>, StoreError> {
        if self.lose() {
            return Err(StoreError::Fenced);
        }
        self.inner.delete(key, cond).await
    }
}

fn contended(losses: usize, timeout: Duration) -> (Arc<Contended>, Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Contended {
        inner: EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"),
        losses: std::sync::atomic::AtomicUsize::new(losses),
        wins: std::sync::atomic::AtomicUsize::new(usize::MAX),
        fences_read: std::sync::atomic::AtomicUsize::new(0),
    });
    let limits = Limits { admin_request_timeout: shardgate_core::ConfigDuration(timeout), ..Limits::default() };
    let state = AdminState::new(Arc::clone(&store) as Arc<dyn Store>, "/apisix", KEY, limits);
    (store, router(state), dir)
}

async fn call_router(router: &Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(path).header("X-API-KEY", KEY);
    let resp = router.clone().oneshot(req.body(Body::from(body.to_owned())).expect("request")).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_write_that_loses_to_another_instance_is_checked_and_made_again() {
    let (store, router, _dir) = contended(3, Duration::from_secs(10));
    let body = r#"{"nodes": {"127.0.0.1:7000": 1}, "type": "roundrobin"}"#;
    let (status, _) = call_router(&router, "PUT", "/apisix/admin/upstreams/u1", body).await;
    assert_eq!(status, StatusCode::CREATED);
    // Three lost attempts and the one that landed each read the fence again.
    assert_eq!(store.fences_read.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert!(store.inner.get("/apisix/upstreams/u1").await.expect("get").is_some());

    let (status, _) = call_router(&router, "DELETE", "/apisix/admin/upstreams/u1", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_write_that_keeps_losing_until_its_deadline_gets_a_conflict_and_stores_nothing() {
    let (store, router, _dir) = contended(usize::MAX, Duration::from_millis(300));
    let body = r#"{"nodes": {"127.0.0.1:7000": 1}, "type": "roundrobin"}"#;
    let (status, value) = call_router(&router, "PUT", "/apisix/admin/upstreams/u1", body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    let msg = value["error_msg"].as_str().unwrap_or_default();
    assert!(msg.contains("nothing was stored, retry"), "{msg}");
    // Run again and again until the request's deadline, then given up.
    assert!(store.fences_read.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert!(store.inner.get("/apisix/upstreams/u1").await.expect("get").is_none());
}

#[tokio::test]
async fn a_promote_is_not_stopped_half_way_by_another_instance_writing_after_its_first_write() {
    let (store, router, _dir) = contended(0, Duration::from_secs(2));
    for (path, body) in [
        (
            "/apisix/admin/distributions/stage",
            r#"{"staging": true, "origins": {"b": {"upstream": {"nodes": {"127.0.0.1:7002": 1}}}}}"#,
        ),
        (
            "/apisix/admin/continuous_deployment_policies/cd",
            r#"{"staging_distribution_id": "stage", "enabled": true, "traffic": {"type": "single_weight", "weight": 0.1}}"#,
        ),
        (
            "/apisix/admin/distributions/prod",
            r#"{"hosts": ["www.company.com"], "origins": {"a": {"upstream": {"nodes": {"127.0.0.1:7001": 1}}}}, "continuous_deployment_policy_id": "cd"}"#,
        ),
    ] {
        let (status, value) = call_router(&router, "PUT", path, body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {value}");
    }
    // From here another instance writes constantly: one fenced write more
    // wins (the promote's first), every later one would lose.
    store.wins.store(1, std::sync::atomic::Ordering::SeqCst);
    let (status, value) =
        call_router(&router, "POST", "/apisix/admin/continuous_deployment_policies/cd/promote", "").await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let policy = store.inner.get("/apisix/continuous_deployment_policies/cd").await.expect("get").expect("policy");
    let policy: Value = serde_json::from_slice(&policy.value).expect("json");
    assert_eq!(policy["enabled"], false, "the policy was disabled in the same promote");
    let prod = store.inner.get("/apisix/distributions/prod").await.expect("get").expect("prod");
    assert!(String::from_utf8_lossy(&prod.value).contains("7002"), "prod serves staging's origin");
    assert_eq!(store.inner.count("/apisix/invalidations/").await.expect("count"), 1, "and its cache is invalidated");
}

#[tokio::test]
async fn a_patch_cannot_touch_a_functions_live_stage() {
    let a = api();
    let code = "function handler(e) { return e.request; }";
    let body = json!({"runtime": "cloudfront-js-1.0", "code": code}).to_string();
    let (s, v) = a.call("PUT", "/apisix/admin/functions/f", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = a.call("POST", "/apisix/admin/functions/f/publish", "{}").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let live = v["value"]["live"].clone();
    let before = a.snapshot().await;
    let changed = json!({"live": {"runtime": "cloudfront-js-1.0", "code": code, "published_at": 1}}).to_string();
    for (path, body) in [
        ("/apisix/admin/functions/f", r#"{"live": null}"#),
        ("/apisix/admin/functions/f", changed.as_str()),
        ("/apisix/admin/functions/f/live", "null"),
        ("/apisix/admin/functions/f/live/code", r#""function handler(e) { return e.request; }""#),
    ] {
        let (s, v) = a.call("PATCH", path, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert!(v["error_msg"].as_str().is_some_and(|m| m.contains("live") && m.contains("publish")), "{v}");
    }
    assert_eq!(a.snapshot().await, before, "nothing changed");
    // Other fields still patch, and LIVE stays.
    let (s, v) = a.call("PATCH", "/apisix/admin/functions/f", r#"{"comment": "x"}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["value"]["live"], live);
}

#[tokio::test]
async fn the_function_test_endpoint_is_bounded() {
    let a = api();
    let body = json!({"runtime": "cloudfront-js-1.0", "code": "function handler(e) { return e.request; }"}).to_string();
    a.call("PUT", "/apisix/admin/functions/f", &body).await;
    let event = |headers: Value| {
        json!({"context": {"eventType": "viewer-request"}, "request": {"method": "GET", "uri": "/", "headers": headers}})
            .to_string()
    };
    let (s, v) = a.call("POST", "/apisix/admin/functions/f/test", &event(json!({"host": {"value": "h"}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["function_output"]["uri"], "/");
    let many: serde_json::Map<String, Value> =
        (0..=functions::MAX_TEST_EVENT_FIELDS).map(|i| (format!("x-{i}"), json!({"value": ""}))).collect();
    let (s, v) = a.call("POST", "/apisix/admin/functions/f/test", &event(Value::Object(many))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error_msg"].as_str().is_some_and(|m| m.contains("over the limit")), "{v}");
    // Over the endpoint's cap, under the Admin API's body limit (64 KiB here).
    let big = "v".repeat(functions::MAX_TEST_EVENT_BYTES + 1024);
    let (s, v) = a.call("POST", "/apisix/admin/functions/f/test", &event(json!({"x-big": {"value": big}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error_msg"].as_str().is_some_and(|m| m.contains("test event")), "{v}");
    // A function that sets a disallowed header fails the test run, naming it.
    let code = "function handler(e) { e.request.headers['x-cache'] = { value: 'Hit' }; return e.request; }";
    a.call("PUT", "/apisix/admin/functions/g", &json!({"runtime": "cloudfront-js-1.0", "code": code}).to_string())
        .await;
    let (s, v) = a.call("POST", "/apisix/admin/functions/g/test", &event(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["function_error_message"].as_str().is_some_and(|m| m.contains("\"x-cache\" is disallowed")), "{v}");
}
