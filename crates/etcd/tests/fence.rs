//! The write fence on a real etcd, with two stores standing for two
//! gateway instances sharing one cluster.

mod common;

use std::time::Duration;

use common::connect;
use shardgate_e2e::EtcdCluster;
use shardgate_store::{Condition, Fence, Store, StoreError};

#[tokio::test]
async fn the_first_fenced_write_wins_and_the_second_is_fenced() {
    let etcd = EtcdCluster::start(1).await;
    let a = connect(&etcd).await;
    let b = connect(&etcd).await;
    assert_eq!(a.fence().await.expect("fence"), Fence(0), "no fenced write yet");

    let fa = a.fence().await.expect("fence a");
    let fb = b.fence().await.expect("fence b");
    assert_eq!(fa, fb);
    let won = a
        .put_fenced("/apisix/upstreams/1", b"a".to_vec(), Condition::Absent, None, &mut { fa })
        .await
        .expect("first fenced write");
    let before = b.revision().await.expect("revision");
    match b.put_fenced("/apisix/stream_routes/1", b"b".to_vec(), Condition::Absent, None, &mut { fb }).await {
        Err(StoreError::Fenced) => {}
        other => panic!("a write with a stale fence: {other:?}"),
    }
    assert_eq!(b.get("/apisix/stream_routes/1").await.expect("get"), None, "the fenced write wrote nothing");
    assert_eq!(b.revision().await.expect("revision"), before);

    // The guard key records the winning write's revision.
    let now = b.fence().await.expect("fence");
    assert_eq!(now, Fence(won.kv.mod_revision));
    let guard = b.get(a.fence_key()).await.expect("guard").expect("guard key exists");
    assert_eq!(guard.key, "/apisix/shardgate/write_fence");
    assert_eq!(guard.mod_revision, won.kv.mod_revision, "one transaction: key and guard at one revision");

    // Checked again with the new fence, the write goes through, and the
    // fence it holds moves past it: a second write of the same operation
    // (a canary promote writes several) is not fenced by the first.
    let mut turn = now;
    let retried = b
        .put_fenced("/apisix/stream_routes/1", b"b".to_vec(), Condition::Absent, None, &mut turn)
        .await
        .expect("retry");
    assert_eq!(turn, Fence(retried.kv.mod_revision));
    b.put_fenced("/apisix/stream_routes/2", b"b".to_vec(), Condition::Absent, None, &mut turn)
        .await
        .expect("the same operation's next write");

    // A fenced delete with a stale fence is refused too, and keeps the key.
    match a.delete_fenced("/apisix/upstreams/1", Condition::Always, &mut { fa }).await {
        Err(StoreError::Fenced) => {}
        other => panic!("a delete with a stale fence: {other:?}"),
    }
    assert!(a.get("/apisix/upstreams/1").await.expect("get").is_some());
    let fresh = a.fence().await.expect("fence");
    assert!(a.delete_fenced("/apisix/upstreams/1", Condition::Always, &mut { fresh }).await.expect("delete").is_some());
    assert!(a.fence().await.expect("fence").0 > fresh.0, "a fenced delete moves the fence");
}

#[tokio::test]
async fn a_failed_condition_wins_over_a_moved_fence() {
    let etcd = EtcdCluster::start(1).await;
    let a = connect(&etcd).await;
    let b = connect(&etcd).await;
    let stale = b.fence().await.expect("fence");
    let kv = a
        .put_fenced("/apisix/ssls/1", b"a".to_vec(), Condition::Absent, None, &mut { stale })
        .await
        .expect("a writes")
        .kv;

    // Both compares fail: the key exists and the fence moved. The key's
    // own condition is the answer (a conflict, not a retry).
    match b.put_fenced("/apisix/ssls/1", b"b".to_vec(), Condition::Absent, None, &mut { stale }).await {
        Err(StoreError::ConditionFailed { key, actual }) => {
            assert_eq!(key, "/apisix/ssls/1");
            assert_eq!(actual, format!("exists (mod_revision {})", kv.mod_revision));
        }
        other => panic!("{other:?}"),
    }
    match b.put_fenced("/apisix/ssls/1", b"b".to_vec(), Condition::ModRevision(1), None, &mut { stale }).await {
        Err(StoreError::ConditionFailed { actual, .. }) => {
            assert_eq!(actual, format!("is at mod_revision {}", kv.mod_revision));
        }
        other => panic!("{other:?}"),
    }
    match b.delete_fenced("/apisix/ssls/2", Condition::ModRevision(kv.mod_revision), &mut { stale }).await {
        Err(StoreError::ConditionFailed { actual, .. }) => assert_eq!(actual, "does not exist"),
        other => panic!("{other:?}"),
    }
    // Only the fence failed: Fenced.
    match b
        .put_fenced("/apisix/ssls/1", b"b".to_vec(), Condition::ModRevision(kv.mod_revision), None, &mut { stale })
        .await
    {
        Err(StoreError::Fenced) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(a.get("/apisix/ssls/1").await.expect("get"), Some(kv));
}

#[tokio::test]
async fn writes_without_the_fence_do_not_trip_it() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let fence = store.fence().await.expect("fence");
    store.put("/apisix/upstreams/9", b"plain".to_vec(), Condition::Always).await.expect("plain put");
    store.delete("/apisix/upstreams/9", Condition::Always).await.expect("plain delete");
    etcd.put("/apisix/routes/1", "another etcd client").await;
    assert_eq!(store.fence().await.expect("fence"), fence);
    store
        .put_fenced("/apisix/upstreams/1", b"f".to_vec(), Condition::Absent, None, &mut { fence })
        .await
        .expect("the fence still holds");
}

#[tokio::test]
async fn a_fenced_ttl_put_expires_like_any_ttl_put() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let fence = store.fence().await.expect("fence");
    let kv = store
        .put_fenced("/apisix/ssls/t", b"t".to_vec(), Condition::Absent, Some(Duration::from_secs(1)), &mut { fence })
        .await
        .expect("fenced ttl put")
        .kv;
    assert_eq!(store.fence().await.expect("fence"), Fence(kv.mod_revision));
    // A stale fence refuses a TTL put as well, and leaves nothing behind.
    match store
        .put_fenced("/apisix/ssls/u", b"u".to_vec(), Condition::Absent, Some(Duration::from_secs(60)), &mut { fence })
        .await
    {
        Err(StoreError::Fenced) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get("/apisix/ssls/u").await.expect("get"), None);
    shardgate_e2e::eventually(10, "the fenced TTL key expires", || async {
        store.get("/apisix/ssls/t").await.expect("get").is_none().then_some(())
    })
    .await;
    // The guard key itself is permanent.
    assert!(store.get(store.fence_key()).await.expect("guard").is_some());
}
