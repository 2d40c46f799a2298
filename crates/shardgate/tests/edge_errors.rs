//! Redirects, HEAD and origin errors through the real binary: 3xx stored
//! per their headers (CloudFront Developer Guide, "How CloudFront
//! processes HTTP 3xx status codes from your origin"), HEAD answered from
//! the cache, HEAD misses forwarded, errors cached for the error caching
//! minimum TTL and replaced by custom error pages ("How CloudFront
//! processes HTTP 4xx and 5xx status codes from your origin").

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::gateway;
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "assets.example.com";

/// A distribution `d` for `HOST` in front of `origin` with cache policy
/// `policy`; `extra` is merged into the distribution's body.
async fn distribution(gw: &Gateway, origin: &TestOrigin, policy: serde_json::Value, extra: serde_json::Value) {
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/cache_policies/p", &policy).await;
    let mut body = json!({
        "hosts": [HOST],
        "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
        "default_behavior": {"cache_policy_id": "p"}
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    admin.put_ok("/apisix/admin/distributions/d", &body).await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

fn x_cache(h: &HashMap<String, String>) -> &str {
    h.get("x-cache").map_or("", String::as_str)
}

/// One HTTP/1.1 request with `method` through the edge: `(status, headers, body)`.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, HashMap<String, String>, Bytes) {
    request_with(addr, method, path, &[]).await
}

/// [`request`] with extra request headers.
async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Bytes) {
    shardgate_e2e::origin::request(addr, method, HOST, path, headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_cached_per_their_headers() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let redirect = |status: u16, to: &str| OriginFile::new("").status(status).header("location", to);
    let origin = TestOrigin::start(vec![
        // 301 is heuristically cacheable: the policy's default TTL applies.
        ("/moved", redirect(301, "/new-home")),
        ("/found-fresh", redirect(302, "/today").cache_control("max-age=600")),
        ("/temporary", redirect(307, "/elsewhere").cache_control("public, max-age=600")),
        // No lifetime: a temporary redirect is not stored.
        ("/found", redirect(302, "/now")),
        ("/temporary-bare", redirect(307, "/there")),
    ])
    .await;
    distribution(&gw, &origin, json!({"min_ttl": 0, "default_ttl": 600}), json!({})).await;
    let edge = gw.edge_plain[0];
    for (path, status, location) in
        [("/moved", 301, "/new-home"), ("/found-fresh", 302, "/today"), ("/temporary", 307, "/elsewhere")]
    {
        let (s, h, _) = get(edge, HOST, path, &[]).await;
        assert_eq!((s, x_cache(&h)), (status, "Miss from shardgate"), "{path}: {h:?}");
        let (s, h, _) = get(edge, HOST, path, &[]).await;
        assert_eq!((s, x_cache(&h)), (status, "Hit from shardgate"), "{path}: stored: {h:?}");
        assert_eq!(h.get("location").map(String::as_str), Some(location), "{path}: the stored Location");
        assert_eq!(origin.hits(path), 1, "{path}");
    }
    for (path, status) in [("/found", 302), ("/temporary-bare", 307)] {
        for _ in 0..2 {
            let (s, h, _) = get(edge, HOST, path, &[]).await;
            assert_eq!(s, status, "{path}");
            assert_ne!(x_cache(&h), "Hit from shardgate", "{path}: no lifetime, not stored: {h:?}");
            assert!(h.contains_key("location"), "{path}: passed through with its Location: {h:?}");
        }
        assert_eq!(origin.hits(path), 2, "{path}: asked every time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_from_the_cache() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let body = "x".repeat(12_345);
    let origin =
        TestOrigin::start(vec![("/pak/level1.pak", OriginFile::new(body.clone()).cache_control("max-age=600"))]).await;
    distribution(&gw, &origin, json!({"min_ttl": 0}), json!({})).await;
    let edge = gw.edge_plain[0];
    let (status, _, got) = get(edge, HOST, "/pak/level1.pak", &[]).await;
    assert_eq!((status, got.len()), (200, body.len()));
    for _ in 0..2 {
        let (status, h, got) = request(edge, "HEAD", "/pak/level1.pak").await;
        assert_eq!((status, x_cache(&h)), (200, "Hit from shardgate"), "{h:?}");
        assert_eq!(h.get("content-length").map(String::as_str), Some("12345"), "the stored length: {h:?}");
        assert!(got.is_empty(), "HEAD has no body");
    }
    assert_eq!(origin.methods("/pak/level1.pak"), ["GET"], "HEAD never reached the origin");
}

/// CloudFront forwards a `HEAD` it cannot answer from the cache to the
/// origin as a `HEAD`: a miss never makes the edge download the body, and
/// the answer is not stored, so the next `GET` still goes to the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_a_miss_is_forwarded_as_head_and_not_stored() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let body = "y".repeat(54_321);
    let origin =
        TestOrigin::start(vec![("/pak/level2.pak", OriginFile::new(body.clone()).cache_control("max-age=600"))]).await;
    distribution(&gw, &origin, json!({"min_ttl": 0}), json!({})).await;
    let edge = gw.edge_plain[0];
    for _ in 0..2 {
        let (status, h, got) = request(edge, "HEAD", "/pak/level2.pak").await;
        assert_eq!((status, x_cache(&h)), (200, "Miss from shardgate"), "{h:?}");
        assert_eq!(h.get("content-length").map(String::as_str), Some("54321"), "the origin's length: {h:?}");
        assert!(got.is_empty(), "HEAD has no body");
    }
    assert_eq!(origin.methods("/pak/level2.pak"), ["HEAD", "HEAD"], "each HEAD miss is a HEAD to the origin");
    let (status, h, got) = get(edge, HOST, "/pak/level2.pak", &[]).await;
    assert_eq!((status, got.len()), (200, body.len()));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"), "a HEAD stored nothing: {h:?}");
    let (status, h, _) = request(edge, "HEAD", "/pak/level2.pak").await;
    assert_eq!((status, x_cache(&h)), (200, "Hit from shardgate"), "{h:?}");
    assert_eq!(origin.methods("/pak/level2.pak"), ["HEAD", "HEAD", "GET"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_cached_as_cloudfront_caches_them() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let error = |status: u16| OriginFile::new(format!("error {status}")).status(status);
    let origin = TestOrigin::start(vec![
        // Always cached, for the error caching minimum TTL (10 s by default).
        ("/gone.pak", error(404)),
        ("/busy", error(503)),
        ("/gone-for-good", error(410)),
        // no-store, no-cache and private stop the caching of 404, 410, 414
        // and 501 only; other errors are cached for the minimum TTL anyway.
        ("/gone-no-store", error(404).cache_control("no-store")),
        ("/gone-for-good-private", error(410).cache_control("private")),
        ("/busy-no-store", error(503).cache_control("no-store")),
        ("/broken-no-cache", error(500).cache_control("no-cache")),
        // Vary: * never matches a later request.
        ("/busy-vary-star", error(503).header("vary", "*")),
        // 403 only with max-age or s-maxage.
        ("/denied", error(403)),
        ("/denied-for-a-while", error(403).cache_control("max-age=60")),
        // Never cached.
        ("/who", error(401).cache_control("max-age=60")),
    ])
    .await;
    // The policy's TTLs do not apply to errors: its min TTL would store anything.
    distribution(&gw, &origin, json!({"min_ttl": 60, "default_ttl": 600}), json!({})).await;
    let edge = gw.edge_plain[0];
    for (path, status, cached) in [
        ("/gone.pak", 404, true),
        ("/busy", 503, true),
        ("/gone-for-good", 410, true),
        ("/gone-no-store", 404, false),
        ("/gone-for-good-private", 410, false),
        ("/busy-no-store", 503, true),
        ("/broken-no-cache", 500, true),
        ("/busy-vary-star", 503, false),
        ("/denied", 403, false),
        ("/denied-for-a-while", 403, true),
        ("/who", 401, false),
    ] {
        let (s, _, body) = get(edge, HOST, path, &[]).await;
        assert_eq!((s, &body[..]), (status, format!("error {status}").as_bytes()), "{path}");
        let (s, h, body) = get(edge, HOST, path, &[]).await;
        assert_eq!((s, &body[..]), (status, format!("error {status}").as_bytes()), "{path}");
        let expected = if cached { 1 } else { 2 };
        assert_eq!(origin.hits(path), expected, "{path}: cached {cached}: {h:?}");
        if cached {
            assert_eq!(x_cache(&h), "Hit from shardgate", "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_cached_for_their_error_caching_min_ttl() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/down", OriginFile::new("error 503").status(503))]).await;
    let errors = json!({"custom_error_responses": [
        {"error_code": 404, "error_caching_min_ttl": 1},
        {"error_code": 503, "error_caching_min_ttl": 0}
    ]});
    distribution(&gw, &origin, json!({"min_ttl": 0}), errors).await;
    let edge = gw.edge_plain[0];
    // The test origin answers 404 for a path it does not serve.
    assert_eq!(get(edge, HOST, "/missing.pak", &[]).await.0, 404);
    let (status, h, _) = get(edge, HOST, "/missing.pak", &[]).await;
    assert_eq!((status, x_cache(&h)), (404, "Hit from shardgate"));
    assert_eq!(origin.hits("/missing.pak"), 1, "two viewer requests, one origin request");
    // After the 1 s minimum TTL the origin is asked again.
    eventually(10, "the cached 404 expires", || async {
        get(edge, HOST, "/missing.pak", &[]).await;
        (origin.hits("/missing.pak") >= 2).then_some(())
    })
    .await;
    // A minimum TTL of 0 (and no lifetime from the origin): never cached.
    for _ in 0..2 {
        assert_eq!(get(edge, HOST, "/down", &[]).await.0, 503);
    }
    assert_eq!(origin.hits("/down"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_error_page_replaces_the_origins_error() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/down", OriginFile::new("error 503").status(503)),
        ("/broken", OriginFile::new("error 500").status(500)),
        ("/bad", OriginFile::new("error 502").status(502)),
        (
            "/errors/maintenance.html",
            OriginFile::new("<h1>back soon</h1>").cache_control("max-age=600").header("content-type", "text/html"),
        ),
        ("/errors/oops.html", OriginFile::new("<h1>oops</h1>").cache_control("max-age=600")),
    ])
    .await;
    let errors = json!({"custom_error_responses": [
        {"error_code": 503, "response_page_path": "/errors/maintenance.html", "response_code": 200},
        {"error_code": 500, "response_page_path": "/errors/oops.html"},
        {"error_code": 502, "response_page_path": "/errors/missing.html", "response_code": 200}
    ]});
    distribution(&gw, &origin, json!({"min_ttl": 0}), errors).await;
    let edge = gw.edge_plain[0];
    for _ in 0..3 {
        let (status, h, body) = get(edge, HOST, "/down", &[]).await;
        assert_eq!((status, &body[..]), (200, &b"<h1>back soon</h1>"[..]), "the page, with its configured status");
        assert_eq!(h.get("content-type").map(String::as_str), Some("text/html"), "the page's own headers: {h:?}");
    }
    // The error is cached (10 s by default) and so is the page (its max-age).
    assert_eq!((origin.hits("/down"), origin.hits("/errors/maintenance.html")), (1, 1));
    // Without response_code the origin's status goes with the page.
    let (status, _, body) = get(edge, HOST, "/broken", &[]).await;
    assert_eq!((status, &body[..]), (500, &b"<h1>oops</h1>"[..]));
    // A page that cannot be had leaves the error as it was.
    let (status, _, body) = get(edge, HOST, "/bad", &[]).await;
    assert_eq!((status, &body[..]), (502, &b"error 502"[..]));
    // HEAD gets the page's head.
    let (status, h, body) = request(edge, "HEAD", "/down").await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(h.get("content-length").map(String::as_str), Some("18"), "{h:?}");
}

/// The request for a custom error page is the edge's own GET (a HEAD stays
/// a HEAD), whatever the viewer's method: a failed POST is not sent again
/// to the page's origin. The page is compressed as its own behavior and
/// cache policy say, not as the failed request's did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_error_page_is_fetched_with_get_and_compressed_per_its_own_behavior() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let page = format!("<html><body>{}</body></html>", "<p>nothing here, try the launcher</p>".repeat(60));
    // A 503, not a 404: the distribution's liveness probe gets a 404, and
    // must not fetch the page first.
    let origin = TestOrigin::start(vec![
        ("/scores", OriginFile::new("busy").status(503)),
        (
            "/errors/busy.html",
            OriginFile::new(page.clone()).header("content-type", "text/html").cache_control("max-age=600"),
        ),
    ])
    .await;
    gw.admin()
        .put_ok(
            "/apisix/admin/cache_policies/z",
            &json!({"min_ttl": 0, "enable_accept_encoding_gzip": true, "enable_accept_encoding_brotli": true}),
        )
        .await;
    let all = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"];
    distribution(
        &gw,
        &origin,
        json!({"min_ttl": 0}),
        json!({
            "default_behavior": {"cache_policy_id": "p", "allowed_methods": all},
            "behaviors": [{"path_pattern": "/errors/*", "origin": "o", "cache_policy_id": "z", "compress": true}],
            "custom_error_responses": [{"error_code": 503, "response_page_path": "/errors/busy.html"}]
        }),
    )
    .await;
    let edge = gw.edge_plain[0];
    let (status, _, body) = request(edge, "POST", "/scores").await;
    assert_eq!((status, &body[..]), (503, page.as_bytes()), "the page, with the origin's status");
    assert_eq!(origin.methods("/scores"), ["POST"]);
    assert_eq!(origin.methods("/errors/busy.html"), ["GET"], "the page is fetched with GET");

    // The failed path's policy has no compression flags; the page's
    // behavior compresses: a gzip viewer gets the page gzipped.
    let (status, h, body) = request_with(edge, "GET", "/scores", &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, 503);
    assert_eq!(h.get("content-encoding").map(String::as_str), Some("gzip"), "{h:?}");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).expect("valid gzip");
    assert_eq!(plain, page.as_bytes());
    let (status, h, body) = request(edge, "GET", "/scores").await;
    assert_eq!((status, &body[..]), (503, page.as_bytes()), "no Accept-Encoding: identity");
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(origin.methods("/scores"), ["POST", "GET"], "the GET's 503 is cached");
    assert_eq!(origin.methods("/errors/busy.html"), ["GET"], "one fetch of the page for every viewer");
}
