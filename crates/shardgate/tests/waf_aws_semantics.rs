//! AWS WAF semantics on the edge, through the real binary: Block custom
//! response headers as written (a 302 redirects), `CustomRequestHandling`
//! headers inserted into the origin request, CloudFormation's spellings,
//! and AWS's 200-header `OversizeHandling` reachable past hyper's default
//! header-count limit.

mod common;

use common::{bash, gateway, text};
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "patch.game.example";

fn web_acl(default: &str, rules: &str) -> String {
    format!(
        r#"{{"Name": "edge", "Scope": "CLOUDFRONT", "DefaultAction": {default},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "edge"}},
  "Rules": [{rules}]}}"#
    )
}

fn rule(name: &str, priority: u32, action: &str, statement: &str) -> String {
    format!(
        r#"{{"Name": "{name}", "Priority": {priority}, "Action": {action}, "Statement": {statement},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "{name}"}}}}"#
    )
}

fn user_agent(search: &str) -> String {
    format!(
        r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"SingleHeader": {{"Name": "user-agent"}}}}, "PositionalConstraint": "CONTAINS",
           "SearchString": "{search}", "TextTransformations": [{{"Type": "NONE", "Priority": 0}}]}}}}"#
    )
}

async fn protect(gw: &Gateway, origin: &TestOrigin, acl: &str) {
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/edge", Some(acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": "edge",
                    "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "protected distribution live", || async {
        get(edge, HOST, "/probe", &[]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_redirects_with_its_location_and_allow_and_count_insert_request_headers() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let files = ["/a", "/b", "/c", "/d"].map(|p| (p, OriginFile::new("ok")));
    let origin = TestOrigin::start(files.to_vec()).await;
    let insert = |action: &str, name: &str, value: &str| {
        format!(
            r#"{{"{action}": {{"CustomRequestHandling": {{"InsertHeaders": [{{"Name": "{name}", "Value": "{value}"}}]}}}}}}"#
        )
    };
    let redirect = r#"{"Block": {"CustomResponse": {"ResponseCode": 302,
        "ResponseHeaders": [{"Name": "Location", "Value": "https://status.game.example/maintenance"}]}}}"#;
    let rules = [
        rule("tag-bots", 0, &insert("Count", "bot", "suspected"), &user_agent("bot")),
        rule("launcher", 1, &insert("Allow", "client", "launcher"), &user_agent("Launcher")),
        rule("old-client", 2, redirect, &user_agent("Client/1.")),
    ]
    .join(",");
    protect(&gw, &origin, &web_acl(&insert("Allow", "checked", "default"), &rules)).await;
    let port = gw.edge_plain[0].port();

    // curl sees the redirect as written, without AWS's request-header prefix.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!(
            "curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' -A 'Client/1.9' \
             --resolve {HOST}:{port}:127.0.0.1 http://{HOST}:{port}/a --max-time 10"
        ),
        dir.path(),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "302 https://status.game.example/maintenance", "{}", text(&out));
    assert_eq!(origin.hits("/a"), 0, "the blocked request never reached the origin");

    let edge = gw.edge_plain[0];
    let waf_headers = |path: &str| {
        let mut h: Vec<(String, String)> =
            origin.last_headers(path).into_iter().filter(|(k, _)| k.starts_with("x-amzn-waf-")).collect();
        h.sort();
        h
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    // A Count rule's header and the Allow rule's.
    assert_eq!(get(edge, HOST, "/b", &[("user-agent", "bot Launcher")]).await.0, 200);
    assert_eq!(waf_headers("/b"), vec![pair("x-amzn-waf-bot", "suspected"), pair("x-amzn-waf-client", "launcher")]);
    // A Count rule's header and the default action's.
    assert_eq!(get(edge, HOST, "/c", &[("user-agent", "bot")]).await.0, 200);
    assert_eq!(waf_headers("/c"), vec![pair("x-amzn-waf-bot", "suspected"), pair("x-amzn-waf-checked", "default")]);
    // A viewer cannot forge one: the WAF's value replaces the viewer's.
    assert_eq!(get(edge, HOST, "/d", &[("user-agent", "game"), ("x-amzn-waf-checked", "forged")]).await.0, 200);
    assert_eq!(waf_headers("/d"), vec![pair("x-amzn-waf-checked", "default")]);
}

/// A web ACL as a CloudFormation template writes it (`Arn`,
/// `SearchStringBase64`, `Tags`) is accepted and enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudformation_style_web_acl_is_accepted() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let r = gw
        .admin()
        .request(
            "PUT",
            "/apisix/admin/ip_sets/banned",
            Some(
                r#"{"Name": "banned", "Scope": "CLOUDFRONT", "IPAddressVersion": "IPV4", "Addresses": ["192.0.2.0/24"],
                     "Tags": [{"Key": "team", "Value": "ops"}]}"#,
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Properties of an AWS::WAFv2::WebACL resource.
    let acl = r#"{"Name": "edge", "Scope": "CLOUDFRONT", "DefaultAction": {"Allow": {}},
      "Tags": [{"Key": "game", "Value": "patch"}],
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "edge"},
      "Rules": [
        {"Name": "banned", "Priority": 0, "Action": {"Block": {}},
         "Statement": {"IPSetReferenceStatement": {"Arn": "arn:aws:wafv2:us-east-1:123456789012:global/ipset/banned/banned",
           "IPSetForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "NO_MATCH", "Position": "FIRST"}}},
         "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "banned"}},
        {"Name": "postman", "Priority": 1, "Action": {"Block": {}},
         "Statement": {"ByteMatchStatement": {"SearchStringBase64": "UG9zdG1hblJ1bnRpbWU=",
           "FieldToMatch": {"SingleHeader": {"Name": "user-agent"}}, "PositionalConstraint": "STARTS_WITH",
           "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}},
         "RuleLabels": [{"Name": "tools:postman"}],
         "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "postman"}}]}"#;
    protect(&gw, &origin, acl).await;
    let edge = gw.edge_plain[0];
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "PostmanRuntime/7.29.2")]).await.0, 403);
    assert_eq!(get(edge, HOST, "/", &[("x-forwarded-for", "192.0.2.7")]).await.0, 403);
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "X-UnrealEngine-Agent")]).await.0, 200);
    // Exactly one of SearchString and SearchStringBase64.
    let both = acl.replace(r#""SearchStringBase64""#, r#""SearchString": "x", "SearchStringBase64""#);
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/edge", Some(&both)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("exactly one of SearchString and SearchStringBase64"), "{}", r.body);
}

/// hyper refuses HTTP/1.1 requests with more than 100 headers by default
/// (431); AWS inspects 200 and applies `OversizeHandling` past them, which
/// the WAF must get to see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_210_headers_reaches_the_waf_oversize_handling() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let oversize = r#"{"ByteMatchStatement": {"FieldToMatch": {"Headers": {"MatchPattern": {"All": {}}, "MatchScope": "VALUE",
        "OversizeHandling": "MATCH"}}, "PositionalConstraint": "CONTAINS", "SearchString": "never-sent",
        "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}"#;
    protect(&gw, &origin, &web_acl(r#"{"Allow": {}}"#, &rule("too-many", 0, r#"{"Block": {}}"#, oversize))).await;
    let edge = gw.edge_plain[0];
    let many: Vec<(String, String)> = (0..210).map(|i| (format!("x-h-{i:03}"), "v".to_owned())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, headers, _) = get(edge, HOST, "/", &refs).await;
    assert_eq!(status, 403, "OversizeHandling MATCH, not hyper's 431");
    assert_eq!(headers.get("x-cache").map(String::as_str), Some("Error from shardgate"));
    assert_eq!(get(edge, HOST, "/", &refs[..150]).await.0, 200, "150 headers are inspected, none matches");
}

/// AWS: "You can specify any header name except for content-type" in a
/// custom response; the framing and hop-by-hop headers would break the
/// response shardgate writes. Both write paths refuse them naming the JSON
/// path; a custom response with its own headers and body goes out with one
/// Content-Type, the body's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_response_headers_that_would_break_the_response_are_refused() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let block = |name: &str| {
        format!(
            r#"{{"Block": {{"CustomResponse": {{"ResponseCode": 429, "CustomResponseBodyKey": "slow",
                "ResponseHeaders": [{{"Name": "Retry-After", "Value": "30"}}, {{"Name": "{name}", "Value": "x"}}]}}}}}}"#
        )
    };
    let acl = |name: &str| {
        web_acl(r#"{"Allow": {}}"#, &rule("old-client", 0, &block(name), &user_agent("Client/1.")))
            .replacen(
                r#""Rules""#,
                r#""CustomResponseBodies": {"slow": {"ContentType": "APPLICATION_JSON", "Content": "{\"retry\": 30}"}}, "Rules""#,
                1,
            )
    };
    for name in ["Content-Type", "content-length", "Transfer-Encoding", "Connection", "Upgrade"] {
        for (method, path) in
            [("PUT", "/apisix/admin/web_acls/edge"), ("POST", "/apisix/admin/schema/validate/web_acls")]
        {
            let r = gw.admin().request(method, path, Some(&acl(name))).await;
            assert_eq!(r.status, 400, "{name}, {method} {path}: {}", r.body);
            let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
            assert!(
                msg.contains("Rules[0].Action.Block.CustomResponse.ResponseHeaders[1].Name")
                    && msg.contains(&format!("{name:?} cannot be a custom response header")),
                "{name}: {msg}"
            );
        }
    }
    assert_eq!(gw.admin().get("/apisix/admin/web_acls/edge").await.status, 404, "nothing stored");

    protect(&gw, &origin, &acl("X-Reason")).await;
    let port = gw.edge_plain[0].port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        format!("curl -s -i -A 'Client/1.9' --resolve {HOST}:{port}:127.0.0.1 http://{HOST}:{port}/ --max-time 10"),
        dir.path(),
    )
    .await;
    let response = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(response.starts_with("HTTP/1.1 429"), "{response}");
    let content_types: Vec<&str> =
        response.lines().filter(|l| l.to_ascii_lowercase().starts_with("content-type:")).collect();
    assert_eq!(content_types.len(), 1, "{response}");
    assert!(content_types[0].contains("application/json"), "{response}");
    assert!(response.lines().any(|l| l.eq_ignore_ascii_case("retry-after: 30")), "{response}");
    assert!(response.ends_with(r#"{"retry": 30}"#), "{response}");
}
