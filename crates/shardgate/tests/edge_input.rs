//! Viewer input at the edge, through the real binary over raw sockets (so
//! no client library tidies the bytes first): dot-segments are removed
//! before routing, the web ACL, the cache key and the origin; `%00`,
//! broken escapes and dot-segments hidden behind `%2F`, `%5C`, `\` or `;`
//! are refused; `Host` lines are checked (RFC 9112 §3.2); line endings
//! follow RFC 9112 §2.2.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "assets.example.com";

/// Sends `request` as it is and reads until the edge closes the
/// connection (the requests say `Connection: close`, or are refused).
async fn raw(edge: SocketAddr, request: &[u8]) -> String {
    let mut sock = tokio::net::TcpStream::connect(edge).await.expect("connect edge");
    sock.write_all(request).await.expect("send");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf))
        .await
        .expect("the edge answers and closes within 10 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// A GET for `target` with CRLF line endings.
async fn raw_get(edge: SocketAddr, target: &str) -> String {
    raw(edge, format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes()).await
}

fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {resp:?}"))
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn distribution(gw: &Gateway, origin: &TestOrigin, extra: serde_json::Value) {
    let mut d = json!({
        "hosts": [HOST],
        "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
    });
    if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        d.extend(extra.clone());
    }
    gw.admin().put_ok("/apisix/admin/distributions/d", &d).await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_removed_before_the_cache_and_the_origin() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/b", OriginFile::new("the b file"))]).await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];

    let r = raw_get(edge, "/a/../b").await;
    assert_eq!((status(&r), body(&r)), (200, "the b file"), "{r}");
    assert_eq!(header(&r, "x-cache"), Some("Miss from shardgate"));
    assert_eq!(origin.hits("/b"), 1, "the origin was asked for /b");
    assert_eq!(origin.hits("/a/../b"), 0, "and never for the raw path");
    // The same object under every spelling of the path.
    for target in ["/b", "/x/y/../../b", "/x/%2e%2E/b", "/./b", "/../../b", "/%62", "/a/.%2e/b?"] {
        let r = raw_get(edge, target).await;
        assert_eq!(status(&r), 200, "{target}: {r}");
        assert_eq!(header(&r, "x-cache"), Some("Hit from shardgate"), "{target}: {r}");
    }
    assert_eq!(origin.total_hits(), 2, "one fetch for /b (plus the set-up probe)");
    // `%2F` is not a separator: `/x%2Fb` is one segment, another object.
    let r = raw_get(edge, "/x%2fb").await;
    assert_eq!(status(&r), 404, "{r}");
    assert_eq!(origin.hits("/x%2Fb"), 1, "forwarded with the escapes kept (upper-case hex)");
}

/// `/public/..%2Fadmin` is one segment here, but `/admin` at an origin that
/// decodes `%2F` before removing dot-segments (nginx, many application
/// servers); `\` is a separator for IIS, and Tomcat strips `;` parameters
/// from `..;`. Such paths would reach the origin as something the web ACL,
/// the cache key and routing never saw, so they are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_an_origin_would_see_are_refused() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/admin", OriginFile::new("secret")),
        ("/a%2Fb", OriginFile::new("one segment").cache_control("max-age=600")),
    ])
    .await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    for (target, says) in [
        ("/x/..%2Fadmin", "encoded slash or a backslash"),
        ("/public/..%2fadmin", "encoded slash or a backslash"),
        ("/x/%2e%2e%5Cadmin", "encoded slash or a backslash"),
        ("/x\\..\\admin", "encoded slash or a backslash"),
        ("/x/..;/admin", "dot-segment with parameters"),
        ("/x/.;/admin", "dot-segment with parameters"),
    ] {
        let r = raw_get(edge, target).await;
        assert_eq!(status(&r), 400, "{target}: {r}");
        assert!(body(&r).contains(says), "{target}: the answer names the problem: {r}");
    }
    assert_eq!(origin.hits("/admin"), 0, "nothing reached the protected path");
    let refused = gw.metric("shardgate_edge_refused_total{reason=\"bad_path\"}").await;
    assert_eq!(refused, 6.0, "{}", gw.metrics_text().await);
    // An encoded slash between names is data, served as before.
    let r = raw_get(edge, "/a%2Fb").await;
    assert_eq!((status(&r), body(&r)), (200, "one segment"), "{r}");
    let r = raw_get(edge, "/a%2fb").await;
    assert_eq!((status(&r), header(&r, "x-cache")), (200, Some("Hit from shardgate")), "the same object: {r}");
    assert_eq!(origin.hits("/a%2Fb"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_acl_rule_on_the_path_sees_the_normalised_path() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin =
        TestOrigin::start(vec![("/admin", OriginFile::new("secret")), ("/public", OriginFile::new("public"))]).await;
    let acl = r#"{"Name": "no-admin", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "no-admin"},
      "Rules": [{"Name": "admin", "Priority": 0, "Action": {"Block": {}},
        "Statement": {"ByteMatchStatement": {"SearchString": "/admin", "FieldToMatch": {"UriPath": {}},
          "TextTransformations": [{"Priority": 0, "Type": "NONE"}], "PositionalConstraint": "STARTS_WITH"}},
        "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "admin"}}]}"#;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/w", Some(acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    distribution(&gw, &origin, json!({"web_acl_id": "w"})).await;
    let edge = gw.edge_plain[0];
    for target in ["/admin", "/x/../admin", "/x/%2e%2e/admin", "/./admin", "/%61dmin", "/public/../admin"] {
        let r = raw_get(edge, target).await;
        assert_eq!(status(&r), 403, "{target} must be blocked: {r}");
    }
    assert_eq!(status(&raw_get(edge, "/public").await), 200);
    assert_eq!(origin.hits("/admin"), 0, "nothing reached the protected path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_broken_escapes_in_the_path_are_refused() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/b", OriginFile::new("b"))]).await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    for (target, says) in
        [("/a%00b", "%00"), ("/b%00", "%00"), ("/x/%00/../b", "%00"), ("/a%zz", "two hex digits"), ("/a%4", "two hex")]
    {
        let r = raw_get(edge, target).await;
        assert_eq!(status(&r), 400, "{target}: {r}");
        assert!(body(&r).contains(says), "{target}: the answer names the problem: {r}");
    }
    // A raw NUL or CR never gets past the request-line parser.
    for request in [&b"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"[..], b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n"] {
        let r = raw(edge, request).await;
        assert_eq!(status(&r), 400, "{request:?}: {r}");
    }
    assert_eq!(origin.total_hits(), 1, "only the set-up probe reached the origin");
    let refused = gw.metric("shardgate_edge_refused_total{reason=\"bad_path\"}").await;
    assert_eq!(refused, 5.0, "{}", gw.metrics_text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_lines_are_checked() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/b", OriginFile::new("b"))]).await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    let two = format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let r = raw(edge, two.as_bytes()).await;
    assert_eq!(status(&r), 400, "two Host lines, even equal ones: {r}");
    assert!(body(&r).contains("more than one Host"), "{r}");
    let two = format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nHost: other.example\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&raw(edge, two.as_bytes()).await), 400);
    for bad in ["a b.example", "user@assets.example.com", "assets.example.com:80x", "[::1"] {
        let r = raw(edge, format!("GET /b HTTP/1.1\r\nHost: {bad}\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status(&r), 400, "{bad}: {r}");
    }
    let r = raw(edge, b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 400, "HTTP/1.1 without Host: {r}");
    // Absolute-form: the target's authority routes and replaces Host
    // (RFC 9112 §3.2.2), whatever Host says.
    let abs = format!("GET http://{HOST}/b HTTP/1.1\r\nHost: nobody.example\r\nConnection: close\r\n\r\n");
    let r = raw(edge, abs.as_bytes()).await;
    assert_eq!((status(&r), body(&r)), (200, "b"), "{r}");
    let host_at_origin = origin.last_headers("/b").into_iter().find(|(k, _)| k == "host").map(|(_, v)| v);
    assert_eq!(host_at_origin.as_deref(), Some(HOST), "the origin saw the authority's host");
    let abs = "GET http://nobody.example/b HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&raw(edge, abs.as_bytes()).await), 404, "routed by the authority, not by Host");
    let refused = gw.metric("shardgate_edge_refused_total{reason=\"bad_host\"}").await;
    assert_eq!(refused, 6.0, "{}", gw.metrics_text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_endings_follow_rfc_9112() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/b", OriginFile::new("b"))]).await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    // §2.2: a recipient MAY take a bare LF as a line terminator: hyper does.
    let lf = format!("GET /b HTTP/1.1\nHost: {HOST}\nConnection: close\n\n");
    let r = raw(edge, lf.as_bytes()).await;
    assert_eq!((status(&r), body(&r)), (200, "b"), "{r}");
    let mixed = format!("GET /b HTTP/1.1\r\nHost: {HOST}\nConnection: close\r\n\n");
    assert_eq!(status(&raw(edge, mixed.as_bytes()).await), 200);
    // §2.2: a bare CR is invalid (hyper refuses the message); §5.2: obs-fold
    // is refused in requests; §5.1: no whitespace before the colon.
    for (what, request) in [
        ("bare CR in a value", format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\rb\r\n\r\n")),
        ("bare CR as a line end", format!("GET /b HTTP/1.1\rHost: {HOST}\r\n\r\n")),
        ("bare CR after a value", format!("GET /b HTTP/1.1\r\nHost: {HOST}\rX-A: b\r\n\r\n")),
        ("obs-fold", format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\r\n b\r\n\r\n")),
        ("space before the colon", format!("GET /b HTTP/1.1\r\nHost : {HOST}\r\n\r\n")),
        ("NUL in a value", format!("GET /b HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\0b\r\n\r\n")),
    ] {
        let r = raw(edge, request.as_bytes()).await;
        assert_eq!(status(&r), 400, "{what}: {r}");
    }
    assert_eq!(origin.hits("/b"), 1, "only the first good request needed the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_host_must_agree_with_the_authority() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/b", OriginFile::new("b"))]).await;
    distribution(&gw, &origin, json!({})).await;
    // HTTP/2 with prior knowledge on the plain listener (hyper's auto server
    // detects the preface); hyper's client sends a Host header as given.
    let tcp = tokio::net::TcpStream::connect(gw.edge_plain[0]).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut send = |host: Option<&str>, path: &str| {
        let mut req = hyper::Request::get(format!("http://{HOST}{path}"));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        sender.send_request(req.body(Empty::<Bytes>::new()).expect("request"))
    };
    assert_eq!(send(None, "/b").await.expect("response").status(), 200, ":authority alone");
    assert_eq!(send(Some("ASSETS.example.com:80"), "/b").await.expect("response").status(), 200, "the same host");
    let resp = send(Some("other.example"), "/b").await.expect("response");
    assert_eq!(resp.status(), 400, "RFC 9113 §8.3.1: a Host naming another host is malformed");
    assert_eq!(send(None, "/x/../b").await.expect("response").status(), 200, "normalised over HTTP/2 too");
    assert_eq!(origin.hits("/b"), 1);
}
