use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A wall clock the test moves by hand, so no test depends on how long an
/// fsync takes. The expiry thread can be kept at the start time
/// (`freeze_thread`), so that only the code under test can expire keys.
#[derive(Clone)]
struct TestClock {
    now: Arc<AtomicU64>,
    start: u64,
    freeze_thread: Arc<std::sync::atomic::AtomicBool>,
}

impl TestClock {
    fn new() -> Self {
        let start = 1_800_000_000_000;
        TestClock {
            now: Arc::new(AtomicU64::new(start)),
            start,
            freeze_thread: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn advance(&self, by: Duration) {
        self.now.fetch_add(u64::try_from(by.as_millis()).expect("ms"), Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        let t = self.clone();
        Clock::new(move || {
            let expiry_thread = std::thread::current().name() == Some("shardgate-store-expiry");
            if expiry_thread && t.freeze_thread.load(Ordering::SeqCst) { t.start } else { t.now.load(Ordering::SeqCst) }
        })
    }

    fn options(&self, dir: &Path) -> EmbeddedOptions {
        EmbeddedOptions { clock: self.clock(), ..EmbeddedOptions::new(dir) }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Waits (at most 10 s) until the expiry thread has deleted `key` for good
/// (not only hidden it), kicking it meanwhile.
async fn until_deleted(s: &EmbeddedStore, key: &str) {
    for _ in 0..1000 {
        if !s.shared.read_view().map.contains_key(key) {
            return;
        }
        s.shared.kick();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} was not deleted within 10 s");
}

#[tokio::test]
async fn a_key_with_a_ttl_expires_with_a_delete_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
    let mut w = s.watch("/apisix/", 0).await.expect("watch");
    let put = s
        .put_with_ttl("/apisix/upstreams/t", b"v".to_vec(), Condition::Absent, Some(HOUR))
        .await
        .expect("put with ttl");
    assert_eq!(put.kv.expires_at_ms, Some(clock.start + 3_600_000));
    s.put("/apisix/upstreams/p", b"v".to_vec(), Condition::Always).await.expect("permanent put");
    assert!(s.get("/apisix/upstreams/t").await.expect("get").is_some(), "alive before its time");
    assert_eq!(next_batch(&mut w).await[0].kind, EventKind::Put);

    clock.advance(HOUR - Duration::from_millis(1));
    assert!(s.get("/apisix/upstreams/t").await.expect("get").is_some(), "alive up to its last millisecond");
    clock.advance(Duration::from_millis(1));
    // Reads hide it at once, whether or not the thread has deleted it yet.
    assert_eq!(s.get("/apisix/upstreams/t").await.expect("get"), None);
    assert_eq!(s.count("/apisix/").await.expect("count"), 1, "the permanent key stays");
    until_deleted(&s, "/apisix/upstreams/t").await;
    // Watchers see the expiry as a delete at a new revision.
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Event| e.kind == EventKind::Delete) {
        seen.extend(next_batch(&mut w).await);
    }
    let delete = seen.iter().find(|e| e.kind == EventKind::Delete).expect("delete event");
    assert_eq!((delete.kv.key.as_str(), delete.kv.mod_revision), ("/apisix/upstreams/t", 3));
    // It is gone for conditions too: creating it again works.
    s.put("/apisix/upstreams/t", b"again".to_vec(), Condition::Absent).await.expect("create again");
}

#[tokio::test]
async fn a_put_without_ttl_makes_the_key_permanent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
    s.put_with_ttl("/k", b"1".to_vec(), Condition::Always, Some(HOUR)).await.expect("ttl");
    let kv = s.put("/k", b"2".to_vec(), Condition::Always).await.expect("plain put").kv;
    assert_eq!((kv.expires_at_ms, kv.create_revision, kv.version), (None, 1, 2));
    clock.advance(2 * HOUR);
    // A write sweeps whatever is due before it: after it, nothing due is left.
    s.put("/other", b"x".to_vec(), Condition::Always).await.expect("put");
    let kv = s.get("/k").await.expect("get").expect("still there");
    // The same key, never deleted and created again.
    assert_eq!((kv.value, kv.create_revision, kv.version, kv.mod_revision), (b"2".to_vec(), 1, 2, 2));
    assert_eq!(s.revision().await.expect("revision"), 3, "no delete record was written");
    drop(s);
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("reopen");
    assert_eq!(s.get("/k").await.expect("get").map(|kv| kv.create_revision), Some(1), "permanent across restarts");
}

/// Keys whose time passed while the store was closed are deleted while it
/// opens, before anything can read it: the expiry thread sees a clock
/// frozen before their expiry, so only the open path can delete them.
#[tokio::test]
async fn expiry_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let long_expiry = {
        let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
        s.put_with_ttl("/short", b"s".to_vec(), Condition::Always, Some(HOUR)).await.expect("short");
        let long = s.put_with_ttl("/long", b"l".to_vec(), Condition::Always, Some(100 * HOUR)).await.expect("long");
        s.put("/forever", b"f".to_vec(), Condition::Always).await.expect("plain");
        long.kv.expires_at_ms
    };
    // Down while /short's time passes.
    clock.advance(2 * HOUR);
    clock.freeze_thread.store(true, Ordering::SeqCst);
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
    assert!(!s.shared.read_view().map.contains_key("/short"), "deleted by open, not only hidden");
    assert_eq!(s.revision().await.expect("rev"), 4, "the expiry is a delete record");
    assert_eq!(s.get("/long").await.expect("get").and_then(|kv| kv.expires_at_ms), long_expiry);
    assert!(s.get("/forever").await.expect("get").is_some());
    drop(s);
    // The delete was written: a second reopen finds the same state.
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
    assert_eq!(s.revision().await.expect("rev"), 4);
    assert_eq!(s.list("/").await.expect("list").kvs.len(), 2);
}

/// A store whose expired keys cannot be deleted (here: its writer failed,
/// as after a rollback that failed; a full disk fails the same way) still
/// opens: the gateway starts with its last configuration, reads hide the
/// expired key, and the thread deletes it once writing works again.
#[tokio::test]
async fn a_store_that_cannot_delete_expired_keys_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    {
        let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
        s.put_with_ttl("/gone", b"g".to_vec(), Condition::Always, Some(HOUR)).await.expect("ttl");
        s.put("/kept", b"k".to_vec(), Condition::Always).await.expect("plain");
    }
    clock.advance(2 * HOUR);
    let shared = Shared::load(clock.options(dir.path())).expect("load");
    shared.writer.lock().expect("writer").failed = true;
    let s = EmbeddedStore::start(shared).expect("opens although the expiry cannot be written");
    assert!(s.shared.expiry_failures.load(Ordering::SeqCst) >= 1, "the open-time expiry did fail");
    assert_eq!(s.get("/gone").await.expect("get"), None, "hidden from reads");
    assert_eq!(s.list("/").await.expect("list").kvs.len(), 1);
    assert!(s.get("/kept").await.expect("get").is_some());

    s.shared.writer.lock().expect("writer").failed = false;
    until_deleted(&s, "/gone").await;
    assert_eq!(s.revision().await.expect("rev"), 3);
}

/// When an expiry round fails, the thread waits before the next one
/// (doubling up to `EXPIRY_TICK`) instead of retrying in a loop: over one
/// second it makes a handful of attempts, not millions, and warns once.
#[tokio::test]
async fn a_failing_expiry_backs_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let s = EmbeddedStore::open(clock.options(dir.path())).expect("open");
    s.put_with_ttl("/t", b"v".to_vec(), Condition::Always, Some(HOUR)).await.expect("ttl");
    s.shared.writer.lock().expect("writer").failed = true;
    clock.advance(2 * HOUR);
    s.shared.kick();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = s.shared.expiry_failures.load(Ordering::SeqCst);
    // 100 + 200 + 400 ms of back-off fit in one second: about four rounds.
    assert!((1..=10).contains(&attempts), "{attempts} failed expiry rounds in one second");

    s.shared.writer.lock().expect("writer").failed = false;
    until_deleted(&s, "/t").await;
}

/// Many keys expiring at once are deleted in rounds of `EXPIRY_BATCH`, each
/// one append and one fsync, not one fsync per key.
#[tokio::test]
async fn a_mass_expiry_is_written_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = TestClock::new();
    let n = 2 * EXPIRY_BATCH as u64 + 500;
    let expires = clock.start + 1000;
    let mut bytes = MAGIC.to_vec();
    for rev in 1..=n {
        let rec = Record {
            op: Op::PutExpiring,
            revision: rev,
            create_revision: rev,
            version: 1,
            key: format!("/k/{rev:05}"),
            value: b"v".to_vec(),
            expires_at_ms: Some(expires),
        };
        log::encode(&rec, &mut bytes);
    }
    fs::write(dir.path().join(LOG_FILE), &bytes).expect("write log");
    // One round by itself: at most a batch, in one fsync.
    let shared = Shared::load(clock.options(dir.path())).expect("load");
    clock.advance(Duration::from_secs(2));
    {
        let mut w = shared.writer.lock().expect("writer");
        assert_eq!(shared.expire_batch(&mut w, clock.now.load(Ordering::SeqCst)).expect("batch"), EXPIRY_BATCH);
        assert_eq!(w.syncs, 1);
    }
    assert_eq!(shared.read_view().map.len() as u64, n - EXPIRY_BATCH as u64);
    drop(shared);
    // Opening deletes the rest: two more rounds.
    let shared = Shared::load(clock.options(dir.path())).expect("load");
    let s = EmbeddedStore::start(shared).expect("open");
    assert_eq!(s.shared.writer.lock().expect("writer").syncs, 2);
    assert_eq!(s.count("/").await.expect("count"), 0);
    assert!(s.shared.read_view().map.is_empty() && s.shared.read_view().expiring.is_empty());
    // Every delete has its own revision, in key order after the puts.
    assert_eq!(s.revision().await.expect("revision"), 2 * n);
    let history: Vec<u64> = s.shared.read_view().history.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(history, (n + EXPIRY_BATCH as u64 + 1..=2 * n).collect::<Vec<_>>());
    drop(s);
    let s = open_at(&clock, dir.path());
    assert_eq!((s.count("/").await.expect("count"), s.revision().await.expect("rev")), (0, 2 * n));
}

fn open_at(clock: &TestClock, dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(clock.options(dir)).expect("open store")
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
