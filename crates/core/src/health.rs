//! Liveness and readiness, as served on `/healthz` and `/readyz`.
//!
//! Ready means: the first configuration snapshot is published, every listener
//! is bound, and the process is not draining. The flags are plain atomics
//! because the health endpoints read them on every probe.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness flags shared by the binary, the reconciler and the health endpoints.
#[derive(Debug, Default)]
pub struct Health {
    config_loaded: AtomicBool,
    listeners_bound: AtomicBool,
    draining: AtomicBool,
}

/// Why the process is not ready, for the `/readyz` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// No configuration snapshot has been published yet.
    ConfigNotLoaded,
    /// Some listener is not bound yet.
    ListenersNotBound,
    /// The process is draining and takes no new work.
    Draining,
}

impl NotReady {
    /// A short reason for humans and probes.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::ConfigNotLoaded => "config not loaded",
            NotReady::ListenersNotBound => "listeners not bound",
            NotReady::Draining => "draining",
        }
    }
}

impl Health {
    /// Records that the first snapshot has been published.
    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::Release);
    }

    /// Records that every configured listener is bound.
    pub fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    /// Records that the drain has started; `/readyz` turns unready for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Ready, or the first reason why not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::Acquire) {
            Err(NotReady::Draining)
        } else if !self.config_loaded.load(Ordering::Acquire) {
            Err(NotReady::ConfigNotLoaded)
        } else if !self.listeners_bound.load(Ordering::Acquire) {
            Err(NotReady::ListenersNotBound)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_loaded_bound_and_not_draining() {
        let h = Health::default();
        assert_eq!(h.readiness(), Err(NotReady::ConfigNotLoaded));
        h.set_config_loaded();
        assert_eq!(h.readiness(), Err(NotReady::ListenersNotBound));
        h.set_listeners_bound();
        assert_eq!(h.readiness(), Ok(()));
        h.set_draining();
        assert_eq!(h.readiness(), Err(NotReady::Draining));
    }
}
