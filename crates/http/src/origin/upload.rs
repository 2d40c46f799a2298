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

use crate::body::BoxError;

/// Largest request body forwarded to an origin (a `Content-Length` above it
/// is refused with 413 before any origin work; a streamed body that grows
/// past it is cut off).
pub const MAX_REQUEST_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Longest wait for the next part of a request body.
pub const REQUEST_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body: `prefix` (already read), then the rest of the viewer's body.
pub struct Upload {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
    sent: u64,
    /// `Content-Length` of the viewer's request, when it sent one.
    length: Option<u64>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("sent", &self.sent).field("length", &self.length).finish()
    }
}

impl Upload {
    /// `prefix`, then what `rest` still holds (`None`: `prefix` was all of
    /// it); `length` is the viewer's `Content-Length`, if any.
    pub fn new(prefix: Bytes, rest: Option<Incoming>, length: Option<u64>) -> Self {
        Upload {
            prefix: Some(prefix),
            rest,
            sent: 0,
            length,
            timer: Box::pin(tokio::time::sleep(REQUEST_BODY_IDLE_TIMEOUT)),
        }
    }

    fn count(&mut self, n: usize) -> Result<(), BoxError> {
        self.sent += n as u64;
        if self.sent > MAX_REQUEST_BODY_BYTES {
            return Err(format!("the request body is larger than {MAX_REQUEST_BODY_BYTES} bytes").into());
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
                return Poll::Ready(Some(Err(e)));
            }
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let this = &mut *self;
        let Some(rest) = &mut this.rest else { return Poll::Ready(None) };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + REQUEST_BODY_IDLE_TIMEOUT;
                this.timer.as_mut().reset(deadline);
                if let Some(data) = frame.data_ref()
                    && let Err(e) = this.count(data.len())
                {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "the viewer sent no request body bytes for {REQUEST_BODY_IDLE_TIMEOUT:?}"
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.sent)),
            None if self.rest.is_none() => SizeHint::with_exact(self.prefix.as_ref().map_or(0, |p| p.len() as u64)),
            None => SizeHint::default(),
        }
    }
}
