//! Arbitrary bytes as a web ACL: JSON parsing and compilation must refuse
//! with an error, never panic; whatever compiles is then evaluated on a
//! request built from the same bytes, which must not panic either.
//!
//! `cargo fuzz run web_acl` (from this directory; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_waf::json::WebAclJson;
use shardgate_waf::{NoSets, RequestView, WebAcl};

fuzz_target!(|data: &[u8]| {
    let (acl_bytes, req_bytes) = data.split_at(data.len() / 2);
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
    // A connection fingerprint when the request bytes happen to hold a ClientHello.
    let tls = shardgate_waf::TlsFingerprint::from_records(req_bytes);
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
