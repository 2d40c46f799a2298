//! Several gateways on one configuration in etcd, seed 000's production
//! layout (stateless replicas on an etcd cluster): real etcd members, real
//! gateway processes, real sockets.
//!
//! - a seed 000 walkthrough sent to one instance serves players on the others;
//! - data APISIX wrote (etcdctl, its key layout, its encrypted SSL keys) is
//!   served, and SSLs shardgate writes are stored the way APISIX stores them;
//! - Admin writes racing through two instances keep their checks (fence);
//! - an etcd leader killed mid-write loses no acknowledged write;
//! - every member stopped for 30 s drops no player and no asset request;
//! - an instance cut off while the history it needs is compacted resyncs;
//! - an unreachable endpoint at start-up is an error naming it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::cluster::PausableProxy;
use shardgate_e2e::etcd::EtcdCluster;
use shardgate_e2e::origin::get;
use shardgate_e2e::tls::{presented_cert, roundtrip, try_roundtrip};
use shardgate_e2e::{AdminClient, GameServer, Gateway, OriginFile, TestCert, TestOrigin, TlsClient, eventually};

/// The key prefix every gateway of these tests uses (APISIX's default).
const PREFIX: &str = "/apisix";

/// A gateway on `etcd` with one TLS stream listener.
async fn on_etcd(etcd: &EtcdCluster) -> Gateway {
    gateway().etcd(&etcd.endpoints(), PREFIX).spawn().await
}

/// What the game server behind `sni` answers to one line through `addr`
/// (`None`: no handshake, no route, or no answer).
async fn reply(client: &TlsClient, addr: SocketAddr, sni: &str) -> Option<String> {
    let mut s = client.connect(addr, Some(sni)).await.ok()?;
    try_roundtrip(&mut s, "ping").await
}

/// Polls until `sni` through `addr` is answered by the server named
/// `want` (or, with `None`, is no longer answered); returns how long it took.
async fn converge(
    secs: u64,
    what: &str,
    client: &TlsClient,
    addr: SocketAddr,
    sni: &str,
    want: Option<&str>,
) -> Duration {
    let started = Instant::now();
    let want = want.map(|name| format!("[{name}] ping"));
    eventually(secs, what, || async {
        let got = reply(client, addr, sni).await;
        (got == want).then_some(())
    })
    .await;
    started.elapsed()
}

/// stdout of a command that must succeed.
fn stdout_ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The store revision etcd is at.
async fn etcd_revision(etcd: &EtcdCluster) -> u64 {
    let out = stdout_ok(&etcd.etcdctl(&["get", PREFIX, "--prefix", "--limit=1", "-w", "json"]).await, "etcdctl get");
    let v: Value = serde_json::from_str(&out).expect("etcdctl JSON");
    v["header"]["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {v}"))
}

/// The stored value of `key`, as JSON.
async fn etcd_json(etcd: &EtcdCluster, key: &str) -> Value {
    let out = stdout_ok(&etcd.etcdctl(&["get", key, "--print-value-only"]).await, "etcdctl get");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{key} holds no JSON ({e}): {out:?}"))
}

/// Every key stored under `prefix`.
async fn etcd_keys(etcd: &EtcdCluster, prefix: &str) -> BTreeSet<String> {
    let out = stdout_ok(&etcd.etcdctl(&["get", prefix, "--prefix", "--keys-only"]).await, "etcdctl get --keys-only");
    out.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// `id → value` of one kind, as an instance's Admin API lists it.
async fn view(admin: &AdminClient, kind: &str) -> BTreeMap<String, Value> {
    let list = admin.list(kind).await;
    list["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind} list: {list}"))
        .iter()
        .map(|e| {
            (e["value"]["id"].as_str().map_or_else(|| e["value"]["id"].to_string(), str::to_owned), e["value"].clone())
        })
        .collect()
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// 1. Seed 000 across instances
// ---------------------------------------------------------------------------

/// The seed's commands sent to instance A; `openssl s_client` through B
/// and a rustls client through C reach the game server; a route deleted
/// through C stops routing on A and B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_sent_to_one_instance_serves_players_on_every_instance() {
    let etcd = EtcdCluster::start(1).await;
    let a = on_etcd(&etcd).await;
    let b = on_etcd(&etcd).await;
    let c = on_etcd(&etcd).await;
    let gs1 = GameServer::start("test-server-1").await;
    let dir = tempfile::tempdir().expect("tempdir");

    // 配置證書: the seed's openssl command.
    let out = bash(
        r#"openssl req -new -newkey rsa:2048 -days 365 -nodes -x509 -keyout gs-1.key -out gs-1.crt -subj "/CN=gs-1.com""#
            .to_owned(),
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "openssl req: {}", text(&out));

    // 上傳證書 / 配置路由: the seed's curl commands, to A only.
    let script = format!(
        r#"set -e
curl -sS -X POST http://{admin}/apisix/admin/ssls -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '
{{
"cert": "'"$(cat gs-1.crt)"'",
"key": "'"$(cat gs-1.key)"'",
"snis": ["gs-1.com"]
}}'
echo
curl -sS -i -X POST http://{admin}/apisix/admin/stream_routes -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -d '{{
"upstream": {{
"nodes": {{
"{gs1}": 1
}},
"type": "roundrobin"
}},
"sni": "gs-1.com"
}}'
"#,
        admin = a.admin,
        gs1 = gs1.node()
    );
    let out = bash(script, dir.path()).await;
    let all = text(&out);
    assert!(out.status.success(), "seed commands: {all}");
    let first: Value = serde_json::from_str(all.lines().next().unwrap_or_default()).expect("ssl answer is JSON");
    assert!(first["key"].as_str().is_some_and(|k| k.starts_with("/apisix/ssls/")), "{all}");
    assert!(all.contains("HTTP/1.1 201 Created"), "the route is created: {all}");

    // 測試基於SNI的訪問 through B, with the seed's own client.
    let started = Instant::now();
    let script = format!(
        "(printf 'ping gs-1.com\\n'; sleep 0.5) | timeout 10 openssl s_client -connect {} -servername gs-1.com -quiet -no_ign_eof 2>/dev/null",
        b.tls_addr()
    );
    eventually(20, "openssl s_client through B reaches test-server-1", || {
        let (script, dir) = (script.clone(), dir.path().to_owned());
        async move {
            let out = bash(script, &dir).await;
            String::from_utf8_lossy(&out.stdout).contains("[test-server-1] ping gs-1.com").then_some(())
        }
    })
    .await;
    eprintln!("B served the route written through A after {} ms (openssl s_client)", started.elapsed().as_millis());

    // A rustls client with SNI through C, with the seed's certificate.
    let client = TlsClient::default();
    let mut on_c = eventually(10, "gs-1.com through C", || async {
        let mut s = client.connect(c.tls_addr(), Some("gs-1.com")).await.ok()?;
        (try_roundtrip(&mut s, "hello").await.as_deref() == Some("[test-server-1] hello")).then_some(s)
    })
    .await;
    let crt = bash("openssl x509 -in gs-1.crt -outform DER | od -An -tx1 | tr -d ' \\n'".into(), dir.path()).await;
    assert_eq!(hex(&presented_cert(&on_c)), stdout_ok(&crt, "openssl x509"), "C presents gs-1.crt");
    assert_eq!(reply(&client, a.tls_addr(), "gs-1.com").await.as_deref(), Some("[test-server-1] ping"));

    // A change on C: the route is deleted; A and B stop routing it.
    let routes = view(&c.admin(), "stream_routes").await;
    assert_eq!(routes.len(), 1, "{routes:?}");
    let id = routes.keys().next().expect("route id");
    let r = c.admin().delete(&format!("/apisix/admin/stream_routes/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deleted = Instant::now();
    converge(20, "A stops routing gs-1.com", &client, a.tls_addr(), "gs-1.com", None).await;
    let on_a = deleted.elapsed();
    converge(20, "B stops routing gs-1.com", &client, b.tls_addr(), "gs-1.com", None).await;
    let on_b = deleted.elapsed();
    eprintln!(
        "the delete through C was live on A within {} ms, on B within {} ms (each includes a refused handshake)",
        on_a.as_millis(),
        on_b.as_millis()
    );
    // The session C opened before the delete plays on.
    assert_eq!(roundtrip(&mut on_c, "still").await, "[test-server-1] still");
}

// ---------------------------------------------------------------------------
// 2. APISIX-shaped data
// ---------------------------------------------------------------------------

/// The keyring of these gateways: the first entry (16 bytes, AES-128-CBC)
/// encrypts new keys; the second (32 bytes, AES-256-CBC), an older entry
/// kept for reading, is what the etcdctl-written SSL was encrypted with.
/// Key and IV are the entry's bytes (the IV its first 16 for AES-256), as
/// APISIX's `apisix/ssl.lua` does with lua-resty-string.
const KEYRING: [&str; 2] = ["sgclustertest-k1", "sgclustertest-older-entry-32byte"];

/// Encrypts or decrypts with `entry` using the openssl CLI, independently
/// of shardgate.
async fn openssl_aes(input: &str, decrypt: bool, entry: &str, dir: &Path) -> String {
    let bits = entry.len() * 8;
    let (key, iv) = (hex(entry.as_bytes()), hex(&entry.as_bytes()[..16]));
    std::fs::write(dir.join("aes.in"), input).expect("write aes input");
    let d = if decrypt { "-d" } else { "" };
    let out = bash(format!("openssl enc {d} -aes-{bits}-cbc -K {key} -iv {iv} -base64 -A -in aes.in"), dir).await;
    let text = stdout_ok(&out, "openssl enc");
    // Base64 output is one line (-A); a decrypted PEM is returned as is.
    if decrypt { text } else { text.trim_end().to_owned() }
}

/// An upstream, a stream route naming it and an SSL whose key is encrypted
/// with a keyring entry, all written by etcdctl in APISIX 3.x's shape, are
/// served by gateways with that keyring; an SSL written through shardgate
/// is stored in that same shape and decrypts with openssl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apisix_data_in_etcd_is_served_and_ssls_are_stored_the_apisix_way() {
    assert_eq!((KEYRING[0].len(), KEYRING[1].len()), (16, 32));
    let etcd = EtcdCluster::start(1).await;
    let keyring = format!("data_encryption:\n  keyring: [\"{}\", \"{}\"]", KEYRING[0], KEYRING[1]);
    // A watches the writes arrive; B is started after them and lists them.
    let a = gateway().etcd(&etcd.endpoints(), PREFIX).yaml(&keyring).spawn().await;
    let gs = GameServer::start("apisix-gs").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = TestCert::ecdsa(&["apisix.test"]);
    let encrypted = openssl_aes(&cert.key, false, KEYRING[1], dir.path()).await;
    assert!(!encrypted.contains("PRIVATE KEY") && !encrypted.is_empty(), "{encrypted}");
    assert_eq!(openssl_aes(&encrypted, true, KEYRING[1], dir.path()).await, cert.key, "the openssl round trip");

    let t = 1_700_000_000;
    let upstream =
        json!({"id": "1", "nodes": {gs.node(): 1}, "type": "roundrobin", "create_time": t, "update_time": t});
    let ssl = json!({"id": "1", "cert": cert.cert, "key": encrypted, "snis": ["apisix.test"], "type": "server", "status": 1, "create_time": t, "update_time": t});
    let route = json!({"id": "1", "upstream_id": "1", "sni": "apisix.test", "create_time": t, "update_time": t});
    for (key, value) in
        [("/apisix/upstreams/1", &upstream), ("/apisix/ssls/1", &ssl), ("/apisix/stream_routes/1", &route)]
    {
        stdout_ok(&etcd.etcdctl(&["put", key, &value.to_string()]).await, &format!("etcdctl put {key}"));
    }

    let client = TlsClient::default();
    let b = gateway().etcd(&etcd.endpoints(), PREFIX).yaml(&keyring).spawn().await;
    for (name, gw) in [("A (watch)", &a), ("B (list)", &b)] {
        let s = eventually(15, &format!("{name} serves apisix.test"), || async {
            let mut s = client.connect(gw.tls_addr(), Some("apisix.test")).await.ok()?;
            (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[apisix-gs] hi")).then_some(s)
        })
        .await;
        assert_eq!(presented_cert(&s), cert.der, "{name} presents the certificate written by etcdctl");
    }
    // Without the entry that encrypted it, the SSL is a problem, not served.
    let c = gateway()
        .etcd(&etcd.endpoints(), PREFIX)
        .yaml(&format!("data_encryption:\n  keyring: [\"{}\"]", KEYRING[0]))
        .spawn()
        .await;
    eventually(15, "C reports the SSL it cannot decrypt", || async {
        (c.metric("shardgate_config_problems").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(reply(&client, c.tls_addr(), "apisix.test").await, None, "C has no key for apisix.test");
    drop(c);
    // The Admin API reads APISIX's objects as they are (and never the key).
    let up = a.admin().get("/apisix/admin/upstreams/1").await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.json()["value"]["nodes"][gs.node()], 1, "{}", up.body);
    let got = a.admin().get("/apisix/admin/ssls/1").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.json()["value"].get("key").is_none(), "{}", got.body);

    // An SSL written through shardgate: the seed's openssl certificate.
    let out = bash(
        r#"openssl req -new -newkey rsa:2048 -days 365 -nodes -x509 -keyout w.key -out w.crt -subj "/CN=written.test" 2>&1"#
            .to_owned(),
        dir.path(),
    )
    .await;
    stdout_ok(&out, "openssl req");
    let pem_key = std::fs::read_to_string(dir.path().join("w.key")).expect("key");
    let pem_cert = std::fs::read_to_string(dir.path().join("w.crt")).expect("cert");
    let r = a
        .admin()
        .put("/apisix/admin/ssls/2", &json!({"cert": pem_cert, "key": pem_key, "snis": ["written.test"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let stored = etcd_json(&etcd, "/apisix/ssls/2").await;
    assert_eq!(stored["id"], "2", "{stored}");
    assert_eq!(stored["snis"], json!(["written.test"]), "{stored}");
    assert_eq!(stored["cert"], pem_cert.as_str(), "{stored}");
    assert!(stored["create_time"].is_u64() && stored["update_time"].is_u64(), "times are numbers: {stored}");
    let key = stored["key"].as_str().unwrap_or_else(|| panic!("no key: {stored}"));
    assert!(!key.contains("PRIVATE KEY"), "the key is stored encrypted, not as a PEM: {key}");
    assert!(
        !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')),
        "the key is base64: {key}"
    );
    assert_eq!(
        openssl_aes(key, true, KEYRING[0], dir.path()).await,
        pem_key,
        "openssl decrypts the stored key with the first entry to the PEM sent"
    );

    // B decrypts what A encrypted: a route on it serves the certificate.
    let r = a.admin().put("/apisix/admin/stream_routes/2", &json!({"upstream_id": "1", "sni": "written.test"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let s = eventually(15, "B serves written.test", || async {
        let mut s = client.connect(b.tls_addr(), Some("written.test")).await.ok()?;
        (try_roundtrip(&mut s, "w").await.as_deref() == Some("[apisix-gs] w")).then_some(s)
    })
    .await;
    let der = bash("openssl x509 -in w.crt -outform DER | od -An -tx1 | tr -d ' \\n'".into(), dir.path()).await;
    assert_eq!(hex(&presented_cert(&s)), stdout_ok(&der, "openssl x509"));
    assert!(!a.log().contains(pem_key.trim()) && !b.log().contains(pem_key.trim()), "no private key is logged");
}

// ---------------------------------------------------------------------------
// 3. Racing writers
// ---------------------------------------------------------------------------

/// Two instances: PUTs of one new id at the same moment create it once;
/// 100 writes split across both all succeed; a delete racing a reference
/// to what it deletes never leaves a dangling reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_through_two_instances_keep_their_checks() {
    let etcd = EtcdCluster::start(1).await;
    let a = on_etcd(&etcd).await;
    let b = on_etcd(&etcd).await;
    let (aa, ba) = (a.admin(), b.admin());
    let gs = GameServer::start("gs").await;

    // Same new id, same moment.
    let mut outcomes: BTreeMap<(u16, u16), usize> = BTreeMap::new();
    for round in 0..30 {
        let path = format!("/apisix/admin/upstreams/race-{round}");
        let body_a = json!({"nodes": {gs.node(): 1}, "desc": "from A"});
        let body_b = json!({"nodes": {gs.node(): 2}, "desc": "from B"});
        let (ra, rb) = tokio::join!(aa.put(&path, &body_a), ba.put(&path, &body_b));
        *outcomes.entry((ra.status, rb.status)).or_default() += 1;
        let created: Vec<_> = [&ra, &rb].into_iter().filter(|r| r.status == 201).collect();
        assert_eq!(
            created.len(),
            1,
            "round {round}: exactly one creates: A {} {} / B {} {}",
            ra.status,
            ra.body,
            rb.status,
            rb.body
        );
        for (name, r) in [("A", &ra), ("B", &rb)] {
            assert!(matches!(r.status, 201 | 200 | 409), "round {round}: {name} got {} {}", r.status, r.body);
        }
        let stored = aa.get(&path).await.json()["value"]["desc"].clone();
        // The value stored is the last successful write: the 200 came
        // after the 201; a 409 stored nothing.
        let want = match (ra.status, rb.status) {
            (200, _) => "from A",
            (_, 200) => "from B",
            (201, _) => "from A",
            _ => "from B",
        };
        assert_eq!(stored, want, "round {round}: A {} B {}", ra.status, rb.status);
    }
    eprintln!("same-id PUT outcomes (A, B) → rounds: {outcomes:?}");

    // 50 different writes through each, at once (5 writers per instance).
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = tokio::task::JoinSet::new();
    for (name, admin) in [("a", aa.clone()), ("b", ba.clone())] {
        for w in 0..5 {
            let (admin, failures, node) = (admin.clone(), Arc::clone(&failures), gs.node());
            writers.spawn(async move {
                for i in 0..10 {
                    let path = format!("/apisix/admin/upstreams/{name}-{}", w * 10 + i);
                    let r = admin.put(&path, &json!({"nodes": {node.clone(): 1}})).await;
                    if r.status != 201 {
                        failures.lock().expect("failures").push(format!("{path}: {} {}", r.status, r.body));
                    }
                }
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer task");
    }
    assert_eq!(*failures.lock().expect("failures"), Vec::<String>::new(), "every write succeeds");
    for admin in [&aa, &ba] {
        let ids = view(admin, "upstreams").await;
        for name in ["a", "b"] {
            for i in 0..50 {
                assert!(ids.contains_key(&format!("{name}-{i}")), "{name}-{i} is stored");
            }
        }
    }

    // A deletes an upstream while B makes a route refer to it. One side
    // starts 0-27 ms after the other (which side alternates), so the rounds
    // sweep the window where each one's checks could miss the other's write.
    let (mut delete_won, mut route_won) = (0, 0);
    for round in 0..40u64 {
        let id = format!("ref-{round}");
        aa.put_ok(&format!("/apisix/admin/upstreams/{id}"), &json!({"nodes": {gs.node(): 1}})).await;
        let (upstream_path, route_path) =
            (format!("/apisix/admin/upstreams/{id}"), format!("/apisix/admin/stream_routes/{id}"));
        let route_body = json!({"upstream_id": id, "sni": format!("{id}.test")});
        let lag = Duration::from_millis((round / 2 % 10) * 3);
        let (delete_lag, route_lag) = if round % 2 == 0 { (Duration::ZERO, lag) } else { (lag, Duration::ZERO) };
        let (del, route) = tokio::join!(
            async {
                tokio::time::sleep(delete_lag).await;
                aa.delete(&upstream_path).await
            },
            async {
                tokio::time::sleep(route_lag).await;
                ba.put(&route_path, &route_body).await
            }
        );
        match (del.status, route.status) {
            (200, 400) => delete_won += 1,
            (400, 201) => route_won += 1,
            (d, r) => panic!(
                "round {round}: exactly one of the two may succeed: delete {d} {} / route {r} {}",
                del.body, route.body
            ),
        }
    }
    eprintln!("reference race: the delete won {delete_won} rounds, the route won {route_won}");
    let upstreams = view(&aa, "upstreams").await;
    let routes = view(&ba, "stream_routes").await;
    for (id, route) in &routes {
        if let Some(u) = route["upstream_id"].as_str() {
            assert!(upstreams.contains_key(u), "stream route {id} names upstream {u}, which is gone");
        }
    }
    assert_eq!(routes.len(), route_won);
}

// ---------------------------------------------------------------------------
// 4. Leader killed while a client writes
// ---------------------------------------------------------------------------

/// Three members; the leader is killed while a client writes through A:
/// every acknowledged write is stored, the open player session plays on,
/// new players connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_leader_killed_mid_write_loses_no_acknowledged_write() {
    let mut etcd = EtcdCluster::start(3).await;
    // The leader is A's first endpoint, so the member A talks to first is
    // the one that dies.
    let first = etcd.leader().await;
    let mut endpoints = vec![etcd.endpoint(first)];
    endpoints.extend((0..etcd.len()).filter(|&i| i != first).map(|i| etcd.endpoint(i)));
    let a = gateway().etcd(&endpoints, PREFIX).spawn().await;
    let gs = GameServer::start("gs").await;
    let admin = a.admin();
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    admin
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let client = TlsClient::default();
    let mut session = eventually(10, "routed", || async {
        let mut s = client.connect(a.tls_addr(), Some("gs-1.com")).await.ok()?;
        (try_roundtrip(&mut s, "before").await.as_deref() == Some("[gs] before")).then_some(s)
    })
    .await;

    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (admin, done, node) = (admin.clone(), Arc::clone(&done), gs.node());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut results = Vec::new();
            for i in 0..200 {
                if started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let id = format!("w-{i}");
                let body = json!({"nodes": {node.clone(): 1}}).to_string();
                let sent = Instant::now();
                let status = match admin.try_request("PUT", &format!("/apisix/admin/upstreams/{id}"), Some(&body)).await
                {
                    Ok(r) => {
                        if !matches!(r.status, 200 | 201) {
                            eprintln!("write {id}: {} {}", r.status, r.body);
                        }
                        r.status
                    }
                    Err(e) => {
                        eprintln!("write {id}: {e}");
                        0
                    }
                };
                results.push((id, status, sent.elapsed()));
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            results
        })
    };
    eventually(30, "60 writes before the kill", || async { (done.load(Ordering::SeqCst) >= 60).then_some(()) }).await;
    let leader = etcd.leader().await;
    etcd.kill(leader);
    let killed_after = done.load(Ordering::SeqCst);
    eprintln!(
        "killed etcd member {leader} (the leader; A's first endpoint: {}) after {killed_after} writes",
        leader == first
    );
    let results =
        tokio::time::timeout(Duration::from_secs(60), writer).await.expect("writer bounded").expect("writer task");

    let acked: Vec<&String> = results.iter().filter(|(_, s, _)| matches!(s, 200 | 201)).map(|(id, _, _)| id).collect();
    let unavailable = results.iter().filter(|(_, s, _)| *s == 503).count();
    let other: Vec<_> = results.iter().filter(|(_, s, _)| !matches!(s, 200 | 201 | 503)).collect();
    assert!(killed_after < results.len(), "the leader was killed while the client wrote");
    let acked_after_kill = results[killed_after..].iter().filter(|(_, s, _)| matches!(s, 200 | 201)).count();
    let slowest = results.iter().max_by_key(|(_, _, took)| *took).expect("writes");
    eprintln!(
        "{} writes: {} acknowledged ({} after the kill), {} answered 503 during the election; slowest {} ({}) in {} ms",
        results.len(),
        acked.len(),
        acked_after_kill,
        unavailable,
        slowest.0,
        slowest.1,
        slowest.2.as_millis()
    );
    assert!(other.is_empty(), "only 200/201 or 503: {other:?}");
    assert!(acked_after_kill > 0, "writes succeed again once a leader is elected: {results:?}");

    let listed = view(&admin, "upstreams").await;
    let keys = etcd_keys(&etcd, "/apisix/upstreams/").await;
    for id in &acked {
        assert!(listed.contains_key(*id), "acknowledged write {id} is listed through A");
        assert!(keys.contains(&format!("/apisix/upstreams/{id}")), "acknowledged write {id} is in etcd");
    }
    assert_eq!(roundtrip(&mut session, "after").await, "[gs] after", "the open session plays on");
    assert_eq!(reply(&client, a.tls_addr(), "gs-1.com").await.as_deref(), Some("[gs] ping"), "a new player connects");
}

// ---------------------------------------------------------------------------
// 5. Every member stopped for 30 s under load
// ---------------------------------------------------------------------------

const ASSET_HOST: &str = "assets.cluster.test";

/// etcd gone for 30 s: players, open sessions and asset requests are all
/// served; the Admin API answers 503 naming the cause; /readyz stays 200;
/// once etcd is back a write through A is live on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_etcd_member_stopped_for_30s_drops_no_player_and_no_asset_request() {
    let mut etcd = EtcdCluster::start(3).await;
    let a = gateway().etcd(&etcd.endpoints(), PREFIX).edge_http(1).spawn().await;
    let b = gateway().etcd(&etcd.endpoints(), PREFIX).edge_http(1).spawn().await;
    let (gs1, gs2) = (GameServer::start("gs1").await, GameServer::start("gs2").await);
    let origin = TestOrigin::start(vec![
        ("/a.bin", OriginFile::new("asset a").cache_control("max-age=3600")),
        ("/b.bin", OriginFile::new("asset b").cache_control("max-age=3600")),
        ("/live.json", OriginFile::new("never cached").cache_control("no-store")),
    ])
    .await;
    let admin = a.admin();
    admin
        .put_ok(
            "/apisix/admin/ssls/1",
            &TestCert::ecdsa(&["gs-1.com", "after.test"]).ssl_body(&["gs-1.com", "after.test"]),
        )
        .await;
    admin
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs1.node(): 1}}}))
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({"hosts": [ASSET_HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = a.edge_plain[0];
    eventually(10, "the distribution is live on A", || async {
        let (status, headers, body) = get(edge, ASSET_HOST, "/a.bin", &[]).await;
        (status == 200 && headers.contains_key("x-cache") && &body[..] == b"asset a").then_some(())
    })
    .await;
    let client = TlsClient::default();
    let mut sessions = Vec::new();
    for (name, gw) in [("A", &a), ("A", &a), ("A", &a), ("B", &b), ("B", &b)] {
        let s = eventually(10, &format!("a session through {name}"), || async {
            let mut s = client.connect(gw.tls_addr(), Some("gs-1.com")).await.ok()?;
            (try_roundtrip(&mut s, "open").await.as_deref() == Some("[gs1] open")).then_some(s)
        })
        .await;
        sessions.push(s);
    }

    etcd.stop_all().await;
    let outage = Instant::now();
    // The Admin API, a few seconds into the outage: 503 naming the cause,
    // for a write and for a read; the store is reported down.
    let checks = {
        let admin = admin.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let t = Instant::now();
            let write = admin.put("/apisix/admin/upstreams/during", &json!({"nodes": {"127.0.0.1:1": 1}})).await;
            let write_took = t.elapsed();
            let read = admin.get("/apisix/admin/stream_routes").await;
            (write, write_took, read)
        })
    };

    let (mut players, mut player_failures, mut echoes, mut echo_failures) = (0, Vec::new(), 0, Vec::new());
    let (mut assets, mut asset_failures, mut unready) = (0, Vec::new(), Vec::new());
    let mut store_up_samples = Vec::new();
    let mut tick = 0u32;
    while outage.elapsed() < Duration::from_secs(30) {
        tick += 1;
        let at = outage.elapsed();
        players += 1;
        if reply(&client, a.tls_addr(), "gs-1.com").await.as_deref() != Some("[gs1] ping") {
            player_failures.push(at);
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            echoes += 1;
            let msg = format!("tick {tick}");
            if try_roundtrip(s, &msg).await != Some(format!("[gs1] {msg}")) {
                echo_failures.push((i, at));
            }
        }
        let path = ["/a.bin", "/b.bin", "/live.json"][tick as usize % 3];
        assets += 1;
        let asset = tokio::spawn(async move { get(edge, ASSET_HOST, path, &[]).await.0 });
        if !matches!(tokio::time::timeout(Duration::from_secs(10), asset).await, Ok(Ok(200))) {
            asset_failures.push((path, at));
        }
        let ready = a.readyz().await;
        if ready != 200 {
            unready.push((ready, at));
        }
        // The watch breaks as the members stop; from 5 s on the store must
        // read as down on every sample, not flap back up.
        if at > Duration::from_secs(5) {
            let up = a.metric("shardgate_store_up").await;
            store_up_samples.push(up);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (write, write_took, read) = checks.await.expect("admin checks");
    eprintln!(
        "30 s without etcd: {players} new players, {echoes} session echoes, {assets} asset requests; the Admin write answered 503 in {} ms",
        write_took.as_millis()
    );
    assert_eq!(player_failures, Vec::<Duration>::new(), "every new player is served");
    assert_eq!(echo_failures, Vec::<(usize, Duration)>::new(), "every open session keeps echoing");
    assert_eq!(asset_failures, Vec::<(&str, Duration)>::new(), "every asset request gets 200");
    assert_eq!(unready, Vec::<(u16, Duration)>::new(), "/readyz stays 200");
    assert_eq!(write.status, 503, "{}", write.body);
    assert!(write.json()["error_msg"].as_str().is_some_and(|m| m.contains("unreachable")), "{}", write.body);
    assert_eq!(read.status, 503, "a read needs the store too: {}", read.body);
    assert!(read.json()["error_msg"].as_str().is_some_and(|m| m.contains("unreachable")), "{}", read.body);
    assert!(
        !store_up_samples.is_empty() && store_up_samples.iter().all(|&up| up == 0.0),
        "shardgate_store_up is 0 throughout the outage: {store_up_samples:?}"
    );

    etcd.start_all().await;
    let restarted = Instant::now();
    let body = json!({"sni": "after.test", "upstream": {"nodes": {gs2.node(): 1}}});
    eventually(60, "a write through A once etcd is back", || async {
        let r = admin.try_request("PUT", "/apisix/admin/stream_routes/after", Some(&body.to_string())).await.ok()?;
        matches!(r.status, 200 | 201).then_some(())
    })
    .await;
    eprintln!("the first write succeeded {} ms after the members restarted", restarted.elapsed().as_millis());
    let live = converge(30, "the write is live on B", &client, b.tls_addr(), "after.test", Some("gs2")).await;
    eprintln!("...and was live on B {} ms later", live.as_millis());
    for (name, gw) in [("A", &a), ("B", &b)] {
        eventually(30, &format!("shardgate_store_up back to 1 on {name}"), || async {
            (gw.metric("shardgate_store_up").await == 1.0).then_some(())
        })
        .await;
    }
    for s in &mut sessions {
        assert_eq!(roundtrip(s, "end").await, "[gs1] end");
    }
}

// ---------------------------------------------------------------------------
// 6. Compaction while an instance is disconnected
// ---------------------------------------------------------------------------

/// B reaches etcd through a proxy the test cuts. A first cut, with the
/// history kept, is caught up by resuming the watch (no resync). During a
/// second cut A creates, changes and deletes, and etcd compacts the
/// history B would resume from: B keeps serving its last configuration,
/// then resyncs to exactly A's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_while_etcd_compacts_resyncs_to_the_same_view() {
    let etcd = EtcdCluster::start(1).await;
    let proxy = PausableProxy::for_url(&etcd.endpoints()[0]).await;
    let a = on_etcd(&etcd).await;
    let b = gateway().etcd(&[proxy.url()], PREFIX).spawn().await;
    let (gs1, gs2) = (GameServer::start("gs1").await, GameServer::start("gs2").await);
    let admin = a.admin();
    let snis = ["c1.test", "c2.test", "c3.test", "c4.test", "c0.test"];
    admin.put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&snis).ssl_body(&snis)).await;
    admin.put_ok("/apisix/admin/upstreams/u1", &json!({"nodes": {gs1.node(): 1}})).await;
    admin.put_ok("/apisix/admin/upstreams/u2", &json!({"nodes": {gs2.node(): 1}})).await;
    for n in 1..=3 {
        admin
            .put_ok(
                &format!("/apisix/admin/stream_routes/r{n}"),
                &json!({"sni": format!("c{n}.test"), "upstream_id": "u1"}),
            )
            .await;
    }
    let client = TlsClient::default();
    for sni in &snis[..3] {
        converge(15, &format!("B routes {sni}"), &client, b.tls_addr(), sni, Some("gs1")).await;
    }
    assert!(proxy.accepted() > 0, "B reaches etcd through the proxy");

    // A cut with the history kept: B resumes its watch where it was.
    let resyncs_before = b.metric("shardgate_config_resyncs_total").await;
    let restarts_before = b.metric("shardgate_config_watch_restarts_total").await;
    proxy.cut();
    eventually(30, "B sees its store down", || async { (b.metric("shardgate_store_up").await == 0.0).then_some(()) })
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r0", &json!({"sni": "c0.test", "upstream_id": "u2"})).await;
    converge(15, "A routes c0", &client, a.tls_addr(), "c0.test", Some("gs2")).await;
    assert_eq!(reply(&client, b.tls_addr(), "c0.test").await, None, "B is cut off");
    proxy.resume();
    let resumed = Instant::now();
    converge(30, "B routes c0 once resumed", &client, b.tls_addr(), "c0.test", Some("gs2")).await;
    eprintln!("B caught up {} ms after the first cut ended (watch resumed)", resumed.elapsed().as_millis());
    assert_eq!(b.metric("shardgate_config_resyncs_total").await, resyncs_before, "no resync while the history is kept");
    assert!(b.metric("shardgate_config_watch_restarts_total").await > restarts_before, "the watch was resumed");
    eventually(30, "B's store up again", || async { (b.metric("shardgate_store_up").await == 1.0).then_some(()) })
        .await;

    // A cut during which the history B needs is compacted.
    let resyncs_before = b.metric("shardgate_config_resyncs_total").await;
    proxy.cut();
    eventually(30, "B sees its store down", || async { (b.metric("shardgate_store_up").await == 0.0).then_some(()) })
        .await;
    let cut_at = Instant::now();
    // Through A: create, change, delete, and some churn.
    admin.put_ok("/apisix/admin/stream_routes/r4", &json!({"sni": "c4.test", "upstream_id": "u2"})).await;
    admin.put_ok("/apisix/admin/stream_routes/r2", &json!({"sni": "c2.test", "upstream_id": "u2"})).await;
    assert_eq!(admin.delete("/apisix/admin/stream_routes/r3").await.status, 200);
    for i in 0..10 {
        admin.put_ok(&format!("/apisix/admin/upstreams/tmp-{i}"), &json!({"nodes": {gs1.node(): 1}})).await;
        if i % 2 == 0 {
            assert_eq!(admin.delete(&format!("/apisix/admin/upstreams/tmp-{i}")).await.status, 200);
        }
    }
    admin.put_ok("/apisix/admin/upstreams/u1", &json!({"nodes": {gs1.node(): 1}, "desc": "changed"})).await;
    converge(15, "A routes c2 to gs2", &client, a.tls_addr(), "c2.test", Some("gs2")).await;
    converge(15, "A stops routing c3", &client, a.tls_addr(), "c3.test", None).await;
    converge(15, "A routes c4", &client, a.tls_addr(), "c4.test", Some("gs2")).await;

    // B, cut off, serves what it had.
    for (sni, want) in [
        ("c1.test", Some("[gs1] ping")),
        ("c2.test", Some("[gs1] ping")),
        ("c3.test", Some("[gs1] ping")),
        ("c4.test", None),
        ("c0.test", Some("[gs2] ping")),
    ] {
        assert_eq!(reply(&client, b.tls_addr(), sni).await.as_deref(), want, "B during the cut, {sni}");
    }
    let r = b.admin().get("/apisix/admin/stream_routes").await;
    assert_eq!(r.status, 503, "B's Admin API cannot read its store: {}", r.body);

    let revision = etcd_revision(&etcd).await;
    etcd.compact(revision).await;
    eprintln!("compacted at revision {revision} after {} ms of cut", cut_at.elapsed().as_millis());

    proxy.resume();
    let resumed = Instant::now();
    converge(30, "B routes c2 to gs2", &client, b.tls_addr(), "c2.test", Some("gs2")).await;
    converge(30, "B stops routing c3", &client, b.tls_addr(), "c3.test", None).await;
    converge(30, "B routes c4", &client, b.tls_addr(), "c4.test", Some("gs2")).await;
    converge(30, "B still routes c1", &client, b.tls_addr(), "c1.test", Some("gs1")).await;
    eprintln!("B converged {} ms after the proxy resumed", resumed.elapsed().as_millis());

    let resyncs_after = b.metric("shardgate_config_resyncs_total").await;
    assert!(resyncs_after > resyncs_before, "B resynced: {resyncs_before} → {resyncs_after}");
    let generation = eventually(30, "B's generation reaches A's", || async {
        let (ga, gb) = (a.metric("shardgate_config_generation").await, b.metric("shardgate_config_generation").await);
        (ga == gb && ga > 0.0).then_some(gb)
    })
    .await;
    assert!(generation >= revision as f64, "generation {generation} vs the compacted revision {revision}");
    for kind in ["ssls", "upstreams", "stream_routes"] {
        assert_eq!(view(&a.admin(), kind).await, view(&b.admin(), kind).await, "{kind}: B lists what A lists");
        let series = format!("shardgate_config_resources{{kind=\"{kind}\"}}");
        assert_eq!(a.metric(&series).await, b.metric(&series).await, "{kind} loaded on A and B");
    }
    assert_eq!(b.metric("shardgate_store_up").await, 1.0);
}

// ---------------------------------------------------------------------------
// 7. Start-up
// ---------------------------------------------------------------------------

/// An etcd endpoint nothing listens on: `run` exits non-zero naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_endpoint_at_start_up_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let picked = shardgate_e2e::ports::free_many("127.0.0.1", 4);
    // free_many releases its ports: nothing listens on `closed`.
    let (tls, admin, metrics, closed) = (picked[0], picked[1], picked[2], picked[3]);
    let endpoint = format!("http://{closed}");
    let yaml = format!(
        "stream:\n  only: true\n  tcp:\n    - addr: \"{tls}\"\n      tls: true\nadmin:\n  listen: \"{admin}\"\nmetrics:\n  listen: \"{metrics}\"\nstore:\n  data_dir: \"{}\"\n  backend: etcd\n  prefix: \"{PREFIX}\"\n  etcd:\n    host: [\"{endpoint}\"]\n    timeout: 2s\n",
        dir.path().join("data").display()
    );
    let config = dir.path().join("shardgate.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SHARDGATE_ADMIN_KEY", shardgate_e2e::ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shardgate");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().expect("kill");
            let out = child.wait_with_output().expect("output");
            panic!("still running after 60 s: {}", text(&out));
        }
        if let Ok(r) = shardgate_e2e::admin::try_http(metrics, "GET", "/readyz", &[], None).await {
            assert_ne!(r.status, 200, "never ready without its store");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("output");
    let log = text(&out);
    eprintln!("exited {status} after {} ms", started.elapsed().as_millis());
    assert!(!status.success(), "must not start: {log}");
    let line = log.lines().find(|l| l.contains(&closed.to_string()));
    assert!(line.is_some(), "a line names the endpoint {endpoint}:\n{log}");
    eprintln!("{}", line.unwrap_or_default());
}

/// An invalidation made through one instance empties the other's cache:
/// the edge's invalidations are resources like any other, so every
/// instance watching etcd applies them (as a CloudFront invalidation
/// reaches every edge location).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_through_one_instance_reaches_every_instance_cache() {
    let etcd = EtcdCluster::start(1).await;
    let a = gateway().etcd(&etcd.endpoints(), PREFIX).edge_http(1).spawn().await;
    let b = gateway().etcd(&etcd.endpoints(), PREFIX).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/a.bin", OriginFile::new("asset a").cache_control("max-age=3600"))]).await;
    a.admin()
        .put_ok(
            "/apisix/admin/distributions/assets",
            &json!({"hosts": [ASSET_HOST], "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge_b = b.edge_plain[0];
    let x_cache =
        |headers: &std::collections::HashMap<String, String>| headers.get("x-cache").cloned().unwrap_or_default();
    eventually(10, "B serves the distribution written through A", || async {
        let (status, _, body) = get(edge_b, ASSET_HOST, "/a.bin", &[]).await;
        (status == 200 && &body[..] == b"asset a").then_some(())
    })
    .await;
    let (_, headers, _) = get(edge_b, ASSET_HOST, "/a.bin", &[]).await;
    assert_eq!(x_cache(&headers), "Hit from shardgate", "B cached it");
    let fetched = origin.hits("/a.bin");

    let r = a
        .admin()
        .request("POST", "/apisix/admin/invalidations", Some(r#"{"distribution_id": "assets", "paths": ["/a.bin"]}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    eventually(10, "B's cached copy invalidated by the write through A", || async {
        let (status, headers, _) = get(edge_b, ASSET_HOST, "/a.bin", &[]).await;
        (status == 200 && x_cache(&headers).starts_with("Miss")).then_some(())
    })
    .await;
    assert_eq!(origin.hits("/a.bin"), fetched + 1, "B went to the origin once more");
}
