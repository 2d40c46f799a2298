//! Large socket reads under rustls, without a buffer per idle connection.
//!
//! rustls asks its transport for at most 4 KiB more than it holds
//! (`DeframerVecBuffer::prepare_read` in rustls 0.23), so a full 16 KiB
//! record arriving at once takes five `read` calls, and a burst of records
//! takes five per record. [`ReadAhead`] sits between rustls and the socket:
//! when rustls asks for less than [`READ_AHEAD`], one `read` of up to
//! [`READ_AHEAD`] bytes goes into a buffer on the poll's stack, rustls gets
//! what it asked for, and only the bytes it did not take are kept on the
//! heap until it reads them, which it does before the next socket read.
//! A 64-byte game message is still one `read`, and an idle connection holds
//! no buffer at all.
//!
//! Writes pass straight through, vectored writes included (rustls writes
//! its queued records with one `writev`).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once when the reader asks for less: four
/// full TLS records.
pub const READ_AHEAD: usize = 64 * 1024;

/// A transport that reads ahead of its reader; see the module docs.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read from the socket and not yet given to the reader, and how
    /// many of them were given. `None` whenever the reader is caught up.
    spill: Option<(Box<[u8]>, usize)>,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ReadAhead { inner, spill: None }
    }

    /// The transport underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read from the socket that the reader has not taken yet.
    pub fn buffered(&self) -> usize {
        self.spill.as_ref().map_or(0, |(b, at)| b.len() - at)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((buf, at)) = &mut this.spill {
            let n = out.remaining().min(buf.len() - *at);
            out.put_slice(&buf[*at..*at + n]);
            *at += n;
            if *at == buf.len() {
                this.spill = None;
            }
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= READ_AHEAD {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let mut storage = [MaybeUninit::<u8>::uninit(); READ_AHEAD];
        let mut ahead = ReadBuf::uninit(&mut storage);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
        let data = ahead.filled();
        let n = out.remaining().min(data.len());
        out.put_slice(&data[..n]);
        if n < data.len() {
            this.spill = Some((data[n..].into(), 0));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Counts the reads that reach the transport.
    struct Counted<S>(S, Arc<AtomicUsize>);

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_and_the_spill_is_freed() {
        let (mut peer, io) = duplex(256 * 1024);
        let reads = Arc::new(AtomicUsize::new(0));
        let mut ra = ReadAhead::new(Counted(io, Arc::clone(&reads)));
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.expect("write");

        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < sent.len() {
            let n = ra.read(&mut chunk).await.expect("read");
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent, "bytes arrive whole and in order");
        assert_eq!(reads.load(Ordering::Relaxed), 1, "one transport read served ten 4 KiB reads");
        assert_eq!(ra.buffered(), 0);
        assert!(ra.spill.is_none(), "nothing is held once the reader caught up");
    }

    #[tokio::test]
    async fn large_reads_go_straight_to_the_transport_and_eof_passes_through() {
        let (mut peer, io) = duplex(256 * 1024);
        let mut ra = ReadAhead::new(io);
        peer.write_all(b"hello").await.expect("write");
        drop(peer);
        let mut big = vec![0u8; READ_AHEAD];
        let n = ra.read(&mut big).await.expect("read");
        assert_eq!(&big[..n], b"hello");
        assert!(ra.spill.is_none());
        assert_eq!(ra.read(&mut big).await.expect("eof"), 0);
        let mut small = [0u8; 16];
        assert_eq!(ra.read(&mut small).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (mut peer, io) = duplex(1024);
        let mut ra = ReadAhead::new(io);
        ra.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    }
}
