//! The reconciler: store → `ConfigState` → snapshot.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shardgate_core::Health;
use shardgate_model::{Change, ConfigState, Keyring, Problem, ResourceKind};
use shardgate_snapshot::{CompileDefaults, SnapshotHandle, TlsShared, compile};
use shardgate_store::{EventKind, Store, StoreError};
use shardgate_upstream::Registry;
use tokio::time::Instant;

use crate::ControlMetrics;
use crate::metrics::{CertLabels, KindLabels};

/// Longest wait between retries when the store fails: also the longest an
/// instance can lag behind once etcd is back after an outage, so short
/// (a failed try against an unreachable store is one connection attempt).
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// First wait after a store failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    /// The store key prefix, e.g. `/apisix`.
    pub prefix: String,
    /// How long to keep collecting events after the first one of a burst
    /// before compiling (a script that writes 50 routes compiles once or
    /// twice, not 50 times). Default 5 ms.
    pub debounce: Duration,
    /// Fallbacks for compiled routes.
    pub defaults: CompileDefaults,
}

/// Keeps the published snapshot in step with the store.
pub struct Reconciler {
    store: Arc<dyn Store>,
    handle: Arc<SnapshotHandle>,
    registry: Arc<Registry>,
    tls: TlsShared,
    settings: ReconcilerSettings,
    metrics: ControlMetrics,
    health: Arc<Health>,
    state: ConfigState,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").field("revision", &self.state.revision()).finish_non_exhaustive()
    }
}

fn problem_key(p: &Problem) -> (ResourceKind, String, u64, String) {
    (p.kind, p.id.to_string(), p.revision, p.invalid.field.clone())
}

impl Reconciler {
    /// A reconciler that will publish into `handle`.
    pub fn new(
        store: Arc<dyn Store>,
        handle: Arc<SnapshotHandle>,
        registry: Arc<Registry>,
        tls: TlsShared,
        settings: ReconcilerSettings,
        metrics: ControlMetrics,
        health: Arc<Health>,
    ) -> Self {
        Reconciler { store, handle, registry, tls, settings, metrics, health, state: ConfigState::default() }
    }

    /// Decrypts SSL private keys that APISIX's `data_encryption` encrypted
    /// in the store with `keyring`, at every load and event.
    pub fn with_keyring(mut self, keyring: Option<Arc<Keyring>>) -> Self {
        self.state = ConfigState::with_keyring(keyring);
        self
    }

    fn watch_prefix(&self) -> String {
        format!("{}/", self.settings.prefix)
    }

    /// Reads every resource from the store into a fresh state and publishes
    /// it. Used at start and whenever the watch cannot resume.
    pub async fn load(&mut self) -> Result<(), StoreError> {
        let listing = self.store.list(&self.watch_prefix()).await?;
        let mut state = ConfigState::with_keyring(self.state.keyring().cloned());
        for kv in listing.kvs {
            let Some((kind, id)) = ResourceKind::parse_key(&self.settings.prefix, &kv.key) else {
                continue;
            };
            // A rejected value is recorded in the state and reported at publish.
            if state.apply(Change::Put { kind, id, revision: kv.mod_revision, value: kv.value }).is_err() {
                continue;
            }
        }
        state.set_revision(listing.revision);
        let changes = state.diff(&self.state);
        self.state = state;
        self.metrics.resyncs.inc();
        self.metrics.store_up.set(1);
        tracing::info!(
            revision = listing.revision,
            added = changes.added.len(),
            changed = changes.changed.len(),
            removed = changes.removed.len(),
            "configuration loaded from the store"
        );
        self.publish();
        self.health.set_config_loaded();
        Ok(())
    }

    fn apply_events(&mut self, events: Vec<shardgate_store::Event>) {
        for e in events {
            let revision = e.kv.mod_revision;
            let Some((kind, id)) = ResourceKind::parse_key(&self.settings.prefix, &e.kv.key) else {
                self.state.set_revision(revision);
                continue;
            };
            let change = match e.kind {
                EventKind::Put => Change::Put { kind, id, revision, value: e.kv.value },
                EventKind::Delete => Change::Delete { kind, id, revision },
            };
            // Rejections are kept in the state and reported when publishing.
            if self.state.apply(change).is_err() {
                continue;
            }
        }
    }

    /// Compiles the current state and publishes it.
    fn publish(&mut self) {
        let started = Instant::now();
        let prev = self.handle.load();
        let snap = compile(&self.state, &self.registry, &self.tls, &prev, &self.settings.defaults);

        let known: HashSet<_> = prev.problems.iter().map(problem_key).collect();
        for p in snap.problems.iter().filter(|p| !known.contains(&problem_key(p))) {
            tracing::warn!(
                kind = p.kind.plural(),
                id = %p.id,
                revision = p.revision,
                field = %p.invalid.field,
                reason = %p.invalid.reason,
                "resource rejected; its last good version (if any) keeps serving"
            );
            self.metrics.apply_errors.get_or_create(&KindLabels { kind: p.kind.plural().to_owned() }).inc();
        }

        self.metrics.generation.set(i64::try_from(snap.generation).unwrap_or(i64::MAX));
        self.metrics.problems.set(snap.problems.len() as i64);
        for kind in ResourceKind::ALL {
            self.metrics
                .resources
                .get_or_create(&KindLabels { kind: kind.plural().to_owned() })
                .set(self.state.len(kind) as i64);
        }
        self.metrics.cert_expiry.clear();
        for (id, entry) in &self.state.ssls {
            if let Some(not_after) = entry.value.pairs.iter().map(|p| p.not_after).min() {
                let sni = entry.value.snis.first().map(ToString::to_string).unwrap_or_default();
                self.metrics.cert_expiry.get_or_create(&CertLabels { ssl: id.to_string(), sni }).set(not_after);
            }
        }

        let (generation, routes, certs, problems) =
            (snap.generation, snap.stream.len(), snap.certs.len(), snap.problems.len());
        self.handle.publish(Arc::new(snap));
        self.metrics.applies.inc();
        tracing::info!(
            generation,
            stream_routes = routes,
            sni_patterns = certs,
            problems,
            compile_us = started.elapsed().as_micros() as u64,
            "configuration published"
        );
    }

    /// Follows the store until `shutdown` resolves. Call [`Reconciler::load`]
    /// first. When the watch breaks (the store unreachable, a member lost)
    /// it is resumed from the last applied revision, retrying with backoff
    /// while the data plane keeps its snapshot; only when the store no
    /// longer has that history ([`StoreError::Compacted`]) is everything
    /// listed again at one revision ([`Reconciler::load`]: a fresh state,
    /// swapped in whole) and the watch resumed from there, as APISIX
    /// re-reads on etcd's `compacted` error.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = MIN_BACKOFF;
        loop {
            let from = self.state.revision() + 1;
            let watch = self.store.watch(&self.watch_prefix(), from).await;
            let broken = match watch {
                Ok(mut watch) => {
                    self.metrics.store_up.set(1);
                    backoff = MIN_BACKOFF;
                    tokio::select! {
                        e = self.follow(&mut watch) => e,
                        () = &mut shutdown => return,
                    }
                }
                Err(e) => e,
            };
            if let StoreError::Compacted { requested, oldest } = broken {
                tracing::warn!(
                    requested,
                    oldest,
                    "the store no longer has the history to resume from; listing everything again"
                );
                if !self.resync(&mut shutdown).await {
                    return;
                }
                continue;
            }
            self.metrics.store_up.set(0);
            self.metrics.watch_restarts.inc();
            tracing::warn!(
                error = %broken,
                resume_from = from.max(self.state.revision() + 1),
                retry_in_ms = backoff.as_millis() as u64,
                "store watch interrupted; serving the last good snapshot and resuming"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = &mut shutdown => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Lists everything again until it works (backoff between tries);
    /// `false` if `shutdown` came first.
    async fn resync(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> bool {
        let mut backoff = MIN_BACKOFF;
        loop {
            let loaded = tokio::select! {
                r = self.load() => r,
                () = &mut *shutdown => return false,
            };
            match loaded {
                Ok(()) => return true,
                Err(e) => {
                    self.metrics.store_up.set(0);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "configuration resync failed; serving the last good snapshot");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = &mut *shutdown => return false,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Applies batches from `watch` (a burst collected for `debounce`
    /// before one compile) until it breaks; returns why.
    async fn follow(&mut self, watch: &mut shardgate_store::Watch) -> StoreError {
        loop {
            let events = match watch.next().await {
                Some(Ok(events)) => events,
                Some(Err(e)) => return e,
                None => return StoreError::Closed,
            };
            self.note_events(&events);
            self.apply_events(events);
            // Collect the rest of a burst before compiling.
            let until = Instant::now() + self.settings.debounce;
            let mut broken = None;
            while let Ok(more) = tokio::time::timeout_at(until, watch.next()).await {
                match more {
                    Some(Ok(events)) => {
                        self.note_events(&events);
                        self.apply_events(events);
                    }
                    Some(Err(e)) => {
                        broken = Some(e);
                        break;
                    }
                    None => {
                        broken = Some(StoreError::Closed);
                        break;
                    }
                }
            }
            self.publish();
            if let Some(e) = broken {
                return e;
            }
        }
    }

    fn note_events(&self, events: &[shardgate_store::Event]) {
        if events.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_event.set(now);
    }
}

#[cfg(test)]
mod tests;
