//! HTTP caching semantics through the real binary, the cases the HTTP
//! Caching Tests suite (cache-tests.fyi) found: list-valued `Age`, the
//! `Age` sent downstream, `CDN-Cache-Control` (RFC 9213) and its setting,
//! duplicate and malformed `Cache-Control`, invalid `Expires`, qualified
//! `no-cache`, `Vary` values across lines, `If-Modified-Since` without
//! `Last-Modified`, responses (and 304s) without `Date`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "assets.example.com";

async fn distribution(gw: &Gateway, origin: &TestOrigin, policy: serde_json::Value) {
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/cache_policies/p", &policy).await;
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"cache_policy_id": "p"}
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

fn x_cache(h: &HashMap<String, String>) -> &str {
    h.get("x-cache").map_or("", String::as_str)
}

fn age(h: &HashMap<String, String>) -> u64 {
    h.get("age").and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no numeric Age in {h:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_valued_age_is_read_by_its_first_member() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let aged = |age: &str| OriginFile::new("old").cache_control("max-age=3600").header("age", age);
    let origin = TestOrigin::start(vec![
        // Two hours old by its first member; reading the last one (0) would
        // make a stale object a Hit.
        ("/list", aged("7200, 0")),
        ("/lines", aged("7200").header("age", "0")),
        ("/young", aged("100, 9000")),
        ("/junk", aged("abc")),
        // A Set-Cookie is never stored: passed through.
        ("/pass", OriginFile::new("p").header("set-cookie", "s=1").header("age", "30, 0")),
        ("/pass-junk", OriginFile::new("p").header("set-cookie", "s=1").header("age", "abc")),
    ])
    .await;
    // min_ttl 1 s (CloudFront's CachingOptimized): a stale arrival is stored
    // and revalidated at once, so its Age is the cache's to compute.
    distribution(&gw, &origin, json!({"min_ttl": 1})).await;
    let edge = gw.edge_plain[0];
    for path in ["/list", "/lines"] {
        let (status, h, _) = get(edge, HOST, path, &[]).await;
        assert_eq!((status, x_cache(&h)), (200, "Miss from shardgate"));
        assert!(age(&h) >= 7200, "{path}: the Age sent on is the origin's, not 0: {h:?}");
        let (_, h, _) = get(edge, HOST, path, &[]).await;
        assert_ne!(x_cache(&h), "Hit from shardgate", "{path}: 2 hours old with max-age=3600 is stale: {h:?}");
        assert!(age(&h) >= 7200, "{path}: {h:?}");
        assert_eq!(origin.hits(path), 2, "{path}: asked again");
    }
    // Younger than its lifetime: a Hit whose Age carries on from the origin's.
    get(edge, HOST, "/young", &[]).await;
    let (_, h, _) = get(edge, HOST, "/young", &[]).await;
    assert_eq!(x_cache(&h), "Hit from shardgate");
    assert!((100..3600).contains(&age(&h)), "{h:?}");
    // An Age that is not a number is ignored (RFC 9111 §5.1).
    get(edge, HOST, "/junk", &[]).await;
    let (_, h, _) = get(edge, HOST, "/junk", &[]).await;
    assert_eq!(x_cache(&h), "Hit from shardgate");
    assert!(age(&h) < 60, "{h:?}");
    assert_eq!(origin.hits("/young") + origin.hits("/junk"), 2);
    // Passed through uncached: the Age goes on as one valid value, or not at all.
    let (_, h, _) = get(edge, HOST, "/pass", &[]).await;
    assert_eq!((x_cache(&h), age(&h)), ("Miss from shardgate", 30));
    let (_, h, _) = get(edge, HOST, "/pass-junk", &[]).await;
    assert_eq!(h.get("age"), None, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_is_obeyed_and_passed_on() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        // RFC 9213 §3.1: only the CDN stores it.
        ("/cdn-only", OriginFile::new("a").cache_control("no-store").header("cdn-cache-control", "max-age=600")),
        // The targeted field wins in the other direction too.
        ("/cdn-no", OriginFile::new("b").cache_control("max-age=600").header("cdn-cache-control", "no-store")),
        // Invalid as a Structured Field (a string max-age): ignored, Cache-Control decides.
        ("/cdn-bad", OriginFile::new("c").cache_control("no-store").header("cdn-cache-control", "max-age=\"600\"")),
        // Invalid too (a decimal max-age), but its no-store still binds CDNs.
        (
            "/cdn-bad-no-store",
            OriginFile::new("d")
                .cache_control("public, max-age=3600")
                .header("cdn-cache-control", "no-store, max-age=1.5"),
        ),
        // Invalid, with nothing restrictive in it: Cache-Control's max-age counts.
        (
            "/cdn-bad-fresh",
            OriginFile::new("e").cache_control("public, max-age=3600").header("cdn-cache-control", "max-age=1.5"),
        ),
    ])
    .await;
    distribution(&gw, &origin, json!({"min_ttl": 0, "max_ttl": 86400, "default_ttl": 60})).await;
    let edge = gw.edge_plain[0];
    let twice = |path: &'static str| async move {
        get(edge, HOST, path, &[]).await;
        get(edge, HOST, path, &[]).await
    };
    let (_, h, _) = twice("/cdn-only").await;
    assert_eq!(x_cache(&h), "Hit from shardgate", "{h:?}");
    assert_eq!(h.get("cdn-cache-control").map(String::as_str), Some("max-age=600"), "passed on downstream");
    assert_eq!(h.get("cache-control").map(String::as_str), Some("no-store"), "browsers still get no-store");
    let (_, h, _) = twice("/cdn-no").await;
    assert_ne!(x_cache(&h), "Hit from shardgate", "{h:?}");
    let (_, h, _) = twice("/cdn-bad").await;
    assert_ne!(x_cache(&h), "Hit from shardgate", "{h:?}");
    let (_, h, _) = twice("/cdn-bad-no-store").await;
    assert_ne!(x_cache(&h), "Hit from shardgate", "the origin said no-store to CDNs: {h:?}");
    let (_, h, _) = twice("/cdn-bad-fresh").await;
    assert_eq!(x_cache(&h), "Hit from shardgate", "{h:?}");
    let hits = ["/cdn-only", "/cdn-no", "/cdn-bad", "/cdn-bad-no-store", "/cdn-bad-fresh"].map(|p| origin.hits(p));
    assert_eq!(hits, [1, 2, 2, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_ttl_bounds_still_bound_the_targeted_field() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin =
        TestOrigin::start(vec![("/long", OriginFile::new("l").header("cdn-cache-control", "max-age=600"))]).await;
    distribution(&gw, &origin, json!({"min_ttl": 0, "default_ttl": 1, "max_ttl": 1})).await;
    let edge = gw.edge_plain[0];
    get(edge, HOST, "/long", &[]).await;
    assert_eq!(x_cache(&get(edge, HOST, "/long", &[]).await.1), "Hit from shardgate");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_ne!(x_cache(&get(edge, HOST, "/long", &[]).await.1), "Hit from shardgate", "max_ttl 1 s caps max-age=600");
    assert_eq!(origin.hits("/long"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targeted_field_list_is_a_setting() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  cache:\n    targeted_cache_control: [Studio-Cache-Control]")
        .spawn()
        .await;
    let origin = TestOrigin::start(vec![
        ("/studio", OriginFile::new("s").cache_control("no-store").header("studio-cache-control", "max-age=600")),
        ("/cdn", OriginFile::new("c").cache_control("no-store").header("cdn-cache-control", "max-age=600")),
    ])
    .await;
    distribution(&gw, &origin, json!({"min_ttl": 0})).await;
    let edge = gw.edge_plain[0];
    for path in ["/studio", "/cdn"] {
        get(edge, HOST, path, &[]).await;
    }
    assert_eq!(x_cache(&get(edge, HOST, "/studio", &[]).await.1), "Hit from shardgate");
    assert_ne!(
        x_cache(&get(edge, HOST, "/cdn", &[]).await.1),
        "Hit from shardgate",
        "CDN-Cache-Control is not on this cache's list"
    );
    assert_eq!((origin.hits("/studio"), origin.hits("/cdn")), (1, 2));

    // `[]` turns targeted fields off.
    let gw =
        gateway().tls_listeners(0).edge_http(1).edge_yaml("  cache:\n    targeted_cache_control: []").spawn().await;
    let origin = TestOrigin::start(vec![(
        "/cdn",
        OriginFile::new("c").cache_control("no-store").header("cdn-cache-control", "max-age=600"),
    )])
    .await;
    distribution(&gw, &origin, json!({"min_ttl": 0})).await;
    let edge = gw.edge_plain[0];
    get(edge, HOST, "/cdn", &[]).await;
    assert_ne!(x_cache(&get(edge, HOST, "/cdn", &[]).await.1), "Hit from shardgate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_siblings() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        // Duplicates: the first occurrence counts (RFC 9111 §4.2.1).
        ("/dup", OriginFile::new("d").cache_control("max-age=600, max-age=0")),
        // `max-age =600` is no valid directive: stale, not 600 and not the default TTL.
        ("/space", OriginFile::new("s").cache_control("max-age =600")),
        // A max-age inside a quoted string is not a directive.
        ("/quoted", OriginFile::new("q").cache_control("ext=\"a, max-age=600\", max-age=0")),
        // An invalid Expires means already expired (RFC 9111 §5.3).
        ("/expires", OriginFile::new("e").header("expires", "0")),
        // Qualified no-cache: stored without the named field (RFC 9111 §5.2.2.4).
        (
            "/fields",
            OriginFile::new("f")
                .cache_control("no-cache=\"x-secret\", max-age=600")
                .header("x-secret", "1")
                .header("x-public", "2"),
        ),
    ])
    .await;
    distribution(&gw, &origin, json!({"min_ttl": 0})).await;
    let edge = gw.edge_plain[0];
    for path in ["/dup", "/space", "/quoted", "/expires"] {
        get(edge, HOST, path, &[]).await;
    }
    assert_eq!(x_cache(&get(edge, HOST, "/dup", &[]).await.1), "Hit from shardgate");
    for path in ["/space", "/quoted", "/expires"] {
        let (_, h, _) = get(edge, HOST, path, &[]).await;
        assert_ne!(x_cache(&h), "Hit from shardgate", "{path}: {h:?}");
        assert_eq!(origin.hits(path), 2, "{path}");
    }
    let (_, first, _) = get(edge, HOST, "/fields", &[]).await;
    assert_eq!(first.get("x-secret").map(String::as_str), Some("1"), "the fetching request gets every field");
    let (_, h, _) = get(edge, HOST, "/fields", &[]).await;
    assert_eq!(x_cache(&h), "Hit from shardgate");
    assert_eq!(h.get("x-public").map(String::as_str), Some("2"));
    assert_eq!(h.get("x-secret"), None, "not stored, so never served from the cache: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_values_and_conditionals() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/v", OriginFile::new("v").cache_control("max-age=600").header("vary", "x-list")),
        ("/nolm", OriginFile::new("n").cache_control("max-age=600")),
    ])
    .await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    get(edge, HOST, "/v", &[("x-list", "1,2")]).await;
    // vary-normalise-space and vary-normalise-combine.
    assert_eq!(x_cache(&get(edge, HOST, "/v", &[("x-list", " 1, 2 ")]).await.1), "Hit from shardgate");
    assert_eq!(x_cache(&get(edge, HOST, "/v", &[("x-list", "1"), ("x-list", "2")]).await.1), "Hit from shardgate");
    assert_ne!(x_cache(&get(edge, HOST, "/v", &[("x-list", "2, 1")]).await.1), "Hit from shardgate");
    // conditional-lm-fresh-no-lm: no Last-Modified, so the stored Date decides.
    get(edge, HOST, "/nolm", &[]).await;
    let (status, h, body) = get(edge, HOST, "/nolm", &[("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")]).await;
    assert_eq!((status, x_cache(&h), body.len()), (304, "Hit from shardgate", 0));
    let (status, _, _) = get(edge, HOST, "/nolm", &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]).await;
    assert_eq!(status, 200);
}

/// RFC 9110 §6.6.1: a response cached without `Date` gets the time it was
/// received. A 304 without `Date` used to leave the first fetch's `Date` in
/// the refreshed object, which was then stale at once and revalidated on
/// every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_without_date_makes_the_object_fresh_again() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let file = OriginFile::new("v").cache_control("max-age=2").etag("\"v1\"");
    let origin = TestOrigin::start(vec![("/v", file.clone())]).await;
    distribution(&gw, &origin, json!({"min_ttl": 0})).await;
    let edge = gw.edge_plain[0];
    let (_, h, _) = get(edge, HOST, "/v", &[]).await;
    assert_eq!(x_cache(&h), "Miss from shardgate", "{h:?}");
    let first_date = h.get("date").cloned().expect("the origin sent a Date");
    // From now on the origin's 304s carry no Date.
    origin.set("/v", file.without_date());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, h, body) = get(edge, HOST, "/v", &[]).await;
    assert_eq!((status, x_cache(&h), &body[..]), (200, "RefreshHit from shardgate", &b"v"[..]), "{h:?}");
    assert_eq!(origin.hits("/v"), 2, "revalidated once");
    assert_ne!(h.get("date"), Some(&first_date), "the stored Date is now the 304's arrival: {h:?}");
    assert!(age(&h) < 2, "the refreshed object is young: {h:?}");
    // Fresh for max-age=2 from the 304's arrival: a hit, no third request.
    let (_, h, _) = get(edge, HOST, "/v", &[]).await;
    assert_eq!(x_cache(&h), "Hit from shardgate", "{h:?}");
    assert_eq!(origin.hits("/v"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_date_is_stored_with_its_arrival_time() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/none", OriginFile::new("n").cache_control("max-age=600").without_date()),
        // An invalid Date may be replaced too (RFC 9110 §6.6.1).
        ("/junk", OriginFile::new("j").cache_control("max-age=600").header("date", "yesterday")),
    ])
    .await;
    distribution(&gw, &origin, json!({})).await;
    let edge = gw.edge_plain[0];
    let (_, miss, _) = get(edge, HOST, "/none", &[]).await;
    let (_, junk_miss, _) = get(edge, HOST, "/junk", &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, hit, _) = get(edge, HOST, "/none", &[]).await;
    assert_eq!(x_cache(&hit), "Hit from shardgate", "{hit:?}");
    assert!(miss.contains_key("date"), "{miss:?}");
    assert_eq!(hit.get("date"), miss.get("date"), "the Date stored is the arrival's, not the time of each hit");
    assert!(age(&hit) >= 1, "{hit:?}");
    let (_, junk_hit, _) = get(edge, HOST, "/junk", &[]).await;
    assert_eq!(x_cache(&junk_hit), "Hit from shardgate", "{junk_hit:?}");
    let date = junk_miss.get("date").map(String::as_str);
    assert_ne!(date, Some("yesterday"), "{junk_miss:?}");
    assert!(date.is_some_and(|d| d.ends_with(" GMT") && d.len() == 29), "an IMF-fixdate: {junk_miss:?}");
    assert_eq!(junk_hit.get("date"), junk_miss.get("date"));
}
