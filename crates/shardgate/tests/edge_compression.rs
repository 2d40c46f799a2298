//! Compression at the edge through the real binary (CloudFront Developer
//! Guide, "Serve compressed files"): with the cache policy's gzip and
//! brotli flags and the behavior's `compress`, one identity fetch from the
//! origin serves brotli, gzip and identity viewers alike (`curl
//! --compressed` and explicit `Accept-Encoding`), with `Content-Encoding`,
//! a weak `ETag` and `Vary`; conditionals and ranges on the compressed
//! variant; what is never compressed (PNG, under 1,000 bytes, already
//! encoded by the origin); a behavior without `compress`, whose key holds
//! the normalised `Accept-Encoding` the origin gets; each `Vary` variant of
//! an identity object, and a variant too large to store, compressed once.

mod common;

use std::collections::HashMap;
use std::io::Read;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "assets.example.com";

/// A launcher manifest of about 60 KB: compressible JSON.
fn manifest() -> Vec<u8> {
    let mut s = String::from("{\"files\":[\n");
    for i in 0..800u64 {
        s.push_str(&format!(
            "{{\"path\":\"maps/level_{i:04}.pak\",\"size\":{},\"sha1\":\"{:040x}\"}},\n",
            i * 7919 + 1024,
            u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
        ));
    }
    s.push_str("]}\n");
    s.into_bytes()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096).read_to_end(&mut out).expect("valid brotli");
    out
}

fn header<'a>(h: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    h.get(name).map(String::as_str)
}

fn varies_on_accept_encoding(h: &HashMap<String, String>) -> bool {
    header(h, "vary").is_some_and(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case("accept-encoding")))
}

/// The distribution: the default behavior compresses; `/plain/*` does not.
/// Both use a cache policy with the gzip and brotli flags on.
async fn distribution(gw: &Gateway, origin: &TestOrigin) {
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/cache_policies/p",
            &json!({"min_ttl": 0, "default_ttl": 600, "enable_accept_encoding_gzip": true, "enable_accept_encoding_brotli": true}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"origin": "o", "cache_policy_id": "p", "compress": true},
                "behaviors": [{"path_pattern": "/plain/*", "origin": "o", "cache_policy_id": "p"}]
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "distribution live", || async {
        get(edge, HOST, "/__probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_fetch_serves_brotli_gzip_and_identity() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let body = manifest();
    let origin = TestOrigin::start(vec![(
        "/manifest.json",
        OriginFile::new(body.clone())
            .header("content-type", "application/json")
            .cache_control("max-age=600")
            .etag("\"v1\""),
    )])
    .await;
    distribution(&gw, &origin).await;
    let edge = gw.edge_plain[0];

    // A real client: curl --compressed offers every coding it decodes
    // (deflate, gzip, br, zstd) and gets brotli, which it decodes.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!("curl -sS --compressed -D head.txt -o body.bin -H 'Host: {HOST}' http://{edge}/manifest.json"),
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "curl: {}", text(&out));
    let head = std::fs::read_to_string(dir.path().join("head.txt")).expect("headers").to_ascii_lowercase();
    assert!(head.contains("content-encoding: br"), "{head}");
    assert!(head.contains("x-cache: miss from shardgate"), "{head}");
    assert_eq!(std::fs::read(dir.path().join("body.bin")).expect("body"), body, "curl decodes the original bytes");
    assert_eq!(
        origin.last_headers("/manifest.json").iter().find(|(n, _)| n == "accept-encoding").map(|(_, v)| v.as_str()),
        Some("identity"),
        "the edge asks the origin for the identity body"
    );

    // Explicit codings, and none.
    let (status, h, br) = get(edge, HOST, "/manifest.json", &[("accept-encoding", "br")]).await;
    assert_eq!(
        (status, header(&h, "content-encoding"), header(&h, "x-cache")),
        (200, Some("br"), Some("Hit from shardgate"))
    );
    assert_eq!(header(&h, "etag"), Some("W/\"v1\""), "a compressed variant's ETag is weak: {h:?}");
    assert!(varies_on_accept_encoding(&h), "{h:?}");
    assert_eq!(header(&h, "content-length"), Some(br.len().to_string().as_str()));
    assert!(br.len() * 2 < body.len(), "brotli: {} of {} bytes", br.len(), body.len());
    assert_eq!(unbrotli(&br), body);

    let (status, h, gz) = get(edge, HOST, "/manifest.json", &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!((status, header(&h, "content-encoding"), header(&h, "etag")), (200, Some("gzip"), Some("W/\"v1\"")));
    assert!(varies_on_accept_encoding(&h), "{h:?}");
    assert_eq!(gunzip(&gz), body);

    // Brotli preferred when both are accepted, whatever the order and weights.
    let (_, h, _) = get(edge, HOST, "/manifest.json", &[("accept-encoding", "gzip;q=1.0, br;q=0.5")]).await;
    assert_eq!(header(&h, "content-encoding"), Some("br"));
    // Refused by weight: gzip.
    let (_, h, _) = get(edge, HOST, "/manifest.json", &[("accept-encoding", "br;q=0, gzip")]).await;
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));

    for ae in [None, Some("identity"), Some("deflate"), Some("gzip;q=0, br;q=0")] {
        let headers: Vec<(&str, &str)> = ae.map(|v| ("accept-encoding", v)).into_iter().collect();
        let (status, h, plain) = get(edge, HOST, "/manifest.json", &headers).await;
        assert_eq!((status, header(&h, "content-encoding")), (200, None), "{ae:?}: {h:?}");
        assert_eq!(header(&h, "etag"), Some("\"v1\""), "the identity body keeps its strong ETag");
        assert!(varies_on_accept_encoding(&h), "{ae:?}: {h:?}");
        assert_eq!(plain, body, "{ae:?}");
    }

    // Conditionals: the weak ETag matches (weak comparison), and so does the strong one.
    let (status, h, _) =
        get(edge, HOST, "/manifest.json", &[("accept-encoding", "br"), ("if-none-match", "W/\"v1\"")]).await;
    assert_eq!((status, header(&h, "etag")), (304, Some("W/\"v1\"")));
    assert_eq!(header(&h, "content-encoding"), None, "a 304 has no body to be encoded: {h:?}");
    let (status, _, _) =
        get(edge, HOST, "/manifest.json", &[("accept-encoding", "gzip"), ("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, 304);

    // A range of the compressed variant: bytes of the brotli body.
    let (status, h, part) =
        get(edge, HOST, "/manifest.json", &[("accept-encoding", "br"), ("range", "bytes=0-99")]).await;
    assert_eq!(status, 206, "{h:?}");
    assert_eq!(header(&h, "content-range"), Some(format!("bytes 0-99/{}", br.len()).as_str()));
    assert_eq!(header(&h, "content-encoding"), Some("br"));
    assert_eq!(&part[..], &br[..100]);
    // If-Range needs a strong validator: the weak one sends the whole variant.
    let (status, _, whole) = get(
        edge,
        HOST,
        "/manifest.json",
        &[("accept-encoding", "br"), ("range", "bytes=0-99"), ("if-range", "W/\"v1\"")],
    )
    .await;
    assert_eq!((status, whole.len()), (200, br.len()));

    assert_eq!(origin.hits("/manifest.json"), 1, "one origin fetch in total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_edge_does_not_compress() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let text_body = manifest();
    let mut packed = Vec::new();
    {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(&mut packed, flate2::Compression::fast());
        enc.write_all(&text_body).expect("gzip");
        enc.finish().expect("gzip");
    }
    let origin = TestOrigin::start(vec![
        ("/logo.png", OriginFile::new(vec![0x89u8; 5_000]).header("content-type", "image/png")),
        ("/small.json", OriginFile::new(vec![b' '; 999]).header("content-type", "application/json")),
        (
            "/keep.json",
            OriginFile::new(text_body.clone())
                .header("content-type", "application/json")
                .cache_control("max-age=60, no-transform"),
        ),
        (
            "/pre.json",
            OriginFile::new(packed.clone())
                .header("content-type", "application/json")
                .header("content-encoding", "gzip"),
        ),
        ("/plain/data.json", OriginFile::new(text_body.clone()).header("content-type", "application/json")),
    ])
    .await;
    distribution(&gw, &origin).await;
    let edge = gw.edge_plain[0];

    for path in ["/logo.png", "/small.json", "/keep.json"] {
        for _ in 0..2 {
            let (status, h, b) = get(edge, HOST, path, &[("accept-encoding", "gzip, br")]).await;
            assert_eq!((status, header(&h, "content-encoding")), (200, None), "{path}: {h:?}");
            assert!(!b.is_empty());
        }
        assert_eq!(origin.hits(path), 1, "{path}");
    }

    // Already gzip at the origin: stored and served as sent, never recompressed.
    for ae in ["br", "gzip", "identity"] {
        let (status, h, b) = get(edge, HOST, "/pre.json", &[("accept-encoding", ae)]).await;
        assert_eq!((status, header(&h, "content-encoding")), (200, Some("gzip")), "{ae}: {h:?}");
        assert_eq!(b, packed, "{ae}: the origin's bytes");
    }
    assert_eq!(gunzip(&packed), text_body);
    assert_eq!(origin.hits("/pre.json"), 1);

    // A behavior without compress: the origin gets the normalised
    // Accept-Encoding, which is in the key; its uncompressed answer is served as is.
    let origin_ae = |origin: &TestOrigin| {
        origin.last_headers("/plain/data.json").into_iter().find(|(n, _)| n == "accept-encoding").map(|(_, v)| v)
    };
    let (_, h, b) = get(edge, HOST, "/plain/data.json", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!((header(&h, "content-encoding"), b.len()), (None, text_body.len()));
    assert_eq!(origin_ae(&origin).as_deref(), Some("br,gzip"));
    let (_, h, _) = get(edge, HOST, "/plain/data.json", &[("accept-encoding", "br, gzip;q=0.8")]).await;
    assert_eq!(header(&h, "x-cache"), Some("Hit from shardgate"), "same normalised value, same key");
    assert_eq!(origin.hits("/plain/data.json"), 1);
    get(edge, HOST, "/plain/data.json", &[("accept-encoding", "gzip")]).await;
    assert_eq!((origin.hits("/plain/data.json"), origin_ae(&origin).as_deref()), (2, Some("gzip")));
    get(edge, HOST, "/plain/data.json", &[("accept-encoding", "deflate")]).await;
    assert_eq!((origin.hits("/plain/data.json"), origin_ae(&origin).as_deref()), (3, Some("identity")));
    // Neither coding accepted, or no header at all: no Accept-Encoding in the key, so one entry.
    let (_, h, _) = get(edge, HOST, "/plain/data.json", &[]).await;
    assert_eq!((header(&h, "x-cache"), origin.hits("/plain/data.json")), (Some("Hit from shardgate"), 3));
}

/// Lines of the gateway's log that record a compressed variant being made
/// (a debug line of the compress phase).
fn variants_made(gw: &Gateway) -> usize {
    gw.log().lines().filter(|l| l.contains("made a compressed variant")).count()
}

/// The compress phase's debug lines on, the rest at info.
const COMPRESS_DEBUG: &str = "info,shardgate_http::pipeline::compress=debug";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vary_variant_of_the_identity_is_compressed_once() {
    let gw = gateway().tls_listeners(0).edge_http(1).env("RUST_LOG", COMPRESS_DEBUG).spawn().await;
    let origin = TestOrigin::start(vec![(
        "/strings.json",
        OriginFile::new(manifest())
            .header("content-type", "application/json")
            .cache_control("max-age=600")
            .vary("X-Lang"),
    )])
    .await;
    distribution(&gw, &origin).await;
    // X-Lang goes to the origin without joining the key: the languages
    // are `Vary` variants of one identity key.
    let admin = gw.admin();
    admin
        .put_ok(
            "/apisix/admin/origin_request_policies/lang",
            &json!({"headers": {"behavior": "whitelist", "items": ["X-Lang"]}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({
                "hosts": [HOST],
                "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}},
                "default_behavior": {"origin": "o", "cache_policy_id": "p", "compress": true,
                    "origin_request_policy_id": "lang"}
            }),
        )
        .await;
    let edge = gw.edge_plain[0];
    let probes = std::sync::atomic::AtomicUsize::new(0);
    eventually(5, "the origin request policy is live", || async {
        // A new path each time: a probe's 404 may be cached.
        let path = format!("/__lang{}", probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        get(edge, HOST, &path, &[("x-lang", "probe")]).await;
        origin.last_headers(&path).iter().any(|(n, v)| n == "x-lang" && v == "probe").then_some(())
    })
    .await;
    // The test origin ends a varying body with `|<the request's value>`.
    let expected = |lang: &str| [manifest(), format!("|{lang}").into_bytes()].concat();
    let tail = |b: &[u8]| String::from_utf8_lossy(&b[b.len().saturating_sub(12)..]).into_owned();

    for round in 0..3 {
        for lang in ["en", "de"] {
            let (status, h, b) = get(edge, HOST, "/strings.json", &[("x-lang", lang), ("accept-encoding", "br")]).await;
            assert_eq!((status, header(&h, "content-encoding")), (200, Some("br")), "round {round}, {lang}: {h:?}");
            let plain = unbrotli(&b);
            assert!(plain == expected(lang), "round {round}, {lang}: the body ends {:?}", tail(&plain));
            let cache = if round == 0 { "Miss from shardgate" } else { "Hit from shardgate" };
            assert_eq!(header(&h, "x-cache"), Some(cache), "round {round}, {lang}");
        }
    }
    assert_eq!(origin.hits("/strings.json"), 2, "one identity fetch per language");
    assert_eq!(variants_made(&gw), 2, "one brotli variant per language, each made once:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_too_large_to_store_is_made_once() {
    // Objects up to 4 KiB in memory; the origin's 4 KiB of incompressible
    // bytes (labelled JSON, so the edge tries) fit, their variants not.
    const MAX: usize = 4096;
    let gw = gateway()
        .tls_listeners(0)
        .edge_http(1)
        .edge_yaml(&format!("  cache:\n    memory_bytes: 1048576\n    max_object_bytes: {MAX}\n"))
        .env("RUST_LOG", COMPRESS_DEBUG)
        .spawn()
        .await;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let body: Vec<u8> = (0..MAX)
        .map(|_| {
            // xorshift64: bytes no coding shrinks.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let origin = TestOrigin::start(vec![(
        "/noise.json",
        OriginFile::new(body.clone()).header("content-type", "application/json").cache_control("max-age=600"),
    )])
    .await;
    distribution(&gw, &origin).await;
    let edge = gw.edge_plain[0];

    // The request that makes each variant gets it; the ones after get the
    // identity body (from the cache) without the edge compressing again.
    for (coding, decode) in [("br", unbrotli as fn(&[u8]) -> Vec<u8>), ("gzip", gunzip)] {
        let (status, h, b) = get(edge, HOST, "/noise.json", &[("accept-encoding", coding)]).await;
        assert_eq!((status, header(&h, "content-encoding")), (200, Some(coding)), "{h:?}");
        assert!(b.len() > MAX, "{coding}: {} bytes", b.len());
        assert!(decode(&b) == body, "{coding}: decodes to the origin's bytes");
        for i in 0..3 {
            let (status, h, b) = get(edge, HOST, "/noise.json", &[("accept-encoding", coding)]).await;
            assert_eq!((status, header(&h, "content-encoding")), (200, None), "{coding} {i}: {h:?}");
            assert_eq!(header(&h, "x-cache"), Some("Hit from shardgate"), "{coding} {i}");
            assert!(varies_on_accept_encoding(&h), "{coding} {i}: {h:?}");
            assert!(b == body, "{coding} {i}: the identity body");
        }
    }
    assert_eq!(origin.hits("/noise.json"), 1);
    assert_eq!(variants_made(&gw), 2, "each coding compressed once:\n{}", gw.log());
}
