//! CloudFront Functions through the Admin API of the real binary: create,
//! code errors refused with their line and column (nothing stored), the
//! `test` endpoint on seed 003's function, publish (DEVELOPMENT → LIVE, which
//! a replace keeps),
//! behaviors that may name only published functions, and deletes of a
//! function in use.

mod common;

use common::gateway;
use serde_json::{Value, json};

/// Seed 003's function, its lost line breaks restored (each `//` comment
/// ends where the next statement begins).
const SEED: &str = "function handler(event) {\n// 获取请求头\nvar request = event.request;var headers = event.request.headers;var originUrl = event.request.uri;\n// 检查 x-vendor-type 请求头是否存在\nif (headers['x-vendor-type']) {var targetObject = headers['x-vendor-type'].value\n//修改回源 URL Path\n event.request.uri = '/' + targetObject + originUrl;}return request;\n}\n";

fn event(vendor: Option<&str>) -> Value {
    let mut headers = json!({"host": {"value": "cdn.example.com"}});
    if let Some(v) = vendor {
        headers["x-vendor-type"] = json!({"value": v});
    }
    json!({"version": "1.0", "context": {"eventType": "viewer-request"}, "viewer": {"ip": "198.51.100.11"},
        "request": {"method": "GET", "uri": "/example.file", "querystring": {}, "headers": headers, "cookies": {}}})
}

fn error_msg(r: &shardgate_e2e::admin::Response) -> String {
    r.json()["error_msg"].as_str().unwrap_or_default().to_owned()
}

fn distribution(function: &str) -> Value {
    json!({"hosts": ["cdn.example.com"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}},
        "default_behavior": {"function_associations": [{"event_type": "viewer-request", "function": function}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_checked_tested_and_published_through_the_admin_api() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    let created = admin
        .put_ok(
            "/apisix/admin/functions/vendor",
            &json!({"name": "vendor", "runtime": "cloudfront-js-1.0", "code": SEED}),
        )
        .await;
    assert_eq!(created["value"]["code"], SEED);
    assert!(created["value"].get("live").is_none(), "not published yet: {created}");
    let stored = admin.get("/apisix/admin/functions/vendor").await.json()["value"].clone();

    // Code errors: 400 naming the field, line and column; nothing stored.
    let broken = "function handler(event) {\n  var request = event.request;\n  request.uri = ;\n  return request;\n}";
    let r = admin.put("/apisix/admin/functions/vendor", &json!({"runtime": "cloudfront-js-1.0", "code": broken})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = error_msg(&r);
    assert!(msg.contains("\"code\"") && msg.contains("line 3, column 17") && msg.contains("SyntaxError"), "{msg}");
    let r = admin.post("/apisix/admin/functions", &json!({"runtime": "cloudfront-js-2.0", "code": broken})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(error_msg(&r).contains("line 3, column 17"), "{}", r.body);
    let r = admin
        .post("/apisix/admin/schema/validate/functions", &json!({"runtime": "cloudfront-js-1.0", "code": broken}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    for (body, field) in [
        (json!({"runtime": "cloudfront-js-1.0", "code": "function other(e) { return e.request; }"}), "handler"),
        (json!({"runtime": "cloudfront-js-9.0", "code": SEED}), "runtime"),
        (json!({"runtime": "cloudfront-js-1.0", "code": format!("{SEED}//{}", "x".repeat(10 * 1024))}), "10240 bytes"),
        (
            json!({"runtime": "cloudfront-js-1.0", "code": SEED, "live": {"runtime": "cloudfront-js-1.0", "code": broken, "published_at": 1}}),
            "live.code",
        ),
    ] {
        let r = admin.put("/apisix/admin/functions/vendor", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(field), "{body}: {} must name {field}", r.body);
    }
    assert_eq!(admin.get("/apisix/admin/functions/vendor").await.json()["value"], stored, "nothing changed");
    assert_eq!(admin.list("functions").await["total"], 1, "nothing created");

    // The test endpoint: seed 003's function with and without the header.
    let r = admin.post("/apisix/admin/functions/vendor/test", &event(Some("a_vendor"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json();
    assert_eq!(out["stage"], "DEVELOPMENT");
    assert_eq!(out["function_output"]["uri"], "/a_vendor/example.file", "{out}");
    assert_eq!(out["function_output"]["headers"]["x-vendor-type"]["value"], "a_vendor");
    assert!(out["function_error_message"].is_null(), "{out}");
    assert!(out["compute_utilization"].is_u64(), "an integer percentage: {out}");
    let out = admin.post("/apisix/admin/functions/vendor/test", &event(None)).await.json();
    assert_eq!(out["function_output"]["uri"], "/example.file", "{out}");
    let r = admin.post("/apisix/admin/functions/vendor/test?stage=live", &event(None)).await;
    assert_eq!(r.status, 400, "no LIVE stage yet: {}", r.body);
    let mut bad = event(None);
    bad["request"]["uri"] = json!("example.file");
    let r = admin.post("/apisix/admin/functions/vendor/test", &bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("request.uri"), "{}", r.body);

    // A behavior may not name a function that was never published.
    let r = admin.put("/apisix/admin/distributions/d", &distribution("vendor")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = error_msg(&r);
    assert!(
        msg.contains("default_behavior.function_associations[0].function") && msg.contains("never been published"),
        "{msg}"
    );
    let r = admin.put("/apisix/admin/distributions/d", &distribution("missing")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(error_msg(&r).contains("function missing does not exist"), "{}", r.body);

    // Publish: DEVELOPMENT becomes LIVE.
    let r = admin.post("/apisix/admin/functions/vendor/publish", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let live = r.json()["value"]["live"].clone();
    assert_eq!(live["code"], SEED);
    assert_eq!(live["runtime"], "cloudfront-js-1.0");
    assert!(live["published_at"].as_i64().is_some_and(|t| t > 1_700_000_000), "{live}");
    admin.put_ok("/apisix/admin/distributions/d", &distribution("vendor")).await;

    // Editing the code changes DEVELOPMENT only; LIVE stays until published.
    let v2 = "const prefix = '/v2';\nfunction handler(event) {\n  event.request.uri = `${prefix}${event.request.uri}`;\n  return event.request;\n}";
    let r = admin.put_ok("/apisix/admin/functions/vendor", &json!({"runtime": "cloudfront-js-2.0", "code": v2})).await;
    assert_eq!(r["value"]["live"], live, "the LIVE stage survives a replace");
    let dev = admin.post("/apisix/admin/functions/vendor/test", &event(Some("a"))).await.json();
    assert_eq!(dev["function_output"]["uri"], "/v2/example.file", "{dev}");
    let live_run = admin.post("/apisix/admin/functions/vendor/test?stage=live", &event(Some("a"))).await.json();
    assert_eq!(live_run["stage"], "LIVE");
    assert_eq!(live_run["function_output"]["uri"], "/a/example.file", "{live_run}");
    // An exported function (both stages) applies as it is: what
    // `shardgate export` and `apply` carry between gateways.
    let exported = admin.get("/apisix/admin/functions/vendor").await.json()["value"].clone();
    let mut copy = exported.clone();
    for f in ["id", "create_time", "update_time"] {
        copy.as_object_mut().expect("object").remove(f);
    }
    let r = admin.put_ok("/apisix/admin/functions/copy", &copy).await;
    assert_eq!((&r["value"]["code"], &r["value"]["live"]), (&exported["code"], &exported["live"]));

    // In use: delete refused, naming the distribution, unless forced.
    let r = admin.delete("/apisix/admin/functions/vendor").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("distribution [d]"), "{}", r.body);
    let r = admin.delete("/apisix/admin/functions/vendor?force=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_reports_errors_logs_and_budget() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    let code = "function handler(event) {\n  console.log('uri', event.request.uri);\n  if (event.request.uri === '/loop') { while (true) {} }\n  if (event.request.uri === '/throw') { throw new Error('no vendor'); }\n  return { statusCode: 302, statusDescription: 'Found', headers: { location: { value: 'https://cdn.example.com/new' } } };\n}";
    admin.put_ok("/apisix/admin/functions/f", &json!({"runtime": "cloudfront-js-2.0", "code": code})).await;
    let run = |uri: &str| {
        let mut e = event(None);
        e["request"]["uri"] = json!(uri);
        let admin = admin.clone();
        async move {
            let r = admin.post("/apisix/admin/functions/f/test", &e).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
        }
    };
    let out = run("/old").await;
    assert_eq!(out["function_output"]["statusCode"], 302, "{out}");
    assert_eq!(out["function_output"]["headers"]["location"]["value"], "https://cdn.example.com/new");
    assert_eq!(out["function_execution_logs"], json!(["uri /old"]));
    let out = run("/loop").await;
    assert!(out["function_error_message"].as_str().is_some_and(|m| m.contains("time budget")), "{out}");
    assert_eq!(out["compute_utilization"], 100, "{out}");
    let out = run("/throw").await;
    let msg = out["function_error_message"].as_str().unwrap_or_default();
    assert!(msg.contains("Error: no vendor") && msg.contains("line 4"), "{out}");
    // The loop did not break the worker: the next run works.
    assert_eq!(run("/old").await["function_output"]["statusCode"], 302);
}
