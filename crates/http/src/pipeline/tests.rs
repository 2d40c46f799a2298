//! Unit tests of the pure phases: key assembly and how a stored object
//! answers (304 / 206 / 416 / 200). The route, method and variant phases
//! are tested beside their code; the whole pipeline over sockets in
//! `crates/shardgate/tests/edge_*.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use shardgate_cache::{Fill, FillEnd, Object, StoredDates};
use shardgate_model::wire::{CachePolicyWire, DistributionWire};
use shardgate_model::{CachePolicy, Distribution, ResourceId};

use super::behavior::{Keyed, key};
use super::respond::{Answer, answer};

fn distribution(v: serde_json::Value) -> Distribution {
    let w: DistributionWire = shardgate_model::json::from_value(v).expect("wire");
    Distribution::from_wire(ResourceId::parse("d1").expect("id"), &w).expect("valid")
}

fn policy(v: serde_json::Value) -> CachePolicy {
    let w: CachePolicyWire = shardgate_model::json::from_value(v).expect("wire");
    CachePolicy::from_wire(&w).expect("valid")
}

fn request(target: &str, headers: &[(&'static str, &'static str)]) -> Parts {
    let mut b = Request::builder().uri(target);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).expect("request").into_parts().0
}

/// Seed 003's shape: a channel header rewrites `/abtest-demo*` and joins
/// the key, with a query string and a cookie the policy keeps.
fn channel_distribution() -> Distribution {
    distribution(serde_json::json!({
        "hosts": ["www.company.com"],
        "origins": {"a": {"upstream": {"nodes": {"127.0.0.1:80": 1}}}},
        "behaviors": [
            {"path_pattern": "/abtest-demo*", "rewrite": {"path_prefix_from_header": "x-vendor-type"}}
        ]
    }))
}

#[test]
fn the_key_phase_rewrites_by_channel_and_keys_what_the_policy_keeps() {
    let dist = channel_distribution();
    let behavior = dist.behavior_for("/abtest-demo.file");
    let policy = policy(serde_json::json!({
        "headers": ["x-vendor-type"],
        "query_strings": {"behavior": "whitelist", "items": ["v"]},
        "cookies": {"behavior": "whitelist", "items": ["session"]}
    }));
    let parts =
        request("/abtest-demo.file?x=1&v=2", &[("x-vendor-type", "a_vendor"), ("cookie", "other=1; session=abc")]);
    let keyed = key("d1", behavior, &policy, &parts).expect("keyed");
    assert_eq!(keyed.viewer_target, "/abtest-demo.file?x=1&v=2");
    assert_eq!(keyed.origin_target, "/a_vendor/abtest-demo.file?v=2");
    assert_eq!(keyed.cookies, ["session=abc"]);
    // Every field is length-prefixed (see key::cache_key).
    assert_eq!(
        keyed.key,
        "d2:d1t30:/a_vendor/abtest-demo.file?v=2h13:x-vendor-typev8:a_vendorr13:x-vendor-typev8:a_vendorc11:session=abc"
    );

    let without = request("/abtest-demo.file", &[]);
    let plain = key("d1", behavior, &CachePolicy::builtin(), &without).expect("keyed");
    assert_eq!(
        plain,
        Keyed {
            key: "d2:d1t17:/abtest-demo.file".into(),
            viewer_target: "/abtest-demo.file".into(),
            origin_target: "/abtest-demo.file".into(),
            cookies: Vec::new(),
        },
        "no channel header: the path as sent"
    );
}

#[test]
fn the_key_phase_refuses_a_channel_that_is_not_a_segment() {
    let dist = channel_distribution();
    let behavior = dist.behavior_for("/abtest-demo.file");
    let parts = request("/abtest-demo.file", &[("x-vendor-type", "../etc")]);
    let refused = key("d1", behavior, &CachePolicy::builtin(), &parts).expect_err("refused");
    assert_eq!((refused.status, refused.reason), (StatusCode::BAD_REQUEST, "bad_channel"));
}

#[test]
fn the_key_phase_reads_the_request_as_a_viewer_request_function_leaves_it() {
    // The viewer-request function runs between the behavior and key
    // phases, on `Parts`: what it changes is what the key sees.
    let dist = channel_distribution();
    let behavior = dist.behavior_for("/abtest-demo.file");
    let mut parts = request("/abtest-demo.file", &[]);
    parts.uri = "/abtest-demo.file?lang=fr".parse().expect("uri");
    parts.headers.insert("x-vendor-type", HeaderValue::from_static("b_vendor"));
    let all_queries = policy(serde_json::json!({"query_strings": {"behavior": "all"}}));
    let keyed = key("d1", behavior, &all_queries, &parts).expect("keyed");
    assert_eq!(keyed.origin_target, "/b_vendor/abtest-demo.file?lang=fr");
    assert_eq!(keyed.viewer_target, "/abtest-demo.file?lang=fr");
}

fn object(status: StatusCode, body: Option<&'static [u8]>, content_length: Option<u64>) -> Object {
    let received = SystemTime::now();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::ETAG, HeaderValue::from_static("\"v1\""));
    let fill = match body {
        Some(b) => Fill::complete(vec![Bytes::from_static(b)]),
        None => Fill::new(),
    };
    Object {
        status,
        dates: StoredDates::of(&headers, received),
        headers,
        body: Arc::new(fill),
        content_length,
        received,
        initial_age: Duration::ZERO,
        fresh_until: Instant::now() + Duration::from_secs(60),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        namespace: "d1".into(),
        generation: 1,
        viewer_target: "/a".into(),
        origin_target: "/a".into(),
        vary: Vec::new(),
        disk: None,
    }
}

fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    request("/a", pairs).headers
}

#[test]
fn a_stored_object_answers_304_206_416_or_whole() {
    let ok = object(StatusCode::OK, Some(b"0123456789"), Some(10));
    assert_eq!(answer(&req(&[]), &ok), Answer::Whole { len: Some(10), ranges: true });
    assert_eq!(answer(&req(&[("if-none-match", "\"v1\"")]), &ok), Answer::NotModified);
    assert_eq!(answer(&req(&[("if-none-match", "\"v0\"")]), &ok), Answer::Whole { len: Some(10), ranges: true });
    assert_eq!(answer(&req(&[("range", "bytes=2-4")]), &ok), Answer::Partial { start: 2, end: 4, len: 10 });
    assert_eq!(answer(&req(&[("range", "bytes=-3")]), &ok), Answer::Partial { start: 7, end: 9, len: 10 });
    assert_eq!(answer(&req(&[("range", "bytes=20-")]), &ok), Answer::Unsatisfiable { len: 10 });
    assert_eq!(
        answer(&req(&[("range", "bytes=2-4"), ("if-range", "\"v0\"")]), &ok),
        Answer::Whole { len: Some(10), ranges: true },
        "an If-Range that does not hold gets the whole body"
    );
    assert_eq!(
        answer(&req(&[("range", "bytes=2-4"), ("if-range", "\"v1\"")]), &ok),
        Answer::Partial { start: 2, end: 4, len: 10 }
    );
}

#[test]
fn ranges_wait_for_a_known_length_and_apply_to_200_only() {
    let filling = object(StatusCode::OK, None, None);
    assert_eq!(answer(&req(&[("range", "bytes=0-1")]), &filling), Answer::Whole { len: None, ranges: false });
    let done = object(StatusCode::OK, Some(b"abc"), None);
    done.body.finish(FillEnd::Complete);
    assert_eq!(answer(&req(&[("range", "bytes=0-1")]), &done), Answer::Partial { start: 0, end: 1, len: 3 });
    let not_found = object(StatusCode::NOT_FOUND, Some(b"gone"), Some(4));
    assert_eq!(
        answer(&req(&[("range", "bytes=0-1"), ("if-none-match", "\"v1\"")]), &not_found),
        Answer::Whole { len: Some(4), ranges: false },
        "a stored 404 answers neither ranges nor conditionals"
    );
}
