use super::*;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn complete(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, len }) => (header, len),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn addresses(buf: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    complete(buf).0.addresses.map(|a| (a.source, a.destination))
}

/// Every proper prefix of a whole header asks for more bytes, and never
/// decides differently from the whole.
fn prefixes_are_incomplete(header: &[u8]) {
    for k in 0..header.len() {
        match parse(&header[..k]) {
            Ok(Parsed::Incomplete { total }) => {
                if let Some(t) = total {
                    assert_eq!(t, header.len(), "announced total at prefix {k}");
                }
            }
            other => panic!("prefix of {k} bytes of {header:?}: {other:?}"),
        }
    }
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8888\r\n";
    let mut with_data = h.to_vec();
    with_data.extend_from_slice(b"\x16\x03\x01 the ClientHello");
    let (header, len) = complete(&with_data);
    assert_eq!(len, h.len(), "the header ends at its CRLF");
    assert_eq!(header.version, Version::V1);
    assert_eq!(addresses(h), Some((sa("203.0.113.7:51000"), sa("192.0.2.1:8888"))));
    prefixes_are_incomplete(h);

    let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n";
    assert_eq!(addresses(h), Some((sa("[2001:db8::7]:0"), sa("[2001:db8::1]:65535"))));
    prefixes_are_incomplete(h);

    // UNKNOWN: the socket's addresses apply; what follows UNKNOWN is ignored.
    for h in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"] {
        let (header, len) = complete(h);
        assert_eq!((header.version, header.addresses, len), (Version::V1, None, h.len()));
        prefixes_are_incomplete(h);
    }
}

#[test]
fn v1_longest_header_is_107_bytes() {
    let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let h = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
    assert_eq!(complete(h.as_bytes()).1, 104);
    // The specification's worst case: UNKNOWN followed by the longest fields.
    let h = format!("PROXY UNKNOWN {ip} {ip} 65535 65535\r\n");
    assert_eq!(h.len(), V1_MAX_BYTES);
    assert_eq!(complete(h.as_bytes()).1, V1_MAX_BYTES);
    // One byte more (or 107 bytes without a CRLF) is refused, not waited for.
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(92));
    assert_eq!(long.len(), V1_MAX_BYTES + 1);
    assert!(matches!(parse(long.as_bytes()), Err(ParseError::TooLarge { version: Version::V1, .. })));
    assert!(matches!(parse(&long.as_bytes()[..107]), Err(ParseError::TooLarge { .. })));
}

#[test]
fn v1_malformed_lines_are_refused() {
    for bad in [
        &b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8888\n"[..],
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8888\rX",
        b"PROXY TCP4 203.0.113.7  192.0.2.1 51000 8888\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8888 9\r\n",
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
        b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
        b"PROXY TCP4 203.0.113.256 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 192.0.02.1 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 +80 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 080 2\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 2\r\n",
        b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\x00\r\n",
    ] {
        let r = parse(bad);
        assert!(
            matches!(r, Err(ParseError::Malformed { version: Version::V1, .. })),
            "{:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(r.unwrap_err().reason(), RefuseReason::malformed);
    }
    // Decided before the line ends.
    assert!(matches!(parse(b"PROXY UDP"), Err(ParseError::Malformed { .. })));
    assert!(matches!(parse(b"PROXY TCP4 1.2.3.4\x01"), Err(ParseError::Malformed { .. })));
}

#[test]
fn no_header_is_found_on_the_first_bytes() {
    for missing in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST",
        b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"PROXYTCP4",
        b"\r\n\r\n\x00\r\nQUIX\n",
        b"hello game server",
    ] {
        let r = parse(missing);
        assert_eq!(r, Err(ParseError::Missing), "{missing:?}");
        assert_eq!(r.unwrap_err().reason(), RefuseReason::missing);
    }
    assert_eq!(parse(b""), Ok(Parsed::Incomplete { total: None }));
    assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete { total: None }));
    assert_eq!(parse(&V2_SIGNATURE[..5]), Ok(Parsed::Incomplete { total: None }));
}

/// A v2 header written out byte by byte from the specification, so the
/// encoder is checked against something it did not produce.
#[test]
fn v2_tcp4_from_the_specification() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]); // v2 PROXY, INET STREAM, 12 bytes
    h.extend_from_slice(&[203, 0, 113, 7, 192, 0, 2, 1]);
    h.extend_from_slice(&[0xC7, 0x38, 0x22, 0xB8]); // 51000, 8888
    assert_eq!(h.len(), 28);
    let mut with_data = h.clone();
    with_data.extend_from_slice(b"\x16\x03\x01");
    let (header, len) = complete(&with_data);
    assert_eq!((header.version, len), (Version::V2, 28));
    assert_eq!(addresses(&h), Some((sa("203.0.113.7:51000"), sa("192.0.2.1:8888"))));
    assert_eq!(encode_v2(sa("203.0.113.7:51000"), sa("192.0.2.1:8888")), h, "the encoder writes the same bytes");
    prefixes_are_incomplete(&h);
}

#[test]
fn v2_tcp6_local_unspec_unix_and_tlvs() {
    let (src, dst) = (sa("[2001:db8::7]:51000"), sa("[2001:db8::1]:443"));
    let h = encode_v2(src, dst);
    assert_eq!(h.len(), 16 + 36);
    assert_eq!(addresses(&h), Some((src, dst)));
    prefixes_are_incomplete(&h);

    // TLVs after the addresses (AWS's VPC endpoint id, type 0xEA) are skipped.
    let mut with_tlv = h[..16].to_vec();
    let tlv = [&[0xEAu8, 0x00, 0x17, 0x01][..], b"vpce-08d2bf15fac5001c9"].concat();
    with_tlv[14..16].copy_from_slice(&((36 + tlv.len()) as u16).to_be_bytes());
    with_tlv.extend_from_slice(&h[16..]);
    with_tlv.extend_from_slice(&tlv);
    let (header, len) = complete(&with_tlv);
    assert_eq!((header.addresses.map(|a| a.source), len), (Some(src), with_tlv.len()));
    prefixes_are_incomplete(&with_tlv);

    // LOCAL (a load balancer's health check): the socket's addresses, whatever the block says.
    let mut local = h.clone();
    local[12] = 0x20;
    assert_eq!(complete(&local).0.addresses, None);
    let mut local_empty = V2_SIGNATURE.to_vec();
    local_empty.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    assert_eq!(complete(&local_empty), (Header { version: Version::V2, addresses: None }, 16));

    // PROXY with UNSPEC or UNIX: no client address to use.
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(complete(&unspec).0.addresses, None);
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
    unix.extend_from_slice(&[0u8; 216]);
    assert_eq!(complete(&unix), (Header { version: Version::V2, addresses: None }, 232));
}

#[test]
fn v2_malformed_and_oversized_headers_are_refused() {
    let good = encode_v2(sa("127.0.0.2:1000"), sa("127.0.0.1:2000"));
    let with = |i: usize, b: u8| {
        let mut h = good.clone();
        h[i] = b;
        h
    };
    for (bad, what) in [
        (with(12, 0x11), "version 1 in the binary form"),
        (with(12, 0x22), "command 2"),
        (with(13, 0x41), "family 4"),
        (with(13, 0x13), "transport 3"),
        (with(15, 11), "INET block of 11 bytes"),
    ] {
        let r = parse(&bad);
        assert!(matches!(r, Err(ParseError::Malformed { version: Version::V2, .. })), "{what}: {r:?}");
    }
    // Refused as soon as the version byte arrives.
    assert!(matches!(parse(&with(12, 0x11)[..13]), Err(ParseError::Malformed { .. })));
    let mut inet6_short = good.clone();
    inet6_short[13] = 0x21;
    assert!(matches!(parse(&inet6_short), Err(ParseError::Malformed { .. })));

    let mut huge = good[..16].to_vec();
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let r = parse(&huge);
    assert!(matches!(r, Err(ParseError::TooLarge { version: Version::V2, max: MAX_HEADER_BYTES })), "{r:?}");
    assert_eq!(r.unwrap_err().reason(), RefuseReason::too_large);
    let mut just = good[..16].to_vec();
    just[14..16].copy_from_slice(&((MAX_HEADER_BYTES - 16) as u16).to_be_bytes());
    assert_eq!(parse(&just), Ok(Parsed::Incomplete { total: Some(MAX_HEADER_BYTES) }));
}

#[test]
fn encoders_round_trip_and_unify_families() {
    for (src, dst) in [
        ("203.0.113.7:1", "192.0.2.1:8888"),
        ("[2001:db8::7]:65535", "[::1]:0"),
        ("[::ffff:203.0.113.7]:5", "192.0.2.1:6"),
    ] {
        let (src, dst) = (sa(src), sa(dst));
        for enc in [encode_v1, encode_v2] {
            let h = enc(src, dst);
            let (s, d) = addresses(&h).expect("addresses");
            assert_eq!((s.ip().to_canonical(), s.port()), (src.ip().to_canonical(), src.port()));
            assert_eq!((d.ip().to_canonical(), d.port()), (dst.ip().to_canonical(), dst.port()));
        }
    }
    assert_eq!(encode_v1(sa("[::ffff:203.0.113.7]:5"), sa("192.0.2.1:6")), b"PROXY TCP4 203.0.113.7 192.0.2.1 5 6\r\n");
    // An IPv4 client on an IPv6 address: both written as IPv6.
    assert_eq!(
        encode_v1(sa("203.0.113.7:5"), sa("[2001:db8::1]:6")),
        b"PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 5 6\r\n"
    );
    assert_eq!(encode_v2(sa("203.0.113.7:5"), sa("[2001:db8::1]:6"))[13], 0x21);
}

/// A server socket and the client connected to it.
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = TcpStream::connect(l.local_addr().expect("addr")).await.expect("connect");
    let (server, _) = l.accept().await.expect("accept");
    (server, client)
}

async fn rest(server: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut buf)).await.expect("in time").expect("read");
    buf
}

/// The reader consumes the header and nothing else, even when the header
/// arrives a byte at a time with the ClientHello right behind it.
#[tokio::test]
async fn the_reader_takes_exactly_the_header_however_it_arrives() {
    for header in [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 8888\r\n".to_vec(),
        encode_v2(sa("[2001:db8::7]:51000"), sa("[2001:db8::1]:443")),
    ] {
        let (mut server, mut client) = pair().await;
        let h = header.clone();
        let writer = tokio::spawn(async move {
            for b in &h {
                client.write_all(&[*b]).await.expect("write");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            client.write_all(b"\x16\x03\x01after").await.expect("write");
            client
        });
        let read = tokio::time::timeout(Duration::from_secs(10), read_header(&mut server)).await.expect("in time");
        assert_eq!(read.expect("a header"), complete(&header).0);
        let _client = writer.await.expect("writer");
        assert_eq!(rest(&mut server, 8).await, b"\x16\x03\x01after", "the bytes after the header are untouched");
    }
}

#[tokio::test]
async fn the_reader_reads_long_v2_headers_by_their_length() {
    let (mut server, mut client) = pair().await;
    let base = encode_v2(sa("203.0.113.7:1"), sa("192.0.2.1:2"));
    let tlv_len = 1000usize;
    let mut h = base[..16].to_vec();
    h[14..16].copy_from_slice(&((12 + 3 + tlv_len) as u16).to_be_bytes());
    h.extend_from_slice(&base[16..]);
    h.extend_from_slice(&[0xE0, (tlv_len >> 8) as u8, tlv_len as u8]);
    h.extend(std::iter::repeat_n(b'x', tlv_len));
    h.extend_from_slice(b"game");
    client.write_all(&h).await.expect("write");
    let header = read_header(&mut server).await.expect("a header");
    assert_eq!(header.addresses.map(|a| a.source), Some(sa("203.0.113.7:1")));
    assert_eq!(rest(&mut server, 4).await, b"game");
}

#[tokio::test]
async fn the_reader_refuses_garbage_truncation_and_silence() {
    // Garbage: refused on the first segment, nothing consumed.
    let (mut server, mut client) = pair().await;
    client.write_all(b"\x16\x03\x01\x00\x05hello").await.expect("write");
    let e = read_header(&mut server).await.unwrap_err();
    assert_eq!(e.reason(), RefuseReason::missing, "{e}");

    // Half a header, then the peer closes.
    for partial in [&b"PROXY TCP4 203.0.113.7 19"[..], &V2_SIGNATURE[..], b""] {
        let (mut server, mut client) = pair().await;
        client.write_all(partial).await.expect("write");
        drop(client);
        let e = tokio::time::timeout(Duration::from_secs(5), read_header(&mut server))
            .await
            .expect("decided when the peer closes")
            .unwrap_err();
        assert_eq!(e.reason(), RefuseReason::truncated, "{partial:?}: {e}");
    }

    // Silence: the reader waits (without spinning) until the caller's timeout.
    let (mut server, mut client) = pair().await;
    client.write_all(b"PROXY TCP4 ").await.expect("write");
    let r = tokio::time::timeout(Duration::from_millis(300), read_header(&mut server)).await;
    assert!(r.is_err(), "still waiting for the rest: {r:?}");
    drop(client);
}

/// A header and the bytes after it in one segment, as load balancers send them.
#[tokio::test]
async fn the_reader_leaves_data_that_came_in_the_headers_segment() {
    let (mut server, mut client) = pair().await;
    client.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 9100\r\nhello\n").await.expect("write");
    let header = read_header(&mut server).await.expect("a header");
    assert_eq!(header.addresses.map(|a| a.source), Some(sa("203.0.113.7:51000")));
    assert_eq!(rest(&mut server, 6).await, b"hello\n");
}
