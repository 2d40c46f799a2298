//! A PROXY protocol v2 header before the ClientHello, for `handshakes
//! --proxy-v2` (`PP=1 bench/run.sh`): the header goes out in the same
//! `writev` as the TLS client's first write, so header and ClientHello
//! share a segment, as a load balancer in front sends them.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose first write is preceded by `prefix`.
pub struct Prefixed {
    inner: TcpStream,
    prefix: Vec<u8>,
    sent: usize,
}

impl Prefixed {
    /// Connects to `target`; the v2 header carries the connection's own
    /// addresses (what a load balancer on this host would send).
    pub async fn connect(target: SocketAddr) -> io::Result<Self> {
        let inner = TcpStream::connect(target).await?;
        inner.set_nodelay(true)?;
        let prefix = shardgate_e2e::proxy_protocol::v2(inner.local_addr()?, target);
        Ok(Prefixed { inner, prefix, sent: 0 })
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        while this.sent < this.prefix.len() {
            let rest = this.prefix.len() - this.sent;
            let bufs = [IoSlice::new(&this.prefix[this.sent..]), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.sent += n.min(rest);
            if n > rest {
                return Poll::Ready(Ok(n - rest));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
