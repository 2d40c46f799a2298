//! Edge resources through the Admin API: every bad input is a 400 naming
//! the field, nothing is stored, references are checked both ways.

mod common;

use common::gateway;
use serde_json::{Value, json};

async fn all_resources(gw: &shardgate_e2e::Gateway) -> Value {
    let admin = gw.admin();
    let mut out = serde_json::Map::new();
    for kind in ["distributions", "cache_policies", "continuous_deployment_policies", "invalidations", "upstreams"] {
        out.insert(kind.into(), admin.list(kind).await);
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_edge_resources_are_refused_with_the_field_named_and_nothing_changes() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {"127.0.0.1:1980": 1}})).await;
    admin.put_ok("/apisix/admin/cache_policies/p", &json!({"min_ttl": 1})).await;
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": ["a.example"], "origins": {"o": {"upstream_id": "u"}}, "default_behavior": {"cache_policy_id": "p"}}),
        )
        .await;
    let before = all_resources(&gw).await;

    let origin = json!({"o": {"upstream_id": "u"}});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("distributions/x", json!({"origins": origin}), "hosts"),
        ("distributions/x", json!({"hosts": ["*.*.bad"], "origins": origin}), "hosts[0]"),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": {"o": {"upstream_id": "missing"}}}),
            "origins.o.upstream_id",
        ),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:xx": 1}}}}}),
            "origins.o.upstream.nodes",
        ),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": {"o": {"upstream_id": "u", "origin_path": "/a/../b"}}}),
            "origins.o.origin_path",
        ),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": origin, "behaviors": [{"path_pattern": "/x*", "origin": "nope"}]}),
            "behaviors[0].origin",
        ),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": origin, "default_behavior": {"cache_policy_id": "nope"}}),
            "default_behavior.cache_policy_id",
        ),
        (
            "distributions/x",
            json!({"hosts": ["b.example"], "origins": origin, "default_behavior": {"rewrite": {"path_prefix_from_header": "bad header"}}}),
            "default_behavior.rewrite.path_prefix_from_header",
        ),
        ("distributions/x", json!({"hosts": ["b.example"], "origins": origin, "unknown": 1}), "unknown"),
        ("distributions/x", json!({"staging": true, "hosts": ["b.example"], "origins": origin}), "hosts"),
        ("cache_policies/x", json!({"min_ttl": 100, "default_ttl": 10}), "default_ttl"),
        ("cache_policies/x", json!({"query_strings": {"behavior": "some"}}), "query_strings.behavior"),
        (
            "continuous_deployment_policies/x",
            json!({"staging_distribution_id": "d", "enabled": true, "traffic": {"type": "single_header", "header": "h", "value": "v"}}),
            "staging_distribution_id",
        ),
        (
            "continuous_deployment_policies/x",
            json!({"staging_distribution_id": "d", "enabled": true, "traffic": {"type": "single_weight", "weight": 2}}),
            "traffic.weight",
        ),
        (
            "continuous_deployment_policies/x",
            json!({"staging_distribution_id": "d", "enabled": true, "traffic": {"type": "half"}}),
            "traffic.type",
        ),
        ("invalidations/x", json!({"distribution_id": "d", "paths": ["no-slash"]}), "paths[0]"),
        ("invalidations/x", json!({"distribution_id": "d", "paths": []}), "paths"),
    ];
    for (path, body, field) in cases {
        let r = admin.put(&format!("/apisix/admin/{path}"), &body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(field), "{path} {body}: error {msg:?} must name {field:?}");
    }
    // Still referenced: refused.
    for (path, who) in [("upstreams/u", "distribution [d]"), ("cache_policies/p", "distribution [d]")] {
        let r = admin.delete(&format!("/apisix/admin/{path}")).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains(who), "{path}: {}", r.body);
    }
    assert_eq!(all_resources(&gw).await, before, "nothing stored or changed");

    // Bad JSON.
    let r = admin.request("PUT", "/apisix/admin/distributions/x", Some("{\"hosts\": [")).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("invalid request body"), "{}", r.body);
    assert_eq!(all_resources(&gw).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_the_canary_weight_as_edit_policy_does() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/distributions/s",
            &json!({"staging": true, "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/continuous_deployment_policies/cd",
            &json!({"staging_distribution_id": "s", "enabled": true, "traffic": {"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"}}),
        )
        .await;
    // The seed's "Edit Policy": switch to 1 % of traffic. A sub-path PATCH
    // replaces the whole `traffic` object (a merge patch would keep the
    // header fields, RFC 7396, and fail validation).
    let r = admin
        .request(
            "PATCH",
            "/apisix/admin/continuous_deployment_policies/cd/traffic",
            Some(r#"{"type": "single_weight", "weight": 0.01}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["value"]["traffic"], json!({"type": "single_weight", "weight": 0.01}));
    let r = admin
        .request("PATCH", "/apisix/admin/continuous_deployment_policies/cd", Some(r#"{"traffic": {"weight": -1}}"#))
        .await;
    assert_eq!(r.status, 400);
    let stored = admin.get("/apisix/admin/continuous_deployment_policies/cd").await.json();
    assert_eq!(stored["value"]["traffic"]["weight"], 0.01, "a bad patch changes nothing");
}

/// Invalidations are history: once created they cannot be replaced or
/// patched, and they never keep a distribution from being deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_cannot_change_once_created() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": ["a.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1980": 1}}}}}),
        )
        .await;
    admin.put_ok("/apisix/admin/invalidations/i", &json!({"distribution_id": "d", "paths": ["/a"]})).await;
    let before = admin.get("/apisix/admin/invalidations/i").await.json();
    let r = admin.put("/apisix/admin/invalidations/i", &json!({"distribution_id": "d", "paths": ["/b"]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("cannot be changed"), "{}", r.body);
    let r = admin.request("PATCH", "/apisix/admin/invalidations/i", Some(r#"{"paths": ["/c"]}"#)).await;
    assert_eq!(r.status, 405, "{}", r.body);
    // Compared without `status`, which turns Completed when the data plane applies it.
    let stored = |mut v: serde_json::Value| {
        v["value"].as_object_mut().map(|o| o.remove("status"));
        v["value"].clone()
    };
    assert_eq!(stored(admin.get("/apisix/admin/invalidations/i").await.json()), stored(before), "unchanged");
    assert_eq!(admin.delete("/apisix/admin/distributions/d").await.status, 200, "history does not block a delete");
}
