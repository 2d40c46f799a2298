//! Origins like CloudFront's, through the real binary: keep-alive
//! connections reused across misses, HTTPS origins verified against a
//! `ca_bundle` (a wrong certificate is a 502 with the reason), origin request
//! policies (forwarded without joining the cache key), and behaviors that
//! allow methods with bodies (streamed to the origin, inspected by the web
//! ACL within its body limit, never cached).

mod common;

use std::time::Duration;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "api.example.com";

/// Puts distribution `id` for `host` with one origin `o` (its fields
/// merged into the inline upstream's origin) and `behaviors`, then waits
/// until the edge serves it.
async fn distribution(gw: &Gateway, id: &str, host: &str, origin: Value, extra: Value) {
    let mut body = json!({"hosts": [host], "origins": {"o": origin}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    gw.admin().put_ok(&format!("/apisix/admin/distributions/{id}"), &body).await;
    let edge = gw.edge_plain[0];
    eventually(10, "distribution live", || async {
        get(edge, host, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

fn inline(origin: &TestOrigin) -> Value {
    json!({"upstream": {"nodes": {origin.addr.to_string(): 1}}})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_misses_reuse_one_origin_connection() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let files = (0..8).map(|i| (format!("/f{i}"), OriginFile::new(vec![b'x'; 10_000]))).collect::<Vec<_>>();
    let origin = TestOrigin::start(files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect()).await;
    distribution(&gw, "d", HOST, inline(&origin), json!({})).await;
    let edge = gw.edge_plain[0];
    for i in 0..8 {
        let (status, h, body) = get(edge, HOST, &format!("/f{i}"), &[]).await;
        assert_eq!((status, body.len()), (200, 10_000));
        assert_eq!(h.get("x-cache").map(String::as_str), Some("Miss from shardgate"));
        // The connection returns to the pool once the fill has read the
        // body to its end, in the fill's task; a short pause lets it land
        // there before the next miss asks for one.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.connections(), 1, "every fetch (the readiness probes included) used one connection");
    let reused =
        gw.metric(r#"shardgate_edge_origin_connections_total{distribution="d",origin="o",reused="true"}"#).await;
    assert!(reused >= 8.0, "reused connections counted: {reused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_verified_against_its_ca_bundle() {
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml("  access_log:\n    edge_location: edge-origins\n")
        .yaml("log:\n  format: json\n")
        .spawn()
        .await;
    let origin =
        TestOrigin::start_tls(vec![("/secure.bin", OriginFile::new(vec![b's'; 5000]))], &["origin.internal.test"])
            .await;
    let ca = origin.ca_pem.clone().expect("test CA");
    let tls = |sni: &str| {
        let mut o = inline(&origin);
        if let Some(m) = o.as_object_mut() {
            m.insert("protocol_policy".into(), json!("https-only"));
            m.insert("ca_bundle".into(), json!(ca));
            m.insert("sni".into(), json!(sni));
        }
        o
    };
    distribution(&gw, "good", HOST, tls("origin.internal.test"), json!({})).await;
    distribution(&gw, "bad", "wrong.example.com", tls("other-name.test"), json!({})).await;
    let edge = gw.edge_plain[0];

    let (status, h, body) = get(edge, HOST, "/secure.bin", &[]).await;
    assert_eq!((status, body.len()), (200, 5000), "{h:?}");
    assert_eq!(origin.hits("/secure.bin"), 1);

    // The certificate is for origin.internal.test, not other-name.test.
    let (status, _, body) = get(edge, "wrong.example.com", "/secure.bin", &[("referer", "http://t.test/ssl")]).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("TLS handshake") && text.contains("other-name.test"), "{text}");
    assert_eq!(origin.hits("/secure.bin"), 1, "no request reached the origin");
    let line = line_with_referer(&gw, "http://t.test/ssl").await;
    assert_eq!(line["x-edge-detailed-result-type"], json!("OriginSslError"), "{line}");
    assert_eq!(line["sc-status"], json!(502), "{line}");
    assert!(gw.log().contains("TLS handshake with the origin failed"), "the reason is logged");
}
