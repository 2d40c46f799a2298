//! Cost of evaluating a 100-rule web ACL (mixed statements) on a realistic
//! game-client request that no rule blocks, so every rule runs; and the
//! seed's one-rule ACL for scale.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use shardgate_waf::json::WebAclJson;
use shardgate_waf::{NoSets, RequestView, WebAcl};

const NONE: &str = r#"[{"Type": "NONE", "Priority": 0}]"#;
const DECODE: &str = r#"[{"Type": "URL_DECODE", "Priority": 0}, {"Type": "LOWERCASE", "Priority": 1}]"#;

fn rule(i: usize) -> String {
    let statement = match i % 10 {
        0 => format!(
            r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"SingleHeader": {{"Name": "user-agent"}}}}, "PositionalConstraint": "STARTS_WITH", "SearchString": "BadBot{i}", "TextTransformations": {NONE}}}}}"#
        ),
        1 => format!(
            r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"UriPath": {{}}}}, "PositionalConstraint": "CONTAINS", "SearchString": "/blocked{i}/", "TextTransformations": {DECODE}}}}}"#
        ),
        2 => format!(
            r#"{{"RegexMatchStatement": {{"FieldToMatch": {{"QueryString": {{}}}}, "RegexString": "(?i)token=[a-f0-9]{{{}}}$", "TextTransformations": {NONE}}}}}"#,
            40 + i
        ),
        3 => format!(
            r#"{{"SizeConstraintStatement": {{"FieldToMatch": {{"QueryString": {{}}}}, "ComparisonOperator": "GT", "Size": {}, "TextTransformations": {NONE}}}}}"#,
            4096 + i
        ),
        4 => format!(
            r#"{{"SqliMatchStatement": {{"FieldToMatch": {{"AllQueryArguments": {{}}}}, "TextTransformations": {DECODE}}}}}"#
        ),
        5 => format!(
            r#"{{"XssMatchStatement": {{"FieldToMatch": {{"QueryString": {{}}}}, "TextTransformations": {DECODE}}}}}"#
        ),
        6 => format!(
            r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"Headers": {{"MatchPattern": {{"All": {{}}}}, "MatchScope": "ALL", "OversizeHandling": "CONTINUE"}}}}, "PositionalConstraint": "STARTS_WITH", "SearchString": "PostmanRuntime{i}", "TextTransformations": {NONE}}}}}"#
        ),
        7 => format!(r#"{{"IPSetReferenceStatement": {{"ARN": "set{i}"}}}}"#),
        8 => format!(r#"{{"LabelMatchStatement": {{"Scope": "LABEL", "Key": "bots:bad{i}"}}}}"#),
        _ => format!(
            r#"{{"AndStatement": {{"Statements": [{{"ByteMatchStatement": {{"FieldToMatch": {{"Method": {{}}}}, "PositionalConstraint": "EXACTLY", "SearchString": "POST", "TextTransformations": {NONE}}}}}, {{"ByteMatchStatement": {{"FieldToMatch": {{"Cookies": {{"MatchPattern": {{"All": {{}}}}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}}}, "PositionalConstraint": "CONTAINS", "SearchString": "x{i}", "TextTransformations": {NONE}}}}}]}}}}"#
        ),
    };
    format!(
        r#"{{"Name": "r{i}", "Priority": {i}, "Action": {{"Block": {{}}}}, "Statement": {statement},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "r{i}"}}}}"#
    )
}

fn acl(rules: &[String]) -> WebAcl {
    let text = format!(
        r#"{{"Name": "bench", "DefaultAction": {{"Allow": {{}}}},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "bench"}},
            "Rules": [{}]}}"#,
        rules.join(",")
    );
    let json: WebAclJson = serde_json::from_str(&text).expect("json");
    WebAcl::compile(&json, &NoSets).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let hundred = acl(&(0..100).map(rule).collect::<Vec<_>>());
    let seed = acl(&[include_str!("seed_rule.json").to_owned()]);
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("host", "cdn.game.example"),
        ("user-agent", "X-UnrealEngine-Agent/5.3 (Windows 10)"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, deflate"),
        ("x-vendor-type", "a_vendor"),
        ("x-player-id", "p-1234567890"),
        ("cookie", "session=0123456789abcdef; lang=zh-CN"),
        ("if-none-match", "\"5f3c-1a2b\""),
        ("x-client-version", "2.4.1"),
        ("connection", "keep-alive"),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    let view = RequestView {
        method: "GET",
        uri_path: "/patches/season2/chunk-0042.pak",
        query: "v=2.4.1&platform=win64&token=9f86d081884c7d659a2feaa0c55ad015",
        headers: &headers,
        body: (b"", false),
        client_ip: "203.0.113.7".parse().expect("ip"),
        tls: None,
    };
    assert!(matches!(hundred.evaluate(&view).action, shardgate_waf::Action::Allow));
    c.bench_function("evaluate_100_rules_no_match", |b| b.iter(|| hundred.evaluate(std::hint::black_box(&view))));
    c.bench_function("evaluate_seed_rule", |b| b.iter(|| seed.evaluate(std::hint::black_box(&view))));
    // What bench/loadgen sends: a path, Host and User-Agent.
    let mut small = HeaderMap::new();
    small.insert("host", HeaderValue::from_static("cdn.game.example"));
    small.insert("user-agent", HeaderValue::from_static("shardgate-loadgen"));
    let small = RequestView { uri_path: "/f1k", query: "", headers: &small, ..view };
    assert!(matches!(hundred.evaluate(&small).action, shardgate_waf::Action::Allow));
    c.bench_function("evaluate_100_rules_loadgen_request", |b| {
        b.iter(|| hundred.evaluate(std::hint::black_box(&small)))
    });
    // The same with the CPU caches filled with other data before each
    // evaluation, as a gateway's request handling does between two ACL runs.
    let mut other = vec![0u8; 4 << 20];
    c.bench_function("evaluate_100_rules_loadgen_request_cold_cache", |b| {
        b.iter_batched(
            || {
                for (i, x) in other.iter_mut().enumerate().step_by(64) {
                    *x = x.wrapping_add(i as u8);
                }
            },
            |()| hundred.evaluate(std::hint::black_box(&small)),
            criterion::BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
