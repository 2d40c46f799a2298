//! Observability a studio runs: process metrics and `shardgate_build_info`
//! scraped from the real binary, the edge's access log (CloudFront's
//! standard-log fields) driven by real requests, and the shipped Grafana
//! dashboard and Prometheus alert rules (`promtool check rules`, `promtool
//! test rules`, and every metric they name exists in a real `/metrics`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{GameServer, Gateway, OriginFile, TestCert, TestOrigin, TlsClient, eventually};

const HOST: &str = "assets.test";

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// The value of an unlabelled series in a classic-format exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_and_build_info_read_the_running_process() {
    let before = now_secs();
    let gw = gateway().spawn().await;
    let after = now_secs();
    let first = gw.metrics_text().await;

    // The process started within this test's window (the kernel counts the
    // start in 10 ms ticks after boot, and boot time in whole seconds).
    let start = sample(&first, "process_start_time_seconds");
    assert!(start >= before - 1.5 && start <= after + 1.0, "start {start} outside [{before}, {after}]");
    let rss = sample(&first, "process_resident_memory_bytes");
    assert!(rss > 1_000_000.0, "a running gateway holds more than 1 MB: {rss}");
    assert!(sample(&first, "process_virtual_memory_bytes") >= rss);
    let fds = sample(&first, "process_open_fds");
    let max_fds = sample(&first, "process_max_fds");
    assert!(fds >= 5.0 && fds < max_fds, "listeners and the store are open: {fds} of {max_fds}");
    assert!(sample(&first, "process_threads") >= 2.0, "tokio's workers");
    // Conventional names: no prefix, and exactly one family of each.
    assert!(!first.contains("shardgate_process_"), "{first}");
    assert_eq!(first.matches("# TYPE process_cpu_seconds_total counter\n").count(), 1, "{first}");

    // Open descriptors follow the connections the gateway holds (give or
    // take the scrapes' own connections).
    let baseline = sample(&gw.metrics_text().await, "process_open_fds");
    let held: Vec<std::net::TcpStream> =
        (0..20).map(|_| std::net::TcpStream::connect(gw.tls_addr()).expect("connect")).collect();
    eventually(8, &format!("18 descriptors more than {baseline}"), || async {
        (sample(&gw.metrics_text().await, "process_open_fds") >= baseline + 18.0).then_some(())
    })
    .await;
    drop(held);

    // CPU time grows with work (TLS handshakes and proxied bytes); bounded rounds.
    let cpu = sample(&first, "process_cpu_seconds_total");
    let gs = GameServer::start("gs").await;
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/r1",
            &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.addr.to_string(): 1}}}),
        )
        .await;
    let client = TlsClient::default();
    let mut grew = false;
    for _ in 0..40 {
        for _ in 0..20 {
            if let Ok(mut s) = client.connect(gw.tls_addr(), Some("gs-1.com")).await {
                assert_eq!(roundtrip(&mut s, "ping").await, "[gs] ping");
            }
        }
        if sample(&gw.metrics_text().await, "process_cpu_seconds_total") > cpu {
            grew = true;
            break;
        }
    }
    assert!(grew, "process_cpu_seconds_total stayed at {cpu} through 800 TLS sessions");

    // Build information, one series set to 1.
    let info = first.lines().find(|l| l.starts_with("shardgate_build_info{")).expect("shardgate_build_info");
    assert!(info.ends_with("} 1"), "{info}");
    assert!(info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(info.contains("rustc=\"rustc "), "{info}");
    let commit = info.split("commit=\"").nth(1).and_then(|r| r.split('"').next()).expect("commit label");
    let head = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match (std::env::var("SHARDGATE_BUILD_COMMIT").ok().filter(|c| !c.is_empty()), head) {
        (Some(given), _) => assert_eq!(commit, given),
        (None, Some(head)) => assert_eq!(commit, head, "the build script records the checkout's commit"),
        (None, None) => assert_eq!(commit, "unknown"),
    }
    let target = info.split("target=\"").nth(1).and_then(|r| r.split('"').next()).expect("target label");
    assert!(target.contains(std::env::consts::ARCH), "{target}");

    // promtool accepts the whole exposition, process metrics included.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("metrics.txt"), gw.metrics_text().await).expect("write");
    let out = bash("promtool check metrics < metrics.txt".into(), dir.path()).await;
    assert!(out.status.success() && text(&out).trim().is_empty(), "promtool check metrics:\n{}", text(&out));
}

/// The edge's access-log lines (log.format json), as JSON objects.
fn access_lines(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "shardgate::access" && v["message"] == "edge request")
        .collect()
}

/// Waits for the one line whose `cs(Referer)` is `referer`.
async fn line_with_referer(gw: &Gateway, referer: &str) -> Value {
    eventually(10, &format!("the access line of {referer}"), || async {
        let found: Vec<Value> = access_lines(gw).into_iter().filter(|l| l["cs(Referer)"] == referer).collect();
        assert!(found.len() <= 1, "one line per request: {found:?}");
        found.into_iter().next()
    })
    .await
}

const BLOCK_POSTMAN: &str = r#"{"Name": "game-assets", "DefaultAction": {"Allow": {}},
  "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "game-assets"},
  "Rules": [{"Name": "StringMatch", "Priority": 0, "Action": {"Block": {}},
    "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "StringMatch"},
    "Statement": {"ByteMatchStatement": {"FieldToMatch": {"SingleHeader": {"Name": "user-agent"}},
      "PositionalConstraint": "STARTS_WITH", "SearchString": "PostmanRuntime",
      "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}}]}"#;

/// A distribution `prod` for [`HOST`] behind the web ACL above, with a
/// header canary to the staging distribution `stage`.
async fn edge_setup(gw: &Gateway, a: &TestOrigin, b: &TestOrigin) {
    let admin = gw.admin();
    let r = admin.request("PUT", "/apisix/admin/web_acls/guard", Some(BLOCK_POSTMAN)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    admin
        .put_ok(
            "/apisix/admin/distributions/stage",
            &json!({"staging": true, "origins": {"b": {"upstream": {"nodes": {b.addr.to_string(): 1}}, "origin_path": "/resource_b"}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/continuous_deployment_policies/cd",
            &json!({"staging_distribution_id": "stage", "enabled": true,
                    "traffic": {"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/prod",
            &json!({"hosts": [HOST], "web_acl_id": "guard", "continuous_deployment_policy_id": "cd",
                    "origins": {"a": {"upstream": {"nodes": {a.addr.to_string(): 1}}}},
                    "behaviors": [{"path_pattern": "/big/*"}]}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        // The origin's 404 (with X-Cache), not the edge's for an unknown host.
        get(edge, HOST, "/warmup", &[("referer", "http://tag.test/warmup")])
            .await
            .1
            .contains_key("x-cache")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_cloudfront_fields_per_edge_request() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_https(1)
        .edge_yaml("  access_log:\n    edge_location: edge-test-1\n")
        .yaml("log:\n  format: json\n")
        .spawn()
        .await;
    let a = TestOrigin::start(vec![
        ("/asset", OriginFile::new(vec![b'a'; 1000]).etag("\"a\"")),
        ("/big/file", OriginFile::new(vec![b'z'; 1 << 20]).slow(20, Duration::from_millis(150))),
    ])
    .await;
    let b = TestOrigin::start(vec![("/resource_b/asset", OriginFile::new(vec![b'b'; 2000]))]).await;
    let cert = TestCert::ecdsa(&[HOST]);
    gw.admin().put_ok("/apisix/admin/ssls/assets", &cert.ssl_body(&[HOST])).await;
    edge_setup(&gw, &a, &b).await;
    let edge = gw.edge_plain[0];
    let secret_headers = [("cookie", "session=COOKIE-SECRET"), ("authorization", "Bearer AUTH-SECRET")];

    // A miss, then a hit, from a game client whose User-Agent has a space.
    let mut headers = vec![("user-agent", "Game Client/1.0"), ("referer", "http://tag.test/miss x")];
    headers.extend(secret_headers);
    let (status, _, body) = get(edge, HOST, "/asset?v=1", &headers).await;
    assert_eq!((status, body.len()), (200, 1000));
    headers[1] = ("referer", "http://tag.test/hit");
    assert_eq!(get(edge, HOST, "/asset?v=1", &headers).await.0, 200);
    // Blocked by the web ACL; sent to staging by the canary header; a host
    // no distribution serves.
    assert_eq!(
        get(edge, HOST, "/asset", &[("user-agent", "PostmanRuntime/7.29.2"), ("referer", "http://tag.test/block")])
            .await
            .0,
        403
    );
    let staged =
        get(edge, HOST, "/asset", &[("aws-cf-cd-resource", "b"), ("referer", "http://tag.test/staging")]).await;
    assert_eq!((staged.0, staged.2.len()), (200, 2000));
    assert_eq!(get(edge, "nobody.test", "/x", &[("referer", "http://tag.test/unknown")]).await.0, 404);

    let miss = line_with_referer(&gw, "http://tag.test/miss%20x").await;
    let date = miss["date"].as_str().expect("date");
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "{miss}");
    let time = miss["time"].as_str().expect("time");
    assert!(time.len() == 8 && time.as_bytes()[2] == b':', "{miss}");
    for (field, want) in [
        ("x-edge-location", json!("edge-test-1")),
        ("c-ip", json!("127.0.0.1")),
        ("cs-method", json!("GET")),
        ("cs(Host)", json!(HOST)),
        ("x-host-header", json!(HOST)),
        ("cs-uri-stem", json!("/asset")),
        ("cs-uri-query", json!("v=1")),
        ("sc-status", json!(200)),
        ("cs(User-Agent)", json!("Game%20Client/1.0")),
        ("x-edge-result-type", json!("Miss")),
        ("x-edge-response-result-type", json!("Miss")),
        ("x-edge-detailed-result-type", json!("Miss")),
        ("cs-protocol", json!("http")),
        ("cs-protocol-version", json!("HTTP/1.1")),
        ("sc-content-type", json!("application/octet-stream")),
        ("sc-content-len", json!(1000)),
        ("distribution-id", json!("prod")),
        ("cache-behavior-path-pattern", json!("default")),
        ("x-shardgate-variant", json!("primary")),
        ("x-shardgate-waf-action", json!("allow")),
        ("x-shardgate-waf-rule", json!("default")),
    ] {
        assert_eq!(miss[field], want, "{field} in {miss}");
    }
    for absent in ["ssl-protocol", "ssl-cipher", "primary-distribution-id", "x-forwarded-for", "cs(Cookie)"] {
        assert!(miss.get(absent).is_none(), "{absent} in {miss}");
    }
    let sc_bytes = miss["sc-bytes"].as_u64().expect("sc-bytes");
    assert!(sc_bytes > 1000 && sc_bytes < 1500, "body and head: {miss}");
    let cs_bytes = miss["cs-bytes"].as_u64().expect("cs-bytes");
    assert!(cs_bytes > 100 && cs_bytes < 400, "the request head: {miss}");
    assert!(miss["c-port"].as_u64().expect("c-port") > 0);
    let taken = miss["time-taken"].as_f64().expect("time-taken");
    let first_byte = miss["time-to-first-byte"].as_f64().expect("time-to-first-byte");
    assert!((0.0..30.0).contains(&taken) && first_byte <= taken, "{miss}");
    let id = miss["x-edge-request-id"].as_str().expect("request id");
    assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{miss}");

    let hit = line_with_referer(&gw, "http://tag.test/hit").await;
    assert_eq!(hit["x-edge-result-type"], "Hit", "{hit}");
    assert_ne!(hit["x-edge-request-id"], miss["x-edge-request-id"]);

    let block = line_with_referer(&gw, "http://tag.test/block").await;
    for (field, want) in [
        ("sc-status", json!(403)),
        ("cs(User-Agent)", json!("PostmanRuntime/7.29.2")),
        ("x-edge-result-type", json!("Error")),
        ("x-edge-detailed-result-type", json!("InvalidRequestBlocked")),
        ("x-shardgate-waf-action", json!("block")),
        ("x-shardgate-waf-rule", json!("StringMatch")),
        ("distribution-id", json!("prod")),
    ] {
        assert_eq!(block[field], want, "{field} in {block}");
    }

    let staging = line_with_referer(&gw, "http://tag.test/staging").await;
    for (field, want) in [
        ("distribution-id", json!("stage")),
        ("primary-distribution-id", json!("prod")),
        ("x-shardgate-variant", json!("staging")),
        ("x-edge-result-type", json!("Miss")),
        ("sc-content-len", json!(2000)),
    ] {
        assert_eq!(staging[field], want, "{field} in {staging}");
    }

    let unknown = line_with_referer(&gw, "http://tag.test/unknown").await;
    assert_eq!(
        (&unknown["sc-status"], &unknown["x-edge-result-type"], &unknown["x-edge-detailed-result-type"]),
        (&json!(404), &json!("Error"), &json!("InvalidRequest")),
        "{unknown}"
    );
    assert!(unknown.get("distribution-id").is_none(), "{unknown}");

    // HTTPS over HTTP/2: the negotiated protocol and cipher, OpenSSL's names.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &cert.cert).expect("ca");
    let port = gw.edge_tls[0].port();
    let out = bash(
        format!(
            "curl -sS --http2 --cacert ca.pem --resolve {HOST}:{port}:127.0.0.1 -e http://tag.test/https -o /dev/null -w '%{{http_code}}' https://{HOST}:{port}/asset?v=1"
        ),
        dir.path(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", text(&out));
    let https = line_with_referer(&gw, "http://tag.test/https").await;
    assert_eq!(https["cs-protocol"], "https", "{https}");
    assert_eq!(https["cs-protocol-version"], "HTTP/2.0", "{https}");
    assert_eq!(https["ssl-protocol"], "TLSv1.3", "{https}");
    let cipher = https["ssl-cipher"].as_str().expect("cipher");
    assert!(
        ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"].contains(&cipher),
        "{https}"
    );
    assert_eq!(https["x-host-header"], format!("{HOST}:{port}"), "curl sends the port in :authority: {https}");

    // A viewer that leaves mid-download: logged when it goes, as an error
    // whose response was a miss (CloudFront's ClientCommError).
    let mut sock = std::net::TcpStream::connect(edge).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    sock.write_all(
        format!("GET /big/file HTTP/1.1\r\nHost: {HOST}\r\nReferer: http://tag.test/gone\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let mut got = vec![0u8; 64 * 1024];
    let n = sock.read(&mut got).expect("read the head");
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got[..n]));
    drop(sock);
    let gone = line_with_referer(&gw, "http://tag.test/gone").await;
    for (field, want) in [
        ("sc-status", json!(200)),
        ("x-edge-result-type", json!("Error")),
        ("x-edge-response-result-type", json!("Miss")),
        ("x-edge-detailed-result-type", json!("ClientCommError")),
        ("cache-behavior-path-pattern", json!("/big/*")),
        ("sc-content-len", json!(1 << 20)),
    ] {
        assert_eq!(gone[field], want, "{field} in {gone}");
    }
    assert!(gone["sc-bytes"].as_u64().expect("sc-bytes") < 1 << 20, "cut short: {gone}");

    // An origin that refuses connections: 502, CloudFront's OriginConnectError.
    let dead = shardgate_e2e::ports::free("127.0.0.1");
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/dead",
            &json!({"hosts": ["dead.test"], "origins": {"o": {"upstream": {"nodes": {dead.to_string(): 1}}}}}),
        )
        .await;
    gw.applied().await;
    assert_eq!(get(edge, "dead.test", "/x", &[("referer", "http://tag.test/dead")]).await.0, 502);
    let down = line_with_referer(&gw, "http://tag.test/dead").await;
    for (field, want) in [
        ("sc-status", json!(502)),
        ("distribution-id", json!("dead")),
        ("x-edge-result-type", json!("Error")),
        ("x-edge-response-result-type", json!("Error")),
        ("x-edge-detailed-result-type", json!("OriginConnectError")),
    ] {
        assert_eq!(down[field], want, "{field} in {down}");
    }

    // Responses by status class, refusals included.
    let metrics = gw.metrics_text().await;
    for series in [
        "shardgate_edge_responses_total{distribution=\"dead\",status=\"5xx\"} 1\n",
        "shardgate_edge_responses_total{distribution=\"stage\",status=\"2xx\"} 1\n",
        "shardgate_edge_responses_total{distribution=\"prod\",status=\"2xx\"} 4\n",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    assert!(metrics.contains("shardgate_edge_responses_total{distribution=\"\",status=\"4xx\"}"), "{metrics}");

    // One line per request, and never a cookie or a credential.
    let lines = access_lines(&gw);
    let ids: BTreeSet<&str> = lines.iter().filter_map(|l| l["x-edge-request-id"].as_str()).collect();
    assert_eq!(ids.len(), lines.len(), "request ids are unique");
    let log = gw.log();
    assert!(!log.contains("COOKIE-SECRET") && !log.contains("AUTH-SECRET"), "secrets in the log:\n{log}");
}

/// User information in a request's authority (refused: RFC 9110 §4.2.4)
/// never reaches the log: `cs(Host)` and `x-host-header` come from the
/// authority's host and port, over HTTP/2 (`:authority`) and HTTP/1.1
/// (absolute-form target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_never_writes_url_credentials() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let gw = gateway().tls_listeners(0).edge_http(1).yaml("log:\n  format: json\n").spawn().await;
    let a = TestOrigin::start(vec![("/asset", OriginFile::new("a"))]).await;
    let b = TestOrigin::start(vec![]).await;
    edge_setup(&gw, &a, &b).await;
    let edge = gw.edge_plain[0];

    // HTTP/2 with prior knowledge: hyper's client puts the URI's authority,
    // user information included, in `:authority`, and sends no Host.
    let tcp = tokio::net::TcpStream::connect(edge).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://alice:H2-PASSWORD@{HOST}:8443/asset"))
        .header("referer", "http://tag.test/h2-userinfo")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("h2 answer within 10 s")
        .expect("response");
    assert_eq!(resp.status(), 400);

    // HTTP/1.1 absolute-form; the authority has no port, so a naive
    // `host:port` split would log the user name as the host.
    let mut sock = std::net::TcpStream::connect(edge).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    sock.write_all(
        format!(
            "GET http://bob:H1-PASSWORD@{HOST}/asset HTTP/1.1\r\nHost: {HOST}\r\nReferer: http://tag.test/h1-userinfo\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("send");
    let mut head = Vec::new();
    sock.read_to_end(&mut head).expect("read the answer");
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&head));

    let h2 = line_with_referer(&gw, "http://tag.test/h2-userinfo").await;
    assert_eq!((&h2["cs(Host)"], &h2["x-host-header"]), (&json!(HOST), &json!(format!("{HOST}:8443"))), "{h2}");
    assert_eq!(h2["cs-protocol-version"], "HTTP/2.0", "{h2}");
    let h1 = line_with_referer(&gw, "http://tag.test/h1-userinfo").await;
    assert_eq!((&h1["cs(Host)"], &h1["x-host-header"]), (&json!(HOST), &json!(HOST)), "{h1}");
    for line in [&h2, &h1] {
        assert_eq!(line["x-edge-detailed-result-type"], "InvalidRequestHeader", "{line}");
    }
    let log = gw.log();
    for secret in ["PASSWORD", "alice", "bob"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_tsv_format_and_its_switches() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  access_log:\n    format: tsv\n    edge_location: edge-tsv\n")
        .spawn()
        .await;
    let a = TestOrigin::start(vec![("/asset", OriginFile::new("tsv"))]).await;
    let b = TestOrigin::start(vec![]).await;
    edge_setup(&gw, &a, &b).await;
    let edge = gw.edge_plain[0];
    let ua = "Tab\tand \"quotes\"";
    assert_eq!(get(edge, HOST, "/asset", &[("referer", "http://tag.test/tsv"), ("user-agent", ua)]).await.0, 200);

    // `#Version` and `#Fields` once, then one CloudFront line per request:
    // 33 columns in CloudFront's order, then shardgate's.
    let rows = eventually(10, "the tsv line", || async {
        let log = gw.log();
        let rows: Vec<String> =
            log.lines().filter_map(|l| l.split_once("shardgate::access: ").map(|(_, m)| m.to_owned())).collect();
        rows.iter().any(|r| r.contains("http://tag.test/tsv")).then_some(rows)
    })
    .await;
    assert_eq!(rows[0], "#Version: 1.0");
    let names: Vec<&str> = rows[1].strip_prefix("#Fields: ").expect("#Fields line").split(' ').collect();
    assert_eq!(names.len(), 39);
    assert_eq!(rows.iter().filter(|r| r.starts_with('#')).count(), 2, "{rows:?}");
    let row = rows.iter().find(|r| r.contains("http://tag.test/tsv")).expect("row");
    let values: Vec<&str> = row.split('\t').collect();
    assert_eq!(values.len(), names.len(), "{row}");
    let field: HashMap<&str, &str> = names.iter().copied().zip(values.iter().copied()).collect();
    for (name, want) in [
        ("x-edge-location", "edge-tsv"),
        ("cs-method", "GET"),
        ("cs-uri-stem", "/asset"),
        ("sc-status", "200"),
        ("cs(User-Agent)", "Tab%09and%20%22quotes%22"),
        ("cs-uri-query", "-"),
        ("cs(Cookie)", "-"),
        ("x-edge-result-type", "Miss"),
        ("ssl-protocol", "-"),
        ("fle-status", "-"),
        ("sc-content-len", "3"),
        ("distribution-id", "prod"),
        ("x-shardgate-waf-action", "allow"),
    ] {
        assert_eq!(field[name], want, "{name} in {row}");
    }
    let taken = field["time-taken"];
    assert!(taken.len() >= 5 && taken.as_bytes()[taken.len() - 4] == b'.', "seconds with 3 decimals: {taken}");
    drop(gw);

    // `enabled: false`, and a log filter that silences the target: no line,
    // while the rest of the log goes on.
    for (edge_yaml, log_yaml) in
        [("  access_log:\n    enabled: false\n", ""), ("", "log:\n  level: info,shardgate::access=off\n")]
    {
        let gw = gateway()
            .tls_listeners(0)
            .edge_http(1)
            .edge_yaml(edge_yaml)
            .yaml(log_yaml)
            .log_level_from_file()
            .spawn()
            .await;
        edge_setup(&gw, &a, &b).await;
        // Several requests, on their own connections, so that each of the
        // gateway's worker threads is likely to have handled one.
        for _ in 0..8 {
            assert_eq!(get(gw.edge_plain[0], HOST, "/asset", &[("referer", "http://tag.test/off")]).await.0, 200);
        }
        // A later line the log does write (the Admin API warns of a wrong
        // key): once it is there, an access line would have been too. It
        // must be there: a filtered-out access log must not swallow the
        // next line of the thread that served the request.
        let marker = "/apisix/admin/routes/after-the-edge-requests";
        let wrong = gw.admin_with_key(Some("not-the-key")).request("GET", marker, None).await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
        let log = eventually(10, "the wrong-key warning", || async {
            let log = gw.log();
            log.contains(marker).then_some(log)
        })
        .await;
        assert!(log.contains("shardgate ready"), "{log}");
        assert!(!log.contains("tag.test") && !log.contains("edge request"), "{edge_yaml}{log_yaml}: {log}");
    }
}

/// A log writer for in-process subscribers: everything goes to one buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With `shardgate::access=off` in the log filter, starting an access-log
/// entry must not swallow the thread's next log line. The binary's log
/// layer has a per-layer filter (reloadable); asking tracing whether a
/// target is enabled outside an event (`tracing::enabled!`) leaves that
/// filter's per-thread state set, and the next event on the thread is
/// dropped (tokio-rs/tracing#2704). Same subscriber shape as the binary's,
/// in process, so the thread is known.
#[test]
fn a_silenced_access_log_does_not_swallow_the_next_log_line() {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let out = Captured::default();
    let writer = out.clone();
    let (filter, _reload) = tracing_subscriber::reload::Layer::new(EnvFilter::new("info,shardgate::access=off"));
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone());
    let filter = filter.and(shardgate_core::trace::log_filter());
    // No trace export: the binary's span layer is `None`.
    let spans: Option<tracing_subscriber::filter::Filtered<tracing_subscriber::layer::Identity, _, _>> =
        None.map(|l: tracing_subscriber::layer::Identity| l.with_filter(shardgate_core::trace::span_filter()));
    let subscriber = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(spans);
    let log = shardgate_http::AccessLog::new(&shardgate_http::AccessLogSettings {
        enabled: true,
        format: shardgate_http::AccessLogFormat::Fields,
        edge_location: "edge-unit".into(),
    });
    let req = hyper::Request::get("/asset").header("host", HOST).body(()).expect("request");
    let conn = shardgate_http::service::ConnInfo {
        client: "127.0.0.1:40000".parse().expect("address"),
        local: "127.0.0.1:8080".parse().expect("address"),
        tls: None,
        tls_session: None,
    };
    tracing::subscriber::with_default(subscriber, || {
        let entry = log.start(&req, &conn);
        tracing::warn!(target: "shardgate::admin", "the line after the request");
        drop(entry);
        tracing::warn!(target: "shardgate::admin", "the line after the entry");
    });
    let text = String::from_utf8(out.0.lock().expect("log buffer").clone()).expect("UTF-8");
    assert!(text.contains("the line after the request"), "{text}");
    assert!(text.contains("the line after the entry"), "{text}");
    assert!(!text.contains("edge request") && !text.contains("shardgate::access"), "{text}");
}

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/shardgate-dashboard.json");
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus");

/// Metric names in a PromQL expression (or, with `in_text`, in an
/// annotation's prose): identifiers that start with one of `prefixes`, not
/// a `$variable`, and (in PromQL) outside string literals.
fn metric_names(expr: &str, prefixes: &[&str], in_text: bool) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !in_text && matches!(c, b'"' | b'\'' | b'`') {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let variable = start > 0 && b[start - 1] == b'$';
            if !variable && prefixes.iter().any(|p| word.starts_with(p)) {
                out.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every name a query can select in a classic-format exposition: samples,
/// and every family named in a `# TYPE` line (a histogram as its `_bucket`,
/// `_sum` and `_count` series; its bare name selects nothing).
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            match kind {
                "histogram" => out.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
                "summary" => out.extend([String::new(), "_sum".into(), "_count".into()].map(|s| format!("{name}{s}"))),
                _ => {
                    out.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_owned());
        }
    }
    out
}

/// The alerting rules file, parsed.
fn rules() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{RULES_DIR}/shardgate-rules.yml")).expect("read the rules");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("the rules are YAML");
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// Every `expr` of the dashboard's panels, with the panel's title.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default().to_owned();
            out.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = std::path::Path::new(RULES_DIR);
    let out = bash("promtool check rules shardgate-rules.yml".into(), dir).await;
    let rules = rules();
    assert!(
        out.status.success(),
        "promtool check rules (the README's test command installs promtool):\n{}",
        text(&out)
    );
    assert!(text(&out).contains(&format!("SUCCESS: {} rules found", rules.len())), "{}", text(&out));
    let out = bash("promtool test rules shardgate-rules.test.yml".into(), dir).await;
    assert!(out.status.success() && text(&out).contains("SUCCESS"), "promtool test rules:\n{}", text(&out));

    // Every alert: a `for:`, a severity, a summary and a description; and
    // the unit tests show it both firing and quiet.
    let tests: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir.join("shardgate-rules.test.yml")).expect("read the rule tests"),
    )
    .expect("the rule tests are YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("cases"))
        .collect();
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("only alerting rules");
        assert!(names.insert(name), "{name} is defined twice");
        assert!(rule["for"].as_str().is_some_and(|f| !f.is_empty()), "{name} has no `for:`");
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for a in ["summary", "description"] {
            assert!(rule["annotations"][a].as_str().is_some_and(|s| s.len() > 10), "{name}: annotation {a}");
        }
        let of = |firing: bool| {
            cases
                .iter()
                .any(|c| c["alertname"] == name && c["exp_alerts"].as_array().is_some_and(|a| a.is_empty() != firing))
        };
        assert!(of(true) && of(false), "{name} needs a firing and a quiet case in shardgate-rules.test.yml");
    }
    for must in [
        "ShardgateEdgeRequestRateDrop",
        "ShardgateEdgeHigh5xxRatio",
        "ShardgateEdgeOriginLatencyHigh",
        "ShardgateUpstreamNodeUnhealthy",
        "ShardgateUpstreamFailOpen",
        "ShardgateTLSHandshakeFailureSurge",
        "ShardgateTargetDown",
        "ShardgateTargetsAbsent",
        "ShardgateConfigApplyErrors",
        "ShardgateStoreDown",
        "ShardgateCertificateExpiringSoon",
        "ShardgateProcessNearFdLimit",
        "EtcdFrequentLeaderChanges",
        "EtcdSlowWALFsync",
        "EtcdSlowPeerRoundTrip",
    ] {
        assert!(names.contains(must), "{must} is missing from the rules");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_well_formed_and_its_queries_parse() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("read the dashboard")).expect("valid JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "uid");
    assert!(dashboard["id"].is_null(), "an exported dashboard has no id");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["type"] == "datasource" && i["pluginId"] == "prometheus"),
        "the import asks for a Prometheus datasource"
    );
    let datasource = json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    for var in dashboard["templating"]["list"].as_array().expect("variables") {
        assert_eq!(var["datasource"], datasource, "variable {}", var["name"]);
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut rects: Vec<(u64, u64, u64, u64, String)> = Vec::new();
    let mut rows = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title").to_owned();
        assert!(ids.insert(p["id"].as_u64().expect("numeric id")), "id {} is not unique ({title})", p["id"]);
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else { panic!("{title}: gridPos {g}") };
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g} outside the 24 columns");
        for (ox, oy, ow, oh, other) in &rects {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        rects.push((x, y, w, h, title.clone()));
        if p["type"] == "row" {
            rows.push(title);
            continue;
        }
        assert_eq!(p["datasource"], datasource, "{title}: panel datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}: target datasource");
            assert!(t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "{title}: empty expr");
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}: refId twice");
        }
    }
    for row in ["Stream gateway", "Edge", "WAF", "Control plane", "Process"] {
        assert!(rows.iter().any(|r| r.starts_with(row)), "no {row} row in {rows:?}");
    }

    // Every metric selector filters by the dashboard's job and instance.
    let exprs = dashboard_exprs(&dashboard);
    for (title, expr) in &exprs {
        for name in metric_names(expr, &["shardgate_", "process_"], false) {
            for (at, _) in expr.match_indices(&name) {
                let rest = &expr[at + name.len()..];
                let matchers = rest.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(m, _)| m);
                assert!(
                    matchers.is_some_and(|m| m.contains("job=~\"$job\"") && m.contains("instance=~\"$instance\"")),
                    "{title}: {name} is not filtered by $job and $instance in {expr}"
                );
            }
        }
    }

    // Every query is valid PromQL: promtool parses them as recording rules,
    // with Grafana's variables replaced as Grafana would.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("json")
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("dashboard-queries.yml"), rules).expect("write");
    let out = bash("promtool check rules dashboard-queries.yml".into(), dir.path()).await;
    assert!(out.status.success(), "a dashboard query does not parse:\n{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_rules_name_only_metrics_the_gateway_exports() {
    let udp = shardgate_e2e::udp::free_port("127.0.0.1");
    let gw =
        gateway().edge_http(1).stream_web_acl("players").stream_yaml(&format!("  udp: [\"{udp}\"]\n")).spawn().await;
    // Stream traffic: a TLS session through a health-checked upstream, a
    // UDP session, a client that does not speak TLS, and one the listener's
    // web ACL refuses.
    let gs = GameServer::start("gs").await;
    let ugs = shardgate_e2e::UdpGameServer::start("ugs").await;
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok(
            "/apisix/admin/upstreams/u1",
            &json!({"nodes": {gs.addr.to_string(): 1},
                    "checks": {"active": {"type": "tcp", "healthy": {"interval": 1}, "unhealthy": {"interval": 1}}}}),
        )
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r1", &json!({"sni": "gs-1.com", "upstream_id": "u1"})).await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/udp",
            &json!({"server_port": udp.port(), "upstream": {"nodes": {ugs.node(): 1}}}),
        )
        .await;
    common::ban_with_web_acl(&admin, "127.0.0.2/32", "players").await;
    gw.applied().await;
    let client = TlsClient::default();
    let mut s = eventually(5, "routed", || async { client.connect(gw.tls_addr(), Some("gs-1.com")).await.ok() }).await;
    assert_eq!(roundtrip(&mut s, "hello").await, "[gs] hello");
    let player = shardgate_e2e::UdpClient::new().await;
    let reply = eventually(5, "a UDP session", || async {
        player.roundtrip_tries(udp, "udp-hello", 2, Duration::from_millis(500)).await
    })
    .await;
    assert!(reply.ends_with("udp-hello"), "{reply}");
    let mut not_tls = std::net::TcpStream::connect(gw.tls_addr()).expect("connect");
    not_tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut sink = Vec::new();
    not_tls.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    // The gateway answers with an alert or a reset, and closes.
    if let Err(e) = not_tls.read_to_end(&mut sink) {
        let timed_out = matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
        assert!(!timed_out, "the gateway kept a connection that does not speak TLS open: {e}");
    }
    let banned = tokio::net::TcpSocket::new_v4().expect("socket");
    banned.bind("127.0.0.2:0".parse().expect("address")).expect("bind 127.0.0.2");
    let banned = banned.connect(gw.tls_addr()).await.expect("connect");
    // Edge traffic: a miss, a hit, a WAF block, a staging request, an unknown host.
    let a = TestOrigin::start(vec![("/asset", OriginFile::new("a"))]).await;
    let b = TestOrigin::start(vec![("/resource_b/asset", OriginFile::new("b"))]).await;
    edge_setup(&gw, &a, &b).await;
    let edge = gw.edge_plain[0];
    for headers in [vec![], vec![], vec![("user-agent", "PostmanRuntime/7.29.2")], vec![("aws-cf-cd-resource", "b")]] {
        get(edge, HOST, "/asset", &headers).await;
    }
    get(edge, "nobody.test", "/", &[]).await;
    let text = eventually(10, "samples of every kind of traffic", || async {
        let t = gw.metrics_text().await;
        [
            "shardgate_upstream_node_healthy{",
            "shardgate_stream_udp_sessions_active{",
            "shardgate_stream_tls_handshake_failures_total{",
            "shardgate_stream_waf_refused_total{",
            "shardgate_waf_requests_total{",
        ]
        .iter()
        .all(|series| t.contains(series))
        .then_some(t)
    })
    .await;
    drop((s, banned));
    let exposed = exposed_names(&text);

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("read the dashboard")).expect("valid JSON");
    let mut used: Vec<(String, String)> = Vec::new();
    for (title, expr) in dashboard_exprs(&dashboard) {
        for name in metric_names(&expr, &["shardgate_", "process_"], false) {
            used.push((format!("dashboard panel {title:?}"), name));
        }
    }
    for rule in rules() {
        let alert = rule["alert"].as_str().expect("alert").to_owned();
        for name in metric_names(rule["expr"].as_str().expect("expr"), &["shardgate_", "process_"], false) {
            used.push((format!("alert {alert}"), name));
        }
        for a in ["summary", "description"] {
            for name in metric_names(rule["annotations"][a].as_str().unwrap_or(""), &["shardgate_", "process_"], true) {
                used.push((format!("alert {alert} ({a})"), name));
            }
        }
    }
    assert!(used.len() > 60, "the parser found the names: {used:?}");
    let missing: Vec<String> =
        used.iter().filter(|(_, n)| !exposed.contains(n)).map(|(w, n)| format!("{w}: {n}")).collect();
    assert!(
        missing.is_empty(),
        "metrics that /metrics does not export:\n{}\n\nexported: {exposed:?}",
        missing.join("\n")
    );
    // Histograms are queried through their series, never by the bare name.
    for histogram in ["shardgate_edge_origin_response_seconds", "shardgate_stream_tls_handshake_duration_seconds"] {
        assert!(exposed.contains(&format!("{histogram}_bucket")) && !exposed.contains(histogram));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_alert_rules_name_metrics_etcd_exports() {
    let names: BTreeSet<String> =
        rules().iter().flat_map(|r| metric_names(r["expr"].as_str().expect("expr"), &["etcd_"], false)).collect();
    assert!(names.len() >= 3, "{names:?}");
    // Three members, so the peer round-trip histogram has observations.
    let cluster = shardgate_e2e::EtcdCluster::start(3).await;
    let addr: std::net::SocketAddr =
        cluster.endpoint(0).trim_start_matches("http://").parse().expect("the member's client address");
    let text = eventually(30, "etcd's peer round-trip histogram", || async {
        let body = shardgate_e2e::admin::http(addr, "GET", "/metrics", &[], None).await.body;
        body.contains("etcd_network_peer_round_trip_time_seconds_bucket{").then_some(body)
    })
    .await;
    let exposed = exposed_names(&text);
    let missing: Vec<&String> = names.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(missing.is_empty(), "etcd does not export {missing:?}");
}
