//! One active probe: a TCP connect, or one HTTP/1.1 request (over TLS for
//! `https`) judged by its status line, as lua-resty-healthcheck's
//! `run_single_check` does it for APISIX: `Connection: close`, the
//! configured headers, `Host` (`active.host`, else the node's host, without
//! a port), `Content-Length` when there is a body.
//!
//! Bounded: the whole probe (resolve, connect, TLS handshake, request, status
//! line) runs within `active.timeout`; the request is built once per node
//! from validated, bounded configuration; at most [`MAX_STATUS_LINE`] bytes
//! of the answer are read, and nothing after the status line. The socket is
//! closed with a reset (`SO_LINGER` 0), so probes leave no `TIME_WAIT`
//! sockets behind on the gateway.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use shardgate_model::health::{ActiveCheck, ProbeKind};
use shardgate_model::{Host, Node};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::Outcome;
use crate::Resolver;

/// Most bytes of an answer read to find its status line
/// (`HTTP/1.1 200 OK\r\n` is 17; reason phrases are short).
pub const MAX_STATUS_LINE: usize = 512;
/// Largest CA bundle read for `https_verify_certificate` (Debian's is ~200 KiB).
const MAX_CA_BUNDLE: u64 = 16 * 1024 * 1024;
/// Where the system's CA bundle is looked for, after `SSL_CERT_FILE`
/// (Debian and Ubuntu, Fedora and RHEL, Alpine and macOS).
const CA_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// What to probe for one node: built once per checker.
#[derive(Debug)]
pub(crate) struct Target {
    /// The node's host (an IP, or a name resolved before each probe).
    pub host: Host,
    /// `active.port`, else the node's port.
    pub port: u16,
    /// The whole HTTP request, for `http` and `https`.
    pub request: Option<Box<[u8]>>,
    /// The TLS server name for `https` (`active.host`, else the node's host).
    pub server_name: Option<ServerName<'static>>,
}

impl Target {
    pub(crate) fn new(node: &Node, active: &ActiveCheck) -> Self {
        let host_header = match &active.host {
            Some(h) => h.to_string(),
            None => node.host.to_string(),
        };
        let request = match active.kind {
            ProbeKind::Tcp => None,
            ProbeKind::Http | ProbeKind::Https => Some(http_request(active, &host_header)),
        };
        let server_name = match (active.kind, &active.host, &node.host) {
            (ProbeKind::Https, Some(h), _) => ServerName::try_from(h.to_string()).ok(),
            (ProbeKind::Https, None, Host::Name(n)) => ServerName::try_from(n.to_string()).ok(),
            (ProbeKind::Https, None, Host::Ip(ip)) => Some(ServerName::IpAddress((*ip).into())),
            _ => None,
        };
        Target { host: node.host.clone(), port: active.port.unwrap_or(node.port), request, server_name }
    }
}

/// The request line and headers in lua-resty-healthcheck's order.
fn http_request(active: &ActiveCheck, host: &str) -> Box<[u8]> {
    let mut head = format!("{} {} HTTP/1.1\r\nConnection: close\r\n", active.http_method, active.http_path);
    for h in &active.req_headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Host: ");
    head.push_str(host);
    head.push_str("\r\n");
    if !active.http_req_body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", active.http_req_body.len()));
    }
    head.push_str("\r\n");
    head.push_str(&active.http_req_body);
    head.into_bytes().into_boxed_slice()
}

/// What a probe found, and with which address.
#[derive(Debug)]
pub(crate) struct Probed {
    pub outcome: Outcome,
    /// The address probed, once resolved.
    pub ip: Option<IpAddr>,
    /// Why it failed, for the log line of a change of status.
    pub detail: Option<String>,
}

/// Probes `target` within `active.timeout`.
pub(crate) async fn probe(target: &Target, active: &ActiveCheck, resolver: &Resolver) -> Probed {
    // One deadline for the name's resolution and the exchange together.
    let deadline = tokio::time::Instant::now() + active.timeout;
    let ip = match &target.host {
        Host::Ip(ip) => *ip,
        // The model refuses `checks` on a template upstream (a template has
        // no fixed node to probe); should one get here, it counts for nothing.
        Host::Template(_) => {
            return Probed {
                outcome: Outcome::Ignored,
                ip: None,
                detail: Some("a node template is not probed".into()),
            };
        }
        Host::Name(name) => {
            let resolved = tokio::time::timeout_at(deadline, resolver.resolve(name)).await;
            match resolved {
                Ok(Ok(addrs)) => addrs[0],
                Ok(Err(e)) => return Probed { outcome: Outcome::TcpFailure, ip: None, detail: Some(e.to_string()) },
                Err(_) => {
                    return Probed {
                        outcome: Outcome::Timeout,
                        ip: None,
                        detail: Some(format!("resolving {name} took longer than {:?}", active.timeout)),
                    };
                }
            }
        }
    };
    let addr = SocketAddr::new(ip, target.port);
    let (outcome, detail) = match tokio::time::timeout_at(deadline, exchange(addr, target, active)).await {
        Ok(Ok(Answer::Connected)) => (Outcome::Success, None),
        Ok(Ok(Answer::Status(status))) => (classify(status, active), None),
        Ok(Ok(Answer::NotHttp)) => (Outcome::HttpFailure, Some(format!("{addr}: no valid HTTP status line"))),
        Ok(Err(e)) => (Outcome::TcpFailure, Some(format!("{addr}: {e}"))),
        Err(_) => (Outcome::Timeout, Some(format!("{addr}: no answer within {:?}", active.timeout))),
    };
    Probed { outcome, ip: Some(ip), detail }
}

/// What a status code means to the active check: healthy, unhealthy, or
/// neither (ignored).
fn classify(status: u16, active: &ActiveCheck) -> Outcome {
    if active.healthy.http_statuses.contains(status) {
        Outcome::Success
    } else if active.unhealthy.http_statuses.contains(status) {
        Outcome::HttpFailure
    } else {
        Outcome::Ignored
    }
}

/// What the other end did, short of a TCP or TLS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Accepted the connection (all a TCP probe asks).
    Connected,
    /// Answered the request with this status.
    Status(u16),
    /// Answered something that is not an HTTP status line.
    NotHttp,
}

/// Connects and, for HTTP(S), sends the request and reads the status line.
async fn exchange(addr: SocketAddr, target: &Target, active: &ActiveCheck) -> io::Result<Answer> {
    let stream = TcpStream::connect(addr).await?;
    // A reset instead of FIN: no TIME_WAIT on this side for every probe.
    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    let Some(request) = &target.request else {
        return Ok(Answer::Connected);
    };
    stream.set_nodelay(true)?;
    if active.kind == ProbeKind::Https {
        let config = tls_config(active.https_verify_certificate)
            .ok_or_else(|| io::Error::other("no TLS client configuration (see the log)"))?;
        let name = target.server_name.clone().unwrap_or(ServerName::IpAddress(addr.ip().into()));
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| io::Error::other(format!("TLS handshake: {e}")))?;
        status_of(tls, request).await
    } else {
        status_of(stream, request).await
    }
}

async fn status_of<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> io::Result<Answer> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut buf = [0u8; MAX_STATUS_LINE];
    let mut len = 0;
    loop {
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a status line"));
        }
        len += n;
        if let Some(end) = buf[..len].iter().position(|b| *b == b'\n') {
            return Ok(parse_status_line(&buf[..end]).map_or(Answer::NotHttp, Answer::Status));
        }
        if len == buf.len() {
            return Ok(Answer::NotHttp);
        }
    }
}

/// `HTTP/<digits>.<digits> <3 digits>`, as lua-resty-healthcheck's
/// `^HTTP/\d+\.\d+\s+(\d+)`; `None` when the line is not that.
pub(crate) fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let major = digits(rest);
    let rest = rest[major..].strip_prefix(b".").filter(|_| major > 0)?;
    let minor = digits(rest);
    let rest = &rest[minor..];
    let spaces = rest.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    if minor == 0 || spaces == 0 {
        return None;
    }
    let code = &rest[spaces..];
    if digits(code) != 3 || code.get(3).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = code[..3].iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..=599).contains(&value).then_some(value)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client config of HTTPS probes (`None` only if the TLS provider
/// offered no protocol version, which aws-lc-rs's default provider always
/// does; every HTTPS probe then fails, and the log says why once).
fn tls_config(verify: bool) -> Option<Arc<ClientConfig>> {
    static VERIFYING: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    static UNVERIFIED: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    let cell = if verify { &VERIFYING } else { &UNVERIFIED };
    cell.get_or_init(|| {
        let provider = provider();
        let builder =
            match ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "the TLS provider offers no protocol version; HTTPS probes will fail");
                    return None;
                }
            };
        let mut config = if verify {
            // `https_verify_certificate: true`: the system's CA bundle.
            builder.with_root_certificates(system_roots()).with_no_client_auth()
        } else {
            // `false`: any certificate (self-signed game servers); the
            // handshake's signatures are still checked.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(config))
    })
    .clone()
}

/// The system's trust anchors: `SSL_CERT_FILE`, else the first bundle of
/// the well-known bundle paths that exists. Blocking file I/O: callers load it once per
/// process (the first HTTPS probe that verifies, the first HTTPS origin).
/// Without a bundle every verifying handshake fails, and the log says why.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(CA_BUNDLES.iter().map(std::path::PathBuf::from));
    for path in candidates {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() > MAX_CA_BUNDLE {
            tracing::warn!(file = %path.display(), bytes = meta.len(), "CA bundle too large; skipped");
            continue;
        }
        match std::fs::read(&path) {
            Ok(pem) => {
                let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                let (added, ignored) = roots.add_parsable_certificates(certs);
                tracing::info!(file = %path.display(), added, ignored, "system CA bundle loaded");
                return roots;
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read the CA bundle"),
        }
    }
    tracing::warn!(
        "no CA bundle found (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt, ...); HTTPS probes with https_verify_certificate true and HTTPS origins without ca_bundle will fail"
    );
    roots
}

/// Accepts the server's certificate whatever it is; checks the handshake
/// signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shardgate_model::HealthChecks;

    fn active(v: serde_json::Value) -> ActiveCheck {
        HealthChecks::from_json(&v).expect("valid").active
    }

    fn node(s: &str) -> Node {
        let (host, port) = shardgate_model::upstream::parse_host_port(s).expect("node");
        Node { host, port: port.expect("port"), weight: 1, priority: 0 }
    }

    #[test]
    fn status_lines_are_read_as_lua_resty_healthcheck_reads_them() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/2.0\t404 Not Found"), Some(404));
        for bad in [
            &b""[..],
            b"HTTP/1.1",
            b"HTTP/1.1 ",
            b"HTTP/1.1 20",
            b"HTTP/1.1 2000",
            b"HTTP/1.1 abc",
            b"HTTP/1. 200",
            b"HTTP/.1 200",
            b"HTTP/1.1200",
            b"http/1.1 200",
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 099",
            b"HTTP/1.1 600",
        ] {
            assert_eq!(parse_status_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_request_is_apisix_s_with_its_headers_host_and_body() {
        let a = active(json!({"active": {"http_path": "/healthz", "req_headers": ["User-Agent: probe"]}}));
        let t = Target::new(&node("gs-1.game.example:7777"), &a);
        assert_eq!(
            std::str::from_utf8(t.request.as_deref().expect("http")).expect("ascii"),
            "GET /healthz HTTP/1.1\r\nConnection: close\r\nUser-Agent: probe\r\nHost: gs-1.game.example\r\n\r\n"
        );
        assert_eq!(t.port, 7777);
        let a = active(json!({"active": {"type": "https", "host": "health.example", "port": 8443,
            "http_method": "POST", "http_req_body": "ping"}}));
        let t = Target::new(&node("[::1]:7777"), &a);
        assert_eq!(
            std::str::from_utf8(t.request.as_deref().expect("https")).expect("ascii"),
            "POST / HTTP/1.1\r\nConnection: close\r\nHost: health.example\r\nContent-Length: 4\r\n\r\nping"
        );
        assert_eq!(t.port, 8443);
        assert_eq!(t.server_name, Some(ServerName::try_from("health.example").expect("name")));
        let t = Target::new(&node("[::1]:7777"), &active(json!({"active": {"type": "https"}})));
        assert!(matches!(t.server_name, Some(ServerName::IpAddress(_))));
        let t = Target::new(&node("127.0.0.1:7"), &active(json!({"active": {"type": "tcp"}})));
        assert!(t.request.is_none() && t.server_name.is_none());
    }

    #[test]
    fn statuses_in_neither_list_are_ignored() {
        let a = active(json!({"active": {}}));
        assert_eq!(classify(200, &a), Outcome::Success);
        assert_eq!(classify(302, &a), Outcome::Success);
        assert_eq!(classify(500, &a), Outcome::HttpFailure);
        assert_eq!(classify(404, &a), Outcome::HttpFailure);
        assert_eq!(classify(204, &a), Outcome::Ignored);
        assert_eq!(classify(401, &a), Outcome::Ignored);
    }
}
