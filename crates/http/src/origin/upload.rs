//! A viewer's request body on its way to the origin ([`Upload`]): the
//! bytes already read (the part the web ACL inspected) and then the rest,
//! streamed as it arrives, never held whole. Bounded in size
//! ([`MAX_REQUEST_BODY_BYTES`]) and in idle time between frames
//! ([`REQUEST_BODY_IDLE_TIMEOUT`]): a viewer that sends more, or stalls,
//! ends the body with an error and the origin request is cut short.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::body::BoxError;

/// Largest request body forwarded to an origin (a `Content-Length` above it
/// is refused with 413 before any origin work; a streamed body that grows
/// past it is cut off).
pub const MAX_REQUEST_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Longest wait for the next part of a request body.
pub const REQUEST_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a viewer's request body stands, as the fetch waiting for the
/// origin's answer sees it ([`Upload::watch`]): a change is sent on every
/// frame taken, so a waiter also learns that the body still moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadState {
    /// More may come.
    #[default]
    Streaming,
    /// All of it was handed to the origin connection.
    Ended,
    /// The viewer sent more than [`MAX_REQUEST_BODY_BYTES`].
    TooLarge,
    /// The viewer sent nothing for [`REQUEST_BODY_IDLE_TIMEOUT`].
    Stalled,
    /// The viewer's body failed (the viewer reset or sent bad framing).
    Failed,
}

/// A request body: `prefix` (already read), then the rest of the viewer's body.
pub struct Upload {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
    sent: u64,
    /// `Content-Length` of the viewer's request, when it sent one.
    length: Option<u64>,
    /// Idle bound between frames: armed at the first wait for a frame, so
    /// the time spent connecting to the origin does not count.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    state: watch::Sender<UploadState>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("sent", &self.sent).field("length", &self.length).finish()
    }
}

impl Upload {
    /// `prefix`, then what `rest` still holds (`None`: `prefix` was all of
    /// it); `length` is the viewer's `Content-Length`, if any. A `rest`
    /// already at its end is dropped, so a request without a body goes out
    /// without one (no `Transfer-Encoding: chunked` for an empty DELETE).
    pub fn new(prefix: Bytes, rest: Option<Incoming>, length: Option<u64>) -> Self {
        let rest = rest.filter(|r| !r.is_end_stream());
        Upload {
            prefix: Some(prefix),
            rest,
            sent: 0,
            length,
            timer: None,
            state: watch::channel(UploadState::Streaming).0,
        }
    }

    /// Follows the body: the fetch starts the origin's response timeout
    /// once it is [`UploadState::Ended`], and tells a viewer's failure from
    /// the origin's. Dropping the upload closes the channel.
    pub fn watch(&self) -> watch::Receiver<UploadState> {
        self.state.subscribe()
    }

    fn fail(&mut self, state: UploadState, message: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state.send_replace(state);
        Poll::Ready(Some(Err(message.into())))
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.sent += n as u64;
        if self.sent > MAX_REQUEST_BODY_BYTES {
            return Err(format!("the request body is larger than {MAX_REQUEST_BODY_BYTES} bytes"));
        }
        Ok(())
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take()
            && !p.is_empty()
        {
            if let Err(e) = self.count(p.len()) {
                return self.fail(UploadState::TooLarge, e);
            }
            self.state.send_modify(|_| {});
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let this = &mut *self;
        let Some(rest) = &mut this.rest else {
            this.state.send_replace(UploadState::Ended);
            return Poll::Ready(None);
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(timer) = &mut this.timer {
                    timer.as_mut().reset(tokio::time::Instant::now() + REQUEST_BODY_IDLE_TIMEOUT);
                }
                if let Some(data) = frame.data_ref()
                    && let Err(e) = this.count(data.len())
                {
                    return this.fail(UploadState::TooLarge, e);
                }
                this.state.send_modify(|_| {});
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(UploadState::Failed, format!("the viewer's request body: {e}")),
            Poll::Ready(None) => {
                this.rest = None;
                this.state.send_replace(UploadState::Ended);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(REQUEST_BODY_IDLE_TIMEOUT)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(
                        UploadState::Stalled,
                        format!("the viewer sent no request body bytes for {REQUEST_BODY_IDLE_TIMEOUT:?}"),
                    ),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty) && self.rest.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match (self.length, &self.rest) {
            (Some(n), _) => SizeHint::with_exact(n.saturating_sub(self.sent)),
            (None, None) => SizeHint::with_exact(prefix),
            (None, Some(rest)) => {
                let r = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(r.lower() + prefix);
                if let Some(upper) = r.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}
