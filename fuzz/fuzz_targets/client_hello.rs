//! Arbitrary bytes as the TLS records a listener read for a ClientHello:
//! the JA3/JA4 parser answers `None` or two well-formed fingerprints, and
//! never panics.
//!
//! `cargo fuzz run client_hello` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_waf::TlsFingerprint;

fuzz_target!(|data: &[u8]| {
    if let Some(f) = TlsFingerprint::from_records(data) {
        assert_eq!(f.ja3().len(), 32);
        assert!(f.ja3().bytes().all(|b| b.is_ascii_hexdigit()));
        let ja4 = f.ja4().as_bytes();
        assert_eq!(ja4.len(), 36);
        assert!(ja4[0] == b't' && ja4[10] == b'_' && ja4[23] == b'_');
    }
});
