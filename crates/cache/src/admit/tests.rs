use std::time::SystemTime;

use super::*;
use crate::disk::DiskSettings;
use crate::memory::{CacheSettings, Lookup, Outcome};

const MAX_MEMORY_OBJECT: u64 = 1000;

fn settings() -> CacheSettings {
    CacheSettings { memory_bytes: 1 << 20, max_object_bytes: MAX_MEMORY_OBJECT }
}

fn bounds() -> TtlBounds {
    TtlBounds { min: Duration::ZERO, default: Duration::from_secs(60), max: Duration::from_secs(3600) }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    h
}

fn response(status: u16, pairs: &[(&'static str, &'static str)]) -> Response<&'static str> {
    let mut r = Response::new("body");
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    *r.headers_mut() = headers(pairs);
    r
}

fn exchange<'a>(req: &'a HeaderMap, now: SystemTime) -> Exchange<'a> {
    Exchange {
        request_headers: req,
        namespace: "dist-1",
        generation: 7,
        viewer_target: "/v?x=1",
        origin_target: "/o?x=1",
        bounds: bounds(),
        targeted: &[],
        timing: Timing::at(now),
        error_caching: &[],
    }
}

fn leader(cache: &Arc<Cache>, key: &str) -> Leader {
    match cache.lookup(key, &HeaderMap::new(), Instant::now(), |_| true) {
        Lookup::Miss(l) | Lookup::Stale { leader: Some(l), .. } => l,
        other => panic!("expected to lead {key}, got {other:?}"),
    }
}

fn text(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
}

/// A complete object as a first fetch stores it.
fn stored_object(cache: &Arc<Cache>, key: &str, pairs: &[(&'static str, &'static str)]) -> Arc<Object> {
    let req = HeaderMap::new();
    let now = SystemTime::now();
    match cache.admit(leader(cache, key), response(200, pairs), None, &exchange(&req, now)) {
        Admitted::Stored { object, mut fill, .. } => {
            fill.push(Bytes::from_static(b"body"));
            fill.finish(FillEnd::Complete);
            object
        }
        other => panic!("expected a stored object, got {other:?}"),
    }
}

#[test]
fn a_304_merge_replaces_its_fields_and_keeps_the_rest() {
    let stored = headers(&[
        ("etag", "\"1\""),
        ("content-type", "text/plain"),
        ("content-length", "4"),
        ("x-two", "a"),
        ("x-two", "b"),
    ]);
    let update = headers(&[
        ("etag", "\"2\""),
        ("x-two", "c"),
        ("content-length", "0"),
        ("connection", "close, x-hop"),
        ("x-hop", "for this connection only"),
        ("transfer-encoding", "chunked"),
    ]);
    let merged = merge_not_modified(&stored, &update);
    assert!(!merged.contains_key("x-hop"), "a field the 304's Connection names is hop-by-hop");
    assert_eq!(text(&merged, "etag"), ["\"2\""]);
    assert_eq!(text(&merged, "x-two"), ["c"], "every stored line of a field the 304 sends is replaced");
    assert_eq!(text(&merged, "content-type"), ["text/plain"], "fields the 304 omits are kept");
    assert_eq!(text(&merged, "content-length"), ["4"], "a 304's Content-Length is not the body's");
    assert!(!merged.contains_key("connection") && !merged.contains_key("transfer-encoding"), "hop-by-hop");
}

#[tokio::test]
async fn a_304_keeps_the_body_updates_the_headers_and_is_shared() {
    let cache = Cache::new(settings());
    let old = stored_object(&cache, "k", &[("etag", "\"1\""), ("cache-control", "max-age=0"), ("x-old", "kept")]);
    let now = SystemTime::now();
    let req = HeaderMap::new();
    let l = leader(&cache, "k");
    let update = response(304, &[("etag", "\"2\""), ("cache-control", "max-age=600"), ("age", "5")]);
    let Admitted::Refreshed { object, own } = cache.admit(l, update, Some(&old), &exchange(&req, now)) else {
        panic!("a 304 for a stale object refreshes it")
    };
    assert!(Arc::ptr_eq(&object.body, &old.body), "the body is the stored one");
    assert_eq!(object.status, StatusCode::OK);
    assert_eq!(text(&object.headers, "etag"), ["\"2\""]);
    assert_eq!(text(&object.headers, "x-old"), ["kept"]);
    assert!(!object.headers.contains_key(header::AGE), "Age is not stored");
    assert!(object.headers.contains_key(header::DATE), "a 304 without Date gets one");
    assert_eq!(object.initial_age, Duration::from_secs(5));
    assert!(object.is_fresh(Instant::now()));
    assert!(own.is_empty());
    let Lookup::Fresh(found) = cache.lookup("k", &req, Instant::now(), |_| true) else {
        panic!("the refreshed object is the stored one")
    };
    assert!(Arc::ptr_eq(&found, &object));
}

#[tokio::test]
async fn a_304_for_a_body_still_arriving_is_not_stored_and_its_failure_empties_the_key() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    let first = response(200, &[("etag", "\"1\""), ("cache-control", "max-age=0"), ("content-length", "8")]);
    let Admitted::Stored { object: old, mut fill, .. } =
        cache.admit(leader(&cache, "k"), first, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("a 200 is stored")
    };
    fill.push(Bytes::from_static(b"half"));
    assert!(!old.revalidatable(), "half a body may not be revalidated");
    // A 304 arrives while the body is still arriving (a caller that sent
    // validators anyway).
    let l = leader(&cache, "k");
    let update = response(304, &[("etag", "\"1\""), ("cache-control", "max-age=600")]);
    let Admitted::Refreshed { object, .. } = cache.admit(l, update, Some(&old), &exchange(&req, SystemTime::now()))
    else {
        panic!("this request still gets the merged answer")
    };
    assert!(Arc::ptr_eq(&object.body, &old.body));
    fill.finish(FillEnd::Failed("origin reset".into()));
    assert!(
        matches!(cache.lookup("k", &req, Instant::now(), |_| true), Lookup::Miss(_)),
        "no object with the failed body stays"
    );
    assert_eq!(cache.usage(), (0, 0));
}

#[tokio::test]
async fn a_no_store_304_makes_the_result_unshared() {
    let cache = Cache::new(settings());
    let old = stored_object(&cache, "k", &[("etag", "\"1\""), ("cache-control", "max-age=0")]);
    let req = HeaderMap::new();
    let l = leader(&cache, "k");
    let Lookup::Stale { pending: Some(pending), .. } = cache.lookup("k", &req, Instant::now(), |_| true) else {
        panic!("a second request waits for the leader")
    };
    let update = response(304, &[("cache-control", "no-store")]);
    let Admitted::Refreshed { object, .. } = cache.admit(l, update, Some(&old), &exchange(&req, SystemTime::now()))
    else {
        panic!("still a refresh for this request")
    };
    assert_eq!(text(&object.headers, "cache-control"), ["no-store"], "this request sees the merged headers");
    assert!(!object.is_fresh(Instant::now()), "and nobody may reuse them");
    assert!(matches!(pending.wait().await, Outcome::Uncacheable), "waiters ask the origin themselves");
    let Lookup::Stale { object: still, .. } = cache.lookup("k", &req, Instant::now(), |_| true) else {
        panic!("the old object stays")
    };
    assert!(Arc::ptr_eq(&still, &old));
}

#[tokio::test]
async fn a_new_response_is_stored_without_hop_by_hop_age_or_omitted_fields() {
    let cache = Cache::new(settings());
    let mut req = HeaderMap::new();
    req.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let l = leader(&cache, "k");
    let resp = response(
        200,
        &[
            ("cache-control", "max-age=60, no-cache=\"x-secret\""),
            ("x-secret", "only-mine"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("age", "3"),
            ("vary", "accept-encoding"),
            ("content-length", "4"),
        ],
    );
    let Admitted::Stored { object, own, body, mut fill } =
        cache.admit(l, resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("a fresh 200 is stored")
    };
    assert_eq!(body, "body", "the caller gets the body to copy");
    assert_eq!(text(&own, "x-secret"), ["only-mine"], "no-cache=\"f\" fields go to this response only");
    for gone in ["x-secret", "connection", "x-hop", "age"] {
        assert!(!object.headers.contains_key(gone), "{gone} is not stored");
    }
    assert_eq!(object.vary.len(), 1);
    assert_eq!(object.content_length, Some(4));
    assert_eq!((&*object.namespace, object.generation), ("dist-1", 7));
    assert_eq!((object.viewer_target.as_str(), object.origin_target.as_str()), ("/v?x=1", "/o?x=1"));
    assert!(object.disk.is_none(), "small objects live in memory");
    fill.push(Bytes::from_static(b"bo"));
    fill.push(Bytes::from_static(b"dy"));
    fill.finish(FillEnd::Complete);
    assert_eq!(object.body.end(), Some(FillEnd::Complete));
    assert!(matches!(cache.lookup("k", &req, Instant::now(), |_| true), Lookup::Fresh(_)));
}

#[test]
fn a_body_shorter_than_its_content_length_is_dropped() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    let resp = response(200, &[("cache-control", "max-age=60"), ("content-length", "10")]);
    let Admitted::Stored { object, mut fill, .. } =
        cache.admit(leader(&cache, "k"), resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("stored")
    };
    fill.push(Bytes::from_static(b"short"));
    fill.finish(FillEnd::Complete);
    assert!(matches!(object.body.end(), Some(FillEnd::Failed(_))), "readers see the failure");
    assert!(matches!(cache.lookup("k", &req, Instant::now(), |_| true), Lookup::Miss(_)), "and it is forgotten");
}

#[test]
fn an_abandoned_fill_fails_and_is_forgotten() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    let resp = response(200, &[("cache-control", "max-age=60")]);
    let Admitted::Stored { object, fill, .. } =
        cache.admit(leader(&cache, "k"), resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("stored")
    };
    drop(fill);
    assert!(matches!(object.body.end(), Some(FillEnd::Failed(_))));
    assert!(matches!(cache.lookup("k", &req, Instant::now(), |_| true), Lookup::Miss(_)));
}

#[test]
fn a_body_growing_past_the_limit_is_streamed_but_not_kept() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    let resp = response(200, &[("cache-control", "max-age=60")]);
    let Admitted::Stored { object, mut fill, .. } =
        cache.admit(leader(&cache, "k"), resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("unknown length: stored in memory")
    };
    fill.push(Bytes::from(vec![0u8; MAX_MEMORY_OBJECT as usize + 1]));
    assert!(matches!(cache.lookup("k", &req, Instant::now(), |_| true), Lookup::Miss(_)), "forgotten at once");
    fill.finish(FillEnd::Complete);
    assert_eq!(object.body.end(), Some(FillEnd::Complete), "readers already streaming finish");
}

#[test]
fn too_large_for_memory_without_a_disk_tier_passes() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    let resp = response(200, &[("cache-control", "max-age=60"), ("content-length", "1001")]);
    assert!(matches!(
        cache.admit(leader(&cache, "k"), resp, None, &exchange(&req, SystemTime::now())),
        Admitted::Pass(_)
    ));
    assert!(cache.place(Some(MAX_MEMORY_OBJECT)).is_some_and(|p| p.disk.is_none()));
    assert!(cache.place(None).is_some_and(|p| p.disk.is_none() && p.max == MAX_MEMORY_OBJECT));
    assert!(cache.place(Some(MAX_MEMORY_OBJECT + 1)).is_none());
}

#[test]
fn too_large_for_memory_goes_to_the_disk_tier_up_to_its_limit() {
    let dir = std::env::temp_dir().join(format!("sg-admit-disk-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("stale test dir");
    }
    let disk = DiskSettings { dir: dir.clone(), max_bytes: 1 << 20, max_object_bytes: 5000 };
    let (cache, _) = Cache::with_disk(settings(), disk).expect("disk tier");
    let req = HeaderMap::new();
    let resp = response(200, &[("cache-control", "max-age=60"), ("content-length", "4")]);
    let Admitted::Stored { object, .. } =
        cache.admit(leader(&cache, "small"), resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("stored")
    };
    assert!(object.disk.is_none(), "within the memory limit: memory");
    let resp = response(200, &[("cache-control", "max-age=60"), ("content-length", "4000")]);
    let Admitted::Stored { object, mut fill, .. } =
        cache.admit(leader(&cache, "big"), resp, None, &exchange(&req, SystemTime::now()))
    else {
        panic!("stored")
    };
    assert!(object.disk.is_some(), "over the memory limit: disk");
    fill.push(Bytes::from(vec![7u8; 4000]));
    fill.finish(FillEnd::Complete);
    assert_eq!(cache.disk_usage(), 4000);
    let resp = response(200, &[("cache-control", "max-age=60"), ("content-length", "5001")]);
    assert!(matches!(
        cache.admit(leader(&cache, "huge"), resp, None, &exchange(&req, SystemTime::now())),
        Admitted::Pass(_)
    ));
    drop(object);
    cache.purge(|_, _| true);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn uncacheable_responses_pass_with_a_date() {
    let cache = Cache::new(settings());
    let req = HeaderMap::new();
    for resp in [
        response(200, &[("cache-control", "no-store")]),
        response(200, &[("set-cookie", "a=b"), ("cache-control", "max-age=60")]),
        // CloudFront never caches a 416 (a 500 is cached for the error
        // caching minimum TTL: see crate::errors).
        response(416, &[]),
    ] {
        let Admitted::Pass(passed) = cache.admit(leader(&cache, "k"), resp, None, &exchange(&req, SystemTime::now()))
        else {
            panic!("passed through")
        };
        assert!(passed.headers().contains_key(header::DATE), "RFC 9110 §6.6.1");
    }
}

#[tokio::test]
async fn a_5xx_within_stale_if_error_serves_the_stale_object() {
    let cache = Cache::new(settings());
    let old = stored_object(&cache, "k", &[("cache-control", "max-age=0, stale-if-error=600"), ("etag", "\"1\"")]);
    let req = HeaderMap::new();
    let l = leader(&cache, "k");
    let Lookup::Stale { pending: Some(pending), .. } = cache.lookup("k", &req, Instant::now(), |_| true) else {
        panic!("a waiter")
    };
    let got = cache.admit(l, response(503, &[]), Some(&old), &exchange(&req, SystemTime::now()));
    assert!(matches!(got, Admitted::ServeStale(StatusCode::SERVICE_UNAVAILABLE)));
    assert!(matches!(pending.wait().await, Outcome::Failed));
}

#[test]
fn a_date_is_added_only_when_missing_or_invalid() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut h = HeaderMap::new();
    stamp_date(&mut h, now);
    assert_eq!(text(&h, "date"), ["Tue, 14 Nov 2023 22:13:20 GMT"]);
    let mut h = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
    stamp_date(&mut h, now);
    assert_eq!(text(&h, "date"), ["Sun, 06 Nov 1994 08:49:37 GMT"]);
    let mut h = headers(&[("date", "yesterday")]);
    stamp_date(&mut h, now);
    assert_eq!(text(&h, "date"), ["Tue, 14 Nov 2023 22:13:20 GMT"]);
}
