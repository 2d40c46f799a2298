//! The handle to the one Prometheus registry of the process.
//!
//! Each area (stream, upstream, control) defines its metric families in its own
//! crate, with typed label sets, and registers them here at startup under the
//! `shardgate_` prefix; `/metrics` encodes the registry in the text format.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// A cheap, clonable handle to the process-wide registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry whose metric names all start with `shardgate_`.
    pub fn new() -> Self {
        Metrics { registry: Arc::new(Mutex::new(Registry::with_prefix("shardgate"))) }
    }

    /// Runs `f` with the registry, to register an area's families. Registration
    /// happens at startup only, never on a data path.
    pub fn register<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// The registry in the Prometheus text format (OpenMetrics flavour, which
    /// Prometheus and `promtool check metrics` accept).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(16 * 1024);
        encode(&mut out, &registry)?;
        Ok(out)
    }
}
