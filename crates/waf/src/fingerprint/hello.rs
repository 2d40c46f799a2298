//! What a stream listener routes a TLS passthrough connection by: the
//! server name (RFC 6066 section 3), the ALPN protocols (RFC 7301) and the
//! highest version a ClientHello offers, read by the same record reader and
//! ClientHello parser as the fingerprints, from the bytes a listener has
//! buffered so far.
//!
//! [`parse_client_hello`] answers one of three things, so a listener can
//! read a ClientHello without knowing TLS: [`HelloParse::Incomplete`] (read
//! more), [`HelloParse::Invalid`] (no byte that follows can make these a
//! ClientHello) or [`HelloParse::Complete`]. The answer depends only on the
//! bytes up to the end of the ClientHello: bytes after it (early data,
//! another record) never change it, and once `Invalid`, always `Invalid`
//! (both checked by `fuzz/fuzz_targets/client_hello.rs`).
//!
//! It is stricter than the fingerprints, which describe whatever a client
//! sent: a ClientHello with two extensions of one type (RFC 8446 section
//! 4.2: "MUST NOT"), a malformed `server_name` or ALPN extension, or two
//! host names is `Invalid` here, so nobody can route on one name while the
//! game server behind reads another. It does not judge what a game server
//! may accept (protocol versions, cipher suites): a ClientHello for TLS 1.0
//! that rustls would refuse to terminate is `Complete`.

use super::{ClientHello, EXT_ALPN, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, Reader, Short, u16s};

/// Longest host name (RFC 1035 section 2.3.4), after the trailing dot.
const MAX_HOST_NAME: usize = 253;
/// The `host_name` name type of a `server_name` entry (RFC 6066 section 3).
const HOST_NAME: u8 = 0;

/// What a whole ClientHello asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The `host_name` of the `server_name` extension, lower-cased (DNS
    /// names are case-insensitive, RFC 4343) with trailing dots removed;
    /// `None` without the extension, or when the name is not a host name a
    /// route can match: empty, longer than 253 bytes, with a byte outside
    /// printable ASCII, or an IP address (RFC 6066 section 3 forbids
    /// literal addresses).
    pub server_name: Option<String>,
    /// The ALPN protocol names in the client's order (RFC 7301 section
    /// 3.1), bytes outside UTF-8 replaced.
    pub alpn: Vec<String>,
    /// The highest version offered: `supported_versions` (RFC 8446 section
    /// 4.2.1, GREASE left out), else the ClientHello's legacy version.
    pub version: u16,
}

/// The answer for the bytes a listener has read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloParse {
    /// A whole, well-formed ClientHello.
    Complete(ClientHelloInfo),
    /// A prefix of one: read more (within the listener's byte cap).
    Incomplete,
    /// Not a ClientHello, or a malformed one.
    Invalid,
}

/// Reads the ClientHello at the start of `records` (TLS records as read
/// from the socket, possibly split over several). Never panics; allocates
/// at most a copy of the input (a ClientHello split over records) and one
/// small vector per extension.
pub fn parse_client_hello(records: &[u8]) -> HelloParse {
    let body = match super::handshake_body(records) {
        Ok(body) => body,
        Err(Short::Incomplete) => return HelloParse::Incomplete,
        Err(Short::Invalid) => return HelloParse::Invalid,
    };
    match ClientHello::parse(&body).and_then(|hello| info(&hello)) {
        Some(info) => HelloParse::Complete(info),
        None => HelloParse::Invalid,
    }
}

/// The routing facts of a parsed ClientHello; `None` when it breaks a rule
/// listed in the module's documentation.
fn info(hello: &ClientHello<'_>) -> Option<ClientHelloInfo> {
    let mut kinds: Vec<u16> = hello.extensions.iter().map(|(k, _)| *k).collect();
    kinds.sort_unstable();
    if kinds.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let server_name = match hello.extension(EXT_SERVER_NAME) {
        None => None,
        Some(data) => host_name(data)?,
    };
    let alpn = match hello.extension(EXT_ALPN) {
        None => Vec::new(),
        Some(data) => protocols(data)?,
    };
    let version = match hello.extension(EXT_SUPPORTED_VERSIONS) {
        None => hello.legacy_version,
        Some(data) => {
            let mut r = Reader(data);
            let list = r.vec8()?;
            if !r.0.is_empty() || list.is_empty() || list.len() % 2 != 0 {
                return None;
            }
            u16s(list).filter(|v| !super::is_grease(*v)).max().unwrap_or(hello.legacy_version)
        }
    };
    Some(ClientHelloInfo { server_name, alpn, version })
}

/// The `server_name` extension's host name: `None` when the extension is
/// malformed, `Some(None)` when it names nothing a route can match.
fn host_name(data: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(data);
    let list = r.vec16()?;
    if !r.0.is_empty() || list.is_empty() {
        return None;
    }
    let mut entries = Reader(list);
    let mut found: Option<&[u8]> = None;
    while !entries.0.is_empty() {
        let kind = entries.u8()?;
        // Every name type defined so far carries a 2-byte length (RFC 6066).
        let name = entries.vec16()?;
        if kind == HOST_NAME {
            if found.is_some() || name.is_empty() {
                return None;
            }
            found = Some(name);
        }
    }
    Some(found.and_then(routable))
}

/// A host name as routes match it, or `None` when it cannot be one.
fn routable(name: &[u8]) -> Option<String> {
    let mut end = name.len();
    while end > 0 && name[end - 1] == b'.' {
        end -= 1;
    }
    let name = &name[..end];
    if name.is_empty() || name.len() > MAX_HOST_NAME || !name.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let name = String::from_utf8(name.to_ascii_lowercase()).ok()?;
    if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') {
        return None;
    }
    Some(name)
}

/// The ALPN extension's protocol names; `None` when malformed (RFC 7301
/// section 3.1: a non-empty list of non-empty names).
fn protocols(data: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(data);
    let list = r.vec16()?;
    if !r.0.is_empty() || list.is_empty() {
        return None;
    }
    let mut names = Reader(list);
    let mut out = Vec::new();
    while !names.0.is_empty() {
        let name = names.vec8()?;
        if name.is_empty() {
            return None;
        }
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{body, record, split};
    use super::*;

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        ext
    }

    fn alpn_ext(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for name in names {
            list.push(name.len() as u8);
            list.extend_from_slice(name);
        }
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        ext
    }

    fn parse(extensions: &[(u16, Vec<u8>)]) -> HelloParse {
        parse_client_hello(&record(&body(&[0x1301], extensions)))
    }

    fn complete(p: HelloParse) -> ClientHelloInfo {
        match p {
            HelloParse::Complete(info) => info,
            other => panic!("expected a whole ClientHello, got {other:?}"),
        }
    }

    #[test]
    fn server_name_alpn_and_version_come_out_of_one_parse() {
        let info = complete(parse(&[
            (EXT_SERVER_NAME, sni_ext(&[(0, b"Room-1.Rooms.Example.COM.")])),
            (EXT_ALPN, alpn_ext(&[b"h2", b"game/1"])),
            (EXT_SUPPORTED_VERSIONS, vec![4, 0x3a, 0x3a, 3, 4]),
        ]));
        assert_eq!(info.server_name.as_deref(), Some("room-1.rooms.example.com"));
        assert_eq!(info.alpn, vec!["h2".to_owned(), "game/1".to_owned()]);
        assert_eq!(info.version, 0x0304, "GREASE is not a version");
        let info = complete(parse(&[]));
        assert_eq!((info.server_name, info.alpn.len(), info.version), (None, 0, 0x0303));
    }

    #[test]
    fn a_name_no_route_can_match_is_no_name_not_an_error() {
        for name in [&b"127.0.0.1"[..], b"[::1]", b"a b.com", b"caf\xc3\xa9.com", b"...", &[b'a'; 254][..]] {
            let info = complete(parse(&[(EXT_SERVER_NAME, sni_ext(&[(0, name)]))]));
            assert_eq!(info.server_name, None, "{name:?}");
        }
        // Other name types are skipped; only host_name names a route.
        let info = complete(parse(&[(EXT_SERVER_NAME, sni_ext(&[(7, b"x"), (0, b"gs-1.com")]))]));
        assert_eq!(info.server_name.as_deref(), Some("gs-1.com"));
        // Characters a DNS name cannot have still route (a template refuses them).
        let info = complete(parse(&[(EXT_SERVER_NAME, sni_ext(&[(0, b"x_y.rooms.test")]))]));
        assert_eq!(info.server_name.as_deref(), Some("x_y.rooms.test"));
    }

    #[test]
    fn ambiguity_is_invalid() {
        let two_names = sni_ext(&[(0, b"a.com"), (0, b"b.com")]);
        assert_eq!(parse(&[(EXT_SERVER_NAME, two_names)]), HelloParse::Invalid);
        let one = sni_ext(&[(0, b"a.com")]);
        assert_eq!(parse(&[(EXT_SERVER_NAME, one.clone()), (EXT_SERVER_NAME, one.clone())]), HelloParse::Invalid);
        assert_eq!(parse(&[(0x0017, Vec::new()), (0x0017, Vec::new())]), HelloParse::Invalid, "any repeated type");
        assert_eq!(parse(&[(EXT_SERVER_NAME, sni_ext(&[(0, b"")]))]), HelloParse::Invalid);
        assert_eq!(parse(&[(EXT_SERVER_NAME, vec![0, 0])]), HelloParse::Invalid, "an empty list");
        let mut trailing = one;
        trailing.push(0);
        assert_eq!(parse(&[(EXT_SERVER_NAME, trailing)]), HelloParse::Invalid);
        assert_eq!(parse(&[(EXT_ALPN, alpn_ext(&[b"h2", b""]))]), HelloParse::Invalid);
        assert_eq!(parse(&[(EXT_SUPPORTED_VERSIONS, vec![3, 3, 4, 3])]), HelloParse::Invalid);
    }

    #[test]
    fn prefixes_are_incomplete_until_the_last_byte_and_bytes_after_change_nothing() {
        let hello = body(&[0x1301, 0x1302], &[(EXT_SERVER_NAME, sni_ext(&[(0, b"gs-1.com")]))]);
        for records in [record(&hello), split(&hello, 7), split(&hello, 1)] {
            let whole = complete(parse_client_hello(&records));
            for cut in 0..records.len() {
                assert_eq!(parse_client_hello(&records[..cut]), HelloParse::Incomplete, "cut at {cut}");
            }
            let mut more = records.clone();
            more.extend_from_slice(&[23, 3, 3, 0, 1, 0xff]);
            assert_eq!(complete(parse_client_hello(&more)), whole, "early data after the ClientHello");
        }
    }

    #[test]
    fn not_tls_is_invalid_at_the_first_byte() {
        assert_eq!(parse_client_hello(b"G"), HelloParse::Invalid);
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), HelloParse::Invalid);
        assert_eq!(parse_client_hello(&[22, 3, 1, 0, 0]), HelloParse::Invalid, "an empty record");
        assert_eq!(parse_client_hello(&[22, 3, 1, 0x40, 1]), HelloParse::Invalid, "a record above 2^14");
        assert_eq!(parse_client_hello(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), HelloParse::Invalid, "a ServerHello");
        assert_eq!(parse_client_hello(&[22, 3, 1]), HelloParse::Incomplete);
        // A ClientHello that rustls would not terminate (TLS 1.0, no
        // supported_versions) is still whole.
        let mut old = body(&[0x002f], &[(EXT_SERVER_NAME, sni_ext(&[(0, b"legacy.game")]))]);
        old[..2].copy_from_slice(&[3, 1]);
        let info = complete(parse_client_hello(&record(&old)));
        assert_eq!((info.version, info.server_name.as_deref()), (0x0301, Some("legacy.game")));
    }
}
