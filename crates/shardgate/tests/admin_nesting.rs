//! No input may crash the process: a web ACL whose statement nests
//! `NotStatement` 60 deep (JSON depth ~125, under serde_json's own limit of
//! 128) once overflowed a worker's stack and aborted the gateway, dropping
//! every player. Bodies deeper than `shardgate_model::json::MAX_DEPTH` (80)
//! levels are refused with 400 before anything recurses over them, and the
//! players stay connected.

mod common;

use common::{gateway, text};
use serde_json::json;
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};
use shardgate_model::json::MAX_DEPTH;

const LEAF: &str = r#"{"ByteMatchStatement": {"SearchString": "x", "FieldToMatch": {"UriPath": {}},
    "TextTransformations": [{"Priority": 0, "Type": "NONE"}], "PositionalConstraint": "CONTAINS"}}"#;

/// A web ACL with one rule whose statement is `levels` NotStatements deep.
fn deep_acl(levels: usize) -> String {
    let mut statement = LEAF.to_owned();
    for _ in 0..levels {
        statement = format!(r#"{{"NotStatement": {{"Statement": {statement}}}}}"#);
    }
    format!(
        r#"{{"Name": "deep", "DefaultAction": {{"Allow": {{}}}},
        "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deep"}},
        "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
          "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
          "Statement": {statement}}}]}}"#
    )
}

/// Nesting depth of JSON text without brackets inside strings.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '{' | '[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    deepest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_bodies_get_400_and_players_stay_connected() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let gs = GameServer::start("gs-1").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let client = TlsClient::default();
    let mut player =
        eventually(10, "gs-1 routed", || async { client.connect(gw.tls_addr(), Some("gs-1.com")).await.ok() }).await;
    assert_eq!(roundtrip(&mut player, "before").await, "[gs-1] before");

    let body = deep_acl(60);
    for (method, path) in [("PUT", "/apisix/admin/web_acls/x"), ("POST", "/apisix/admin/schema/validate/web_acls")] {
        let r = admin.try_request(method, path, Some(&body)).await.unwrap_or_else(|e| {
            panic!("{method} {path}: no answer ({e}); the gateway log:\n{}", gw.log());
        });
        assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error_msg"], "invalid request body: JSON nests deeper than 80 levels", "{method} {path}");
    }
    // A PATCH whose result nests deeper than either part: a value at the
    // limit, put one level down by a sub-path PATCH.
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {"127.0.0.1:9": 1}, "desc": "x"})).await;
    let deep_value = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    let r = admin.request("PATCH", "/apisix/admin/upstreams/u/nodes", Some(&deep_value)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error_msg"], "invalid request body: JSON nests deeper than 80 levels");
    let r = admin.request("PATCH", "/apisix/admin/stream_routes/1/upstream/nodes", Some(&deep_value)).await;
    assert_eq!(r.status, 405, "stream routes take no PATCH, as in APISIX: {}", r.body);

    // Nothing was dropped: the open session continues, a new one works, the
    // process is the same one.
    assert_eq!(roundtrip(&mut player, "after").await, "[gs-1] after");
    let mut fresh = client.connect(gw.tls_addr(), Some("gs-1.com")).await.expect("a new player connects");
    assert_eq!(try_roundtrip(&mut fresh, "new").await.as_deref(), Some("[gs-1] new"));
    assert_eq!(gw.readyz().await, 200);
    assert!(!gw.log().contains("overflowed its stack"), "{}", gw.log());
    assert_eq!(admin.list("web_acls").await["total"], 0, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_acl_under_the_limit_still_answers_on_a_worker_stack() {
    // About 38 statement levels fit in the JSON bound: the gateway parses
    // them (the WAF refuses such depth, with the path named) without
    // overflowing, in the debug build the tests run.
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let mut levels = 0;
    while json_depth(&deep_acl(levels + 1)) <= MAX_DEPTH {
        levels += 1;
    }
    assert!(levels > 21, "the Admin API's limit leaves room for deep statements: {levels}");
    let r = admin.request("PUT", "/apisix/admin/web_acls/x", Some(&deep_acl(levels))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("Rules[0].Statement") && msg.contains("at most 21 deep"), "the WAF names the path: {msg}");
    let r = admin.request("PUT", "/apisix/admin/web_acls/ok", Some(&deep_acl(3))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(gw.readyz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_bootstrap_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Far past serde_yaml_ng's recursion limit (128); the typed config
    // refuses it at the first level that is not a listener.
    let yaml = format!("stream:\n  tcp: {}{}\n", "[".repeat(5_000), "]".repeat(5_000));
    std::fs::write(dir.path().join("deep.yaml"), yaml).expect("write");
    let out =
        common::bash(format!("{} validate --config deep.yaml", env!("CARGO_BIN_EXE_shardgate")), dir.path()).await;
    assert_eq!(out.status.code(), Some(1), "an error exit, not a signal: {}", text(&out));
    assert!(text(&out).contains("deep.yaml"), "{}", text(&out));
}
