//! Reading the ClientHello before any certificate is chosen.
//!
//! rustls's [`Acceptor`] parses the ClientHello; this module feeds it from the
//! socket with a byte cap (a real ClientHello is a few hundred bytes to 2 KiB)
//! so a client cannot make shardgate buffer up to rustls's 64 KiB handshake
//! limit. Nothing expensive has happened yet when the SNI is known: the
//! connection is routed, and refused with a TLS alert when it has nowhere to
//! go, before any key exchange.

use std::io::{self, Read, Write};

use rustls::server::{Accepted, Acceptor};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::metrics::HandshakeFailure;

/// Why no ClientHello was obtained.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// More than the cap was read without a complete ClientHello.
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    /// The client closed before sending a ClientHello.
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

impl Read for Sync<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
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

/// Reads until rustls has a whole ClientHello, at most `max_bytes`.
pub async fn read_client_hello(stream: &TcpStream, max_bytes: usize) -> Result<Accepted, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut total = 0usize;
    loop {
        stream.readable().await.map_err(HelloError::Io)?;
        match acceptor.read_tls(&mut Sync(stream)) {
            Ok(0) => return Err(HelloError::Closed),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(HelloError::Io(e)),
        }
        if total > max_bytes {
            return Err(HelloError::TooLarge(max_bytes));
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted),
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
