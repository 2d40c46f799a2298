//! TLS client fingerprints from the ClientHello, computed once per
//! connection: JA3 (salesforce/ja3's README: the MD5 of
//! `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`,
//! decimal values joined by `-`, GREASE values left out) and JA4 (FoxIO's
//! `technical_details/JA4.md`: `t13d1516h2_8daaf6152771_e5627efa2ab1`).
//! AWS WAF matches them as `FieldToMatch.JA3Fingerprint`/`JA4Fingerprint`
//! and aggregates rate-based rules by them.
//!
//! The parser is pure and bounded: it reads the TLS records a listener has
//! already buffered (under its own byte cap), never panics on any input
//! (fuzzed: `fuzz/fuzz_targets/client_hello.rs`) and answers `None` for
//! anything that is not a whole ClientHello. TLS only: QUIC and DTLS
//! ClientHellos (JA4's `q` and `d`) do not reach it.
//!
//! The same reader and parser give a stream listener what it routes a TLS
//! passthrough connection by ([`parse_client_hello`]: the server name, the
//! ALPN protocols, the version; see `hello`), so there is one ClientHello
//! parser in shardgate besides rustls's, which terminates.

mod digest;
mod hello;

use std::fmt::Write as _;

use digest::{md5, sha256};
pub use hello::{ClientHelloInfo, HelloParse, parse_client_hello};

/// A connection's fingerprints, as ASCII: JA3 in lower-case hex; JA4 in
/// lower-case letters and hex digits, except its two ALPN characters, which
/// keep the case the client sent (JA4 takes them as they are). `Copy` and
/// allocation-free, so every request of a connection carries them cheaply.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsFingerprint {
    ja3: [u8; 32],
    ja4: [u8; 36],
}

impl std::fmt::Debug for TlsFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFingerprint").field("ja3", &self.ja3()).field("ja4", &self.ja4()).finish()
    }
}

impl TlsFingerprint {
    /// The fingerprints of the ClientHello at the start of `records` (TLS
    /// records as read from the socket, a ClientHello possibly split over
    /// several), or `None` when there is no whole, well-formed one.
    pub fn from_records(records: &[u8]) -> Option<TlsFingerprint> {
        let body = handshake_body(records).ok()?;
        let hello = ClientHello::parse(&body)?;
        Some(TlsFingerprint { ja3: hello.ja3(), ja4: hello.ja4() })
    }

    /// JA3: 32 hex digits.
    pub fn ja3(&self) -> &str {
        std::str::from_utf8(&self.ja3).unwrap_or_default()
    }

    /// JA4: `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    pub fn ja4(&self) -> &str {
        std::str::from_utf8(&self.ja4).unwrap_or_default()
    }
}

/// TLS record content type of handshake messages (RFC 8446 section 5.1).
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello (RFC 8446 section 4).
const CLIENT_HELLO: u8 = 1;
/// Largest TLS record payload (RFC 8446 section 5.1: 2^14).
const MAX_RECORD: usize = 1 << 14;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// GREASE values (RFC 8701): `0x?a?a` with both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// A cursor over bytes that answers `None` instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Big-endian 16-bit values of a list.
fn u16s(list: &[u8]) -> impl Iterator<Item = u16> + '_ {
    list.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// The parts of a ClientHello the fingerprints read (RFC 8446 section 4.1.2).
struct ClientHello<'a> {
    legacy_version: u16,
    /// Cipher suites, 2 bytes each.
    ciphers: &'a [u8],
    /// Extensions in the order sent: (type, data).
    extensions: Vec<(u16, &'a [u8])>,
}

/// Why the records read so far hold no ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    /// A prefix of a well-formed ClientHello: more bytes are needed.
    Incomplete,
    /// Not a ClientHello, or a malformed one: no byte that follows can
    /// make it one.
    Invalid,
}

/// The payload of the record at the start of `r`, consumed: `Incomplete`
/// until the whole record is in, `Invalid` when it is not a handshake
/// record or its length is 0 or above 2^14 (RFC 8446 section 5.1 forbids
/// both for handshake records).
fn next_record<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Short> {
    match r.0.first() {
        None => return Err(Short::Incomplete),
        Some(&kind) if kind != HANDSHAKE => return Err(Short::Invalid),
        Some(_) => {}
    }
    let Some(header) = r.0.get(..5) else { return Err(Short::Incomplete) };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len == 0 || len > MAX_RECORD {
        return Err(Short::Invalid);
    }
    if r.0.len() < 5 + len {
        return Err(Short::Incomplete);
    }
    r.take(5).ok_or(Short::Incomplete)?;
    r.take(len).ok_or(Short::Incomplete)
}

/// The ClientHello handshake message's body from the records at the start
/// of `records`: borrowed when one record holds it, joined (bounded by the
/// input) when it is split over several, its 4-byte header included.
/// Bytes after the message (another record, early data) are not read, so
/// the answer for a prefix that holds the whole message is the answer for
/// any longer input.
fn handshake_body(records: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Short> {
    let mut r = Reader(records);
    let first = next_record(&mut r)?;
    if first[0] != CLIENT_HELLO {
        return Err(Short::Invalid);
    }
    if let Some(len) = message_len(first)
        && let Some(body) = first.get(4..4 + len)
    {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut joined = first.to_vec();
    loop {
        if let Some(len) = message_len(&joined)
            && joined.len() >= 4 + len
        {
            joined.truncate(4 + len);
            joined.drain(..4);
            return Ok(std::borrow::Cow::Owned(joined));
        }
        // Each record holds at least one byte: the loop ends with the input.
        joined.extend_from_slice(next_record(&mut r)?);
    }
}

/// The body length a handshake message's 4-byte header announces, once the
/// header is in.
fn message_len(message: &[u8]) -> Option<usize> {
    Reader(message.get(1..4)?).u24()
}

impl<'a> ClientHello<'a> {
    fn parse(body: &'a [u8]) -> Option<ClientHello<'a>> {
        let mut r = Reader(body);
        let legacy_version = r.u16()?;
        r.take(32)?; // random
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return None;
        }
        let ciphers = r.vec16()?;
        if ciphers.len() % 2 != 0 {
            return None;
        }
        r.vec8()?; // legacy compression methods
        let mut extensions = Vec::new();
        if !r.0.is_empty() {
            let mut e = Reader(r.vec16()?);
            while !e.0.is_empty() {
                let kind = e.u16()?;
                let data = e.vec16()?;
                extensions.push((kind, data));
            }
        }
        Some(ClientHello { legacy_version, ciphers, extensions })
    }

    fn extension(&self, kind: u16) -> Option<&'a [u8]> {
        self.extensions.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d)
    }

    /// A list extension's values: `vec16` of u16 (groups, signature
    /// algorithms), empty when absent or malformed.
    fn list16(&self, kind: u16) -> Vec<u16> {
        let Some(data) = self.extension(kind) else { return Vec::new() };
        match Reader(data).vec16() {
            Some(list) => u16s(list).filter(|v| !is_grease(*v)).collect(),
            None => Vec::new(),
        }
    }

    fn ja3(&self) -> [u8; 32] {
        let mut s = String::with_capacity(64 + self.ciphers.len() * 3 + self.extensions.len() * 6);
        let join = |s: &mut String, values: &mut dyn Iterator<Item = u32>| {
            for (i, v) in values.enumerate() {
                if i > 0 {
                    s.push('-');
                }
                push_decimal(s, v);
            }
        };
        push_decimal(&mut s, u32::from(self.legacy_version));
        s.push(',');
        join(&mut s, &mut u16s(self.ciphers).filter(|v| !is_grease(*v)).map(u32::from));
        s.push(',');
        join(&mut s, &mut self.extensions.iter().map(|(k, _)| *k).filter(|v| !is_grease(*v)).map(u32::from));
        s.push(',');
        join(&mut s, &mut self.list16(EXT_SUPPORTED_GROUPS).into_iter().map(u32::from));
        s.push(',');
        let formats = self.extension(EXT_EC_POINT_FORMATS).and_then(|d| Reader(d).vec8()).unwrap_or_default();
        join(&mut s, &mut formats.iter().map(|v| u32::from(*v)));
        let mut out = [0u8; 32];
        digest::hex_into(&md5(s.as_bytes()), &mut out);
        out
    }

    fn ja4(&self) -> [u8; 36] {
        let mut out = [b'0'; 36];
        out[0] = b't';
        // The highest supported_versions value, else the legacy version.
        let version = match self.extension(EXT_SUPPORTED_VERSIONS).and_then(|d| Reader(d).vec8()) {
            Some(list) => u16s(list).filter(|v| !is_grease(*v)).max().unwrap_or(self.legacy_version),
            None => self.legacy_version,
        };
        let v: &[u8; 2] = match version {
            0x0304 => b"13",
            0x0303 => b"12",
            0x0302 => b"11",
            0x0301 => b"10",
            0x0300 => b"s3",
            0x0002 => b"s2",
            0xfeff => b"d1",
            0xfefd => b"d2",
            0xfefc => b"d3",
            _ => b"00",
        };
        out[1..3].copy_from_slice(v);
        out[3] = if self.extension(EXT_SERVER_NAME).is_some() { b'd' } else { b'i' };
        let mut ciphers: Vec<u16> = u16s(self.ciphers).filter(|v| !is_grease(*v)).collect();
        let mut extensions: Vec<u16> = self.extensions.iter().map(|(k, _)| *k).filter(|v| !is_grease(*v)).collect();
        let count = |n: usize| {
            let n = n.min(99) as u8;
            [b'0' + n / 10, b'0' + n % 10]
        };
        out[4..6].copy_from_slice(&count(ciphers.len()));
        out[6..8].copy_from_slice(&count(extensions.len()));
        out[8..10].copy_from_slice(&self.alpn());
        out[10] = b'_';
        out[23] = b'_';
        ciphers.sort_unstable();
        if !ciphers.is_empty() {
            let list = hex_list(&ciphers);
            digest::hex_into(&sha256(list.as_bytes())[..6], &mut out[11..23]);
        }
        // SNI and ALPN are in the first part already.
        extensions.retain(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN);
        extensions.sort_unstable();
        if !extensions.is_empty() {
            let mut list = hex_list(&extensions);
            let algorithms = self.list16(EXT_SIGNATURE_ALGORITHMS);
            if !algorithms.is_empty() {
                list.push('_');
                list.push_str(&hex_list(&algorithms));
            }
            digest::hex_into(&sha256(list.as_bytes())[..6], &mut out[24..36]);
        }
        out
    }

    /// JA4's ALPN part: the first and last characters of the first ALPN
    /// value; the first and last hex digits of it when either is not
    /// alphanumeric; `00` without one.
    fn alpn(&self) -> [u8; 2] {
        let first = self.extension(EXT_ALPN).and_then(|d| {
            let mut list = Reader(Reader(d).vec16()?);
            list.vec8()
        });
        let Some(value) = first.filter(|v| !v.is_empty()) else { return *b"00" };
        let (a, z) = (value[0], value[value.len() - 1]);
        if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
            return [a, z];
        }
        let mut hex = [0u8; 2];
        digest::hex_into(&[a], &mut hex);
        let mut last = [0u8; 2];
        digest::hex_into(&[z], &mut last);
        [hex[0], last[1]]
    }
}

/// Appends `v` in decimal (into the string's own buffer: no allocation
/// beyond its growth).
fn push_decimal(s: &mut String, v: u32) {
    // Writing to a String cannot fail.
    write!(s, "{v}").unwrap_or_default();
}

/// `002f,0035,...`: 4 lower-case hex digits each, comma-separated.
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        // Writing to a String cannot fail.
        write!(s, "{sep}{v:04x}").unwrap_or_default();
    }
    s
}

#[cfg(test)]
mod tests;
