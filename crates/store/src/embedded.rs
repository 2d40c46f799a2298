//! The embedded backend: one append-only log file (`store.log`) in the data
//! directory, an in-memory index, and a bounded in-memory event history for
//! watches.
//!
//! Durability: a write is encoded, appended and `fdatasync`ed before the
//! in-memory view changes and before the caller hears "ok", so a kill -9 at
//! any moment loses no acknowledged write (recovery rules in [`crate::log`]).
//! Writers are serialized by one mutex; readers use a separate read-write
//! lock on the view and are never blocked by an fsync.
//!
//! Compaction: when the log holds four times more bytes than the live data
//! (and at least 1 MiB), it is rewritten to `store.log.tmp`, fsynced and
//! renamed over `store.log` (rename is atomic), then the directory is fsynced.
//!
//! The directory is locked (`LOCK`, an OS advisory lock) so two processes
//! never append to the same log.
//!
//! Expiry: keys written with a TTL are indexed by their expiry time. One
//! thread per store (`shardgate-store-expiry`) sleeps until the next expiry
//! (or at most [`EXPIRY_TICK`]) and deletes what is due, durably and with a
//! delete event, exactly as a client delete would; writes sweep what is due
//! first, and reads never return a key whose time has passed. Expiry uses
//! the wall clock, so it holds across restarts: keys that expired while the
//! process was down are deleted when the store opens.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::log::{self, MAGIC, Op, Record};
use crate::{Condition, Event, EventKind, KeyValue, Listing, PutResult, Store, StoreError, Watch};

pub(crate) const LOG_FILE: &str = "store.log";
const TMP_FILE: &str = "store.log.tmp";
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Longest the expiry thread sleeps without looking at the clock again (so
/// a wall-clock jump is noticed within it).
pub const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn live(kv: &KeyValue, now: u64) -> bool {
    kv.expires_at_ms.is_none_or(|at| at > now)
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The data directory; created (mode 0700) if missing.
    pub dir: PathBuf,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Events kept in memory for watches that resume from an older revision.
    pub history: usize,
    /// Log size under which compaction never runs.
    pub compact_min_bytes: u64,
}

impl EmbeddedOptions {
    /// Defaults for `dir`: 1 MiB values, 10,000 events of history, compaction
    /// from 1 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            dir: dir.into(),
            max_value_bytes: 1024 * 1024,
            history: 10_000,
            compact_min_bytes: 1024 * 1024,
        }
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    /// Stops and joins the expiry thread when the last clone is dropped, so
    /// the directory lock is released as soon as the store is gone.
    _expiry: Arc<ExpiryThread>,
}

/// What wakes the expiry thread.
#[derive(Default)]
struct Signal {
    /// A nearer expiry was written.
    kicked: bool,
    /// The store is being dropped.
    stop: bool,
}

struct ExpiryThread {
    shared: Arc<Shared>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for ExpiryThread {
    fn drop(&mut self) {
        {
            let mut signal = self.shared.signal.lock().unwrap_or_else(PoisonError::into_inner);
            signal.stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.lock().unwrap_or_else(PoisonError::into_inner).take()
            && handle.join().is_err()
        {
            tracing::error!("the store expiry thread panicked");
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("dir", &self.shared.opts.dir).finish_non_exhaustive()
    }
}

struct Shared {
    opts: EmbeddedOptions,
    writer: Mutex<Writer>,
    view: RwLock<View>,
    events: broadcast::Sender<Arc<Event>>,
    signal: Mutex<Signal>,
    wake: Condvar,
}

struct Writer {
    file: File,
    log_len: u64,
    /// Set when an append could not be rolled back: no more writes.
    failed: bool,
    _lock: File,
}

struct View {
    map: BTreeMap<String, KeyValue>,
    revision: u64,
    history: VecDeque<Arc<Event>>,
    /// Every event with a revision ≥ `oldest` is in `history`.
    oldest: u64,
    /// Approximate bytes the live keys take in the log.
    live_bytes: u64,
    /// Keys with an expiry, by (expiry in ms, key).
    expiring: BTreeSet<(u64, String)>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

fn record_size(kv: &KeyValue) -> u64 {
    (log::HEADER + 1 + 24 + 8 + kv.key.len() + kv.value.len() + kv.expires_at_ms.map_or(0, |_| 8)) as u64
}

/// The log record that writes `kv`.
fn put_record(kv: &KeyValue) -> Record {
    Record {
        op: if kv.expires_at_ms.is_some() { Op::PutExpiring } else { Op::Put },
        revision: kv.mod_revision,
        create_revision: kv.create_revision,
        version: kv.version,
        key: kv.key.clone(),
        value: kv.value.clone(),
        expires_at_ms: kv.expires_at_ms,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("fsync directory {}", dir.display())))
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `opts.dir`, recovering from a crash.
    pub fn open(opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = opts.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(format!("create data directory {}", dir.display())))?;

        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io(format!("open {}", dir.join(LOCK_FILE).display())))?;
        lock.try_lock().map_err(|_| StoreError::Locked { path: dir.display().to_string() })?;

        let tmp = dir.join(TMP_FILE);
        if tmp.exists() {
            // A compaction was cut before its rename: the old log is intact.
            fs::remove_file(&tmp).map_err(io(format!("remove {}", tmp.display())))?;
        }

        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        let existed = path.exists();
        if existed {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(format!("read {}", path.display())))?;
        }
        let scan = log::scan(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            offset: e.offset,
            reason: e.reason,
        })?;

        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        let mut log_len = scan.good_len;
        if scan.torn_bytes > 0 {
            tracing::warn!(path = %path.display(), bytes = scan.torn_bytes, "dropping the torn tail of the store log (an unacknowledged write cut by a crash)");
            file.set_len(log_len).map_err(io(format!("truncate {}", path.display())))?;
        }
        if log_len == 0 {
            file.write_all(MAGIC).map_err(io(format!("write {}", path.display())))?;
            log_len = MAGIC.len() as u64;
        }
        file.sync_all().map_err(io(format!("fsync {}", path.display())))?;
        if !existed {
            sync_dir(&dir)?;
        }
        // Appends go at the end of the good prefix.
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(log_len)).map_err(io(format!("seek {}", path.display())))?;

        let mut map: BTreeMap<String, KeyValue> = BTreeMap::new();
        let mut revision = 0;
        for rec in scan.records {
            revision = revision.max(rec.revision);
            match rec.op {
                Op::Put | Op::PutExpiring => {
                    let kv = KeyValue {
                        key: rec.key.clone(),
                        value: rec.value,
                        create_revision: rec.create_revision,
                        mod_revision: rec.revision,
                        version: rec.version,
                        expires_at_ms: rec.expires_at_ms,
                    };
                    map.insert(rec.key, kv);
                }
                Op::Delete => {
                    map.remove(&rec.key);
                }
                Op::Revision => {}
            }
        }
        let live_bytes = map.values().map(record_size).sum();
        let expiring = map.values().filter_map(|kv| kv.expires_at_ms.map(|at| (at, kv.key.clone()))).collect();
        tracing::info!(path = %path.display(), keys = map.len(), revision, "embedded store opened");

        let (events, _) = broadcast::channel(4096);
        let view = View { map, revision, history: VecDeque::new(), oldest: revision + 1, live_bytes, expiring };
        let shared = Arc::new(Shared {
            opts,
            writer: Mutex::new(Writer { file, log_len, failed: false, _lock: lock }),
            view: RwLock::new(view),
            events,
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
        });
        // Keys that expired while the process was down go before any read.
        {
            let mut w = shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
            shared.expire_due(&mut w, now_ms())?;
        }
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("shardgate-store-expiry".into())
            .spawn(move || thread_shared.expiry_loop())
            .map_err(io("start the store expiry thread"))?;
        let expiry = ExpiryThread { shared: Arc::clone(&shared), handle: Mutex::new(Some(handle)) };
        Ok(EmbeddedStore { shared, _expiry: Arc::new(expiry) })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.opts.dir
    }
}

impl Shared {
    fn read_view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(key: &str, cond: Condition, current: Option<&KeyValue>) -> Result<(), StoreError> {
        let failed = |actual: String| Err(StoreError::ConditionFailed { key: key.to_owned(), actual });
        match (cond, current) {
            (Condition::Always, _) => Ok(()),
            (Condition::Absent, None) => Ok(()),
            (Condition::Absent, Some(kv)) => failed(format!("exists (mod_revision {})", kv.mod_revision)),
            (Condition::ModRevision(r), Some(kv)) if kv.mod_revision == r => Ok(()),
            (Condition::ModRevision(_), Some(kv)) => failed(format!("is at mod_revision {}", kv.mod_revision)),
            (Condition::ModRevision(_), None) => failed("does not exist".into()),
        }
    }

    /// Appends one record durably; on failure the file is cut back so the
    /// log never keeps a write that was reported as failed.
    fn append(&self, w: &mut Writer, rec: &Record) -> Result<(), StoreError> {
        if w.failed {
            return Err(StoreError::Io {
                context: "store log".into(),
                source: std::io::Error::other(
                    "an earlier write failed and could not be rolled back; restart to recover",
                ),
            });
        }
        let mut buf = Vec::with_capacity(64 + rec.key.len() + rec.value.len());
        log::encode(rec, &mut buf);
        let path = self.opts.dir.join(LOG_FILE);
        let result = w.file.write_all(&buf).and_then(|()| w.file.sync_data());
        if let Err(e) = result {
            use std::io::Seek;
            let rollback =
                w.file.set_len(w.log_len).and_then(|()| w.file.seek(std::io::SeekFrom::Start(w.log_len)).map(drop));
            if rollback.is_err() {
                w.failed = true;
            }
            return Err(StoreError::Io { context: format!("append to {}", path.display()), source: e });
        }
        w.log_len += buf.len() as u64;
        Ok(())
    }

    fn publish(&self, view: &mut View, event: Event) {
        let event = Arc::new(event);
        view.history.push_back(Arc::clone(&event));
        while view.history.len() > self.opts.history {
            if let Some(old) = view.history.pop_front() {
                view.oldest = old.kv.mod_revision + 1;
            }
        }
        // No receiver is not an error: nobody is watching right now.
        if self.events.send(event).is_err() {
            tracing::trace!("no watcher for store event");
        }
    }

    /// Deletes every key whose expiry is at or before `now` (a durable
    /// delete record and a delete event each). The caller holds the writer.
    fn expire_due(&self, w: &mut Writer, now: u64) -> Result<(), StoreError> {
        loop {
            let due = {
                let view = self.read_view();
                match view.expiring.first() {
                    Some((at, key)) if *at <= now => key.clone(),
                    _ => return Ok(()),
                }
            };
            let revision = self.read_view().revision + 1;
            let rec = Record {
                op: Op::Delete,
                revision,
                create_revision: 0,
                version: 0,
                key: due.clone(),
                value: Vec::new(),
                expires_at_ms: None,
            };
            self.append(w, &rec)?;
            let mut view = self.write_view();
            view.revision = revision;
            if let Some(prev) = view.map.remove(&due) {
                view.live_bytes = view.live_bytes.saturating_sub(record_size(&prev));
                if let Some(at) = prev.expires_at_ms {
                    view.expiring.remove(&(at, due.clone()));
                }
            }
            tracing::info!(key = %due, revision, "key expired (its TTL passed)");
            let kv = KeyValue {
                key: due,
                value: Vec::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
                expires_at_ms: None,
            };
            self.publish(&mut view, Event { kind: EventKind::Delete, kv });
        }
    }

    /// The expiry thread: sleep until the next expiry (at most
    /// [`EXPIRY_TICK`]) or a kick, delete what is due, until told to stop.
    fn expiry_loop(&self) {
        loop {
            let now = now_ms();
            let next = self.read_view().expiring.first().map(|(at, _)| *at);
            if next.is_some_and(|at| at <= now) {
                let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = self.expire_due(&mut w, now_ms()) {
                    tracing::warn!(error = %e, "expiring keys failed; retrying");
                }
            }
            let wait = next
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                .unwrap_or(EXPIRY_TICK)
                .min(EXPIRY_TICK);
            let signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
            let (mut signal, _) = self
                .wake
                .wait_timeout_while(signal, wait, |s| !s.stop && !s.kicked)
                .unwrap_or_else(PoisonError::into_inner);
            if signal.stop {
                return;
            }
            signal.kicked = false;
        }
    }

    fn put_blocking(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
    ) -> Result<PutResult, StoreError> {
        if value.len() > self.opts.max_value_bytes {
            return Err(StoreError::TooLarge {
                key: key.to_owned(),
                size: value.len(),
                max: self.opts.max_value_bytes,
            });
        }
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // A key whose time has passed is gone for the condition too.
        self.expire_due(&mut w, now_ms())?;
        let expires_at_ms = ttl.map(|t| now_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
        let (prev, revision) = {
            let view = self.read_view();
            let prev = view.map.get(key).cloned();
            Self::check(key, cond, prev.as_ref())?;
            (prev, view.revision + 1)
        };
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            expires_at_ms,
        };
        self.append(&mut w, &put_record(&kv))?;
        {
            let mut view = self.write_view();
            view.revision = revision;
            if let Some(p) = &prev {
                view.live_bytes = view.live_bytes.saturating_sub(record_size(p));
                if let Some(at) = p.expires_at_ms {
                    view.expiring.remove(&(at, p.key.clone()));
                }
            }
            if let Some(at) = expires_at_ms {
                view.expiring.insert((at, kv.key.clone()));
            }
            view.live_bytes += record_size(&kv);
            view.map.insert(kv.key.clone(), kv.clone());
            self.publish(&mut view, Event { kind: EventKind::Put, kv: kv.clone() });
        }
        if expires_at_ms.is_some() {
            self.signal.lock().unwrap_or_else(PoisonError::into_inner).kicked = true;
            self.wake.notify_all();
        }
        self.maybe_compact(&mut w)?;
        Ok(PutResult { kv, prev })
    }

    fn delete_blocking(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire_due(&mut w, now_ms())?;
        let (prev, revision) = {
            let view = self.read_view();
            let prev = view.map.get(key).cloned();
            Self::check(key, cond, prev.as_ref())?;
            (prev, view.revision + 1)
        };
        let Some(prev) = prev else { return Ok(None) };
        let rec = Record {
            op: Op::Delete,
            revision,
            create_revision: 0,
            version: 0,
            key: key.to_owned(),
            value: Vec::new(),
            expires_at_ms: None,
        };
        self.append(&mut w, &rec)?;
        {
            let mut view = self.write_view();
            view.revision = revision;
            view.live_bytes = view.live_bytes.saturating_sub(record_size(&prev));
            view.map.remove(key);
            if let Some(at) = prev.expires_at_ms {
                view.expiring.remove(&(at, prev.key.clone()));
            }
            let kv = KeyValue {
                key: key.to_owned(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
                expires_at_ms: None,
            };
            self.publish(&mut view, Event { kind: EventKind::Delete, kv });
        }
        self.maybe_compact(&mut w)?;
        Ok(Some(prev))
    }

    fn maybe_compact(&self, w: &mut Writer) -> Result<(), StoreError> {
        let live = self.read_view().live_bytes;
        if w.log_len < self.opts.compact_min_bytes || w.log_len < live.saturating_mul(4) {
            return Ok(());
        }
        let dir = &self.opts.dir;
        let tmp = dir.join(TMP_FILE);
        let path = dir.join(LOG_FILE);
        let mut buf = MAGIC.to_vec();
        {
            let view = self.read_view();
            let marker = Record {
                op: Op::Revision,
                revision: view.revision,
                create_revision: 0,
                version: 0,
                key: String::new(),
                value: Vec::new(),
                expires_at_ms: None,
            };
            log::encode(&marker, &mut buf);
            for kv in view.map.values() {
                log::encode(&put_record(kv), &mut buf);
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("create {}", tmp.display())))?;
        f.write_all(&buf).and_then(|()| f.sync_all()).map_err(io(format!("write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io(format!("rename {} to {}", tmp.display(), path.display())))?;
        sync_dir(dir)?;
        let mut file =
            OpenOptions::new().read(true).write(true).open(&path).map_err(io(format!("reopen {}", path.display())))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0)).map_err(io(format!("seek {}", path.display())))?;
        tracing::info!(path = %path.display(), before = w.log_len, after = buf.len(), "store log compacted");
        w.file = file;
        w.log_len = buf.len() as u64;
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StoreError::Closed)?
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let now = now_ms();
        Ok(self.shared.read_view().map.get(key).filter(|kv| live(kv, now)).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let now = now_ms();
        let view = self.shared.read_view();
        let kvs = view
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, kv)| live(kv, now))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing { kvs, revision: view.revision })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let now = now_ms();
        let view = self.shared.read_view();
        Ok(view
            .map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, kv)| live(kv, now))
            .count())
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
    ) -> Result<PutResult, StoreError> {
        let shared = Arc::clone(&self.shared);
        let key = key.to_owned();
        blocking(move || shared.put_blocking(&key, value, cond, ttl)).await
    }

    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let key = key.to_owned();
        blocking(move || shared.delete_blocking(&key, cond)).await
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let (backlog, mut sub) = {
            let view = self.shared.read_view();
            let from = if from_revision == 0 { view.revision + 1 } else { from_revision };
            if from < view.oldest {
                return Err(StoreError::Compacted { requested: from, oldest: view.oldest });
            }
            let backlog: Vec<Event> = view
                .history
                .iter()
                .filter(|e| e.kv.mod_revision >= from && e.kv.key.starts_with(prefix))
                .map(|e| (**e).clone())
                .collect();
            // Subscribing under the view lock: every later event is published
            // after this point, none before it is missed or repeated.
            (backlog, self.shared.events.subscribe())
        };
        let (tx, rx) = mpsc::channel(64);
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            if !backlog.is_empty() && tx.send(Ok(backlog)).await.is_err() {
                return;
            }
            loop {
                let first = match sub.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "store watcher fell behind; it must resync");
                        // The receiver gets the error or is gone: either way, stop.
                        if tx.send(Err(StoreError::Compacted { requested: 0, oldest: 0 })).await.is_err() {
                            tracing::trace!("watcher gone");
                        }
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // Batch whatever else is already queued.
                let mut batch = Vec::new();
                let mut next = Some(first);
                let mut lagged = false;
                while let Some(e) = next.take() {
                    if e.kv.key.starts_with(&prefix) {
                        batch.push((*e).clone());
                    }
                    match sub.try_recv() {
                        Ok(e) => next = Some(e),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                        Err(_) => {}
                    }
                }
                if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
                    return;
                }
                if lagged {
                    tracing::warn!("store watcher fell behind; it must resync");
                    if tx.send(Err(StoreError::Compacted { requested: 0, oldest: 0 })).await.is_err() {
                        tracing::trace!("watcher gone");
                    }
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.shared.read_view().revision)
    }
}

#[cfg(test)]
mod tests;
