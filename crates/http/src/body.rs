//! Response bodies: empty, a small buffer, a byte window of a cached
//! [`Fill`] (streamed while the origin still writes it), an origin body
//! passed through uncached (ended with an error when the origin stalls
//! for longer than its read timeout, see [`OriginBody`]), or a viewer's
//! request body streamed to an origin.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use shardgate_cache::{Fill, FillEnd, Read};
use tokio::time::{Instant, Sleep};

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

/// An origin body passed through to the viewer, with the origin's read
/// timeout applied to each frame, as a stored fill's copy applies it: when
/// the edge asks for the next frame and the origin sends nothing for
/// `idle`, the body ends with [`OriginStalled`]. The viewer's response is
/// then cut off (HTTP/1.1: the connection closes; HTTP/2: the stream is
/// reset) and the origin body is dropped at once, which closes its
/// connection instead of returning it to the pool. Time the viewer takes
/// to read (the edge not asking) does not count against the origin.
pub struct OriginBody<B = hyper::body::Incoming> {
    /// `None` once it stalled.
    inner: Option<B>,
    idle: Duration,
    /// Armed when the edge starts waiting for a frame.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Names for the warning: distribution and origin.
    distribution: Arc<str>,
    origin: Arc<str>,
}

impl<B> OriginBody<B> {
    /// `inner`, ended with [`OriginStalled`] when the origin sends no frame
    /// for `idle`; `distribution` and `origin` name it in the warning.
    pub fn new(inner: B, idle: Duration, distribution: Arc<str>, origin: Arc<str>) -> Self {
        OriginBody { inner: Some(inner), idle, timer: None, waiting: false, distribution, origin }
    }
}

/// The error an [`OriginBody`] ends with when its origin stalled.
#[derive(Debug, thiserror::Error)]
#[error("the origin sent nothing of its response body for {0:?}")]
pub struct OriginStalled(pub Duration);

impl<B> Body for OriginBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.idle;
            match this.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(timer) = this.timer.as_mut() {
            ready!(timer.as_mut().poll(cx));
        }
        tracing::warn!(distribution = %this.distribution, origin = %this.origin, timeout = ?this.idle, "origin stalled while its response body was passed through; ending the viewer's response");
        // Dropping the body closes the origin connection: it is never pooled.
        this.inner = None;
        this.timer = None;
        Poll::Ready(Some(Err(OriginStalled(this.idle).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
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
    Origin(OriginBody),
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
            EdgeBody::Origin(o) => Pin::new(o).poll_frame(cx),
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
            EdgeBody::Origin(o) => o.is_end_stream(),
            EdgeBody::Upload(u) => u.is_end_stream(),
            EdgeBody::Logged(b) => b.is_end_stream(),
            EdgeBody::Fill(f) => f.end.is_some_and(|end| f.offset >= end),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Empty => SizeHint::with_exact(0),
            EdgeBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            EdgeBody::Origin(o) => o.size_hint(),
            EdgeBody::Upload(u) => u.size_hint(),
            EdgeBody::Logged(b) => b.size_hint(),
            EdgeBody::Fill(f) => match f.end {
                Some(end) => SizeHint::with_exact(end.saturating_sub(f.offset)),
                None => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// An origin body whose frames the test sends.
    struct Frames(mpsc::Receiver<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn stalling(idle: Duration) -> (mpsc::Sender<Bytes>, OriginBody<Frames>) {
        let (tx, rx) = mpsc::channel(4);
        (tx, OriginBody::new(Frames(rx), idle, Arc::from("d"), Arc::from("o")))
    }

    // The clock is paused: tokio advances it only when every task waits,
    // so the durations below are exact and take no real time.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_origin_body_ends_with_an_error_after_the_idle_timeout() {
        let (tx, mut body) = stalling(Duration::from_secs(5));
        tx.send(Bytes::from_static(b"part")).await.expect("send");
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"part"[..]));

        let started = Instant::now();
        let err = body.frame().await.expect("an end").expect_err("the origin stalled");
        assert!(err.is::<OriginStalled>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(body.frame().await.is_none(), "nothing after the error");
        assert!(body.is_end_stream());
        assert!(tx.send(Bytes::from_static(b"late")).await.is_err(), "the origin body was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_viewer_takes_to_read_does_not_count_against_the_origin() {
        let (tx, mut body) = stalling(Duration::from_secs(5));
        tx.send(Bytes::from_static(b"a")).await.expect("send");
        assert!(body.frame().await.expect("a frame").is_ok());
        // The viewer reads nothing for 10 s; the origin's next frame comes
        // 2 s after the edge asks for it again, within its timeout.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(12)).await;
            tx.send(Bytes::from_static(b"b")).await.expect("send");
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        let frame = body.frame().await.expect("a frame").expect("data, not a timeout");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"b"[..]));
        assert!(body.frame().await.is_none(), "the origin ended its body");
    }
}
