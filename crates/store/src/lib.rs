//! shardgate-store owns where configuration lives: keys, byte values and
//! revisions, with compare-and-set writes and a watch that resumes from a
//! revision. It never parses a resource (that is `shardgate-model`'s job).
//!
//! The [`Store`] trait follows etcd v3's model so an etcd backend can
//! implement it without changing callers:
//! - every write bumps one store-wide revision; each key keeps its
//!   `create_revision`, `mod_revision` and `version`;
//! - [`Store::watch`] streams events with a revision greater or equal to the
//!   one asked for, in order; when that history is gone it fails with
//!   [`StoreError::Compacted`] and the caller lists everything again (a full
//!   resync, as APISIX does on etcd's `compacted` error);
//! - a key may be written with a time to live ([`Store::put_with_ttl`], an
//!   etcd lease of one key, as APISIX's Admin API `?ttl=` grants): when it
//!   passes, the key is deleted by a delete event every watcher sees. A put
//!   without a TTL makes the key permanent again, as an etcd put without a
//!   lease does.
//! - writes that must not interleave with another process's (the Admin API
//!   checks references, then writes) carry a [`Fence`]: read it before the
//!   checks, write with [`Store::put_fenced`] / [`Store::delete_fenced`],
//!   and the write fails with [`StoreError::Fenced`] if any other fenced
//!   write landed in between, so the caller checks again. One process
//!   owns an embedded store, so there the fence is free and never trips;
//!   on etcd it is the revision of one guard key that every fenced write
//!   compares and bumps in the same transaction.
//!
//! # Layout
//! - [`embedded`]: the default backend, one append-only log file in the data
//!   directory, fsynced before a write is acknowledged.
//! - [`log`]: the record format of that file and its recovery rules.
//! - [`repair`]: `store check` and `store repair` for a damaged log.

pub mod embedded;
pub mod log;
pub mod repair;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use embedded::{EmbeddedOptions, EmbeddedStore};

/// A key with its value and revisions (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/apisix/ssls/1`.
    pub key: String,
    /// The value bytes (empty in a delete event).
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: u64,
    /// Revision of the last write to the key.
    pub mod_revision: u64,
    /// Number of writes since the key was created (1 after creation).
    pub version: u64,
    /// When the key expires (milliseconds since the Unix epoch), if it was
    /// written with a TTL.
    pub expires_at_ms: Option<u64>,
}

impl KeyValue {
    /// What a delete event carries: the key and the delete's revision.
    pub fn deleted(key: String, revision: u64) -> Self {
        KeyValue { key, value: Vec::new(), create_revision: 0, mod_revision: revision, version: 0, expires_at_ms: None }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or replaced.
    Put,
    /// Deleted; the event's `kv.mod_revision` is the delete's revision.
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: key, empty value, delete revision).
    pub kv: KeyValue,
}

/// A condition a write must meet (etcd transaction compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always write.
    Always,
    /// Only if the key does not exist (create).
    Absent,
    /// Only if the key exists with this `mod_revision` (compare-and-set).
    ModRevision(u64),
}

/// The result of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The key as written.
    pub kv: KeyValue,
    /// The previous version, if the key existed.
    pub prev: Option<KeyValue>,
}

/// Every key under a prefix at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Keys in byte order.
    pub kvs: Vec<KeyValue>,
    /// The store revision the listing reflects; watch from `revision + 1`.
    pub revision: u64,
}

/// Store failures. Each says which key and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The watch asked for history that is no longer kept.
    #[error("revision {requested} is compacted (oldest kept: {oldest}); list again")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still available.
        oldest: u64,
    },
    /// A [`Condition`] did not hold.
    #[error("condition failed on {key}: the key {actual}")]
    ConditionFailed {
        /// The key.
        key: String,
        /// What was found instead.
        actual: String,
    },
    /// A value over the configured limit.
    #[error("value for {key} is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// The key.
        key: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The backend failed; `context` names the operation and file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data on disk is damaged ([`log::ScanErrorKind::Damaged`]).
    #[error(
        "store file {path} is corrupt at byte {offset}: {reason}; `shardgate store check` shows what it holds, `shardgate store repair` keeps a copy and truncates it there"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file holds intact data this version cannot read
    /// ([`log::ScanErrorKind::Foreign`]): written by another (newer)
    /// shardgate version, or not a store file at all.
    #[error(
        "store file {path} cannot be read by this shardgate version at byte {offset}: {reason}; it was written by another shardgate version (or is not a store file). Do not repair it: run the shardgate version that wrote it, or restore a backup of the data directory"
    )]
    Foreign {
        /// The file.
        path: String,
        /// Where the unreadable data starts.
        offset: u64,
        /// What this version does not know.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another shardgate process")]
    Locked {
        /// The directory.
        path: String,
    },
    /// The store cannot be reached (every etcd endpoint down, a timeout).
    /// The data plane keeps serving its last good configuration.
    #[error("the store is unreachable ({endpoints}): {reason}")]
    Unavailable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// The backend refused the request for a reason other than
    /// availability, which retrying will not fix (etcd: authentication
    /// failed, permission denied, request too large, database full).
    #[error("{context}: {reason}")]
    Backend {
        /// What was being done (operation, key, user).
        context: String,
        /// What the backend answered.
        reason: String,
    },
    /// A fenced write lost to another fenced write made since its
    /// [`Fence`] was read; check again and retry.
    #[error("another write changed the configuration since this write's checks")]
    Fenced,
    /// The store was closed or its task ended.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// The error for a log at `path` that [`log::scan`] could not read.
    pub fn from_scan(path: &std::path::Path, e: log::ScanError) -> Self {
        let path = path.display().to_string();
        match e.kind {
            log::ScanErrorKind::Damaged => StoreError::Corrupt { path, offset: e.offset, reason: e.reason },
            log::ScanErrorKind::Foreign => StoreError::Foreign { path, offset: e.offset, reason: e.reason },
        }
    }
}

/// Maps an I/O error to [`StoreError::Io`] with what was being done.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// A stream of event batches from [`Store::watch`], each batch in revision
/// order. An `Err` item ends the stream.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<Vec<Event>, StoreError>>,
}

impl Watch {
    /// Wraps a receiver; backends feed the sender.
    pub fn new(rx: mpsc::Receiver<Result<Vec<Event>, StoreError>>) -> Self {
        Watch { rx }
    }

    /// The next batch; `None` when the store closed the watch.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>, StoreError>> {
        self.rx.recv().await
    }
}

/// The cluster-wide write sequence as one write saw it before its checks
/// (see [`Store::fence`]). `Fence::default()` is the fence of a store that
/// one process owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence(pub u64);

/// The configuration store. Implemented by the embedded backend (and, for
/// clusters, by an etcd backend).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Every key under `prefix`, with the revision it reflects.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;
    /// How many keys are under `prefix`.
    async fn count(&self, prefix: &str) -> Result<usize, StoreError>;
    /// Writes `value` at `key` if `cond` holds. Returns only once durable.
    /// The key is permanent (an earlier TTL is dropped).
    async fn put(&self, key: &str, value: Vec<u8>, cond: Condition) -> Result<PutResult, StoreError> {
        self.put_with_ttl(key, value, cond, None).await
    }
    /// Like [`Store::put`]; with `Some(ttl)` the key is deleted (a delete
    /// event) once `ttl` has passed, unless written again before.
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<std::time::Duration>,
    ) -> Result<PutResult, StoreError>;
    /// Deletes `key` if `cond` holds; `Ok(None)` if it did not exist.
    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError>;
    /// Events under `prefix` from `from_revision` on (inclusive).
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError>;
    /// The current store revision.
    async fn revision(&self) -> Result<u64, StoreError>;
    /// Reads the write fence. A store that one process owns (the embedded
    /// one) returns the default: its callers serialize their own writes.
    async fn fence(&self) -> Result<Fence, StoreError> {
        Ok(Fence::default())
    }
    /// [`Store::put_with_ttl`], failing with [`StoreError::Fenced`] if
    /// another fenced write landed since `fence` was read. When both the
    /// condition and the fence fail, the condition's error wins (the
    /// caller's resource itself changed: a conflict, not a retry). On
    /// success `fence` moves past this write, so one operation can make
    /// several fenced writes in a row.
    async fn put_fenced(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<std::time::Duration>,
        _fence: &mut Fence,
    ) -> Result<PutResult, StoreError> {
        self.put_with_ttl(key, value, cond, ttl).await
    }
    /// [`Store::delete`] under a fence, as [`Store::put_fenced`].
    async fn delete_fenced(
        &self,
        key: &str,
        cond: Condition,
        _fence: &mut Fence,
    ) -> Result<Option<KeyValue>, StoreError> {
        self.delete(key, cond).await
    }
}
