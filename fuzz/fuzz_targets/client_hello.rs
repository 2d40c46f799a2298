//! Arbitrary bytes as the TLS records a listener read for a ClientHello:
//! the JA3/JA4 parser answers `None` or two well-formed fingerprints, and
//! the routing parse (`parse_client_hello`, the same reader and parser,
//! stricter) agrees with it and reads a stream consistently: a whole
//! ClientHello stays the same whatever bytes follow it, an invalid prefix
//! stays invalid, and nothing panics.
//!
//! `cargo fuzz run client_hello` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_waf::{HelloParse, TlsFingerprint, parse_client_hello};

/// Lower-case hex digits only.
fn lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let fingerprint = TlsFingerprint::from_records(data);
    if let Some(f) = fingerprint {
        assert_eq!(f.ja3().len(), 32);
        assert!(lower_hex(f.ja3().as_bytes()), "{f:?}");
        // t, version (2), d or i, cipher and extension counts (2 + 2),
        // ALPN (2, as sent), _, 12 hex, _, 12 hex.
        let ja4 = f.ja4().as_bytes();
        assert_eq!(ja4.len(), 36);
        assert!(ja4[0] == b't' && ja4[10] == b'_' && ja4[23] == b'_', "{f:?}");
        assert!(matches!(ja4[3], b'd' | b'i') && ja4[4..8].iter().all(u8::is_ascii_digit), "{f:?}");
        assert!(ja4[8..10].iter().all(u8::is_ascii_alphanumeric), "{f:?}");
        assert!(lower_hex(&ja4[11..23]) && lower_hex(&ja4[24..36]), "{f:?}");
    }

    let whole = parse_client_hello(data);
    match &whole {
        // Stricter than the fingerprints, never looser.
        HelloParse::Complete(info) => {
            assert!(fingerprint.is_some(), "{info:?}");
            if let Some(name) = &info.server_name {
                assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
                assert!(name.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()), "{name:?}");
                assert!(!name.ends_with('.'), "{name:?}");
            }
            assert!(info.alpn.iter().all(|p| !p.is_empty()), "{info:?}");
        }
        HelloParse::Incomplete => assert!(fingerprint.is_none()),
        HelloParse::Invalid => {}
    }
    // Read as a listener reads it, in two parts: the first part's answer
    // holds for the whole when it is final.
    if data.len() > 1 {
        let cut = usize::from(data[0]) % data.len();
        match parse_client_hello(&data[..cut]) {
            HelloParse::Complete(info) => assert_eq!(whole, HelloParse::Complete(info), "bytes after it changed it"),
            HelloParse::Invalid => assert_eq!(whole, HelloParse::Invalid, "more bytes made garbage valid"),
            HelloParse::Incomplete => {}
        }
    }
});
