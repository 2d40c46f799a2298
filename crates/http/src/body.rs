//! Response bodies: empty, a small buffer, a byte window of a cached
//! [`Fill`] (streamed while the origin still writes it), an origin body
//! passed through uncached, or a viewer's request body streamed to an origin.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use shardgate_cache::{Fill, FillEnd, Read};

/// Errors a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Wait = Pin<Box<dyn Future<Output = u64> + Send>>;

/// Reads `[offset, end)` of a fill, waiting for bytes that have not arrived.
pub struct FillBody {
    fill: Arc<Fill>,
    offset: u64,
    end: Option<u64>,
    wait: Option<Wait>,
}

impl FillBody {
    /// The bytes from `start` to `end` (exclusive; `None` = to the end of the body).
    pub fn new(fill: Arc<Fill>, start: u64, end: Option<u64>) -> Self {
        FillBody { fill, offset: start, end, wait: None }
    }
}

/// A response body.
pub enum EdgeBody {
    /// No body.
    Empty,
    /// One buffer.
    Full(Option<Bytes>),
    /// A window of a cached object.
    Fill(FillBody),
    /// An origin body passed through.
    Origin(hyper::body::Incoming),
    /// A viewer's request body on its way to an origin.
    Upload(Box<crate::origin::upload::Upload>),
    /// Another body, counted for the access log, whose line is written
    /// when it drops.
    Logged(Box<crate::access_log::LoggedBody>),
}

impl EdgeBody {
    /// A body holding `b`.
    pub fn full(b: impl Into<Bytes>) -> Self {
        EdgeBody::Full(Some(b.into()))
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            EdgeBody::Empty => Poll::Ready(None),
            EdgeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            EdgeBody::Origin(inc) => Pin::new(inc).poll_frame(cx).map_err(Into::into),
            EdgeBody::Upload(u) => Pin::new(&mut **u).poll_frame(cx),
            EdgeBody::Logged(b) => Pin::new(&mut **b).poll_frame(cx),
            EdgeBody::Fill(f) => loop {
                if f.end.is_some_and(|end| f.offset >= end) {
                    return Poll::Ready(None);
                }
                if let Some(w) = &mut f.wait {
                    ready!(w.as_mut().poll(cx));
                    f.wait = None;
                }
                let seen = f.fill.version();
                match f.fill.read_at(f.offset) {
                    Read::Data(mut b) => {
                        if let Some(end) = f.end {
                            let room = (end - f.offset) as usize;
                            if b.len() > room {
                                b.truncate(room);
                            }
                        }
                        f.offset += b.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                    Read::Pending => {
                        let fill = Arc::clone(&f.fill);
                        f.wait = Some(Box::pin(async move { fill.changed(seen).await }));
                    }
                    Read::End(FillEnd::Complete) => return Poll::Ready(None),
                    Read::End(FillEnd::Failed(e)) => return Poll::Ready(Some(Err(e.into()))),
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Empty => true,
            EdgeBody::Full(b) => b.is_none(),
            EdgeBody::Origin(inc) => inc.is_end_stream(),
            EdgeBody::Upload(u) => u.is_end_stream(),
            EdgeBody::Logged(b) => b.is_end_stream(),
            EdgeBody::Fill(f) => f.end.is_some_and(|end| f.offset >= end),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Empty => SizeHint::with_exact(0),
            EdgeBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            EdgeBody::Origin(inc) => inc.size_hint(),
            EdgeBody::Upload(u) => u.size_hint(),
            EdgeBody::Logged(b) => b.size_hint(),
            EdgeBody::Fill(f) => match f.end {
                Some(end) => SizeHint::with_exact(end.saturating_sub(f.offset)),
                None => SizeHint::default(),
            },
        }
    }
}
