//! [`EtcdStore`]: connecting to etcd, the bounded retry loop every RPC
//! goes through, and the [`Store`] implementation (the mapping is in the
//! crate documentation).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::proto::{PbKeyValue, PbTxnOpResponse};
use etcd_client::{DeleteOptions, GetOptions, KvClient, LeaseClient, PutOptions, Txn, TxnOp, WatchClient};
use shardgate_store::{Condition, Fence, KeyValue, Listing, PutResult, Store, StoreError, Watch};
use tokio::time::Instant;

use crate::error::{Context, Retry};
use crate::fence as guard_key;
use crate::options::EtcdOptions;

/// First wait before retrying a failed attempt; doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two attempts of one request.
pub const RETRY_MAX: Duration = Duration::from_millis(500);

/// The etcd backend. Cheap to clone: clones share one gRPC channel per
/// endpoint.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) kv: KvClient,
    pub(crate) lease: LeaseClient,
    pub(crate) watch: WatchClient,
    pub(crate) opts: EtcdOptions,
    pub(crate) endpoints: String,
    pub(crate) fence_key: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.opts.prefix)
            .finish_non_exhaustive()
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `timeout` has
/// passed since the first try; waits [`RETRY_MIN`] doubling to
/// [`RETRY_MAX`] between tries. The loop is bounded by the deadline.
pub(crate) async fn run<T, F, Fut>(
    ctx: &Context<'_>,
    timeout: Duration,
    retry: Retry,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = RETRY_MIN;
    let mut last: Option<StoreError> = None;
    let mut tries: u32 = 0;
    loop {
        tries += 1;
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let failure = ctx.classify(e, retry);
                if !failure.retry || Instant::now() + backoff >= deadline {
                    return Err(failure.error);
                }
                tracing::debug!(op = ctx.op, tries, error = %failure.error, "etcd request failed; retrying");
                last = Some(failure.error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(_) => return Err(ctx.timed_out(timeout, last.as_ref())),
        }
    }
}

/// A key as the store shows it; `None` (with a warning) for a key that is
/// not UTF-8, which no shardgate or APISIX writer makes.
pub(crate) fn key_value(kv: PbKeyValue) -> Option<KeyValue> {
    let key = match String::from_utf8(kv.key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(key = ?String::from_utf8_lossy(e.as_bytes()), "skipping an etcd key that is not UTF-8");
            return None;
        }
    };
    Some(KeyValue {
        key,
        value: kv.value,
        create_revision: revision(kv.create_revision),
        mod_revision: revision(kv.mod_revision),
        version: revision(kv.version),
        expires_at_ms: None,
    })
}

/// etcd's revisions are `int64` on the wire and never negative.
pub(crate) fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or_default()
}

fn header_revision(header: Option<&etcd_client::proto::PbResponseHeader>) -> u64 {
    header.map_or(0, |h| revision(h.revision))
}

/// etcd leases count whole seconds: a TTL is rounded up, to at least 1 s.
/// (etcd may lengthen a very short lease to its minimum, about 1.5 election
/// timeouts.)
pub fn lease_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

fn unexpected(op: &str, what: &str) -> StoreError {
    StoreError::Backend { context: format!("etcd {op}"), reason: format!("unexpected answer from etcd: {what}") }
}

/// A write: put (with an optional lease) or delete.
enum Write {
    Put { value: Vec<u8>, lease: Option<i64> },
    Delete,
}

/// What a conditional write's transaction answered.
enum Outcome {
    /// Applied at `revision`; `prev` is the key before it.
    Applied { revision: u64, prev: Option<KeyValue> },
    /// Not applied: the error says which compare failed.
    Refused(StoreError),
}

impl EtcdStore {
    /// Connects to `opts.endpoints` and proves the cluster answers (a
    /// linearizable read, which needs a quorum), all within
    /// `opts.timeout`. Fails with [`StoreError::Unavailable`] naming every
    /// endpoint when none answers, with [`StoreError::Backend`] for bad
    /// credentials, TLS or settings, and with [`StoreError::Io`] naming a
    /// TLS file that cannot be read.
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let connect_opts = opts.connect_options()?;
        let endpoints = opts.endpoints_csv();
        let ctx = Context { op: "connect", endpoints: &endpoints, user: opts.user.as_deref() };
        let client = run(&ctx, opts.timeout, Retry::Repeatable, || {
            let endpoints = opts.endpoints.clone();
            let connect_opts = connect_opts.clone();
            async move { etcd_client::Client::connect(endpoints, Some(connect_opts)).await }
        })
        .await?;
        let inner = Inner {
            kv: client.kv_client().max_decoding_message_size(opts.max_response_bytes),
            lease: client.lease_client(),
            watch: client.watch_client().max_decoding_message_size(opts.max_response_bytes),
            fence_key: opts.fence_key(),
            endpoints,
            opts,
        };
        let store = EtcdStore { inner: Arc::new(inner) };
        let revision = store.revision().await?;
        tracing::info!(endpoints = %store.inner.endpoints, prefix = %store.inner.opts.prefix, revision, "connected to etcd");
        Ok(store)
    }

    /// The settings this store was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.opts
    }

    /// The guard key of the write fence (`<prefix>/shardgate/write_fence`).
    pub fn fence_key(&self) -> &str {
        &self.inner.fence_key
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn context<'a>(&'a self, op: &'a str) -> Context<'a> {
        Context { op, endpoints: &self.inner.endpoints, user: self.inner.opts.user.as_deref() }
    }

    /// One RPC (with its retries) under this store's timeout.
    pub(crate) async fn call<T, F, Fut>(&self, op: &str, retry: Retry, attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        run(&self.context(op), self.inner.opts.timeout, retry, attempt).await
    }

    async fn range(&self, op: &str, key: &str, options: GetOptions) -> Result<etcd_client::GetResponse, StoreError> {
        let kv = &self.inner.kv;
        self.call(op, Retry::Repeatable, || {
            let mut kv = kv.clone();
            let key = key.to_owned();
            let options = options.clone();
            async move { kv.get(key, Some(options)).await }
        })
        .await
    }

    async fn grant(&self, key: &str, ttl: Duration) -> Result<i64, StoreError> {
        let secs = lease_seconds(ttl);
        let op = format!("grant a {secs}s lease for {key}");
        let lease = &self.inner.lease;
        let resp = self
            .call(&op, Retry::Repeatable, || {
                let mut lease = lease.clone();
                async move { lease.grant(secs, None).await }
            })
            .await?;
        if !resp.0.error.is_empty() {
            return Err(StoreError::Backend { context: format!("etcd {op}"), reason: resp.0.error });
        }
        Ok(resp.0.id)
    }

    /// Revokes a lease no key ended up using; a failure only logs, as the
    /// lease expires on its own.
    async fn revoke(&self, key: &str, id: i64) {
        let mut lease = self.inner.lease.clone();
        match tokio::time::timeout(self.inner.opts.timeout, lease.revoke(id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(key, lease = id, error = %e, "could not revoke an unused etcd lease; it expires on its own");
            }
            Err(_) => {
                tracing::debug!(key, lease = id, "revoking an unused etcd lease timed out; it expires on its own")
            }
        }
    }

    /// One conditional (and maybe fenced) write transaction; see [`crate::fence`].
    async fn write(
        &self,
        op: &str,
        key: &str,
        write: Write,
        cond: Condition,
        fenced: Option<Fence>,
    ) -> Result<Outcome, StoreError> {
        let guard = self.inner.fence_key.as_str();
        let mut compares = guard_key::compares(key, cond);
        let mut success = vec![match write {
            Write::Put { value, lease } => {
                let mut options = PutOptions::new().with_prev_key();
                if let Some(id) = lease {
                    options = options.with_lease(id);
                }
                TxnOp::put(key, value, Some(options))
            }
            Write::Delete => TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key())),
        }];
        let mut failure = vec![TxnOp::get(key, None)];
        if let Some(Fence(at)) = fenced {
            compares.push(guard_key::guard_compare(guard, at));
            success.push(guard_key::guard_put(guard, key));
            failure.push(guard_key::guard_get(guard));
        }
        let txn = Txn::new().when(compares).and_then(success).or_else(failure);
        let kv = &self.inner.kv;
        let resp = self
            .call(op, Retry::NotSent, || {
                let mut kv = kv.clone();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?
            .0;
        let revision = header_revision(resp.header.as_ref());
        let first = resp.responses.into_iter().next().and_then(|r| r.response);
        if !resp.succeeded {
            let current = match first {
                Some(PbTxnOpResponse::ResponseRange(r)) => r.kvs.into_iter().next().and_then(key_value),
                _ => return Err(unexpected(op, "a failed transaction without the key's range")),
            };
            return Ok(Outcome::Refused(guard_key::explain(key, cond, current.as_ref(), fenced.is_some())));
        }
        let prev = match first {
            Some(PbTxnOpResponse::ResponsePut(p)) => p.prev_kv.and_then(key_value),
            Some(PbTxnOpResponse::ResponseDeleteRange(d)) => d.prev_kvs.into_iter().next().and_then(key_value),
            _ => return Err(unexpected(op, "a transaction without the write's answer")),
        };
        Ok(Outcome::Applied { revision, prev })
    }

    async fn put_inner(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
        fenced: Option<Fence>,
    ) -> Result<PutResult, StoreError> {
        let max = self.inner.opts.max_value_bytes;
        if value.len() > max {
            return Err(StoreError::TooLarge { key: key.to_owned(), size: value.len(), max });
        }
        let lease = match ttl {
            Some(ttl) => Some(self.grant(key, ttl).await?),
            None => None,
        };
        let op = format!("put {key}");
        let stored = value.clone();
        let outcome = self.write(&op, key, Write::Put { value, lease }, cond, fenced).await;
        // Revoke the lease only when the put surely did not land: after an
        // outage the put may have been applied, and revoking would delete
        // the key (and the value it replaced) at once; left alone, the
        // lease simply runs its TTL.
        let refused = match &outcome {
            Ok(Outcome::Refused(_)) => true,
            Ok(Outcome::Applied { .. }) | Err(StoreError::Unavailable { .. }) => false,
            Err(_) => true,
        };
        if let (Some(id), true) = (lease, refused) {
            self.revoke(key, id).await;
        }
        match outcome? {
            Outcome::Refused(e) => Err(e),
            Outcome::Applied { revision, prev } => {
                tracing::debug!(
                    key,
                    revision,
                    fenced = fenced.is_some(),
                    ttl_secs = ttl.map(lease_seconds),
                    "etcd put"
                );
                let kv = KeyValue {
                    key: key.to_owned(),
                    value: stored,
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                    expires_at_ms: None,
                };
                Ok(PutResult { kv, prev })
            }
        }
    }

    async fn delete_inner(
        &self,
        key: &str,
        cond: Condition,
        fenced: Option<Fence>,
    ) -> Result<(Option<KeyValue>, u64), StoreError> {
        let op = format!("delete {key}");
        match self.write(&op, key, Write::Delete, cond, fenced).await? {
            Outcome::Refused(e) => Err(e),
            Outcome::Applied { revision, prev } => {
                tracing::debug!(key, revision, fenced = fenced.is_some(), existed = prev.is_some(), "etcd delete");
                Ok((prev, revision))
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.range(&format!("get {key}"), key, GetOptions::new()).await?;
        Ok(resp.0.kvs.into_iter().next().and_then(key_value))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let resp = self.range(&format!("list {prefix}"), prefix, GetOptions::new().with_prefix()).await?.0;
        let revision = header_revision(resp.header.as_ref());
        Ok(Listing { kvs: resp.kvs.into_iter().filter_map(key_value).collect(), revision })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let options = GetOptions::new().with_prefix().with_count_only();
        let resp = self.range(&format!("count {prefix}"), prefix, options).await?;
        Ok(usize::try_from(resp.0.count).unwrap_or_default())
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
    ) -> Result<PutResult, StoreError> {
        self.put_inner(key, value, cond, ttl, None).await
    }

    async fn delete(&self, key: &str, cond: Condition) -> Result<Option<KeyValue>, StoreError> {
        self.delete_inner(key, cond, None).await.map(|(prev, _)| prev)
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        crate::watch::start(self, prefix, from_revision).await
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        let guard = self.inner.fence_key.clone();
        let resp = self.range("read the revision", &guard, GetOptions::new().with_count_only()).await?;
        Ok(header_revision(resp.0.header.as_ref()))
    }

    async fn fence(&self) -> Result<Fence, StoreError> {
        let guard = self.inner.fence_key.clone();
        let resp = self.range("read the write fence", &guard, GetOptions::new().with_keys_only()).await?;
        Ok(Fence(resp.0.kvs.first().map_or(0, |kv| revision(kv.mod_revision))))
    }

    async fn put_fenced(
        &self,
        key: &str,
        value: Vec<u8>,
        cond: Condition,
        ttl: Option<Duration>,
        fence: &mut Fence,
    ) -> Result<PutResult, StoreError> {
        let res = self.put_inner(key, value, cond, ttl, Some(*fence)).await?;
        // The guard key was written in the same transaction: its
        // mod_revision is this write's revision.
        *fence = Fence(res.kv.mod_revision);
        Ok(res)
    }

    async fn delete_fenced(
        &self,
        key: &str,
        cond: Condition,
        fence: &mut Fence,
    ) -> Result<Option<KeyValue>, StoreError> {
        let (prev, revision) = self.delete_inner(key, cond, Some(*fence)).await?;
        *fence = Fence(revision);
        Ok(prev)
    }
}
