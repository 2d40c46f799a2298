//! Compression at the edge, in CloudFront's model: which content codings a
//! viewer's `Accept-Encoding` accepts and how that header is normalised for
//! the cache key and the origin, which responses the edge compresses, the
//! gzip and brotli encoders, and the headers of a compressed variant.
//! Pure: no I/O, no cache; the pipeline decides when to call it
//! (`pipeline::compress`).
//!
//! Sources: CloudFront Developer Guide, "Serve compressed files" (the
//! conditions, the file types, the `ETag` conversion) and "Understand cache
//! policies", *Cache compressed objects* (the normalisation); RFC 9110
//! §12.5.3 (`Accept-Encoding`, q-values, `*`), §8.4.1 (content codings,
//! `x-gzip`), §8.8.3 (weak entity tags), §12.5.5 (`Vary`); RFC 9111
//! §5.2.2.6 (`no-transform`).
//!
//! - **Normalisation.** With the cache policy's gzip and/or brotli flag on,
//!   `Accept-Encoding` becomes `br,gzip`, `br`, `gzip` (the allowed codings
//!   the viewer accepts) or nothing, in the cache key and in the origin
//!   request, which gets `identity` when the viewer accepts neither
//!   ([`Codings::normalised`]).
//! - **Choice.** When the edge compresses, it uses brotli if the viewer
//!   accepts it and the policy allows it, else gzip, else nothing
//!   ([`Codings::preferred`]).
//! - **What is compressed.** A 200 whose `Content-Type` is on CloudFront's
//!   list ([`COMPRESSIBLE_TYPES`]), with a `Content-Length` of 1,000 to
//!   10,000,000 bytes, no `Content-Encoding` (whatever its value) and no
//!   `Cache-Control: no-transform` ([`compressible`]).
//! - **Headers.** The compressed variant gets `Content-Encoding`, its own
//!   `Content-Length`, `Vary: Accept-Encoding`, and a strong `ETag` `"x"`
//!   becomes weak `W/"x"`: the variants are semantically equivalent, not
//!   byte-identical. A weak `ETag` is kept; an invalid one is removed
//!   ([`encoded_headers`]).

use std::io::Write;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// Smallest body the edge compresses (CloudFront: "between 1,000 and
/// 10,000,000 bytes"); smaller bodies gain too little for the work.
pub const MIN_COMPRESS_BYTES: u64 = 1_000;

/// Largest body the edge compresses (CloudFront's limit).
pub const MAX_COMPRESS_BYTES: u64 = 10_000_000;

/// gzip level. Level 6 (zlib's default) gives level 9's ratio on every
/// asset of `benches/compress.rs` (JS 32.7 %, CSS 27.5 %, a patch manifest
/// 38.1 %) at 1.2 to 1.5 times its speed; level 1 is 3 to 10 points worse.
pub const GZIP_LEVEL: u32 = 6;

/// brotli quality. Quality 5 compresses 1 to 2 points better than gzip 6
/// (JS 31.8 %, CSS 25.8 %) at a comparable speed (25 to 90 MiB/s on one
/// core in `benches/compress.rs`); each variant is made once and cached, so
/// its cost is paid once per object. Qualities 9 and 11 gain 1 to 6 points
/// at 1 to 5 MiB/s: a cost for build-time pre-compression, not an edge.
pub const BROTLI_QUALITY: u32 = 5;

/// brotli window: 2^22 bytes (4 MiB), the encoder's default; decoders
/// accept windows up to 2^24.
pub const BROTLI_WINDOW_BITS: u32 = 22;

/// Buffer of the brotli encoder's internal writer.
const BROTLI_BUFFER: usize = 64 * 1024;

/// The `Content-Type` values CloudFront compresses ("Serve compressed
/// files", *File types that CloudFront compresses*), lowercase, without
/// parameters.
pub const COMPRESSIBLE_TYPES: [&str; 45] = [
    "application/dash+xml",
    "application/eot",
    "application/font",
    "application/font-sfnt",
    "application/javascript",
    "application/json",
    "application/opentype",
    "application/otf",
    "application/pkcs7-mime",
    "application/protobuf",
    "application/rss+xml",
    "application/truetype",
    "application/ttf",
    "application/vnd.apple.mpegurl",
    "application/vnd.ms-fontobject",
    "application/xhtml+xml",
    "application/xml",
    "application/x-font-opentype",
    "application/x-font-truetype",
    "application/x-font-ttf",
    "application/x-httpd-cgi",
    "application/x-javascript",
    "application/x-mpegurl",
    "application/x-opentype",
    "application/x-otf",
    "application/x-perl",
    "application/x-ttf",
    "font/eot",
    "font/opentype",
    "font/otf",
    "font/ttf",
    "image/svg+xml",
    "text/css",
    "text/csv",
    "text/html",
    "text/javascript",
    "text/js",
    "text/plain",
    "text/richtext",
    "text/tab-separated-values",
    "text/xml",
    "text/x-component",
    "text/x-java-source",
    "text/x-script",
    "vnd.apple.mpegurl",
];

/// A content coding the edge produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Brotli (RFC 7932), `br`.
    Br,
    /// gzip (RFC 1952), `gzip`.
    Gzip,
}

impl Coding {
    /// Its token in `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// A set of the codings the edge knows: those a viewer accepts, or those a
/// cache policy allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Codings {
    /// brotli.
    pub br: bool,
    /// gzip.
    pub gzip: bool,
}

impl Codings {
    /// Neither coding.
    pub const NONE: Codings = Codings { br: false, gzip: false };

    /// Both in `self` and in `other`.
    pub fn and(self, other: Codings) -> Codings {
        Codings { br: self.br && other.br, gzip: self.gzip && other.gzip }
    }

    /// Whether the set holds any coding.
    pub fn any(self) -> bool {
        self.br || self.gzip
    }

    /// The normalised `Accept-Encoding` (CloudFront's: `br,gzip`, `br`,
    /// `gzip`), or `None` when the set is empty.
    pub fn normalised(self) -> Option<&'static str> {
        match (self.br, self.gzip) {
            (true, true) => Some("br,gzip"),
            (true, false) => Some("br"),
            (false, true) => Some("gzip"),
            (false, false) => None,
        }
    }

    /// The coding the edge uses: brotli before gzip.
    pub fn preferred(self) -> Option<Coding> {
        if self.br {
            Some(Coding::Br)
        } else if self.gzip {
            Some(Coding::Gzip)
        } else {
            None
        }
    }
}

/// Whether a quality value (RFC 9110 §12.4.2 `weight`) is above zero, or
/// `None` when it is not a valid qvalue (`0`–`1` with at most three
/// decimals).
fn qvalue_positive(q: &str) -> Option<bool> {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => Some(frac.bytes().any(|b| b != b'0')),
        "1" if frac.bytes().all(|b| b == b'0') => Some(true),
        _ => None,
    }
}

/// The codings among brotli and gzip that the request's `Accept-Encoding`
/// accepts (RFC 9110 §12.5.3): listed with a weight above zero, or not
/// listed while `*` is, with a weight above zero. `x-gzip` is gzip
/// (§8.4.1.3). Members with an invalid weight are ignored. Without the
/// header, neither: the viewer gets the identity body.
pub fn accepted(headers: &HeaderMap) -> Codings {
    let (mut br, mut gzip, mut star) = (None, None, None);
    for line in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(line) = line.to_str() else { continue };
        for member in line.split(',') {
            let mut params = member.split(';');
            let coding = params.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let mut ok = Some(true);
            for p in params {
                if let Some((name, value)) = p.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    ok = qvalue_positive(value.trim());
                }
            }
            let Some(ok) = ok else { continue };
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut br
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if coding == "*" {
                &mut star
            } else {
                continue;
            };
            // A coding listed twice counts as acceptable if any listing accepts it.
            *slot = Some(slot.unwrap_or(false) || ok);
        }
    }
    let star = star.unwrap_or(false);
    Codings { br: br.unwrap_or(star), gzip: gzip.unwrap_or(star) }
}

/// Whether `content_type` (a `Content-Type` value, parameters allowed) is
/// one CloudFront compresses ([`COMPRESSIBLE_TYPES`]; case-insensitive).
pub fn compressible_type(content_type: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content_type) else { return false };
    let media = text.split(';').next().unwrap_or("").trim();
    COMPRESSIBLE_TYPES.iter().any(|t| t.eq_ignore_ascii_case(media))
}

/// Whether the edge may compress a response with `status`, `headers` and
/// `content_length` (see the module documentation).
pub fn compressible(status: StatusCode, headers: &HeaderMap, content_length: Option<u64>) -> bool {
    status == StatusCode::OK
        && content_length.is_some_and(|n| (MIN_COMPRESS_BYTES..=MAX_COMPRESS_BYTES).contains(&n))
        && !headers.contains_key(header::CONTENT_ENCODING)
        && headers.get(header::CONTENT_TYPE).is_some_and(|v| compressible_type(v.as_bytes()))
        && !no_transform(headers)
}

/// `Cache-Control: no-transform` (RFC 9111 §5.2.2.6): an intermediary
/// must not change the content, so it is not compressed.
fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// The `ETag` of a compressed variant (CloudFront's conversion): a strong
/// `"x"` becomes `W/"x"`, a weak one stays, an invalid one (neither `"`
/// nor `W/` first) is removed.
pub fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else { return };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    if bytes.first() == Some(&b'"') {
        let mut weak = Vec::with_capacity(bytes.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(bytes);
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, v);
            return;
        }
    }
    headers.remove(header::ETAG);
}

/// Whether `headers`' `Vary` already covers `Accept-Encoding` (listed, or `*`).
fn varies_on_accept_encoding(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|n| n == "*" || n.eq_ignore_ascii_case("accept-encoding"))
}

/// Adds `Vary: Accept-Encoding` unless the headers already vary on it:
/// both the compressed and the identity variant of a negotiated response
/// say so (RFC 9110 §12.5.5), so caches downstream keep them apart.
pub fn add_vary(headers: &mut HeaderMap) {
    if !varies_on_accept_encoding(headers) {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// Fields that describe the identity body's bytes, wrong for a compressed
/// variant: `Content-MD5` (RFC 1864), `Digest` (RFC 3230) and
/// `Content-Digest` (RFC 9530, a digest of the content as sent).
const IDENTITY_DIGESTS: [&str; 3] = ["content-md5", "digest", "content-digest"];

/// The headers of the `coding` variant of `len` bytes, from the identity
/// object's: `Content-Encoding`, `Content-Length`, `Vary`, the `ETag`
/// conversion ([`weaken_etag`]), and no digest of the identity bytes
/// (`Content-MD5`, `Digest`, `Content-Digest`).
pub fn encoded_headers(identity: &HeaderMap, coding: Coding, len: u64) -> HeaderMap {
    let mut headers = identity.clone();
    for name in IDENTITY_DIGESTS {
        headers.remove(name);
    }
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    weaken_etag(&mut headers);
    add_vary(&mut headers);
    headers
}

/// Compresses a body held as `pieces` (a stored body's chunks) with
/// `coding`, at [`GZIP_LEVEL`] / [`BROTLI_QUALITY`]. CPU-bound: callers on
/// the runtime run it in a blocking task.
pub fn compress<'a>(coding: Coding, pieces: impl IntoIterator<Item = &'a [u8]>) -> std::io::Result<Bytes> {
    let level = match coding {
        Coding::Gzip => GZIP_LEVEL,
        Coding::Br => BROTLI_QUALITY,
    };
    compress_at(coding, level, pieces)
}

/// [`compress`] at gzip level or brotli quality `level` (for the
/// benchmark that chose the defaults).
pub fn compress_at<'a>(
    coding: Coding,
    level: u32,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> std::io::Result<Bytes> {
    match coding {
        Coding::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
            for p in pieces {
                enc.write_all(p)?;
            }
            Ok(Bytes::from(enc.finish()?))
        }
        Coding::Br => {
            let mut enc = brotli::CompressorWriter::new(Vec::new(), BROTLI_BUFFER, level.min(11), BROTLI_WINDOW_BITS);
            for p in pieces {
                enc.write_all(p)?;
            }
            enc.flush()?;
            Ok(Bytes::from(enc.into_inner()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn ae(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
            Coding::Br => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
        }
        .expect("decodes");
        out
    }

    fn text(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0u64;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"path\":\"assets/pak{i:05}.bin\",\"size\":{},\"hash\":\"{:016x}\"}},\n",
                i * 7919,
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ));
            i += 1;
        }
        s.truncate(n);
        s.into_bytes()
    }

    #[test]
    fn round_trips_through_the_decoders() {
        for coding in [Coding::Gzip, Coding::Br] {
            for n in [0usize, 1, 999, 1_000, 65_537, 1 << 20] {
                let body = text(n);
                // Split into uneven pieces, as a filled body is.
                let pieces: Vec<&[u8]> = body.chunks(7_777).collect();
                let packed = compress(coding, pieces.iter().copied()).expect("compresses");
                assert_eq!(decode(coding, &packed), body, "{coding:?} of {n} bytes");
                if n >= 65_537 {
                    assert!(packed.len() * 3 < n, "{coding:?} of {n} bytes: only down to {}", packed.len());
                }
            }
        }
    }

    #[test]
    fn accept_encoding_table() {
        let both = Codings { br: true, gzip: true };
        let gzip = Codings { br: false, gzip: true };
        let br = Codings { br: true, gzip: false };
        let none = Codings::NONE;
        let table: &[(&[&str], Codings)] = &[
            (&[], none),
            (&[""], none),
            (&["gzip"], gzip),
            (&["GZip"], gzip),
            (&["x-gzip"], gzip),
            (&["br"], br),
            (&["gzip, deflate, br, zstd"], both),
            (&["deflate, gzip;q=1.0, *;q=0.5"], both),
            (&["gzip", "br"], both),
            (&["gzip;q=0"], none),
            (&["gzip;q=0.000, br"], br),
            (&["gzip;Q=0.001"], gzip),
            (&["gzip;q=1.000"], gzip),
            (&["gzip;q=1.5"], none),
            (&["gzip;q=0.0001"], none),
            (&["gzip;q=abc, br"], br),
            (&["*"], both),
            (&["*;q=0"], none),
            (&["*, gzip;q=0"], br),
            (&["br;q=0, *"], gzip),
            (&["identity;q=0"], none),
            (&["identity;q=0, gzip"], gzip),
            (&["identity"], none),
            (&["deflate, compress"], none),
            (&["gzip;q=0, gzip"], gzip),
            (&[" br ; q=0.5 ,gzip ;q=0"], br),
        ];
        for (lines, want) in table {
            assert_eq!(accepted(&ae(lines)), *want, "Accept-Encoding {lines:?}");
        }
    }

    #[test]
    fn normalised_value_and_preference() {
        let allow_gzip = Codings { br: false, gzip: true };
        let allow_both = Codings { br: true, gzip: true };
        let viewer = accepted(&ae(&["gzip, deflate, br"]));
        assert_eq!(viewer.and(allow_both).normalised(), Some("br,gzip"));
        assert_eq!(viewer.and(allow_both).preferred(), Some(Coding::Br));
        assert_eq!(viewer.and(allow_gzip).normalised(), Some("gzip"));
        assert_eq!(viewer.and(allow_gzip).preferred(), Some(Coding::Gzip));
        let br_only = accepted(&ae(&["br"]));
        assert_eq!(br_only.and(allow_both).normalised(), Some("br"));
        assert_eq!(br_only.and(allow_gzip).normalised(), None);
        assert_eq!(br_only.and(allow_gzip).preferred(), None);
        assert!(!Codings::NONE.any());
    }

    #[test]
    fn compressible_types_are_cloudfronts() {
        for t in ["application/json", "text/html; charset=utf-8", "TEXT/CSS", "application/javascript", "image/svg+xml"]
        {
            assert!(compressible_type(t.as_bytes()), "{t}");
        }
        for t in ["image/png", "application/octet-stream", "video/mp4", "application/zip", "text/event-stream", ""] {
            assert!(!compressible_type(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn conditions_for_compression() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(compressible(StatusCode::OK, &h, Some(1_000)));
        assert!(compressible(StatusCode::OK, &h, Some(10_000_000)));
        assert!(!compressible(StatusCode::OK, &h, Some(999)));
        assert!(!compressible(StatusCode::OK, &h, Some(10_000_001)));
        assert!(!compressible(StatusCode::OK, &h, None), "no Content-Length: not compressed (CloudFront)");
        assert!(!compressible(StatusCode::NOT_FOUND, &h, Some(5_000)));
        let mut encoded = h.clone();
        encoded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(!compressible(StatusCode::OK, &encoded, Some(5_000)), "any Content-Encoding");
        let mut keep = h.clone();
        keep.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60, No-Transform"));
        assert!(!compressible(StatusCode::OK, &keep, Some(5_000)));
        let mut png = h;
        png.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(!compressible(StatusCode::OK, &png, Some(5_000)));
    }

    #[test]
    fn etag_conversion() {
        let cases = [("\"abc\"", Some("W/\"abc\"")), ("W/\"abc\"", Some("W/\"abc\"")), ("abc", None), ("", None)];
        for (etag, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::ETAG, HeaderValue::from_str(etag).expect("value"));
            weaken_etag(&mut h);
            assert_eq!(h.get(header::ETAG).map(|v| v.to_str().expect("ascii")), want, "{etag}");
        }
    }

    #[test]
    fn encoded_headers_of_a_variant() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(5_000));
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        for (name, value) in [
            ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
            ("digest", "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="),
            ("content-digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        ] {
            h.insert(header::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let e = encoded_headers(&h, Coding::Br, 1_234);
        for name in IDENTITY_DIGESTS {
            assert!(!e.contains_key(name), "{name}: a digest of the identity bytes");
        }
        assert_eq!(e.get(header::CONTENT_ENCODING).expect("ce"), "br");
        assert_eq!(e.get(header::CONTENT_LENGTH).expect("cl"), "1234");
        assert_eq!(e.get(header::ETAG).expect("etag"), "W/\"v1\"");
        let vary: Vec<_> = e.get_all(header::VARY).iter().map(|v| v.to_str().expect("ascii")).collect();
        assert_eq!(vary, ["Origin", "accept-encoding"]);
        let mut already = h.clone();
        already.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        assert_eq!(encoded_headers(&already, Coding::Gzip, 1).get_all(header::VARY).iter().count(), 1);
    }
}
