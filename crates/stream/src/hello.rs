//! Reading the ClientHello before any certificate is chosen.
//!
//! rustls's [`Acceptor`] parses the ClientHello; this module feeds it from the
//! socket with a byte cap (a real ClientHello is a few hundred bytes to 2 KiB)
//! so a client cannot make shardgate buffer up to rustls's 64 KiB handshake
//! limit. Nothing expensive has happened yet when the SNI is known: the
//! connection is routed, and refused with a TLS alert when it has nowhere to
//! go, before any key exchange. The bytes read are copied only when the
//! caller asks (`keep`: a loaded web ACL reads the TLS fingerprints, JA3
//! and JA4, which `shardgate_waf::fingerprint` computes from them);
//! otherwise nothing is copied or kept.
//!
//! When a loaded stream route is `tls_passthrough`, shardgate's own parser
//! (`shardgate_waf::parse_client_hello`, the one that fingerprints) reads
//! the ClientHello first, under the same cap: [`read_raw_client_hello`]
//! keeps every byte read, so a passthrough connection forwards them
//! untouched and any other goes on to rustls with them
//! ([`read_client_hello_after`]). rustls never decides a passthrough route:
//! a ClientHello it would refuse (TLS 1.0, say) still passes through.

use std::io::{self, Read, Write};

use rustls::server::{Accepted, Acceptor};
use shardgate_waf::{ClientHelloInfo, HelloParse, parse_client_hello};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::metrics::HandshakeFailure;

/// Why no ClientHello was obtained.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// More than the cap was read without a complete ClientHello.
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    /// The client closed before sending a whole ClientHello.
    #[error("client closed before the ClientHello")]
    Closed,
    /// Not a TLS ClientHello (rustls's alert has been sent).
    #[error("invalid ClientHello: {0}")]
    Protocol(rustls::Error),
    /// Socket error.
    #[error("reading the ClientHello: {0}")]
    Io(io::Error),
}

impl HelloError {
    /// The metric label.
    pub fn failure(&self) -> HandshakeFailure {
        match self {
            HelloError::TooLarge(_) => HandshakeFailure::client_hello_too_large,
            HelloError::Closed | HelloError::Io(_) => HandshakeFailure::client_closed,
            HelloError::Protocol(_) => HandshakeFailure::protocol_error,
        }
    }
}

/// `std::io` over a non-blocking tokio socket: `WouldBlock` when not ready.
struct Sync<'a>(&'a TcpStream);

/// Reads from a non-blocking tokio socket (`WouldBlock` when not ready),
/// counts the bytes read and, when asked, keeps a copy of them.
struct Tee<'a> {
    sock: &'a TcpStream,
    read: usize,
    copy: Option<Vec<u8>>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.try_read(buf)?;
        self.read += n;
        if let Some(copy) = &mut self.copy {
            copy.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Sync<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The first read's buffer: a typical ClientHello fits, so the copy grows
/// at most a few times for a large one.
const HELLO_COPY_CAPACITY: usize = 2048;

/// Reads until rustls has a whole ClientHello, at most `max_bytes`. With
/// `keep`, also returns a copy of the bytes read (the ClientHello's
/// records, for the TLS fingerprints); without, `None` and no copy.
pub async fn read_client_hello(
    stream: &TcpStream,
    max_bytes: usize,
    keep: bool,
) -> Result<(Accepted, Option<Vec<u8>>), HelloError> {
    read_client_hello_after(stream, max_bytes, keep, Vec::new()).await
}

/// [`read_client_hello`] for a connection whose first bytes, `read`, were
/// already taken from the socket (by [`read_raw_client_hello`]): rustls
/// reads them first, then the socket. The cap counts them.
pub async fn read_client_hello_after(
    stream: &TcpStream,
    max_bytes: usize,
    keep: bool,
    read: Vec<u8>,
) -> Result<(Accepted, Option<Vec<u8>>), HelloError> {
    let mut acceptor = Acceptor::default();
    let mut fed = &read[..];
    while !fed.is_empty() {
        match acceptor.read_tls(&mut fed) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(HelloError::Io(e)),
        }
    }
    let already = read.len();
    let mut pending = already > 0;
    let copy = match keep {
        false => None,
        true if pending => Some(read),
        true => Some(Vec::with_capacity(HELLO_COPY_CAPACITY.min(max_bytes))),
    };
    let mut tee = Tee { sock: stream, read: already, copy };
    loop {
        if !pending {
            stream.readable().await.map_err(HelloError::Io)?;
            match acceptor.read_tls(&mut tee) {
                Ok(0) => return Err(HelloError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(HelloError::Io(e)),
            }
        }
        pending = false;
        if tee.read > max_bytes {
            return Err(HelloError::TooLarge(max_bytes));
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok((accepted, tee.copy)),
            Ok(None) => continue,
            Err((err, mut alert)) => {
                // Best effort: the peer may already be gone.
                if let Err(e) = alert.write_all(&mut Sync(stream)) {
                    tracing::trace!(error = %e, "could not send the TLS alert");
                }
                return Err(HelloError::Protocol(err));
            }
        }
    }
}

/// What shardgate's own parser read: every byte taken from the socket
/// (to forward, or to hand to rustls) and, when they hold a whole and
/// well-formed ClientHello, what it asks for.
#[derive(Debug)]
pub struct RawHello {
    /// The bytes read, the ClientHello's records first.
    pub bytes: Vec<u8>,
    /// `None` when the bytes are not a well-formed ClientHello (rustls,
    /// reading them next, sends the alert).
    pub info: Option<ClientHelloInfo>,
}

/// One read's most: a typical ClientHello arrives in one.
const RAW_READ: usize = 4096;

/// Reads until `shardgate_waf::parse_client_hello` has a whole ClientHello
/// or knows there is none; keeps every byte read. More than `max_bytes`
/// read is `TooLarge`, as for [`read_client_hello`].
pub async fn read_raw_client_hello(stream: &TcpStream, max_bytes: usize) -> Result<RawHello, HelloError> {
    let mut bytes = Vec::with_capacity(HELLO_COPY_CAPACITY.min(max_bytes));
    let mut chunk = [0u8; RAW_READ];
    loop {
        stream.readable().await.map_err(HelloError::Io)?;
        // One byte past the cap tells "too large" from "exactly the cap".
        let room = (max_bytes + 1 - bytes.len()).min(RAW_READ);
        match stream.try_read(&mut chunk[..room]) {
            Ok(0) => return Err(HelloError::Closed),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(HelloError::Io(e)),
        }
        if bytes.len() > max_bytes {
            return Err(HelloError::TooLarge(max_bytes));
        }
        match parse_client_hello(&bytes) {
            HelloParse::Complete(info) => return Ok(RawHello { bytes, info: Some(info) }),
            HelloParse::Invalid => return Ok(RawHello { bytes, info: None }),
            HelloParse::Incomplete => {}
        }
    }
}

/// TLS alert `unrecognized_name` (112), fatal, as one plaintext record: the
/// answer RFC 6066 §3 gives for a server name the server does not serve.
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Refuses the handshake with `unrecognized_name` and closes the write side.
pub async fn refuse(stream: &mut TcpStream) {
    // Best effort: the client may be gone already; the connection is closed either way.
    if stream.write_all(&UNRECOGNIZED_NAME).await.is_ok() && stream.shutdown().await.is_err() {
        tracing::trace!("peer gone before the alert's FIN");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// The records of a rustls client's ClientHello for `sni`.
    fn client_hello(sni: &'static str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write to a Vec");
        }
        out
    }

    /// Sends `bytes` to a local listener and reads them as a ClientHello.
    async fn read(bytes: Vec<u8>, max_bytes: usize, keep: bool) -> Result<(Accepted, Option<Vec<u8>>), HelloError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(&bytes).await.expect("send");
            // Held open until the server is done: its close (or a reset
            // after its alert) ends the wait, whichever answer comes.
            let mut buf = [0u8; 64];
            match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                Ok(_) | Err(_) => {}
            }
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let r = read_client_hello(&sock, max_bytes, keep).await;
        drop(sock);
        client.await.expect("client task");
        r
    }

    /// The copy exists only when asked for; the byte cap holds either way.
    #[tokio::test]
    async fn the_client_hello_is_copied_only_when_kept_and_capped_either_way() {
        let hello = client_hello("gs-1.com");
        let (accepted, copy) = read(hello.clone(), 16 * 1024, true).await.expect("a ClientHello");
        assert_eq!(accepted.client_hello().server_name(), Some("gs-1.com"));
        assert_eq!(copy.as_deref(), Some(&hello[..]), "kept: the records as sent");
        let (accepted, copy) = read(hello.clone(), 16 * 1024, false).await.expect("a ClientHello");
        assert_eq!(accepted.client_hello().server_name(), Some("gs-1.com"));
        assert!(copy.is_none(), "not kept: no copy");
        for keep in [true, false] {
            let r = read(hello.clone(), hello.len() - 1, keep).await;
            assert!(matches!(r, Err(HelloError::TooLarge(n)) if n == hello.len() - 1), "keep {keep}: {r:?}");
        }
    }

    /// Sends `bytes` and runs `f` on the accepted socket.
    async fn served<T>(bytes: Vec<u8>, f: impl AsyncFnOnce(&TcpStream) -> T) -> T {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(&bytes).await.expect("send");
            // Nothing more will come: a cut ClientHello ends in Closed.
            s.shutdown().await.expect("FIN");
            let mut buf = [0u8; 64];
            match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                Ok(_) | Err(_) => {}
            }
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let r = f(&sock).await;
        drop(sock);
        client.await.expect("client task");
        r
    }

    /// Our parser reads the ClientHello and keeps every byte; rustls, handed
    /// those bytes, sees the same ClientHello.
    #[tokio::test]
    async fn the_raw_read_keeps_every_byte_and_rustls_continues_from_them() {
        let hello = client_hello("room-1.rooms.example.com");
        let mut sent = hello.clone();
        sent.extend_from_slice(&[23, 3, 3, 0, 1, 7]);
        let raw = served(sent.clone(), async |s| read_raw_client_hello(s, 16 * 1024).await).await.expect("raw");
        let info = raw.info.expect("whole");
        assert_eq!(info.server_name.as_deref(), Some("room-1.rooms.example.com"));
        assert!(raw.bytes.len() >= hello.len() && sent.starts_with(&raw.bytes), "the bytes as sent");

        let (accepted, copy) = served(hello.clone(), async |s| {
            let raw = read_raw_client_hello(s, 16 * 1024).await.expect("raw");
            read_client_hello_after(s, 16 * 1024, true, raw.bytes).await
        })
        .await
        .expect("rustls after our parser");
        assert_eq!(accepted.client_hello().server_name(), Some("room-1.rooms.example.com"));
        assert_eq!(copy.as_deref(), Some(&hello[..]), "the copy holds what was read before");

        let r = served(hello.clone(), async |s| read_raw_client_hello(s, hello.len() - 1).await).await;
        assert!(matches!(r, Err(HelloError::TooLarge(_))), "{r:?}");
        let raw = served(b"GET / HTTP/1.1\r\n\r\n".to_vec(), async |s| read_raw_client_hello(s, 1024).await)
            .await
            .expect("read");
        assert!(raw.info.is_none() && raw.bytes.starts_with(b"G"), "not TLS: left to rustls's alert");
        let r = served(hello[..10].to_vec(), async |s| read_raw_client_hello(s, 1024).await).await;
        assert!(matches!(r, Err(HelloError::Closed)), "{r:?}");
    }
}
