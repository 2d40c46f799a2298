use super::*;
use std::time::Duration;

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(EmbeddedOptions::new(dir)).expect("open store")
}

async fn next_batch(w: &mut Watch) -> Vec<Event> {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watch delivers within 5s")
        .expect("watch open")
        .expect("no watch error")
}

#[tokio::test]
async fn put_get_list_delete_with_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let a = s.put("/apisix/ssls/1", b"one".to_vec(), Condition::Absent).await.expect("create");
    assert_eq!((a.kv.create_revision, a.kv.mod_revision, a.kv.version), (1, 1, 1));
    assert!(a.prev.is_none());
    let b = s.put("/apisix/ssls/1", b"two".to_vec(), Condition::ModRevision(1)).await.expect("cas");
    assert_eq!((b.kv.create_revision, b.kv.mod_revision, b.kv.version), (1, 2, 2));
    assert_eq!(b.prev.map(|p| p.value), Some(b"one".to_vec()));

    let conflict = s.put("/apisix/ssls/1", b"x".to_vec(), Condition::ModRevision(1)).await;
    assert!(matches!(conflict, Err(StoreError::ConditionFailed { .. })), "{conflict:?}");
    let conflict = s.put("/apisix/ssls/1", b"x".to_vec(), Condition::Absent).await;
    assert!(matches!(conflict, Err(StoreError::ConditionFailed { .. })));

    s.put("/apisix/upstreams/u", b"u".to_vec(), Condition::Always).await.expect("put");
    assert_eq!(s.count("/apisix/").await.expect("count"), 2);
    assert_eq!(s.count("/apisix/ssls/").await.expect("count"), 1);
    let ssls = s.list("/apisix/ssls/").await.expect("list");
    assert_eq!(ssls.kvs.len(), 1);
    assert_eq!(ssls.revision, 3);
    assert_eq!(s.get("/apisix/ssls/1").await.expect("get").map(|kv| kv.value), Some(b"two".to_vec()));

    assert_eq!(s.delete("/apisix/ssls/nope", Condition::Always).await.expect("missing"), None);
    assert_eq!(s.revision().await.expect("rev"), 3, "deleting nothing bumps nothing");
    let gone = s.delete("/apisix/ssls/1", Condition::Always).await.expect("delete");
    assert_eq!(gone.map(|kv| kv.mod_revision), Some(2));
    assert_eq!(s.get("/apisix/ssls/1").await.expect("get"), None);
    assert_eq!(s.revision().await.expect("rev"), 4);
}

#[tokio::test]
async fn values_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = EmbeddedOptions::new(dir.path());
    opts.max_value_bytes = 10;
    let s = EmbeddedStore::open(opts).expect("open");
    let r = s.put("/k", vec![0; 11], Condition::Always).await;
    assert!(matches!(r, Err(StoreError::TooLarge { size: 11, max: 10, .. })), "{r:?}");
    assert_eq!(s.revision().await.expect("rev"), 0);
}

#[tokio::test]
async fn data_survives_reopen_and_the_revision_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put("/a", b"1".to_vec(), Condition::Always).await.expect("put");
        s.put("/b", b"2".to_vec(), Condition::Always).await.expect("put");
        s.delete("/a", Condition::Always).await.expect("delete");
    }
    let s = open(dir.path());
    let all = s.list("/").await.expect("list");
    assert_eq!(all.kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), vec!["/b"]);
    assert_eq!(all.revision, 3);
    let next = s.put("/c", b"3".to_vec(), Condition::Always).await.expect("put");
    assert_eq!(next.kv.mod_revision, 4);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path());
    let second = EmbeddedStore::open(EmbeddedOptions::new(dir.path()));
    assert!(matches!(second, Err(StoreError::Locked { .. })), "{second:?}");
}

#[tokio::test]
async fn a_torn_tail_is_dropped_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put("/a", b"kept".to_vec(), Condition::Always).await.expect("put");
    }
    // Simulate a crash in the middle of the next append.
    let path = dir.path().join(LOG_FILE);
    let mut rec = Vec::new();
    log::encode(
        &Record {
            op: Op::Put,
            revision: 2,
            create_revision: 2,
            version: 1,
            key: "/b".into(),
            value: b"lost".to_vec(),
            expires_at_ms: None,
        },
        &mut rec,
    );
    let mut f = OpenOptions::new().append(true).open(&path).expect("open log");
    f.write_all(&rec[..rec.len() - 3]).expect("write torn");
    drop(f);

    let s = open(dir.path());
    assert_eq!(s.get("/a").await.expect("get").map(|kv| kv.value), Some(b"kept".to_vec()));
    assert_eq!(s.get("/b").await.expect("get"), None);
    s.put("/c", b"after".to_vec(), Condition::Always).await.expect("append after recovery");
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.list("/").await.expect("list").kvs.len(), 2);
}

#[tokio::test]
async fn watch_delivers_backlog_then_live_events_for_its_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put("/apisix/ssls/1", b"a".to_vec(), Condition::Always).await.expect("put");
    s.put("/other/x", b"b".to_vec(), Condition::Always).await.expect("put");
    let mut w = s.watch("/apisix/", 1).await.expect("watch");
    let backlog = next_batch(&mut w).await;
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].kv.key, "/apisix/ssls/1");

    s.delete("/apisix/ssls/1", Condition::Always).await.expect("delete");
    let live = next_batch(&mut w).await;
    assert_eq!(live[0].kind, EventKind::Delete);
    assert_eq!(live[0].kv.mod_revision, 3);
}

#[tokio::test]
async fn watching_from_forgotten_history_says_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put("/a", b"1".to_vec(), Condition::Always).await.expect("put");
    }
    let s = open(dir.path());
    let r = s.watch("/", 1).await;
    assert!(matches!(r, Err(StoreError::Compacted { requested: 1, oldest: 2 })), "{r:?}");
    assert!(s.watch("/", 2).await.is_ok(), "from revision + 1 is fine");
}

#[tokio::test]
async fn compaction_keeps_every_live_key_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = EmbeddedOptions::new(dir.path());
    opts.compact_min_bytes = 4096;
    let s = EmbeddedStore::open(opts.clone()).expect("open");
    for i in 0..200u32 {
        s.put("/hot", vec![b'x'; 100], Condition::Always).await.expect("put");
        if i % 50 == 0 {
            s.put(&format!("/cold/{i}"), i.to_string().into_bytes(), Condition::Always).await.expect("put");
        }
    }
    let size = fs::metadata(dir.path().join(LOG_FILE)).expect("meta").len();
    assert!(size < 4096 * 2, "log was compacted, size {size}");
    let before = s.list("/").await.expect("list");
    drop(s);
    let s = EmbeddedStore::open(opts).expect("reopen");
    let after = s.list("/").await.expect("list");
    assert_eq!(before, after);
    assert_eq!(after.revision, 204);
}

/// Waits (at most 10 s) until `key` is gone.
async fn until_gone(s: &EmbeddedStore, key: &str) {
    for _ in 0..1000 {
        if s.get(key).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} did not expire within 10 s");
}

#[tokio::test]
async fn a_key_with_a_ttl_expires_with_a_delete_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let mut w = s.watch("/apisix/", 0).await.expect("watch");
    let put = s
        .put_with_ttl("/apisix/upstreams/t", b"v".to_vec(), Condition::Absent, Some(Duration::from_millis(300)))
        .await
        .expect("put with ttl");
    assert!(put.kv.expires_at_ms.is_some());
    s.put("/apisix/upstreams/p", b"v".to_vec(), Condition::Always).await.expect("permanent put");
    assert!(s.get("/apisix/upstreams/t").await.expect("get").is_some(), "alive before its time");
    assert_eq!(next_batch(&mut w).await[0].kind, EventKind::Put);

    until_gone(&s, "/apisix/upstreams/t").await;
    // Watchers see the expiry as a delete at a new revision.
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Event| e.kind == EventKind::Delete) {
        seen.extend(next_batch(&mut w).await);
    }
    let delete = seen.iter().find(|e| e.kind == EventKind::Delete).expect("delete event");
    assert_eq!(delete.kv.key, "/apisix/upstreams/t");
    assert_eq!(delete.kv.mod_revision, 3);
    assert_eq!(s.count("/apisix/").await.expect("count"), 1, "the permanent key stays");
    // It is gone for conditions too: creating it again works.
    s.put("/apisix/upstreams/t", b"again".to_vec(), Condition::Absent).await.expect("create again");
}

#[tokio::test]
async fn a_put_without_ttl_makes_the_key_permanent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put_with_ttl("/k", b"1".to_vec(), Condition::Always, Some(Duration::from_millis(200))).await.expect("ttl");
    let kv = s.put("/k", b"2".to_vec(), Condition::Always).await.expect("plain put").kv;
    assert_eq!(kv.expires_at_ms, None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.get("/k").await.expect("get").map(|kv| kv.value), Some(b"2".to_vec()));
}

#[tokio::test]
async fn expiry_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long_expiry = {
        let s = open(dir.path());
        s.put_with_ttl("/short", b"s".to_vec(), Condition::Always, Some(Duration::from_millis(300)))
            .await
            .expect("short");
        let long = s
            .put_with_ttl("/long", b"l".to_vec(), Condition::Always, Some(Duration::from_secs(3600)))
            .await
            .expect("long");
        s.put("/forever", b"f".to_vec(), Condition::Always).await.expect("plain");
        long.kv.expires_at_ms
    };
    // Down while /short's time passes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = open(dir.path());
    assert_eq!(s.get("/short").await.expect("get"), None, "expired while down");
    assert_eq!(s.revision().await.expect("rev"), 4, "the expiry is a delete record");
    assert_eq!(s.get("/long").await.expect("get").and_then(|kv| kv.expires_at_ms), long_expiry);
    assert!(s.get("/forever").await.expect("get").is_some());
    drop(s);
    // The delete was written: a second reopen finds the same state.
    let s = open(dir.path());
    assert_eq!(s.revision().await.expect("rev"), 4);
    assert_eq!(s.list("/").await.expect("list").kvs.len(), 2);
}

#[tokio::test]
async fn compaction_keeps_expiry_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = EmbeddedOptions::new(dir.path());
    opts.compact_min_bytes = 4096;
    let s = EmbeddedStore::open(opts.clone()).expect("open");
    let at = s
        .put_with_ttl("/t", b"v".to_vec(), Condition::Always, Some(Duration::from_secs(3600)))
        .await
        .expect("ttl")
        .kv
        .expires_at_ms;
    for _ in 0..100 {
        s.put("/hot", vec![b'x'; 100], Condition::Always).await.expect("put");
    }
    drop(s);
    let s = EmbeddedStore::open(opts).expect("reopen");
    assert_eq!(s.get("/t").await.expect("get").and_then(|kv| kv.expires_at_ms), at);
}
