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

/// Longest wait between retries when the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
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
    /// first. Whenever the watch ends (compaction, lag, store error) the
    /// whole configuration is listed again, retrying with backoff, and the
    /// watch resumes from the listed revision.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = MIN_BACKOFF;
        let mut first = true;
        loop {
            if !first {
                loop {
                    let loaded = tokio::select! {
                        r = self.load() => r,
                        () = &mut shutdown => return,
                    };
                    match loaded {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "configuration resync failed; serving the last good snapshot");
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {},
                                () = &mut shutdown => return,
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
            first = false;
            let from = self.state.revision() + 1;
            let mut watch = match self.store.watch(&self.watch_prefix(), from).await {
                Ok(w) => w,
                Err(StoreError::Compacted { .. }) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the store; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = &mut shutdown => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = MIN_BACKOFF;
            'watch: loop {
                let batch = tokio::select! {
                    b = watch.next() => b,
                    () = &mut shutdown => return,
                };
                match batch {
                    Some(Ok(events)) => {
                        self.apply_events(events);
                        // Collect the rest of a burst before compiling.
                        let until = Instant::now() + self.settings.debounce;
                        let mut broken = false;
                        while let Ok(more) = tokio::time::timeout_at(until, watch.next()).await {
                            match more {
                                Some(Ok(events)) => self.apply_events(events),
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "store watch interrupted; resyncing");
                                    broken = true;
                                    break;
                                }
                                None => {
                                    broken = true;
                                    break;
                                }
                            }
                        }
                        self.publish();
                        if broken {
                            break 'watch;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "store watch interrupted; resyncing");
                        break 'watch;
                    }
                    None => {
                        tracing::warn!("store watch closed; resyncing");
                        break 'watch;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
