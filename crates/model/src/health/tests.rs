use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<HealthChecks, Invalid> {
    HealthChecks::from_json(&v)
}

fn field(v: Value) -> String {
    parse(v).expect_err("refused").field
}

#[test]
fn active_alone_takes_apisix_defaults() {
    let c = parse(json!({"active": {}})).expect("valid");
    let a = &c.active;
    assert_eq!(a.kind, ProbeKind::Http);
    assert_eq!(a.timeout, Duration::from_secs(1));
    assert_eq!(a.concurrency, 10);
    assert_eq!((a.host.as_deref(), a.port), (None, None));
    assert_eq!((&*a.http_method, &*a.http_path, &*a.http_req_body), ("GET", "/", ""));
    assert!(a.https_verify_certificate);
    assert!(a.req_headers.is_empty());
    assert_eq!(a.healthy.interval, Duration::from_secs(1));
    assert_eq!(a.healthy.http_statuses.codes(), &[200, 302]);
    assert_eq!(a.healthy.successes, 2);
    assert_eq!(a.unhealthy.interval, Duration::from_secs(1));
    assert_eq!(a.unhealthy.http_statuses.codes(), &[429, 404, 500, 501, 502, 503, 504, 505]);
    assert_eq!((a.unhealthy.http_failures, a.unhealthy.tcp_failures, a.unhealthy.timeouts), (5, 2, 3));
    // Passive left out: lua-resty-healthcheck's defaults, as APISIX runs it.
    assert_eq!(c.passive, PassiveCheck::default());
    assert_eq!(c.passive.healthy.successes, 5);
    assert_eq!((c.passive.unhealthy.tcp_failures, c.passive.unhealthy.timeouts), (2, 7));
}

#[test]
fn every_field_is_read() {
    let c = parse(json!({
        "active": {
            "type": "https", "timeout": 0.5, "concurrency": 3, "host": "health.game.example", "port": 8081,
            "http_method": "POST", "http_path": "/status?deep=1", "http_req_body": "{}",
            "https_verify_certificate": false, "req_headers": ["User-Agent: shardgate", "X-Probe:yes"],
            "healthy": {"interval": 2, "http_statuses": [200], "successes": 3},
            "unhealthy": {"interval": 5, "http_statuses": [500, 503], "http_failures": 4, "tcp_failures": 1, "timeouts": 9}
        },
        "passive": {
            "type": "tcp",
            "healthy": {"http_statuses": [200], "successes": 1},
            "unhealthy": {"http_statuses": [502], "tcp_failures": 3, "timeouts": 4, "http_failures": 6}
        }
    }))
    .expect("valid");
    let a = &c.active;
    assert_eq!(a.kind, ProbeKind::Https);
    assert_eq!(a.timeout, Duration::from_millis(500));
    assert_eq!(a.concurrency, 3);
    assert_eq!((a.host.as_deref(), a.port), (Some("health.game.example"), Some(8081)));
    assert_eq!((&*a.http_method, &*a.http_path, &*a.http_req_body), ("POST", "/status?deep=1", "{}"));
    assert!(!a.https_verify_certificate);
    let headers: Vec<&str> = a.req_headers.iter().map(|h| &**h).collect();
    assert_eq!(headers, ["User-Agent: shardgate", "X-Probe: yes"]);
    assert_eq!((a.healthy.interval, a.healthy.successes), (Duration::from_secs(2), 3));
    assert!(a.healthy.http_statuses.contains(200) && !a.healthy.http_statuses.contains(302));
    assert_eq!(a.unhealthy.interval, Duration::from_secs(5));
    assert_eq!((a.unhealthy.http_failures, a.unhealthy.tcp_failures, a.unhealthy.timeouts), (4, 1, 9));
    let p = &c.passive;
    assert_eq!(p.kind, ProbeKind::Tcp);
    assert_eq!(p.healthy.successes, 1);
    assert_eq!((p.unhealthy.tcp_failures, p.unhealthy.timeouts, p.unhealthy.http_failures), (3, 4, 6));
    assert_eq!(p.unhealthy.http_statuses.codes(), &[502]);
}

#[test]
fn passive_alone_is_refused_naming_active() {
    let e = parse(json!({"passive": {"unhealthy": {"tcp_failures": 2}}})).expect_err("passive only");
    assert_eq!(e.field, "active");
    assert!(e.reason.contains("passive checks alone are refused"), "{e}");
    assert_eq!(field(json!({})), "active");
}

#[test]
fn ranges_and_types_name_the_path() {
    for (doc, path) in [
        (json!({"active": {"healthy": {"interval": 0}}}), "active.healthy.interval"),
        (json!({"active": {"healthy": {"interval": 1.5}}}), "active.healthy.interval"),
        (json!({"active": {"healthy": {"interval": 3601}}}), "active.healthy.interval"),
        (json!({"active": {"unhealthy": {"interval": "1"}}}), "active.unhealthy.interval"),
        (json!({"active": {"healthy": {"successes": 255}}}), "active.healthy.successes"),
        (json!({"active": {"unhealthy": {"tcp_failures": 0}}}), "active.unhealthy.tcp_failures"),
        (json!({"active": {"unhealthy": {"timeouts": -1}}}), "active.unhealthy.timeouts"),
        (json!({"active": {"unhealthy": {"http_failures": 300}}}), "active.unhealthy.http_failures"),
        (json!({"active": {"timeout": 0}}), "active.timeout"),
        (json!({"active": {"timeout": 301}}), "active.timeout"),
        (json!({"active": {"timeout": "1"}}), "active.timeout"),
        (json!({"active": {"concurrency": 0}}), "active.concurrency"),
        (json!({"active": {"concurrency": 257}}), "active.concurrency"),
        (json!({"active": {"port": 0}}), "active.port"),
        (json!({"active": {"port": 65536}}), "active.port"),
        (json!({"active": {"type": "udp"}}), "active.type"),
        (json!({"active": {"https_verify_certificate": "no"}}), "active.https_verify_certificate"),
        (json!({"active": {"http_method": "get"}}), "active.http_method"),
        (json!({"active": {"host": "*.game.example"}}), "active.host"),
        (json!({"active": {"host": "a b"}}), "active.host"),
        (json!({"active": {"healthy": {"http_statuses": []}}}), "active.healthy.http_statuses"),
        (json!({"active": {"healthy": {"http_statuses": [200, 199]}}}), "active.healthy.http_statuses[1]"),
        (json!({"active": {"healthy": {"http_statuses": [200, 200]}}}), "active.healthy.http_statuses[1]"),
        (json!({"active": {"unhealthy": {"http_statuses": [600]}}}), "active.unhealthy.http_statuses[0]"),
        (json!({"active": {}, "passive": {"type": "grpc"}}), "passive.type"),
        (json!({"active": {}, "passive": {"healthy": {"successes": 0}}}), "passive.healthy.successes"),
        (json!({"active": {}, "passive": {"unhealthy": {"timeouts": 255}}}), "passive.unhealthy.timeouts"),
        (json!({"active": {}, "passive": {"unhealthy": {"interval": 1}}}), "passive.unhealthy.interval"),
        (json!({"active": {"healthy": {"tcp_failures": 1}}}), "active.healthy.tcp_failures"),
        (json!({"active": {"https_sni": "x"}}), "active.https_sni"),
        (json!({"active": {}, "bogus": 1}), "bogus"),
        (json!({"active": 1}), "active"),
        (json!({"active": {"healthy": []}}), "active.healthy"),
    ] {
        assert_eq!(field(doc.clone()), path, "{doc}");
    }
    assert!(parse(json!({"active": {"healthy": {"interval": 3600, "successes": 254}}})).is_ok());
    assert!(parse(json!({"active": {"concurrency": 256, "timeout": 300}})).is_ok());
}

#[test]
fn probe_requests_cannot_be_smuggled() {
    for path in ["status", "/a b", "/a\r\nX: y", "/\u{7f}"] {
        let e = parse(json!({"active": {"http_path": path}})).expect_err(path);
        assert_eq!(e.field, "active.http_path", "{path:?}");
    }
    assert_eq!(field(json!({"active": {"http_path": "/".repeat(MAX_HTTP_PATH + 1)}})), "active.http_path");
    assert_eq!(field(json!({"active": {"http_req_body": "x".repeat(MAX_REQ_BODY + 1)}})), "active.http_req_body");
    for (headers, path) in [
        (json!([]), "active.req_headers"),
        (json!("X: y"), "active.req_headers"),
        (json!(["X: y", 1]), "active.req_headers[1]"),
        (json!(["no colon"]), "active.req_headers[0]"),
        (json!([": empty name"]), "active.req_headers[0]"),
        (json!(["Bad Name: x"]), "active.req_headers[0]"),
        (json!(["X: a\r\nInjected: 1"]), "active.req_headers[0]"),
        (json!(["X: ok", "Host: other"]), "active.req_headers[1]"),
        (json!(["content-length: 5"]), "active.req_headers[0]"),
        (json!(["Transfer-Encoding: chunked"]), "active.req_headers[0]"),
        (json!(["Connection: keep-alive"]), "active.req_headers[0]"),
        (json!(["X: ".to_owned() + &"v".repeat(MAX_REQ_HEADER)]), "active.req_headers[0]"),
    ] {
        let doc = json!({"active": {"req_headers": headers}});
        assert_eq!(field(doc.clone()), path, "{doc}");
    }
    let many: Vec<String> = (0..=MAX_REQ_HEADERS).map(|i| format!("X-{i}: v")).collect();
    assert_eq!(field(json!({"active": {"req_headers": many}})), "active.req_headers");
}
