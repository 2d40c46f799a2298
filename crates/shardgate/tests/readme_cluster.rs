//! The README's cluster section, run as written against a real etcd: the
//! walkthrough (write through instance 1, connect through instance 2) with
//! the setup block replaced by the test's own etcd and gateways on free
//! ports, and the migration from the embedded store to etcd with only the
//! etcd address changed.

mod common;

use std::path::Path;

use common::{bash, gateway, text};
use serde_json::Value;
use shardgate_e2e::{EtcdCluster, GameServer, TlsClient, eventually, tls::roundtrip};

const SECTION: &str = "## Cluster: many instances on one etcd";
/// The keyring this test gives both instances (the README's setup block
/// makes a random one).
const KEYRING: &str = "0123456789abcdef";

fn blocks() -> Vec<(bool, String)> {
    common::readme_blocks(SECTION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_cluster_walkthrough_runs_as_written() {
    let blocks = blocks();
    assert_eq!(blocks.len(), 3, "setup, walkthrough, migration");
    assert!(blocks[0].0, "the first block is the setup block");
    assert!(blocks[0].1.contains("KEYRING=$(openssl rand -hex 8)"), "the setup block makes its own keyring");

    let etcd = EtcdCluster::start(1).await;
    let game = GameServer::start("gs-1").await;
    let keyring = format!("data_encryption:\n  keyring: [\"{KEYRING}\"]");
    let one = gateway().etcd(&etcd.endpoints(), "/apisix").yaml(&keyring).spawn().await;
    let two = gateway().etcd(&etcd.endpoints(), "/apisix").yaml(&keyring).spawn().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let vars = format!(
        "K='X-API-KEY: {}'; A=http://{}/apisix/admin; B={}; M={}\nGS={}\n",
        shardgate_e2e::ADMIN_KEY,
        one.admin,
        two.tls_addr(),
        two.metrics,
        game.addr
    );
    let out = bash(format!("set -e\n{vars}{}\n", blocks[1].1), dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stdout.contains("error_msg"), "every Admin API call succeeded:\n{stdout}");
    assert!(stdout.contains("[gs-1] hello"), "instance 2 routed the player to the game server:\n{}", text(&out));

    // What etcd holds is APISIX's shape, the key encrypted under the keyring.
    let stored = etcd.get("/apisix/ssls/gs-1").await.expect("the SSL in etcd");
    let stored: Value = serde_json::from_str(&stored).expect("JSON");
    let sealed = stored["key"].as_str().expect("key");
    assert!(!sealed.starts_with("---"), "the key is encrypted in etcd");
    let ring = shardgate_model::Keyring::new(vec![KEYRING.to_owned()]).expect("keyring");
    let pem = std::fs::read_to_string(dir.path().join("gs-1.key")).expect("the key the README made");
    assert_eq!(ring.decrypt(sealed).expect("decrypts"), pem.trim_end(), "the key as the README sent it");
    assert_eq!(stored["snis"], serde_json::json!(["gs-1.com"]));
}

/// The migration block, run in an embedded gateway's directory (its
/// `shardgate.yaml` and `data/`), with the etcd address changed to the
/// test's and the final `shardgate run` replaced by a test gateway on the
/// file it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_migration_from_the_embedded_store_to_etcd_works() {
    let blocks = blocks();
    let migration = &blocks[2].1;
    assert!(migration.contains("shardgate backup") && migration.contains("shardgate restore"), "{migration}");

    let etcd = EtcdCluster::start(1).await;
    let game = GameServer::start("gs-1").await;
    let embedded = gateway().spawn().await;
    let cert = shardgate_e2e::TestCert::ecdsa(&["gs-1.com"]);
    let admin = embedded.admin();
    admin
        .put_ok(
            "/apisix/admin/ssls/gs-1",
            &serde_json::json!({"cert": cert.cert, "key": cert.key, "snis": ["gs-1.com"]}),
        )
        .await;
    admin.put_ok("/apisix/admin/upstreams/gs-1", &serde_json::json!({"nodes": {game.addr.to_string(): 1}})).await;
    admin
        .put_ok("/apisix/admin/stream_routes/gs-1", &serde_json::json!({"sni": "gs-1.com", "upstream_id": "gs-1"}))
        .await;

    // The README's commands, in the directory that holds shardgate.yaml and data/.
    let work = embedded.config_path().parent().expect("work dir").to_owned();
    assert_eq!(embedded.data_dir, work.join("data"), "the harness keeps data/ beside shardgate.yaml");
    let endpoint = etcd.endpoint(0);
    let host = endpoint.trim_start_matches("http://");
    let script: Vec<String> = migration
        .lines()
        .filter(|l| !l.starts_with("shardgate run"))
        .map(|l| l.replace("127.0.0.1:2379", host))
        .collect();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_shardgate")).parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = bash(format!("set -e\nexport PATH='{path}'\n{}\n", script.join("\n")), &work).await;
    assert!(out.status.success(), "{}", text(&out));

    // A cluster instance on the file the README wrote serves what the embedded gateway held.
    let cluster_yaml = std::fs::read_to_string(work.join("cluster.yaml")).expect("cluster.yaml");
    let keyring_line = cluster_yaml.lines().skip_while(|l| !l.starts_with("data_encryption")).collect::<Vec<_>>();
    let instance = gateway().etcd(&etcd.endpoints(), "/apisix").yaml(&keyring_line.join("\n")).spawn().await;
    let reply = eventually(10, "gs-1 through the cluster instance", || async {
        let mut s = TlsClient::default().connect(instance.tls_addr(), Some("gs-1.com")).await.ok()?;
        Some(roundtrip(&mut s, "hello").await)
    })
    .await;
    assert_eq!(reply, "[gs-1] hello");
    for kind in ["ssls", "upstreams", "stream_routes"] {
        assert_eq!(
            instance.admin().list(kind).await["total"],
            embedded.admin().list(kind).await["total"],
            "{kind} carried over"
        );
    }
}
