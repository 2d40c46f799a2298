//! CloudFront Functions on real requests through the real binary: seed 003's
//! viewer-request function with the seed's own curl commands (cache keyed on
//! the rewritten path, invalidations by the rewritten path), a generated
//! redirect that never reaches the origin, a viewer-response function on
//! hits and misses, failing functions (endless loop, exception) answering
//! 503 while other behaviors keep serving, and a new published version
//! taking effect on the next request.

mod common;

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

/// Seed 003's function, its lost line breaks restored (each `//` comment
/// ends where the next statement begins): the same text as the functions
/// crate's tests and bench.
const SEED: &str = "function handler(event) {\n// 获取请求头\nvar request = event.request;var headers = event.request.headers;var originUrl = event.request.uri;\n// 检查 x-vendor-type 请求头是否存在\nif (headers['x-vendor-type']) {var targetObject = headers['x-vendor-type'].value\n//修改回源 URL Path\n event.request.uri = '/' + targetObject + originUrl;}return request;\n}\n";

const GENERAL: &str = "This content is for general usage without vendor!\n";
const A_VENDOR: &str = "This content is for a vendor!\n";
const B_VENDOR: &str = "This content is for b vendor!\n";
const SEED_HOST: &str = "cloudfront-function.xxxxxxx.com";
const HOST: &str = "cdn.example.com";

/// Creates function `id` with `code` and publishes it (LIVE).
async fn publish(gw: &Gateway, id: &str, runtime: &str, code: &str) {
    let admin = gw.admin();
    admin.put_ok(&format!("/apisix/admin/functions/{id}"), &json!({"runtime": runtime, "code": code})).await;
    let r = admin.post(&format!("/apisix/admin/functions/{id}/publish"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn association(event_type: &str, function: &str) -> Value {
    json!([{"event_type": event_type, "function": function}])
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

fn series(name: &str, dist: &str, function: &str, event_type: &str, kind: Option<&str>) -> String {
    let kind = kind.map(|k| format!(",kind=\"{k}\"")).unwrap_or_default();
    format!("{name}{{distribution=\"{dist}\",function=\"{function}\",event_type=\"{event_type}\"{kind}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_function_with_the_seeds_curl_commands() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/example.file", OriginFile::new(GENERAL)),
        ("/a_vendor/example.file", OriginFile::new(A_VENDOR)),
        ("/b_vendor/example.file", OriginFile::new(B_VENDOR)),
    ])
    .await;
    let admin = gw.admin();
    publish(&gw, "vendor", "cloudfront-js-1.0", SEED).await;
    // The seed's cache policy keys on (and forwards) the channel header.
    admin.put_ok("/apisix/admin/cache_policies/vendor", &json!({"headers": ["x-vendor-type"]})).await;
    admin
        .put_ok(
            "/apisix/admin/distributions/channels",
            &json!({
                "hosts": [SEED_HOST],
                "origins": {"s3": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"cache_policy_id": "vendor",
                    "function_associations": association("viewer-request", "vendor")}
            }),
        )
        .await;
    let port = gw.edge_plain[0].port();
    let dir = tempfile::tempdir().expect("tempdir");
    // The seed's three commands, twice each, with curl told where the host
    // lives (--resolve) and the port added.
    let base = format!("http://{SEED_HOST}:{port}");
    let resolve = format!("--resolve {SEED_HOST}:{port}:127.0.0.1");
    let script = format!(
        r#"set -e
for i in 1 2; do
curl {resolve} -v {base}/example.file -H 'x-vendor-type: a_vendor' 2>&1 | egrep 'X-Cache|This content'
curl {resolve} -v {base}/example.file -H 'x-vendor-type: b_vendor' 2>&1 | egrep 'X-Cache|This content'
curl {resolve} -v {base}/example.file 2>&1 | egrep 'X-Cache|This content'
done
"#
    );
    let out = eventually(5, "the distribution is live", || {
        let script = script.clone();
        let dir = dir.path().to_owned();
        async move {
            let out = bash(script, &dir).await;
            out.status.success().then_some(out)
        }
    })
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 12, "an X-Cache line and a content line per request:\n{}", text(&out));
    let expected = [A_VENDOR, B_VENDOR, GENERAL];
    for (i, pair) in lines.chunks(2).enumerate() {
        let want_cache = if i < 3 { "< X-Cache: Miss from shardgate" } else { "< X-Cache: Hit from shardgate" };
        assert_eq!(pair[0], want_cache, "request {i}:\n{stdout}");
        assert_eq!(pair[1], expected[i % 3].trim(), "request {i}:\n{stdout}");
    }
    // The origin saw each rewritten path once, and nothing else.
    assert_eq!(origin.hits("/a_vendor/example.file"), 1);
    assert_eq!(origin.hits("/b_vendor/example.file"), 1);
    assert_eq!(origin.hits("/example.file"), 1);
    assert_eq!(origin.total_hits(), 3);
    assert!(origin.last_headers("/a_vendor/example.file").iter().any(|(k, v)| k == "x-vendor-type" && v == "a_vendor"));
    let calls = series("shardgate_edge_function_invocations_total", "channels", "vendor", "viewer-request", None);
    assert_eq!(gw.metric(&calls).await, 6.0, "the function ran on every request, hits included");

    // Invalidation targets are the rewritten paths: invalidating
    // /a_vendor/example.file refetches channel a only.
    let r = admin
        .post(
            "/apisix/admin/invalidations",
            &json!({"distribution_id": "channels", "paths": ["/a_vendor/example.file"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().expect("key").replace("/apisix/", "/apisix/admin/");
    eventually(5, "Completed", || {
        let admin = gw.admin();
        let key = key.clone();
        async move { (admin.get(&key).await.json()["value"]["status"] == "Completed").then_some(()) }
    })
    .await;
    let edge = gw.edge_plain[0];
    for (vendor, cache, body) in
        [(Some("a_vendor"), "Miss", A_VENDOR), (Some("b_vendor"), "Hit", B_VENDOR), (None, "Hit", GENERAL)]
    {
        let headers: Vec<(&str, &str)> = vendor.map(|v| ("x-vendor-type", v)).into_iter().collect();
        let (status, h, got) = get(edge, SEED_HOST, "/example.file", &headers).await;
        assert_eq!((status, got.as_ref()), (200, body.as_bytes()), "{vendor:?}");
        assert_eq!(h["x-cache"], format!("{cache} from shardgate"), "{vendor:?}");
    }
    assert_eq!(origin.hits("/a_vendor/example.file"), 2);
    assert_eq!(origin.total_hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_redirect_never_reaches_the_origin() {
    let gw = gateway().tls_listeners(0).edge_http(1).yaml("log:\n  format: json\n").spawn().await;
    let origin = TestOrigin::start(vec![("/old/page", OriginFile::new("old"))]).await;
    let code = "function handler(event) {\n  if (event.request.uri === '/old/denied') { return { statusCode: 403, body: 'denied' }; }\n  var q = event.request.querystring;\n  return { statusCode: 302, statusDescription: 'Found',\n    headers: { location: { value: 'https://' + event.request.headers.host.value + '/new' + event.request.uri + (q.lang ? '?lang=' + q.lang.value : '') } },\n    cookies: { moved: { value: 'yes', attributes: 'Path=/; Secure' } } };\n}";
    publish(&gw, "redirect", "cloudfront-js-2.0", code).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "behaviors": [{"path_pattern": "/old/*", "origin": "o",
                    "function_associations": association("viewer-request", "redirect")}]}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "live", || async { (get(edge, HOST, "/old/page", &[]).await.0 == 302).then_some(()) }).await;
    let port = edge.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "curl -sv --resolve {HOST}:{port}:127.0.0.1 -H 'Referer: http://t.test/redirect' 'http://{HOST}:{port}/old/page?lang=zh' -o /dev/null 2>&1 | egrep -i '^< '"
    );
    let out = bash(script, dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(stdout.contains("< http/1.1 302 found"), "{stdout}");
    assert!(stdout.contains(&format!("< location: https://{HOST}:{port}/new/old/page?lang=zh")), "{stdout}");
    assert!(stdout.contains("< set-cookie: moved=yes; path=/; secure"), "{stdout}");
    assert!(stdout.contains("< x-cache: functiongeneratedresponse from shardgate"), "{stdout}");
    assert_eq!(origin.total_hits(), 0, "the origin saw nothing");
    let line = line_with_referer(&gw, "http://t.test/redirect").await;
    assert_eq!(line["x-edge-detailed-result-type"], json!("FunctionGeneratedResponse"), "{line}");
    assert_eq!(line["x-edge-result-type"], json!("FunctionGeneratedResponse"), "{line}");
    assert_eq!(line["sc-status"], json!(302), "{line}");
    // A generated page with a body.
    let (status, h, body) = get(edge, HOST, "/old/denied", &[]).await;
    assert_eq!((status, body.as_ref()), (403, b"denied".as_slice()));
    assert_eq!(h["content-length"], "6");
    assert_eq!(h["x-cache"], "FunctionGeneratedResponse from shardgate");
    // A path of another behavior is untouched.
    let (status, h, _) = get(edge, HOST, "/elsewhere", &[]).await;
    assert_eq!(status, 404);
    assert_ne!(h["x-cache"], "FunctionGeneratedResponse from shardgate");
    assert_eq!(origin.hits("/elsewhere"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_response_function_decorates_hits_and_misses() {
    let gw = gateway().tls_listeners(0).edge_http(1).yaml("log:\n  format: json\n").spawn().await;
    let origin = TestOrigin::start(vec![
        ("/game.apk", OriginFile::new(vec![b'g'; 50_000])),
        ("/gone", OriginFile::new("not here").status(404)),
    ])
    .await;
    let code = "function handler(event) {\n  var r = event.response;\n  r.headers['strict-transport-security'] = { value: 'max-age=63072000; includeSubdomains; preload' };\n  r.headers['x-request-id'] = { value: event.context.requestId };\n  r.headers['x-served-uri'] = { value: event.request.uri };\n  r.cookies['seen'] = { value: '1', attributes: 'Max-Age=60' };\n  return r;\n}";
    publish(&gw, "hsts", "cloudfront-js-1.0", code).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"function_associations": association("viewer-response", "hsts")}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "live", || async { get(edge, HOST, "/gone", &[]).await.1.contains_key("x-cache").then_some(()) })
        .await;
    for (i, want) in ["Miss", "Hit"].into_iter().enumerate() {
        let referer = format!("http://t.test/vr{i}");
        let (status, h, body) = get(edge, HOST, "/game.apk", &[("referer", &referer)]).await;
        assert_eq!((status, body.len()), (200, 50_000), "{h:?}");
        assert_eq!(h["x-cache"], format!("{want} from shardgate"));
        assert_eq!(h["strict-transport-security"], "max-age=63072000; includeSubdomains; preload");
        assert_eq!(h["x-served-uri"], "/game.apk");
        assert_eq!(h["content-length"], "50000");
        let line = line_with_referer(&gw, &referer).await;
        assert_eq!(json!(h["x-request-id"]), line["x-edge-request-id"], "the access log's request id: {line}");
    }
    // The function's cookie, once: it is added to this response's copy of
    // the stored headers, never to the stored object (ask curl: the test
    // client folds repeated fields).
    let port = edge.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!("curl -sv --resolve {HOST}:{port}:127.0.0.1 http://{HOST}:{port}/game.apk -o /dev/null 2>&1 | egrep -i '^< set-cookie'"),
        dir.path(),
    )
    .await;
    let cookies = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert_eq!(cookies.trim(), "< set-cookie: seen=1; max-age=60", "{cookies}");
    // Not for an origin's 404 (CloudFront skips viewer-response functions for status >= 400).
    let (status, h, _) = get(edge, HOST, "/gone", &[]).await;
    assert_eq!(status, 404);
    assert!(!h.contains_key("strict-transport-security"), "{h:?}");
    assert_eq!(origin.hits("/game.apk"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_functions_answer_503_while_other_behaviors_serve() {
    let gw = gateway().tls_listeners(0).edge_http(1).yaml("log:\n  format: json\n").spawn().await;
    let origin = TestOrigin::start(vec![
        ("/ok.txt", OriginFile::new("fine")),
        ("/loop/x", OriginFile::new("never")),
        ("/throw/x", OriginFile::new("never")),
        ("/late/x", OriginFile::new("fetched")),
    ])
    .await;
    publish(&gw, "spin", "cloudfront-js-1.0", "function handler(event) {\n  while (true) {}\n}").await;
    publish(
        &gw,
        "boom",
        "cloudfront-js-2.0",
        "function handler(event) {\n  throw new Error('no vendor for ' + event.request.uri);\n}",
    )
    .await;
    publish(&gw, "late", "cloudfront-js-1.0", "function handler(event) {\n  return event.response.nope.x;\n}").await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "behaviors": [
                    {"path_pattern": "/loop/*", "origin": "o", "function_associations": association("viewer-request", "spin")},
                    {"path_pattern": "/throw/*", "origin": "o", "function_associations": association("viewer-request", "boom")},
                    {"path_pattern": "/late/*", "origin": "o", "function_associations": association("viewer-response", "late")}
                ]}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "live", || async { (get(edge, HOST, "/ok.txt", &[]).await.0 == 200).then_some(()) }).await;

    // Endless loops in flight together with requests for a behavior
    // without a function: the loops end in 503, the others are served.
    let mut loops = Vec::new();
    let mut others = Vec::new();
    for i in 0..6 {
        let referer = format!("http://t.test/loop{i}");
        loops.push(tokio::spawn(async move { get(edge, HOST, "/loop/x", &[("referer", &referer)]).await }));
        for _ in 0..4 {
            others.push(tokio::spawn(async move { get(edge, HOST, "/ok.txt", &[]).await }));
        }
    }
    for l in loops {
        let (status, h, body) = l.await.expect("loop request");
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h["x-cache"], "FunctionThrottledError from shardgate");
    }
    for o in others {
        let (status, _, body) = o.await.expect("other request");
        assert_eq!((status, body.as_ref()), (200, b"fine".as_slice()));
    }
    let timeouts = series("shardgate_edge_function_errors_total", "d", "spin", "viewer-request", Some("timeout"));
    assert_eq!(gw.metric(&timeouts).await, 6.0);
    let line = line_with_referer(&gw, "http://t.test/loop0").await;
    assert_eq!(line["x-edge-detailed-result-type"], json!("FunctionThrottledError"), "{line}");
    assert_eq!(line["x-edge-result-type"], json!("Error"), "{line}");

    let (status, h, body) = get(edge, HOST, "/throw/x", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(h["x-cache"], "FunctionExecutionError from shardgate");
    assert!(!String::from_utf8_lossy(&body).contains("no vendor"), "the exception is logged, not shown");
    let thrown = series("shardgate_edge_function_errors_total", "d", "boom", "viewer-request", Some("exception"));
    assert_eq!(gw.metric(&thrown).await, 1.0);
    assert!(gw.log().contains("no vendor for /throw/x"), "the exception is in the log");

    // A viewer-response function that fails: 503 (the object was fetched).
    let (status, h, _) = get(edge, HOST, "/late/x", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(h["x-cache"], "FunctionExecutionError from shardgate");
    let late = series("shardgate_edge_function_errors_total", "d", "late", "viewer-response", Some("exception"));
    assert_eq!(gw.metric(&late).await, 1.0);
    assert_eq!((origin.hits("/loop/x"), origin.hits("/throw/x")), (0, 0), "failed requests never reach the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_applies_to_the_next_request() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/v1/f", OriginFile::new("one")), ("/v2/f", OriginFile::new("two"))]).await;
    let version = |v: &str| {
        format!(
            "function handler(event) {{\n  event.request.uri = '/{v}' + event.request.uri;\n  return event.request;\n}}"
        )
    };
    publish(&gw, "ver", "cloudfront-js-1.0", &version("v1")).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"function_associations": association("viewer-request", "ver")}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    let body = |b: &'static str| async move {
        let (status, _, got) = get(edge, HOST, "/f", &[]).await;
        (status == 200 && got == b).then_some(())
    };
    eventually(5, "v1 live", || body("one")).await;
    // A new DEVELOPMENT version changes nothing until it is published.
    gw.admin()
        .put_ok("/apisix/admin/functions/ver", &json!({"runtime": "cloudfront-js-1.0", "code": version("v2")}))
        .await;
    assert_eq!(get(edge, HOST, "/f", &[]).await.2, "one");
    let r = gw.admin().post("/apisix/admin/functions/ver/publish", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "v2 live", || body("two")).await;
    assert_eq!((origin.hits("/v1/f"), origin.hits("/v2/f")), (1, 1));
}
