//! The embedded store keeps what the Admin API acknowledged: across a clean
//! restart, and across a kill -9 in the middle of a burst of writes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::roundtrip;
use shardgate_e2e::{AdminClient, GameServer, TestCert, TlsClient, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_certificates_come_back_after_a_restart() {
    let mut gw = gateway().spawn().await;
    let gs = GameServer::start("persisted").await;
    let cert = TestCert::ecdsa(&["gs-1.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/1", &cert.ssl_body(&["gs-1.com"])).await;
    gw.admin().put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {gs.node(): 1}})).await;
    gw.admin().put_ok("/apisix/admin/stream_routes/r", &json!({"sni": "gs-1.com", "upstream_id": "u"})).await;
    let before = gw.admin().list("stream_routes").await;

    gw.sigterm();
    assert!(gw.wait_exit(20).await.success());
    gw.restart().await;

    assert_eq!(gw.admin().list("stream_routes").await, before);
    assert_eq!(gw.admin().list("ssls").await["total"], 1);
    // Ready means the stored configuration is already loaded: no waiting.
    let mut s = TlsClient::default().connect(gw.tls_addr(), Some("gs-1.com")).await.expect("served after restart");
    assert_eq!(roundtrip(&mut s, "back").await, "[persisted] back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_burst_loses_no_acknowledged_write() {
    let mut gw = gateway().spawn().await;
    let admin = gw.admin();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let admin: AdminClient = admin.clone();
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            // Bounded: at most 10,000 writes per writer, stopped by the kill.
            for i in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = format!("w{w}-{i}");
                let body = json!({"nodes": {format!("127.0.0.1:{}", 1000 + i % 5000): 1}, "desc": id}).to_string();
                match admin.try_request("PUT", &format!("/apisix/admin/upstreams/{id}"), Some(&body)).await {
                    Ok(r) if r.status == 201 => acked.push(id),
                    Ok(r) => panic!("write {id} refused: {} {}", r.status, r.body),
                    // The connection died with the process: this write was not acknowledged.
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Let the burst run, then kill -9 in the middle of it.
    eventually(20, "a few hundred acknowledged writes", || async {
        let n = admin.list("upstreams").await["total"].as_u64().unwrap_or(0);
        (n >= 200).then_some(())
    })
    .await;
    gw.kill9();
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap_or_default());
    }
    assert!(acked.len() >= 200, "{} writes acknowledged", acked.len());

    gw.restart().await;
    let stored = gw.admin().list("upstreams").await;
    let ids: std::collections::HashSet<String> = stored["list"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["value"]["id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    eprintln!("{} writes acknowledged before kill -9, {} stored after restart", acked.len(), ids.len());
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // And the restarted store keeps accepting writes.
    gw.admin().put_ok("/apisix/admin/upstreams/after", &json!({"nodes": {"127.0.0.1:1": 1}})).await;
}

/// One flipped byte in the middle of the store log: start-up refuses it and
/// names the way forward; `store check` locates the damage and lists what
/// lies after it; `store repair` keeps a copy and truncates, and the gateway
/// starts again with everything written before the damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_checked_repaired_and_starts_again() {
    let mut gw = gateway().spawn().await;
    for id in ["a", "b", "c"] {
        gw.admin().put_ok(&format!("/apisix/admin/upstreams/{id}"), &json!({"nodes": {"127.0.0.1:1980": 1}})).await;
    }
    gw.sigterm();
    assert!(gw.wait_exit(20).await.success());

    let log_path = gw.data_dir.join("store.log");
    let mut bytes = std::fs::read(&log_path).expect("read store.log");
    let needle = b"/apisix/upstreams/b";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("upstream b's record");
    bytes[at + needle.len() + 8] ^= 0x20;
    std::fs::write(&log_path, &bytes).expect("write store.log");

    let config = gw.config_path().to_owned();
    let run = |args: Vec<&'static str>| cli(config.clone(), args);
    let out = run(vec!["run"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged store is refused");
    assert!(err.contains("corrupt at byte") && err.contains("shardgate store check"), "{err}");

    let out = run(vec!["store", "check"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "check exits 1 on damage: {report}");
    assert!(report.contains("damaged at byte") && report.contains("checksum mismatch"), "{report}");
    assert!(report.contains("put /apisix/upstreams/c"), "the record after the damage is listed: {report}");

    let out = run(vec!["store", "repair"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("kept a copy"), "{report}");
    let copies: Vec<_> = std::fs::read_dir(&gw.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("store.log.damaged-"))
        .collect();
    assert_eq!(copies.len(), 1, "one copy of the damaged file");
    assert_eq!(std::fs::read(copies[0].path()).expect("copy"), bytes);

    gw.restart().await;
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/a").await.status, 200, "written before the damage: kept");
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/b").await.status, 404);
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/c").await.status, 404);
    gw.admin().put_ok("/apisix/admin/upstreams/d", &json!({"nodes": {"127.0.0.1:1980": 1}})).await;
}

/// A record appended by a newer shardgate (a well-formed record with an op
/// this version does not know) is not damage: start-up names the other
/// version instead of suggesting a repair, `store check` says the same,
/// `store repair` changes nothing without `--force`, and with it keeps a
/// copy and truncates, after which the gateway starts with what it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_a_newer_version_is_not_repaired_without_force() {
    let mut gw = gateway().spawn().await;
    gw.admin().put_ok("/apisix/admin/upstreams/a", &json!({"nodes": {"127.0.0.1:1980": 1}})).await;
    gw.sigterm();
    assert!(gw.wait_exit(20).await.success());

    let log_path = gw.data_dir.join("store.log");
    let mut bytes = std::fs::read(&log_path).expect("read store.log");
    let good_len = bytes.len();
    let mut newer = Vec::new();
    let rec = shardgate_store::log::Record {
        op: shardgate_store::log::Op::Put,
        revision: 2,
        create_revision: 2,
        version: 1,
        key: "/apisix/upstreams/b".into(),
        value: br#"{"nodes":{"127.0.0.1:1980":1}}"#.to_vec(),
        expires_at_ms: None,
    };
    shardgate_store::log::encode(&rec, &mut newer);
    newer[shardgate_store::log::HEADER] = 42;
    let crc = crc32fast::hash(&newer[shardgate_store::log::HEADER..]);
    newer[4..8].copy_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&newer);
    std::fs::write(&log_path, &bytes).expect("write store.log");

    let config = gw.config_path().to_owned();
    let run = |args: Vec<&'static str>| cli(config.clone(), args);
    let out = run(vec!["run"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(err.contains("unknown op 42") && err.contains("another shardgate version"), "{err}");
    assert!(!err.contains("store repair"), "a repair is not suggested: {err}");

    let out = run(vec!["store", "check"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("unreadable by this version") && report.contains("do not repair it"), "{report}");

    let out = run(vec!["store", "repair"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "refused without --force: {report}");
    assert!(report.contains("not repaired, nothing changed"), "{report}");
    assert_eq!(std::fs::read(&log_path).expect("log"), bytes, "the file is untouched");

    let out = run(vec!["store", "repair", "--force"]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("kept a copy"), "{report}");
    assert_eq!(std::fs::read(&log_path).expect("log").len(), good_len, "cut where the newer record starts");

    gw.restart().await;
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/a").await.status, 200);
}

/// Runs `shardgate <args> --config <config>` on a blocking thread.
async fn cli(config: std::path::PathBuf, args: Vec<&'static str>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env("SHARDGATE_ADMIN_KEY", shardgate_e2e::ADMIN_KEY)
            .output()
            .expect("run shardgate")
    })
    .await
    .expect("join")
}
