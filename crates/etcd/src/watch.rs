//! The task behind [`Store::watch`](shardgate_store::Store::watch): one
//! etcd watch stream per call, its responses turned into event batches on
//! a bounded channel ([`WATCH_BATCHES`]).
//!
//! Starting a watch returns once etcd has created the watch, so a refusal
//! (permission denied) is the call's error. After that the stream ends with
//! exactly one `Err`:
//! - [`StoreError::Compacted`] when the start revision was compacted: etcd
//!   creates the watch, then cancels it with `compact_revision`, the oldest
//!   revision it still keeps (`mvcc/watchable_store.go`);
//! - [`StoreError::Unavailable`] when the connection breaks or etcd ends the
//!   stream (a member stopping, or losing its leader: the client asks for
//!   `require_leader`, so etcd ends the watch instead of going quiet);
//! - [`StoreError::Backend`] for any other cancel reason etcd gives.
//!
//! When the receiver is dropped, the task ends and drops the stream, which
//! resets it and cancels the watch on etcd's side.

use etcd_client::WatchOptions;
use etcd_client::proto::{PbEvent, PbWatchResponse};
use shardgate_store::{Event, EventKind, KeyValue, StoreError, Watch};
use tokio::sync::mpsc;

use crate::error::Retry;
use crate::store::{EtcdStore, key_value, revision};

/// Batches a watch holds for a consumer that has not read them yet; then
/// the task waits, and etcd's flow control holds the rest.
pub const WATCH_BATCHES: usize = 64;

/// etcd's `mvccpb.Event.EventType`.
const PUT: i32 = 0;
const DELETE: i32 = 1;

/// What the stream's owner needs to describe its end.
struct Ends {
    op: String,
    endpoints: String,
    requested: u64,
}

impl Ends {
    /// The error for a response etcd sent with `canceled` (or
    /// `compact_revision`) set.
    fn canceled(&self, resp: &PbWatchResponse) -> StoreError {
        if resp.compact_revision > 0 {
            return StoreError::Compacted { requested: self.requested, oldest: revision(resp.compact_revision) };
        }
        let reason = if resp.cancel_reason.is_empty() { "etcd canceled the watch" } else { &resp.cancel_reason };
        // etcd's ErrGRPCNoLeader ("etcdserver: no leader") is an outage.
        if reason.contains("no leader") {
            return StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: format!("{}: {reason}", self.op),
            };
        }
        StoreError::Backend { context: format!("etcd {}", self.op), reason: reason.to_owned() }
    }

    fn closed(&self) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            reason: format!("{}: etcd ended the watch stream", self.op),
        }
    }
}

/// One etcd event as a store event; `None` (logged) for what etcd does not
/// send: an event without a key, a type other than put and delete.
fn event(e: PbEvent) -> Option<Event> {
    let kv = key_value(e.kv?)?;
    match e.r#type {
        PUT => Some(Event { kind: EventKind::Put, kv }),
        DELETE => Some(Event { kind: EventKind::Delete, kv: KeyValue::deleted(kv.key, kv.mod_revision) }),
        other => {
            tracing::warn!(key = %kv.key, event_type = other, "skipping an etcd watch event of an unknown type");
            None
        }
    }
}

/// Starts watching `prefix` from `from` (0: from the next revision).
pub(crate) async fn start(store: &EtcdStore, prefix: &str, from: u64) -> Result<Watch, StoreError> {
    let inner = store.inner();
    let op = format!("watch {prefix}");
    let options =
        WatchOptions::new().with_prefix().with_start_revision(i64::try_from(from).unwrap_or(i64::MAX)).with_fragment();
    let client = &inner.watch;
    let mut stream = store
        .call(&op, Retry::Repeatable, || {
            let mut client = client.clone();
            let prefix = prefix.to_owned();
            let options = options.clone();
            async move { client.watch(prefix, Some(options)).await }
        })
        .await?;
    let ends = Ends { op, endpoints: inner.endpoints.clone(), requested: from };
    // The first response says whether etcd created the watch.
    let ctx = store.context(&ends.op);
    match tokio::time::timeout(inner.opts.timeout, stream.message()).await {
        Err(_) => return Err(ctx.timed_out(inner.opts.timeout, None)),
        Ok(Err(e)) => return Err(ctx.classify(e, Retry::Repeatable).error),
        Ok(Ok(None)) => return Err(ends.closed()),
        Ok(Ok(Some(resp))) => {
            let resp = resp.0;
            if resp.canceled || resp.compact_revision > 0 {
                return Err(ends.canceled(&resp));
            }
            if !resp.created {
                return Err(StoreError::Backend {
                    context: format!("etcd {}", ends.op),
                    reason: "etcd answered the watch request without creating it".into(),
                });
            }
        }
    }
    tracing::debug!(prefix, from, "etcd watch created");
    let (tx, rx) = mpsc::channel(WATCH_BATCHES);
    let max_batch_bytes = inner.opts.max_response_bytes;
    let user = inner.opts.user.clone();
    tokio::spawn(async move {
        let end = pump(&mut stream, &tx, &ends, user.as_deref(), max_batch_bytes).await;
        if let Some(err) = end {
            tracing::debug!(op = %ends.op, error = %err, "etcd watch ended");
            // The receiver gets the error or is gone: either way, stop.
            if tx.send(Err(err)).await.is_err() {
                tracing::trace!("watcher gone");
            }
        }
    });
    Ok(Watch::new(rx))
}

/// Forwards batches until the stream ends (the error to send) or the
/// receiver is dropped (`None`).
async fn pump(
    stream: &mut etcd_client::WatchStream,
    tx: &mpsc::Sender<Result<Vec<Event>, StoreError>>,
    ends: &Ends,
    user: Option<&str>,
    max_batch_bytes: usize,
) -> Option<StoreError> {
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_bytes = 0usize;
    loop {
        let message = tokio::select! {
            () = tx.closed() => return None,
            m = stream.message() => m,
        };
        let resp = match message {
            Ok(Some(resp)) => resp.0,
            Ok(None) => return Some(ends.closed()),
            Err(e) => {
                let ctx = crate::error::Context { op: &ends.op, endpoints: &ends.endpoints, user };
                return Some(ctx.classify(e, Retry::Repeatable).error);
            }
        };
        if resp.canceled || resp.compact_revision > 0 {
            return Some(ends.canceled(&resp));
        }
        for e in resp.events.into_iter().filter_map(event) {
            batch_bytes += e.kv.key.len() + e.kv.value.len();
            batch.push(e);
        }
        // A fragmented response continues in the next one; keep its pieces
        // together unless that would hold more than one response's worth.
        if resp.fragment && batch_bytes < max_batch_bytes {
            continue;
        }
        if !batch.is_empty() {
            batch_bytes = 0;
            if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                return None;
            }
        }
    }
}
