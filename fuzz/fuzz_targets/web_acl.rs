//! Arbitrary bytes as a web ACL: JSON parsing and compilation must refuse
//! with an error, never panic; whatever compiles is then evaluated on a
//! request built from the same bytes, which must not panic either. The
//! request's last byte picks its connection's TLS fingerprint: none (a
//! plain connection), or one of the published ClientHellos in
//! `seeds/client_hello`, so JA3/JA4 fields and rate keys run both ways.
//!
//! `cargo fuzz run web_acl` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_waf::json::WebAclJson;
use shardgate_waf::{NoSets, RequestView, TlsFingerprint, WebAcl};

/// ClientHellos whose fingerprints a request may carry.
const HELLOS: [&[u8]; 3] = [
    include_bytes!("../seeds/client_hello/chrome"),
    include_bytes!("../seeds/client_hello/firefox"),
    include_bytes!("../seeds/client_hello/firefox-split"),
];

fuzz_target!(|data: &[u8]| {
    let (acl_bytes, req_bytes) = data.split_at(data.len() / 2);
    let (tls_choice, req_bytes) = req_bytes.split_last().map_or((0, req_bytes), |(b, rest)| (*b, rest));
    let Ok(json) = serde_json::from_slice::<WebAclJson>(acl_bytes) else { return };
    let Ok(acl) = WebAcl::compile(&json, &NoSets) else { return };
    let text = String::from_utf8_lossy(req_bytes);
    let mut parts = text.splitn(4, '\n');
    let path = parts.next().unwrap_or("/");
    let query = parts.next().unwrap_or("");
    let mut headers = http::HeaderMap::new();
    for line in parts.next().unwrap_or("").split('\r') {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v))
        {
            headers.append(k, v);
        }
    }
    let body = parts.next().unwrap_or("").as_bytes();
    // None for half the inputs, else one of the ClientHellos' fingerprints.
    static FINGERPRINTS: std::sync::OnceLock<Vec<TlsFingerprint>> = std::sync::OnceLock::new();
    let fingerprints = FINGERPRINTS.get_or_init(|| {
        HELLOS.iter().map(|h| TlsFingerprint::from_records(h).expect("a seed ClientHello fingerprints")).collect()
    });
    let tls = match usize::from(tls_choice) {
        n if n % 2 == 0 => None,
        n => fingerprints.get((n / 2) % fingerprints.len()).copied(),
    };
    let view = RequestView {
        method: "GET",
        uri_path: path,
        query,
        headers: &headers,
        body: (body, false),
        client_ip: "192.0.2.1".parse().expect("a constant address"),
        tls: tls.as_ref(),
    };
    let _ = acl.evaluate(&view);
});
