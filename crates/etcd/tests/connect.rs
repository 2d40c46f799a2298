//! Connecting to etcd: unreachable endpoints, a member down among several,
//! etcd authentication, TLS (verified and mutual) and bad settings, each
//! with the error an operator reads.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{PREFIX, options};
use shardgate_e2e::EtcdCluster;
use shardgate_etcd::{EtcdOptions, EtcdStore, EtcdTls};
use shardgate_store::{Condition, Store, StoreError};

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let addr = shardgate_e2e::ports::free("127.0.0.1");
    format!("http://{addr}")
}

fn quick(endpoints: Vec<String>) -> EtcdOptions {
    let mut o = EtcdOptions::new(endpoints, PREFIX);
    o.timeout = Duration::from_secs(1);
    o
}

#[tokio::test]
async fn a_closed_port_is_unavailable_naming_it_within_the_timeout() {
    let endpoint = closed_port();
    let started = Instant::now();
    let err = EtcdStore::connect(quick(vec![endpoint.clone()])).await.expect_err("nothing listens there");
    // The timeout bounds the whole attempt: no retry loop past it (the
    // slack is wide, the machine is shared; this is not a speed check).
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    match &err {
        StoreError::Unavailable { endpoints, reason } => {
            assert_eq!(endpoints, &endpoint);
            assert!(reason.to_lowercase().contains("connection refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains(&endpoint) && shown.contains("unreachable"), "{shown}");
}

#[tokio::test]
async fn a_port_that_never_answers_times_out_naming_every_endpoint() {
    // Accepts TCP connections (the kernel does) but never speaks HTTP/2.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = format!("http://{}", silent.local_addr().expect("addr"));
    let closed = closed_port();
    let err = EtcdStore::connect(quick(vec![silent.clone(), closed.clone()])).await.expect_err("no etcd there");
    match err {
        StoreError::Unavailable { endpoints, reason } => {
            assert_eq!(endpoints, format!("{silent},{closed}"));
            assert!(reason.contains("timed out after 1s") || reason.contains("refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn one_dead_endpoint_among_live_ones_does_not_fail_requests() {
    let etcd = EtcdCluster::start(1).await;
    let mut opts = options(&etcd);
    opts.endpoints.insert(0, closed_port());
    let store = EtcdStore::connect(opts).await.expect("connect with one endpoint down");
    // Writes to the dead endpoint never leave the client: they are retried on the live one.
    for i in 0..20 {
        store.put(&format!("/apisix/upstreams/{i}"), b"u".to_vec(), Condition::Absent).await.expect("put");
    }
    assert_eq!(store.count("/apisix/upstreams/").await.expect("count"), 20);
}

async fn enable_auth(etcd: &mut EtcdCluster) {
    for args in [
        &["user", "add", "root", "--new-user-password=rootpw", "--interactive=false"][..],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "--prefix=true", "read", "/apisix/"],
        &["user", "add", "viewer", "--new-user-password=viewerpw", "--interactive=false"],
        &["user", "grant-role", "viewer", "reader"],
        &["auth", "enable"],
    ] {
        let out = etcd.etcdctl(args).await;
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    etcd.set_etcdctl_user(Some("root:rootpw"));
}

#[tokio::test]
async fn etcd_authentication_works_and_refusals_say_why() {
    let mut etcd = EtcdCluster::start(1).await;
    enable_auth(&mut etcd).await;

    let mut root = options(&etcd);
    root.user = Some("root".into());
    root.password = Some("rootpw".into());
    let store = EtcdStore::connect(root.clone()).await.expect("connect as root");
    store.put("/apisix/ssls/1", b"c".to_vec(), Condition::Absent).await.expect("put as root");
    assert_eq!(etcd.get("/apisix/ssls/1").await.as_deref(), Some("c"));
    let mut watch = store.watch("/apisix/", 0).await.expect("watch as root");
    store.put("/apisix/ssls/2", b"d".to_vec(), Condition::Absent).await.expect("put");
    assert_eq!(common::events(&mut watch, 1).await[0].kv.key, "/apisix/ssls/2");

    let mut wrong = root.clone();
    wrong.password = Some("not-the-password".into());
    match EtcdStore::connect(wrong).await {
        Err(e @ StoreError::Backend { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains("\"root\"") && shown.contains("authentication failed"), "{shown}");
            assert!(!shown.contains("not-the-password"), "the password is never shown: {shown}");
        }
        other => panic!("a wrong password: {other:?}"),
    }

    match EtcdStore::connect(options(&etcd)).await {
        Err(StoreError::Backend { reason, .. }) => {
            assert!(reason.contains("set the etcd user and password"), "{reason}");
        }
        other => panic!("no credentials on an etcd with auth: {other:?}"),
    }

    // A user allowed to read only: reads work, writes are refused by name.
    let mut viewer = options(&etcd);
    viewer.user = Some("viewer".into());
    viewer.password = Some("viewerpw".into());
    let store = EtcdStore::connect(viewer).await.expect("connect as viewer");
    assert_eq!(store.get("/apisix/ssls/1").await.expect("read").map(|kv| kv.value), Some(b"c".to_vec()));
    match store.put("/apisix/ssls/3", b"x".to_vec(), Condition::Absent).await {
        Err(StoreError::Backend { context, reason }) => {
            assert!(context.contains("put /apisix/ssls/3"), "{context}");
            assert!(reason.contains("permission denied for etcd user \"viewer\""), "{reason}");
        }
        other => panic!("a write by a read-only user: {other:?}"),
    }
}

fn tls_options(etcd: &EtcdCluster, ca: &std::path::Path, client: bool) -> EtcdOptions {
    let files = etcd.tls().expect("a TLS cluster");
    let mut o = options(etcd);
    o.tls = Some(EtcdTls {
        ca: Some(ca.to_owned()),
        cert: client.then(|| files.client_cert.clone()),
        key: client.then(|| files.client_key.clone()),
        verify: true,
    });
    o
}

#[tokio::test]
async fn tls_with_a_verified_server_and_a_client_certificate() {
    let etcd = EtcdCluster::start_tls(1, true).await;
    let files = etcd.tls().expect("tls").clone();
    assert!(etcd.endpoint(0).starts_with("https://"));

    let store = EtcdStore::connect(tls_options(&etcd, &files.ca, true)).await.expect("mutual TLS");
    store.put("/apisix/ssls/1", b"over tls".to_vec(), Condition::Absent).await.expect("put");
    assert_eq!(etcd.get("/apisix/ssls/1").await.as_deref(), Some("over tls"));
    let mut watch = store.watch("/apisix/", 1).await.expect("watch over TLS");
    assert_eq!(common::events(&mut watch, 1).await[0].kv.key, "/apisix/ssls/1");

    // A server certificate from a CA we do not trust: refused, and said so.
    match EtcdStore::connect(tls_options(&etcd, &files.other_ca, true)).await {
        Err(StoreError::Backend { reason, .. }) => {
            assert!(reason.contains("TLS") && reason.contains("certificate"), "{reason}");
        }
        other => panic!("an untrusted server certificate: {other:?}"),
    }

    // No client certificate where etcd requires one: refused. In TLS 1.3 the
    // server checks the client's certificate after the client has finished
    // its side of the handshake, so the client reads either etcd's
    // `bad_certificate` alert or, when the server closes first, a closed
    // connection on its first request (seen once in about twenty runs).
    match EtcdStore::connect(tls_options(&etcd, &files.ca, false)).await {
        Err(StoreError::Backend { reason, .. }) => {
            assert!(reason.contains("TLS") && reason.contains("BadCertificate"), "{reason}");
        }
        Err(StoreError::Unavailable { reason, .. }) => {
            assert!(reason.contains("connection closed") || reason.contains("BadCertificate"), "{reason}");
        }
        other => panic!("no client certificate: {other:?}"),
    }
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing-ca.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let base = EtcdOptions::new(["https://127.0.0.1:1"], PREFIX);
    let tls = |ca: &std::path::Path| EtcdTls { ca: Some(ca.to_owned()), cert: None, key: None, verify: true };

    let mut o = base.clone();
    o.tls = Some(tls(&missing));
    match EtcdStore::connect(o).await {
        Err(StoreError::Io { context, .. }) => assert!(context.contains("missing-ca.pem"), "{context}"),
        other => panic!("{other:?}"),
    }
    let mut o = base.clone();
    o.tls = Some(tls(&not_pem));
    match EtcdStore::connect(o).await {
        Err(StoreError::Backend { context, reason }) => {
            assert!(context.contains("not-pem.pem"), "{context}");
            assert!(reason.contains("no PEM certificate"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut o = base.clone();
    o.tls = Some(EtcdTls { verify: false, ..tls(&not_pem) });
    assert!(
        matches!(EtcdStore::connect(o).await, Err(StoreError::Backend { reason, .. }) if reason.contains("tls.verify"))
    );
    let o = base.clone();
    assert!(
        matches!(EtcdStore::connect(o).await, Err(StoreError::Backend { reason, .. }) if reason.contains("set tls"))
    );
    let mut o = EtcdOptions::new(["http://127.0.0.1:1"], PREFIX);
    o.user = Some("root".into());
    assert!(
        matches!(EtcdStore::connect(o).await, Err(StoreError::Backend { reason, .. }) if reason.contains("without a password"))
    );
    let o = EtcdOptions::new(Vec::<String>::new(), PREFIX);
    assert!(
        matches!(EtcdStore::connect(o).await, Err(StoreError::Backend { reason, .. }) if reason.contains("no endpoint"))
    );
    let mut o = EtcdOptions::new(["http://127.0.0.1:1"], PREFIX);
    o.password = Some("secret-pw".into());
    assert!(!format!("{o:?}").contains("secret-pw"), "Debug hides the password");
}
