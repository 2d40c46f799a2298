//! Published vectors: JA4's own example (FoxIO `technical_details/JA4.md`),
//! and ClientHellos whose JA3 strings and hashes other implementations
//! publish (jabedude/ja3-rs's `tests/chrome-grease-single.pcap` and
//! `tests/test.pcap`, as aws/s2n-tls's `s2n_fingerprint_ja3_test.c` lists
//! them). Their JA4 values were checked against a second, independent
//! implementation (the `ja4plus` Python package).

use super::*;

fn unhex(parts: &[&str]) -> Vec<u8> {
    let s: String = parts.concat();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// One TLS record holding one ClientHello handshake message with `body`.
pub(super) fn record(body: &[u8]) -> Vec<u8> {
    let mut hs = vec![CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(body);
    let mut r = vec![HANDSHAKE, 3, 1];
    r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    r.extend_from_slice(&hs);
    r
}

/// The same handshake message split over records of at most `size` bytes.
pub(super) fn split(body: &[u8], size: usize) -> Vec<u8> {
    let whole = record(body);
    let hs = &whole[5..];
    let mut out = Vec::new();
    for chunk in hs.chunks(size) {
        out.extend_from_slice(&[HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A ClientHello body: TLS 1.2 legacy version, zero random, empty session.
pub(super) fn body(ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0; 32]);
    b.push(0);
    b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        b.extend_from_slice(&c.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    for (kind, data) in extensions {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    }
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    b
}

fn list16(values: &[u16]) -> Vec<u8> {
    let mut v = ((values.len() * 2) as u16).to_be_bytes().to_vec();
    for x in values {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

/// The example of FoxIO's JA4 specification: its ciphers, extensions and
/// signature algorithms in their wire order, plus GREASE values (ignored).
fn spec_example(alpn: &[u8]) -> Vec<u8> {
    let ciphers = [
        0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d,
        0x002f, 0x0035,
    ];
    let mut sni = vec![0, 14, 0, 0, 11];
    sni.extend_from_slice(b"example.com");
    let mut alpn_ext = ((alpn.len() + 1) as u16).to_be_bytes().to_vec();
    alpn_ext.push(alpn.len() as u8);
    alpn_ext.extend_from_slice(alpn);
    let versions = vec![4, 0x3a, 0x3a, 3, 4, 3, 3];
    let sigalgs = list16(&[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]);
    let kinds = [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b,
        0x000a, 0x0015,
    ];
    let mut extensions = vec![(0x2a2a, Vec::new())];
    for k in kinds {
        let data = match k {
            0x0000 => sni.clone(),
            0x0010 => alpn_ext.clone(),
            0x002b => versions.clone(),
            0x000d => sigalgs.clone(),
            0x000a => list16(&[0x1a1a, 0x001d, 0x0017]),
            0x000b => vec![1, 0],
            _ => Vec::new(),
        };
        extensions.push((k, data));
    }
    body(&ciphers, &extensions)
}

#[test]
fn ja4_matches_the_specification_example() {
    let f = TlsFingerprint::from_records(&record(&spec_example(b"h2"))).expect("parses");
    assert_eq!(f.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    // Split over records, as a large ClientHello may be: the same.
    let g = TlsFingerprint::from_records(&split(&spec_example(b"h2"), 100)).expect("reassembled");
    assert_eq!(f, g);
    // ALPN: first and last characters; hex digits when not alphanumeric.
    let alpn =
        |v: &[u8]| TlsFingerprint::from_records(&record(&spec_example(v))).expect("parses").ja4()[8..10].to_owned();
    assert_eq!(alpn(b"http/1.1"), "h1");
    assert_eq!(alpn(b"x"), "xx");
    assert_eq!(alpn(&[0xab, 0xcd]), "ad");
    assert_eq!(alpn(&[0x30, 0xab]), "3b");
    assert_eq!(alpn(&[0x30, 0xab, 0xcd, 0x31]), "01", "both ends alphanumeric: the characters");
}

#[test]
fn ja4_edges_no_sni_no_alpn_no_ciphers() {
    let f = TlsFingerprint::from_records(&record(&body(&[], &[]))).expect("parses");
    assert_eq!(f.ja4(), "t12i000000_000000000000_000000000000");
    let f = TlsFingerprint::from_records(&record(&body(&[0x1301], &[(0x0017, Vec::new())]))).expect("parses");
    assert_eq!(&f.ja4()[..10], "t12i010100");
}

/// jabedude/ja3-rs `tests/chrome-grease-single.pcap`: GREASE in ciphers,
/// extensions, groups and versions.
const CHROME: &[&str] = &[
    "030386ada4cc19e7145454fde73733df66cbf6ef3ec0a154c6dd145ec083acb9b4e7201c64aea7a2c3e18cd125024df7864a",
    "c719d0c4bdfb40c2ef7f6dd39aa753dfdd00221a1a130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f00",
    "35000a010001910a0a000000000020001e00001b676f6f676c656164732e672e646f75626c65636c69636b2e6e6574001700",
    "00ff01000100000a000a00089a9a001d00170018000b00020100002300000010000e000c02683208687474702f312e310005",
    "00050100000000000d00140012040308040401050308050501080606010201001200000033002b00299a9a000100001d0020",
    "59086f419aa5aa1d81e347f0255f9207fc4b137451469808743bde5786e82c74002d00020101002b000b0afafa0304030303",
    "020301001b0003020002baba000100001500bd00000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000",
];

/// jabedude/ja3-rs `tests/test.pcap` (Firefox).
const FIREFOX: &[&str] = &[
    "030390e8cceee570a2a12f6b69d266960fcf20d5326ec4b28cc7bd0a06c2a514fc3420af72bf3999fb2070c310830ceefbfa",
    "72cc5da899b4c553d63da0537a5cbcf50b001ec02bc02fcca9cca8c02cc030c00ac009c013c01400330039002f0035000a01",
    "00008500000023002100001e696e636f6d696e672e74656c656d657472792e6d6f7a696c6c612e6f726700170000ff010001",
    "00000a000a0008001d001700180019000b00020100002300000010000e000c02683208687474702f312e3100050005010000",
    "0000000d0018001604030503060308040805080604010501060102030201001c00024000",
];

#[test]
fn ja3_matches_published_vectors() {
    let chrome = TlsFingerprint::from_records(&record(&unhex(CHROME))).expect("parses");
    // MD5 of 771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53-10,
    // 0-23-65281-10-11-35-16-5-13-18-51-45-43-27-21,29-23-24,0
    assert_eq!(chrome.ja3(), "66918128f1b9b03303d77c6f2eefd128");
    assert_eq!(chrome.ja4(), "t13d1615h2_46e7e9700bed_45f260be83e2");
    let firefox = TlsFingerprint::from_records(&record(&unhex(FIREFOX))).expect("parses");
    assert_eq!(firefox.ja3(), "839bbe3ed07fed922ded5aaf714d6842");
    assert_eq!(firefox.ja4(), "t12d1510h2_073e58a039a6_b5b8faed2b99");
}

#[test]
fn anything_but_a_whole_client_hello_is_none() {
    let whole = record(&unhex(CHROME));
    for cut in [0, 1, 4, 5, 9, 40, whole.len() - 1] {
        assert_eq!(TlsFingerprint::from_records(&whole[..cut]), None, "cut at {cut}");
    }
    let mut not_handshake = whole.clone();
    not_handshake[0] = 23;
    assert_eq!(TlsFingerprint::from_records(&not_handshake), None);
    let mut server_hello = whole.clone();
    server_hello[5] = 2;
    assert_eq!(TlsFingerprint::from_records(&server_hello), None);
    // An extension whose length runs past the end.
    let mut b = body(&[0x1301], &[(0x0000, vec![0; 4])]);
    let n = b.len();
    b[n - 5] = 0xff;
    assert_eq!(TlsFingerprint::from_records(&record(&b)), None);
    assert_eq!(TlsFingerprint::from_records(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
}
