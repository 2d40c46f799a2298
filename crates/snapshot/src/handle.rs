//! The published snapshot: read by the data plane, written by the reconciler.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::Snapshot;

/// Holds the current [`Snapshot`]. Readers call [`SnapshotHandle::load`] once
/// per connection; the single writer calls [`SnapshotHandle::publish`].
/// Background tasks that react to changes subscribe to the generation watch
/// (a `watch` borrow holds a read lock, so it is never used per connection).
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
}

impl SnapshotHandle {
    /// A handle holding `initial`.
    pub fn new(initial: Snapshot) -> Self {
        let (generation, _) = watch::channel(initial.generation);
        SnapshotHandle { current: ArcSwap::from_pointee(initial), generation }
    }

    /// The current snapshot, pinned for as long as the `Arc` is held.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `next` current, then tells generation watchers.
    pub fn publish(&self, next: Arc<Snapshot>) {
        let generation = next.generation;
        self.current.store(next);
        self.generation.send_replace(generation);
    }

    /// Notified with each published generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
