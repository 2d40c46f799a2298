//! Arbitrary bytes as the TLS records a listener read for a ClientHello:
//! the JA3/JA4 parser answers `None` or two well-formed fingerprints, and
//! never panics.
//!
//! `cargo fuzz run client_hello` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_waf::TlsFingerprint;

/// Lower-case hex digits only.
fn lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    if let Some(f) = TlsFingerprint::from_records(data) {
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
});
