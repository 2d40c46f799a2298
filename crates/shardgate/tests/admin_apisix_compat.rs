//! The Admin API answers as APISIX 3.x does for `ssls`, `upstreams` and
//! `stream_routes`: status codes and body shapes checked
//! against APISIX's source (`apisix/admin/init.lua`, `resource.lua`,
//! `utils.lua`, `v3_adapter.lua`, `apisix/init.lua` `cors_admin`) and its
//! `t/admin/*.t` tests.

mod common;

use std::time::Duration;

use common::gateway;
use serde_json::{Value, json};
use shardgate_e2e::admin::http;
use shardgate_e2e::{ADMIN_KEY, GameServer, TestCert, TlsClient, eventually};

const KEY_HEADER: (&str, &str) = ("X-API-KEY", ADMIN_KEY);

fn node(port: u16) -> Value {
    json!({ format!("127.0.0.1:{port}"): 1 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_to_the_collection_takes_the_id_from_the_body() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let r = admin.put("/apisix/admin/upstreams", &json!({"id": "u1", "nodes": node(9001)})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["key"], "/apisix/upstreams/u1");
    assert_eq!(r.json()["value"]["id"], "u1");
    let r = admin.put("/apisix/admin/upstreams", &json!({"id": "u1", "nodes": node(9002)})).await;
    assert_eq!(r.status, 200, "replaced: {}", r.body);
    let r = admin.put("/apisix/admin/upstreams", &json!({"id": 7, "nodes": node(9001)})).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (201, Some("/apisix/upstreams/7")), "{}", r.body);
    let r = admin.put("/apisix/admin/upstreams", &json!({"nodes": node(9001)})).await;
    assert_eq!((r.status, r.json()), (400, json!({"error_msg": "missing upstream id"})));

    let cert = TestCert::ecdsa(&["gs-1.com"]);
    let mut body = cert.ssl_body(&["gs-1.com"]);
    body["id"] = json!("s1");
    let r = admin.put("/apisix/admin/ssls", &body).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (201, Some("/apisix/ssls/s1")), "{}", r.body);
    assert!(r.json()["value"].get("key").is_none(), "never the private key");
    let r =
        admin.put("/apisix/admin/stream_routes", &json!({"id": "r1", "sni": "gs-1.com", "upstream_id": "u1"})).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (201, Some("/apisix/stream_routes/r1")), "{}", r.body);
    let r = admin.put("/apisix/admin/stream_routes", &json!({"sni": "gs-1.com", "upstream_id": "u1"})).await;
    assert_eq!((r.status, r.json()), (400, json!({"error_msg": "missing stream route id"})));

    // `.` and `..` are refused as ids, in the path (sent as is) and in a body.
    for path in ["/apisix/admin/upstreams/..", "/apisix/admin/upstreams/.", "/apisix/admin/upstreams/%2E%2E"] {
        let r = admin.request("PUT", path, Some(&json!({"nodes": node(9001)}).to_string())).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.json()["error_msg"].as_str().unwrap_or_default().contains("dot-segments"), "{path}: {}", r.body);
    }
    let r = admin.put("/apisix/admin/upstreams", &json!({"id": "..", "nodes": node(9001)})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(admin.list("upstreams").await["total"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_count_total_after_filtering_then_page() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    for i in 1..=12 {
        let env = if i % 2 == 1 { "prod" } else { "staging" };
        admin
            .put_ok(
                &format!("/apisix/admin/upstreams/u{i:02}"),
                &json!({"name": format!("game-{i}"), "labels": {"env": env}, "nodes": node(9000 + i)}),
            )
            .await;
    }
    let list = |q: &str| {
        let admin = admin.clone();
        let q = q.to_owned();
        async move {
            let r = admin.get(&format!("/apisix/admin/upstreams{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            let v = r.json();
            let names: Vec<String> = v["list"]
                .as_array()
                .expect("list")
                .iter()
                .map(|e| {
                    assert!(e["createdIndex"].is_u64() && e["modifiedIndex"].is_u64() && e["key"].is_string());
                    e["value"]["name"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            (v["total"].as_u64().expect("total"), names)
        }
    };
    // name: a regular expression found anywhere (APISIX's ngx.re.find).
    let (total, names) = list("?name=game-1").await;
    assert_eq!(total, 4, "{names:?}");
    assert!(names.iter().all(|n| ["game-1", "game-10", "game-11", "game-12"].contains(&n.as_str())));
    assert_eq!(list("?name=%5Egame-1%24").await.0, 1, "anchored");
    // label: a key (as APISIX), or key:value.
    assert_eq!(list("?label=env").await.0, 12);
    assert_eq!(list("?label=env:prod").await.0, 6);
    assert_eq!(list("?label=prod").await.0, 0, "values are not keys");
    assert_eq!(list("?label=").await.0, 0, "as APISIX's t/admin/filter.t");
    // Filtering comes before paging, and total counts the filtered list.
    let (total, names) = list("?label=env:prod&page=1&page_size=10").await;
    assert_eq!((total, names.len()), (6, 6));
    let (total, names) = list("?page=2&page_size=10").await;
    assert_eq!((total, names.len()), (12, 2));
    let (total, names) = list("?name=game&page=10&page_size=10").await;
    assert_eq!((total, names.len()), (12, 0));
    let r = admin.get("/apisix/admin/upstreams?name=(").await;
    assert_eq!(r.status, 400, "{}", r.body);

    // filter: reference fields of stream routes (APISIX 3.13).
    for (id, up) in [("r1", "u01"), ("r2", "u02"), ("r3", "u01")] {
        admin
            .put_ok(&format!("/apisix/admin/stream_routes/{id}"), &json!({"server_port": 9100, "upstream_id": up}))
            .await;
    }
    let r = admin.get("/apisix/admin/stream_routes?filter=upstream_id%3Du01").await;
    assert_eq!(r.json()["total"], 2, "{}", r.body);
    assert!(r.json()["list"].as_array().expect("list").iter().all(|e| e["value"]["upstream_id"] == "u01"));
    let r = admin.get("/apisix/admin/stream_routes?filter=service_id%3D1").await;
    assert_eq!((r.status, r.json()["total"].as_u64()), (200, Some(0)));
    let r = admin.get("/apisix/admin/upstreams?filter=upstream_id%3D1").await;
    assert_eq!(r.status, 400, "upstreams take no reference filter: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expires_resources_also_across_a_restart() {
    let mut gw = gateway().spawn().await;
    let admin = gw.admin();
    for (ttl, msg) in [
        ("abc", "invalid argument ttl: should be a number"),
        // APISIX hands the number to lua-resty-etcd's grant, which refuses fractions.
        ("1.5", "invalid argument ttl: ttl must be integer"),
        ("-1", "invalid argument ttl: should be a number of seconds greater than 0 and at most 9000000000"),
        ("0", "invalid argument ttl: should be a number of seconds greater than 0 and at most 9000000000"),
    ] {
        let r = admin.put(&format!("/apisix/admin/upstreams/t?ttl={ttl}"), &json!({"nodes": node(9001)})).await;
        assert_eq!((r.status, r.json()), (400, json!({"error_msg": msg})), "ttl={ttl}");
    }
    assert_eq!(admin.get("/apisix/admin/upstreams/t").await.status, 404, "a refused ttl stores nothing");

    // A route that expires: players reach the game server until it does.
    let gs = GameServer::start("gs-1").await;
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    let r = admin
        .put("/apisix/admin/stream_routes/r?ttl=3", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client = TlsClient::default();
    eventually(10, "gs-1 routed", || async { client.connect(gw.tls_addr(), Some("gs-1.com")).await.ok() }).await;
    let r = admin.post("/apisix/admin/upstreams?ttl=3", &json!({"nodes": node(9002)})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let posted = r.json()["key"].as_str().expect("key").trim_start_matches("/apisix").to_owned();
    // A write without ttl makes a resource permanent again (an etcd put
    // without a lease), as APISIX's PUT and PATCH do.
    admin.put_ok("/apisix/admin/upstreams/kept?ttl=2", &json!({"nodes": node(9003)})).await;
    admin.put_ok("/apisix/admin/upstreams/kept", &json!({"nodes": node(9003)})).await;

    eventually(20, "the route expired", || async {
        (admin.get("/apisix/admin/stream_routes/r").await.status == 404).then_some(())
    })
    .await;
    eventually(10, "players are no longer routed", || async {
        client.connect(gw.tls_addr(), Some("gs-1.com")).await.is_err().then_some(())
    })
    .await;
    eventually(10, "the posted upstream expired", || async {
        (admin.get(&format!("/apisix/admin{posted}")).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(admin.get("/apisix/admin/upstreams/kept").await.status, 200);
    assert!(gw.log().contains("key expired"), "{}", gw.log());

    // Expiry is stored: a resource whose time passes while the gateway is
    // down is gone when it comes back; a longer one is still there.
    admin.put_ok("/apisix/admin/upstreams/short?ttl=2", &json!({"nodes": node(9004)})).await;
    admin.put_ok("/apisix/admin/upstreams/long?ttl=3600", &json!({"nodes": node(9005)})).await;
    gw.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    gw.restart().await;
    let admin = gw.admin();
    assert_eq!(admin.get("/apisix/admin/upstreams/short").await.status, 404);
    assert_eq!(admin.get("/apisix/admin/upstreams/long").await.status, 200);
    assert_eq!(admin.get("/apisix/admin/upstreams/kept").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_are_stored_with_a_warning_and_the_metric() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let old = TestCert::expired(&["old.com"]);
    let r = admin.put("/apisix/admin/ssls/old", &old.ssl_body(&["old.com"])).await;
    assert_eq!(r.status, 201, "APISIX accepts expired certificates: {}", r.body);
    // 2020-01-01T00:00:00Z, the certificate's notAfter.
    eventually(10, "the expiry metric", || async {
        let v = gw.metric("shardgate_tls_certificate_expiry_timestamp_seconds{ssl=\"old\",sni=\"old.com\"}").await;
        (v == 1_577_836_800.0).then_some(())
    })
    .await;
    let log = gw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("already expired"))
        .unwrap_or_else(|| panic!("a warning names the expired certificate:\n{log}"));
    assert!(warning.contains("WARN") && warning.contains("ssl=old") && warning.contains("not_after_unix=1577836800"));
    let key_line = old.key.lines().nth(1).expect("a base64 line of the key");
    assert!(!log.contains(key_line), "the private key is never logged");

    let strict = gateway().admin_yaml("  refuse_expired_certificates: true").spawn().await;
    let r = strict.admin().put("/apisix/admin/ssls/old", &old.ssl_body(&["old.com"])).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error_msg"].as_str().unwrap_or_default().contains("expired"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_update_time_as_apisix_3() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let forbidden = |field: &str| json!({"error_msg": format!("the property is forbidden:  {field}")});
    let r = admin.put("/apisix/admin/upstreams/u", &json!({"nodes": node(9001), "create_time": 1})).await;
    assert_eq!((r.status, r.json()), (400, forbidden("create_time")));
    let r = admin.post("/apisix/admin/upstreams", &json!({"nodes": node(9001), "update_time": 1})).await;
    assert_eq!((r.status, r.json()), (400, forbidden("update_time")));
    let r = admin
        .put(
            "/apisix/admin/stream_routes/r",
            &json!({"server_port": 1, "upstream": {"nodes": node(9001), "create_time": 1}}),
        )
        .await;
    assert_eq!((r.status, r.json()), (400, forbidden("upstream.create_time")));
    // The dry run checks the schema only, which has both fields.
    let r =
        admin.post("/apisix/admin/schema/validate/upstreams", &json!({"nodes": node(9001), "create_time": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let created =
        admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": node(9001)})).await["value"]["create_time"]
            .as_i64()
            .expect("create_time");
    // A PATCH may set update_time; without it, update_time is now.
    let r = admin.request("PATCH", "/apisix/admin/upstreams/u", Some(r#"{"update_time": 1600000000}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["value"]["update_time"], 1_600_000_000);
    assert_eq!(r.json()["value"]["create_time"], created);
    let r = admin.request("PATCH", "/apisix/admin/upstreams/u", Some(r#"{"desc": "patched"}"#)).await;
    assert!(r.json()["value"]["update_time"].as_i64().expect("update_time") >= created, "{}", r.body);
    let r = admin.request("PATCH", "/apisix/admin/upstreams/u/update_time", Some("1600000000")).await;
    assert!(r.json()["value"]["update_time"].as_i64().expect("update_time") >= created, "sub-path PATCH: now");
    let r = admin.request("PATCH", "/apisix/admin/upstreams/u/create_time", Some("1500000000")).await;
    assert_eq!(r.json()["value"]["create_time"], 1_500_000_000, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_head_and_cors_as_apisix() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    admin.put_ok("/apisix/admin/upstreams/u1", &json!({"nodes": node(9001)})).await;
    let whole = admin.get("/apisix/admin/upstreams/u1").await.json();
    // A trailing slash changes nothing; a sub path of GET is the object.
    assert_eq!(admin.get("/apisix/admin/upstreams/u1/").await.json(), whole);
    assert_eq!(admin.get("/apisix/admin/upstreams/u1/nodes").await.json(), whole);
    assert_eq!(admin.get("/apisix/admin/upstreams/").await.json()["total"], 1);
    let r = admin.put("/apisix/admin/upstreams/u2/", &json!({"nodes": node(9002)})).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (201, Some("/apisix/upstreams/u2")), "{}", r.body);
    let r = admin.delete("/apisix/admin/upstreams/u2/").await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": "1", "key": "/apisix/upstreams/u2"})));

    // HEAD /apisix/admin answers 200 without a key, as APISIX's head handler.
    for headers in [vec![], vec![("X-API-KEY", "wrong-key-wrong-key")], vec![KEY_HEADER]] {
        assert_eq!(http(gw.admin, "HEAD", "/apisix/admin", &headers, None).await.status, 200);
    }
    assert_eq!(http(gw.admin, "GET", "/apisix/admin/upstreams", &[], None).await.status, 401);

    // APISIX's default CORS headers, and its preflight answer without a key.
    let r = admin.get("/apisix/admin/upstreams").await;
    for (h, v) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "*"),
        ("access-control-max-age", "3600"),
    ] {
        assert_eq!(r.header(h), Some(v), "{h}");
    }
    let r = http(gw.admin, "OPTIONS", "/apisix/admin/upstreams/u1", &[("Origin", "http://ops.example")], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-methods"), Some("POST, GET, PUT, OPTIONS, DELETE, PATCH"));
    assert_eq!(r.header("access-control-allow-headers"), Some("*"));

    let no_cors = gateway().admin_yaml("  cors: false").spawn().await;
    let r = no_cors.admin().get("/apisix/admin/upstreams").await;
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
    assert_eq!(http(no_cors.admin, "OPTIONS", "/apisix/admin/upstreams", &[], None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_nodes_and_host_rewrite_as_apisix_schema() {
    let gw = gateway().spawn().await;
    let admin = gw.admin();
    let r = admin.put("/apisix/admin/upstreams/v6", &json!({"nodes": {"::1:80": 1}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains(r#"property "nodes["::1:80"]""#) && msg.contains("without brackets") && msg.contains("[::1]:80"),
        "{msg}"
    );
    assert_eq!(admin.put("/apisix/admin/upstreams/v6", &json!({"nodes": {"[::1]:80": 1}})).await.status, 201);

    for (body, needle) in [
        (
            json!({"nodes": node(9001), "pass_host": "rewrite"}),
            r#"property "upstream_host" validation failed: is required"#,
        ),
        (json!({"nodes": node(9001), "pass_host": "rewrite", "upstream_host": ""}), "must not be empty"),
    ] {
        let r = admin.put("/apisix/admin/upstreams/h", &body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.json()["error_msg"].as_str().unwrap_or_default().contains(needle), "{}", r.body);
    }
    let r = admin
        .put(
            "/apisix/admin/upstreams/h",
            &json!({"nodes": node(9001), "pass_host": "rewrite", "upstream_host": "game.example"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}
