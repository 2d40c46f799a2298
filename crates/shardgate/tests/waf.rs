//! Seed 003 scenario 3 on the edge: AWS WAF v2 web ACLs (the seed's rule
//! JSON verbatim), IP sets, Count, metrics, sampled requests, validation.

mod common;

use common::{bash, gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::origin::get;
use shardgate_e2e::{Gateway, OriginFile, TestOrigin, eventually};

/// The rule of seed 003 ("最终规则的 Json 格式参考"), verbatim.
const SEED_RULE: &str = r#"{"Name": "StringMatch","Priority": 0,"Action": {"Block": {}},"VisibilityConfig": {"SampledRequestsEnabled": true,"CloudWatchMetricsEnabled": true,"MetricName": "StringMatch"},"Statement": {"OrStatement": {"Statements": [{"ByteMatchStatement": {"FieldToMatch": {"Headers": {"MatchScope": "ALL","MatchPattern": {"All": {}},"OversizeHandling": "CONTINUE"}},"PositionalConstraint": "STARTS_WITH","SearchString": "PostmanRuntime","TextTransformations": [{"Type": "NONE","Priority": 0}]}},{"RegexMatchStatement": {"FieldToMatch": {"Headers": {"MatchScope": "ALL","MatchPattern": {"All": {}},"OversizeHandling": "CONTINUE"}},"TextTransformations": [{"Type": "NONE","Priority": 0}],"RegexString": "/PostmanRuntime[ \\/]+([0-9\\.]+)/gi"}}]}}
}"#;

const HOST: &str = "www.company.com";

fn web_acl(rules: &str) -> String {
    format!(
        r#"{{"Name": "game-assets", "Scope": "CLOUDFRONT", "DefaultAction": {{"Allow": {{}}}},
  "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "game-assets"}},
  "Rules": [{rules}]}}"#
    )
}

async fn setup(gw: &Gateway, origin: &TestOrigin) {
    gw.admin()
        .put_ok(
            "/apisix/admin/distributions/d",
            &json!({"hosts": [HOST], "web_acl_id": "seed",
                    "origins": {"o": {"upstream": {"nodes": {origin.addr.to_string(): 1}}}}}),
        )
        .await;
    let edge = gw.edge_plain[0];
    eventually(5, "protected distribution live", || async {
        get(edge, HOST, "/", &[("user-agent", "X-UnrealEngine-Agent")]).await.1.contains_key("x-cache").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_scenario_3_blocks_postman_lets_unreal_through_and_count_counts() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("text=ok"))]).await;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/seed", Some(&web_acl(SEED_RULE))).await;
    assert_eq!(r.status, 201, "the seed's rule is accepted verbatim: {}", r.body);
    setup(&gw, &origin).await;
    let port = gw.edge_plain[0].port();
    let dir = tempfile::tempdir().expect("tempdir");
    let curl = |ua: &str| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --resolve {HOST}:{port}:127.0.0.1 -H 'User-Agent: {ua}' http://{HOST}:{port}/"
        )
    };
    let run = |script: String| {
        let dir = dir.path().to_owned();
        async move {
            let out = bash(script, &dir).await;
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert_eq!(run(curl("PostmanRuntime/7.29.2")).await, "403");
    assert_eq!(run(curl("X-UnrealEngine-Agent")).await, "200");
    assert_eq!(origin.total_hits(), 1, "the blocked request never reached the origin");
    let block = "shardgate_waf_requests_total{web_acl=\"seed\",rule=\"StringMatch\",action=\"block\"}";
    assert_eq!(gw.metric(block).await, 1.0, "{}", gw.metrics_text().await);
    let allowed = "shardgate_waf_requests_total{web_acl=\"seed\",rule=\"default\",action=\"allow\"}";
    assert_eq!(gw.metric(allowed).await, 2.0, "the set-up probe and the Unreal request");

    // Sampled requests: the block, with who and what.
    let s = gw.admin().get("/apisix/admin/web_acls/seed/sampled_requests").await;
    assert_eq!(s.status, 200, "{}", s.body);
    let list = s.json()["SampledRequests"].as_array().cloned().unwrap_or_default();
    let blocked: Vec<&Value> = list.iter().filter(|x| x["Action"] == "BLOCK").collect();
    assert_eq!(blocked.len(), 1, "{}", s.body);
    assert_eq!(blocked[0]["RuleName"], "StringMatch");
    assert_eq!(blocked[0]["Request"]["ClientIP"], "127.0.0.1");
    assert_eq!(blocked[0]["Request"]["Method"], "GET");
    assert_eq!(blocked[0]["Request"]["URI"], "/");
    assert!(
        blocked[0]["Request"]["Headers"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["Name"] == "user-agent" && x["Value"] == "PostmanRuntime/7.29.2")),
        "{}",
        s.body
    );

    // Switch the rule to Count: both get through, the match is counted once.
    let counting = SEED_RULE.replace(r#""Action": {"Block": {}}"#, r#""Action": {"Count": {}}"#);
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/seed", Some(&web_acl(&counting))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let count = "shardgate_waf_requests_total{web_acl=\"seed\",rule=\"StringMatch\",action=\"count\"}";
    eventually(5, "Count rule live", || {
        let run = &run;
        let curl = &curl;
        async move { (run(curl("PostmanRuntime/7.29.2")).await == "200").then_some(()) }
    })
    .await;
    assert_eq!(run(curl("X-UnrealEngine-Agent")).await, "200");
    assert_eq!(gw.metric(count).await, 1.0, "one Postman request counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_sets_regex_sets_and_custom_responses() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok")), ("/admin", OriginFile::new("secret"))]).await;
    let admin = gw.admin();
    let r = admin
        .request(
            "PUT",
            "/apisix/admin/ip_sets/qa",
            Some(r#"{"Name": "qa", "Scope": "CLOUDFRONT", "IPAddressVersion": "IPV4", "Addresses": ["127.0.0.1/32"]}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin
        .request(
            "PUT",
            "/apisix/admin/regex_pattern_sets/tools",
            Some(r#"{"Name": "tools", "RegularExpressionList": [{"RegexString": "(?i)^curl/"}, {"RegexString": "^python-requests/"}]}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // QA (127.0.0.1) may open /admin; tools are refused with a custom 429.
    let rules = r#"
      {"Name": "qa-admin", "Priority": 0, "Action": {"Allow": {}},
       "Statement": {"AndStatement": {"Statements": [
         {"IPSetReferenceStatement": {"ARN": "arn:aws:wafv2:us-east-1:123456789012:global/ipset/qa/qa"}},
         {"ByteMatchStatement": {"SearchString": "/admin", "FieldToMatch": {"UriPath": {}},
           "TextTransformations": [{"Priority": 0, "Type": "URL_DECODE"}, {"Priority": 1, "Type": "LOWERCASE"}],
           "PositionalConstraint": "STARTS_WITH"}}]}},
       "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "qa-admin"}},
      {"Name": "no-tools", "Priority": 1,
       "Action": {"Block": {"CustomResponse": {"ResponseCode": 429, "CustomResponseBodyKey": "slow-down"}}},
       "Statement": {"RegexPatternSetReferenceStatement": {"ARN": "tools", "FieldToMatch": {"SingleHeader": {"Name": "User-Agent"}},
         "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}},
       "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "no-tools"}}"#;
    let acl = web_acl(rules).replace(
        r#""Rules""#,
        r#""CustomResponseBodies": {"slow-down": {"ContentType": "TEXT_PLAIN", "Content": "slow down"}}, "Rules""#,
    );
    let r = admin.request("PUT", "/apisix/admin/web_acls/seed", Some(&acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    setup(&gw, &origin).await;
    let edge = gw.edge_plain[0];
    let (status, _, body) = get(edge, HOST, "/ADMIN", &[("user-agent", "curl/8.0")]).await;
    assert_eq!(
        (status, &body[..]),
        (404, &b"not found\n"[..]),
        "the QA allow rule wins by priority: the origin's own 404"
    );
    let (status, h, body) = get(edge, HOST, "/", &[("user-agent", "curl/8.0")]).await;
    assert_eq!((status, &body[..]), (429, &b"slow down"[..]));
    assert_eq!(h.get("content-type").map(String::as_str), Some("text/plain; charset=utf-8"));
    assert_eq!(get(edge, HOST, "/", &[("user-agent", "UnrealEngine")]).await.0, 200);

    // Sets in use cannot be deleted; the ACL in use cannot be deleted.
    for (path, who) in [("ip_sets/qa", "web_acl [seed]"), ("web_acls/seed", "distribution [d]")] {
        let r = admin.delete(&format!("/apisix/admin/{path}")).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains(who), "{path}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_web_acls_name_the_json_path_and_store_nothing() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let admin = gw.admin();
    let rule = |statement: &str| {
        format!(
            r#"{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}}, "Statement": {statement},
               "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "r"}}}}"#
        )
    };
    let ua = r#"{"SingleHeader": {"Name": "user-agent"}}"#;
    let ok = format!(
        r#"{{"ByteMatchStatement": {{"FieldToMatch": {ua}, "PositionalConstraint": "EXACTLY", "SearchString": "x", "TextTransformations": [{{"Type": "NONE", "Priority": 0}}]}}}}"#
    );
    let bad_regex = format!(
        r#"{{"RegexMatchStatement": {{"FieldToMatch": {ua}, "TextTransformations": [{{"Type": "NONE", "Priority": 0}}], "RegexString": "(?<=a)b"}}}}"#
    );
    let cases = [
        (
            rule(&format!(r#"{{"OrStatement": {{"Statements": [{ok}, {bad_regex}]}}}}"#)),
            "Rules[0].Statement.OrStatement.Statements[1].RegexMatchStatement.RegexString",
        ),
        (rule(r#"{"SomethingStatement": {}}"#), "Rules[0].Statement"),
        (rule(r#"{"IPSetReferenceStatement": {"ARN": "missing"}}"#), "Rules[0].Statement.IPSetReferenceStatement.ARN"),
        (rule(&ok.replace("EXACTLY", "NEARLY")), "Rules[0].Statement.ByteMatchStatement.PositionalConstraint"),
        (
            rule(&ok.replace("\"NONE\"", "\"ROT13\"")),
            "Rules[0].Statement.ByteMatchStatement.TextTransformations[0].Type",
        ),
    ];
    for (rule, path) in cases {
        let r = admin.request("PUT", "/apisix/admin/web_acls/x", Some(&web_acl(&rule))).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let msg = r.json()["error_msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(path), "error {msg:?} must name {path:?}");
    }
    let r = admin.request("PUT", "/apisix/admin/ip_sets/x", Some(r#"{"Addresses": ["127.0.0.0/33"]}"#)).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Addresses[0]"), "{}", r.body);
    for kind in ["web_acls", "ip_sets"] {
        assert_eq!(admin.list(kind).await["total"], 0, "nothing stored in {kind}");
    }
}

/// The country database `scripts/test` fetches (the README's test command).
fn geoip() -> String {
    std::env::var("SHARDGATE_TEST_GEOIP").unwrap_or_else(|_| {
        panic!(
            "SHARDGATE_TEST_GEOIP is not set: run the suite with scripts/test, which fetches the GeoIP test database"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_match_by_forwarded_address_on_the_edge() {
    let gw =
        gateway().tls_listeners(0).edge_http(1).yaml(&format!("waf:\n  geoip_database: \"{}\"", geoip())).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    // Rule 0 counts Chinese addresses; rule 1 blocks by the country label
    // the geo statement added (AWS's awswaf:forwardedip:geo:country:<CC>).
    let rule = r#"{"Name": "cn", "Priority": 0, "Action": {"Count": {}},
      "Statement": {"GeoMatchStatement": {"CountryCodes": ["CN"],
        "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "NO_MATCH"}}},
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "cn"}},
      {"Name": "no-cn", "Priority": 1, "Action": {"Block": {}},
      "Statement": {"LabelMatchStatement": {"Scope": "LABEL", "Key": "awswaf:forwardedip:geo:country:CN"}},
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "no-cn"}}"#;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/seed", Some(&web_acl(rule))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    setup(&gw, &origin).await;
    let edge = gw.edge_plain[0];
    // 114.114.114.114 is in China, 8.8.8.8 in the US, in the test database.
    assert_eq!(get(edge, HOST, "/", &[("x-forwarded-for", "114.114.114.114, 127.0.0.1")]).await.0, 403);
    assert_eq!(get(edge, HOST, "/", &[("x-forwarded-for", "8.8.8.8")]).await.0, 200);
    assert_eq!(get(edge, HOST, "/", &[]).await.0, 200, "no header: FallbackBehavior NO_MATCH");
    assert_eq!(get(edge, HOST, "/", &[("x-forwarded-for", "not-an-ip")]).await.0, 200);
    let counted = "shardgate_waf_requests_total{web_acl=\"seed\",rule=\"cn\",action=\"count\"}";
    let blocked = "shardgate_waf_requests_total{web_acl=\"seed\",rule=\"no-cn\",action=\"block\"}";
    assert_eq!((gw.metric(counted).await, gw.metric(blocked).await), (1.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_allow_list_on_the_stream_gateway_refuses_unknown_origins_at_accept() {
    let gw =
        gateway().stream_web_acl("countries").yaml(&format!("waf:\n  geoip_database: \"{}\"", geoip())).spawn().await;
    // Players only from listed countries: loopback addresses have none.
    let acl = r#"{"Name": "countries", "DefaultAction": {"Allow": {}},
      "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "countries"},
      "Rules": [{"Name": "outside", "Priority": 0, "Action": {"Block": {}},
        "Statement": {"NotStatement": {"Statement": {"GeoMatchStatement": {"CountryCodes": ["US", "CN", "JP"]}}}},
        "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "outside"}}]}"#;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/countries", Some(acl)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let addr = gw.tls_addr();
    eventually(5, "the country rule applies", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        )
        .await
        .ok()?
        .ok()?;
        (n == 0).then_some(())
    })
    .await;
    let text = gw.metrics_text().await;
    assert!(
        text.lines().any(|l| l.starts_with("shardgate_stream_waf_refused_total") && l.contains("rule=\"outside\"")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_match_without_a_database_is_a_problem_not_a_crash() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let rule = r#"{"Name": "no-cn", "Priority": 0, "Action": {"Block": {}},
      "Statement": {"GeoMatchStatement": {"CountryCodes": ["CN"]}},
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "no-cn"}}"#;
    // Stored (the JSON is valid) but reported: the gateway has no country database.
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/geo", Some(&web_acl(rule))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    eventually(5, "reported as a problem", || async {
        (gw.metric("shardgate_config_problems").await >= 1.0).then_some(())
    })
    .await;
    assert!(gw.log().contains("waf.geoip_database"), "the log names the missing setting");
}

/// GeoMatch on the client address itself, and the country in sampled
/// requests. Public databases place no loopback address, so the test writes
/// its own database: 127.0.0.1 in Japan, 127.0.0.2 in Korea.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_match_on_the_client_address_and_countries_in_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("loopback-countries.mmdb");
    let entries = [("127.0.0.1".parse().expect("ip"), 32, "JP"), ("127.0.0.2".parse().expect("ip"), 32, "KR")];
    shardgate_e2e::geo::write_country_db(&db, &entries).expect("write the database");
    let yaml = format!("waf:\n  geoip_database: \"{}\"", db.display());
    let gw = gateway().tls_listeners(0).edge_http(1).yaml(&yaml).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let rule = r#"{"Name": "kr", "Priority": 0, "Action": {"Block": {}},
      "Statement": {"GeoMatchStatement": {"CountryCodes": ["KR"]}},
      "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": true, "MetricName": "kr"}}"#;
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/seed", Some(&web_acl(rule))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    setup(&gw, &origin).await;
    let edge = gw.edge_plain[0];

    let curl = |source: &str| {
        format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --interface {source} -H 'Host: {HOST}' http://{edge}/ --max-time 10"
        )
    };
    let out = bash(curl("127.0.0.2"), dir.path()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "Korea is blocked: {}", text(&out));
    let out = bash(curl("127.0.0.1"), dir.path()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "Japan is not: {}", text(&out));

    let s = gw.admin().get("/apisix/admin/web_acls/seed/sampled_requests").await;
    assert_eq!(s.status, 200, "{}", s.body);
    let list = s.json()["SampledRequests"].as_array().cloned().unwrap_or_default();
    let country = |action: &str, ip: &str| {
        list.iter()
            .find(|x| x["Action"] == action && x["Request"]["ClientIP"] == ip)
            .map(|x| x["Request"]["Country"].clone())
    };
    assert_eq!(country("BLOCK", "127.0.0.2"), Some(json!("KR")), "{}", s.body);
    assert_eq!(country("ALLOW", "127.0.0.1"), Some(json!("JP")), "{}", s.body);
}

/// SqliMatch, XssMatch, SizeConstraint and the query-argument and cookie
/// fields, through the gateway: each blocks its attack and lets a game
/// client's ordinary request through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_size_and_cookie_rules_on_the_edge() {
    let gw = gateway().tls_listeners(0).edge_http(1).spawn().await;
    let origin = TestOrigin::start(vec![("/", OriginFile::new("ok"))]).await;
    let decode = r#"[{"Type": "URL_DECODE", "Priority": 0}, {"Type": "HTML_ENTITY_DECODE", "Priority": 1}]"#;
    let rule = |name: &str, prio: u32, st: String| {
        format!(
            r#"{{"Name": "{name}", "Priority": {prio}, "Action": {{"Block": {{}}}}, "Statement": {st},
              "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": true, "MetricName": "{name}"}}}}"#
        )
    };
    let rules = [
        rule("sqli", 0, format!(r#"{{"SqliMatchStatement": {{"FieldToMatch": {{"AllQueryArguments": {{}}}}, "TextTransformations": {decode}}}}}"#)),
        rule("xss", 1, format!(r#"{{"XssMatchStatement": {{"FieldToMatch": {{"SingleQueryArgument": {{"Name": "name"}}}}, "TextTransformations": {decode}}}}}"#)),
        rule("size", 2, r#"{"SizeConstraintStatement": {"FieldToMatch": {"QueryString": {}}, "ComparisonOperator": "GT", "Size": 200, "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}"#.to_owned()),
        rule("cheat", 3, r#"{"ByteMatchStatement": {"FieldToMatch": {"Cookies": {"MatchPattern": {"All": {}}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}, "PositionalConstraint": "CONTAINS", "SearchString": "aimbot", "TextTransformations": [{"Type": "LOWERCASE", "Priority": 0}]}}"#.to_owned()),
    ];
    let r = gw.admin().request("PUT", "/apisix/admin/web_acls/seed", Some(&web_acl(&rules.join(",")))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    setup(&gw, &origin).await;
    let edge = gw.edge_plain[0];
    let status = |path: String, headers: Vec<(&'static str, &'static str)>| async move {
        get(edge, HOST, &path, &headers).await.0
    };
    assert_eq!(status("/?id=1%27%20OR%20%271%27%3D%271".into(), vec![]).await, 403, "SQL injection");
    assert_eq!(status("/?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(), vec![]).await, 403, "XSS in name");
    assert_eq!(
        status("/?other=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(), vec![]).await,
        200,
        "XSS rule reads only name"
    );
    assert_eq!(status(format!("/?pad={}", "a".repeat(300)), vec![]).await, 403, "query over 200 bytes");
    assert_eq!(status("/".into(), vec![("cookie", "session=1; mods=AimBot")]).await, 403, "cheat cookie");
    assert_eq!(status("/?id=42&name=Alice&v=2.4.1".into(), vec![("cookie", "session=1")]).await, 200, "a game client");
    for rule in ["sqli", "xss", "size", "cheat"] {
        let m = format!("shardgate_waf_requests_total{{web_acl=\"seed\",rule=\"{rule}\",action=\"block\"}}");
        assert_eq!(gw.metric(&m).await, 1.0, "{rule}");
    }
}
