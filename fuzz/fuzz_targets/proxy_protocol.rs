//! Arbitrary bytes as the start of a connection on a listener that
//! requires a PROXY protocol header: the parser answers a whole header
//! within its bounds, "more bytes", or a refusal, and never panics. A whole
//! header parses the same on its own bytes, none of its prefixes is refused
//! (the early refusal must never turn away a valid header that is still
//! arriving), and its addresses survive the encoders.
//!
//! `cargo fuzz run --sanitizer none proxy_protocol` (from this directory).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_stream::proxy_protocol::{
    MAX_HEADER_BYTES, Parsed, V1_MAX_BYTES, Version, encode_v1, encode_v2, parse,
};

fn canonical(a: std::net::SocketAddr) -> (std::net::IpAddr, u16) {
    (a.ip().to_canonical(), a.port())
}

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete { header, len }) => {
            assert!(len <= data.len(), "{len} > {}", data.len());
            let max = match header.version {
                Version::V1 => V1_MAX_BYTES,
                Version::V2 => MAX_HEADER_BYTES,
            };
            assert!(len <= max, "{header:?}: {len} bytes");
            assert_eq!(parse(&data[..len]), Ok(Parsed::Complete { header, len }), "the header alone");
            // Every prefix waits for more: all of them for short headers,
            // a sample for long ones.
            let step = if len <= 128 { 1 } else { len / 64 };
            for k in (0..len).step_by(step).chain([len - 1]) {
                match parse(&data[..k]) {
                    Ok(Parsed::Incomplete { total }) => {
                        assert!(total.is_none_or(|t| t == len), "prefix {k}: total {total:?}, header {len}")
                    }
                    other => panic!("prefix of {k} of a {len}-byte header: {other:?}"),
                }
            }
            if let Some(a) = header.addresses {
                for h in [encode_v1(a.source, a.destination), encode_v2(a.source, a.destination)] {
                    let Ok(Parsed::Complete { header: back, len: n }) = parse(&h) else {
                        panic!("re-encoded {a:?} does not parse: {h:?}")
                    };
                    assert_eq!(n, h.len());
                    let b = back.addresses.expect("addresses");
                    assert_eq!(canonical(b.source), canonical(a.source));
                    assert_eq!(canonical(b.destination), canonical(a.destination));
                }
            }
        }
        Ok(Parsed::Incomplete { total }) => {
            if let Some(t) = total {
                assert!(t > data.len() && t <= MAX_HEADER_BYTES, "total {t} for {} bytes", data.len());
            }
            if data.first() == Some(&b'P') {
                assert!(data.len() < V1_MAX_BYTES, "a v1 line over 107 bytes is never incomplete");
            }
        }
        Err(_) => {}
    }
});
