//! Certificate selection by SNI and the TLS policy of stream listeners.

mod common;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::tls::{presented_cert, roundtrip};
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};

/// A wildcard stream route to one echo server, so every test SNI is routed.
async fn route_all(gw: &shardgate_e2e::Gateway, server: &GameServer) {
    gw.admin()
        .put_ok("/apisix/admin/stream_routes/all", &json!({"sni": "*", "upstream": {"nodes": {server.node(): 1}}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_beats_wildcard_and_a_wildcard_covers_one_label() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let wild = TestCert::ecdsa(&["*.game.com"]);
    let exact = TestCert::ecdsa(&["gs-1.game.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/wild", &wild.ssl_body(&["*.game.com"])).await;
    gw.admin().put_ok("/apisix/admin/ssls/exact", &exact.ssl_body(&["gs-1.game.com"])).await;

    let client = TlsClient::default();
    let addr = gw.tls_addr();
    let mut s = eventually(5, "exact certificate served", || async {
        let s = client.connect(addr, Some("gs-1.game.com")).await.ok()?;
        (presented_cert(&s) == exact.der).then_some(s)
    })
    .await;
    assert_eq!(roundtrip(&mut s, "hi").await, "[gs] hi");
    let s = client.connect(addr, Some("gs-2.game.com")).await.expect("wildcard covers gs-2");
    assert_eq!(presented_cert(&s), wild.der);
    let series =
        format!("shardgate_stream_tls_handshake_failures_total{{listener=\"tls/{addr}\",reason=\"unknown_sni\"}}");
    let before = gw.metric(&series).await;
    let err = client.connect(addr, Some("a.b.game.com")).await.expect_err("two labels deep is not covered");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    assert_eq!(gw.metric(&series).await, before + 1.0, "counted as unknown_sni");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_for_one_sni_are_chosen_by_what_the_client_supports() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let ec = TestCert::ecdsa(&["dual.com"]);
    let rsa = TestCert::rsa(&["dual.com"]);
    // One object with cert/key (RSA) plus certs/keys (ECDSA), APISIX style.
    gw.admin()
        .put_ok(
            "/apisix/admin/ssls/dual",
            &json!({"cert": rsa.cert, "key": rsa.key, "certs": [ec.cert], "keys": [ec.key], "snis": ["dual.com"]}),
        )
        .await;
    let addr = gw.tls_addr();
    let s =
        eventually(5, "dual.com served", || async { TlsClient::default().connect(addr, Some("dual.com")).await.ok() })
            .await;
    assert_eq!(presented_cert(&s), ec.der, "a client that supports both gets ECDSA");
    let s = TlsClient::rsa_only().connect(addr, Some("dual.com")).await.expect("rsa client");
    assert_eq!(presented_cert(&s), rsa.der);
    let s = TlsClient::ecdsa_only().connect(addr, Some("dual.com")).await.expect("ecdsa client");
    assert_eq!(presented_cert(&s), ec.der);

    // Two objects naming the same SNI also combine.
    let ec2 = TestCert::ecdsa(&["split.com"]);
    let rsa2 = TestCert::rsa(&["split.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/split-ec", &ec2.ssl_body(&["split.com"])).await;
    gw.admin().put_ok("/apisix/admin/ssls/split-rsa", &rsa2.ssl_body(&["split.com"])).await;
    let s = eventually(5, "split.com rsa", || async {
        let s = TlsClient::rsa_only().connect(addr, Some("split.com")).await.ok()?;
        (presented_cert(&s) == rsa2.der).then_some(s)
    })
    .await;
    drop(s);
    let s = TlsClient::ecdsa_only().connect(addr, Some("split.com")).await.expect("ecdsa client");
    assert_eq!(presented_cert(&s), ec2.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_is_refused_with_an_alert_unless_a_fallback_is_configured() {
    let gs = GameServer::start("gs").await;
    let cert = TestCert::ecdsa(&["default.game.com"]);

    let strict = gateway().spawn().await;
    strict.admin().put_ok("/apisix/admin/ssls/d", &cert.ssl_body(&["default.game.com"])).await;
    route_all(&strict, &gs).await;
    let addr = strict.tls_addr();
    eventually(5, "the route to load", || async {
        TlsClient::default().connect(addr, Some("default.game.com")).await.ok()
    })
    .await;
    let err = TlsClient::default().connect(addr, None).await.expect_err("no SNI, no fallback");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    assert_eq!(
        strict
            .metric(&format!(
                "shardgate_stream_tls_handshake_failures_total{{listener=\"tls/{addr}\",reason=\"no_sni\"}}"
            ))
            .await,
        1.0
    );

    let lenient = gateway().fallback_sni("default.game.com").spawn().await;
    lenient.admin().put_ok("/apisix/admin/ssls/d", &cert.ssl_body(&["default.game.com"])).await;
    lenient
        .admin()
        .put_ok(
            "/apisix/admin/stream_routes/d",
            &json!({"sni": "default.game.com", "upstream": {"nodes": {gs.node(): 1}}}),
        )
        .await;
    let addr = lenient.tls_addr();
    let mut s = eventually(5, "fallback serves a client without SNI", || async {
        TlsClient::default().connect(addr, None).await.ok()
    })
    .await;
    assert_eq!(presented_cert(&s), cert.der);
    assert_eq!(roundtrip(&mut s, "no sni").await, "[gs] no sni");
    let mut s = TlsClient::default()
        .connect(addr, Some("unknown.example"))
        .await
        .expect("an unknown SNI uses the fallback too");
    assert_eq!(roundtrip(&mut s, "unknown").await, "[gs] unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_12_and_13_only_with_per_object_protocols() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let any = TestCert::ecdsa(&["any.com"]);
    let only13 = TestCert::ecdsa(&["modern.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/any", &any.ssl_body(&["any.com"])).await;
    let mut body = only13.ssl_body(&["modern.com"]);
    body["ssl_protocols"] = json!(["TLSv1.3"]);
    gw.admin().put_ok("/apisix/admin/ssls/modern", &body).await;
    let addr = gw.tls_addr();
    let mut s =
        eventually(5, "certs loaded", || async { TlsClient::tls12_only().connect(addr, Some("any.com")).await.ok() })
            .await;
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(roundtrip(&mut s, "v12").await, "[gs] v12");
    let s = eventually(5, "modern.com loaded", || async {
        TlsClient::default().connect(addr, Some("modern.com")).await.ok()
    })
    .await;
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(TlsClient::tls12_only().connect(addr, Some("modern.com")).await.is_err(), "modern.com refuses TLS 1.2");

    // TLS 1.1 and 1.0 are refused, even to a client that lowers its security level to try.
    let dir = tempfile::tempdir().expect("tempdir");
    for flag in ["-tls1_1", "-tls1"] {
        let out = bash(
            format!("echo | timeout 10 openssl s_client -connect {addr} -servername any.com {flag} -cipher DEFAULT@SECLEVEL=0 2>&1"),
            dir.path(),
        )
        .await;
        let t = text(&out);
        assert!(!out.status.success(), "{flag} must fail: {t}");
        assert!(!t.contains("[gs]"), "{t}");
        assert!(t.contains("alert") || t.contains("no protocols") || t.contains("wrong version"), "{flag}: {t}");
    }
}

/// A client with nothing in common with the server (no signature scheme it
/// can verify, no cipher suite) is refused with `handshake_failure`, the
/// alert TLS scanners expect, not `access_denied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_common_is_refused_with_handshake_failure() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let ec = TestCert::ecdsa(&["ec.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/ec", &ec.ssl_body(&["ec.com"])).await;
    let addr = gw.tls_addr();
    eventually(5, "ec.com served", || async { TlsClient::ecdsa_only().connect(addr, Some("ec.com")).await.ok() }).await;

    // A client that verifies only RSA signatures, against an ECDSA-only name.
    let err = TlsClient::rsa_only().connect(addr, Some("ec.com")).await.expect_err("no common signature scheme");
    assert!(err.to_string().contains("HandshakeFailure"), "{err}");

    // TLS 1.2 with only RSA key exchange suites (none of them ECDHE): no suite in common.
    let dir = tempfile::tempdir().expect("tempdir");
    for args in ["-tls1_2 -cipher AES128-SHA", "-tls1_2 -sigalgs RSA+SHA256", "-tls1_3 -sigalgs rsa_pss_rsae_sha256"] {
        let out = bash(
            format!("echo | timeout 10 openssl s_client -connect {addr} -servername ec.com {args} 2>&1"),
            dir.path(),
        )
        .await;
        let t = text(&out);
        assert!(!t.contains("[gs]"), "{args}: {t}");
        assert!(t.contains("handshake failure"), "{args}: expected alert handshake failure: {t}");
        assert!(!t.contains("access denied"), "{args}: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_on_reconnect() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let cert = TestCert::ecdsa(&["resume.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/r", &cert.ssl_body(&["resume.com"])).await;
    let addr = gw.tls_addr();
    for client in [TlsClient::default(), TlsClient::tls12_only()] {
        let mut first =
            eventually(5, "cert loaded", || async { client.connect(addr, Some("resume.com")).await.ok() }).await;
        // Reading processes the TLS 1.3 ticket that follows the handshake.
        assert_eq!(roundtrip(&mut first, "one").await, "[gs] one");
        assert_eq!(first.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
        drop(first);
        let mut again = client.connect(addr, Some("resume.com")).await.expect("reconnect");
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "a returning player resumes"
        );
        assert_eq!(roundtrip(&mut again, "two").await, "[gs] two");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_objects_are_not_served() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    route_all(&gw, &gs).await;
    let cert = TestCert::ecdsa(&["off.com"]);
    let mut body = cert.ssl_body(&["off.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/off", &body).await;
    let addr = gw.tls_addr();
    eventually(5, "served while enabled", || async { TlsClient::default().connect(addr, Some("off.com")).await.ok() })
        .await;
    body["status"] = json!(0);
    gw.admin().put_ok("/apisix/admin/ssls/off", &body).await;
    eventually(5, "refused once disabled", || async {
        TlsClient::default().connect(addr, Some("off.com")).await.err()
    })
    .await;
}
