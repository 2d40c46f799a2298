//! WAF correctness through the real binary: statement nesting is bounded
//! (a deep web ACL is a 400 naming the limit, never a crash; the 21 levels
//! earlier versions accepted still are), set references are checked at
//! every depth in both directions, and an ACL whose set disappears anyway
//! keeps serving its last good version.

mod common;

use common::gateway;
use serde_json::json;
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

const HOST: &str = "assets.game.example";

fn web_acl(name: &str, rules: &str) -> String {
    format!(
        r#"{{"Name": "{name}", "Scope": "CLOUDFRONT", "DefaultAction": {{"Allow": {{}}}},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "{name}"}},
  "Rules": [{rules}]}}"#
    )
}

fn rule(name: &str, statement: &str) -> String {
    format!(
        r#"{{"Name": "{name}", "Priority": 0, "Action": {{"Block": {{}}}}, "Statement": {statement},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "{name}"}}}}"#
    )
}

/// Whether the user agent is exactly `agent`.
fn agent_is(agent: &str) -> String {
    format!(
        r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"SingleHeader": {{"Name": "user-agent"}}}},
    "PositionalConstraint": "EXACTLY", "SearchString": "{agent}", "TextTransformations": [{{"Type": "NONE", "Priority": 0}}]}}}}"#
    )
}

/// `levels` statements deep: NotStatements around a header match.
fn not_chain(levels: usize) -> String {
    (1..levels).fold(agent_is("bot"), |st, _| format!(r#"{{"NotStatement": {{"Statement": {st}}}}}"#))
}

/// `levels` statements deep: AndStatements of the chain so far and a
/// header match, three JSON levels each (the deepest nesting there is).
fn and_chain(levels: usize, agent: &str) -> String {
    let leaf = agent_is(agent);
    (1..levels).fold(leaf.clone(), |st, _| format!(r#"{{"AndStatement": {{"Statements": [{st}, {leaf}]}}}}"#))
}

async fn protected_distribution(gw: &Gateway, origin: &TestOrigin, acl: &str) {
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": acl,
                    "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "protected distribution live", || async {
        get(edge, HOST, "/", &[("user-agent", "game")]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_are_refused_naming_the_limit_and_the_gateway_keeps_serving() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let admin = gw.admin();
    let r =
        admin.request("PUT", "/apisix/admin/web_acls/live", Some(&web_acl("live", &rule("bots", &not_chain(1))))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    protected_distribution(&gw, &origin, "live").await;
    let edge = gw.edge_plain[0];

    // The deepest legal tree (21 statements, what earlier versions accepted:
    // a stored ACL that deep still loads) is accepted.
    let r = admin
        .request("PUT", "/apisix/admin/web_acls/deepest", Some(&web_acl("deepest", &rule("r", &not_chain(21)))))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // One level more, and 60 levels (JSON depth ~125, under serde_json's own
    // limit of 128, which once overflowed a worker's stack), through both
    // write paths: 400 naming the limit and the path, nothing stored.
    for levels in [22, 60] {
        let body = web_acl("deep", &rule("r", &not_chain(levels)));
        for (method, path) in
            [("PUT", "/apisix/admin/web_acls/deep"), ("POST", "/apisix/admin/schema/validate/web_acls")]
        {
            let r = admin.request(method, path, Some(&body)).await;
            assert_eq!(r.status, 400, "{levels} levels, {method} {path}: {}", r.body);
            let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
            if levels == 22 {
                assert!(msg.contains("at most 21 deep (shardgate's limit"), "{levels} levels: {msg}");
                assert!(
                    msg.contains("Rules[0].Statement.NotStatement.Statement.NotStatement"),
                    "names the path: {msg}"
                );
            } else {
                // The JSON nesting bound of every Admin API body comes first.
                assert!(msg.contains("JSON nests deeper than 80 levels"), "{levels} levels: {msg}");
            }
        }
    }
    assert_eq!(admin.get("/apisix/admin/web_acls/deep").await.status, 404, "nothing stored");

    // 21 levels of AndStatement (JSON depth 67) fit the JSON bound too, and
    // the gateway enforces them: the live ACL becomes that tree for a while.
    let deepest_and = |levels: usize, agent: &str| web_acl("live", &rule("bots", &and_chain(levels, agent)));
    let r = admin.request("PUT", "/apisix/admin/web_acls/live", Some(&deepest_and(22, "deep-bot"))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 21 deep"), "{}", r.body);
    let r = admin.request("PUT", "/apisix/admin/web_acls/live", Some(&deepest_and(21, "deep-bot"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "the 21-level ACL enforced", || async {
        (get(edge, HOST, "/", &[("user-agent", "deep-bot")]).await.0 == 403).then_some(())
    })
    .await;
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "bot")]).await.0, 200, "the old rule is gone");
    let r = admin.request("PUT", "/apisix/admin/web_acls/live", Some(&deepest_and(21, "bot"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "back to blocking bot", || async {
        (get(edge, HOST, "/", &[("user-agent", "bot")]).await.0 == 403).then_some(())
    })
    .await;

    // A rate-based statement stays a rule's top statement.
    let nested = r#"{"NotStatement": {"Statement": {"RateBasedStatement": {"Limit": 100, "AggregateKeyType": "IP"}}}}"#;
    let r = admin.request("PUT", "/apisix/admin/web_acls/nested", Some(&web_acl("nested", &rule("r", nested)))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("Rules[0].Statement.NotStatement.Statement.RateBasedStatement"), "{}", r.body);
    assert!(r.body.contains("cannot be nested"), "{}", r.body);

    // Every player is still served, and the WAF still decides.
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "game")]).await.0, 200);
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "bot")]).await.0, 403);
    assert_eq!(admin.get("/apisix/admin/web_acls/live").await.status, 200, "the Admin API still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_in_scope_down_statements_are_checked_both_ways_and_a_forced_delete_keeps_the_last_good_acl() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let admin = gw.admin();
    // Players from 127.0.0.0/8 may send 10 requests a minute.
    let flood = rule(
        "flood",
        r#"{"RateBasedStatement": {"Limit": 10, "EvaluationWindowSec": 60, "AggregateKeyType": "IP",
            "ScopeDownStatement": {"OrStatement": {"Statements": [
              {"IPSetReferenceStatement": {"ARN": "arn:aws:wafv2:us-east-1:123456789012:global/ipset/players/players"}},
              {"NotStatement": {"Statement": {"ByteMatchStatement": {"FieldToMatch": {"UriPath": {}},
                "PositionalConstraint": "STARTS_WITH", "SearchString": "/", "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}}}]}}}}"#,
    );
    let acl = web_acl("flood", &flood);

    // Referring to a set that does not exist, only inside the scope-down: refused.
    let r = admin.request("PUT", "/apisix/admin/web_acls/flood", Some(&acl)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let path = "Rules[0].Statement.RateBasedStatement.ScopeDownStatement.OrStatement.Statements[0].IPSetReferenceStatement.ARN";
    assert!(r.body.contains(path) && r.body.contains("does not exist"), "{}", r.body);

    let r = admin
        .request("PUT", "/apisix/admin/ip_sets/players", Some(r#"{"Name": "players", "Addresses": ["127.0.0.0/8"]}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.request("PUT", "/apisix/admin/web_acls/flood", Some(&acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    protected_distribution(&gw, &origin, "flood").await;

    // Still in use there: refused, in APISIX's words.
    let r = admin.delete("/apisix/admin/ip_sets/players").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("web_acl [flood] is still using it now"), "{}", r.body);

    // Flood until the rule blocks (the set-up probe counted too).
    let edge = gw.edge_plain[0];
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(get(edge, HOST, "/", &[]).await.0);
    }
    assert!(statuses.contains(&403), "the rate limit applies: {statuses:?}");

    // Deleted anyway: the ACL no longer compiles; its last good version keeps
    // serving (still limiting, with its counts), the distribution is not left out.
    let r = admin.delete("/apisix/admin/ip_sets/players?force=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(5, "the problem is reported", || async {
        (gw.metric("shardgate_config_problems").await >= 1.0).then_some(())
    })
    .await;
    let log = gw.log();
    assert!(log.contains("the last good version keeps serving"), "{log}");
    let (status, headers, _) = get(edge, HOST, "/", &[]).await;
    assert_eq!(status, 403, "still limited by the last good ACL, not 404");
    assert_eq!(headers.get("x-cache").map(String::as_str), Some("Error from shardgate"));
    let other = gw.metric("shardgate_waf_requests_total{web_acl=\"flood\",rule=\"flood\",action=\"block\"}").await;
    assert!(other >= 2.0, "blocked by the kept rule: {other}");
}
