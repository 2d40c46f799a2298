//! Bidirectional copy between a player and a game server.
//!
//! - **No buffer while idle.** Each read goes into a buffer on the poll's
//!   stack and is written straight on; only bytes the other side cannot take
//!   at once are copied to the heap, and that copy is freed once written. An
//!   idle player costs the sockets, rustls's own state and this future, not
//!   two copy buffers.
//! - **Half-close.** When one side sends FIN, the other side's write half is
//!   shut down and the opposite direction keeps flowing until it ends too.
//! - **Idle timeout.** The connection ends when no byte moved either way for
//!   the timeout. The timer is re-armed only when it fires, not on every read.
//! - **Live counters.** Bytes are added to the route's counters as they move.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes read per poll at most; one TLS record's worth of plaintext.
const CHUNK: usize = 16 * 1024;

/// How the copy ended.
#[derive(Debug)]
pub enum Ended {
    /// Both sides finished; the player was the first to close.
    ClientClosed,
    /// Both sides finished; the game server was the first to close.
    UpstreamClosed,
    /// I/O error on the player's side.
    ClientError(io::Error),
    /// I/O error on the game server's side.
    UpstreamError(io::Error),
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The `cut` future resolved (the drain deadline passed).
    Cut,
}

/// The outcome of a copy.
#[derive(Debug)]
pub struct CopyResult {
    /// Why it ended.
    pub ended: Ended,
    /// Bytes from the player to the game server.
    pub from_client: u64,
    /// Bytes from the game server to the player.
    pub to_client: u64,
}

/// Per-route byte counters, cloned from the metric families once per connection.
#[derive(Debug, Clone, Default)]
pub struct ByteCounters {
    /// Player → game server.
    pub from_client: Counter,
    /// Game server → player.
    pub to_client: Counter,
}

#[derive(Default)]
struct Half {
    /// Bytes read but not yet accepted by the writer.
    pending: Option<(Vec<u8>, usize)>,
    read_done: bool,
    done: bool,
    need_flush: bool,
    bytes: u64,
}

enum Side {
    Reader,
    Writer,
}

/// Moves bytes from `reader` to `writer`. `Ready(Ok)` when this direction is
/// finished (EOF read and FIN sent); errors say which side failed.
fn poll_half<R, W>(
    cx: &mut Context<'_>,
    reader: &mut R,
    writer: &mut W,
    half: &mut Half,
    counter: &Counter,
    active: &mut bool,
) -> Poll<Result<(), (Side, io::Error)>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if let Some((buf, pos)) = &mut half.pending {
            while *pos < buf.len() {
                match Pin::new(&mut *writer).poll_write(cx, &buf[*pos..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err((Side::Writer, io::ErrorKind::WriteZero.into()))),
                    Poll::Ready(Ok(n)) => *pos += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Writer, e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            half.pending = None;
            half.need_flush = true;
        }
        if half.read_done {
            ready!(Pin::new(&mut *writer).poll_shutdown(cx)).map_err(|e| (Side::Writer, e))?;
            half.done = true;
            return Poll::Ready(Ok(()));
        }

        let mut storage = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut rb = ReadBuf::uninit(&mut storage);
        match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
            Poll::Pending => {
                if half.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx)).map_err(|e| (Side::Writer, e))?;
                    half.need_flush = false;
                }
                return Poll::Pending;
            }
            // A TLS peer that closes TCP without close_notify: most game
            // clients hang up this way, so it counts as a normal end of stream.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                half.read_done = true;
                continue;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Reader, e))),
            Poll::Ready(Ok(())) => {}
        }
        let data = rb.filled();
        if data.is_empty() {
            half.read_done = true;
            continue;
        }
        *active = true;
        half.bytes += data.len() as u64;
        counter.inc_by(data.len() as u64);
        let mut pos = 0;
        while pos < data.len() {
            match Pin::new(&mut *writer).poll_write(cx, &data[pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err((Side::Writer, io::ErrorKind::WriteZero.into()))),
                Poll::Ready(Ok(n)) => pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Writer, e))),
                Poll::Pending => {
                    half.pending = Some((data[pos..].to_vec(), 0));
                    break;
                }
            }
        }
        half.need_flush = true;
    }
}

/// Copies both ways until both directions end, an error, `idle` without
/// traffic, or `cut` resolves.
pub async fn copy_bidirectional<D, U, C>(
    down: &mut D,
    up: &mut U,
    idle: Duration,
    counters: &ByteCounters,
    cut: C,
) -> CopyResult
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    C: Future<Output = ()>,
{
    tokio::pin!(cut);
    let mut c2u = Half::default();
    let mut u2c = Half::default();
    let mut first_closed: Option<Ended> = None;
    let mut last_activity = Instant::now();
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);

    let ended = poll_fn(|cx| {
        let mut active = false;
        if !c2u.done {
            match poll_half(cx, down, up, &mut c2u, &counters.from_client, &mut active) {
                Poll::Ready(Ok(())) => {
                    first_closed.get_or_insert(Ended::ClientClosed);
                }
                Poll::Ready(Err((Side::Reader, e))) => return Poll::Ready(Ended::ClientError(e)),
                Poll::Ready(Err((Side::Writer, e))) => return Poll::Ready(Ended::UpstreamError(e)),
                Poll::Pending => {}
            }
        }
        if !u2c.done {
            match poll_half(cx, up, down, &mut u2c, &counters.to_client, &mut active) {
                Poll::Ready(Ok(())) => {
                    first_closed.get_or_insert(Ended::UpstreamClosed);
                }
                Poll::Ready(Err((Side::Reader, e))) => return Poll::Ready(Ended::UpstreamError(e)),
                Poll::Ready(Err((Side::Writer, e))) => return Poll::Ready(Ended::ClientError(e)),
                Poll::Pending => {}
            }
        }
        if c2u.done && u2c.done {
            return Poll::Ready(first_closed.take().unwrap_or(Ended::ClientClosed));
        }
        if active {
            last_activity = Instant::now();
        }
        if cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ended::Cut);
        }
        while sleep.as_mut().poll(cx).is_ready() {
            let deadline = last_activity + idle;
            if Instant::now() >= deadline {
                return Poll::Ready(Ended::IdleTimeout);
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await;

    CopyResult { ended, from_client: c2u.bytes, to_client: u2c.bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_close_propagates() {
        let (mut client, mut down) = duplex(64);
        let (mut up, mut server) = duplex(64);
        let counters = ByteCounters::default();
        let proxy = tokio::spawn(async move {
            copy_bidirectional(&mut down, &mut up, Duration::from_secs(30), &counters, std::future::pending()).await
        });
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");

        // The client half-closes; the server still answers, then closes.
        client.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("server sees EOF");
        assert!(rest.is_empty());
        // More than the duplex capacity, so the proxy has to hold pending bytes.
        let big = vec![7u8; 10_000];
        let expected = big.clone();
        let writer = tokio::spawn(async move {
            server.write_all(&big).await.expect("write after client FIN");
            server.shutdown().await.expect("shutdown");
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("client reads until EOF");
        assert_eq!(got, expected);
        writer.await.expect("writer");

        let r = proxy.await.expect("proxy task");
        assert!(matches!(r.ended, Ended::ClientClosed), "{:?}", r.ended);
        assert_eq!((r.from_client, r.to_client), (4, 10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_time_out_and_traffic_postpones_it() {
        let (mut client, mut down) = duplex(64);
        let (mut up, _server) = duplex(64);
        let counters = ByteCounters::default();
        let proxy = tokio::spawn(async move {
            let start = Instant::now();
            let r = copy_bidirectional(&mut down, &mut up, Duration::from_secs(10), &counters, std::future::pending())
                .await;
            (r, start.elapsed())
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        client.write_all(b"x").await.expect("keepalive byte");
        let (r, elapsed) = proxy.await.expect("proxy task");
        assert!(matches!(r.ended, Ended::IdleTimeout), "{:?}", r.ended);
        assert!(elapsed >= Duration::from_secs(18), "timer restarted by traffic: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test(start_paused = true)]
    async fn the_cut_ends_a_busy_connection_and_keeps_its_counts() {
        let (mut client, mut down) = duplex(64);
        let (mut up, mut server) = duplex(64);
        let counters = ByteCounters::default();
        let proxy = tokio::spawn(async move {
            let cut = tokio::time::sleep(Duration::from_secs(5));
            copy_bidirectional(&mut down, &mut up, Duration::from_secs(60), &counters, cut).await
        });
        client.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.expect("read");
        let r = proxy.await.expect("proxy");
        assert!(matches!(r.ended, Ended::Cut), "{:?}", r.ended);
        assert_eq!(r.from_client, 5);
    }
}
