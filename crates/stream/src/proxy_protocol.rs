//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2):
//! the header a load balancer in front of shardgate sends first on each
//! connection to carry the player's address, and the header shardgate
//! sends to game servers for the same reason.
//!
//! [`parse`] and the encoders ([`encode_v1`], [`encode_v2`]) are pure: no
//! I/O, bounded input, never a panic (fuzzed by
//! `fuzz/fuzz_targets/proxy_protocol.rs`). [`read_header`] feeds the parser
//! from a socket without ever consuming a byte past the header: it peeks
//! (`MSG_PEEK`) at what has arrived, and once a whole header is there reads
//! exactly its length, so the TLS ClientHello or the game bytes that follow
//! stay in the socket for whoever reads next. The caller bounds it in time.
//!
//! What is accepted:
//! - v1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or
//!   `PROXY UNKNOWN...\r\n`, at most [`V1_MAX_BYTES`] bytes with the CRLF;
//!   single spaces, addresses of the named family, decimal ports.
//! - v2: the 12-byte signature, version 2, command LOCAL or PROXY, family
//!   UNSPEC, INET, INET6 or UNIX, then the address block and TLVs; the TLVs
//!   are skipped unread. A header is at most [`MAX_HEADER_BYTES`].
//!
//! A header that carries no usable address (v1 `UNKNOWN`, v2 `LOCAL` as
//! load balancers' health checks send, v2 `UNSPEC` or `UNIX`) gives
//! [`Header::addresses`] `None`: the connection keeps the socket's own
//! addresses, as the specification says a receiver must.

use shardgate_core::LogThrottle;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// Longest v1 header, CRLF included: the specification's worst case,
/// `PROXY UNKNOWN` followed by two full-length IPv6 addresses and two
/// 5-digit ports, is 107 bytes.
pub const V1_MAX_BYTES: usize = 107;
/// The v2 signature, the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// Longest v2 header accepted, the 16 fixed bytes included. The length
/// field allows 64 KiB; what load balancers send is an address block and a
/// few TLVs (AWS's VPC endpoint id, Azure's link id, HAProxy's SSL and
/// authority TLVs), well under 1 KiB. Longer headers are refused
/// (`too_large`) rather than read.
pub const MAX_HEADER_BYTES: usize = 4096;
/// Bytes peeked at once: a v1 header or any v2 header without large TLVs
/// fits; a longer v2 header is then read by its announced length.
const PEEK_BYTES: usize = 256;
/// The fixed part of a v2 header: signature, version and command, family
/// and transport, length.
const V2_FIXED: usize = 16;

/// The protocol version of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text form.
    V1,
    /// The binary form.
    V2,
}

/// The addresses a header carries: the client's, and the one it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client (the player).
    pub source: SocketAddr,
    /// The address the client connected to (the load balancer's listener).
    pub destination: SocketAddr,
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// v1 or v2.
    pub version: Version,
    /// `None` when the header carries no usable address (v1 `UNKNOWN`, v2
    /// `LOCAL`, `UNSPEC` or `UNIX`): the socket's own addresses apply.
    pub addresses: Option<Addresses>,
}

/// What [`parse`] found in the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; what follows is not part of it.
    Complete {
        /// The header.
        header: Header,
        /// Its length in bytes.
        len: usize,
    },
    /// A header may still come: more bytes are needed. `total` is the
    /// header's whole length when already known (v2 after its 16 fixed
    /// bytes).
    Incomplete {
        /// The whole header's length, when known.
        total: Option<usize>,
    },
}

/// Why the bytes are not an acceptable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first bytes are neither `PROXY ` nor the v2 signature: the peer
    /// sent no header at all (a TLS ClientHello, an HTTP request...).
    #[error("no PROXY protocol header (the first bytes are neither \"PROXY \" nor the v2 signature)")]
    Missing,
    /// A header that breaks the specification.
    #[error("malformed PROXY protocol {version:?} header: {what}")]
    Malformed {
        /// The version the header claims.
        version: Version,
        /// What is wrong.
        what: &'static str,
    },
    /// Longer than the specification (v1) or [`MAX_HEADER_BYTES`] (v2) allows.
    #[error("PROXY protocol {version:?} header longer than {max} bytes")]
    TooLarge {
        /// The version.
        version: Version,
        /// The bound.
        max: usize,
    },
}

impl ParseError {
    /// The metric label.
    pub fn reason(&self) -> RefuseReason {
        match self {
            ParseError::Missing => RefuseReason::missing,
            ParseError::Malformed { .. } => RefuseReason::malformed,
            ParseError::TooLarge { .. } => RefuseReason::too_large,
        }
    }
}

fn malformed(version: Version, what: &'static str) -> ParseError {
    ParseError::Malformed { version, what }
}

/// Parses the start of a connection's bytes as a PROXY protocol header.
/// Decides as early as it can: bytes that cannot begin a header are refused
/// at once, so a client that sends none is found on its first segment.
pub fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    let Some(&first) = buf.first() else { return Ok(Parsed::Incomplete { total: None }) };
    if first == b'P' {
        return parse_v1(buf);
    }
    if first == V2_SIGNATURE[0] {
        return parse_v2(buf);
    }
    Err(ParseError::Missing)
}

const V1_PREFIX: &[u8] = b"PROXY ";

fn parse_v1(buf: &[u8]) -> Result<Parsed, ParseError> {
    let v = Version::V1;
    let common = buf.len().min(V1_PREFIX.len());
    if buf[..common] != V1_PREFIX[..common] {
        return Err(ParseError::Missing);
    }
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        // Only printable ASCII may come before the CRLF.
        if let Some(&b) = window.iter().find(|&&b| !(0x20..0x7f).contains(&b)) {
            return Err(malformed(
                v,
                if b == b'\n' { "line feed without carriage return" } else { "not printable ASCII" },
            ));
        }
        if window.len() >= V1_MAX_BYTES {
            return Err(ParseError::TooLarge { version: v, max: V1_MAX_BYTES });
        }
        check_v1_protocol_prefix(&window[V1_PREFIX.len().min(window.len())..])?;
        return Ok(Parsed::Incomplete { total: None });
    };
    let line = &window[..cr];
    if line.iter().any(|b| !(0x20..0x7f).contains(b)) {
        return Err(malformed(v, "not printable ASCII"));
    }
    match window.get(cr + 1) {
        None if cr + 1 >= V1_MAX_BYTES => return Err(ParseError::TooLarge { version: v, max: V1_MAX_BYTES }),
        None => return Ok(Parsed::Incomplete { total: None }),
        Some(b'\n') => {}
        Some(_) => return Err(malformed(v, "carriage return not followed by line feed")),
    }
    let len = cr + 2;
    if line.len() < V1_PREFIX.len() {
        return Err(malformed(v, "no protocol"));
    }
    let rest = &line[V1_PREFIX.len()..];
    // The line is printable ASCII, so UTF-8.
    let rest = std::str::from_utf8(rest).map_err(|_| malformed(v, "not printable ASCII"))?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        // The receiver must ignore whatever follows UNKNOWN.
        return Ok(Parsed::Complete { header: Header { version: v, addresses: None }, len });
    }
    let mut fields = rest.split(' ');
    let proto = fields.next().unwrap_or_default();
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(malformed(v, "protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(v, "expected exactly: protocol, source, destination, source port, destination port"));
    };
    let src = v1_address(src, v6)?;
    let dst = v1_address(dst, v6)?;
    let sport = v1_port(sport)?;
    let dport = v1_port(dport)?;
    let addresses = Addresses { source: SocketAddr::new(src, sport), destination: SocketAddr::new(dst, dport) };
    Ok(Parsed::Complete { header: Header { version: v, addresses: Some(addresses) }, len })
}

/// Refuses early a line whose protocol cannot be one of the three.
fn check_v1_protocol_prefix(proto: &[u8]) -> Result<(), ParseError> {
    let ok = [&b"TCP4 "[..], b"TCP6 ", b"UNKNOWN"].iter().any(|p| {
        let n = proto.len().min(p.len());
        proto[..n] == p[..n]
    });
    if ok { Ok(()) } else { Err(malformed(Version::V1, "protocol is not TCP4, TCP6 or UNKNOWN")) }
}

fn v1_address(s: &str, v6: bool) -> Result<IpAddr, ParseError> {
    let v = Version::V1;
    if v6 {
        // Not an IPv4 form in a TCP6 line: `s.parse::<Ipv6Addr>` already
        // refuses dotted quads without colons.
        s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| malformed(v, "address is not an IPv6 address"))
    } else {
        // std refuses leading zeros ("192.0.02.1"), as the specification's
        // dotted-quad form does not have them.
        s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| malformed(v, "address is not an IPv4 address"))
    }
}

fn v1_port(s: &str) -> Result<u16, ParseError> {
    let bad = || malformed(Version::V1, "port is not a decimal number from 0 to 65535");
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(bad());
    }
    s.parse::<u16>().map_err(|_| bad())
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ParseError> {
    let v = Version::V2;
    let common = buf.len().min(V2_SIGNATURE.len());
    if buf[..common] != V2_SIGNATURE[..common] {
        return Err(ParseError::Missing);
    }
    if buf.len() < V2_FIXED {
        // Check what has arrived of the version and family bytes.
        if let Some(&b) = buf.get(12) {
            check_v2_version_command(b)?;
        }
        if let Some(&b) = buf.get(13) {
            check_v2_family(b)?;
        }
        return Ok(Parsed::Incomplete { total: None });
    }
    let command = check_v2_version_command(buf[12])?;
    let family = check_v2_family(buf[13])?;
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_FIXED + len;
    if total > MAX_HEADER_BYTES {
        return Err(ParseError::TooLarge { version: v, max: MAX_HEADER_BYTES });
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete { total: Some(total) });
    }
    let block = &buf[V2_FIXED..total];
    let addresses = match (command, family) {
        // LOCAL: the proxy's own connection (a health check); the address
        // block, whatever its family, is ignored.
        (Command::Local, _) => None,
        (Command::Proxy, Family::Inet) => {
            let Some(b) = block.get(..12) else { return Err(malformed(v, "INET address block shorter than 12 bytes")) };
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some(Addresses { source: SocketAddr::new(ip(0), port(8)), destination: SocketAddr::new(ip(4), port(10)) })
        }
        (Command::Proxy, Family::Inet6) => {
            let Some(b) = block.get(..36) else {
                return Err(malformed(v, "INET6 address block shorter than 36 bytes"));
            };
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some(Addresses { source: SocketAddr::new(ip(0), port(32)), destination: SocketAddr::new(ip(16), port(34)) })
        }
        (Command::Proxy, Family::Unix) => {
            if block.len() < 216 {
                return Err(malformed(v, "UNIX address block shorter than 216 bytes"));
            }
            // A Unix socket path is no client address: the socket's own
            // addresses apply, as for UNSPEC.
            None
        }
        (Command::Proxy, Family::Unspec) => None,
    };
    Ok(Parsed::Complete { header: Header { version: v, addresses }, len: total })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Local,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

fn check_v2_version_command(b: u8) -> Result<Command, ParseError> {
    if b >> 4 != 2 {
        return Err(malformed(Version::V2, "version is not 2"));
    }
    match b & 0x0F {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(malformed(Version::V2, "command is neither LOCAL nor PROXY")),
    }
}

fn check_v2_family(b: u8) -> Result<Family, ParseError> {
    // Transport: UNSPEC, STREAM or DGRAM; only the address family matters here.
    if b & 0x0F > 2 {
        return Err(malformed(Version::V2, "transport is not UNSPEC, STREAM or DGRAM"));
    }
    match b >> 4 {
        0 => Ok(Family::Unspec),
        1 => Ok(Family::Inet),
        2 => Ok(Family::Inet6),
        3 => Ok(Family::Unix),
        _ => Err(malformed(Version::V2, "address family is not UNSPEC, INET, INET6 or UNIX")),
    }
}

/// Both addresses in one family: IPv4-mapped IPv6 addresses (a dual-stack
/// listener's view of an IPv4 client) become IPv4; if the two still differ,
/// the IPv4 one is written as IPv4-mapped IPv6.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (canon(source), canon(destination));
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() { (s, d) } else { (v6(s), v6(d)) }
}

/// The v1 header for a TCP connection from `source` to `destination`
/// (`PROXY TCP4 ...` or `PROXY TCP6 ...`; nginx's `proxy_protocol on` sends
/// this form).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(source, destination);
    let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes()
}

/// The v2 header for a TCP connection from `source` to `destination`:
/// command PROXY, transport STREAM, INET or INET6, no TLVs.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(source, destination);
    let mut out = Vec::with_capacity(V2_FIXED + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (s.ip(), d.ip()) {
        (IpAddr::V4(si), IpAddr::V4(di)) => {
            out.push(0x11); // INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&si.octets());
            out.extend_from_slice(&di.octets());
        }
        (si, di) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21); // INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(si).octets());
            out.extend_from_slice(&v6(di).octets());
        }
    }
    out.extend_from_slice(&s.port().to_be_bytes());
    out.extend_from_slice(&d.port().to_be_bytes());
    out
}

/// Why a connection that must start with a header was refused; the label
/// of `shardgate_proxy_protocol_refused_total{listener, reason}`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RefuseReason {
    /// The first bytes were not a PROXY header (the client, or a load
    /// balancer without PROXY protocol enabled, spoke first).
    missing,
    /// A header that breaks the specification.
    malformed,
    /// Longer than the specification or [`MAX_HEADER_BYTES`] allows.
    too_large,
    /// The peer closed (or reset) before a whole header arrived.
    truncated,
    /// No whole header within the handshake timeout.
    timeout,
}

impl RefuseReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::missing => "missing",
            RefuseReason::malformed => "malformed",
            RefuseReason::too_large => "too_large",
            RefuseReason::truncated => "truncated",
            RefuseReason::timeout => "timeout",
        }
    }
}

/// `{listener, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RefusedLabels {
    /// The listener, e.g. `tls/0.0.0.0:8888` or `http/0.0.0.0:8080`.
    pub listener: String,
    /// Why.
    pub reason: RefuseReason,
}

/// Why [`read_header`] gave no header.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not an acceptable header.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The peer closed before a whole header arrived.
    #[error("the peer closed after {0} bytes, before a whole PROXY protocol header")]
    Truncated(usize),
    /// A socket error (a reset counts as truncated).
    #[error("reading the PROXY protocol header: {0}")]
    Io(io::Error),
}

impl ReadError {
    /// The metric label.
    pub fn reason(&self) -> RefuseReason {
        match self {
            ReadError::Parse(e) => e.reason(),
            ReadError::Truncated(_) | ReadError::Io(_) => RefuseReason::truncated,
        }
    }
}

/// Peeks at what has arrived, without consuming it. `WouldBlock` when
/// nothing is there, or when nothing arrived since `seen` bytes were
/// looked at: either way tokio then clears the socket's readiness, so the
/// next wait lasts until new bytes arrive instead of spinning.
fn peek_new(sock: &TcpStream, buf: &mut [u8], seen: usize) -> io::Result<usize> {
    let (n, _) = rustix::net::recv(sock, buf, rustix::net::RecvFlags::PEEK).map_err(io::Error::from)?;
    if n > 0 && n == seen {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// Reads one PROXY protocol header from `sock` and nothing after it. Never
/// returns without consuming exactly the header, or failing. Not bounded in
/// time: the caller wraps it in a timeout.
pub async fn read_header(sock: &mut TcpStream) -> Result<Header, ReadError> {
    let mut buf = [0u8; PEEK_BYTES];
    let mut seen = 0;
    loop {
        let ready = sock.ready(Interest::READABLE).await.map_err(ReadError::Io)?;
        let n = match sock.try_io(Interest::READABLE, || peek_new(sock, &mut buf, seen)) {
            Ok(0) => return Err(ReadError::Truncated(0)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if ready.is_read_closed() {
                    // The peer's FIN is in and nothing new came before it.
                    return Err(ReadError::Truncated(seen));
                }
                continue;
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        seen = n;
        match parse(&buf[..n])? {
            Parsed::Complete { header, len } => {
                // Exactly the header: what follows stays in the socket.
                sock.read_exact(&mut buf[..len]).await.map_err(ReadError::Io)?;
                return Ok(header);
            }
            Parsed::Incomplete { total: Some(total) } if total > buf.len() => {
                // A v2 header with TLVs longer than the peek: read exactly
                // its announced length (at most MAX_HEADER_BYTES).
                let mut whole = vec![0u8; total];
                match sock.read_exact(&mut whole).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ReadError::Truncated(n)),
                    Err(e) => return Err(ReadError::Io(e)),
                }
                return match parse(&whole)? {
                    Parsed::Complete { header, .. } => Ok(header),
                    // Cannot happen: `total` bytes are a whole v2 header.
                    Parsed::Incomplete { .. } => Err(ReadError::Truncated(total)),
                };
            }
            Parsed::Incomplete { .. } if ready.is_read_closed() => {
                // Everything the peer sent before its FIN was peeked.
                return Err(ReadError::Truncated(n));
            }
            Parsed::Incomplete { .. } => {}
        }
    }
}

/// One listener's rate limit on `warn` lines about refused headers: a load
/// balancer that stops sending headers (or a scanner) would otherwise log a
/// line per connection; the refusals in between are logged at `debug` and
/// all of them are counted in `shardgate_proxy_protocol_refused_total`.
#[derive(Debug, Default)]
pub struct RefusalLog(LogThrottle);

impl RefusalLog {
    /// Logs one refusal: a `warn` if none was logged on this listener for
    /// [`shardgate_core::throttle::REFUSAL_WARN_INTERVAL`], else a `debug`.
    fn report(&self, listener: &str, peer: SocketAddr, reason: RefuseReason, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.0.due() {
            tracing::warn!(
                listener,
                %peer,
                reason = reason.as_str(),
                error = %error,
                refused_since_last_warning = suppressed,
                "connection closed: the listener requires a PROXY protocol header (is the load balancer in front sending one?); further refusals within a minute are logged at debug"
            );
        } else {
            tracing::debug!(listener, %peer, reason = reason.as_str(), error = %error, "connection closed: no valid PROXY protocol header");
        }
    }
}

/// Reads the header a listener requires, by `deadline`. Returns the
/// client's address: the one the header carries, or `peer` (the socket's)
/// when it carries none (v1 `UNKNOWN`, v2 `LOCAL`). `None` when the
/// connection must be closed: counted in `refused` under `listener` and
/// logged through `log`.
pub async fn accept_header(
    sock: &mut TcpStream,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    listener: &str,
    refused: &MetricFamily<RefusedLabels, Counter>,
    log: &RefusalLog,
) -> Option<SocketAddr> {
    // Boxed: the peek buffer is not kept in every connection's future.
    let error = match tokio::time::timeout_at(deadline, Box::pin(read_header(sock))).await {
        Ok(Ok(header)) => return Some(header.addresses.map_or(peer, |a| a.source)),
        Ok(Err(e)) => (e.reason(), e.to_string()),
        Err(_) => (RefuseReason::timeout, "no whole PROXY protocol header within the handshake timeout".to_owned()),
    };
    let (reason, message) = error;
    refused.get_or_create(&RefusedLabels { listener: listener.to_owned(), reason }).inc();
    log.report(listener, peer, reason, &message);
    None
}

#[cfg(test)]
mod tests;
