//! Graceful stop: one signal fanned out to every listener and connection, and a
//! count of who still holds a [`DrainWatch`], so the process knows when the last
//! connection has finished.
//!
//! The lifecycle is: [`Drain::start`] is called once with a deadline (on
//! SIGTERM); listeners see [`DrainWatch::draining`] resolve and stop accepting;
//! connections keep running until they end by themselves or until the
//! deadline, when they are closed; [`Drain::released`] resolves once every
//! watch has been dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// The owner of the drain signal. Create one per process.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<Option<Instant>>,
    tracker: Arc<Tracker>,
}

#[derive(Debug, Default)]
struct Tracker {
    holders: AtomicUsize,
    released: Notify,
}

/// The deadline handed out when a drain starts: work still running at this
/// instant is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draining {
    /// When open connections are closed.
    pub deadline: Instant,
}

/// A tracked handle held by every listener and connection for its whole life.
#[derive(Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<Option<Instant>>,
    tracker: Arc<Tracker>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(None);
        Drain { tx, tracker: Arc::new(Tracker::default()) }
    }

    /// A new tracked watch. The drain is not released while it lives.
    pub fn watch(&self) -> DrainWatch {
        self.tracker.holders.fetch_add(1, Ordering::AcqRel);
        DrainWatch { rx: self.tx.subscribe(), tracker: Arc::clone(&self.tracker) }
    }

    /// Start draining: every watch sees [`DrainWatch::draining`] resolve with
    /// `deadline`. Calling it again keeps the first deadline.
    pub fn start(&self, deadline: Instant) {
        self.tx.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(deadline);
            true
        });
    }

    /// Whether [`Drain::start`] has been called.
    pub fn is_draining(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// How many watches are alive (listeners plus connections).
    pub fn holders(&self) -> usize {
        self.tracker.holders.load(Ordering::Acquire)
    }

    /// Resolves once every watch has been dropped.
    pub async fn released(&self) {
        loop {
            let notified = self.tracker.released.notified();
            if self.holders() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl DrainWatch {
    /// Resolves when the drain starts (at once if it already has).
    pub async fn draining(&mut self) -> Draining {
        loop {
            if let Some(deadline) = *self.rx.borrow_and_update() {
                return Draining { deadline };
            }
            if self.rx.changed().await.is_err() {
                // The `Drain` was dropped without starting: nothing will ever
                // drain, so never resolve.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The drain state right now, without waiting.
    pub fn current(&self) -> Option<Draining> {
        self.rx.borrow().map(|deadline| Draining { deadline })
    }
}

impl Clone for DrainWatch {
    fn clone(&self) -> Self {
        self.tracker.holders.fetch_add(1, Ordering::AcqRel);
        DrainWatch { rx: self.rx.clone(), tracker: Arc::clone(&self.tracker) }
    }
}

impl Drop for DrainWatch {
    fn drop(&mut self) {
        if self.tracker.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn watches_see_the_deadline_and_release_is_tracked() {
        let drain = Drain::new();
        let mut a = drain.watch();
        let b = a.clone();
        assert_eq!(drain.holders(), 2);
        assert!(a.current().is_none());

        let deadline = Instant::now() + Duration::from_secs(5);
        drain.start(deadline);
        drain.start(deadline + Duration::from_secs(10));
        assert_eq!(a.draining().await.deadline, deadline, "the first deadline is kept");
        assert_eq!(b.current().map(|d| d.deadline), Some(deadline));

        let released = tokio::spawn(async move {
            drain.released().await;
            drain.holders()
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!released.is_finished(), "one watch still alive");
        drop(b);
        let left = tokio::time::timeout(Duration::from_secs(5), released)
            .await
            .expect("released resolves after the last watch drops")
            .expect("task");
        assert_eq!(left, 0);
    }
}
