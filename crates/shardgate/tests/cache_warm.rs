//! `shardgate cache warm` and its Admin API (`/apisix/admin/distributions/<id>/warm`)
//! through the real binary: a test origin with 1,000 objects warmed by the
//! CLI, then served as hits without a new origin request; a second warm
//! that finds them fresh; failures (a 404, an origin that is down) reported
//! with their reasons and a non-zero exit; the staging side of a canary
//! (header-based, weight-based with and without session stickiness); a
//! gateway whose only edge listener is HTTPS and came with a reload; the
//! Admin API's refusals (bad bodies naming the field, no key, the viewer
//! key, a second job on a distribution while one runs); a cache policy with
//! the compression flags, whose `Accept-Encoding` keys are each warmed.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::{ADMIN_KEY, Gateway, OriginFile, TestCert, TestOrigin, eventually};

const HOST: &str = "assets.example.com";
const VIEWER_KEY: &str = "0c5e7d1f9a3b4e6d8f2a1c3e5b7d9f0a";

/// Stores distribution `id` answering `host` from `origin` and waits until
/// the edge serves it.
async fn distribution(gw: &Gateway, id: &str, host: &str, origin: std::net::SocketAddr) {
    gw.admin()
        .put_ok(
            &format!("/apisix/admin/distributions/{id}"),
            &json!({"hosts": [host], "origins": {"o": {"upstream": {"nodes": {origin.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    // An answer through the distribution carries X-Cache; an unknown host's does not.
    eventually(5, "distribution live", || async {
        get(edge, host, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

/// Runs `shardgate cache warm` against `gw` with `args`; stdin from `input`.
async fn warm_cli(gw: &Gateway, args: &[&str], input: Option<&str>) -> Output {
    let admin_url = format!("http://{}", gw.admin);
    let mut all = vec!["cache", "warm", "--admin-url", admin_url.as_str()];
    all.extend_from_slice(args);
    let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
    let input = input.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(&all)
            .env("SHARDGATE_ADMIN_KEY", ADMIN_KEY)
            .env_remove("SHARDGATE_ADMIN_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run shardgate cache warm");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(stdin);
        child.wait_with_output().expect("cache warm output")
    })
    .await
    .expect("cache warm task")
}

fn write_paths(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write paths");
    path.display().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The test: 1,000 objects warmed through the CLI are hits afterwards, and
/// the origin saw each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_a_thousand_objects_fills_the_cache_then_finds_them_fresh() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let paths: Vec<String> = (0..1000).map(|i| format!("/release/1.2/obj-{i:04}.bin")).collect();
    let files: Vec<(String, OriginFile)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), OriginFile::new(format!("object {i}").repeat(10)).cache_control("max-age=3600")))
        .collect();
    let origin = TestOrigin::start(files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect()).await;
    distribution(&gw, "assets", HOST, origin.addr).await;
    let origin_hits = || paths.iter().map(|p| origin.hits(p)).sum::<usize>();
    assert_eq!(origin_hits(), 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let list = format!("# release 1.2\n\n{}\n", paths.join("\n"));
    let file = write_paths(dir.path(), "paths.txt", &list);
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &file, "--concurrency", "16"], None).await;
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(said.contains("distribution assets (primary): 1000 paths"), "{said}");
    assert!(said.contains("  fetched        1000\n  already fresh  0\n  failed         0\n"), "{said}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warming 1000 paths of distribution assets (primary), 16 at once"), "{err}");
    assert_eq!(origin_hits(), 1000, "each object fetched once");
    assert!(paths.iter().all(|p| origin.hits(p) == 1));

    // Every object is a hit now, and the origin hears nothing more.
    let edge = gw.edge_plain[0];
    for (i, p) in paths.iter().enumerate() {
        let (status, h, body) = get(edge, HOST, p, &[]).await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"), "{p}");
        assert_eq!(body, format!("object {i}").repeat(10).as_bytes(), "{p}");
    }
    assert_eq!(origin_hits(), 1000, "hits only");

    // A second warm, from standard input: everything is already fresh.
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", "-"], Some(&list)).await;
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(said.contains("  fetched        0\n  already fresh  1000\n  failed         0\n"), "{said}");
    assert_eq!(origin_hits(), 1000, "a warm of fresh objects asks the origin nothing");

    // The jobs are listed for the distribution, newest first.
    let jobs = gw.admin().get("/apisix/admin/distributions/assets/warm").await;
    assert_eq!(jobs.status, 200, "{}", jobs.body);
    let jobs = jobs.json();
    assert_eq!(jobs["total"], 2, "{jobs}");
    assert_eq!((jobs["list"][0]["fresh"].as_u64(), jobs["list"][1]["fetched"].as_u64()), (Some(1000), Some(1000)));
    assert_eq!(jobs["list"][0]["state"], "finished");
}

/// A path the origin does not have and an origin that is down are failures
/// with their reasons; the exit status says something failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_with_their_reasons_and_a_non_zero_exit() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/ok.pak", OriginFile::new("ok").cache_control("max-age=3600")),
        // One viewer's cookie: never stored for another.
        ("/private.json", OriginFile::new("{}").header("set-cookie", "session=1")),
    ])
    .await;
    distribution(&gw, "assets", HOST, origin.addr).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_paths(dir.path(), "paths.txt", "/ok.pak\n/missing.pak\n/private.json\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &file], None).await;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(said.contains("  fetched        1\n  already fresh  0\n  failed         2\n"), "{said}");
    assert!(said.contains("  /missing.pak  404 Not Found from the origin\n"), "{said}");
    assert!(
        said.contains("  /private.json  200 OK from the origin, not stored: the response is not cacheable"),
        "{said}"
    );

    // An origin that is down: nothing listens on its port any more.
    let down = TestOrigin::start(vec![]).await;
    let down_addr = down.addr;
    distribution(&gw, "down", "down.example.com", down_addr).await;
    drop(down);
    let file = write_paths(dir.path(), "down.txt", "/a.pak\n/b.pak\n");
    let out = warm_cli(&gw, &["--distribution", "down", "--paths-from", &file], None).await;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(said.contains("  fetched        0\n  already fresh  0\n  failed         2\n"), "{said}");
    assert!(said.contains("  /a.pak  502 Bad Gateway from the edge: "), "{said}");

    // Nothing to warm is an error before anything is sent (exit 1), and so
    // is a bad path, named with its line.
    let empty = write_paths(dir.path(), "empty.txt", "# nothing yet\n\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &empty], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("lists no paths"), "{}", text(&out));
    let bad = write_paths(dir.path(), "bad.txt", "/ok.pak\n# a comment\nnot-a-path\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &bad], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = text(&out);
    assert!(
        err.contains("\"paths[1]\"") && err.contains("must start with '/'") && err.contains("bad.txt line 3"),
        "{err}"
    );
    let out = warm_cli(&gw, &["--distribution", "nope", "--paths-from", &file], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("404 distribution nope not found"), "{}", text(&out));
}

/// A custom error page does not stand in for a warmed path's error: with
/// a page for 404 served as 200, the warm still reports the 404, and
/// viewers still get the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_error_page_does_not_count_as_a_warmed_path() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/ok.pak", OriginFile::new("ok").cache_control("max-age=3600")),
        ("/errors/404.html", OriginFile::new("not here").cache_control("max-age=3600")),
    ])
    .await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "custom_error_responses": [
                    {"error_code": 404, "response_page_path": "/errors/404.html", "response_code": 200}
                ]
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_paths(dir.path(), "paths.txt", "/ok.pak\n/missing.pak\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &file], None).await;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(said.contains("  fetched        1\n  already fresh  0\n  failed         1\n"), "{said}");
    assert!(said.contains("  /missing.pak  404 Not Found from the origin\n"), "{said}");
    let (status, _, body) = get(edge, HOST, "/missing.pak", &[]).await;
    assert_eq!((status, &body[..]), (200, &b"not here"[..]), "viewers still get the page");
}

fn error_msg(r: &shardgate_e2e::Response) -> String {
    r.json().get("error_msg").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The Admin API's side: bounds and refusals naming the field, the key,
/// the viewer's role, one running job per distribution, progress and cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_bounds_warm_jobs() {
    let gw =
        gateway().tls_listeners(0).edge_http(1).admin_yaml(&format!("  viewer_key: \"{VIEWER_KEY}\"")).spawn().await;
    // Ten chunks half a second apart: a job on it runs for about five seconds.
    let origin = TestOrigin::start(vec![
        ("/slow.pak", OriginFile::new(vec![b's'; 10_000]).slow(10, Duration::from_millis(500))),
        ("/quick.pak", OriginFile::new("q")),
    ])
    .await;
    distribution(&gw, "assets", HOST, origin.addr).await;
    let admin = gw.admin();
    let url = "/apisix/admin/distributions/assets/warm";

    let too_many: Vec<String> = (0..100_001).map(|i| format!("/{i}")).collect();
    for (body, field) in [
        (json!({}), "\"paths\""),
        (json!({"paths": []}), "\"paths\""),
        (json!({"paths": ["/ok", "no-slash"]}), "\"paths[1]\""),
        (json!({"paths": too_many}), "\"paths\""),
        (json!({"paths": ["/a*"]}), "\"paths[0]\""),
        (json!({"paths": ["/ok"], "concurrency": 0}), "\"concurrency\""),
        (json!({"paths": ["/ok"], "concurrency": 65}), "\"concurrency\""),
        (json!({"paths": ["/ok"], "variant": "blue"}), "\"variant\""),
        (json!({"paths": ["/ok"], "paths_from": "x"}), "\"paths_from\""),
    ] {
        let r = admin.post(url, &body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(error_msg(&r).contains(field), "{field}: {}", r.body);
    }
    let r = admin.request("POST", url, Some("{not json")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = admin.post("/apisix/admin/distributions/nope/warm", &json!({"paths": ["/a"]})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(error_msg(&r).contains("distribution nope not found"), "{}", r.body);
    // No canary: no staging side to warm.
    let r = admin.post(url, &json!({"paths": ["/a"], "variant": "staging"})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error_msg(&r).contains("no staging side"), "{}", r.body);

    // Keys: none, wrong, and the viewer's (which may read, not start).
    for key in [None, Some("wrong")] {
        let r = gw.admin_with_key(key).post(url, &json!({"paths": ["/quick.pak"]})).await;
        assert_eq!(r.status, 401, "{}", r.body);
        let r = gw.admin_with_key(key).get(url).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let viewer = gw.admin_with_key(Some(VIEWER_KEY));
    let r = viewer.post(url, &json!({"paths": ["/quick.pak"]})).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("invalid method for role viewer"), "{}", r.body);
    assert_eq!(origin.total_hits(), 1, "only the probe reached the origin: {}", origin.total_hits());

    // A job runs; a second one on the same distribution is refused meanwhile.
    let r = admin.post(url, &json!({"paths": ["/slow.pak", "/quick.pak", "/slow.pak"], "concurrency": 1})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job = r.json();
    let id = job["id"].as_str().expect("job id").to_owned();
    let job_url = format!("{url}/{id}");
    assert_eq!(r.header("location"), Some(job_url.as_str()));
    assert_eq!((job["total"].as_u64(), job["duplicates"].as_u64()), (Some(2), Some(1)), "{job}");
    assert_eq!((job["state"].as_str(), job["concurrency"].as_u64()), (Some("running"), Some(1)), "{job}");
    let r = admin.post(url, &json!({"paths": ["/quick.pak"]})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        error_msg(&r).contains(&format!("cache warm job {id} of distribution assets is still running")),
        "{}",
        r.body
    );
    // The viewer reads its progress.
    let r = viewer.get(&job_url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for field in ["total", "done", "fetched", "fresh", "failed", "failures", "started_at", "finished_at", "rate"] {
        assert!(r.json().get(field).is_some(), "{field} in {}", r.body);
    }
    assert_eq!(viewer.request("DELETE", &job_url, None).await.status, 401);
    let done = eventually(20, "the job ends", || async {
        let v = admin.get(&job_url).await.json();
        (v["state"] == "finished").then_some(v)
    })
    .await;
    assert_eq!((done["fetched"].as_u64(), done["failed"].as_u64()), (Some(2), Some(0)), "{done}");
    assert!(done["finished_at"].as_f64() >= done["started_at"].as_f64(), "{done}");
    assert_eq!(origin.hits("/slow.pak"), 1);

    // Once it has ended, another may start; a running one can be cancelled.
    origin.set("/slow2.pak", OriginFile::new(vec![b's'; 10_000]).slow(10, Duration::from_millis(500)));
    let paths: Vec<String> =
        std::iter::once("/slow2.pak".to_owned()).chain((0..20).map(|i| format!("/q{i}"))).collect();
    let r = admin.post(url, &json!({"paths": paths, "concurrency": 1})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_url = format!("{url}/{}", r.json()["id"].as_str().expect("id"));
    let r = admin.request("DELETE", &job_url, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ended = eventually(20, "the cancelled job ends", || async {
        let v = admin.get(&job_url).await.json();
        (v["state"] == "cancelled").then_some(v)
    })
    .await;
    assert_eq!(ended["done"].as_u64(), Some(1), "stopped after the one fetch in flight: {ended}");
    let r = admin.get(&format!("{url}/no-such-job")).await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Stores a canary: distribution `prod` (host `www.company.com`, origin
/// `a`) sends traffic chosen by `traffic` to its staging distribution
/// `stage` (origin `b`), through continuous deployment policy `cd`.
async fn canary(gw: &Gateway, a: &TestOrigin, b: &TestOrigin, traffic: Value) {
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/distributions/stage",
            &json!({"staging": true, "origins": {"b": {"upstream": {"nodes": {b.addr.to_string(): 1}}}}}),
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
            &json!({"hosts": ["www.company.com"], "origins": {"a": {"upstream": {"nodes": {a.addr.to_string(): 1}}}},
                    "continuous_deployment_policy_id": "cd"}),
        )
        .await;
}

/// `--variant staging` warms the staging distribution of a header-based
/// canary: its origin is asked, the primary's is not, and a viewer sent to
/// staging then gets a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staging_side_of_a_canary_is_warmed_through_its_policy() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let a = TestOrigin::start(vec![("/resource", OriginFile::new("a").cache_control("max-age=600"))]).await;
    let b = TestOrigin::start(vec![("/resource", OriginFile::new("b").cache_control("max-age=600"))]).await;
    let admin = gw.admin();
    canary(&gw, &a, &b, json!({"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"})).await;
    let edge = gw.edge_plain[0];
    eventually(5, "canary live", || async {
        let (_, h, _) = get(edge, "www.company.com", "/__probe", &[("aws-cf-cd-resource", "b")]).await;
        (h.get("x-shardgate-variant").map(String::as_str) == Some("staging")).then_some(())
    })
    .await;
    let (a_before, b_before) = (a.hits("/resource"), b.hits("/resource"));

    let out =
        warm_cli(&gw, &["--distribution", "prod", "--variant", "staging", "--paths-from", "-"], Some("/resource\n"))
            .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("distribution prod (staging): 1 paths"), "{}", text(&out));
    assert_eq!((a.hits("/resource"), b.hits("/resource")), (a_before, b_before + 1), "staging's origin only");
    let (status, h, body) = get(edge, "www.company.com", "/resource", &[("aws-cf-cd-resource", "b")]).await;
    assert_eq!((status, &body[..]), (200, &b"b"[..]));
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"));
    // The primary side was not warmed: its first viewer misses.
    let (_, h, body) = get(edge, "www.company.com", "/resource", &[]).await;
    assert_eq!((h.get("x-cache").map(String::as_str), &body[..]), (Some("Miss from shardgate"), &b"a"[..]));

    // The staging distribution's own id works with variant staging, and
    // says what to do with variant primary.
    let out =
        warm_cli(&gw, &["--distribution", "stage", "--variant", "staging", "--paths-from", "-"], Some("/resource\n"))
            .await;
    assert!(out.status.success() && stdout(&out).contains("already fresh  1"), "{}", text(&out));
    let out = warm_cli(&gw, &["--distribution", "stage", "--paths-from", "-"], Some("/resource\n")).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is the staging distribution of prod"), "{}", text(&out));

    // A weight-based policy with cookie stickiness: 1 % of viewers go to
    // staging, yet each side's warm reaches its own side every time.
    b.set("/weighted", OriginFile::new("b2").cache_control("max-age=600"));
    a.set("/weighted", OriginFile::new("a2").cache_control("max-age=600"));
    let sticky = json!({"staging_distribution_id": "stage", "enabled": true,
        "traffic": {"type": "single_weight", "weight": 0.01, "session_stickiness": {"idle_ttl": 300, "maximum_ttl": 600}}});
    admin.put_ok("/apisix/admin/continuous_deployment_policies/cd", &sticky).await;
    eventually(5, "weighted policy live", || async {
        let (_, h, _) = get(edge, "www.company.com", "/__probe", &[]).await;
        h.get("set-cookie").is_some_and(|c| c.starts_with("shardgate-cd=")).then_some(())
    })
    .await;
    let paths = "/weighted\n";
    for (variant, hits) in [("staging", (0, 1)), ("primary", (1, 1))] {
        let out =
            warm_cli(&gw, &["--distribution", "prod", "--variant", variant, "--paths-from", "-"], Some(paths)).await;
        assert!(out.status.success() && stdout(&out).contains("fetched        1"), "{variant}: {}", text(&out));
        assert_eq!((a.hits("/weighted"), b.hits("/weighted")), hits, "{variant}");
    }
}

/// A weight-based canary without session stickiness sends a random share
/// of viewers to staging, so no viewer's request can choose it; the warm
/// names its side, so every path of a staging warm reaches staging's
/// origin (a 1 % share would bring about none of twenty), and a primary
/// warm reaches the primary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_of_a_weighted_canary_without_stickiness_is_warmed() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let paths: Vec<String> = (0..20).map(|i| format!("/w/{i}.pak")).collect();
    let file = |body: &str| OriginFile::new(body.to_owned()).cache_control("max-age=600");
    let a = TestOrigin::start(paths.iter().map(|p| (p.as_str(), file("a"))).collect()).await;
    let b = TestOrigin::start(paths.iter().map(|p| (p.as_str(), file("b"))).collect()).await;
    canary(&gw, &a, &b, json!({"type": "single_weight", "weight": 0.01})).await;
    gw.applied().await;
    let hits = |o: &TestOrigin| paths.iter().map(|p| o.hits(p)).sum::<usize>();
    let list = paths.join("\n");

    let out =
        warm_cli(&gw, &["--distribution", "prod", "--variant", "staging", "--paths-from", "-"], Some(&list)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("  fetched        20\n  already fresh  0\n  failed         0\n"), "{}", text(&out));
    assert_eq!((hits(&a), hits(&b)), (0, 20), "staging's origin only, each path once");
    // Again: staging's cache holds them all.
    let out =
        warm_cli(&gw, &["--distribution", "prod", "--variant", "staging", "--paths-from", "-"], Some(&list)).await;
    assert!(stdout(&out).contains("  fetched        0\n  already fresh  20\n"), "{}", text(&out));
    // The primary side is a cache of its own.
    let out = warm_cli(&gw, &["--distribution", "prod", "--paths-from", "-"], Some(&list)).await;
    assert!(stdout(&out).contains("  fetched        20\n  already fresh  0\n"), "{}", text(&out));
    assert_eq!((hits(&a), hits(&b)), (20, 20));
    // A viewer (almost always sent to the primary) gets the primary's copy, a hit.
    let (status, h, body) = get(gw.edge_plain[0], "www.company.com", "/w/0.pak", &[]).await;
    if h.get("x-shardgate-variant").map(String::as_str) == Some("primary") {
        assert_eq!((status, &body[..]), (200, &b"a"[..]));
    }
    assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"), "either side was warmed");
    assert_eq!((hits(&a), hits(&b)), (20, 20));
}

/// A gateway whose only edge listener is HTTPS, added by a reload: the
/// warm needs no listener of its own (it runs the edge in process), only
/// the edge service the first edge listener creates. Before it, the warm
/// is refused saying why. The warm writes access log lines with its own
/// user agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_edge_added_by_a_reload_is_warmed() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let origin = TestOrigin::start(vec![
        ("/a.pak", OriginFile::new("a").cache_control("max-age=600")),
        ("/b.pak", OriginFile::new("b").cache_control("max-age=600")),
    ])
    .await;
    let cert = TestCert::ecdsa(&[HOST]);
    gw.admin().put_ok("/apisix/admin/ssls/assets", &cert.ssl_body(&[HOST])).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({"hosts": [HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    gw.applied().await;
    let list = "/a.pak\n/b.pak\n";
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", "-"], Some(list)).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("serves no edge yet"), "{}", text(&out));

    // An HTTPS edge listener, and no plain one, by a reload.
    let port = shardgate_e2e::ports::free("127.0.0.1");
    let yaml = gw
        .config_text()
        .replace("only: true", "only: false")
        .replace("admin:\n", &format!("edge:\n  http:\n    - addr: \"{port}\"\n      tls: true\nadmin:\n"));
    gw.write_config(&yaml);
    gw.sighup();
    eventually(10, "the HTTPS edge listener", || async { tokio::net::TcpStream::connect(port).await.ok() }).await;

    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", "-"], Some(list)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("  fetched        2\n  already fresh  0\n  failed         0\n"), "{}", text(&out));
    assert_eq!((origin.hits("/a.pak"), origin.hits("/b.pak")), (1, 1));
    eventually(5, "the warm's access log lines", || async {
        (gw.log().matches("shardgate-cache-warm").count() >= 2).then_some(())
    })
    .await;

    // A player over HTTPS gets hits; the origin hears nothing more.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &cert.cert).expect("ca");
    let p = port.port();
    let script = format!(
        "set -e\nfor f in a b; do curl -sS --cacert ca.pem --resolve {HOST}:{p}:127.0.0.1 -D - https://{HOST}:{p}/$f.pak; echo; done"
    );
    let out = bash(script, dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert_eq!(said.matches("x-cache: hit from shardgate").count(), 2, "{said}");
    assert_eq!((origin.hits("/a.pak"), origin.hits("/b.pak")), (1, 1));
}

/// A cache policy with the gzip and brotli flags keys a behavior that does
/// not compress at the edge on the viewer's normalised `Accept-Encoding`:
/// the warm fetches each key a browser can have, and counts the path once.
/// A behavior that compresses at the edge needs the identity object only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_flags_warm_every_accept_encoding_key() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let json_file = || {
        OriginFile::new(format!("{{\"files\": [{}]}}", "\"maps/level.pak\",".repeat(200)))
            .header("content-type", "application/json")
            .cache_control("max-age=3600")
    };
    let origin =
        TestOrigin::start(vec![("/origin/manifest.json", json_file()), ("/edge/manifest.json", json_file())]).await;
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/cache_policies/compressed",
            &json!({"enable_accept_encoding_gzip": true, "enable_accept_encoding_brotli": true}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"origin": "o", "cache_policy_id": "compressed"},
                "behaviors": [{"path_pattern": "/edge/*", "origin": "o", "cache_policy_id": "compressed", "compress": true}]
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file =
        write_paths(dir.path(), "paths.txt", "/origin/manifest.json\n/edge/manifest.json\n/origin/missing.json\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &file], None).await;
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(said.contains("  fetched        2\n  already fresh  0\n  failed         1\n"), "{said}");
    // Each key's fetch failed, and says which.
    assert!(
        said.contains(
            "  /origin/missing.json  Accept-Encoding none: 404 Not Found from the origin; Accept-Encoding gzip: 404 Not Found from the origin; Accept-Encoding br: 404 Not Found from the origin; Accept-Encoding br,gzip: 404 Not Found from the origin\n"
        ),
        "{said}"
    );
    assert_eq!(origin.hits("/origin/manifest.json"), 4, "none, gzip, br and br,gzip");
    assert_eq!(origin.hits("/edge/manifest.json"), 1, "the identity object only");

    // What browsers and other clients send: all hits, on both behaviors.
    for ae in [None, Some("gzip, deflate, br, zstd"), Some("gzip, deflate"), Some("br"), Some("identity")] {
        let headers: Vec<(&str, &str)> = ae.map(|v| ("accept-encoding", v)).into_iter().collect();
        for path in ["/origin/manifest.json", "/edge/manifest.json"] {
            let (status, h, _) = get(edge, HOST, path, &headers).await;
            assert_eq!(status, 200, "{path} {ae:?}");
            assert_eq!(h.get("x-cache").map(String::as_str), Some("Hit from shardgate"), "{path} {ae:?}: {h:?}");
        }
    }
    let (_, h, _) = get(edge, HOST, "/edge/manifest.json", &[("accept-encoding", "br")]).await;
    assert_eq!(h.get("content-encoding").map(String::as_str), Some("br"), "compressed at the edge: {h:?}");
    assert_eq!((origin.hits("/origin/manifest.json"), origin.hits("/edge/manifest.json")), (4, 1), "hits only");

    // Warmed again: every key is fresh.
    let file = write_paths(dir.path(), "again.txt", "/origin/manifest.json\n/edge/manifest.json\n");
    let out = warm_cli(&gw, &["--distribution", "assets", "--paths-from", &file], None).await;
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(said.contains("  fetched        0\n  already fresh  2\n  failed         0\n"), "{said}");
    assert_eq!((origin.hits("/origin/manifest.json"), origin.hits("/edge/manifest.json")), (4, 1));
}
