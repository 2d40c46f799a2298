//! Bad input gets a 400 whose `error_msg` names the problem, and nothing
//! stored before is lost or changed.

mod common;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::{Gateway, TestCert};

async fn everything(gw: &Gateway) -> (Value, Value, Value, f64) {
    let a = gw.admin();
    (
        a.list("ssls").await,
        a.list("upstreams").await,
        a.list("stream_routes").await,
        gw.metric("shardgate_config_generation").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_write_is_refused_and_changes_nothing() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let good = TestCert::rsa(&["gs-1.com"]);
    let other = TestCert::ecdsa(&["gs-2.com"]);
    admin.put_ok("/apisix/admin/ssls/1", &good.ssl_body(&["gs-1.com"])).await;
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {"127.0.0.1:9000": 1}})).await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"sni": "gs-1.com", "upstream_id": "u"})).await;
    shardgate_e2e::eventually(5, "the three writes published", || async {
        (gw.metric("shardgate_config_generation").await == 3.0).then_some(())
    })
    .await;
    let before = everything(&gw).await;

    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("bad JSON", "/apisix/admin/stream_routes/r", "{\"sni\": \"gs-1.com\",".into(), "invalid request body"),
        ("unknown field", "/apisix/admin/stream_routes/r", json!({"sni": "gs-1.com", "upstream_id": "u", "priority": 5}).to_string(), "property \"priority\""),
        ("missing field", "/apisix/admin/ssls/1", json!({"cert": good.cert, "snis": ["gs-1.com"]}).to_string(), "property \"key\""),
        ("missing upstream", "/apisix/admin/stream_routes/r", json!({"sni": "gs-1.com"}).to_string(), "property \"upstream\""),
        ("key of another certificate", "/apisix/admin/ssls/1", json!({"cert": good.cert, "key": other.key, "snis": ["gs-1.com"]}).to_string(), "does not match"),
        ("unparsable certificate", "/apisix/admin/ssls/1", json!({"cert": format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", "QUJD".repeat(40)), "key": good.key, "snis": ["gs-1.com"]}).to_string(), "property \"cert\""),
        // An expired certificate is accepted, as APISIX accepts it (with a
        // warning; admin.refuse_expired_certificates refuses it): see
        // admin_apisix_compat.rs.
        ("invalid SNI", "/apisix/admin/ssls/1", good.ssl_body(&["gs_1..com"]).to_string(), "property \"snis[0]\""),
        ("wildcard in the middle", "/apisix/admin/stream_routes/r", json!({"sni": "gs.*.com", "upstream_id": "u"}).to_string(), "property \"sni\""),
        ("node address without a valid port", "/apisix/admin/upstreams/u", json!({"nodes": {"127.0.0.1:http": 1}}).to_string(), "nodes[\"127.0.0.1:http\"]"),
        ("node host that cannot parse", "/apisix/admin/stream_routes/r", json!({"sni": "gs-1.com", "upstream": {"nodes": {"game server:9000": 1}}}).to_string(), "upstream.nodes"),
        ("bad CIDR", "/apisix/admin/stream_routes/r", json!({"sni": "gs-1.com", "upstream_id": "u", "remote_addr": "127.0.0.0/99"}).to_string(), "property \"remote_addr\""),
        ("dangling upstream_id", "/apisix/admin/stream_routes/r", json!({"sni": "gs-1.com", "upstream_id": "nope"}).to_string(), "upstream id [nope]"),
        ("id mismatch", "/apisix/admin/upstreams/u", json!({"id": "v", "nodes": {"127.0.0.1:9000": 1}}).to_string(), "wrong upstream id"),
        ("unsupported feature", "/apisix/admin/upstreams/u", json!({"nodes": {"127.0.0.1:9000": 1}, "scheme": "tls"}).to_string(), "property \"scheme\""),
        ("passive-only health checks", "/apisix/admin/upstreams/u", json!({"nodes": {"127.0.0.1:9000": 1}, "checks": {"passive": {}}}).to_string(), "property \"checks.active\""),
    ];
    for (what, path, body, needle) in cases {
        let r = admin.request("PUT", path, Some(&body)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let msg = r.json()["error_msg"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{what}: APISIX error envelope: {}", r.body));
        assert!(msg.contains(needle), "{what}: {msg:?} should name {needle:?}");
        assert_eq!(everything(&gw).await, before, "{what}: nothing stored changed");
    }

    // Deleting an upstream a route still uses is refused.
    let r = admin.delete("/apisix/admin/upstreams/u").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_msg"], "can not delete this upstream, stream_route [r] is still using it now");
    // Without the key, or with a wrong one, nothing happens either.
    for key in [None, Some("not-the-key")] {
        let r = gw.admin_with_key(key).delete("/apisix/admin/stream_routes/r").await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(everything(&gw).await, before);
}
