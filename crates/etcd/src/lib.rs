//! shardgate-etcd owns the etcd v3 backend of the configuration store:
//! [`EtcdStore`] implements [`shardgate_store::Store`] over an etcd cluster
//! (3.4 and later) with the embedded store's semantics, so many gateway
//! instances share one configuration the way APISIX instances share one
//! etcd prefix. It moves keys, bytes and revisions; it never parses a
//! resource.
//!
//! How each [`Store`](shardgate_store::Store) call maps to etcd:
//! - `get`, `list`, `count`, `revision`: one linearizable range each
//!   (`count` with `count_only`); a listing is one range, so its
//!   `revision` is the header revision every key in it was read at.
//! - `put_with_ttl`, `delete`: one transaction whose compares implement the
//!   [`Condition`](shardgate_store::Condition) (`Absent`: the key's
//!   `create_revision` is 0; `ModRevision(r)`: its `version` is above 0 and
//!   its `mod_revision` is `r`), whose success branch writes and returns
//!   the previous value (`prev_kv`), and whose failure branch reads the key,
//!   so a failed condition says what was found without another round trip.
//!   A TTL is a lease granted for that one key (APISIX's Admin API `?ttl=`
//!   does the same); a put without TTL is a plain put, which detaches any
//!   lease, as an etcd put without a lease does.
//! - `watch`: an etcd watch on the prefix from the revision asked for, with
//!   `fragment` set so a large revision arrives in pieces under etcd's
//!   request limit; the pieces of one response are joined into one batch. A
//!   start revision that etcd compacted ends the stream with
//!   [`StoreError::Compacted`] (etcd cancels the watch and reports
//!   `compact_revision`, the oldest revision it still has); a broken
//!   connection ends it with [`StoreError::Unavailable`], and the caller
//!   watches again from its last revision.
//! - The write fence (see [`fence`]): one guard key,
//!   `<prefix>/shardgate/write_fence`, whose `mod_revision` is the fence.
//!   Every fenced write compares it in the same transaction and writes it.
//!
//! Failures: every RPC is bounded by [`EtcdOptions::timeout`]. Reads are
//! retried within that time on availability errors; writes are retried
//! only when the request never left the client (no connection could be
//! made), so a write is never applied twice. This is the rule of etcd's own
//! Go client (`clientv3/retry.go`: repeatable and non-repeatable RPCs). A
//! failure to reach etcd is [`StoreError::Unavailable`] naming every
//! endpoint; a refusal that retrying cannot fix (authentication, permission,
//! size) is [`StoreError::Backend`].
//!
//! Not kept: `KeyValue::expires_at_ms` is always `None` here. etcd keeps a
//! lease with its remaining time, not an expiry instant, and reading it
//! would cost one `LeaseTimeToLive` RPC per key; etcd deletes the key (with
//! a delete event) when the lease runs out.
//!
//! Values are never logged: they hold private keys.
//!
//! # Layout
//! - [`options`]: [`EtcdOptions`] and [`EtcdTls`], checked before connecting.
//! - [`error`]: how an etcd or transport error becomes a [`StoreError`].
//! - [`store`]: [`EtcdStore`]: connecting, the retry loop, and the
//!   [`Store`](shardgate_store::Store) implementation.
//! - [`fence`]: the guard key and how a failed fenced transaction is told apart.
//! - [`watch`]: the task that turns an etcd watch stream into a
//!   [`shardgate_store::Watch`].

pub mod error;
pub mod fence;
pub mod options;
pub mod store;
pub mod watch;

pub use options::{BOOKKEEPING, DEFAULT_MAX_RESPONSE_BYTES, EtcdOptions, EtcdTls};
pub use store::EtcdStore;

pub use shardgate_store::StoreError;
