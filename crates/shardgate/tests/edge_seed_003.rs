//! Seed 003 scenarios 1 and 2 on the edge: per-channel delivery with the
//! seed's own curl checks, canary release by header and by weight with
//! stickiness, promote and discard.

mod common;

use std::collections::HashMap;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{OriginFile, TestCert, TestOrigin, eventually};

const GENERAL: &str = "This content is for general usage without vendor!\n";
const A_VENDOR: &str = "This content is for a vendor!\n";
const B_VENDOR: &str = "This content is for b vendor!\n";

async fn channel_origin() -> TestOrigin {
    TestOrigin::start(vec![
        ("/example.file", OriginFile::new(GENERAL)),
        ("/a_vendor/example.file", OriginFile::new(A_VENDOR)),
        ("/b_vendor/example.file", OriginFile::new(B_VENDOR)),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_channels_with_the_seeds_curl_commands() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = channel_origin().await;
    let admin = gw.admin();
    // The seed's cache policy keys on the channel header; its function
    // prefixes the origin path with the header's value.
    admin.put_ok("/apisix/admin/cache_policies/vendor", &json!({"headers": ["x-vendor-type"]})).await;
    admin
        .put_ok(
            "/apisix/admin/distributions/channels",
            &json!({
                "hosts": ["cloudfront-function.xxxxxxx.com"],
                "origins": {"s3": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"cache_policy_id": "vendor", "rewrite": {"path_prefix_from_header": "x-vendor-type"}}
            }),
        )
        .await;
    let port = gw.edge_plain[0].port();
    let dir = tempfile::tempdir().expect("tempdir");
    // The seed's three commands, twice each ("多次请求后"), with curl told
    // where the host lives (--resolve) and the port added.
    let base = format!("http://cloudfront-function.xxxxxxx.com:{port}");
    let resolve = format!("--resolve cloudfront-function.xxxxxxx.com:{port}:127.0.0.1");
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
        let round = i / 3;
        let want_cache = if round == 0 { "< X-Cache: Miss from shardgate" } else { "< X-Cache: Hit from shardgate" };
        assert_eq!(pair[0], want_cache, "request {i}:\n{stdout}");
        assert_eq!(pair[1], expected[i % 3].trim(), "request {i}:\n{stdout}");
    }
    assert_eq!(origin.hits("/a_vendor/example.file"), 1);
    assert_eq!(origin.hits("/b_vendor/example.file"), 1);
    assert_eq!(origin.hits("/example.file"), 1);
    // The origin saw the channel header (the seed's origin policy forwards it).
    assert!(origin.last_headers("/a_vendor/example.file").iter().any(|(k, v)| k == "x-vendor-type" && v == "a_vendor"));

    // Values that could escape the path segment: 400, and the origin never asked.
    let before = origin.total_hits();
    for bad in ["..", "../b_vendor", "a/b", "%2e%2e", "..%2f", ".", "a\\b"] {
        let (status, _, body) =
            get(gw.edge_plain[0], "cloudfront-function.xxxxxxx.com", "/example.file", &[("x-vendor-type", bad)]).await;
        assert_eq!(status, 400, "{bad:?} must be refused: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("x-vendor-type"), "the error names the header");
    }
    assert_eq!(origin.total_hits(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_joins_the_key_even_when_the_cache_policy_forgets_it() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = channel_origin().await;
    // No cache policy at all: the built-in one keys on nothing but the path.
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({
                "hosts": ["assets.example.com"],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"rewrite": {"path_prefix_from_header": "x-vendor-type"}}
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "live", || async {
        (get(edge, "assets.example.com", "/example.file", &[]).await.0 == 200).then_some(())
    })
    .await;
    for _ in 0..2 {
        for (vendor, want) in [(Some("a_vendor"), A_VENDOR), (Some("b_vendor"), B_VENDOR), (None, GENERAL)] {
            let headers: Vec<(&str, &str)> = vendor.map(|v| ("x-vendor-type", v)).into_iter().collect();
            let (status, _, body) = get(edge, "assets.example.com", "/example.file", &headers).await;
            assert_eq!(status, 200);
            assert_eq!(body, want.as_bytes(), "channel {vendor:?}");
        }
    }
    assert_eq!(origin.total_hits(), 3, "one miss per channel, then hits");
}

async fn canary_setup(gw: &shardgate_e2e::Gateway, a: &TestOrigin, b: &TestOrigin, traffic: serde_json::Value) {
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/distributions/stage",
            &json!({"staging": true, "origins": {"b": {"upstream": {"nodes": {b.addr.to_string(): 1}}, "origin_path": "/resource_b"}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/continuous_deployment_policies/cd",
            &json!({"staging_distribution_id": "stage", "enabled": true, "traffic": traffic}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/prod",
            &json!({
                "hosts": ["www.company.com"],
                "origins": {"a": {"upstream": {"nodes": {a.addr.to_string(): 1}}}},
                "continuous_deployment_policy_id": "cd"
            }),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_canary_by_header_over_https_then_promote() {
    let gw = gateway().tls_listeners(0).edge_https(1).spawn().await;
    let a = TestOrigin::start(vec![("/resource", OriginFile::new(vec![b'a'; 1000]).etag("\"resource-a\""))]).await;
    let b = TestOrigin::start(vec![("/resource_b/resource", OriginFile::new(vec![b'b'; 2000]).etag("\"resource-b\""))])
        .await;
    let cert = TestCert::ecdsa(&["www.company.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/company", &cert.ssl_body(&["www.company.com"])).await;
    canary_setup(&gw, &a, &b, json!({"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"})).await;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &cert.cert).expect("write ca");
    let port = gw.edge_tls[0].port();
    // The seed's two checks (功能验证), with the port and curl's trust and
    // resolve options added; the ETag and size tell A from B.
    let check = move |with_header: bool| {
        let header = if with_header { "-H 'aws-cf-cd-resource:b' " } else { "" };
        format!(
            "curl --cacert ca.pem --resolve www.company.com:{port}:127.0.0.1 {header}-v -o /dev/null 'https://www.company.com:{port}/resource' 2>&1 | egrep -i '^< (etag|content-length|x-cache|x-shardgate-variant)'"
        )
    };
    let run = |script: String| {
        let dir = dir.path().to_owned();
        async move {
            let out = bash(script, &dir).await;
            String::from_utf8_lossy(&out.stdout).to_lowercase()
        }
    };
    let b_out = eventually(5, "canary live", || {
        let s = check(true);
        let run = &run;
        async move {
            let o = run(s).await;
            o.contains("etag").then_some(o)
        }
    })
    .await;
    assert!(b_out.contains("etag: \"resource-b\"") && b_out.contains("content-length: 2000"), "{b_out}");
    assert!(b_out.contains("x-shardgate-variant: staging"), "{b_out}");
    let a_out = run(check(false)).await;
    assert!(a_out.contains("etag: \"resource-a\"") && a_out.contains("content-length: 1000"), "{a_out}");
    assert!(a_out.contains("x-shardgate-variant: primary"), "{a_out}");
    // Separate caches: the second of each is a hit of its own side.
    assert!(run(check(true)).await.contains("etag: \"resource-b\""));
    let a_again = run(check(false)).await;
    assert!(a_again.contains("x-cache: hit") && a_again.contains("\"resource-a\""), "{a_again}");
    assert_eq!((a.total_hits(), b.total_hits()), (1, 1));

    // Promote: everyone gets B, and cached A is gone.
    let r = gw.admin().request("POST", "/apisix/admin/continuous_deployment_policies/cd/promote", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let inv = r.json()["invalidation"].as_str().expect("an invalidation key").to_owned();
    let policy = gw.admin().get("/apisix/admin/continuous_deployment_policies/cd").await.json();
    assert_eq!(policy["value"]["enabled"], false, "promote disables the policy");
    eventually(5, "invalidation completed", || {
        let admin = gw.admin();
        let path = inv.replace("/apisix/", "/apisix/admin/");
        async move { (admin.get(&path).await.json()["value"]["status"] == "Completed").then_some(()) }
    })
    .await;
    let promoted = run(check(false)).await;
    assert!(promoted.contains("etag: \"resource-b\"") && promoted.contains("x-cache: miss"), "{promoted}");
    assert!(!promoted.contains("x-shardgate-variant"), "no canary after promote: {promoted}");
    assert_eq!(a.total_hits(), 1, "origin A not asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_one_percent_over_20000_requests_and_sticky_sessions() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let a = TestOrigin::start(vec![("/resource", OriginFile::new("A"))]).await;
    let b = TestOrigin::start(vec![("/resource_b/resource", OriginFile::new("B"))]).await;
    canary_setup(
        &gw,
        &a,
        &b,
        json!({"type": "single_weight", "weight": 0.01,
               "session_stickiness": {"idle_ttl": 300, "maximum_ttl": 600, "header": "x-player-id"}}),
    )
    .await;
    let edge = gw.edge_plain[0];
    eventually(5, "live", || async { (get(edge, "www.company.com", "/resource", &[]).await.0 == 200).then_some(()) })
        .await;

    // 20,000 requests without a session, on 4 keep-alive connections.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move { count_variants(edge, 5000).await }));
    }
    let mut staging = 0usize;
    for t in tasks {
        staging += t.await.expect("client");
    }
    let share = staging as f64 / 20_000.0;
    assert!((0.005..=0.015).contains(&share), "staging got {staging} of 20000 ({:.3} %)", share * 100.0);

    // Header stickiness: each player stays on one side.
    let mut sides = HashMap::new();
    for round in 0..3 {
        for p in 0..300 {
            let id = format!("player-{p}");
            let (_, h, body) = get(edge, "www.company.com", "/resource", &[("x-player-id", &id)]).await;
            let side = h.get("x-shardgate-variant").cloned().unwrap_or_default();
            assert_eq!(body, if side == "staging" { "B" } else { "A" });
            let first = sides.entry(id).or_insert_with(|| side.clone());
            assert_eq!(*first, side, "round {round}: a player changed sides");
        }
    }

    // Cookie stickiness: a viewer that drew staging keeps it with its cookie.
    let (cookie, side) = eventually(60, "a viewer lands on staging", || async {
        let (_, h, _) = get(edge, "www.company.com", "/resource", &[]).await;
        let side = h.get("x-shardgate-variant").cloned()?;
        let cookie = h.get("set-cookie")?.split(';').next()?.to_owned();
        (side == "staging").then_some((cookie, side))
    })
    .await;
    for _ in 0..50 {
        let (_, h, body) = get(edge, "www.company.com", "/resource", &[("cookie", &cookie)]).await;
        assert_eq!(h.get("x-shardgate-variant"), Some(&side));
        assert_eq!(body, "B");
    }
}

/// Sends `n` requests on one keep-alive connection; returns how many staging served.
async fn count_variants(edge: std::net::SocketAddr, n: usize) -> usize {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let sock = tokio::net::TcpStream::connect(edge).await.expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(sock)).await.expect("hs");
    tokio::spawn(conn);
    let mut staging = 0;
    for _ in 0..n {
        let req = hyper::Request::get("/resource")
            .header("host", "www.company.com")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = tx.send_request(req).await.expect("response");
        if resp.headers().get("x-shardgate-variant").is_some_and(|v| v == "staging") {
            staging += 1;
        }
        resp.into_body().collect().await.expect("body");
    }
    staging
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_sends_everyone_back_to_the_primary() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let a = TestOrigin::start(vec![("/resource", OriginFile::new("A"))]).await;
    let b = TestOrigin::start(vec![("/resource_b/resource", OriginFile::new("B"))]).await;
    canary_setup(&gw, &a, &b, json!({"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"})).await;
    let edge = gw.edge_plain[0];
    let hdr = [("aws-cf-cd-resource", "b")];
    eventually(5, "canary", || async {
        (get(edge, "www.company.com", "/resource", &hdr).await.2 == "B").then_some(())
    })
    .await;
    let r = gw.admin().request("POST", "/apisix/admin/continuous_deployment_policies/cd/discard", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "discarded", || async {
        (get(edge, "www.company.com", "/resource", &hdr).await.2 == "A").then_some(())
    })
    .await;
    let prod = gw.admin().get("/apisix/admin/distributions/prod").await.json();
    assert!(prod["value"]["origins"]["a"].is_object(), "the primary is untouched: {prod}");
}
