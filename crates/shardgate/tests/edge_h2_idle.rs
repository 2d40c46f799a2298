//! Idle HTTP/2 connections at the edge, through the real binary with a real
//! HTTP/2 client (hyper over rustls, ALPN `h2`): a connection with no open
//! stream is closed after `edge.idle_timeout`; one that is streaming a long
//! response is not. Many streams at once on one connection (they run in the
//! connection's own task, `http::streams`) each get their own answer, and a
//! slow one holds up none of the others.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::gateway;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestCert, TestOrigin, eventually};

const HOST: &str = "assets.example.com";

async fn setup(gw: &Gateway, origin: &TestOrigin, cert: &TestCert) {
    gw.admin().put_ok("/apisix/admin/ssls/a", &cert.ssl_body(&[HOST])).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

/// An HTTP/2 connection over TLS (ALPN `h2`, the test certificate as the
/// only root) and the task driving it, which ends when the edge closes it.
async fn h2(edge: SocketAddr, cert: &TestCert) -> (SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.der.clone())).expect("test root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(edge).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).expect("name"), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the edge chose h2");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2 handshake");
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("h2 connection ended with: {e}");
        }
    });
    (sender, task)
}

/// GET over the connection; returns the status and the whole body.
async fn fetch(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (u16, Bytes) {
    sender.ready().await.expect("connection open");
    let req = hyper::Request::get(format!("https://{HOST}{path}")).body(Empty::new()).expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.expect("whole body").to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let gw = gateway().tls_listeners(0).edge_http(1).edge_https(1).edge_yaml("  idle_timeout: 1s").spawn().await;
    let origin = TestOrigin::start(vec![("/a", OriginFile::new("asset"))]).await;
    let cert = TestCert::ecdsa(&[HOST]);
    setup(&gw, &origin, &cert).await;
    let (mut sender, task) = h2(gw.edge_tls[0], &cert).await;
    assert_eq!(fetch(&mut sender, "/a").await, (200, Bytes::from_static(b"asset")));
    // Still open for the next request right after a response.
    assert_eq!(fetch(&mut sender, "/a").await.0, 200);
    // Then nothing: the edge sends GOAWAY and closes.
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the edge closes an HTTP/2 connection with no open stream")
        .expect("connection task");
    assert!(sender.is_closed(), "no more requests on a closed connection");

    // A connection that never opens a stream is closed the same way.
    let (_sender, task) = h2(gw.edge_tls[0], &cert).await;
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("closed without any stream").expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_keeps_its_connection() {
    let gw = gateway().tls_listeners(0).edge_http(1).edge_https(1).edge_yaml("  idle_timeout: 1s").spawn().await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // 30 chunks 100 ms apart: about 3 s of streaming, three idle timeouts.
    let origin =
        TestOrigin::start(vec![("/slow", OriginFile::new(body.clone()).slow(30, Duration::from_millis(100)))]).await;
    let cert = TestCert::ecdsa(&[HOST]);
    setup(&gw, &origin, &cert).await;
    let (mut sender, task) = h2(gw.edge_tls[0], &cert).await;
    let (status, got) = fetch(&mut sender, "/slow").await;
    assert_eq!(status, 200);
    assert_eq!(got.len(), body.len(), "the whole body arrived");
    assert!(got[..] == body[..], "byte for byte");
    // No GOAWAY came while it streamed: the same connection takes another request.
    assert!(!task.is_finished(), "the connection was open while it streamed");
    assert_eq!(fetch(&mut sender, "/slow").await.0, 200, "still usable after a download longer than the timeout");
    // Once the stream is over, the connection is idle and goes.
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("closed once idle").expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_on_one_connection_each_get_their_answer_and_a_slow_one_blocks_none() {
    let gw = gateway().tls_listeners(0).edge_http(1).edge_https(1).spawn().await;
    let mut files = vec![("/hit", OriginFile::new("cached"))];
    let misses: Vec<String> = (0..20).map(|i| format!("/miss-{i}")).collect();
    for (i, path) in misses.iter().enumerate() {
        files.push((path.as_str(), OriginFile::new(format!("body {i}"))));
    }
    // About 4 s of streaming: far longer than forty short requests take.
    files.push(("/slow", OriginFile::new(vec![7u8; 20_000]).slow(40, Duration::from_millis(100))));
    let origin = TestOrigin::start(files).await;
    let cert = TestCert::ecdsa(&[HOST]);
    setup(&gw, &origin, &cert).await;
    let (mut sender, _task) = h2(gw.edge_tls[0], &cert).await;
    assert_eq!(fetch(&mut sender, "/hit").await, (200, Bytes::from_static(b"cached")), "warm the hit");

    let slow = {
        let mut s = sender.clone();
        tokio::spawn(async move { fetch(&mut s, "/slow").await })
    };
    let started = std::time::Instant::now();
    let mut others = Vec::new();
    for (i, path) in misses.iter().enumerate() {
        let mut s = sender.clone();
        let path = path.clone();
        others.push(tokio::spawn(async move { (fetch(&mut s, &path).await, format!("body {i}")) }));
        let mut s = sender.clone();
        others.push(tokio::spawn(async move { (fetch(&mut s, "/hit").await, "cached".to_owned()) }));
    }
    for t in others {
        let ((status, body), want) = t.await.expect("request task");
        assert_eq!(status, 200);
        assert_eq!(body, Bytes::from(want), "each stream got its own body");
    }
    // The forty short streams were answered while the slow one was still
    // streaming on the same connection.
    assert!(!slow.is_finished(), "the slow stream is still going after {:?}", started.elapsed());
    let (status, body) = slow.await.expect("slow task");
    assert_eq!((status, body.len()), (200, 20_000));
    assert_eq!(origin.hits("/hit"), 1, "the hits came from the cache");
    for path in &misses {
        assert_eq!(origin.hits(path), 1, "{path} fetched once");
    }
}
