//! The edge's access log: one line per viewer request, written when the
//! response's last byte has been handed to the connection (or when the
//! viewer leaves), with the target `shardgate::access` at `info`, as the
//! stream gateway logs its sessions. `log.level: info,shardgate::access=off`
//! silences both (the edge still gathers each line's fields, a buffer per
//! request); `edge.access_log.enabled: false` turns the edge's off without
//! any per-request work.
//!
//! Fields carry the names and meanings of CloudFront's standard log (the
//! W3C extended format of its legacy standard logging, in the order of its
//! `#Fields` line, as documented in the Amazon CloudFront Developer Guide,
//! "Standard log file fields"), then shardgate's own: `distribution-id`
//! (the side that served, staging's id for staging), `primary-distribution-id`
//! and `cache-behavior-path-pattern` (names from CloudFront's newer log
//! fields), `x-shardgate-variant`, `x-shardgate-waf-action` and
//! `x-shardgate-waf-rule`. Two formats:
//!
//! - `fields`: each field is a field of the log event, so `log.format: json`
//!   writes one JSON object per request (`"sc-status": 200`, ...); a field
//!   with no value is left out.
//! - `tsv`: the event's message is CloudFront's tab-separated line (`-` for
//!   no value, all 33 columns, ours after them); the `#Version` and
//!   `#Fields` lines are logged once when the edge starts.
//!
//! Values from the network (URI, query, `Host`, `User-Agent`, `Referer`,
//! `X-Forwarded-For`, the response's `Content-Type`) are URL-encoded as
//! CloudFront writes them (bytes 0-32 and 127-255 and `<>"#%{}|\^~[]`'` as
//! `%XX`), so no value can hold a tab, a line break or a quote, and are cut
//! to a bound. Cookies and `Authorization` are never logged (`cs(Cookie)` is
//! always `-`, as when CloudFront's cookie logging is off).
//!
//! How shardgate fills what CloudFront measures on its own servers:
//!
//! - `cs(Host)` is the host that chose the distribution (lower case, no
//!   port) and `x-host-header` the `Host` header as sent or, without one,
//!   the target's authority (HTTP/2 `:authority`) as `host[:port]`. Both
//!   are read through the
//!   authority's host and port, never its text: user information
//!   (`user:password@`, refused with a 400) is never logged.
//! - `x-edge-location` is the instance (`edge.access_log.edge_location`,
//!   default the host name).
//! - `cs-bytes` is the request head in HTTP/1.1 form: the request line with
//!   the target as sent (absolute-form included; for HTTP/2, path and
//!   query), each header field as `name: value` plus CRLF (an HTTP/2
//!   `:authority` as a `host` field when there is no `Host`), and the blank
//!   line. The edge reads no request body. HTTP/2's compressed head and
//!   frames are not what is counted.
//! - `sc-bytes` is the status line and the header fields of the response
//!   the edge built, in the same HTTP/1.1 form, plus the body bytes handed
//!   to the connection. It leaves out what hyper adds as it writes the
//!   head (`date`, and `content-length` or `transfer-encoding`), HTTP/1.1's
//!   chunk framing, and HTTP/2's compression and frames: it is close to,
//!   not exactly, the bytes on the wire.
//! - `time-to-first-byte` ends when the response head is ready;
//!   `sc-status` is `000` (`0` in `fields`) when the viewer left before it.
//!
//! `x-edge-result-type` is what `X-Cache` says (`Hit`, `RefreshHit`, `Miss`,
//! `StaleHit`), `Error` for an error answer (4xx/5xx, a web ACL's Block)
//! or a response cut short, `CapacityExceeded` when this host ran out of
//! descriptors or ports for the origin; `x-edge-detailed-result-type` names
//! the error (`InvalidRequestBlocked` for a Block, `OriginConnectError`,
//! `ClientCommError`, ...); a response whose origin body failed part way is
//! `AbortedOrigin`, or `OriginReadError` when the origin of a body passed
//! through stalled past its read timeout.
//!
//! Only requests that reach the edge's pipeline are logged. A request hyper
//! refuses on its own gets no line: a malformed request line or header, a
//! head over the listener's size bound, one not complete within the header
//! read timeout, or an HTTP/2 stream reset for a protocol error; hyper
//! answers it (400, 431) or closes the connection itself.
//!
//! With `log.format: text` the `tsv` line is the message of a text log
//! line, after the formatter's timestamp, level and target
//! (`... INFO shardgate::access: 2026-...`): strip through
//! `shardgate::access: ` before handing it to a CloudFront log parser.
//! With `log.format: json` it is the `message` field.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use tracing::field::display as shown;

use crate::body::{BoxError, EdgeBody};
use crate::service::{ConnInfo, request_host, splitmix64, without_userinfo};

/// Longest `cs-uri-stem` logged, after encoding (CloudFront refuses URLs
/// over 8,192 bytes; a log line needs less).
const MAX_URI_STEM: usize = 2048;
/// Longest `cs-uri-query` logged, after encoding.
const MAX_QUERY: usize = 2048;
/// Longest value logged from a request or response header, after encoding
/// (CloudFront's real-time logs cut header fields at 800 bytes).
const MAX_HEADER_FIELD: usize = 800;
/// Longest host logged (a DNS name is at most 253 characters).
const MAX_HOST: usize = 256;
/// Longest method logged.
const MAX_METHOD: usize = 32;
/// The de facto header naming the proxies a request came through.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The W3C field names of the `tsv` format, in order: CloudFront's 33, then
/// shardgate's own.
pub const FIELDS: [&str; 39] = [
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
    "distribution-id",
    "primary-distribution-id",
    "cache-behavior-path-pattern",
    "x-shardgate-variant",
    "x-shardgate-waf-action",
    "x-shardgate-waf-rule",
];

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// Every field a field of the log event (JSON keys with `log.format: json`).
    Fields,
    /// CloudFront's tab-separated line as the event's message.
    Tsv,
}

/// `edge.access_log`, as the binary read it.
#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    /// Write a line per request.
    pub enabled: bool,
    /// The line's form.
    pub format: AccessLogFormat,
    /// `x-edge-location`: this instance's name (printable ASCII, no spaces).
    pub edge_location: String,
}

/// The access log of an edge service.
#[derive(Debug)]
pub struct AccessLog {
    enabled: bool,
    format: AccessLogFormat,
    location: Arc<str>,
    ids: RequestIds,
}

impl AccessLog {
    /// A log with these settings.
    pub fn new(settings: &AccessLogSettings) -> Self {
        AccessLog {
            enabled: settings.enabled,
            format: settings.format,
            location: Arc::from(settings.edge_location.as_str()),
            ids: RequestIds::new(settings.edge_location.as_bytes()),
        }
    }

    /// A log that writes nothing.
    pub fn disabled() -> Self {
        AccessLog::new(&AccessLogSettings {
            enabled: false,
            format: AccessLogFormat::Fields,
            edge_location: "-".into(),
        })
    }

    /// The request's id as CloudFront Functions' `event.context.requestId`
    /// sees it: the one its access log line carries (`x-edge-request-id`),
    /// or, with the log off, one drawn now and kept in `facts` so the
    /// viewer-request and viewer-response events of a request share it.
    pub(crate) fn request_id(&self, facts: &mut Facts) -> String {
        facts.request_id.get_or_insert_with(|| self.ids.next()).to_string()
    }

    /// Logs the W3C header lines (`tsv` only), once when the edge starts.
    pub fn announce(&self) {
        if self.enabled && self.format == AccessLogFormat::Tsv {
            tracing::info!(target: "shardgate::access", "#Version: 1.0");
            tracing::info!(target: "shardgate::access", "#Fields: {}", FIELDS.join(" "));
        }
    }

    /// Starts the entry of a request as it arrived (before any change to
    /// it); `None` when the log is off. The line is written when the entry
    /// drops: after the response body ([`Entry::respond`]), or at once if
    /// the request is dropped unanswered.
    ///
    /// The log filter is left to the line's own event. Asking it here
    /// (`tracing::enabled!`) would, with the binary's per-layer filtered
    /// log layer, leave that filter's per-thread state set when it says
    /// no, and the thread's next log line, whatever it is, would be
    /// dropped (tokio-rs/tracing#2704).
    pub fn start<B>(&self, req: &Request<B>, conn: &ConnInfo) -> Option<Entry> {
        if !self.enabled {
            return None;
        }
        let id = self.ids.next();
        Some(Entry {
            started: Instant::now(),
            location: Arc::clone(&self.location),
            format: self.format,
            id,
            req: RequestFields::of(req, conn),
            facts: Facts { request_id: Some(id), ..Facts::default() },
            resp: None,
            sent: 0,
            end: BodyEnd::Open,
        })
    }
}

/// What the pipeline decided about a request, filled in as it goes.
#[derive(Debug, Default)]
pub struct Facts {
    /// The distribution that served (staging's id for staging).
    pub distribution: Option<Arc<str>>,
    /// The primary distribution, when its staging side served.
    pub primary: Option<Arc<str>>,
    /// The behavior's path pattern, or `default`.
    pub behavior: Option<Arc<str>>,
    /// `primary` or `staging`, for a distribution with a canary.
    pub variant: Option<&'static str>,
    /// The web ACL's action (`allow`, `block`) and the rule that decided
    /// (`default` for the default action).
    pub waf: Option<(&'static str, Arc<str>)>,
    /// The request's id (`x-edge-request-id`): the log entry's, or one
    /// drawn when a function first asks for it (see [`AccessLog::request_id`]).
    request_id: Option<RequestId>,
}

/// How an error response is classified, carried in its extensions by the
/// code that built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `x-edge-response-result-type`: `Error`, `CapacityExceeded` or
    /// `FunctionGeneratedResponse`.
    pub result: &'static str,
    /// `x-edge-detailed-result-type`.
    pub detail: &'static str,
}

impl ErrorDetail {
    /// An `Error` with this detailed type.
    pub const fn error(detail: &'static str) -> Self {
        ErrorDetail { result: "Error", detail }
    }

    /// A request refused before any distribution or behavior, by the
    /// refusal's reason (see `shardgate_edge_refused_total`).
    pub fn refused(reason: &str) -> Self {
        ErrorDetail::error(match reason {
            "bad_host" | "no_host" | "bad_channel" => "InvalidRequestHeader",
            "method" => "InvalidRequestMethod",
            _ => "InvalidRequest",
        })
    }

    /// A response a viewer-request function generated (not an error:
    /// CloudFront's result type `FunctionGeneratedResponse`).
    pub const FUNCTION_GENERATED: ErrorDetail =
        ErrorDetail { result: "FunctionGeneratedResponse", detail: "FunctionGeneratedResponse" };

    /// A web ACL's Block: access to the resource is blocked.
    pub const BLOCKED: ErrorDetail = ErrorDetail::error("InvalidRequestBlocked");
}

/// The TLS parameters of a viewer connection, for `ssl-protocol` and
/// `ssl-cipher` (OpenSSL's names, as CloudFront logs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSession {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// The cipher suite, e.g. `ECDHE-RSA-AES128-GCM-SHA256`, `TLS_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
}

impl TlsSession {
    /// What the handshake of `conn` negotiated.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        let protocol = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(other) => other.as_str().unwrap_or("-"),
            None => "-",
        };
        let cipher = conn.negotiated_cipher_suite().map_or("-", |s| openssl_name(s.suite()));
        TlsSession { protocol, cipher }
    }
}

/// OpenSSL's name of a cipher suite rustls offers (RFC 8446 §B.4 and
/// RFC 5289 / RFC 7905 code points); rustls's own name for any other.
fn openssl_name(suite: rustls::CipherSuite) -> &'static str {
    match u16::from(suite) {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "ECDHE-ECDSA-AES128-GCM-SHA256",
        0xc02c => "ECDHE-ECDSA-AES256-GCM-SHA384",
        0xcca9 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        0xc02f => "ECDHE-RSA-AES128-GCM-SHA256",
        0xc030 => "ECDHE-RSA-AES256-GCM-SHA384",
        0xcca8 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => suite.as_str().unwrap_or("-"),
    }
}

/// Unique request ids: a per-process random part and a counter mixed by a
/// bijection, so ids never repeat within a process and differ across
/// instances. Not secret.
#[derive(Debug)]
struct RequestIds {
    seed: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new(instance: &[u8]) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let mut seed = splitmix64(nanos ^ (u64::from(std::process::id()) << 32));
        for chunk in instance.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            seed = splitmix64(seed ^ u64::from_le_bytes(word));
        }
        RequestIds { seed, next: AtomicU64::new(0) }
    }

    fn next(&self) -> RequestId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        RequestId { seed: self.seed, mixed: splitmix64(self.seed ^ n) }
    }
}

/// One request's id, written as 32 hex digits when the line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestId {
    seed: u64,
    mixed: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.seed, self.mixed)
    }
}

/// A byte CloudFront writes as itself in a log field; any other is `%XX`.
fn plain(b: u8) -> bool {
    const SPECIAL: &[u8] = b"<>\"#%{}|\\^~[]`'";
    b > b' ' && b < 0x7f && !SPECIAL.contains(&b)
}

/// A value URL-encoded as CloudFront encodes log fields, stopping before
/// `max` bytes of output (an escape is never split); ASCII letters in lower
/// case with `lower`. Encoded as it is written, into the line itself.
#[derive(Debug, Clone, Copy)]
struct Encoded<'a> {
    bytes: &'a [u8],
    max: usize,
    lower: bool,
}

impl<'a> Encoded<'a> {
    /// `bytes` encoded and bounded; `None` when empty (logged as `-`).
    fn of(bytes: &'a [u8], max: usize) -> Option<Self> {
        (!bytes.is_empty()).then_some(Encoded { bytes, max, lower: false })
    }
}

impl fmt::Display for Encoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut room = self.max;
        let mut rest = self.bytes;
        while let Some(&b) = rest.first() {
            if plain(b) {
                let run = rest.iter().take_while(|&&b| plain(b)).count().min(room);
                if run == 0 {
                    break;
                }
                // Plain bytes are ASCII, so always one `str`.
                let text = std::str::from_utf8(&rest[..run]).map_err(|_| fmt::Error)?;
                if self.lower {
                    text.chars().try_for_each(|c| f.write_char(c.to_ascii_lowercase()))?;
                } else {
                    f.write_str(text)?;
                }
                room -= run;
                rest = &rest[run..];
            } else {
                if room < 3 {
                    break;
                }
                f.write_char('%')?;
                f.write_char(char::from(HEX[usize::from(b >> 4)]))?;
                f.write_char(char::from(HEX[usize::from(b & 0xf)]))?;
                room -= 3;
                rest = &rest[1..];
            }
        }
        Ok(())
    }
}

/// `name: value\r\n` for every header: the size of a head in HTTP/1.1 form.
fn headers_len(headers: &HeaderMap) -> u64 {
    headers.iter().map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64).sum()
}

/// The request values the line holds, by their place in [`RequestFields::raw`].
#[derive(Debug, Clone, Copy)]
enum Raw {
    Method,
    Host,
    HostHeader,
    Stem,
    Query,
    Referer,
    UserAgent,
    ForwardedFor,
}

impl Raw {
    const ALL: [Raw; 8] = [
        Raw::Method,
        Raw::Host,
        Raw::HostHeader,
        Raw::Stem,
        Raw::Query,
        Raw::Referer,
        Raw::UserAgent,
        Raw::ForwardedFor,
    ];

    /// The most bytes of it the line can show: the bound of its encoded
    /// form, since each byte takes at least one byte encoded.
    fn max(self) -> usize {
        match self {
            Raw::Method => MAX_METHOD,
            Raw::Host | Raw::HostHeader => MAX_HOST,
            Raw::Stem => MAX_URI_STEM,
            Raw::Query => MAX_QUERY,
            Raw::Referer | Raw::UserAgent | Raw::ForwardedFor => MAX_HEADER_FIELD,
        }
    }
}

/// What is logged of the request, taken as it arrived.
#[derive(Debug)]
struct RequestFields {
    client: SocketAddr,
    /// The values of [`Raw`] as sent, each cut to what the line can show,
    /// one after another: one small allocation per request, encoded only
    /// when the line is written. A copy rather than clones of the request's
    /// `HeaderValue`s, which share hyper's read buffer and would keep it
    /// alive for as long as the response (a long download) lasts.
    raw: Vec<u8>,
    /// Where each value of [`Raw`] ends in `raw`.
    ends: [u16; Raw::ALL.len()],
    protocol: &'static str,
    version: &'static str,
    tls: Option<TlsSession>,
    head_bytes: u64,
}

// Every value fits in `ends`: the bounds add up to less than 64 KiB.
const _: () = assert!(MAX_METHOD + 2 * MAX_HOST + MAX_URI_STEM + MAX_QUERY + 3 * MAX_HEADER_FIELD < u16::MAX as usize);

impl RequestFields {
    fn of<B>(req: &Request<B>, conn: &ConnInfo) -> Self {
        let headers = req.headers();
        let uri = req.uri();
        let header = |name: &HeaderName| headers.get(name).map_or(&b""[..], |v| v.as_bytes());
        // `Host` as sent, or else `host[:port]` of the authority: never
        // its user information.
        let (host_header, port) = match (headers.get(header::HOST), uri.authority()) {
            (Some(h), _) => (without_userinfo(h.as_bytes()), None),
            (None, Some(a)) => (a.host().as_bytes(), a.port_u16()),
            (None, None) => (&b""[..], None),
        };
        let values: [&[u8]; Raw::ALL.len()] = [
            req.method().as_str().as_bytes(),
            // The name without the port, as the distribution was looked up.
            request_host(uri, headers).unwrap_or_default(),
            host_header,
            uri.path().as_bytes(),
            uri.query().map_or(&b""[..], str::as_bytes),
            header(&header::REFERER),
            header(&header::USER_AGENT),
            header(&X_FORWARDED_FOR),
        ];
        let port_room = if port.is_some() { ":65535".len() } else { 0 };
        let size = Raw::ALL.iter().zip(values).map(|(r, v)| v.len().min(r.max())).sum::<usize>() + port_room;
        let mut raw = Vec::with_capacity(size);
        let mut ends = [0u16; Raw::ALL.len()];
        for ((r, v), end) in Raw::ALL.into_iter().zip(values).zip(&mut ends) {
            let start = raw.len();
            raw.extend_from_slice(&v[..v.len().min(r.max())]);
            if let (Raw::HostHeader, Some(port)) = (r, port) {
                raw.push(b':');
                push_decimal(&mut raw, port);
                raw.truncate(start + r.max());
            }
            *end = u16::try_from(raw.len()).unwrap_or(u16::MAX);
        }

        let method = req.method().as_str();
        let path_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        let target_len = match (req.version(), uri.scheme_str(), uri.authority()) {
            // HTTP/2 and 3 carry scheme and authority as pseudo-headers:
            // the HTTP/1.1 form is origin-form (the authority is counted
            // as a Host line below).
            (Version::HTTP_2 | Version::HTTP_3, ..) => path_len.max(1),
            // Absolute-form (RFC 9112 §3.2.2), as sent.
            (_, Some(scheme), Some(a)) => scheme.len() + "://".len() + a.as_str().len() + path_len,
            // Authority-form (CONNECT).
            (_, None, Some(a)) => a.as_str().len(),
            _ => path_len.max(1),
        };
        let authority_len = match (req.version(), headers.contains_key(header::HOST), uri.authority()) {
            (Version::HTTP_2 | Version::HTTP_3, false, Some(a)) => a.as_str().len() + "host: \r\n".len(),
            _ => 0,
        };
        let version = match req.version() {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_11 => "HTTP/1.1",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "-",
        };
        RequestFields {
            client: conn.client,
            raw,
            ends,
            protocol: if conn.tls_session.is_some() { "https" } else { "http" },
            version,
            tls: conn.tls_session,
            // `GET /x HTTP/1.1\r\n`, the headers, the blank line.
            head_bytes: (method.len() + 1 + target_len + " HTTP/1.1\r\n".len() + authority_len + 2) as u64
                + headers_len(headers),
        }
    }

    /// A value as sent (cut to its bound).
    fn raw(&self, which: Raw) -> &[u8] {
        let i = which as usize;
        let start = if i == 0 { 0 } else { usize::from(self.ends[i - 1]) };
        self.raw.get(start..usize::from(self.ends[i])).unwrap_or_default()
    }

    /// A value encoded for the line; `None` when empty.
    fn field(&self, which: Raw) -> Option<Encoded<'_>> {
        Encoded::of(self.raw(which), which.max())
    }

    /// `cs(Host)`: in lower case, as the distribution was looked up.
    fn host(&self) -> Option<Encoded<'_>> {
        self.field(Raw::Host).map(|e| Encoded { lower: true, ..e })
    }

    /// `cs-method` (`-` if empty).
    fn method(&self) -> Encoded<'_> {
        self.field(Raw::Method).unwrap_or(Encoded { bytes: b"-", max: MAX_METHOD, lower: false })
    }

    /// `cs-uri-stem` (`/` if empty).
    fn stem(&self) -> Encoded<'_> {
        self.field(Raw::Stem).unwrap_or(Encoded { bytes: b"/", max: MAX_URI_STEM, lower: false })
    }
}

/// `n` in decimal, without an allocation.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// What is logged of the response, taken when its head is ready.
#[derive(Debug)]
struct ResponseFields {
    status: u16,
    head_bytes: u64,
    first_byte: Duration,
    content_type: Option<HeaderValue>,
    content_len: Option<u64>,
    range: Option<(u64, u64)>,
    result: &'static str,
    detail: &'static str,
}

/// How the response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEnd {
    /// Not yet (or never: the viewer left first).
    Open,
    /// Every byte handed to the connection.
    Complete,
    /// The origin's body failed while it was streamed.
    OriginFailed,
    /// The origin sent nothing of its body for its read timeout.
    OriginStalled,
}

/// `bytes <first>-<last>/<len>` of a `Content-Range` header.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (first, last) = v.strip_prefix("bytes ")?.split_once('/')?.0.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// The cache outcome `X-Cache` names (`Hit from shardgate` → `Hit`).
fn x_cache(headers: &HeaderMap) -> Option<&'static str> {
    let v = headers.get("x-cache")?.to_str().ok()?;
    ["Hit", "RefreshHit", "Miss", "StaleHit", "Error"].into_iter().find(|t| v.split(' ').next() == Some(*t))
}

/// One request's line, written when it drops.
#[derive(Debug)]
pub struct Entry {
    started: Instant,
    location: Arc<str>,
    format: AccessLogFormat,
    id: RequestId,
    req: RequestFields,
    facts: Facts,
    resp: Option<ResponseFields>,
    sent: u64,
    end: BodyEnd,
}

impl Entry {
    /// The pipeline's decisions, filled in as it makes them.
    pub fn facts(&mut self) -> &mut Facts {
        &mut self.facts
    }

    /// The response head is ready: records it and wraps its body, so the
    /// line is written once the body has ended or the viewer has gone.
    pub fn respond(mut self, resp: Response<EdgeBody>) -> Response<EdgeBody> {
        let headers = resp.headers();
        let status = resp.status();
        let (result, detail) = match resp.extensions().get::<ErrorDetail>() {
            Some(d) => (d.result, d.detail),
            None if status.as_u16() >= 400 => ("Error", "Error"),
            None => match x_cache(headers) {
                Some("Error") => ("Error", "Error"),
                Some(phase) => (phase, phase),
                None => ("Miss", "Miss"),
            },
        };
        let reason = status.canonical_reason().unwrap_or("");
        self.resp = Some(ResponseFields {
            status: status.as_u16(),
            // `HTTP/1.1 200 OK\r\n`, the headers, the blank line.
            head_bytes: ("HTTP/1.1 200 \r\n".len() + reason.len() + 2) as u64 + headers_len(headers),
            first_byte: self.started.elapsed(),
            // A clone shares the value's bytes (an `Arc`), no copy.
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            content_len: headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()),
            range: content_range(headers),
            result,
            detail,
        });
        resp.map(|inner| EdgeBody::Logged(Box::new(LoggedBody { inner, entry: self })))
    }

    fn write(&self) {
        let taken = self.started.elapsed();
        let (status, response_result, detail, head) = match &self.resp {
            Some(r) => (r.status, r.result, r.detail, r.head_bytes),
            None => (0, "Error", "ClientCommError", 0),
        };
        let (result, detail) = match self.end {
            BodyEnd::Complete => (response_result, detail),
            BodyEnd::OriginFailed => ("Error", "AbortedOrigin"),
            BodyEnd::OriginStalled => ("Error", "OriginReadError"),
            BodyEnd::Open => ("Error", "ClientCommError"),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let date = Date(shardgate_cache::date::civil_from_days((now / 86_400) as i64));
        let time = Clock(now % 86_400);
        let seconds = |d: Duration| (d.as_micros() as f64 / 1000.0).round() / 1000.0;
        let req = &self.req;
        let resp = self.resp.as_ref();
        let facts = &self.facts;
        let line = Line {
            date,
            time,
            sc_bytes: head + self.sent,
            status,
            result,
            response_result,
            detail,
            cs_bytes: req.head_bytes,
            time_taken: seconds(taken),
            first_byte: resp.map(|r| seconds(r.first_byte)),
            // Names from the configuration, encoded like values from the
            // network so that no field holds a space or a tab.
            behavior: facts.behavior.as_deref().and_then(|b| Encoded::of(b.as_bytes(), MAX_URI_STEM)),
            waf_rule: facts.waf.as_ref().and_then(|w| Encoded::of(w.1.as_bytes(), MAX_HEADER_FIELD)),
            content_type: resp
                .and_then(|r| r.content_type.as_ref())
                .and_then(|v| Encoded::of(v.as_bytes(), MAX_HEADER_FIELD)),
        };
        match self.format {
            AccessLogFormat::Fields => tracing::info!(
                target: "shardgate::access",
                {
                "date" = %line.date,
                "time" = %line.time,
                "x-edge-location" = %self.location,
                "sc-bytes" = line.sc_bytes,
                "c-ip" = %req.client.ip(),
                "cs-method" = %req.method(),
                "cs(Host)" = req.host().map(shown),
                "cs-uri-stem" = %req.stem(),
                "sc-status" = line.status,
                "cs(Referer)" = req.field(Raw::Referer).map(shown),
                "cs(User-Agent)" = req.field(Raw::UserAgent).map(shown),
                "cs-uri-query" = req.field(Raw::Query).map(shown),
                "x-edge-result-type" = %line.result,
                "x-edge-request-id" = %self.id,
                "x-host-header" = req.field(Raw::HostHeader).map(shown),
                "cs-protocol" = %req.protocol,
                "cs-bytes" = line.cs_bytes,
                "time-taken" = line.time_taken,
                "x-forwarded-for" = req.field(Raw::ForwardedFor).map(shown),
                "ssl-protocol" = req.tls.map(|t| shown(t.protocol)),
                "ssl-cipher" = req.tls.map(|t| shown(t.cipher)),
                "x-edge-response-result-type" = %line.response_result,
                "cs-protocol-version" = %req.version,
                "c-port" = req.client.port(),
                "time-to-first-byte" = line.first_byte,
                "x-edge-detailed-result-type" = %line.detail,
                "sc-content-type" = line.content_type.map(shown),
                "sc-content-len" = resp.and_then(|r| r.content_len),
                "sc-range-start" = resp.and_then(|r| r.range).map(|r| r.0),
                "sc-range-end" = resp.and_then(|r| r.range).map(|r| r.1),
                "distribution-id" = facts.distribution.as_deref().map(shown),
                "primary-distribution-id" = facts.primary.as_deref().map(shown),
                "cache-behavior-path-pattern" = line.behavior.map(shown),
                "x-shardgate-variant" = facts.variant.map(shown),
                "x-shardgate-waf-action" = facts.waf.as_ref().map(|w| shown(w.0)),
                "x-shardgate-waf-rule" = line.waf_rule.map(shown),
                },
                "edge request"
            ),
            // Formatted by the subscriber straight into its own buffer.
            AccessLogFormat::Tsv => tracing::info!(target: "shardgate::access", "{}", Tsv { entry: self, line: &line }),
        }
    }
}

/// A `YYYY-MM-DD` date (UTC).
#[derive(Clone, Copy)]
struct Date((i64, u32, u32));

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.0;
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

/// An `HH:MM:SS` time of day (UTC), from the seconds since midnight.
#[derive(Clone, Copy)]
struct Clock(u64);

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        write!(f, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// The computed values of a line.
struct Line<'a> {
    date: Date,
    time: Clock,
    sc_bytes: u64,
    status: u16,
    result: &'static str,
    response_result: &'static str,
    detail: &'static str,
    cs_bytes: u64,
    time_taken: f64,
    first_byte: Option<f64>,
    behavior: Option<Encoded<'a>>,
    waf_rule: Option<Encoded<'a>>,
    content_type: Option<Encoded<'a>>,
}

/// The tab-separated line, in [`FIELDS`] order, written as it is formatted.
struct Tsv<'a> {
    entry: &'a Entry,
    line: &'a Line<'a>,
}

impl fmt::Display for Tsv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The value then a tab, or `-` then a tab.
        fn opt(f: &mut fmt::Formatter<'_>, v: Option<impl fmt::Display>) -> fmt::Result {
            match v {
                Some(v) => write!(f, "{v}\t"),
                None => f.write_str("-\t"),
            }
        }
        let Tsv { entry, line } = self;
        let req = &entry.req;
        let resp = entry.resp.as_ref();
        let facts = &entry.facts;
        write!(
            f,
            "{}\t{}\t{}\t{}\t{}\t{}\t",
            line.date,
            line.time,
            entry.location,
            line.sc_bytes,
            req.client.ip(),
            req.method()
        )?;
        opt(f, req.host())?;
        // `000` when the viewer left before the response.
        write!(f, "{}\t{:03}\t", req.stem(), line.status)?;
        opt(f, req.field(Raw::Referer))?;
        opt(f, req.field(Raw::UserAgent))?;
        opt(f, req.field(Raw::Query))?;
        // cs(Cookie): never logged.
        write!(f, "-\t{}\t{}\t", line.result, entry.id)?;
        opt(f, req.field(Raw::HostHeader))?;
        write!(f, "{}\t{}\t{:.3}\t", req.protocol, line.cs_bytes, line.time_taken)?;
        opt(f, req.field(Raw::ForwardedFor))?;
        opt(f, req.tls.map(|t| t.protocol))?;
        opt(f, req.tls.map(|t| t.cipher))?;
        // fle-status and fle-encrypted-fields: no field-level encryption.
        write!(f, "{}\t{}\t-\t-\t{}\t", line.response_result, req.version, req.client.port())?;
        match line.first_byte {
            Some(s) => write!(f, "{s:.3}\t")?,
            None => f.write_str("-\t")?,
        }
        write!(f, "{}\t", line.detail)?;
        opt(f, line.content_type)?;
        opt(f, resp.and_then(|r| r.content_len))?;
        opt(f, resp.and_then(|r| r.range).map(|r| r.0))?;
        opt(f, resp.and_then(|r| r.range).map(|r| r.1))?;
        opt(f, facts.distribution.as_deref())?;
        opt(f, facts.primary.as_deref())?;
        opt(f, line.behavior)?;
        opt(f, facts.variant)?;
        opt(f, facts.waf.as_ref().map(|w| w.0))?;
        // The last field, without a tab after it.
        match line.waf_rule {
            Some(rule) => write!(f, "{rule}"),
            None => f.write_str("-"),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.write();
    }
}

/// A response body that counts the bytes handed to the connection and
/// writes the request's line when it is dropped (after its last frame, or
/// when the viewer goes away).
pub struct LoggedBody {
    inner: EdgeBody,
    entry: Entry,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.entry.sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.entry.end =
                    if e.is::<crate::body::OriginStalled>() { BodyEnd::OriginStalled } else { BodyEnd::OriginFailed };
            }
            Poll::Ready(None) => {
                if this.entry.end == BodyEnd::Open {
                    this.entry.end = BodyEnd::Complete;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body the connection never had to poll (empty, HEAD, 304) ended
        // as soon as the head was written.
        if self.entry.end == BodyEnd::Open && self.inner.is_end_stream() {
            self.entry.end = BodyEnd::Complete;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8], max: usize) -> Option<String> {
        Encoded::of(bytes, max).map(|e| e.to_string())
    }

    use std::collections::HashMap;

    #[test]
    fn values_are_encoded_as_cloudfront_writes_them() {
        let ua = b"Mozilla/5.0 (X11; Linux) \"quoted\"\ttab\nline <x>#%{}|\\^~[]`'\x7f\xc3\xa9";
        let out = encoded(ua, 1000).expect("value");
        assert_eq!(Encoded { bytes: b"A.Example%", max: 100, lower: true }.to_string(), "a.example%25");
        assert_eq!(
            out,
            "Mozilla/5.0%20(X11;%20Linux)%20%22quoted%22%09tab%0Aline%20%3Cx%3E%23%25%7B%7D%7C%5C%5E%7E%5B%5D%60%27%7F%C3%A9"
        );
        assert!(out.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(encoded(b"", 10), None);
    }

    #[test]
    fn values_are_cut_at_the_bound_without_splitting_an_escape() {
        let long = vec![b' '; 100];
        let out = encoded(&long, 10).expect("value");
        assert_eq!(out, "%20%20%20", "three escapes fit in 10 bytes, a fourth would not");
        let out = encoded(&[b'a'; 100], 10).expect("value");
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn request_ids_are_unique_and_fixed_width() {
        let ids = RequestIds::new(b"edge-1");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next().to_string();
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
        let other = RequestIds::new(b"edge-2");
        assert_ne!(other.next().to_string()[..16], ids.next().to_string()[..16], "instances differ");
    }

    #[test]
    fn content_range_and_x_cache_are_read() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/1000".parse().expect("value"));
        h.insert("x-cache", "RefreshHit from shardgate".parse().expect("value"));
        assert_eq!(content_range(&h), Some((100, 199)));
        assert_eq!(x_cache(&h), Some("RefreshHit"));
        h.insert(header::CONTENT_RANGE, "bytes */1000".parse().expect("value"));
        assert_eq!(content_range(&h), None);
    }

    /// A subscriber that formats every event's fields into one reused
    /// buffer, as a formatting layer would, and keeps the last one.
    struct Sink(std::sync::Mutex<String>);

    struct Visitor<'a>(&'a mut String);

    impl tracing::field::Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            use std::fmt::Write as _;
            write!(self.0, "{}={:?} ", field.name(), value).expect("write to a String");
        }
    }

    impl tracing::Subscriber for Sink {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut out = self.0.lock().expect("sink");
            out.clear();
            event.record(&mut Visitor(&mut out));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn sample_request() -> (Request<()>, ConnInfo) {
        let req = Request::builder()
            .uri("/assets/ui/atlas-01.png?v=17&lang=en")
            .header(header::HOST, "Assets.Example.com:8443")
            .header(header::USER_AGENT, "GameClient/2.4.1 (Windows NT 10.0; Win64; x64)")
            .header(header::REFERER, "https://play.example.com/lobby")
            .header("x-forwarded-for", "203.0.113.7")
            .header(header::ACCEPT, "*/*")
            .body(())
            .expect("request");
        let client: SocketAddr = "198.51.100.20:50123".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        (req, ConnInfo { client, local, tls: None, tls_session: None })
    }

    fn sample_response() -> Response<EdgeBody> {
        let mut resp = Response::new(EdgeBody::Empty);
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, "image/png".parse().expect("value"));
        h.insert(header::CONTENT_LENGTH, "0".parse().expect("value"));
        h.insert("x-cache", "Hit from shardgate".parse().expect("value"));
        resp
    }

    #[test]
    fn a_tsv_line_holds_every_field_in_order() {
        let sink = Arc::new(Sink(std::sync::Mutex::new(String::new())));
        let (mut req, conn) = sample_request();
        req.headers_mut().insert(header::USER_AGENT, "Tab\tand \"quotes\"".parse().expect("value"));
        tracing::subscriber::with_default(Arc::clone(&sink), || {
            let log = AccessLog::new(&AccessLogSettings {
                enabled: true,
                format: AccessLogFormat::Tsv,
                edge_location: "edge-unit".into(),
            });
            let mut entry = log.start(&req, &conn).expect("enabled");
            entry.facts().distribution = Some(Arc::from("prod"));
            entry.facts().behavior = Some(Arc::from("/assets/*"));
            drop(entry.respond(sample_response()));
        });
        let out = sink.0.lock().expect("sink").clone();
        let row = out.strip_prefix("message=").expect("a message").trim_end();
        let values: Vec<&str> = row.split('\t').collect();
        assert_eq!(values.len(), FIELDS.len(), "{row}");
        let field: HashMap<&str, &str> = FIELDS.iter().copied().zip(values.iter().copied()).collect();
        for (name, want) in [
            ("x-edge-location", "edge-unit"),
            ("sc-bytes", "92"),
            ("c-ip", "198.51.100.20"),
            ("cs-method", "GET"),
            ("cs(Host)", "assets.example.com"),
            ("cs-uri-stem", "/assets/ui/atlas-01.png"),
            ("sc-status", "200"),
            ("cs(Referer)", "https://play.example.com/lobby"),
            ("cs(User-Agent)", "Tab%09and%20%22quotes%22"),
            ("cs-uri-query", "v=17&lang=en"),
            ("cs(Cookie)", "-"),
            ("x-edge-result-type", "Hit"),
            ("x-host-header", "Assets.Example.com:8443"),
            ("cs-protocol", "http"),
            ("x-forwarded-for", "203.0.113.7"),
            ("ssl-protocol", "-"),
            ("cs-protocol-version", "HTTP/1.1"),
            ("c-port", "50123"),
            ("x-edge-detailed-result-type", "Hit"),
            ("sc-content-type", "image/png"),
            ("sc-content-len", "0"),
            ("sc-range-start", "-"),
            ("distribution-id", "prod"),
            ("cache-behavior-path-pattern", "/assets/*"),
            ("x-shardgate-waf-rule", "-"),
        ] {
            assert_eq!(field[name], want, "{name} in {row}");
        }
        let id = field["x-edge-request-id"];
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{row}");
        assert_eq!(field["date"].len(), 10, "{row}");
        assert_eq!(field["time"].len(), 8, "{row}");
    }

    /// `cs-bytes` of a request, logged in the `fields` format.
    fn cs_bytes(req: &Request<()>) -> u64 {
        let sink = Arc::new(Sink(std::sync::Mutex::new(String::new())));
        let (_, conn) = sample_request();
        tracing::subscriber::with_default(Arc::clone(&sink), || {
            let log = AccessLog::new(&AccessLogSettings {
                enabled: true,
                format: AccessLogFormat::Fields,
                edge_location: "edge-unit".into(),
            });
            drop(log.start(req, &conn).expect("enabled"));
        });
        let out = sink.0.lock().expect("sink").clone();
        let value = out.split("cs-bytes=").nth(1).and_then(|v| v.split(' ').next()).expect("cs-bytes");
        value.parse().expect("a number")
    }

    #[test]
    fn cs_bytes_counts_the_target_as_sent() {
        let request = |version: Version, target: &str, host: Option<&str>| {
            let mut b = Request::builder().version(version).uri(target).header(header::USER_AGENT, "game/1");
            if let Some(h) = host {
                b = b.header(header::HOST, h);
            }
            b.body(()).expect("request")
        };
        let origin_form = cs_bytes(&request(Version::HTTP_11, "/a?b=1", Some("h.example")));
        // `GET /a?b=1 HTTP/1.1`, `host: h.example`, `user-agent: game/1`, CRLFs.
        assert_eq!(origin_form, 21 + 17 + 20 + 2);
        let absolute = cs_bytes(&request(Version::HTTP_11, "http://u:p@h.example/a?b=1", Some("h.example")));
        assert_eq!(absolute, origin_form + "http://u:p@h.example".len() as u64, "absolute-form, as sent");
        let h2 = cs_bytes(&request(Version::HTTP_2, "https://h.example/a?b=1", None));
        assert_eq!(h2, origin_form, ":authority as a Host line, origin-form target");
    }

    /// The cost of one logged request (start, respond, the line), by hand:
    /// `SHARDGATE_COST_ITERS=20000 cargo test -p shardgate-http --lib
    /// access_log::tests::cost_of_a_logged_request -- --ignored --nocapture`
    /// (`SHARDGATE_COST_FORMAT=tsv` for one format; run it under `valgrind`
    /// with two iteration counts to count the allocations per request).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_of_a_logged_request() {
        let iters: u32 = std::env::var("SHARDGATE_COST_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
        let only = std::env::var("SHARDGATE_COST_FORMAT").ok();
        let sink = Sink(std::sync::Mutex::new(String::with_capacity(8192)));
        tracing::subscriber::with_default(sink, || {
            for format in [AccessLogFormat::Fields, AccessLogFormat::Tsv] {
                if only.as_ref().is_some_and(|f| !f.eq_ignore_ascii_case(&format!("{format:?}"))) {
                    continue;
                }
                let log =
                    AccessLog::new(&AccessLogSettings { enabled: true, format, edge_location: "edge-bench-1".into() });
                let (req, conn) = sample_request();
                let responses: Vec<_> = (0..iters).map(|_| sample_response()).collect();
                let started = Instant::now();
                for resp in responses {
                    let mut entry = log.start(&req, &conn).expect("enabled");
                    entry.facts().distribution = Some(Arc::from("prod"));
                    drop(entry.respond(resp));
                }
                let per = started.elapsed() / iters;
                println!("{format:?}: {per:?} per request over {iters}");
            }
        });
    }

    #[test]
    fn the_field_list_is_cloudfronts_then_ours() {
        assert_eq!(
            FIELDS[..33].join(" "),
            "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end"
        );
    }
}
