//! A TLS client with SNI that accepts any certificate and reports the one
//! the gateway presented, so tests can check which certificate was chosen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug)]
struct AcceptAny(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// Builds client configs; one config keeps its own session cache, so a
/// second connection with the same config can resume.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl Default for TlsClient {
    fn default() -> Self {
        Self::new(None, &[&rustls::version::TLS13, &rustls::version::TLS12])
    }
}

impl TlsClient {
    /// A client offering only `schemes` (all by default) and `versions`.
    pub fn new(schemes: Option<Vec<SignatureScheme>>, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let schemes = schemes.unwrap_or_else(|| provider.signature_verification_algorithms.supported_schemes());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
            .with_no_client_auth();
        TlsClient { config: Arc::new(config) }
    }

    /// A client that can only verify ECDSA P-256 signatures.
    pub fn ecdsa_only() -> Self {
        Self::new(
            Some(vec![SignatureScheme::ECDSA_NISTP256_SHA256]),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    /// A client that can only verify RSA signatures.
    pub fn rsa_only() -> Self {
        Self::new(
            Some(vec![SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256]),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    /// The same client with session resumption off: every handshake is full.
    pub fn without_resumption(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        TlsClient { config: Arc::new(config) }
    }

    /// A TLS 1.2-only client.
    pub fn tls12_only() -> Self {
        Self::new(None, &[&rustls::version::TLS12])
    }

    /// Connects to `addr` sending `sni` (or no SNI when `None`).
    pub async fn connect(&self, addr: SocketAddr, sni: Option<&str>) -> std::io::Result<TlsStream<TcpStream>> {
        self.connect_from(None, addr, sni).await
    }

    /// Like [`TlsClient::connect`], from the loopback `source` address when
    /// given (e.g. `127.0.0.2`, to look like another player).
    pub async fn connect_from(
        &self,
        source: Option<std::net::IpAddr>,
        addr: SocketAddr,
        sni: Option<&str>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let mut config = (*self.config).clone();
        let name = match sni {
            Some(s) => ServerName::try_from(s.to_owned()).map_err(std::io::Error::other)?,
            None => {
                // rustls sends no SNI for IP-address names.
                config.enable_sni = false;
                ServerName::try_from("sni.invalid").map_err(std::io::Error::other)?
            }
        };
        // Keep the shared session cache when SNI is on.
        let config = if sni.is_some() { Arc::clone(&self.config) } else { Arc::new(config) };
        let tcp = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let sock =
                    if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(addr).await?
            }
        };
        tokio::time::timeout(Duration::from_secs(10), TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// A TLS handshake with `sni` on a connection already open (e.g. after
    /// a PROXY protocol header was sent on it).
    pub async fn connect_over<IO>(&self, io: IO, sni: &str) -> std::io::Result<TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
        tokio::time::timeout(Duration::from_secs(10), TlsConnector::from(Arc::clone(&self.config)).connect(name, io))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

/// The DER of the leaf certificate the server presented.
pub fn presented_cert(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default()
}

/// Sends `msg`, reads one reply (up to 4 KiB, 10 s).
pub async fn roundtrip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, msg: &str) -> String {
    s.write_all(msg.as_bytes()).await.expect("send");
    s.flush().await.expect("flush");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("reply within 10s")
        .expect("read reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Like [`roundtrip`], but `None` on any error or timeout (for polling loops).
pub async fn try_roundtrip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    msg: &str,
) -> Option<String> {
    s.write_all(msg.as_bytes()).await.ok()?;
    s.flush().await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The TLS records `client` sends to open a connection with `sni`: a local
/// listener reads them and closes, so the handshake fails on the client's
/// side. The bytes are the client's ClientHello, for tests that must know a
/// client's TLS fingerprint.
pub async fn captured_client_hello(client: &TlsClient, sni: Option<&str>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = client.clone();
    let sni = sni.map(str::to_owned);
    let connecting = tokio::spawn(async move { client.connect(addr, sni.as_deref()).await.is_err() });
    let (mut sock, _) = listener.accept().await.expect("accept");
    let mut bytes = Vec::new();
    // Whole records: a 5-byte header, then its length.
    loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("the ClientHello in time")
            .expect("read");
        assert!(n > 0, "the client closed before its ClientHello");
        bytes.extend_from_slice(&buf[..n]);
        if bytes.len() >= 5 && bytes.len() >= 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]])) {
            break;
        }
    }
    drop(sock);
    assert!(connecting.await.expect("client task"), "the handshake cannot succeed");
    bytes
}
