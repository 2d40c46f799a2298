//! Bidirectional copy between a player and a game server.
//!
//! - **No buffer while idle.** Each read goes into a buffer on the poll's
//!   stack and is written straight on; only bytes the other side cannot take
//!   at once are copied to the heap, and that copy is freed once written. An
//!   idle player costs the sockets, rustls's own state and this future, not
//!   two copy buffers.
//! - **Bulk in large pieces.** A read of a full TLS record or more is
//!   followed by more reads into the same buffer before writing, so a bulk
//!   transfer costs one `write` per 64 KiB, not one per record; a small
//!   message is written as soon as it is read.
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

/// Bytes read per poll at most: four TLS records' worth of plaintext, so a
/// bulk transfer moves 64 KiB per `read` and `write` (and rustls writes the
/// four records it makes of it with one `writev`).
const CHUNK: usize = 64 * 1024;
/// A read at least this large says the peer is sending in bulk: the copy
/// reads again before writing, until the chunk is full or the reader has
/// nothing more (a TLS reader gives one record per read). Smaller reads,
/// a game's messages, are written at once.
const FILL_FROM: usize = 8 * 1024;
/// Room the chunk must still have for another read while filling.
const FILL_ROOM: usize = 16 * 1024;

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
    /// A read error met while filling the chunk, returned once the bytes
    /// read before it were written.
    deferred: Option<io::Error>,
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
        if let Some(e) = half.deferred.take() {
            return Poll::Ready(Err((Side::Reader, e)));
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
        if rb.filled().is_empty() {
            half.read_done = true;
            continue;
        }
        let mut last = rb.filled().len();
        while last >= FILL_FROM && rb.remaining() >= FILL_ROOM {
            let before = rb.filled().len();
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) if rb.filled().len() == before => {
                    half.read_done = true;
                    break;
                }
                Poll::Ready(Ok(())) => last = rb.filled().len() - before,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    half.read_done = true;
                    break;
                }
                Poll::Ready(Err(e)) => {
                    half.deferred = Some(e);
                    break;
                }
            }
        }
        let data = rb.filled();
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
mod fill_tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, duplex};

    /// A reader that gives one scripted piece per read (as a TLS stream
    /// gives one record), then `Pending` forever; counts its reads.
    struct Records {
        pieces: VecDeque<io::Result<Vec<u8>>>,
        reads: Arc<Mutex<usize>>,
    }

    impl AsyncRead for Records {
        fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            *self.reads.lock().expect("lock") += 1;
            match self.pieces.pop_front() {
                Some(Ok(piece)) => {
                    buf.put_slice(&piece);
                    Poll::Ready(Ok(()))
                }
                Some(Err(e)) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            }
        }
    }

    /// A writer that records the size of every write.
    #[derive(Default, Clone)]
    struct Writes(Arc<Mutex<Vec<usize>>>);

    impl AsyncWrite for Writes {
        fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.0.lock().expect("lock").push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn poll_once(reader: &mut Records, writer: &mut Writes, half: &mut Half) -> Poll<Result<(), (Side, io::Error)>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut active = false;
        poll_half(&mut cx, reader, writer, half, &Counter::default(), &mut active)
    }

    #[test]
    fn records_in_bulk_are_written_in_large_pieces() {
        let reads = Arc::new(Mutex::new(0));
        let record = 16 * 1024;
        let mut reader = Records { pieces: (0..8).map(|_| Ok(vec![1u8; record])).collect(), reads: Arc::clone(&reads) };
        let mut writer = Writes::default();
        let mut half = Half::default();
        assert!(poll_once(&mut reader, &mut writer, &mut half).is_pending());
        let writes = writer.0.lock().expect("lock").clone();
        assert_eq!(writes, vec![CHUNK, CHUNK], "eight 16 KiB records leave as two 64 KiB writes");
        assert_eq!(half.bytes, 8 * record as u64);
    }

    #[test]
    fn a_small_message_is_written_without_reading_again() {
        let reads = Arc::new(Mutex::new(0));
        let mut reader = Records { pieces: [Ok(vec![7u8; 64]), Ok(vec![8u8; 64])].into(), reads: Arc::clone(&reads) };
        let mut writer = Writes::default();
        let mut half = Half::default();
        assert!(poll_once(&mut reader, &mut writer, &mut half).is_pending());
        // Each message is written as soon as it is read, not held back to
        // fill the chunk.
        assert_eq!(*writer.0.lock().expect("lock"), vec![64, 64]);
    }

    #[test]
    fn bytes_read_before_an_error_are_written_before_it_is_reported() {
        let reads = Arc::new(Mutex::new(0));
        let mut reader = Records {
            pieces: [Ok(vec![1u8; 16 * 1024]), Err(io::Error::from(io::ErrorKind::ConnectionReset))].into(),
            reads: Arc::clone(&reads),
        };
        let mut writer = Writes::default();
        let mut half = Half::default();
        match poll_once(&mut reader, &mut writer, &mut half) {
            Poll::Ready(Err((Side::Reader, e))) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected the reader's error, got {:?}", other.map(|r| r.map_err(|(_, e)| e))),
        }
        assert_eq!(*writer.0.lock().expect("lock"), vec![16 * 1024]);
    }

    #[tokio::test]
    async fn end_of_stream_met_while_filling_still_delivers_everything() {
        let (mut client, mut down) = duplex(256 * 1024);
        let (mut up, mut server) = duplex(256 * 1024);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        tokio::io::AsyncWriteExt::write_all(&mut client, &sent).await.expect("write");
        drop(client);
        let counters = ByteCounters::default();
        let proxy = tokio::spawn(async move {
            copy_bidirectional(&mut down, &mut up, Duration::from_secs(30), &counters, std::future::pending()).await
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("read until the FIN");
        assert_eq!(got, sent);
        drop(server);
        let r = proxy.await.expect("proxy");
        assert_eq!(r.from_client, sent.len() as u64);
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
