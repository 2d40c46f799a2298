//! A three-member etcd cluster losing its leader under writes: no
//! acknowledged write is lost, no write is applied twice, a watch resumes
//! across the loss, and the store keeps working on two members.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::options;
use shardgate_e2e::EtcdCluster;
use shardgate_etcd::{EtcdOptions, EtcdStore};
use shardgate_store::{Condition, EventKind, Store, StoreError};
use tokio::time::Instant;

const WRITES: usize = 300;
const WRITE_FOR: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut etcd = EtcdCluster::start(3).await;
    let store = common::connect(&etcd).await;
    let start = store.revision().await.expect("revision");

    // A watcher that resumes from its last revision, as the reconciler does.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            let mut from = start + 1;
            let mut resumes = 0;
            let deadline = Instant::now() + WRITE_FOR + Duration::from_secs(20);
            while Instant::now() < deadline && resumes < 50 {
                let mut watch = match store.watch("/apisix/upstreams/", from).await {
                    Ok(w) => w,
                    Err(StoreError::Unavailable { .. }) => {
                        resumes += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => panic!("watch: {e}"),
                };
                loop {
                    match tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
                        Ok(Some(Ok(batch))) => {
                            for e in batch {
                                assert_eq!(e.kind, EventKind::Put);
                                from = e.kv.mod_revision + 1;
                                seen.insert(e.kv.key, e.kv.mod_revision);
                            }
                        }
                        Ok(Some(Err(StoreError::Unavailable { .. }))) | Ok(None) => {
                            resumes += 1;
                            break;
                        }
                        Ok(Some(Err(e))) => panic!("watch ended with {e}"),
                        Err(_) if stop.load(Ordering::SeqCst) => return (seen, resumes),
                        Err(_) => {}
                    }
                }
            }
            (seen, resumes)
        })
    };

    let acked_count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let acked_count = Arc::clone(&acked_count);
        let killed = Arc::clone(&killed);
        tokio::spawn(async move {
            let mut acked: BTreeMap<String, u64> = BTreeMap::new();
            let mut unanswered = Vec::new();
            let mut acked_after_kill = 0;
            let deadline = Instant::now() + WRITE_FOR;
            for i in 0..WRITES {
                if Instant::now() >= deadline {
                    break;
                }
                let key = format!("/apisix/upstreams/{i:04}");
                match store.put(&key, format!("value {i}").into_bytes(), Condition::Absent).await {
                    Ok(put) => {
                        acked.insert(key, put.kv.mod_revision);
                        acked_count.fetch_add(1, Ordering::SeqCst);
                        if killed.load(Ordering::SeqCst) {
                            acked_after_kill += 1;
                        }
                    }
                    // Applied or not: the answer was lost with the leader.
                    Err(StoreError::Unavailable { .. }) => unanswered.push(key),
                    // ConditionFailed here would mean a write sent twice.
                    Err(e) => panic!("write {key}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (acked, unanswered, acked_after_kill)
        })
    };

    shardgate_e2e::eventually(20, "30 acknowledged writes", || {
        let n = acked_count.load(Ordering::SeqCst);
        async move { (n >= 30).then_some(()) }
    })
    .await;
    let leader = etcd.leader().await;
    etcd.kill(leader);
    killed.store(true, Ordering::SeqCst);
    let (acked, unanswered, acked_after_kill) = writer.await.expect("writer");
    stop.store(true, Ordering::SeqCst);
    let (seen, resumes) = watcher.await.expect("watcher");

    eprintln!(
        "killed member {leader}: {} writes acknowledged ({acked_after_kill} after the kill), {} unanswered, watch resumed {resumes} times",
        acked.len(),
        unanswered.len()
    );
    assert!(acked_after_kill > 0, "no write succeeded on the two remaining members");

    // Read back through the survivors only.
    let survivors: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| etcd.endpoint(i)).collect();
    let check = EtcdStore::connect(EtcdOptions { endpoints: survivors, ..options(&etcd) }).await.expect("connect");
    let listing = check.list("/apisix/upstreams/").await.expect("list");
    let stored: BTreeMap<String, u64> = listing.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect();
    for (key, revision) in &acked {
        assert_eq!(stored.get(key), Some(revision), "acknowledged write {key} lost or changed");
        assert_eq!(seen.get(key), Some(revision), "the resuming watch missed {key} (resumed {resumes} times)");
    }
    for key in stored.keys() {
        assert!(acked.contains_key(key) || unanswered.contains(key), "{key} was stored but never written");
    }

    // The first store (its endpoint list still names the dead member) keeps working.
    let after = store.put("/apisix/upstreams/after", b"a".to_vec(), Condition::Absent).await.expect("put after");
    assert_eq!(check.get("/apisix/upstreams/after").await.expect("get"), Some(after.kv));
}
