//! Origins like CloudFront's, through the real binary: keep-alive
//! connections reused across misses, HTTPS origins verified against a
//! `ca_bundle` (a wrong certificate is a 502 with the reason) whose idle
//! connections outlive unrelated configuration changes, origin request
//! policies (forwarded without joining the cache key), behaviors that allow
//! methods with bodies (streamed to the origin, inspected by the web ACL
//! within its body limit, never cached), and bodies passed through uncached
//! that end with an error when their origin stalls past its read timeout.

mod common;

use std::time::Duration;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "api.example.com";

/// Puts distribution `id` for `host` with one origin `o` (its fields
/// merged into the inline upstream's origin) and `behaviors`, then waits
/// until the edge serves it.
async fn distribution(gw: &Gateway, id: &str, host: &str, origin: Value, extra: Value) {
    let mut body = json!({"hosts": [host], "origins": {"o": origin}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    gw.admin().put_ok(&format!("/apisix/admin/distributions/{id}"), &body).await;
    let edge = gw.edge_plain[0];
    eventually(10, "distribution live", || async {
        get(edge, host, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

fn inline(origin: &TestOrigin) -> Value {
    json!({"upstream": {"nodes": {origin.addr.to_string(): 1}}})
}

fn access_lines(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "shardgate::access" && v["message"] == "edge request")
        .collect()
}

async fn line_with_referer(gw: &Gateway, referer: &str) -> Value {
    eventually(10, &format!("the access line of {referer}"), || async {
        access_lines(gw).into_iter().find(|l| l["cs(Referer)"] == referer)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_misses_reuse_one_origin_connection() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let files = (0..8).map(|i| (format!("/f{i}"), OriginFile::new(vec![b'x'; 10_000]))).collect::<Vec<_>>();
    let origin = TestOrigin::start(files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect()).await;
    distribution(&gw, "d", HOST, inline(&origin), json!({})).await;
    let edge = gw.edge_plain[0];
    for i in 0..8 {
        let (status, h, body) = get(edge, HOST, &format!("/f{i}"), &[]).await;
        assert_eq!((status, body.len()), (200, 10_000));
        assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
        // The connection returns to the pool once the fill has read the
        // body to its end, in the fill's task; a short pause lets it land
        // there before the next miss asks for one.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.connections(), 1, "every fetch (the readiness probes included) used one connection");
    let reused =
        gw.metric(r#"shardgate_edge_origin_connections_total{distribution="d",origin="o",reused="true"}"#).await;
    assert!(reused >= 8.0, "reused connections counted: {reused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_verified_against_its_ca_bundle() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  access_log:\n    edge_location: edge-origins\n")
        .yaml("log:\n  format: json\n")
        .spawn()
        .await;
    let origin =
        TestOrigin::start_tls(vec![("/secure.bin", OriginFile::new(vec![b's'; 5000]))], &["origin.internal.test"])
            .await;
    let ca = origin.ca_pem.clone().expect("test CA");
    let tls = |sni: &str| {
        let mut o = inline(&origin);
        if let Some(m) = o.as_object_mut() {
            m.insert("protocol_policy".into(), json!("https-only"));
            m.insert("ca_bundle".into(), json!(ca));
            m.insert("sni".into(), json!(sni));
        }
        o
    };
    distribution(&gw, "good", HOST, tls("origin.internal.test"), json!({})).await;
    distribution(&gw, "bad", "wrong.example.com", tls("other-name.test"), json!({})).await;
    let edge = gw.edge_plain[0];

    let (status, h, body) = get(edge, HOST, "/secure.bin", &[]).await;
    assert_eq!((status, body.len()), (200, 5000), "{h:?}");
    assert_eq!(origin.hits("/secure.bin"), 1);

    // The certificate is for origin.internal.test, not other-name.test.
    let (status, _, body) = get(edge, "wrong.example.com", "/secure.bin", &[("referer", "http://t.test/ssl")]).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("TLS handshake") && text.contains("other-name.test"), "{text}");
    assert_eq!(origin.hits("/secure.bin"), 1, "no request reached the origin");
    let line = line_with_referer(&gw, "http://t.test/ssl").await;
    assert_eq!(line["x-edge-detailed-result-type"], json!("OriginSslError"), "{line}");
    assert_eq!(line["sc-status"], json!(502), "{line}");
    assert!(gw.log().contains("TLS handshake with the origin failed"), "the reason is logged");
}

/// The origin's view of the last request to `target`: header `name`'s value.
fn sent(origin: &TestOrigin, target: &str, name: &str) -> Option<String> {
    origin.last_headers(target).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_request_policy_forwards_without_joining_the_key() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin =
        TestOrigin::start(vec![("/profile.json", OriginFile::new("profile").cache_control("max-age=60"))]).await;
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/origin_request_policies/fwd",
            &json!({"name": "player-context",
                "headers": {"behavior": "whitelist", "items": ["X-Player-Region", "CloudFront-Viewer-Address"]},
                "cookies": {"behavior": "whitelist", "items": ["sid"]},
                "query_strings": {"behavior": "whitelist", "items": ["session"]}}),
        )
        .await;
    // A behavior naming a policy that does not exist is refused, naming the field.
    let r = admin
        .put(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": inline(&origin)},
                "default_behavior": {"origin_request_policy_id": "nope"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("origin_request_policy_id"), "{}", r.body);
    distribution(&gw, "d", HOST, inline(&origin), json!({"default_behavior": {"origin_request_policy_id": "fwd"}}))
        .await;
    let edge = gw.edge_plain[0];

    let first = get(
        edge,
        HOST,
        "/profile.json?session=a&utm=x",
        &[("x-player-region", "eu-west"), ("x-other", "kept-out"), ("cookie", "sid=s1; theme=dark")],
    )
    .await;
    assert_eq!((first.0, first.1.get("x-cache").map(String::as_str)), (200, Some("Miss from shardgate")));
    // The origin got the policy's header, cookie and query string, and the
    // edge-made viewer address; not what the policy leaves out.
    let target = "/profile.json?session=a";
    assert_eq!(origin.hits(target), 1, "forwarded query: only `session`");
    assert_eq!(sent(&origin, target, "x-player-region").as_deref(), Some("eu-west"));
    assert_eq!(sent(&origin, target, "cookie").as_deref(), Some("sid=s1"));
    assert_eq!(sent(&origin, target, "x-other"), None);
    let address = sent(&origin, target, "cloudfront-viewer-address").expect("edge-made header");
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    // None of it is in the cache key: another viewer with other values is a hit.
    let second =
        get(edge, HOST, "/profile.json?session=b", &[("x-player-region", "us-east"), ("cookie", "sid=s2")]).await;
    assert_eq!((second.0, second.1.get("x-cache").map(String::as_str)), (200, Some("Hit from shardgate")));
    assert_eq!(origin.total_hits() - origin.hits("/__probe"), 1, "one origin fetch for both viewers");

    // In use: deleting the policy is refused unless forced.
    let r = admin.delete("/apisix/admin/origin_request_policies/fwd").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("distribution [d]"), "{}", r.body);
    let r = admin.delete("/apisix/admin/origin_request_policies/fwd?force=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_viewer_forwards_the_viewers_headers_but_never_hop_by_hop_ones() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/p", OriginFile::new("p").cache_control("no-store"))]).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/origin_request_policies/all",
            &json!({"headers": {"behavior": "allViewer"}, "query_strings": {"behavior": "all"}}),
        )
        .await;
    let origin_host = json!({"upstream": {"nodes": {origin.addr.to_string(): 1}}, "host": "origin.internal"});
    distribution(&gw, "d", HOST, origin_host, json!({"default_behavior": {"origin_request_policy_id": "all"}})).await;
    let edge = gw.edge_plain[0];
    let (status, _, _) = get(
        edge,
        HOST,
        "/p?a=1&b=2",
        &[
            ("user-agent", "GameClient/2.1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-custom", "yes"),
            ("connection", "x-secret-hop"),
            ("x-secret-hop", "must-not-pass"),
            ("cloudfront-viewer-address", "6.6.6.6:1"),
            ("cloudfront-viewer-country", "XX"),
            ("x-amz-cf-id", "forged"),
            ("if-none-match", "\"viewer-etag\""),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let target = "/p?a=1&b=2";
    assert_eq!(origin.hits(target), 1, "every query string forwarded");
    assert_eq!(sent(&origin, target, "x-custom").as_deref(), Some("yes"));
    assert_eq!(sent(&origin, target, "user-agent").as_deref(), Some("GameClient/2.1"), "the viewer's, forwarded");
    assert_eq!(
        sent(&origin, target, "x-forwarded-for").as_deref(),
        Some("203.0.113.9, 198.51.100.7, 127.0.0.1"),
        "every viewer line, then the viewer"
    );
    // AllViewer forwards the viewer's Host, over the origin's `host` (CloudFront's AllViewer).
    assert_eq!(sent(&origin, target, "host").as_deref(), Some(HOST));
    assert_eq!(sent(&origin, target, "x-secret-hop"), None, "named by Connection: hop-by-hop");
    for forged in ["cloudfront-viewer-address", "cloudfront-viewer-country", "x-amz-cf-id"] {
        assert_eq!(sent(&origin, target, forged), None, "a viewer cannot forge edge headers: {forged}");
    }
    assert_eq!(sent(&origin, target, "if-none-match"), None, "the cache's fetch owns its conditionals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_forwards_the_headers_the_stored_response_varies_on() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![(
        "/v.json",
        OriginFile::new("v").cache_control("max-age=1").etag("\"v1\"").vary("x-client-build"),
    )])
    .await;
    // The cache policy keys on nothing; the response varies on x-client-build.
    distribution(&gw, "d", HOST, inline(&origin), json!({})).await;
    let edge = gw.edge_plain[0];
    let first = get(edge, HOST, "/v.json", &[("x-client-build", "77")]).await;
    assert_eq!(first.1.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
    // Stale after max-age=1: the next request with the same build revalidates.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = get(edge, HOST, "/v.json", &[("x-client-build", "77")]).await;
    assert_eq!(again.0, 200);
    assert_eq!(again.1.get("x-cache").map(String::as_str), Some("RefreshHit from shardgate"), "{:?}", again.1);
    assert_eq!(origin.hits("/v.json"), 2);
    assert_eq!(sent(&origin, "/v.json", "if-none-match").as_deref(), Some("\"v1\""));
    assert_eq!(sent(&origin, "/v.json", "x-client-build").as_deref(), Some("77"), "the varied header went along");
}

/// One HTTP/1.1 request with a body through the edge: `(status, headers, body)`.
async fn send(
    edge: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, std::collections::HashMap<String, String>, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    let sock = tokio::net::TcpStream::connect(edge).await.expect("connect edge");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(sock))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("content-type", "application/octet-stream")
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    (status, headers, resp.into_body().collect().await.expect("body").to_bytes())
}

const ALL_METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"];

const BLOCK_SQL_IN_BODY: &str = r#"{"Name": "api", "DefaultAction": {"Allow": {}},
  "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "api"},
  "Rules": [{"Name": "NoSqlInBody", "Priority": 0, "Action": {"Block": {}},
    "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "NoSqlInBody"},
    "Statement": {"ByteMatchStatement": {"FieldToMatch": {"Body": {"OversizeHandling": "CONTINUE"}},
      "PositionalConstraint": "CONTAINS", "SearchString": "drop table",
      "TextTransformations": [{"Type": "LOWERCASE", "Priority": 0}]}}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_with_bodies_stream_to_the_origin_and_are_never_cached() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/api/upload", OriginFile::new("stored").cache_control("max-age=3600")),
        ("/static/a", OriginFile::new("a").cache_control("max-age=3600")),
    ])
    .await;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/api", Some(BLOCK_SQL_IN_BODY)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    distribution(
        &gw,
        "d",
        HOST,
        inline(&origin),
        json!({"web_acl_id": "api", "behaviors": [{"path_pattern": "/api/*", "allowed_methods": ALL_METHODS}]}),
    )
    .await;
    let edge = gw.edge_plain[0];

    // 1 MiB POST: streamed to the origin, intact.
    let upload: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 + i / 977) as u8).collect();
    let (status, h, body) = send(edge, "POST", "/api/upload", upload.clone()).await;
    assert_eq!((status, &body[..]), (200, &b"stored"[..]), "{h:?}");
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"), "passed, not stored: {h:?}");
    let (method, got) = origin.last_body("/api/upload").expect("the origin saw the POST");
    assert_eq!(method, "POST");
    assert_eq!(got.len(), upload.len());
    assert!(got[..] == upload[..], "the body arrived intact");
    assert_eq!(
        origin.last_headers("/api/upload").iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()),
        Some("application/octet-stream")
    );

    // Never cached, even with max-age: each POST reaches the origin, and a
    // GET afterwards is a miss of its own.
    let (status, _, _) = send(edge, "POST", "/api/upload", b"second".to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(origin.hits("/api/upload"), 2);
    assert_eq!(origin.last_body("/api/upload").map(|(_, b)| b), Some(bytes::Bytes::from_static(b"second")));
    let (_, h, _) = get(edge, HOST, "/api/upload", &[]).await;
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
    assert_eq!(origin.hits("/api/upload"), 3);
    for m in ["PUT", "PATCH", "DELETE", "OPTIONS"] {
        let (status, _, _) = send(edge, m, "/api/upload", format!("{m} body").into_bytes()).await;
        assert_eq!(status, 200, "{m}");
        assert_eq!(origin.last_body("/api/upload").map(|(m, _)| m).as_deref(), Some(m));
    }
    let hits = origin.hits("/api/upload");

    // The web ACL reads the body: a malicious POST is blocked before the origin.
    let (status, h, _) =
        send(edge, "POST", "/api/upload", b"{\"name\": \"x'; DROP TABLE players; --\"}".to_vec()).await;
    assert_eq!(status, 403, "{h:?}");
    assert_eq!(origin.hits("/api/upload"), hits, "the origin saw nothing");

    // A GET-only behavior (the default one) still refuses POST, with CloudFront's answer.
    let (status, _, body) = send(edge, "POST", "/static/a", b"x".to_vec()).await;
    assert_eq!(status, 403);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        "this distribution is not configured to allow the HTTP request method POST"
    );
    assert_eq!(origin.hits("/static/a"), 0);
}

/// One HTTP/1.1 request through the edge whose body is `chunks` sent one
/// by one, `delay` apart (chunked: no `Content-Length`): `(status, body)`.
async fn send_slowly(
    edge: std::net::SocketAddr,
    method: &str,
    path: &str,
    chunks: Vec<&'static [u8]>,
    delay: Duration,
) -> (u16, bytes::Bytes) {
    use http_body_util::{BodyExt, Channel};
    let sock = tokio::net::TcpStream::connect(edge).await.expect("connect edge");
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Channel<bytes::Bytes, std::convert::Infallible>>(
        hyper_util::rt::TokioIo::new(sock),
    )
    .await
    .expect("handshake");
    tokio::spawn(conn);
    let (mut body_tx, body) = Channel::new(1);
    tokio::spawn(async move {
        for c in chunks {
            tokio::time::sleep(delay).await;
            if body_tx.send_data(bytes::Bytes::from_static(c)).await.is_err() {
                return;
            }
        }
    });
    let req = hyper::Request::builder().method(method).uri(path).header("host", HOST).body(body).expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.expect("body").to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_longer_than_the_read_timeout_succeeds() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/api/save", OriginFile::new("saved"))]).await;
    // The origin's response timeout is 1 s; the viewer takes about 2.5 s to send its body.
    let mut o = inline(&origin);
    o["read_timeout"] = json!(1);
    distribution(&gw, "d", HOST, o, json!({"behaviors": [{"path_pattern": "/api/*", "allowed_methods": ALL_METHODS}]}))
        .await;
    let edge = gw.edge_plain[0];
    let chunks: Vec<&'static [u8]> = vec![b"part-1;", b"part-2;", b"part-3;", b"part-4;", b"part-5"];
    let (status, body) = send_slowly(edge, "POST", "/api/save", chunks, Duration::from_millis(500)).await;
    assert_eq!((status, &body[..]), (200, &b"saved"[..]), "{}", String::from_utf8_lossy(&body));
    let (method, got) = origin.last_body("/api/save").expect("the origin saw the POST");
    assert_eq!((method.as_str(), &got[..]), ("POST", &b"part-1;part-2;part-3;part-4;part-5"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodyless_delete_is_sent_without_framing_and_an_oversized_upload_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/api/item", OriginFile::new("gone"))]).await;
    distribution(
        &gw,
        "d",
        HOST,
        inline(&origin),
        json!({"behaviors": [{"path_pattern": "/api/*", "allowed_methods": ALL_METHODS}]}),
    )
    .await;
    let edge = gw.edge_plain[0];

    // No body from the viewer: none to the origin, not an empty chunked one.
    let (status, _, _) = send(edge, "DELETE", "/api/item", Vec::new()).await;
    assert_eq!(status, 200);
    let headers = origin.last_headers("/api/item");
    assert_eq!(origin.methods("/api/item"), vec!["DELETE".to_owned()]);
    assert!(!headers.iter().any(|(k, _)| k == "transfer-encoding"), "{headers:?}");

    // A Content-Length above 32 MiB is refused at once, naming the limit; the origin sees nothing.
    let mut s = tokio::net::TcpStream::connect(edge).await.expect("connect edge");
    let head = format!("PUT /api/item HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: {}\r\n\r\n", 33u64 << 20);
    s.write_all(head.as_bytes()).await.expect("write head");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("bytes") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("answer in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("larger than 33554432 bytes"), "{text}");
    assert_eq!(origin.methods("/api/item"), vec!["DELETE".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_policy_keys_on_the_edge_made_cloudfront_header_not_the_viewers() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/k", OriginFile::new("k").cache_control("max-age=60"))]).await;
    let admin = gw.admin();
    // Framing and hop-by-hop names, and CloudFront names the edge does not make, are refused.
    for (bad, field) in
        [("Transfer-Encoding", "transfer-encoding"), ("CloudFront-Viewer-Country", "cloudfront-viewer-country")]
    {
        let r = admin.put("/apisix/admin/cache_policies/bad", &json!({"headers": ["x-a", bad]})).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("headers[1]") && r.body.contains(field), "{}", r.body);
    }
    admin.put_ok("/apisix/admin/cache_policies/proto", &json!({"headers": ["CloudFront-Forwarded-Proto"]})).await;
    distribution(&gw, "d", HOST, inline(&origin), json!({"default_behavior": {"cache_policy_id": "proto"}})).await;
    let edge = gw.edge_plain[0];
    let first = get(edge, HOST, "/k", &[("cloudfront-forwarded-proto", "https")]).await;
    assert_eq!(first.1.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
    assert_eq!(sent(&origin, "/k", "cloudfront-forwarded-proto").as_deref(), Some("http"), "the edge's value");
    // Another forged value is the same key: the edge's value is.
    let second = get(edge, HOST, "/k", &[("cloudfront-forwarded-proto", "gopher")]).await;
    assert_eq!(second.1.get("x-cache").map(String::as_str), Some("Hit from shardgate"), "{:?}", second.1);
    assert_eq!(origin.hits("/k"), 1);
}

/// Sends `method path` through the edge and reads the response body until
/// it ends or 20 s pass (a generous bound, not a speed claim: without an
/// idle timeout the body never ends): the bytes read, and how it ended.
async fn read_until_end(
    edge: std::net::SocketAddr,
    method: &str,
    path: &str,
    referer: &str,
) -> (usize, Result<(), hyper::Error>) {
    use http_body_util::{BodyExt, Full};
    let sock = tokio::net::TcpStream::connect(edge).await.expect("connect edge");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(sock))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("referer", referer)
        .body(Full::new(bytes::Bytes::from_static(b"request")))
        .expect("request");
    let resp = tx.send_request(req).await.expect("the response head");
    assert_eq!(resp.status(), 200, "{method} {path}");
    assert_eq!(resp.headers().get("x-cache").and_then(|v| v.to_str().ok()), Some("Miss from shardgate"));
    let mut body = resp.into_body();
    let mut got = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match body.frame().await {
                Some(Ok(f)) => got += f.data_ref().map_or(0, bytes::Bytes::len),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: the viewer's body ends while the origin still stalls"));
    (got, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_through_body_whose_origin_stalls_ends_after_the_read_timeout() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  access_log:\n    edge_location: edge-origins\n")
        .yaml("log:\n  format: json\n")
        .spawn()
        .await;
    // Half the body, then nothing for 10 minutes. `no-store` with a
    // minimum TTL of 0 is not stored, and a POST never is: both pass through.
    let stalls = OriginFile::new(vec![b'p'; 20_000]).cache_control("no-store").slow(2, Duration::from_secs(600));
    let origin = TestOrigin::start(vec![
        ("/stalls", stalls.clone()),
        ("/api/stalls", stalls),
        ("/fine", OriginFile::new("fine")),
    ])
    .await;
    gw.admin().put_ok("/apisix/admin/cache_policies/p", &json!({"min_ttl": 0})).await;
    let mut o = inline(&origin);
    o["read_timeout"] = json!(1);
    let behaviors = json!({
        "default_behavior": {"cache_policy_id": "p"},
        "behaviors": [{"path_pattern": "/api/*", "allowed_methods": ALL_METHODS}],
    });
    distribution(&gw, "d", HOST, o, behaviors).await;
    let edge = gw.edge_plain[0];

    for (method, path) in [("GET", "/stalls"), ("POST", "/api/stalls")] {
        let referer = format!("http://t.test/{method}");
        let (got, ended) = read_until_end(edge, method, path, &referer).await;
        assert!(ended.is_err(), "{method}: the body ends in an error, not as if complete ({got} bytes)");
        assert_eq!(got, 10_000, "{method}: the first half was passed on");
        let line = line_with_referer(&gw, &referer).await;
        assert_eq!(line["x-edge-detailed-result-type"], json!("OriginReadError"), "{line}");
        assert_eq!(line["x-edge-result-type"], json!("Error"), "{line}");
    }
    assert!(gw.log().contains("origin stalled while its response body was passed through"));
    // The gateway keeps serving, from the same origin.
    let (status, _, body) = get(edge, HOST, "/fine", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"fine"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origins_idle_connection_survives_an_unrelated_configuration_change() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let files = (0..2).map(|i| (format!("/s{i}"), OriginFile::new(vec![b's'; 5000]))).collect::<Vec<_>>();
    let origin =
        TestOrigin::start_tls(files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect(), &["origin.internal.test"])
            .await;
    let mut o = inline(&origin);
    o["protocol_policy"] = json!("https-only");
    o["ca_bundle"] = json!(origin.ca_pem.clone().expect("test CA"));
    o["sni"] = json!("origin.internal.test");
    // Idle connections outlive the configuration change below.
    o["keepalive_timeout"] = json!(120);
    distribution(&gw, "d", HOST, o, json!({})).await;
    let edge = gw.edge_plain[0];
    let (status, _, body) = get(edge, HOST, "/s0", &[]).await;
    assert_eq!((status, body.len()), (200, 5000));
    let before = origin.connections();

    // Another distribution (its own plain origin): a new snapshot, in
    // which `d` and its origin are unchanged.
    let other = TestOrigin::start(vec![]).await;
    distribution(&gw, "other", "other.example.com", inline(&other), json!({})).await;
    let (status, h, body) = get(edge, HOST, "/s1", &[]).await;
    assert_eq!((status, body.len()), (200, 5000));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"), "a fetch from the origin");
    assert_eq!(origin.connections(), before, "the idle HTTPS connection was reused, not a new one opened");
}
