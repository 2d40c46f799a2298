//! An HTTP/2 connection's streams run inside the connection's own task.
//!
//! hyper hands each HTTP/2 stream (request in, response out) to its
//! executor. With tokio's, every stream is a task of its own, and when a
//! stream's response is ready its task wakes the connection's task, which
//! tokio runs next (its "LIFO slot"): the connection writes that one
//! response, then the next stream runs, and so on — one `writev` and one
//! TLS record per response, however many streams a read brought in.
//!
//! [`ConnStreams`] is the executor instead: it only queues the stream
//! futures, and [`WithStreams`] polls them inside the connection's task,
//! between two polls of hyper's connection. A read that brings ten
//! requests runs their ten streams, then the connection writes their ten
//! responses at once. Streams still wait independently (each is polled
//! only when its own waker fires), and the work that may take long (an
//! origin fetch, making a compressed variant) already runs in tasks of its
//! own. A connection uses one core at a time, as a TCP stream does anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection: queues what hyper spawns, for
/// [`WithStreams`] to run.
#[derive(Clone, Default)]
pub(crate) struct ConnStreams {
    queue: Arc<Mutex<Vec<StreamFuture>>>,
}

impl std::fmt::Debug for ConnStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnStreams").finish_non_exhaustive()
    }
}

impl<F> hyper::rt::Executor<F> for ConnStreams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // Only hyper's connection, polled by `WithStreams` in this
        // connection's task, spawns, so the lock is never contended.
        if let Ok(mut queue) = self.queue.lock() {
            queue.push(Box::pin(fut));
        }
    }
}

impl ConnStreams {
    fn take(&self) -> Vec<StreamFuture> {
        self.queue.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }
}

/// A connection future `C` (hyper's, built with a [`ConnStreams`]) and the
/// streams it spawned: resolves with `C`'s output once `C` and every stream
/// have finished.
pub(crate) struct WithStreams<C: Future> {
    conn: Pin<Box<C>>,
    done: Option<C::Output>,
    spawned: ConnStreams,
    running: FuturesUnordered<StreamFuture>,
}

impl<C: Future> WithStreams<C> {
    /// `conn`, whose executor is `spawned`.
    pub(crate) fn new(conn: C, spawned: ConnStreams) -> Self {
        WithStreams { conn: Box::pin(conn), done: None, spawned, running: FuturesUnordered::new() }
    }

    /// The connection itself (for a graceful shutdown).
    pub(crate) fn conn(&mut self) -> Pin<&mut C> {
        self.conn.as_mut()
    }

    /// Polls the connection unless it has finished.
    fn poll_conn(&mut self, cx: &mut Context<'_>) {
        if self.done.is_none()
            && let Poll::Ready(out) = self.conn.as_mut().poll(cx)
        {
            self.done = Some(out);
        }
    }

    /// Runs the streams spawned since the last call and every stream whose
    /// waker fired; true when any of them ran.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let new = self.spawned.take();
        let mut ran = !new.is_empty();
        self.running.extend(new);
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {
            ran = true;
        }
        ran
    }
}

impl<C: Future> Unpin for WithStreams<C> {}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        // Read and dispatch, run the streams, then write what they answered.
        this.poll_conn(cx);
        if this.poll_streams(cx) {
            this.poll_conn(cx);
        }
        // Streams spawned by that last poll have not run yet, and nothing
        // else would wake this task for them.
        let queued = this.spawned.queue.lock().is_ok_and(|q| !q.is_empty());
        if queued {
            cx.waker().wake_by_ref();
        }
        if !queued
            && this.running.is_empty()
            && let Some(out) = this.done.take()
        {
            return Poll::Ready(out);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn spawned_streams_run_in_the_connection_task_and_it_waits_for_them() {
        let spawned = ConnStreams::default();
        let ran = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        // The "connection" spawns three streams, one of which waits, then finishes.
        let conn = {
            let spawned = spawned.clone();
            let ran = Arc::clone(&ran);
            async move {
                for _ in 0..2 {
                    let ran = Arc::clone(&ran);
                    spawned.execute(async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                }
                let ran_late = Arc::clone(&ran);
                spawned.execute(async move {
                    released.await.ok();
                    ran_late.fetch_add(1, Ordering::SeqCst);
                });
                "conn done"
            }
        };
        let task = tokio::spawn(WithStreams::new(conn, spawned));
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(ran.load(Ordering::SeqCst), 2, "the ready streams ran");
        assert!(!task.is_finished(), "the connection waits for its last stream");
        release.send(()).expect("the stream is waiting");
        assert_eq!(task.await.expect("task"), "conn done");
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    }
}
