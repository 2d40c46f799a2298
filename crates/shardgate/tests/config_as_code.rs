//! Configuration as code and backups, with the real binary: `export` a
//! gateway's resources to files, `diff` and `apply` them to another gateway
//! through its Admin API, `backup` a running gateway's store and `restore`
//! it into a fresh one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{ADMIN_KEY, AdminClient, GameServer, Gateway, TestCert, TlsClient, eventually};
use shardgate_model::ResourceKind;

const VIEWER_KEY: &str = "viewer-key-0123456789abcdef";

/// Runs `shardgate <args>` against `gw`'s Admin API with `key`, on a
/// blocking thread (the test's game servers keep serving meanwhile).
async fn cli_as(gw: &Gateway, key: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command.args(args).env("SHARDGATE_ADMIN_URL", format!("http://{}", gw.admin)).env("SHARDGATE_ADMIN_KEY", key);
    run(command).await
}

async fn cli(gw: &Gateway, args: &[&str]) -> Output {
    cli_as(gw, ADMIN_KEY, args).await
}

/// Runs `shardgate <args>` without an Admin API (backup, restore).
async fn store_cli(args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command.args(args).env_remove("SHARDGATE_ADMIN_URL").env("SHARDGATE_ADMIN_KEY", ADMIN_KEY);
    run(command).await
}

async fn run(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run shardgate")).await.expect("join")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every resource of a gateway, kind by kind: id → value without what the
/// server sets (times, an invalidation's status).
async fn resources(admin: &AdminClient) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for kind in ResourceKind::ALL {
        let list = admin.list(kind.plural()).await;
        let mut by_id = BTreeMap::new();
        for entry in list["list"].as_array().expect("list") {
            let mut value = entry["value"].clone();
            let obj = value.as_object_mut().expect("object");
            for f in ["create_time", "update_time", "status"] {
                obj.remove(f);
            }
            by_id.insert(obj["id"].as_str().expect("id").to_owned(), value);
        }
        out.insert(kind.plural().to_owned(), by_id);
    }
    out
}

/// The private key a gateway stores for an SSL object.
async fn stored_key(admin: &AdminClient, id: &str) -> Value {
    let r = admin.get(&format!("/apisix/admin/ssls/{id}?include_secrets=true")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["value"]["key"].clone()
}

/// Connects with SNI through the gateway's TLS listener and returns the
/// game server's answer.
async fn through(gw: &Gateway, sni: &str) -> Option<String> {
    let mut s = TlsClient::default().connect(gw.tls_addr(), Some(sni)).await.ok()?;
    Some(roundtrip(&mut s, "hello").await)
}

fn acl() -> Value {
    json!({"Name": "players", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "players"},
      "Rules": [{"Name": "banned", "Priority": 0, "Action": {"Block": {}},
        "Statement": {"IPSetReferenceStatement": {"ARN": "banned"}},
        "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "banned"}}]})
}

/// The set of seed 000's best practice: certificates, upstreams and routes
/// (one route naming its upstream by id, one naming a web ACL), an edge
/// distribution with its cache policy, a web ACL with its IP set, and an
/// invalidation.
async fn realistic_set(admin: &AdminClient, eu: &GameServer, us: &GameServer, c1: &TestCert, c2: &TestCert) {
    admin.put_ok("/apisix/admin/ssls/1", &c1.ssl_body(&["gs-1.com"])).await;
    admin.put_ok("/apisix/admin/ssls/2", &c2.ssl_body(&["gs-2.com", "gs-3.com"])).await;
    admin.put_ok("/apisix/admin/upstreams/eu", &json!({"nodes": {eu.node(): 1}, "type": "roundrobin"})).await;
    admin.put_ok("/apisix/admin/upstreams/us", &json!({"nodes": {us.node(): 1}, "desc": "us-east"})).await;
    admin
        .put_ok(
            "/apisix/admin/ip_sets/banned",
            &json!({"Name": "banned", "IPAddressVersion": "IPV4", "Addresses": ["127.0.0.2/32"]}),
        )
        .await;
    admin.put_ok("/apisix/admin/web_acls/players", &acl()).await;
    admin.put_ok("/apisix/admin/stream_routes/r1", &json!({"sni": "gs-1.com", "upstream_id": "eu"})).await;
    admin
        .put_ok("/apisix/admin/stream_routes/r2", &json!({"sni": "gs-2.com", "upstream": {"nodes": {eu.node(): 1}}}))
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/r3",
            &json!({"sni": "gs-3.com", "upstream_id": "us", "web_acl_id": "players"}),
        )
        .await;
    admin
        .put_ok("/apisix/admin/cache_policies/vendor", &json!({"headers": ["x-vendor-type"], "default_ttl": 3600}))
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({"hosts": ["assets.example"], "origins": {"s3": {"upstream_id": "eu", "origin_path": "/v2"}},
                    "default_behavior": {"cache_policy_id": "vendor"}, "web_acl_id": "players"}),
        )
        .await;
    admin
        .put_ok("/apisix/admin/invalidations/inv-1", &json!({"distribution_id": "assets", "paths": ["/patch/*"]}))
        .await;
}

/// The whole round: export with keys, the layout on disk, no difference
/// against the source, everything to create on an empty gateway, apply
/// (players reach the game servers through it with the exported keys), a
/// second apply that changes nothing, then a removed and a changed file:
/// `diff` shows them, `--dry-run` changes nothing, `--prune` applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_diff_and_apply_bring_a_second_gateway_to_the_first() {
    let a = gateway().spawn().await;
    let eu = GameServer::start("eu").await;
    let us = GameServer::start("us").await;
    let us2 = GameServer::start("us-2").await;
    let (c1, c2) = (TestCert::ecdsa(&["gs-1.com"]), TestCert::rsa(&["gs-2.com", "gs-3.com"]));
    realistic_set(&a.admin(), &eu, &us, &c1, &c2).await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("config");
    let d = path(&dir);

    let out = cli(&a, &["export", "-o", d, "--include-secrets"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("exported 12 resource(s)"), "{}", stdout(&out));
    let mut layout: Vec<String> =
        walk(&dir).iter().map(|p| p.strip_prefix(&dir).expect("under").display().to_string()).collect();
    layout.sort();
    assert_eq!(
        layout,
        [
            "cache_policies/vendor.yaml",
            "distributions/assets.yaml",
            "invalidations/inv-1.yaml",
            "ip_sets/banned.yaml",
            "ssls/1.yaml",
            "ssls/2.yaml",
            "stream_routes/r1.yaml",
            "stream_routes/r2.yaml",
            "stream_routes/r3.yaml",
            "upstreams/eu.yaml",
            "upstreams/us.yaml",
            "web_acls/players.yaml",
        ]
    );
    let ssl: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("ssls/1.yaml")).expect("read")).expect("yaml");
    assert_eq!((ssl["id"].as_str(), ssl["key"].as_str()), (Some("1"), Some(c1.key.as_str())), "{ssl}");
    let mode = std::fs::metadata(dir.join("ssls/1.yaml")).expect("meta").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "a file with a private key is private");
    let route = std::fs::read_to_string(dir.join("stream_routes/r3.yaml")).expect("read");
    assert_eq!(
        route, "id: r3\nsni: gs-3.com\nupstream_id: us\nweb_acl_id: players\n",
        "readable YAML, no server times"
    );
    let inv = std::fs::read_to_string(dir.join("invalidations/inv-1.yaml")).expect("read");
    assert!(!inv.contains("status") && !inv.contains("create_time"), "{inv}");

    let out = cli(&a, &["diff", "-f", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "0 to create, 0 to update, 12 unchanged, 0 only live\n");

    let b = gateway().spawn().await;
    let out = cli(&b, &["diff", "-f", d]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stdout(&out).contains("+ ssls/1\n") && stdout(&out).contains("+ web_acls/players\n"), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("12 to create, 0 to update, 0 unchanged, 0 only live\n"), "{}", stdout(&out));

    // Stream route r3 names a web ACL, which comes later in kind order:
    // apply writes what a resource refers to first.
    let out = cli(&b, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).ends_with("created 12, updated 0, deleted 0, unchanged 0\n"), "{}", stdout(&out));
    assert_eq!(resources(&b.admin()).await, resources(&a.admin()).await, "B holds what A holds");
    for id in ["1", "2"] {
        assert_eq!(stored_key(&b.admin(), id).await, stored_key(&a.admin(), id).await, "ssl {id}'s key");
    }
    for (sni, server) in [("gs-1.com", "eu"), ("gs-2.com", "eu"), ("gs-3.com", "us")] {
        let want = format!("[{server}] hello");
        eventually(10, &format!("{sni} through B"), || async { through(&b, sni).await.filter(|r| *r == want) }).await;
    }

    let out = cli(&b, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "created 0, updated 0, deleted 0, unchanged 12\n", "a second apply changes nothing");

    std::fs::remove_file(dir.join("stream_routes/r2.yaml")).expect("remove r2");
    let us_file = dir.join("upstreams/us.yaml");
    let changed = std::fs::read_to_string(&us_file).expect("read").replace(&us.node(), &us2.node());
    std::fs::write(&us_file, changed).expect("write");
    let out = cli(&b, &["diff", "-f", d]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stdout(&out).starts_with("~ upstreams/us: nodes\n- stream_routes/r2\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 to create, 1 to update, 10 unchanged, 1 only live\n"), "{}", stdout(&out));

    let before = resources(&b.admin()).await;
    let out = cli(&b, &["apply", "-f", d, "--prune", "--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("would create 0, update 1, delete 1"), "{}", stdout(&out));
    assert_eq!(resources(&b.admin()).await, before, "a dry run changes nothing");

    let out = cli(&b, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("1 resource(s) only on the gateway kept"), "{}", stdout(&out));
    assert_eq!(b.admin().get("/apisix/admin/stream_routes/r2").await.status, 200, "kept without --prune");

    let out = cli(&b, &["apply", "-f", d, "--prune"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("deleted stream_routes/r2\n"), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("created 0, updated 0, deleted 1, unchanged 11\n"), "{}", stdout(&out));
    assert_eq!(b.admin().get("/apisix/admin/stream_routes/r2").await.status, 404);
    let want = "[us-2] hello".to_owned();
    eventually(10, "gs-3.com to the changed upstream", || async {
        through(&b, "gs-3.com").await.filter(|r| *r == want)
    })
    .await;
    let out = cli(&b, &["diff", "-f", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry")) {
        if entry.file_type().expect("type").is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// An export without keys: applying it where the certificates are
/// unchanged keeps the stored keys; a changed certificate without its key,
/// or a missing SSL object, is refused before anything is written. The
/// viewer key exports without keys but may neither ask for them nor apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_files_without_keys_keep_the_stored_keys_and_viewers_only_read() {
    let a = gateway().admin_yaml(&format!("  viewer_key: \"{VIEWER_KEY}\"")).spawn().await;
    let eu = GameServer::start("eu").await;
    let cert = TestCert::ecdsa(&["gs-1.com"]);
    let admin = a.admin();
    admin.put_ok("/apisix/admin/ssls/1", &cert.ssl_body(&["gs-1.com"])).await;
    admin.put_ok("/apisix/admin/upstreams/eu", &json!({"nodes": {eu.node(): 1}})).await;
    admin.put_ok("/apisix/admin/stream_routes/r1", &json!({"sni": "gs-1.com", "upstream_id": "eu"})).await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("config");
    let d = path(&dir);

    let out = cli_as(&a, VIEWER_KEY, &["export", "-o", d, "--include-secrets"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("GET http://{}/apisix/admin/ssls?include_secrets=true: 401", a.admin))
            && stderr(&out).contains("include_secrets is not allowed for role viewer"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists(), "a failed export writes nothing");
    let out = cli_as(&a, VIEWER_KEY, &["export", "-o", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    let ssl = std::fs::read_to_string(dir.join("ssls/1.yaml")).expect("read");
    assert!(!ssl.contains("key:") && !ssl.contains("PRIVATE KEY") && !ssl.contains('#'), "{ssl}");
    assert!(stdout(&out).contains("hold no private key"), "{}", stdout(&out));

    let out = cli(&a, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("unchanged ssls/1 (no key in file)\n"), "{}", stdout(&out));
    assert_eq!(stored_key(&admin, "1").await, cert.key.as_str(), "the stored key is kept");
    let out = cli(&a, &["diff", "-f", d]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("= ssls/1: unchanged (no key in file)\n"), "{}", stdout(&out));

    // A viewer may not write: apply stops at the first PUT, naming the file.
    let upstream = dir.join("upstreams/eu.yaml");
    std::fs::write(&upstream, format!("nodes:\n  {}: 2\n", eu.node())).expect("write");
    let out = cli_as(&a, VIEWER_KEY, &["apply", "-f", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("apply stopped at upstreams/eu ({})", upstream.display()))
            && stderr(&out).contains("401 failed to check token (invalid method for role viewer)")
            && stderr(&out).contains("applied before it: created 0, updated 0, deleted 0"),
        "{}",
        stderr(&out)
    );

    // A certificate change without its key is refused, nothing is written.
    let ssl_file = dir.join("ssls/1.yaml");
    let other = TestCert::ecdsa(&["gs-1.com"]);
    let mut value: Value = serde_yaml_ng::from_str(&ssl).expect("yaml");
    value["cert"] = json!(other.cert);
    std::fs::write(&ssl_file, serde_yaml_ng::to_string(&value).expect("yaml")).expect("write");
    std::fs::write(&upstream, format!("nodes:\n  {}: 3\n", eu.node())).expect("write");
    let before = resources(&admin).await;
    for cmd in ["diff", "apply"] {
        let out = cli(&a, &[cmd, "-f", d]).await;
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out));
        assert!(
            stdout(&out)
                .contains(&format!("! ssls/1 ({}): differs from the gateway's ssl in cert", ssl_file.display()))
                && stdout(&out).contains("a certificate change needs its key"),
            "{cmd}: {}",
            stdout(&out)
        );
    }
    assert_eq!(resources(&admin).await, before, "nothing applied, not even the upstream");

    // And on a gateway that has no such SSL object there is nothing to keep.
    std::fs::write(&ssl_file, ssl).expect("write back");
    let b = gateway().spawn().await;
    let out = cli(&b, &["apply", "-f", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("created with its key"), "{}", stdout(&out));
    assert_eq!(b.admin().list("upstreams").await["total"], 0, "nothing applied");
}

/// Files that cannot be resources are refused naming the file, before any
/// write; an Admin API error stops apply at its file with the Admin API's
/// message and says what was applied before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_naming_the_file() {
    let gw = gateway().spawn().await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("config");
    let d = path(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("upstreams/a.yaml", "nodes:\n  127.0.0.1:1980: 1\n");
    write("upstreams/b.yaml", "id: c\nnodes:\n  127.0.0.1:1980: 1\n");
    write("routes/r.yaml", "uri: /\n");
    write("upstreams/d.json", r#"{"nodes": {"127.0.0.1:1980": 1}, "retriez": 1}"#);
    for cmd in ["diff", "apply"] {
        let out = cli(&gw, &[cmd, "-f", d]).await;
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out));
        let err = stderr(&out);
        for needle in [
            format!(
                "{}: the id in the file (c) disagrees with the file name (b)",
                dir.join("upstreams/b.yaml").display()
            ),
            format!("{}: not a resource kind directory", dir.join("routes").display()),
        ] {
            assert!(err.contains(&needle), "{cmd}: {needle:?} in {err}");
        }
    }
    std::fs::remove_dir_all(dir.join("routes")).expect("rm");
    std::fs::remove_file(dir.join("upstreams/b.yaml")).expect("rm");
    let out = cli(&gw, &["apply", "-f", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("{}: invalid upstream", dir.join("upstreams/d.json").display())),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("retriez"), "the field is named: {}", stderr(&out));
    assert_eq!(gw.admin().list("upstreams").await["total"], 0, "nothing applied");

    std::fs::remove_file(dir.join("upstreams/d.json")).expect("rm");
    write("stream_routes/r.yaml", "sni: gs-1.com\nupstream_id: missing\n");
    let out = cli(&gw, &["apply", "-f", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "apply stopped at stream_routes/r ({}): PUT http://{}/apisix/admin/stream_routes/r: 400 failed to fetch upstream info by upstream id [missing]",
            dir.join("stream_routes/r.yaml").display(),
            gw.admin
        )),
        "{err}"
    );
    assert!(err.contains("applied before it: created 1, updated 0, deleted 0"), "{err}");
    assert!(stdout(&out).contains("created upstreams/a\n"), "{}", stdout(&out));
}

/// A backup of a running gateway (read from its log, the store being
/// locked), restored into a fresh data directory, starts a gateway with the
/// same resources that serves players; a restore into a running gateway is
/// refused, one into a store with data needs --replace, which leaves
/// exactly the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_gateway_restores_into_a_fresh_store() {
    let a = gateway().spawn().await;
    let eu = GameServer::start("eu").await;
    let us = GameServer::start("us").await;
    let (c1, c2) = (TestCert::ecdsa(&["gs-1.com"]), TestCert::rsa(&["gs-2.com", "gs-3.com"]));
    realistic_set(&a.admin(), &eu, &us, &c1, &c2).await;
    let r = a
        .admin()
        .request("PUT", "/apisix/admin/upstreams/temp?ttl=3600", Some(r#"{"nodes": {"127.0.0.1:1": 1}}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("backup.json");

    let out = store_cli(&["backup", "-c", path(a.config_path()), "-o", path(&file)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("backed up 13 key(s) under /apisix") && stdout(&out).contains("running gateway"),
        "{}",
        stdout(&out)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(doc["format"], "shardgate-backup/1");
    assert_eq!(doc["prefix"], "/apisix");
    assert!(doc["revision"].as_u64().is_some_and(|r| r >= 13), "{}", doc["revision"]);
    let kvs = doc["kvs"].as_array().expect("kvs");
    let find = |key: &str| kvs.iter().find(|kv| kv["key"] == key).unwrap_or_else(|| panic!("{key} in the backup"));
    // Values as stored: the private key encrypted under the gateway's own
    // keyring (generated into its data directory), APISIX's format.
    let sealed = find("/ssls/1")["value"]["key"].as_str().expect("key").to_owned();
    assert!(!sealed.starts_with("---"), "the key is not stored in plain text: {sealed}");
    let entry = std::fs::read_to_string(a.data_dir.join("keyring")).expect("the generated keyring");
    let keyring = shardgate_model::Keyring::new(vec![entry.trim().to_owned()]).expect("keyring");
    assert_eq!(keyring.decrypt(&sealed).expect("decrypts"), c1.key.as_str());
    assert!(find("/upstreams/temp")["expires_at_ms"].is_u64(), "a key with a TTL keeps its expiry");
    assert!(find("/upstreams/eu").get("expires_at_ms").is_none());
    let mode = std::fs::metadata(&file).expect("meta").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

    let out = store_cli(&["restore", "-c", path(a.config_path()), "-i", path(&file)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("in use by a running gateway: stop it") && stderr(&out).contains("shardgate apply"),
        "{}",
        stderr(&out)
    );

    let data = work.path().join("restored");
    let config = work.path().join("restore.yaml");
    std::fs::write(&config, format!("store:\n  data_dir: \"{}\"\n", data.display())).expect("config");
    // Without the source's keyring the keys would not open: refused, naming what to copy.
    let out = store_cli(&["restore", "-c", path(&config), "-i", path(&file)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("encrypted under a keyring this store does not have")
            && stderr(&out).contains("nothing was restored"),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("store.log").exists(), "checked before the store is opened");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::copy(a.data_dir.join("keyring"), data.join("keyring")).expect("copy the keyring");
    let out = store_cli(&["restore", "-c", path(&config), "-i", path(&file)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).starts_with("restored 13 key(s) under /apisix"), "{}", stdout(&out));

    let mut b = gateway().data_dir(&data).spawn().await;
    // The stored values themselves, times included (the revisions are the new store's).
    let with_times =
        |v: Value| v["list"].as_array().expect("list").iter().map(|e| e["value"].clone()).collect::<Vec<_>>();
    for kind in ResourceKind::ALL.map(ResourceKind::plural).into_iter().filter(|k| *k != "invalidations") {
        assert_eq!(
            with_times(b.admin().list(kind).await),
            with_times(a.admin().list(kind).await),
            "{kind}, times and all"
        );
    }
    assert_eq!(resources(&b.admin()).await, resources(&a.admin()).await);
    for (sni, server) in [("gs-1.com", "eu"), ("gs-3.com", "us")] {
        let want = format!("[{server}] hello");
        eventually(10, &format!("{sni} through the restored gateway"), || async {
            through(&b, sni).await.filter(|r| *r == want)
        })
        .await;
    }

    b.admin().put_ok("/apisix/admin/upstreams/extra", &json!({"nodes": {"127.0.0.1:1": 1}})).await;
    b.sigterm();
    assert!(b.wait_exit(20).await.success());
    let out = store_cli(&["restore", "-c", path(&config), "-i", path(&file)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("already holds 14 key(s)") && stderr(&out).contains("--replace"), "{}", stderr(&out));
    let out = store_cli(&["restore", "-c", path(&config), "-i", path(&file), "--replace"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("deleted 1"), "{}", stdout(&out));
    b.restart().await;
    assert_eq!(b.admin().get("/apisix/admin/upstreams/extra").await.status, 404, "only what the backup holds");
    assert_eq!(resources(&b.admin()).await, resources(&a.admin()).await);
}

/// A long apply says how far it is on stderr: a plain line every 100
/// changes when stderr is not a terminal (a CI log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_apply_reports_its_progress() {
    let gw = gateway().spawn().await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("config");
    std::fs::create_dir_all(dir.join("upstreams")).expect("mkdir");
    for i in 0..250 {
        let text = format!("nodes:\n  127.0.0.1:{}: 1\n", 20_000 + i);
        std::fs::write(dir.join(format!("upstreams/u{i:03}.yaml")), text).expect("write");
    }
    let out = cli(&gw, &["apply", "-f", path(&dir)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stderr(&out), "applying 100/250\napplying 200/250\n");
    assert!(stdout(&out).ends_with("created 250, updated 0, deleted 0, unchanged 0\n"), "{}", stdout(&out));
    assert_eq!(gw.admin().list("upstreams").await["total"], 250);
}

/// Config as code for a cluster: an export of an embedded gateway applied
/// to an empty etcd cluster through one instance reproduces every resource
/// on every instance (the keys too: players reach the game servers), a
/// second apply changes nothing, `--prune` reaches the cluster; a backup of
/// the etcd prefix restores under another prefix, where an instance serves
/// the same resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_applied_to_an_etcd_cluster_reaches_every_instance_and_its_backup_restores() {
    let a = gateway().spawn().await;
    let eu = GameServer::start("eu").await;
    let us = GameServer::start("us").await;
    let (c1, c2) = (TestCert::ecdsa(&["gs-1.com"]), TestCert::rsa(&["gs-2.com", "gs-3.com"]));
    realistic_set(&a.admin(), &eu, &us, &c1, &c2).await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("config");
    let d = path(&dir);
    let out = cli(&a, &["export", "-o", d, "--include-secrets"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let etcd = shardgate_e2e::EtcdCluster::start(1).await;
    let keyring = "data_encryption:\n  keyring: [\"cluster-keyring1\"]";
    let one = gateway().etcd(&etcd.endpoints(), "/apisix").yaml(keyring).spawn().await;
    let two = gateway().etcd(&etcd.endpoints(), "/apisix").yaml(keyring).spawn().await;
    let out = cli(&one, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("created 12, updated 0, deleted 0, unchanged 0"), "{}", stdout(&out));
    for gw in [&one, &two] {
        assert_eq!(resources(&gw.admin()).await, resources(&a.admin()).await, "every resource on every instance");
    }
    eventually(10, "gs-1 and gs-3 through the instance that did not take the writes", || async {
        let eu_reply = through(&two, "gs-1.com").await.filter(|r| r == "[eu] hello");
        let us_reply = through(&two, "gs-3.com").await.filter(|r| r == "[us] hello");
        eu_reply.and(us_reply)
    })
    .await;
    let out = cli(&two, &["apply", "-f", d]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("created 0, updated 0, deleted 0, unchanged 12"), "{}", stdout(&out));
    std::fs::remove_file(dir.join("stream_routes/r2.yaml")).expect("remove a route file");
    let out = cli(&two, &["apply", "-f", d, "--prune"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("deleted 1"), "{}", stdout(&out));
    assert_eq!(one.admin().get("/apisix/admin/stream_routes/r2").await.status, 404, "pruned cluster-wide");

    // A backup of the etcd prefix, restored under another prefix.
    let file = work.path().join("cluster.json");
    let out = store_cli(&["backup", "-c", path(one.config_path()), "-o", path(&file)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let config = work.path().join("other-prefix.yaml");
    std::fs::write(
        &config,
        format!(
            "store:\n  backend: etcd\n  prefix: /restored\n  etcd:\n    host: [\"{}\"]\n{keyring}\n",
            etcd.endpoint(0)
        ),
    )
    .expect("config");
    let out = store_cli(&["restore", "-c", path(&config), "-i", path(&file)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let restored = gateway().etcd(&etcd.endpoints(), "/restored").yaml(keyring).spawn().await;
    assert_eq!(resources(&restored.admin()).await, resources(&one.admin()).await);
    eventually(10, "gs-1 through an instance on the restored prefix", || async {
        through(&restored, "gs-1.com").await.filter(|r| r == "[eu] hello")
    })
    .await;
}
