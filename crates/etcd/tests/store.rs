//! The etcd backend against a real etcd (one member): every Store method
//! and condition with the embedded store's expectations, TTLs, watches
//! (replay, compaction, a dying member) and size limits.

mod common;

use std::time::Duration;

use common::{connect, events, next, options};
use shardgate_e2e::EtcdCluster;
use shardgate_etcd::EtcdStore;
use shardgate_store::{Condition, EventKind, Store, StoreError};

#[tokio::test]
async fn put_get_list_count_and_revision() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let start = store.revision().await.expect("revision");

    let created = store.put("/apisix/ssls/1", b"one".to_vec(), Condition::Absent).await.expect("create");
    assert_eq!(created.prev, None);
    assert_eq!(created.kv.key, "/apisix/ssls/1");
    assert_eq!(created.kv.value, b"one");
    assert_eq!(created.kv.version, 1);
    assert_eq!(created.kv.create_revision, created.kv.mod_revision);
    assert_eq!(created.kv.mod_revision, start + 1);
    assert_eq!(created.kv.expires_at_ms, None);
    assert_eq!(store.get("/apisix/ssls/1").await.expect("get"), Some(created.kv.clone()));

    let replaced = store.put("/apisix/ssls/1", b"uno".to_vec(), Condition::Always).await.expect("replace");
    assert_eq!(replaced.prev, Some(created.kv.clone()));
    assert_eq!(replaced.kv.version, 2);
    assert_eq!(replaced.kv.create_revision, created.kv.create_revision);
    assert_eq!(replaced.kv.mod_revision, start + 2);
    assert_eq!(store.get("/apisix/ssls/1").await.expect("get"), Some(replaced.kv.clone()));

    store.put("/apisix/ssls/2", b"two".to_vec(), Condition::Absent).await.expect("put 2");
    store.put("/apisix/upstreams/1", b"u".to_vec(), Condition::Absent).await.expect("put u");
    // Written by another etcd client: seen like any other key.
    etcd.put("/apisix/ssls/0", "zero").await;

    let listing = store.list("/apisix/ssls/").await.expect("list");
    let keys: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/apisix/ssls/0", "/apisix/ssls/1", "/apisix/ssls/2"], "byte order, this prefix only");
    assert_eq!(listing.kvs[0].value, b"zero");
    assert_eq!(listing.revision, store.revision().await.expect("revision"));
    assert_eq!(listing.revision, start + 5);

    assert_eq!(store.count("/apisix/ssls/").await.expect("count"), 3);
    assert_eq!(store.count("/apisix/").await.expect("count"), 4);
    assert_eq!(store.count("/apisix/routes/").await.expect("count"), 0);
    assert_eq!(store.list("/apisix/routes/").await.expect("list").kvs, []);
    assert_eq!(store.get("/apisix/ssls/9").await.expect("get"), None);
    // Reads change nothing.
    assert_eq!(store.revision().await.expect("revision"), start + 5);
}

#[tokio::test]
async fn put_conditions_hold_as_in_the_embedded_store() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let key = "/apisix/upstreams/1";

    // ModRevision on a missing key fails, even ModRevision(0).
    for cond in [Condition::ModRevision(0), Condition::ModRevision(1)] {
        match store.put(key, b"x".to_vec(), cond).await {
            Err(StoreError::ConditionFailed { key: k, actual }) => {
                assert_eq!(k, key);
                assert_eq!(actual, "does not exist");
            }
            other => panic!("{cond:?} on a missing key: {other:?}"),
        }
    }
    assert_eq!(store.get(key).await.expect("get"), None, "a failed put writes nothing");

    let v1 = store.put(key, b"1".to_vec(), Condition::Absent).await.expect("create").kv;
    let before = store.revision().await.expect("revision");
    match store.put(key, b"2".to_vec(), Condition::Absent).await {
        Err(StoreError::ConditionFailed { actual, .. }) => {
            assert_eq!(actual, format!("exists (mod_revision {})", v1.mod_revision));
        }
        other => panic!("Absent on an existing key: {other:?}"),
    }
    match store.put(key, b"2".to_vec(), Condition::ModRevision(v1.mod_revision + 7)).await {
        Err(StoreError::ConditionFailed { actual, .. }) => {
            assert_eq!(actual, format!("is at mod_revision {}", v1.mod_revision));
        }
        other => panic!("a stale ModRevision: {other:?}"),
    }
    assert_eq!(store.revision().await.expect("revision"), before, "failed conditions write nothing");
    assert_eq!(store.get(key).await.expect("get").expect("key").value, b"1");

    let v2 = store.put(key, b"2".to_vec(), Condition::ModRevision(v1.mod_revision)).await.expect("cas");
    assert_eq!(v2.prev.as_ref().map(|p| p.value.as_slice()), Some(&b"1"[..]));
    assert_eq!(v2.kv.version, 2);
    let v3 = store.put(key, b"3".to_vec(), Condition::Always).await.expect("always");
    assert_eq!(v3.prev, Some(v2.kv));
}

#[tokio::test]
async fn delete_conditions_hold_as_in_the_embedded_store() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let key = "/apisix/stream_routes/1";

    assert_eq!(store.delete(key, Condition::Always).await.expect("delete missing"), None);
    assert_eq!(store.delete(key, Condition::Absent).await.expect("delete missing, Absent"), None);
    match store.delete(key, Condition::ModRevision(3)).await {
        Err(StoreError::ConditionFailed { actual, .. }) => assert_eq!(actual, "does not exist"),
        other => panic!("ModRevision delete of a missing key: {other:?}"),
    }

    let kv = store.put(key, b"r".to_vec(), Condition::Absent).await.expect("put").kv;
    match store.delete(key, Condition::Absent).await {
        Err(StoreError::ConditionFailed { actual, .. }) => {
            assert_eq!(actual, format!("exists (mod_revision {})", kv.mod_revision));
        }
        other => panic!("Absent delete of an existing key: {other:?}"),
    }
    match store.delete(key, Condition::ModRevision(kv.mod_revision - 1)).await {
        Err(StoreError::ConditionFailed { actual, .. }) => {
            assert_eq!(actual, format!("is at mod_revision {}", kv.mod_revision));
        }
        other => panic!("a stale ModRevision delete: {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(kv.clone()), "failed deletes keep the key");

    let prev = store.delete(key, Condition::ModRevision(kv.mod_revision)).await.expect("delete");
    assert_eq!(prev, Some(kv));
    assert_eq!(store.get(key).await.expect("get"), None);
    assert_eq!(etcd.get(key).await, None, "gone for other etcd clients too");
}

#[tokio::test]
async fn values_over_the_limits_are_refused_with_their_size() {
    let etcd = EtcdCluster::start(1).await;
    let mut opts = options(&etcd);
    opts.max_value_bytes = 10;
    let store = EtcdStore::connect(opts).await.expect("connect");
    let before = store.revision().await.expect("revision");
    match store.put("/apisix/ssls/big", vec![b'x'; 11], Condition::Always).await {
        Err(StoreError::TooLarge { key, size, max }) => {
            assert_eq!((key.as_str(), size, max), ("/apisix/ssls/big", 11, 10));
        }
        other => panic!("an 11-byte value over a 10-byte limit: {other:?}"),
    }
    store.put("/apisix/ssls/small", vec![b'x'; 10], Condition::Always).await.expect("10 bytes fit");
    assert_eq!(store.revision().await.expect("revision"), before + 1);

    // Over etcd's own request limit (--max-request-bytes, 1.5 MiB): etcd's
    // refusal, reported as what it is, not as an outage.
    let mut opts = options(&etcd);
    opts.max_value_bytes = 4 * 1024 * 1024;
    let store = EtcdStore::connect(opts).await.expect("connect");
    // Between 1.5 and 2 MiB etcd refuses it; above, gRPC's receive limit does.
    for size in [1600 * 1024, 3 * 1024 * 1024] {
        match store.put("/apisix/ssls/huge", vec![b'x'; size], Condition::Always).await {
            Err(StoreError::Backend { context, reason }) => {
                assert!(context.contains("/apisix/ssls/huge"), "{context}");
                assert!(reason.contains("larger than etcd accepts"), "{reason}");
            }
            other => panic!("a {size}-byte request: {other:?}"),
        }
    }
    assert_eq!(store.get("/apisix/ssls/huge").await.expect("get"), None);
}

#[tokio::test]
async fn a_ttl_key_expires_with_a_delete_event_and_a_plain_put_makes_it_permanent() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let mut watch = store.watch("/apisix/", 0).await.expect("watch");

    let put = store
        .put_with_ttl("/apisix/ssls/tmp", b"t".to_vec(), Condition::Absent, Some(Duration::from_millis(1)))
        .await
        .expect("ttl put");
    // A TTL under a second is rounded up to one: the key exists right after.
    assert!(store.get("/apisix/ssls/tmp").await.expect("get").is_some());
    let seen = events(&mut watch, 2).await;
    assert_eq!(seen[0].kind, EventKind::Put);
    assert_eq!(seen[0].kv, put.kv);
    assert_eq!(seen[1].kind, EventKind::Delete, "the lease ran out: {seen:?}");
    assert_eq!(seen[1].kv.key, "/apisix/ssls/tmp");
    assert!(seen[1].kv.mod_revision > put.kv.mod_revision);
    assert_eq!(store.get("/apisix/ssls/tmp").await.expect("get"), None);

    // A put without TTL detaches the lease: the key outlives the TTL.
    store
        .put_with_ttl("/apisix/ssls/kept", b"1".to_vec(), Condition::Absent, Some(Duration::from_secs(1)))
        .await
        .expect("ttl put");
    let kept = store.put("/apisix/ssls/kept", b"2".to_vec(), Condition::Always).await.expect("plain put");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store.get("/apisix/ssls/kept").await.expect("get"), Some(kept.kv));
}

#[tokio::test]
async fn a_watch_from_a_past_revision_replays_in_order_and_stays_in_its_prefix() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let a = store.put("/apisix/ssls/a", b"a".to_vec(), Condition::Absent).await.expect("a").kv;
    store.put("/other/x", b"x".to_vec(), Condition::Absent).await.expect("other prefix");
    let b = store.put("/apisix/ssls/b", b"b".to_vec(), Condition::Absent).await.expect("b").kv;
    store.delete("/apisix/ssls/a", Condition::Always).await.expect("delete a");

    let mut watch = store.watch("/apisix/", a.mod_revision).await.expect("watch");
    let seen = events(&mut watch, 3).await;
    let summary: Vec<(EventKind, &str, u64)> =
        seen.iter().map(|e| (e.kind, e.kv.key.as_str(), e.kv.mod_revision)).collect();
    assert_eq!(
        summary,
        [
            (EventKind::Put, "/apisix/ssls/a", a.mod_revision),
            (EventKind::Put, "/apisix/ssls/b", b.mod_revision),
            (EventKind::Delete, "/apisix/ssls/a", b.mod_revision + 1),
        ]
    );
    assert_eq!(seen[1].kv, b);

    // Live events follow the replay, still only under the prefix.
    store.put("/other/y", b"y".to_vec(), Condition::Absent).await.expect("other prefix");
    let c = store.put("/apisix/ssls/c", b"c".to_vec(), Condition::Absent).await.expect("c").kv;
    let live = events(&mut watch, 1).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].kv, c);
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_fails_with_compacted() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let first = store.put("/apisix/ssls/1", b"1".to_vec(), Condition::Absent).await.expect("1").kv;
    for i in 2..5 {
        store.put(&format!("/apisix/ssls/{i}"), b"v".to_vec(), Condition::Absent).await.expect("put");
    }
    let head = store.revision().await.expect("revision");
    etcd.compact(head).await;

    let mut watch = store.watch("/apisix/", first.mod_revision).await.expect("the watch is created first");
    match next(&mut watch).await {
        Some(Err(StoreError::Compacted { requested, oldest })) => {
            assert_eq!(requested, first.mod_revision);
            assert_eq!(oldest, head, "etcd keeps the compaction revision");
        }
        other => panic!("a watch from a compacted revision: {other:?}"),
    }
    assert!(next(&mut watch).await.is_none(), "the error ends the stream");

    // From the compaction revision on, history is there.
    let mut watch = store.watch("/apisix/", head).await.expect("watch");
    let seen = events(&mut watch, 1).await;
    assert_eq!(seen[0].kv.key, "/apisix/ssls/4");
}

#[tokio::test]
async fn a_watch_ends_unavailable_when_etcd_dies() {
    let mut etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let mut watch = store.watch("/apisix/", 0).await.expect("watch");
    store.put("/apisix/ssls/1", b"1".to_vec(), Condition::Absent).await.expect("put");
    assert_eq!(events(&mut watch, 1).await[0].kv.key, "/apisix/ssls/1");

    etcd.kill(0);
    match next(&mut watch).await {
        Some(Err(StoreError::Unavailable { endpoints, reason })) => {
            assert_eq!(endpoints, etcd.endpoints_csv());
            assert!(reason.starts_with("watch /apisix/"), "{reason}");
        }
        other => panic!("a watch on a killed member: {other:?}"),
    }
    // Reads fail the same way, within the timeout.
    match store.get("/apisix/ssls/1").await {
        Err(StoreError::Unavailable { endpoints, .. }) => assert_eq!(endpoints, etcd.endpoints_csv()),
        other => panic!("a read with etcd down: {other:?}"),
    }

    // Back on the same data: the same store reconnects, and nothing was lost.
    etcd.start_member(0).await;
    let kv = store.get("/apisix/ssls/1").await.expect("get after restart").expect("key kept");
    assert_eq!(kv.value, b"1");
}

#[tokio::test]
async fn data_survives_stopping_and_starting_every_member() {
    let mut etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let kv = store.put("/apisix/upstreams/1", b"u".to_vec(), Condition::Absent).await.expect("put").kv;
    etcd.stop_all().await;
    assert!(matches!(store.revision().await, Err(StoreError::Unavailable { .. })));
    etcd.start_all().await;
    assert_eq!(store.get("/apisix/upstreams/1").await.expect("get"), Some(kv));
}

#[tokio::test]
async fn large_batches_arrive_in_fragments_and_oversized_answers_are_named() {
    let etcd = EtcdCluster::start(1).await;
    let mut opts = options(&etcd);
    // Under three 1 MiB values: a listing of them is refused, while a watch
    // replaying them gets them in fragments (one event each, under etcd's
    // 1.5 MiB request limit; etcd 3.4 was seen to fragment even unasked,
    // later versions only when the watch asks, as this backend does).
    opts.max_response_bytes = 2 * 1024 * 1024 + 512 * 1024;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(EtcdStore::connect(opts).await.expect("connect"));
    let mut first = 0;
    for i in 0..3u8 {
        let put = store.put(&format!("/apisix/ssls/{i}"), vec![b'a' + i; 1024 * 1024], Condition::Absent).await;
        let kv = put.expect("1 MiB put").kv;
        if i == 0 {
            first = kv.mod_revision;
        }
    }
    let mut watch = store.watch("/apisix/ssls/", first).await.expect("watch");
    let seen = events(&mut watch, 3).await;
    for (i, e) in seen.iter().enumerate() {
        assert_eq!(e.kv.key, format!("/apisix/ssls/{i}"));
        assert_eq!(e.kv.value.len(), 1024 * 1024);
        assert!(e.kv.value.iter().all(|&b| b == b'a' + i as u8), "value {i} intact");
    }
    match store.list("/apisix/ssls/").await {
        Err(StoreError::Backend { context, reason }) => {
            assert!(context.contains("list /apisix/ssls/"), "{context}");
            assert!(reason.contains("max_response_bytes"), "{reason}");
        }
        other => panic!("a 3 MiB listing over a 2.5 MiB limit: {:?}", other.map(|l| l.kvs.len())),
    }
    assert_eq!(store.count("/apisix/ssls/").await.expect("count"), 3);
}

#[tokio::test]
async fn a_refused_ttl_put_leaves_no_lease_behind() {
    let etcd = EtcdCluster::start(1).await;
    let store = connect(&etcd).await;
    let leases = || async {
        let out = etcd.etcdctl(&["lease", "list"]).await;
        assert!(out.status.success(), "etcdctl lease list");
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned()
    };
    store.put("/apisix/ssls/1", b"1".to_vec(), Condition::Absent).await.expect("put");
    let refused =
        store.put_with_ttl("/apisix/ssls/1", b"2".to_vec(), Condition::Absent, Some(Duration::from_secs(600))).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed { .. })), "{refused:?}");
    assert_eq!(leases().await, "found 0 leases", "the lease granted for the refused put is revoked");
    store
        .put_with_ttl("/apisix/ssls/2", b"2".to_vec(), Condition::Absent, Some(Duration::from_secs(600)))
        .await
        .expect("ttl put");
    assert_eq!(leases().await, "found 1 leases");
}
