use super::*;
use shardgate_core::Metrics;
use shardgate_snapshot::{RouteQuery, Snapshot};
use shardgate_store::{Condition, EmbeddedOptions, EmbeddedStore};
use shardgate_upstream::{ConnectDefaults, Resolver, UpstreamMetrics};

struct Fixture {
    store: Arc<EmbeddedStore>,
    handle: Arc<SnapshotHandle>,
    _dir: tempfile::TempDir,
    reconciler: Option<Reconciler>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"));
    let handle = Arc::new(SnapshotHandle::new(Snapshot::default()));
    let registry = Arc::new(Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::default(),
        ConnectDefaults::default(),
    ));
    let reconciler = Reconciler::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&handle),
        registry,
        TlsShared::new(16).expect("tls"),
        ReconcilerSettings {
            prefix: "/apisix".into(),
            debounce: Duration::from_millis(5),
            defaults: CompileDefaults { idle_timeout: Duration::from_secs(60), geo: None },
        },
        ControlMetrics::register(&Metrics::new()),
        Arc::new(Health::default()),
    );
    Fixture { store, handle, _dir: dir, reconciler: Some(reconciler) }
}

fn q(sni: &str) -> RouteQuery<'_> {
    RouteQuery {
        sni: Some(sni),
        server_port: 8888,
        server_addr: "127.0.0.1".parse().expect("ip"),
        remote_addr: "127.0.0.1".parse().expect("ip"),
    }
}

async fn wait_for(handle: &SnapshotHandle, what: &str, ok: impl Fn(&Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok(&handle.load()) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn loads_then_follows_writes_and_keeps_the_last_good_version() {
    let mut f = fixture();
    let route = |port: u16| format!(r#"{{"sni":"gs-1.com","upstream":{{"nodes":{{"127.0.0.1:{port}":1}}}}}}"#);
    f.store.put("/apisix/stream_routes/1", route(9001).into_bytes(), Condition::Always).await.expect("put");
    let mut r = f.reconciler.take().expect("reconciler");
    r.load().await.expect("load");
    assert!(f.handle.load().stream.find(&q("gs-1.com")).is_some());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(r.run(async move {
        stop_rx.await.ok();
    }));

    f.store
        .put("/apisix/stream_routes/2", br#"{"sni":"gs-2.com","upstream_id":"u"}"#.to_vec(), Condition::Always)
        .await
        .expect("put");
    wait_for(&f.handle, "the dangling route to be reported", |s| s.problems.len() == 1).await;
    f.store
        .put("/apisix/upstreams/u", br#"{"nodes":{"127.0.0.1:9002":1}}"#.to_vec(), Condition::Always)
        .await
        .expect("put");
    wait_for(&f.handle, "gs-2 to route once its upstream exists", |s| s.stream.find(&q("gs-2.com")).is_some()).await;
    assert!(f.handle.load().problems.is_empty());

    // Another writer (e.g. a script writing to etcd directly) stores garbage.
    f.store
        .put(
            "/apisix/stream_routes/1",
            br#"{"sni":"gs-1.com","upstream":{"nodes":"oops"}}"#.to_vec(),
            Condition::Always,
        )
        .await
        .expect("put");
    wait_for(&f.handle, "the bad version to be reported", |s| !s.problems.is_empty()).await;
    let snap = f.handle.load();
    let (kept, _) = snap.stream.find(&q("gs-1.com")).expect("last good version still routes");
    assert_eq!(kept.upstream.config().nodes[0].port, 9001);

    f.store.delete("/apisix/stream_routes/1", Condition::Always).await.expect("delete");
    wait_for(&f.handle, "gs-1 to be gone", |s| s.stream.find(&q("gs-1.com")).is_none()).await;
    stop_tx.send(()).expect("stop");
    task.await.expect("reconciler task");
}

/// A store whose first watches break (the store unreachable), recording
/// where each watch asked to start.
struct Flaky {
    inner: EmbeddedStore,
    failures: std::sync::atomic::AtomicUsize,
    starts: std::sync::Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn get(&self, key: &str) -> Result<Option<shardgate_store::KeyValue>, StoreError> {
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
    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<shardgate_store::KeyValue>, StoreError> {
        self.inner.delete(key, cond).await
    }
    async fn watch(&self, prefix: &str, from: u64) -> Result<shardgate_store::Watch, StoreError> {
        self.starts.lock().expect("starts").push(from);
        let down = || StoreError::Unavailable { endpoints: "test".into(), reason: "down".into() };
        if self
            .failures
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok()
        {
            // Half the failures break an established watch, half refuse a new one.
            if self.failures.load(std::sync::atomic::Ordering::SeqCst).is_multiple_of(2) {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                tx.send(Err(down())).await.expect("send");
                return Ok(shardgate_store::Watch::new(rx));
            }
            return Err(down());
        }
        self.inner.watch(prefix, from).await
    }
    async fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision().await
    }
}

#[tokio::test]
async fn a_broken_watch_resumes_from_the_last_applied_revision_without_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Flaky {
        inner: EmbeddedStore::open(EmbeddedOptions::new(dir.path())).expect("store"),
        failures: std::sync::atomic::AtomicUsize::new(3),
        starts: std::sync::Mutex::new(Vec::new()),
    });
    let route = |port: u16| format!(r#"{{"sni":"gs-1.com","upstream":{{"nodes":{{"127.0.0.1:{port}":1}}}}}}"#);
    store.put("/apisix/stream_routes/1", route(9001).into_bytes(), Condition::Always).await.expect("put");
    let handle = Arc::new(SnapshotHandle::new(Snapshot::default()));
    let metrics = ControlMetrics::register(&Metrics::new());
    let mut reconciler = Reconciler::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&handle),
        Arc::new(Registry::new(
            Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
            UpstreamMetrics::default(),
            ConnectDefaults::default(),
        )),
        TlsShared::new(16).expect("tls"),
        ReconcilerSettings {
            prefix: "/apisix".into(),
            debounce: Duration::from_millis(5),
            defaults: CompileDefaults { idle_timeout: Duration::from_secs(60), geo: None },
        },
        metrics.clone(),
        Arc::new(Health::default()),
    );
    reconciler.load().await.expect("load");
    let loaded_at = handle.load().generation;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(reconciler.run(async move {
        stop_rx.await.ok();
    }));
    // Written while the watch is down: applied once it resumes.
    store.put("/apisix/stream_routes/1", route(9002).into_bytes(), Condition::Always).await.expect("put");
    wait_for(&handle, "the change made while the watch was down", |s| {
        s.stream.find(&q("gs-1.com")).is_some_and(|(r, _)| r.upstream.config().nodes[0].port == 9002)
    })
    .await;
    assert_eq!(metrics.resyncs.get(), 1, "only the first load lists everything");
    assert_eq!(metrics.watch_restarts.get(), 3);
    assert_eq!(metrics.store_up.get(), 1);
    let starts = store.starts.lock().expect("starts").clone();
    assert!(
        starts.iter().all(|&from| from == loaded_at + 1),
        "every watch resumed after the applied revision: {starts:?}"
    );
    drop(stop_tx);
    task.await.expect("reconciler");
}

/// A full load decrypts SSL keys with the reconciler's keyring, every time:
/// the fresh state of each load keeps it.
#[tokio::test]
async fn every_load_decrypts_ssl_keys_with_the_keyring() {
    let mut f = fixture();
    let (keyring, _) = Keyring::generate().expect("keyring");
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDLEvOG2fYURr0oPfbRUs0YfCZgjxfQChjbwGIOcG6m1\n-----END PRIVATE KEY-----\n";
    let mut ssl = serde_json::json!({"cert": "not a certificate", "key": pem, "snis": ["gs-1.com"]});
    shardgate_model::keyring::seal_ssl_value(&keyring, &mut ssl).expect("seal");
    f.store.put("/apisix/ssls/1", ssl.to_string().into_bytes(), Condition::Always).await.expect("put");
    let key_problem = |r: &Reconciler| r.state.problems().map(|p| p.invalid.field.clone()).collect::<Vec<_>>();

    let mut plain = f.reconciler.take().expect("reconciler");
    plain.load().await.expect("load");
    assert_eq!(key_problem(&plain), ["key"], "no keyring: the encrypted key is the problem");

    let mut r = plain.with_keyring(Some(Arc::new(keyring)));
    for _ in 0..2 {
        r.load().await.expect("load");
        // Decrypted: what is left to refuse is the certificate.
        assert_eq!(key_problem(&r), ["cert"]);
    }
}
