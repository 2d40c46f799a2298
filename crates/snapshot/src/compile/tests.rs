use super::*;
use crate::RouteQuery;
use shardgate_model::{Change, ResourceId};
use shardgate_upstream::{ConnectDefaults, Resolver, UpstreamMetrics};

fn registry() -> Registry {
    Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::default(),
        ConnectDefaults::default(),
    )
}

fn put(state: &mut ConfigState, kind: ResourceKind, id: &str, rev: u64, v: serde_json::Value) {
    state
        .apply(Change::Put {
            kind,
            id: ResourceId::parse(id).expect("id"),
            revision: rev,
            value: v.to_string().into_bytes(),
        })
        .expect("valid resource");
}

fn cert(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

fn query(sni: &str) -> RouteQuery<'_> {
    RouteQuery {
        sni: Some(sni),
        server_port: 8888,
        server_addr: "127.0.0.1".parse().expect("ip"),
        remote_addr: "127.0.0.1".parse().expect("ip"),
    }
}

const DEFAULTS: CompileDefaults = CompileDefaults { idle_timeout: Duration::from_secs(600), geo: None };

#[test]
fn routes_certs_and_references_compile() {
    let mut state = ConfigState::default();
    let (c, k) = cert("gs-1.com");
    put(&mut state, ResourceKind::Ssls, "1", 1, serde_json::json!({"cert": c, "key": k, "snis": ["gs-1.com"]}));
    put(
        &mut state,
        ResourceKind::Upstreams,
        "u",
        2,
        serde_json::json!({"nodes": {"127.0.0.1:9000": 1}, "timeout": {"connect": 1, "send": 30, "read": 30}}),
    );
    put(&mut state, ResourceKind::StreamRoutes, "r1", 3, serde_json::json!({"sni": "gs-1.com", "upstream_id": "u"}));
    put(
        &mut state,
        ResourceKind::StreamRoutes,
        "r2",
        4,
        serde_json::json!({"sni": "gs-2.com", "upstream_id": "missing"}),
    );
    put(
        &mut state,
        ResourceKind::StreamRoutes,
        "r3",
        5,
        serde_json::json!({"sni": "gs-3.com", "upstream": {"nodes": {"127.0.0.1:9001": 1}}, "idle_timeout": 5}),
    );

    let reg = registry();
    let tls = TlsShared::new(64).expect("tls");
    let snap = compile(&state, &reg, &tls, &Snapshot::default(), &DEFAULTS);
    assert_eq!(snap.generation, 5);
    assert_eq!(snap.stream.len(), 2, "the route with a dangling upstream_id is left out");
    assert_eq!(snap.problems.len(), 1);
    assert_eq!(snap.problems[0].invalid.field, "upstream_id");
    assert!(snap.certs.find("gs-1.com").is_some());
    assert!(snap.certs.find("gs-2.com").is_none());

    let (t, _) = snap.stream.find(&query("gs-1.com")).expect("gs-1 routed");
    assert_eq!(t.idle_timeout, Duration::from_secs(30), "upstream timeout.read");
    let (t, _) = snap.stream.find(&query("gs-3.com")).expect("gs-3 routed");
    assert_eq!(t.idle_timeout, Duration::from_secs(5), "route idle_timeout wins");
    assert_eq!(reg.len(), 2);
}

#[test]
fn unchanged_parts_are_reused_and_removed_ones_dropped() {
    let mut state = ConfigState::default();
    let (c, k) = cert("gs-1.com");
    put(&mut state, ResourceKind::Ssls, "1", 1, serde_json::json!({"cert": c, "key": k, "sni": "gs-1.com"}));
    put(
        &mut state,
        ResourceKind::StreamRoutes,
        "r1",
        2,
        serde_json::json!({"sni": "gs-1.com", "upstream": {"nodes": {"127.0.0.1:9000": 1}}}),
    );
    put(
        &mut state,
        ResourceKind::StreamRoutes,
        "r2",
        3,
        serde_json::json!({"sni": "gs-2.com", "upstream": {"nodes": {"127.0.0.1:9002": 1}}}),
    );
    let reg = registry();
    let tls = TlsShared::new(64).expect("tls");
    let first = compile(&state, &reg, &tls, &Snapshot::default(), &DEFAULTS);

    state
        .apply(Change::Delete {
            kind: ResourceKind::StreamRoutes,
            id: ResourceId::parse("r2").expect("id"),
            revision: 4,
        })
        .expect("delete");
    let second = compile(&state, &reg, &tls, &first, &DEFAULTS);
    let a = &first.stream.find(&query("gs-1.com")).expect("r1").0.upstream;
    let b = &second.stream.find(&query("gs-1.com")).expect("r1").0.upstream;
    assert!(Arc::ptr_eq(a, b), "the upstream runtime survives an unrelated change");
    let ca = &first.certs.find("gs-1.com").expect("cert").config;
    let cb = &second.certs.find("gs-1.com").expect("cert").config;
    assert!(Arc::ptr_eq(ca, cb), "the TLS config is not rebuilt");
    assert!(Arc::ptr_eq(&first.certs, &second.certs), "no SSL object changed: the whole table is reused");
    assert!(second.stream.find(&query("gs-2.com")).is_none());
    assert_eq!(reg.len(), 1, "the deleted route's upstream left the registry");

    let (c2, k2) = cert("gs-2.com");
    put(&mut state, ResourceKind::Ssls, "2", 5, serde_json::json!({"cert": c2, "key": k2, "sni": "gs-2.com"}));
    let third = compile(&state, &reg, &tls, &second, &DEFAULTS);
    assert!(!Arc::ptr_eq(&second.certs, &third.certs), "an SSL object was added: a new table");
    assert!(third.certs.find("gs-2.com").is_some());
    let cc = &third.certs.find("gs-1.com").expect("cert").config;
    assert!(Arc::ptr_eq(ca, cc), "the unchanged group's config is still reused");
}

#[test]
fn a_route_whose_web_acl_is_missing_is_left_out() {
    let mut state = ConfigState::default();
    let acl = serde_json::json!({"Name": "players", "DefaultAction": {"Allow": {}}, "Rules": [],
        "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "p"}});
    put(&mut state, ResourceKind::WebAcls, "players", 1, acl);
    let upstream = serde_json::json!({"nodes": {"127.0.0.1:9000": 1}});
    let with = |acl: &str| serde_json::json!({"sni": "gs-1.com", "upstream": upstream, "web_acl_id": acl});
    put(&mut state, ResourceKind::StreamRoutes, "r1", 2, with("players"));
    put(&mut state, ResourceKind::StreamRoutes, "r2", 3, with("gone"));

    let snap = compile(&state, &registry(), &TlsShared::new(64).expect("tls"), &Snapshot::default(), &DEFAULTS);
    let (t, _) = snap.stream.find(&query("gs-1.com")).expect("r1 routed");
    assert_eq!(t.route.id.as_str(), "r1");
    assert_eq!(t.waf.as_ref().map(|a| a.id.as_str()), Some("players"));
    assert_eq!(snap.stream.len(), 1, "r2 is not served without its ACL");
    assert_eq!(snap.problems.len(), 1);
    assert_eq!((snap.problems[0].id.as_str(), snap.problems[0].invalid.field.as_str()), ("r2", "web_acl_id"));
}

/// The per-generation flag that lets listeners skip the ClientHello copy
/// and the fingerprint: set exactly when a loaded web ACL reads JA3/JA4,
/// through a field or a rate-based key, and cleared when it goes.
#[test]
fn the_fingerprint_flag_follows_the_loaded_acls() {
    let acl = |statement: serde_json::Value| {
        serde_json::json!({"Name": "a", "DefaultAction": {"Allow": {}},
            "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "a"},
            "Rules": [{"Name": "r", "Priority": 0, "Action": {"Block": {}}, "Statement": statement,
                "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}}]})
    };
    let flag = |state: &ConfigState| {
        compile(state, &registry(), &TlsShared::new(64).expect("tls"), &Snapshot::default(), &DEFAULTS)
            .reads_tls_fingerprints
    };
    let mut state = ConfigState::default();
    assert!(!flag(&state), "no ACL");
    let path = serde_json::json!({"ByteMatchStatement": {"FieldToMatch": {"UriPath": {}}, "PositionalConstraint": "EXACTLY",
        "SearchString": "/x", "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}});
    put(&mut state, ResourceKind::WebAcls, "paths", 1, acl(path));
    assert!(!flag(&state), "an ACL that reads no fingerprint");
    let ja4 = serde_json::json!({"ByteMatchStatement": {"FieldToMatch": {"JA4Fingerprint": {"FallbackBehavior": "NO_MATCH"}},
        "PositionalConstraint": "EXACTLY", "SearchString": "t13d1516h2_8daaf6152771_e5627efa2ab1",
        "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}});
    put(&mut state, ResourceKind::WebAcls, "bots", 2, acl(ja4));
    assert!(flag(&state), "a JA4Fingerprint field");
    let rate = serde_json::json!({"RateBasedStatement": {"Limit": 100, "AggregateKeyType": "CUSTOM_KEYS",
        "CustomKeys": [{"JA3Fingerprint": {"FallbackBehavior": "NO_MATCH"}}]}});
    put(&mut state, ResourceKind::WebAcls, "bots", 3, acl(rate));
    assert!(flag(&state), "a JA3Fingerprint rate key");
    state
        .apply(Change::Delete { kind: ResourceKind::WebAcls, id: ResourceId::parse("bots").expect("id"), revision: 4 })
        .expect("delete");
    assert!(!flag(&state), "the fingerprint ACL is gone");
}
