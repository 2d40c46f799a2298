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
//! delete event, exactly as a client delete would, up to [`EXPIRY_BATCH`]
//! keys per round in one append and one `fdatasync` (the writer is free
//! between rounds); writes sweep what is due first, and reads never return
//! a key whose time has passed. Expiry uses the wall clock
//! ([`EmbeddedOptions::clock`]), so it holds across restarts: keys that
//! expired while the process was down are deleted when the store opens.
//! When deleting fails (a full disk, an I/O error), the store still opens
//! and serves (reads already hide those keys); the thread retries after
//! [`EXPIRY_RETRY_MIN`], doubling up to [`EXPIRY_TICK`], and warns once per
//! [`EXPIRY_WARN_EVERY`] while it keeps failing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::log::{self, MAGIC, Op, Record};
use crate::{Condition, Event, EventKind, KeyValue, Listing, PutResult, Store, StoreError, Watch, io};

pub(crate) const LOG_FILE: &str = "store.log";
const TMP_FILE: &str = "store.log.tmp";
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Longest the expiry thread sleeps without looking at the clock again (so
/// a wall-clock jump is noticed within it).
pub const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// Most keys one expiry round deletes, with one append and one
/// `fdatasync`; the writer is released between rounds, so a mass expiry
/// does not hold up client writes for long.
pub const EXPIRY_BATCH: usize = 1000;
/// Wait before retrying after a failed expiry round; it doubles after each
/// failure in a row, up to [`EXPIRY_TICK`].
pub const EXPIRY_RETRY_MIN: Duration = Duration::from_millis(100);
/// While expiry keeps failing, one warning per this period (with the count).
pub const EXPIRY_WARN_EVERY: Duration = Duration::from_secs(60);

/// The wall clock the store reads, in milliseconds since the Unix epoch:
/// [`Clock::system`] in production; tests hand in their own to move time
/// without waiting for it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Clock(Arc::new(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }))
    }

    /// A clock that reads `now_ms`.
    pub fn new(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now_ms))
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
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
    /// The wall clock expiry times are read against.
    pub clock: Clock,
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
            clock: Clock::system(),
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
    /// Expiry rounds that failed, since the store opened.
    expiry_failures: AtomicU64,
}

struct Writer {
    file: File,
    log_len: u64,
    /// Set when an append could not be rolled back: no more writes.
    failed: bool,
    /// Appends made (each one `fdatasync`), since the store opened.
    syncs: u64,
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

/// A run of failed expiry rounds: how long to wait next, when to warn.
struct Failing {
    rounds: u64,
    backoff: Duration,
    last_warning: Option<Instant>,
}

impl Failing {
    fn new() -> Self {
        Failing { rounds: 0, backoff: EXPIRY_RETRY_MIN, last_warning: None }
    }

    /// Counts one more failed round; returns the wait before the next.
    fn failed(&mut self) -> Duration {
        self.rounds += 1;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(EXPIRY_TICK);
        wait
    }

    /// Whether this failure is logged: the first, then one per
    /// [`EXPIRY_WARN_EVERY`].
    fn should_warn(&mut self) -> bool {
        let due = self.last_warning.is_none_or(|at| at.elapsed() >= EXPIRY_WARN_EVERY);
        if due {
            self.last_warning = Some(Instant::now());
        }
        due
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("fsync directory {}", dir.display())))
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `opts.dir`, recovering from a crash.
    pub fn open(opts: EmbeddedOptions) -> Result<Self, StoreError> {
        Self::start(Shared::load(opts)?)
    }

    /// Deletes what expired while the process was down, then starts the
    /// expiry thread. A failure to delete (a full disk) is logged, not
    /// fatal: reads already hide those keys, and the thread retries, so the
    /// gateway still starts with its last configuration.
    fn start(shared: Shared) -> Result<Self, StoreError> {
        let shared = Arc::new(shared);
        {
            let mut w = shared.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = shared.expire_due(&mut w, shared.now_ms()) {
                shared.expiry_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not delete the keys that expired while the gateway was down; reads hide them and they are deleted once the store can be written again");
            }
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
    /// Reads the log in `opts.dir` (creating it if needed), recovering from
    /// a crash, and builds the in-memory view. Nothing expires here.
    fn load(opts: EmbeddedOptions) -> Result<Shared, StoreError> {
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
        let scan = log::scan(&bytes).map_err(|e| StoreError::from_scan(&path, e))?;

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

        let (map, revision) = log::replay(scan.records);
        let live_bytes = map.values().map(record_size).sum();
        let expiring = map.values().filter_map(|kv| kv.expires_at_ms.map(|at| (at, kv.key.clone()))).collect();
        tracing::info!(path = %path.display(), keys = map.len(), revision, "embedded store opened");

        let (events, _) = broadcast::channel(4096);
        let view = View { map, revision, history: VecDeque::new(), oldest: revision + 1, live_bytes, expiring };
        Ok(Shared {
            opts,
            writer: Mutex::new(Writer { file, log_len, failed: false, syncs: 0, _lock: lock }),
            view: RwLock::new(view),
            events,
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
            expiry_failures: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.opts.clock.now_ms()
    }

    /// Wakes the expiry thread to look at the clock and the index again.
    fn kick(&self) {
        self.signal.lock().unwrap_or_else(PoisonError::into_inner).kicked = true;
        self.wake.notify_all();
    }

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
        let mut buf = Vec::with_capacity(64 + rec.key.len() + rec.value.len());
        log::encode(rec, &mut buf);
        self.append_bytes(w, &buf)
    }

    /// Appends encoded records with one write and one `fdatasync`: all of
    /// them are durable, or the file is cut back and none is.
    fn append_bytes(&self, w: &mut Writer, buf: &[u8]) -> Result<(), StoreError> {
        if w.failed {
            return Err(StoreError::Io {
                context: "store log".into(),
                source: std::io::Error::other(
                    "an earlier write failed and could not be rolled back; restart to recover",
                ),
            });
        }
        let path = self.opts.dir.join(LOG_FILE);
        w.syncs += 1;
        let result = w.file.write_all(buf).and_then(|()| w.file.sync_data());
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

    /// Deletes every key whose expiry is at or before `now`, a batch at a
    /// time. The caller holds the writer.
    fn expire_due(&self, w: &mut Writer, now: u64) -> Result<(), StoreError> {
        while self.expire_batch(w, now)? == EXPIRY_BATCH {}
        Ok(())
    }

    /// Deletes up to [`EXPIRY_BATCH`] keys whose expiry is at or before
    /// `now`: their delete records in one append and one `fdatasync`, then
    /// a delete event each, in revision order. Returns how many. The caller
    /// holds the writer.
    fn expire_batch(&self, w: &mut Writer, now: u64) -> Result<usize, StoreError> {
        let (due, first) = {
            let view = self.read_view();
            let due: Vec<(u64, String)> =
                view.expiring.iter().take_while(|(at, _)| *at <= now).take(EXPIRY_BATCH).cloned().collect();
            (due, view.revision + 1)
        };
        if due.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::with_capacity(due.len() * 64);
        for (revision, (_, key)) in (first..).zip(&due) {
            let rec = Record::delete(key.clone(), revision);
            log::encode(&rec, &mut buf);
        }
        self.append_bytes(w, &buf)?;
        let count = due.len();
        let mut view = self.write_view();
        for (revision, (at, key)) in (first..).zip(due) {
            view.revision = revision;
            view.expiring.remove(&(at, key.clone()));
            if let Some(prev) = view.map.remove(&key) {
                view.live_bytes = view.live_bytes.saturating_sub(record_size(&prev));
            }
            tracing::info!(key = %key, revision, "key expired (its TTL passed)");
            self.publish(&mut view, Event { kind: EventKind::Delete, kv: KeyValue::deleted(key, revision) });
        }
        Ok(count)
    }

    /// The expiry thread: sleep until the next expiry (at most
    /// [`EXPIRY_TICK`]) or a kick, delete one batch of what is due, until
    /// told to stop. After a failed round it waits [`EXPIRY_RETRY_MIN`],
    /// doubling up to [`EXPIRY_TICK`], rather than retrying at once.
    fn expiry_loop(&self) {
        let mut failing: Option<Failing> = None;
        loop {
            let now = self.now_ms();
            let next = self.read_view().expiring.first().map(|(at, _)| *at);
            let mut retry_in = None;
            if next.is_some_and(|at| at <= now) {
                let result = {
                    let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                    self.expire_batch(&mut w, now)
                };
                match result {
                    Ok(_) => {
                        if let Some(f) = failing.take() {
                            tracing::info!(failed_rounds = f.rounds, "expiring keys works again");
                        }
                    }
                    Err(e) => {
                        self.expiry_failures.fetch_add(1, Ordering::Relaxed);
                        let f = failing.get_or_insert_with(Failing::new);
                        let wait = f.failed();
                        if f.should_warn() {
                            tracing::warn!(error = %e, failed_rounds = f.rounds, retry_in_ms = wait.as_millis() as u64, "expiring keys failed; retrying (expired keys stay hidden from reads)");
                        }
                        retry_in = Some(wait);
                    }
                }
            }
            let wait = retry_in.unwrap_or_else(|| {
                next.map(|at| Duration::from_millis(at.saturating_sub(self.now_ms())))
                    .unwrap_or(EXPIRY_TICK)
                    .min(EXPIRY_TICK)
            });
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
        let now = self.now_ms();
        self.expire_due(&mut w, now)?;
        let expires_at_ms = ttl.map(|t| now.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
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
            self.kick();
        }
        self.maybe_compact(&mut w)?;
        Ok(PutResult { kv, prev })
    }

    fn delete_blocking(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.expire_due(&mut w, self.now_ms())?;
        let (prev, revision) = {
            let view = self.read_view();
            let prev = view.map.get(key).cloned();
            Self::check(key, cond, prev.as_ref())?;
            (prev, view.revision + 1)
        };
        let Some(prev) = prev else { return Ok(None) };
        let rec = Record::delete(key.to_owned(), revision);
        self.append(&mut w, &rec)?;
        {
            let mut view = self.write_view();
            view.revision = revision;
            view.live_bytes = view.live_bytes.saturating_sub(record_size(&prev));
            view.map.remove(key);
            if let Some(at) = prev.expires_at_ms {
                view.expiring.remove(&(at, prev.key.clone()));
            }
            self.publish(&mut view, Event { kind: EventKind::Delete, kv: KeyValue::deleted(key.to_owned(), revision) });
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
        let now = self.shared.now_ms();
        Ok(self.shared.read_view().map.get(key).filter(|kv| live(kv, now)).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let now = self.shared.now_ms();
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
        let now = self.shared.now_ms();
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
