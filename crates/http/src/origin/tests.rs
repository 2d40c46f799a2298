//! Pooling against real local origins: a raw TCP server that counts its
//! connections and can misbehave on purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use shardgate_model::edge::{Origin, ProtocolPolicy};
use shardgate_model::{ResourceId, UpstreamRef};
use shardgate_snapshot::EdgeOrigin;
use shardgate_upstream::{ConnectDefaults, Registry, Resolver, UpstreamKey, UpstreamMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// How the test origin treats each connection.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers every request, keeping the connection open.
    KeepAlive,
    /// Answers with `Connection: close` and closes.
    Close,
    /// Answers the first request, then closes the connection on reading
    /// the second one without answering (the keep-alive race).
    DropSecond,
    /// Answers the first request, then closes the idle connection.
    CloseIdle,
    /// Answers every request with a 4 MiB body, keeping the connection open.
    Big,
}

struct TestOrigin {
    port: u16,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

const BODY: &[u8] = b"hello, pool";

async fn test_origin(mode: Mode) -> TestOrigin {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (a, r) = (Arc::clone(&accepted), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, mode, Arc::clone(&r)));
        }
    });
    TestOrigin { port, accepted, requests }
}

/// Reads one request head (at most 8 KiB); `false` at EOF.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

async fn serve(mut s: TcpStream, mode: Mode, requests: Arc<AtomicUsize>) {
    let mut served = 0;
    while served < 100 && read_head(&mut s).await {
        requests.fetch_add(1, Ordering::SeqCst);
        if mode == Mode::DropSecond && served == 1 {
            return;
        }
        let close = if mode == Mode::Close { "connection: close\r\n" } else { "" };
        let big;
        let body = if mode == Mode::Big {
            big = vec![b'x'; 4 << 20];
            &big[..]
        } else {
            BODY
        };
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n", body.len());
        if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
            return;
        }
        served += 1;
        if mode == Mode::Close || mode == Mode::CloseIdle {
            return;
        }
    }
}

fn edge_origin(port: u16) -> EdgeOrigin {
    edge_origin_with(port, |_| {}, None)
}

fn edge_origin_with(port: u16, tweak: impl FnOnce(&mut Origin), tls: Option<Arc<rustls::ClientConfig>>) -> EdgeOrigin {
    let registry = Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::default(),
        ConnectDefaults { connect_timeout: Duration::from_secs(2), ..ConnectDefaults::default() },
    );
    let wire = shardgate_model::json::from_value(
        serde_json::json!({"nodes": [{"host": "127.0.0.1", "port": port, "weight": 1}]}),
    )
    .expect("wire");
    let upstream = Arc::new(shardgate_model::Upstream::from_wire(None, &wire).expect("valid"));
    let key = UpstreamKey::InlineOrigin(ResourceId::parse("d").expect("id"), "o".into());
    let runtime = registry.get_or_create(key, &upstream);
    let mut config = Origin {
        upstream: UpstreamRef::Inline(upstream),
        origin_path: String::new(),
        host: None,
        read_timeout: None,
        protocol_policy: ProtocolPolicy::HttpOnly,
        http_port: None,
        https_port: None,
        ca_bundle: None,
        sni: None,
        keepalive_timeout: None,
        max_idle_connections: None,
    };
    tweak(&mut config);
    EdgeOrigin { name: "o".into(), config, upstream: runtime, distribution: Arc::from("d"), tls }
}

fn request(origin: &EdgeOrigin) -> OriginRequest<'_> {
    OriginRequest {
        origin,
        target: "/x".into(),
        host: HeaderValue::from_static("example.test"),
        headers: HeaderMap::new(),
        client: "127.0.0.1:40000".parse().expect("addr"),
        local: "127.0.0.1:8080".parse().expect("addr"),
        read_timeout: Duration::from_secs(5),
    }
}

async fn get(
    client: &OriginClient,
    origin: &EdgeOrigin,
    exchange: Exchange,
) -> Result<(OriginConnection, Bytes), OriginError> {
    let resp = client.fetch(request(origin), exchange).await?;
    let conn = *resp.extensions().get::<OriginConnection>().expect("connection info");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok((conn, body))
}

/// Waits (bounded) until the pool holds `n` idle connections.
async fn idle_becomes(client: &OriginClient, n: usize) {
    for _ in 0..200 {
        if client.idle() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(client.idle(), n, "idle connections");
}

fn active(origin: &EdgeOrigin) -> u32 {
    origin.upstream.active_per_node()[0].1
}

#[tokio::test]
async fn a_connection_is_reused_after_its_body_was_read() {
    let o = test_origin(Mode::KeepAlive).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    let (first, body) = get(&client, &origin, Exchange::default()).await.expect("first");
    assert_eq!(&body[..], BODY);
    assert!(!first.reused);
    idle_becomes(&client, 1).await;
    // The idle connection still counts on its node.
    assert_eq!(active(&origin), 1);
    let (second, body) = get(&client, &origin, Exchange::default()).await.expect("second");
    assert_eq!(&body[..], BODY);
    assert!(second.reused && !second.retried);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(o.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_the_connection() {
    let o = test_origin(Mode::Big).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    let resp = client.fetch(request(&origin), Exchange::default()).await.expect("first");
    drop(resp);
    let (second, _) = get(&client, &origin, Exchange::default()).await.expect("second");
    assert!(!second.reused);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    // The dropped one is gone from the node's count; the second is idle.
    idle_becomes(&client, 1).await;
    for _ in 0..200 {
        if active(&origin) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(active(&origin), 1);
}

#[tokio::test]
async fn connection_close_is_not_pooled() {
    let o = test_origin(Mode::Close).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    get(&client, &origin, Exchange::default()).await.expect("first");
    let (second, _) = get(&client, &origin, Exchange::default()).await.expect("second");
    assert!(!second.reused);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(client.idle(), 0);
}

#[tokio::test]
async fn an_idle_connection_the_origin_closed_is_dropped_not_reused() {
    let o = test_origin(Mode::CloseIdle).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    get(&client, &origin, Exchange::default()).await.expect("first");
    // The origin's FIN reaches the connection task, and the pool drops it.
    for _ in 0..200 {
        if active(&origin) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(active(&origin), 0, "the closed connection no longer counts on its node");
    let (second, _) = get(&client, &origin, Exchange::default()).await.expect("second");
    assert!(!second.reused && !second.retried);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idempotent_request_failing_on_a_reused_connection_is_retried_once_on_a_new_one() {
    let o = test_origin(Mode::DropSecond).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    get(&client, &origin, Exchange::default()).await.expect("first");
    idle_becomes(&client, 1).await;
    let (second, body) = get(&client, &origin, Exchange::default()).await.expect("retried");
    assert_eq!(&body[..], BODY);
    assert!(second.retried && !second.reused);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(o.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_post_failing_on_a_reused_connection_is_not_sent_again() {
    let o = test_origin(Mode::DropSecond).await;
    let origin = edge_origin(o.port);
    let client = OriginClient::new(16, None);
    get(&client, &origin, Exchange::default()).await.expect("first");
    idle_becomes(&client, 1).await;
    let post = Exchange { method: Method::POST, body: Some(Bytes::from_static(b"buy=1")), ..Exchange::default() };
    let err = get(&client, &origin, post).await.expect_err("not retried");
    assert!(matches!(err, OriginError::Http { .. }), "{err}");
    assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(o.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_idle_connections_zero_opens_a_connection_per_request() {
    let o = test_origin(Mode::KeepAlive).await;
    let origin = edge_origin_with(o.port, |c| c.max_idle_connections = Some(0), None);
    let client = OriginClient::new(16, None);
    for _ in 0..2 {
        let resp = client.fetch(request(&origin), Exchange::default()).await.expect("fetch");
        resp.into_body().collect().await.expect("body");
    }
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_idle_connections_bounds_the_idle_connections_of_a_node() {
    let o = test_origin(Mode::KeepAlive).await;
    let origin = edge_origin_with(o.port, |c| c.max_idle_connections = Some(2), None);
    let client = OriginClient::new(16, None);
    // Three fetches at once: three connections.
    let (a, b, c) = tokio::join!(
        client.fetch(request(&origin), Exchange::default()),
        client.fetch(request(&origin), Exchange::default()),
        client.fetch(request(&origin), Exchange::default()),
    );
    for resp in [a, b, c] {
        resp.expect("fetch").into_body().collect().await.expect("body");
    }
    assert_eq!(o.accepted.load(Ordering::SeqCst), 3);
    idle_becomes(&client, 2).await;
    for _ in 0..200 {
        if active(&origin) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(active(&origin), 2, "the third connection was closed, not kept");
}

#[tokio::test]
async fn max_idle_connections_zero_turns_reuse_off() {
    let o = test_origin(Mode::KeepAlive).await;
    let origin = edge_origin_with(o.port, |c| c.max_idle_connections = Some(0), None);
    let client = OriginClient::new(16, None);
    for _ in 0..2 {
        let (conn, _) = get(&client, &origin, Exchange::default()).await.expect("fetch");
        assert!(!conn.reused);
    }
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_past_keepalive_timeout_is_closed() {
    let o = test_origin(Mode::KeepAlive).await;
    let origin = edge_origin_with(o.port, |c| c.keepalive_timeout = Some(Duration::from_millis(200)), None);
    let client = OriginClient::new(16, None);
    get(&client, &origin, Exchange::default()).await.expect("first");
    idle_becomes(&client, 1).await;
    // The reaper drops it within the timeout and one reap interval.
    idle_becomes(&client, 0).await;
    let (second, _) = get(&client, &origin, Exchange::default()).await.expect("second");
    assert!(!second.reused);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_pool_total_bounds_idle_connections_over_all_nodes() {
    let (o1, o2) = (test_origin(Mode::KeepAlive).await, test_origin(Mode::KeepAlive).await);
    let (origin1, origin2) = (edge_origin(o1.port), edge_origin(o2.port));
    let client = OriginClient::new(1, None);
    get(&client, &origin1, Exchange::default()).await.expect("first");
    idle_becomes(&client, 1).await;
    get(&client, &origin2, Exchange::default()).await.expect("second");
    // The older idle connection (to the first origin) made room.
    for _ in 0..200 {
        if active(&origin1) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(active(&origin1), 0);
    assert_eq!(client.idle(), 1);
    let (again, _) = get(&client, &origin2, Exchange::default()).await.expect("third");
    assert!(again.reused);
}

// --- HTTPS origins -----------------------------------------------------

struct TlsOrigin {
    port: u16,
    accepted: Arc<AtomicUsize>,
    ca_pem: String,
}

/// A TLS origin whose certificate (for `name`) is signed by a fresh test CA.
async fn tls_origin(name: &str) -> TlsOrigin {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        )
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let mut served = 0;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while served < 100 {
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        buf.clear();
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", BODY.len());
                        if tls.write_all(head.as_bytes()).await.is_err() || tls.write_all(BODY).await.is_err() {
                            return;
                        }
                        served += 1;
                        continue;
                    }
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    TlsOrigin { port, accepted, ca_pem: ca.pem() }
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn an_https_origin_is_fetched_over_tls_and_its_connection_pooled() {
    let o = tls_origin("origin.example.test").await;
    let tls = client_config(&o.ca_pem);
    let origin = edge_origin_with(
        o.port,
        |c| {
            c.protocol_policy = ProtocolPolicy::HttpsOnly;
            c.sni = Some("origin.example.test".into());
        },
        Some(tls),
    );
    let client = OriginClient::new(16, None);
    let (first, body) = get(&client, &origin, Exchange::default()).await.expect("over TLS");
    assert_eq!(&body[..], BODY);
    assert!(!first.reused);
    idle_becomes(&client, 1).await;
    let (second, _) = get(&client, &origin, Exchange::default()).await.expect("reused");
    assert!(second.reused);
    assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_fetch_with_the_reason() {
    let o = tls_origin("origin.example.test").await;
    let tls = client_config(&o.ca_pem);
    let origin = edge_origin_with(
        o.port,
        |c| {
            c.protocol_policy = ProtocolPolicy::HttpsOnly;
            c.sni = Some("wrong.example.test".into());
        },
        Some(tls),
    );
    let client = OriginClient::new(16, None);
    let err = get(&client, &origin, Exchange::default()).await.expect_err("name mismatch");
    assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
    let text = err.to_string();
    assert!(text.contains("TLS handshake") && text.contains("wrong.example.test"), "{text}");
    assert!(text.to_ascii_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_fetch() {
    let o = tls_origin("origin.example.test").await;
    let other = tls_origin("origin.example.test").await;
    // Trusts another CA than the one that signed the origin's certificate.
    let origin = edge_origin_with(
        o.port,
        |c| {
            c.protocol_policy = ProtocolPolicy::HttpsOnly;
            c.sni = Some("origin.example.test".into());
        },
        Some(client_config(&other.ca_pem)),
    );
    let client = OriginClient::new(16, None);
    let err = get(&client, &origin, Exchange::default()).await.expect_err("untrusted");
    assert!(err.to_string().contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn match_viewer_follows_the_viewer_and_https_port_replaces_the_node_port() {
    let plain = test_origin(Mode::KeepAlive).await;
    let secure = tls_origin("example.test").await;
    let tls = client_config(&secure.ca_pem);
    let origin = edge_origin_with(
        plain.port,
        |c| {
            c.protocol_policy = ProtocolPolicy::MatchViewer;
            c.https_port = Some(secure.port);
        },
        Some(tls),
    );
    let client = OriginClient::new(16, None);
    // The Host header (example.test) is the server name when no sni is set.
    let https = || Exchange { viewer_https: true, ..Exchange::default() };
    get(&client, &origin, https()).await.expect("https viewer");
    get(&client, &origin, Exchange::default()).await.expect("http viewer");
    assert_eq!(secure.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(plain.accepted.load(Ordering::SeqCst), 1);
    // Each protocol reuses its own connection.
    let (again, _) = get(&client, &origin, https()).await.expect("https again");
    assert!(again.reused);
    assert_eq!(secure.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn host_name_strips_the_port_and_brackets() {
    assert_eq!(host_name("example.test"), "example.test");
    assert_eq!(host_name("example.test:8443"), "example.test");
    assert_eq!(host_name("[::1]:8443"), "::1");
    assert_eq!(host_name("[::1]"), "::1");
}

#[tokio::test]
async fn a_connection_that_will_not_be_kept_asks_the_origin_to_close() {
    let unpooled = edge_origin_with(1, |c| c.max_idle_connections = Some(0), None);
    let r = build(&request(&unpooled), &Exchange::default(), None).expect("request");
    assert_eq!(r.headers().get(http::header::CONNECTION).map(|v| v.as_bytes()), Some(&b"close"[..]));
    let pooled = edge_origin(1);
    let r = build(&request(&pooled), &Exchange::default(), None).expect("request");
    assert!(r.headers().get(http::header::CONNECTION).is_none(), "a pooled request keeps the connection");
}
