//! The edge cache through the real binary: request coalescing on a large
//! object, Range, conditional requests, Vary, stale-if-error,
//! stale-while-revalidate, invalidation, HTTPS with HTTP/2, metrics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{bash, gateway, text};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestCert, TestOrigin, eventually};

const HOST: &str = "assets.example.com";

async fn distribution(gw: &Gateway, origin: &TestOrigin, policy: Option<serde_json::Value>) {
    let admin = gw.admin();
    let mut behavior = json!({});
    if let Some(p) = policy {
        admin.put_ok("/apisix/admin/cache_policies/p", &p).await;
        behavior = json!({"cache_policy_id": "p"});
    }
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": behavior
            }),
        )
        .await;
    let edge = gw.edge_plain.first().or(gw.edge_tls.first()).copied().expect("an edge listener");
    if !gw.edge_plain.is_empty() {
        // The origin's 404 comes through the distribution (with X-Cache);
        // an unknown host's 404 does not.
        eventually(5, "distribution live", || async {
            get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
        })
        .await;
    }
}

/// Streams one GET; returns (status, X-Cache, length, CRC-32 of the body).
async fn checksum(edge: SocketAddr, path: &str) -> (u16, String, u64, u32) {
    let sock = tokio::net::TcpStream::connect(edge).await.expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(sock)).await.expect("hs");
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", HOST).body(Full::new(Bytes::new())).expect("req");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let x_cache = resp.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut body = resp.into_body();
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            len += data.len() as u64;
            crc.update(&data);
        }
    }
    (status, x_cache, len, crc.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let size = 50 * 1024 * 1024;
    let body: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
    let want_crc = crc32fast::hash(&body);
    // 50 MB in 50 chunks, 20 ms apart: the fill lasts about a second, so the
    // requests overlap it (the patch-day stampede).
    let origin =
        TestOrigin::start(vec![("/patch.pak", OriginFile::new(body).slow(50, Duration::from_millis(20)))]).await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks.push(tokio::spawn(async move { checksum(edge, "/patch.pak").await }));
    }
    let mut phases = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, x_cache, len, crc) = t.await.expect("client");
        assert_eq!(status, 200);
        assert_eq!(len, size as u64, "every body complete");
        assert_eq!(crc, want_crc, "every body identical to the origin's");
        *phases.entry(x_cache).or_insert(0) += 1;
    }
    assert_eq!(origin.hits("/patch.pak"), 1, "exactly one origin request; phases: {phases:?}");
    assert_eq!(phases.get("Miss from shardgate"), Some(&1), "one leader: {phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_from_the_cache() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let origin = TestOrigin::start(vec![("/big.bin", OriginFile::new(body.clone()))]).await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];

    // A range on a miss is answered from the object being filled.
    let (status, h, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=0-9")]).await;
    assert_eq!(status, 206);
    assert_eq!(h.get("content-range").map(String::as_str), Some("bytes 0-9/100000"));
    assert_eq!(&got[..], &body[..10]);
    let (status, h, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=99990-")]).await;
    assert_eq!((status, h.get("x-cache").map(String::as_str)), (206, Some("Hit from shardgate")));
    assert_eq!(&got[..], &body[99_990..]);
    let (status, _, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=-5")]).await;
    assert_eq!((status, &got[..]), (206, &body[99_995..]));
    let (status, h, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=50000-50009")]).await;
    assert_eq!((status, &got[..]), (206, &body[50_000..50_010]));
    assert_eq!(h.get("content-length").map(String::as_str), Some("10"));

    // Past the end: 416 with the length.
    let (status, h, _) = get(edge, HOST, "/big.bin", &[("range", "bytes=100000-")]).await;
    assert_eq!(status, 416);
    assert_eq!(h.get("content-range").map(String::as_str), Some("bytes */100000"));
    // Several ranges: refused cleanly by sending the whole object (RFC 9110 §14.2).
    let (status, _, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((status, got.len()), (200, 100_000));
    // If-Range that does not match: the whole object.
    let (status, _, got) = get(edge, HOST, "/big.bin", &[("range", "bytes=0-1"), ("if-range", "\"other\"")]).await;
    assert_eq!((status, got.len()), (200, 100_000));
    assert_eq!(origin.hits("/big.bin"), 1, "every answer came from one fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_get_304_from_the_cache_and_revalidate_with_the_origin() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    let file =
        OriginFile::new("{\"v\":1}").etag("\"v1\"").cache_control("max-age=1").header("last-modified", LAST_MODIFIED);
    let origin = TestOrigin::start(vec![("/v.json", file)]).await;
    distribution(&gw, &origin, Some(json!({"min_ttl": 0}))).await;
    let edge = gw.edge_plain[0];
    let (status, h, _) = get(edge, HOST, "/v.json", &[]).await;
    assert_eq!((status, h.get("etag").map(String::as_str)), (200, Some("\"v1\"")));
    let (status, h, body) = get(edge, HOST, "/v.json", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, 304, "answered from the cache");
    assert!(body.is_empty());
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"));
    assert_eq!(h.get("etag").map(String::as_str), Some("\"v1\""));
    let (status, _, _) = get(edge, HOST, "/v.json", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(status, 200);
    // If-Modified-Since against the stored Last-Modified; Age on hits.
    let (status, h, _) = get(edge, HOST, "/v.json", &[("if-modified-since", LAST_MODIFIED)]).await;
    assert_eq!(status, 304, "not modified since its own Last-Modified");
    assert!(h.get("age").is_some_and(|a| a.parse::<u64>().is_ok()), "a hit carries Age: {h:?}");
    let (status, _, _) = get(edge, HOST, "/v.json", &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")]).await;
    assert_eq!(status, 200, "modified since 2001");
    assert_eq!(origin.hits("/v.json"), 1);

    // After max-age the edge revalidates with If-None-Match; the origin's 304
    // refreshes the stored object (RefreshHit).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, h, body) = get(edge, HOST, "/v.json", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"{\"v\":1}"[..]));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("RefreshHit from shardgate"));
    assert_eq!(origin.hits("/v.json"), 2);
    assert!(origin.last_headers("/v.json").iter().any(|(k, v)| k == "if-none-match" && v == "\"v1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_variants_apart() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/t.txt", OriginFile::new("text").vary("accept-encoding"))]).await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];
    for _ in 0..2 {
        assert_eq!(get(edge, HOST, "/t.txt", &[("accept-encoding", "gzip")]).await.2, "text|gzip");
        assert_eq!(get(edge, HOST, "/t.txt", &[("accept-encoding", "br")]).await.2, "text|br");
        assert_eq!(get(edge, HOST, "/t.txt", &[]).await.2, "text|");
    }
    assert_eq!(origin.hits("/t.txt"), 3, "one fetch per variant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_old_copy_when_the_origin_is_down() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/sie", OriginFile::new("keep me").cache_control("max-age=1, stale-if-error=600")),
        ("/plain", OriginFile::new("no grace").cache_control("max-age=1")),
    ])
    .await;
    distribution(&gw, &origin, Some(json!({"min_ttl": 0}))).await;
    let edge = gw.edge_plain[0];
    assert_eq!(get(edge, HOST, "/sie", &[]).await.0, 200);
    assert_eq!(get(edge, HOST, "/plain", &[]).await.0, 200);
    origin.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, h, body) = get(edge, HOST, "/sie", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"keep me"[..]));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("StaleHit from shardgate"));
    let (status, h, _) = get(edge, HOST, "/plain", &[]).await;
    assert_eq!(status, 502, "no stale-if-error: the error shows");
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Error from shardgate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin =
        TestOrigin::start(vec![("/swr", OriginFile::new("v1").cache_control("max-age=1, stale-while-revalidate=60"))])
            .await;
    distribution(&gw, &origin, Some(json!({"min_ttl": 0}))).await;
    let edge = gw.edge_plain[0];
    assert_eq!(get(edge, HOST, "/swr", &[]).await.2, "v1");
    origin.set("/swr", OriginFile::new("v2").cache_control("max-age=60"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, h, body) = get(edge, HOST, "/swr", &[]).await;
    assert_eq!(body, "v1", "the stale copy, at once");
    assert_eq!(h.get("x-cache").map(String::as_str), Some("StaleHit from shardgate"));
    eventually(5, "background refresh", || async { (get(edge, HOST, "/swr", &[]).await.2 == "v2").then_some(()) })
        .await;
    assert_eq!(origin.hits("/swr"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_clear_exact_paths_and_prefixes() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/example.file", OriginFile::new("e")),
        ("/images/a.png", OriginFile::new("a")),
        ("/images/b.png", OriginFile::new("b")),
        ("/keep.txt", OriginFile::new("k")),
    ])
    .await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];
    for p in ["/example.file", "/images/a.png", "/images/b.png", "/keep.txt"] {
        get(edge, HOST, p, &[]).await;
        assert_eq!(get(edge, HOST, p, &[]).await.1.get("x-cache").map(String::as_str), Some("Hit from shardgate"));
    }
    let r = gw
        .admin()
        .post("/apisix/admin/invalidations", &json!({"distribution_id": "d", "paths": ["/example.file", "/images/*"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().expect("key").replace("/apisix/", "/apisix/admin/");
    eventually(5, "Completed", || {
        let admin = gw.admin();
        let key = key.clone();
        async move { (admin.get(&key).await.json()["value"]["status"] == "Completed").then_some(()) }
    })
    .await;
    for (p, want) in
        [("/example.file", "Miss"), ("/images/a.png", "Miss"), ("/images/b.png", "Miss"), ("/keep.txt", "Hit")]
    {
        let (_, h, _) = get(edge, HOST, p, &[]).await;
        assert_eq!(h.get("x-cache").map(String::as_str), Some(format!("{want} from shardgate").as_str()), "{p}");
    }
    // Invalidations are history: they cannot be changed, and bad paths are refused.
    let r = gw.admin().put(&key, &json!({"distribution_id": "d", "paths": ["/x"]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r =
        gw.admin().post("/apisix/admin/invalidations", &json!({"distribution_id": "d", "paths": ["/im*ages"]})).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("paths[0]"), "{}", r.body);
    let r = gw.admin().post("/apisix/admin/invalidations", &json!({"distribution_id": "nope", "paths": ["/*"]})).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("distribution_id"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2_and_http1_by_alpn() {
    let gw = gateway().tls_listeners(0).edge_https(1).spawn().await;
    let origin = TestOrigin::start(vec![("/asset", OriginFile::new("over tls"))]).await;
    let cert = TestCert::ecdsa(&[HOST]);
    gw.admin().put_ok("/apisix/admin/ssls/a", &cert.ssl_body(&[HOST])).await;
    distribution(&gw, &origin, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &cert.cert).expect("ca");
    let port = gw.edge_tls[0].port();
    let script = format!(
        "set -e\nfor v in --http2 --http2 --http1.1; do curl -sS $v --cacert ca.pem --resolve {HOST}:{port}:127.0.0.1 -D - https://{HOST}:{port}/asset; echo; done"
    );
    let out = eventually(5, "https live", || {
        let script = script.clone();
        let dir = dir.path().to_owned();
        async move {
            let out = bash(script, &dir).await;
            out.status.success().then_some(out)
        }
    })
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert_eq!(stdout.matches("http/2 200").count(), 2, "{}", text(&out));
    assert_eq!(stdout.matches("http/1.1 200").count(), 1, "{}", text(&out));
    assert_eq!(stdout.matches("over tls").count(), 3);
    assert!(stdout.contains("x-cache: hit from shardgate"));
    assert_eq!(origin.hits("/asset"), 1);
    // An SNI no certificate covers: the handshake is refused.
    let out = bash(
        format!("curl -sS --cacert ca.pem --resolve other.example:{port}:127.0.0.1 https://other.example:{port}/asset"),
        dir.path(),
    )
    .await;
    assert!(!out.status.success(), "an unknown SNI must not get a response");
    // Refused with `unrecognized_name`, as the stream plane does (RFC 6066 §3).
    let err = shardgate_e2e::TlsClient::default()
        .connect(gw.edge_tls[0], Some("other.example"))
        .await
        .expect_err("no certificate for other.example");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_and_methods_are_refused_and_metrics_count_requests() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/m", OriginFile::new("m"))]).await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];
    assert_eq!(get(edge, "nobody.example", "/m", &[]).await.0, 404);
    get(edge, HOST, "/m", &[]).await;
    get(edge, HOST, "/m", &[]).await;
    let out = bash(
        format!("curl -sS -o /dev/null -w '%{{http_code}}' -X POST -H 'Host: {HOST}' http://{edge}/m"),
        std::path::Path::new("."),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    let metrics = shardgate_e2e::admin::http(gw.metrics, "GET", "/metrics", &[], None).await.body;
    let line = |needle: &str| {
        metrics.lines().find(|l| l.starts_with(needle) && l.contains("cache=\"hit\"")).map(str::to_owned)
    };
    let hit = line("shardgate_edge_requests_total").unwrap_or_else(|| panic!("no hit counter in:\n{metrics}"));
    assert!(hit.contains("distribution=\"d\"") && hit.contains("variant=\"primary\"") && hit.ends_with(" 1"), "{hit}");
    assert!(metrics.contains("shardgate_edge_refused_total{reason=\"unknown_host\"}"), "{metrics}");
    assert!(metrics.contains("shardgate_edge_refused_total{reason=\"method\"} 1"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("shardgate_edge_origin_requests_total") && l.contains("status=\"2xx\"")),
        "{metrics}"
    );
    // promtool, installed by the README's test command.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.txt"), &metrics).expect("write");
    let out = bash("promtool check metrics < m.txt".into(), dir.path()).await;
    assert!(out.status.success(), "promtool check metrics: {}", text(&out));
    assert!(text(&out).trim().is_empty(), "promtool reports nothing: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_may_not_be_shared_are_never_coalesced_or_stored() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![(
        "/private",
        OriginFile::new("yours only").cache_control("no-store").slow(2, Duration::from_millis(100)),
    )])
    .await;
    distribution(&gw, &origin, Some(json!({"min_ttl": 0}))).await;
    let edge = gw.edge_plain[0];
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(async move { get(edge, HOST, "/private", &[]).await }));
    }
    for t in tasks {
        let (status, h, body) = t.await.expect("client");
        assert_eq!((status, &body[..]), (200, &b"yours only"[..]));
        assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
    }
    assert_eq!(origin.hits("/private"), 20, "each viewer got its own origin response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_live_on_disk_serve_ranges_and_survive_a_restart() {
    // A 1 MiB memory tier and a 20 MB object: the object can only be on disk.
    let mut gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  cache:\n    memory_bytes: 1048576\n    max_object_bytes: 65536\n    disk_bytes: 104857600")
        .spawn()
        .await;
    let size = 20 * 1024 * 1024;
    let body: Vec<u8> = (0..size).map(|i| (i % 239) as u8 ^ (i >> 16) as u8).collect();
    let want_crc = crc32fast::hash(&body);
    let origin =
        TestOrigin::start(vec![("/season2.pak", OriginFile::new(body.clone()).slow(20, Duration::from_millis(10)))])
            .await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];

    let (status, h, got) = get(edge, HOST, "/season2.pak", &[("range", "bytes=10000000-10000099")]).await;
    assert_eq!(status, 206);
    assert_eq!(h.get("content-range").map(String::as_str), Some("bytes 10000000-10000099/20971520"));
    assert_eq!(&got[..], &body[10_000_000..10_000_100]);
    let (status, x_cache, len, crc) = checksum(edge, "/season2.pak").await;
    assert_eq!((status, len, crc), (200, size as u64, want_crc));
    assert_eq!(x_cache, "Hit from shardgate");
    let disk_bytes = gw.metric("shardgate_edge_cache_disk_bytes").await;
    let mem_bytes = gw.metric("shardgate_edge_cache_bytes").await;
    assert_eq!(disk_bytes, size as f64, "the body is on disk");
    assert!(mem_bytes < 1_048_576.0, "memory holds only the index: {mem_bytes}");

    // Restart on the same data directory: the object is still there.
    gw.sigterm();
    assert!(gw.wait_exit(30).await.success());
    gw.restart().await;
    let (status, h, got) = get(edge, HOST, "/season2.pak", &[("range", "bytes=-16")]).await;
    assert_eq!((status, &got[..]), (206, &body[size - 16..]));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"));
    let (status, _, len, crc) = checksum(edge, "/season2.pak").await;
    assert_eq!((status, len, crc), (200, size as u64, want_crc));
    assert_eq!(origin.hits("/season2.pak"), 1, "one origin request across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    let mut gw = gateway().tls_listeners(0).edge_http(1).drain_timeout("20s").spawn().await;
    let body: Vec<u8> = (0..4_000_000u32).map(|i| (i % 199) as u8).collect();
    let want = crc32fast::hash(&body);
    // Two seconds to stream: the SIGTERM lands in the middle.
    let origin =
        TestOrigin::start(vec![("/slow.pak", OriginFile::new(body).slow(20, Duration::from_millis(100)))]).await;
    distribution(&gw, &origin, None).await;
    let edge = gw.edge_plain[0];
    let download = tokio::spawn(async move { checksum(edge, "/slow.pak").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.sigterm();
    eventually(5, "unready while draining", || async {
        let r = shardgate_e2e::admin::try_http(gw.metrics, "GET", "/readyz", &[], None).await;
        r.is_ok_and(|r| r.status == 503).then_some(())
    })
    .await;
    // /readyz turns first; the listeners close right after (drain.delay 0).
    eventually(5, "the listener to stop accepting", || async {
        tokio::net::TcpStream::connect(edge).await.is_err().then_some(())
    })
    .await;
    let (status, _, len, crc) = download.await.expect("download");
    assert_eq!((status, len, crc), (200, 4_000_000, want), "the download in flight completed");
    assert!(gw.wait_exit(30).await.success(), "exit 0 after the drain");
}
