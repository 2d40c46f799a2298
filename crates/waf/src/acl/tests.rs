use super::rate::RATE_MAX_KEYS;
use super::*;
use crate::json::{IpSetJson, RegexSetJson};
use http::HeaderValue;

/// The rule of seed 003, verbatim.
const SEED_RULE: &str = r#"{"Name": "StringMatch","Priority": 0,"Action": {"Block": {}},"VisibilityConfig": {"SampledRequestsEnabled": true,"CloudWatchMetricsEnabled": true,"MetricName": "StringMatch"},"Statement": {"OrStatement": {"Statements": [{"ByteMatchStatement": {"FieldToMatch": {"Headers": {"MatchScope": "ALL","MatchPattern": {"All": {}},"OversizeHandling": "CONTINUE"}},"PositionalConstraint": "STARTS_WITH","SearchString": "PostmanRuntime","TextTransformations": [{"Type": "NONE","Priority": 0}]}},{"RegexMatchStatement": {"FieldToMatch": {"Headers": {"MatchScope": "ALL","MatchPattern": {"All": {}},"OversizeHandling": "CONTINUE"}},"TextTransformations": [{"Type": "NONE","Priority": 0}],"RegexString": "/PostmanRuntime[ \\/]+([0-9\\.]+)/gi"}}]}}
}"#;

fn acl_with(rules: &str, default: &str) -> Result<WebAcl, WafError> {
    let text = format!(
        r#"{{"Name": "acl", "DefaultAction": {default}, "Rules": [{rules}],
            "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "acl"}}}}"#
    );
    let json: WebAclJson = serde_json::from_str(&text).map_err(|e| err("", e.to_string()))?;
    WebAcl::compile(&json, &TestSets)
}

fn acl(rules: &str) -> WebAcl {
    acl_with(rules, r#"{"Allow": {}}"#).expect("compiles")
}

struct TestSets;

impl Sets for TestSets {
    fn ip_set(&self, id: &str) -> Option<Arc<IpSet>> {
        (id == "denied").then(|| {
            let json: IpSetJson =
                serde_json::from_str(r#"{"IPAddressVersion": "IPV4", "Addresses": ["127.0.0.2/32", "127.64.0.0/10"]}"#)
                    .expect("ipset json");
            Arc::new(IpSet::compile(&json).expect("ipset"))
        })
    }
    fn regex_set(&self, id: &str) -> Option<Arc<RegexPatternSet>> {
        (id == "bots").then(|| {
            let json: RegexSetJson = serde_json::from_str(
                r#"{"RegularExpressionList": [{"RegexString": "(?i)curl/"}, {"RegexString": "^python-requests"}]}"#,
            )
            .expect("json");
            Arc::new(RegexPatternSet::compile(&json).expect("set"))
        })
    }
}

struct Req {
    tls: Option<crate::TlsFingerprint>,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: HeaderMap,
    ip: IpAddr,
}

fn req(headers: &[(&'static str, &str)]) -> Req {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_str(v).expect("value"));
    }
    Req { tls: None, method: "GET", path: "/example.file", query: "", headers: h, ip: "127.0.0.1".parse().expect("ip") }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: self.method,
            uri_path: self.path,
            query: self.query,
            headers: &self.headers,
            body: (b"", false),
            client_ip: self.ip,
            tls: self.tls.as_ref(),
        }
    }
}

fn blocked(acl: &WebAcl, r: &Req) -> bool {
    matches!(acl.evaluate(&r.view()).action, Action::Block(_))
}

#[test]
fn the_seed_rule_blocks_postman_and_lets_unreal_through() {
    let acl = acl(SEED_RULE);
    let v = acl.evaluate(&req(&[("user-agent", "PostmanRuntime/7.29.2")]).view());
    assert_eq!(v.action, Action::Block(BlockResponse::default_403()));
    assert_eq!(v.rule.as_deref(), Some("StringMatch"));
    let v = acl.evaluate(&req(&[("user-agent", "X-UnrealEngine-Agent")]).view());
    assert_eq!((v.action, v.rule), (Action::Allow, None));
    // The regex is taken literally, as AWS does: the slashes and "gi" are part of it.
    assert!(!blocked(&acl, &req(&[("user-agent", "postmanruntime/7.1")])), "STARTS_WITH is case-sensitive");
}

#[test]
fn count_records_and_goes_on() {
    let acl = acl(&SEED_RULE.replace(r#""Action": {"Block": {}}"#, r#""Action": {"Count": {}}"#));
    let v = acl.evaluate(&req(&[("user-agent", "PostmanRuntime/7.29.2")]).view());
    assert_eq!(v.action, Action::Allow);
    assert_eq!(v.counted, vec![Arc::from("StringMatch")]);
}

fn rule(name: &str, priority: i64, action: &str, statement: &str) -> String {
    format!(
        r#"{{"Name": "{name}", "Priority": {priority}, "Action": {{"{action}": {{}}}}, "Statement": {statement},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "{name}"}}}}"#
    )
}

fn byte(field: &str, position: &str, search: &str, transforms: &str) -> String {
    format!(
        r#"{{"ByteMatchStatement": {{"FieldToMatch": {field}, "PositionalConstraint": "{position}",
            "SearchString": "{search}", "TextTransformations": {transforms}}}}}"#
    )
}

const NONE: &str = r#"[{"Type": "NONE", "Priority": 0}]"#;

#[test]
fn byte_match_positions() {
    let ua = r#"{"SingleHeader": {"Name": "User-Agent"}}"#;
    for (position, search, value, want) in [
        ("EXACTLY", "bot", "bot", true),
        ("EXACTLY", "bot", "bots", false),
        ("STARTS_WITH", "bot", "bot/1", true),
        ("ENDS_WITH", "bot", "a-bot", true),
        ("CONTAINS", "bot", "robotics", true),
        ("CONTAINS_WORD", "bot", "a bot!", true),
        ("CONTAINS_WORD", "bot", "robotics", false),
        ("CONTAINS_WORD", "bot", "bot", true),
    ] {
        let acl = acl(&rule("r", 0, "Block", &byte(ua, position, search, NONE)));
        assert_eq!(blocked(&acl, &req(&[("user-agent", value)])), want, "{position} {search} in {value}");
    }
}

#[test]
fn fields_to_match() {
    let mut r = req(&[("cookie", "session=abc; lang=zh"), ("x-a", "1")]);
    r.path = "/admin/panel";
    r.query = "id=5&debug=true&ID=7";
    r.method = "HEAD";
    let cases = [
        (r#"{"UriPath": {}}"#, "STARTS_WITH", "/admin", true),
        (r#"{"QueryString": {}}"#, "CONTAINS", "debug=true", true),
        (r#"{"SingleQueryArgument": {"Name": "id"}}"#, "EXACTLY", "7", true),
        (r#"{"SingleQueryArgument": {"Name": "missing"}}"#, "EXACTLY", "7", false),
        (r#"{"AllQueryArguments": {}}"#, "EXACTLY", "true", true),
        (r#"{"AllQueryArguments": {}}"#, "EXACTLY", "debug", false),
        (r#"{"Method": {}}"#, "EXACTLY", "HEAD", true),
        (
            r#"{"Cookies": {"MatchPattern": {"IncludedCookies": ["lang"]}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}"#,
            "EXACTLY",
            "zh",
            true,
        ),
        (
            r#"{"Cookies": {"MatchPattern": {"IncludedCookies": ["lang"]}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}"#,
            "EXACTLY",
            "abc",
            false,
        ),
        (
            r#"{"Cookies": {"MatchPattern": {"All": {}}, "MatchScope": "KEY", "OversizeHandling": "CONTINUE"}}"#,
            "EXACTLY",
            "session",
            true,
        ),
        (
            r#"{"Headers": {"MatchPattern": {"ExcludedHeaders": ["x-a"]}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}"#,
            "EXACTLY",
            "1",
            false,
        ),
        (
            r#"{"Headers": {"MatchPattern": {"IncludedHeaders": ["X-A"]}, "MatchScope": "KEY", "OversizeHandling": "CONTINUE"}}"#,
            "EXACTLY",
            "x-a",
            true,
        ),
        (r#"{"Body": {"OversizeHandling": "CONTINUE"}}"#, "CONTAINS", "x", false),
    ];
    for (field, position, search, want) in cases {
        let acl = acl(&rule("r", 0, "Block", &byte(field, position, search, NONE)));
        assert_eq!(blocked(&acl, &r), want, "{field} {position} {search}");
    }
}

#[test]
fn oversize_headers_follow_the_handling() {
    let many: Vec<(&'static str, String)> = (0..250).map(|i| ("x-pad", format!("v{i}"))).collect();
    let mut h = HeaderMap::new();
    for (k, v) in &many {
        h.append(*k, HeaderValue::from_str(v).expect("v"));
    }
    h.append("x-late", HeaderValue::from_static("evil"));
    let r = Req { tls: None, method: "GET", path: "/", query: "", headers: h, ip: "127.0.0.1".parse().expect("ip") };
    for (handling, want) in [("CONTINUE", false), ("MATCH", true), ("NO_MATCH", false)] {
        let field = format!(
            r#"{{"Headers": {{"MatchPattern": {{"All": {{}}}}, "MatchScope": "VALUE", "OversizeHandling": "{handling}"}}}}"#
        );
        let acl = acl(&rule("r", 0, "Block", &byte(&field, "EXACTLY", "evil", NONE)));
        assert_eq!(blocked(&acl, &r), want, "{handling}: the header past 200 is not inspected");
    }
}

#[test]
fn transformations_apply_in_priority_order() {
    let q = r#"{"QueryString": {}}"#;
    let t = r#"[{"Type": "LOWERCASE", "Priority": 2}, {"Type": "URL_DECODE", "Priority": 1}]"#;
    let acl = acl(&rule("r", 0, "Block", &byte(q, "CONTAINS", "<script>", t)));
    let mut r = req(&[]);
    r.query = "q=%3CSCRIPT%3E";
    assert!(blocked(&acl, &r));
    let bad = acl_with(
        &rule("r", 0, "Block", &byte(q, "CONTAINS", "x", r#"[{"Type": "MD5", "Priority": 0}]"#)),
        r#"{"Allow": {}}"#,
    )
    .unwrap_err();
    assert_eq!(bad.path, "Rules[0].Statement.ByteMatchStatement.TextTransformations[0].Type");
}

#[test]
fn regex_sets_ips_sizes_sqli_xss() {
    let ua = r#"{"SingleHeader": {"Name": "user-agent"}}"#;
    let set = format!(
        r#"{{"RegexPatternSetReferenceStatement": {{"ARN": "arn:aws:wafv2:us-east-1:1:global/regexpatternset/bots/bots", "FieldToMatch": {ua}, "TextTransformations": {NONE}}}}}"#
    );
    let acl1 = acl(&rule("r", 0, "Block", &set));
    assert!(blocked(&acl1, &req(&[("user-agent", "CURL/8.0")])));
    assert!(!blocked(&acl1, &req(&[("user-agent", "UnrealEngine")])));

    let ip = r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#;
    let acl2 = acl(&rule("r", 0, "Block", ip));
    let mut r = req(&[]);
    assert!(!blocked(&acl2, &r));
    r.ip = "127.0.0.2".parse().expect("ip");
    assert!(blocked(&acl2, &r));
    r.ip = "::ffff:127.64.2.3".parse().expect("ip");
    assert!(blocked(&acl2, &r), "v4-mapped addresses count as IPv4");

    let fwd = r#"{"IPSetReferenceStatement": {"ARN": "denied", "IPSetForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH", "Position": "FIRST"}}}"#;
    let acl3 = acl(&rule("r", 0, "Block", fwd));
    assert!(blocked(&acl3, &req(&[("x-forwarded-for", "127.99.9.9, 127.1.1.1")])));
    assert!(!blocked(&acl3, &req(&[("x-forwarded-for", "127.1.1.1, 127.99.9.9")])));
    assert!(!blocked(&acl3, &req(&[])), "no header: AWS does not apply the rule, whatever the fallback");
    assert!(blocked(&acl3, &req(&[("x-forwarded-for", "garbage")])), "malformed: the fallback matches");
    let any = fwd.replace("FIRST", "ANY");
    let acl_any = acl(&rule("r", 0, "Block", &any));
    let spoofed = (1..=10).map(|i| format!("127.1.1.{i}")).collect::<Vec<_>>().join(", ");
    assert!(
        blocked(&acl_any, &req(&[("x-forwarded-for", &format!("{spoofed}, 127.99.9.9"))])),
        "ANY inspects the last 10 addresses, which the proxies appended"
    );
    assert!(!blocked(&acl_any, &req(&[("x-forwarded-for", &format!("127.99.9.9, {spoofed}"))])));

    let size = format!(
        r#"{{"SizeConstraintStatement": {{"FieldToMatch": {{"QueryString": {{}}}}, "ComparisonOperator": "GT", "Size": 10, "TextTransformations": {NONE}}}}}"#
    );
    let acl4 = acl(&rule("r", 0, "Block", &size));
    let mut r = req(&[]);
    r.query = "a=1";
    assert!(!blocked(&acl4, &r));
    r.query = "a=12345678901";
    assert!(blocked(&acl4, &r));

    let sqli = r#"{"SqliMatchStatement": {"FieldToMatch": {"AllQueryArguments": {}}, "TextTransformations": [{"Type": "URL_DECODE", "Priority": 0}]}}"#;
    let acl5 = acl(&rule("r", 0, "Block", sqli));
    r.query = "id=1%27%20OR%20%271%27%3D%271";
    assert!(blocked(&acl5, &r));
    r.query = "id=42&name=O%27Brien";
    assert!(!blocked(&acl5, &r));

    let xss = r#"{"XssMatchStatement": {"FieldToMatch": {"QueryString": {}}, "TextTransformations": [{"Type": "URL_DECODE", "Priority": 0}, {"Type": "HTML_ENTITY_DECODE", "Priority": 1}]}}"#;
    let acl6 = acl(&rule("r", 0, "Block", xss));
    r.query = "q=%26lt%3Bscript%26gt%3Balert(1)";
    assert!(blocked(&acl6, &r));
    r.query = "q=tom%20%26%20jerry";
    assert!(!blocked(&acl6, &r));
}

#[test]
fn and_or_not_priorities_and_labels() {
    let ua = r#"{"SingleHeader": {"Name": "user-agent"}}"#;
    let is_bot = byte(ua, "CONTAINS", "bot", NONE);
    let is_good = byte(ua, "CONTAINS", "goodbot", NONE);
    let and =
        format!(r#"{{"AndStatement": {{"Statements": [{is_bot}, {{"NotStatement": {{"Statement": {is_good}}}}}]}}}}"#);
    let label = r#"{"LabelMatchStatement": {"Scope": "LABEL", "Key": "bots:bad"}}"#;
    let ns = r#"{"LabelMatchStatement": {"Scope": "NAMESPACE", "Key": "bots:"}}"#;
    // A Count rule labels bad bots; a later rule blocks on the label.
    let labeler = rule("label-bots", 0, "Count", &and)
        .replace(r#""Priority": 0,"#, r#""Priority": 0, "RuleLabels": [{"Name": "bots:bad"}],"#);
    let blocker = rule("block-labelled", 5, "Block", label);
    let ns_counter = rule("count-ns", 3, "Count", ns);
    let acl = acl(&format!("{blocker}, {labeler}, {ns_counter}"));
    let v = acl.evaluate(&req(&[("user-agent", "evilbot")]).view());
    assert_eq!(v.rule.as_deref(), Some("block-labelled"));
    assert_eq!(v.counted, vec![Arc::from("label-bots"), Arc::from("count-ns")]);
    assert_eq!(v.labels, vec![Arc::from("bots:bad")]);
    assert_eq!(acl.evaluate(&req(&[("user-agent", "goodbot")]).view()).action, Action::Allow);
    // Lower priority first: an Allow at 0 wins over a Block at 1.
    let allow_first = acl_with(
        &format!("{}, {}", rule("b", 1, "Block", &is_bot), rule("a", 0, "Allow", &is_bot)),
        r#"{"Block": {}}"#,
    )
    .expect("compiles");
    assert_eq!(allow_first.evaluate(&req(&[("user-agent", "bot")]).view()).rule.as_deref(), Some("a"));
    assert!(blocked(&allow_first, &req(&[("user-agent", "human")])), "default Block");
}

#[test]
fn custom_responses() {
    let text = r#"{"Name": "acl", "DefaultAction": {"Allow": {}},
        "CustomResponseBodies": {"nope": {"ContentType": "APPLICATION_JSON", "Content": "{\"error\":\"blocked\"}"}},
        "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "acl"},
        "Rules": [{"Name": "r", "Priority": 0, "Statement": {"ByteMatchStatement": {"FieldToMatch": {"UriPath": {}},
          "PositionalConstraint": "STARTS_WITH", "SearchString": "/admin", "TextTransformations": [{"Type": "NONE", "Priority": 0}]}},
          "Action": {"Block": {"CustomResponse": {"ResponseCode": 429, "CustomResponseBodyKey": "nope",
             "ResponseHeaders": [{"Name": "reason", "Value": "admin"}]}}},
          "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "r"}}]}"#;
    let acl = WebAcl::compile(&serde_json::from_str(text).expect("json"), &TestSets).expect("compiles");
    let mut r = req(&[]);
    r.path = "/admin";
    let Action::Block(b) = acl.evaluate(&r.view()).action else { panic!("blocked") };
    assert_eq!(b.status, 429);
    // As written: AWS prefixes only the headers it inserts into requests.
    let h: Vec<(&str, &[u8])> = b.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    assert_eq!(h, vec![("reason", &b"admin"[..])]);
    assert_eq!(b.body, Some(("application/json".to_owned(), "{\"error\":\"blocked\"}".to_owned())));
}

#[test]
fn errors_name_the_json_path() {
    let ua = r#"{"SingleHeader": {"Name": "user-agent"}}"#;
    let bad_regex = format!(
        r#"{{"RegexMatchStatement": {{"FieldToMatch": {ua}, "TextTransformations": {NONE}, "RegexString": "(a)\\1"}}}}"#
    );
    let or = format!(r#"{{"OrStatement": {{"Statements": [{}, {bad_regex}]}}}}"#, byte(ua, "EXACTLY", "x", NONE));
    let e = acl_with(&rule("r", 0, "Block", &or), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.OrStatement.Statements[1].RegexMatchStatement.RegexString");
    let e = acl_with(&rule("r", 0, "Block", r#"{"GeoMatchStatement": {"CountryCodes": ["CN"]}}"#), r#"{"Allow": {}}"#)
        .unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.GeoMatchStatement");
    let e = acl_with(&rule("r", 0, "Block", r#"{"IPSetReferenceStatement": {"ARN": "nope"}}"#), r#"{"Allow": {}}"#)
        .unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.IPSetReferenceStatement.ARN");
    let two = format!(
        "{}, {}",
        rule("r", 0, "Block", &byte(ua, "EXACTLY", "x", NONE)),
        rule("s", 0, "Block", &byte(ua, "EXACTLY", "x", NONE))
    );
    assert_eq!(acl_with(&two, r#"{"Allow": {}}"#).unwrap_err().path, "Rules[1].Priority");
    let e = acl_with(&rule("r", 0, "Block", &byte(ua, "SOMEWHERE", "x", NONE)), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.ByteMatchStatement.PositionalConstraint");
}

#[test]
fn address_only_acls_can_run_at_accept() {
    assert_eq!(acl(&rule("r", 0, "Block", r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#)).request_rule(), None);
    assert_eq!(acl(SEED_RULE).request_rule(), Some("StringMatch"));
    let mixed = format!(
        "{}, {}",
        rule("ips", 0, "Block", r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#),
        rule("agent", 1, "Block", &byte(r#"{"Method": {}}"#, "EXACTLY", "GET", NONE)),
    );
    assert_eq!(acl(&mixed).request_rule(), Some("agent"));
}

#[test]
fn rate_counts_survive_a_recompile_of_the_same_rule() {
    let st = |limit: u32| {
        format!(
            r#"{{"RateBasedStatement": {{"Limit": {limit}, "EvaluationWindowSec": 300, "AggregateKeyType": "IP"}}}}"#
        )
    };
    let mut flood = req(&[]);
    flood.ip = "127.0.0.3".parse().expect("ip");
    let old = acl(&rule("flood", 0, "Block", &st(10)));
    let blocked = |a: &WebAcl| blocked(a, &flood);
    assert_eq!((0..12).filter(|_| blocked(&old)).count(), 2, "the 11th and 12th are over the limit");

    let mut same = acl(&rule("flood", 0, "Block", &st(10)));
    same.keep_rate_counts(&old);
    assert!(blocked(&same), "the address is still over its limit after the recompile");

    let mut changed = acl(&rule("flood", 0, "Block", &st(20)));
    changed.keep_rate_counts(&old);
    assert!(!blocked(&changed), "a new limit starts from zero");
    let mut renamed = acl(&rule("storm", 0, "Block", &st(10)));
    renamed.keep_rate_counts(&old);
    assert!(!blocked(&renamed), "another rule starts from zero");
}

#[test]
fn rate_based_rules_limit_each_address() {
    let st = r#"{"RateBasedStatement": {"Limit": 10, "EvaluationWindowSec": 60, "AggregateKeyType": "IP"}}"#;
    let acl = acl(&rule("flood", 0, "Block", st));
    let mut r = req(&[]);
    for i in 0..10 {
        assert!(!blocked(&acl, &r), "request {i} is within the limit");
    }
    assert!(blocked(&acl, &r), "the 11th in the window is over");
    r.ip = "127.0.0.9".parse().expect("ip");
    assert!(!blocked(&acl, &r), "another address has its own count");
    let limiter = RateLimiter::new(std::time::Duration::from_secs(60), 10, rate::Aggregate::Ip);
    let t0 = std::time::Instant::now();
    let ip = rate::ip_key("127.0.0.10".parse().expect("ip"));
    for _ in 0..11 {
        limiter.hit(ip, t0);
    }
    assert!(limiter.hit(ip, t0 + std::time::Duration::from_secs(61)), "the previous window still weighs");
    assert!(!limiter.hit(ip, t0 + std::time::Duration::from_secs(200)), "an old window is forgotten");
    let nested = format!(r#"{{"NotStatement": {{"Statement": {st}}}}}"#);
    let e = acl_with(&rule("r", 0, "Block", &nested), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.NotStatement.Statement.RateBasedStatement");
    // AWS's bounds on Limit, checked before the scope-down statement.
    for limit in [9, 2_000_000_001] {
        let st = format!(
            r#"{{"RateBasedStatement": {{"Limit": {limit}, "AggregateKeyType": "CONSTANT", "ScopeDownStatement": {{"IPSetReferenceStatement": {{"ARN": "missing"}}}}}}}}"#
        );
        let e = acl_with(&rule("r", 0, "Block", &st), r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, "Rules[0].Statement.RateBasedStatement.Limit", "{limit}");
        assert!(e.reason.contains("10 to 2000000000"), "{e}");
    }
}

/// An ACL with more leaves than the evaluation's stack bitset holds keeps
/// its verdicts on the heap, with the same results.
#[test]
fn large_acls_evaluate_like_small_ones() {
    let ua = r#"{"SingleHeader": {"Name": "User-Agent"}}"#;
    let rules: Vec<String> = (0..600)
        .map(|i| rule(&format!("r{i}"), i, "Block", &byte(ua, "CONTAINS", &format!("bot-{i:03}-"), NONE)))
        .collect();
    let acl = acl(&rules.join(","));
    let v = acl.evaluate(&req(&[("user-agent", "x bot-599- y")]).view());
    assert_eq!(v.rule.as_deref(), Some("r599"));
    let v = acl.evaluate(&req(&[("user-agent", "x bot-007- bot-599-")]).view());
    assert_eq!(v.rule.as_deref(), Some("r7"), "the first by priority");
    assert_eq!(acl.evaluate(&req(&[("user-agent", "game client")]).view()).action, Action::Allow);
}

/// A full rate table forgets quiet addresses (once per window) and never
/// grows past its bound.
#[test]
fn the_rate_table_is_bounded() {
    let limiter = RateLimiter::new(std::time::Duration::from_secs(60), 10, rate::Aggregate::Ip);
    let t0 = std::time::Instant::now();
    for i in 0..RATE_MAX_KEYS as u32 {
        limiter.hit(u128::from(i) + 1, t0);
    }
    let newcomer = rate::ip_key("127.0.0.5".parse().expect("ip"));
    for _ in 0..20 {
        assert!(!limiter.hit(newcomer, t0), "an untracked address is not limited while the table is full");
    }
    let size = |l: &RateLimiter| l.counts.lock().map(|g| g.0.len()).unwrap_or(0);
    assert_eq!(size(&limiter), RATE_MAX_KEYS);
    // Two windows later the old addresses are forgotten and the newcomer counts.
    let later = t0 + std::time::Duration::from_secs(150);
    let over = (0..12).filter(|_| limiter.hit(newcomer, later)).count();
    assert_eq!(over, 2, "tracked again: the 11th and 12th are over");
    assert_eq!(size(&limiter), 1);
}

/// A statement tree `levels` statements deep: `NotStatement`s (or
/// `AndStatement`s with a second, leaf member) around an IP set reference.
fn chain(levels: usize, and: bool) -> String {
    let mut st = r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#.to_owned();
    for _ in 1..levels {
        st = if and {
            format!(
                r#"{{"AndStatement": {{"Statements": [{st}, {{"IPSetReferenceStatement": {{"ARN": "denied"}}}}]}}}}"#
            )
        } else {
            format!(r#"{{"NotStatement": {{"Statement": {st}}}}}"#)
        };
    }
    st
}

/// Nesting is bounded while parsing (before serde recurses) and when
/// compiling, with the limit and the JSON path in the error; the deepest
/// legal trees compile and evaluate.
#[test]
fn statement_nesting_is_bounded_with_the_limit_named() {
    use crate::json::MAX_STATEMENT_DEPTH;
    for and in [false, true] {
        let ok = acl(&rule("deep", 0, "Block", &chain(MAX_STATEMENT_DEPTH, and)));
        let mut r = req(&[]);
        r.ip = "127.0.0.2".parse().expect("ip");
        // An odd number of NotStatements around a match does not match.
        let expected = and || (MAX_STATEMENT_DEPTH - 1).is_multiple_of(2);
        assert_eq!(blocked(&ok, &r), expected, "and: {and}");
        let e =
            acl_with(&rule("deep", 0, "Block", &chain(MAX_STATEMENT_DEPTH + 1, and)), r#"{"Allow": {}}"#).unwrap_err();
        assert!(e.reason.contains("at most 21 deep (shardgate's limit"), "{e}");
    }
    // A tree built in code, past the bound the deserializer enforces:
    // compile refuses it too, naming the path of the statement too deep.
    use crate::json::StatementJson;
    let st: StatementJson =
        serde_json::from_str(&chain(MAX_STATEMENT_DEPTH, false)).expect("the deepest legal tree parses");
    let nested =
        StatementJson { not: Some(Box::new(crate::json::NotJson { statement: st })), ..StatementJson::default() };
    let mut json: WebAclJson =
        serde_json::from_str(&format!(r#"{{"Name": "a", "DefaultAction": {{"Allow": {{}}}}, "Rules": [{}],
            "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "a"}}}}"#,
            rule("deep", 0, "Block", &chain(1, false))))
        .expect("json");
    json.rules.as_mut().expect("rules")[0].statement = nested;
    let e = WebAcl::compile(&json, &TestSets).unwrap_err();
    let expected_path = format!("Rules[0].Statement{}", ".NotStatement.Statement".repeat(MAX_STATEMENT_DEPTH));
    assert_eq!(e.path, expected_path);
    assert!(e.reason.contains("at most 21 deep"), "{e}");
    // A rate-based rule's scope-down statement counts as one level.
    let scoped = format!(
        r#"{{"RateBasedStatement": {{"Limit": 10, "AggregateKeyType": "IP", "ScopeDownStatement": {}}}}}"#,
        chain(MAX_STATEMENT_DEPTH, true)
    );
    assert!(acl_with(&rule("r", 0, "Block", &scoped), r#"{"Allow": {}}"#).is_err());
    let scoped = format!(
        r#"{{"RateBasedStatement": {{"Limit": 10, "AggregateKeyType": "IP", "ScopeDownStatement": {}}}}}"#,
        chain(MAX_STATEMENT_DEPTH - 1, true)
    );
    acl(&rule("r", 0, "Block", &scoped));
}

/// A statement of 60 nested NotStatements (JSON depth ~125, under
/// serde_json's own limit of 128) once overflowed a 2 MiB worker stack while
/// being deserialized. Now it is refused after `MAX_STATEMENT_DEPTH` levels,
/// on a quarter of that stack (in a debug build).
#[test]
fn deep_statements_are_refused_on_a_small_stack() {
    let text = format!(
        r#"{{"Name": "a", "DefaultAction": {{"Allow": {{}}}}, "Rules": [{}],
            "VisibilityConfig": {{"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "a"}}}}"#,
        rule("deep", 0, "Block", &chain(60, false))
    );
    let worker = std::thread::Builder::new().stack_size(512 * 1024).spawn(move || {
        let as_value: serde_json::Value = serde_json::from_str(&text).expect("under serde_json's own limit");
        let direct = serde_json::from_str::<WebAclJson>(&text).map(|_| ()).map_err(|e| e.to_string());
        let from_value = serde_json::from_value::<WebAclJson>(as_value).map(|_| ()).map_err(|e| e.to_string());
        (direct, from_value)
    });
    let (direct, from_value) = worker.expect("thread").join().expect("no stack overflow");
    for r in [direct, from_value] {
        assert!(r.as_ref().is_err_and(|e| e.contains("at most 21 deep")), "{r:?}");
    }
}

fn header_list(v: &Verdict) -> Vec<(String, String)> {
    v.request_headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

/// A block can redirect: `Location` goes out as written.
#[test]
fn a_block_can_redirect_with_its_location_header() {
    let r302 = r#"{"Block": {"CustomResponse": {"ResponseCode": 302,
        "ResponseHeaders": [{"Name": "Location", "Value": "https://status.game.example/maintenance"}]}}}"#;
    let acl =
        acl_with(&rule("r", 0, "Block", r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#), r302).expect("compiles");
    let Action::Block(b) = acl.evaluate(&req(&[]).view()).action else { panic!("default block") };
    assert_eq!(b.status, 302);
    assert_eq!(b.headers[0].0.as_str(), "location");
    assert_eq!(b.headers[0].1.as_bytes(), b"https://status.game.example/maintenance");
    for (bad, path) in [
        (r#"[{"Name": "bad name", "Value": "x"}]"#, "DefaultAction.Block.CustomResponse.ResponseHeaders[0].Name"),
        (r#"[{"Name": "x", "Value": ""}]"#, "DefaultAction.Block.CustomResponse.ResponseHeaders[0].Value"),
        (r#"[{"Name": "x", "Value": "a\nb"}]"#, "DefaultAction.Block.CustomResponse.ResponseHeaders[0].Value"),
    ] {
        let d = format!(r#"{{"Block": {{"CustomResponse": {{"ResponseCode": 403, "ResponseHeaders": {bad}}}}}}}"#);
        let e = acl_with("", &d).unwrap_err();
        assert_eq!(e.path, path, "{bad}");
    }
}

/// CustomRequestHandling on Count, Allow and the Allow default action: the
/// verdict carries `x-amzn-waf-<name>` headers; a later rule's header of the
/// same name replaces an earlier one (AWS); a block carries none.
#[test]
fn non_blocking_actions_insert_request_headers() {
    let handling = |action: &str, name: &str, value: &str| {
        format!(
            r#"{{"{action}": {{"CustomRequestHandling": {{"InsertHeaders": [{{"Name": "{name}", "Value": "{value}"}}]}}}}}}"#
        )
    };
    let ua = r#"{"SingleHeader": {"Name": "User-Agent"}}"#;
    let with_action = |name: &str, prio: i64, action: String, search: &str| {
        rule(name, prio, "Count", &byte(ua, "CONTAINS", search, NONE))
            .replace(r#""Action": {"Count": {}}"#, &format!(r#""Action": {action}"#))
    };
    let rules = [
        with_action("tag-bot", 0, handling("Count", "Bot", "suspected"), "bot"),
        with_action("tag-again", 1, handling("Count", "bot", "confirmed"), "evil"),
        with_action("trusted", 2, handling("Allow", "trusted", "yes"), "launcher"),
        rule("deny", 3, "Block", &byte(ua, "CONTAINS", "deny", NONE)),
    ]
    .join(",");
    let acl = acl_with(&rules, &handling("Allow", "default", "1")).expect("compiles");
    let v = acl.evaluate(&req(&[("user-agent", "evil bot launcher")]).view());
    assert_eq!(v.rule.as_deref(), Some("trusted"));
    assert_eq!(
        header_list(&v),
        vec![("x-amzn-waf-bot".into(), "confirmed".into()), ("x-amzn-waf-trusted".into(), "yes".into())]
    );
    let v = acl.evaluate(&req(&[("user-agent", "a bot")]).view());
    assert_eq!(v.rule, None, "the default action");
    assert_eq!(
        header_list(&v),
        vec![("x-amzn-waf-bot".into(), "suspected".into()), ("x-amzn-waf-default".into(), "1".into())]
    );
    let v = acl.evaluate(&req(&[("user-agent", "deny bot")]).view());
    assert!(matches!(v.action, Action::Block(_)));
    assert!(v.request_headers.is_empty(), "nothing reaches the origin");
    assert!(acl.evaluate(&req(&[("user-agent", "game")]).view()).request_headers.len() == 1);

    // AWS: no duplicate names in one action, at most 100 per web ACL.
    let dup = r#"{"Allow": {"CustomRequestHandling": {"InsertHeaders": [{"Name": "a", "Value": "1"}, {"Name": "A", "Value": "2"}]}}}"#;
    assert_eq!(acl_with("", dup).unwrap_err().path, "DefaultAction.Allow.CustomRequestHandling.InsertHeaders[1].Name");
    let many: Vec<String> = (0..101).map(|i| format!(r#"{{"Name": "h{i}", "Value": "v"}}"#)).collect();
    let many = format!(r#"{{"Allow": {{"CustomRequestHandling": {{"InsertHeaders": [{}]}}}}}}"#, many.join(","));
    let e = acl_with("", &many).unwrap_err();
    assert_eq!(e.path, "DefaultAction.Allow.CustomRequestHandling.InsertHeaders[100]");
    assert!(e.reason.contains("at most 100"), "{e}");
}

/// CloudFormation's spellings: `Arn`, `SearchStringBase64` (exactly one of
/// it and `SearchString`, at most 200 decoded bytes), `Tags`.
#[test]
fn cloudformation_spellings_are_accepted() {
    let b64 = |v: &str| {
        format!(
            r#"{{"ByteMatchStatement": {{"FieldToMatch": {{"SingleHeader": {{"Name": "user-agent"}}}}, "PositionalConstraint": "STARTS_WITH",
              "SearchStringBase64": "{v}", "TextTransformations": {NONE}}}}}"#
        )
    };
    // "PostmanRuntime" in base64.
    let acl = acl(&rule("postman", 0, "Block", &b64("UG9zdG1hblJ1bnRpbWU=")));
    assert!(blocked(&acl, &req(&[("user-agent", "PostmanRuntime/7.29.2")])));
    assert!(!blocked(&acl, &req(&[("user-agent", "X-UnrealEngine-Agent")])));
    for (bad, field) in
        [("not base64!", "SearchStringBase64"), ("QQ", "SearchStringBase64"), ("", "SearchStringBase64")]
    {
        let e = acl_with(&rule("r", 0, "Block", &b64(bad)), r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, format!("Rules[0].Statement.ByteMatchStatement.{field}"), "{bad:?}");
    }
    let long = "QUFB".repeat(67); // 201 bytes
    let e = acl_with(&rule("r", 0, "Block", &b64(&long)), r#"{"Allow": {}}"#).unwrap_err();
    assert!(e.reason.contains("1 to 200 bytes"), "{e}");
    let both = b64("QQ==").replace(r#""SearchStringBase64""#, r#""SearchString": "A", "SearchStringBase64""#);
    let e = acl_with(&rule("r", 0, "Block", &both), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.ByteMatchStatement");
    let arn =
        r#"{"IPSetReferenceStatement": {"Arn": "arn:aws:wafv2:us-east-1:123456789012:global/ipset/denied/denied"}}"#;
    let mut r = req(&[]);
    r.ip = "127.0.0.2".parse().expect("ip");
    assert!(blocked(&acl_with(&rule("r", 0, "Block", arn), r#"{"Allow": {}}"#).expect("compiles"), &r));
    let json: WebAclJson = serde_json::from_str(
        r#"{"Name": "a", "DefaultAction": {"Allow": {}}, "Tags": [{"Key": "team", "Value": "ops"}, {"Key": "", "Value": "x"}],
            "VisibilityConfig": {"SampledRequestsEnabled": true, "CloudWatchMetricsEnabled": false, "MetricName": "a"}}"#,
    )
    .expect("json");
    assert_eq!(WebAcl::compile(&json, &TestSets).unwrap_err().path, "Tags[1].Key");
}

fn fingerprint() -> crate::TlsFingerprint {
    // A minimal ClientHello: TLS 1.2 legacy version, one cipher suite
    // (TLS_AES_128_GCM_SHA256), no extensions.
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0, 0, 0]);
    let mut rec = vec![1, 0, 0, body.len() as u8];
    rec.extend_from_slice(&body);
    let mut records = vec![22, 3, 1, 0, rec.len() as u8];
    records.extend_from_slice(&rec);
    crate::TlsFingerprint::from_records(&records).expect("a ClientHello")
}

/// `JA3Fingerprint`/`JA4Fingerprint` fields: matched on the connection's
/// fingerprint, `FallbackBehavior` without one, refused where AWS refuses
/// them, and connection-level for stream routes.
#[test]
fn tls_fingerprint_fields() {
    let f = fingerprint();
    let field = |name: &str, fallback: &str| format!(r#"{{"{name}": {{"FallbackBehavior": "{fallback}"}}}}"#);
    let acl3 = acl(&rule("ja3", 0, "Block", &byte(&field("JA3Fingerprint", "NO_MATCH"), "EXACTLY", f.ja3(), NONE)));
    let acl4 = acl(&rule("ja4", 0, "Block", &byte(&field("JA4Fingerprint", "MATCH"), "EXACTLY", f.ja4(), NONE)));
    let mut r = req(&[]);
    assert!(!blocked(&acl3, &r), "no fingerprint: NO_MATCH");
    assert!(blocked(&acl4, &r), "no fingerprint: MATCH");
    r.tls = Some(f);
    assert!(blocked(&acl3, &r) && blocked(&acl4, &r));
    let other =
        acl(&rule("ja3", 0, "Block", &byte(&field("JA3Fingerprint", "NO_MATCH"), "EXACTLY", &"0".repeat(32), NONE)));
    assert!(!blocked(&other, &r));
    assert_eq!(acl3.request_rule(), None, "a fingerprint rule can run on a stream connection");
    let sqli = format!(
        r#"{{"SqliMatchStatement": {{"FieldToMatch": {}, "TextTransformations": {NONE}}}}}"#,
        field("JA4Fingerprint", "MATCH")
    );
    let e = acl_with(&rule("r", 0, "Block", &sqli), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.SqliMatchStatement.FieldToMatch.JA4Fingerprint");
    let bad = byte(&field("JA3Fingerprint", "MAYBE"), "EXACTLY", "x", NONE);
    let e = acl_with(&rule("r", 0, "Block", &bad), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.ByteMatchStatement.FieldToMatch.JA3Fingerprint.FallbackBehavior");
}

fn rate(extra: &str) -> String {
    format!(r#"{{"RateBasedStatement": {{"Limit": 10, "EvaluationWindowSec": 60, {extra}}}}}"#)
}

/// Requests `r` until the rule blocks; how many got through (None: never).
fn allowance(acl: &WebAcl, r: &Req) -> Option<usize> {
    (0..30).position(|_| blocked(acl, r))
}

#[test]
fn rate_keys_forwarded_ip_and_constant() {
    let fwd = acl(&rule(
        "fwd",
        0,
        "Block",
        &rate(
            r#""AggregateKeyType": "FORWARDED_IP", "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "NO_MATCH"}"#,
        ),
    ));
    let a = req(&[("x-forwarded-for", "192.0.2.1, 127.0.0.1")]);
    let b = req(&[("x-forwarded-for", "192.0.2.2")]);
    assert_eq!(allowance(&fwd, &a), Some(10));
    assert_eq!(allowance(&fwd, &b), Some(10), "another forwarded address has its own count");
    assert_eq!(allowance(&fwd, &req(&[])), None, "no header: not counted");
    assert_eq!(allowance(&fwd, &req(&[("x-forwarded-for", "junk")])), None, "NO_MATCH: not counted");
    let e = acl_with(&rule("r", 0, "Block", &rate(r#""AggregateKeyType": "FORWARDED_IP""#)), r#"{"Allow": {}}"#)
        .unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.RateBasedStatement.ForwardedIPConfig");

    let scope = r#""ScopeDownStatement": {"ByteMatchStatement": {"FieldToMatch": {"UriPath": {}}, "PositionalConstraint": "STARTS_WITH", "SearchString": "/login", "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}"#;
    let constant = acl(&rule("all", 0, "Block", &rate(&format!(r#""AggregateKeyType": "CONSTANT", {scope}"#))));
    let mut login = req(&[]);
    login.path = "/login";
    let mut other = req(&[]);
    other.path = "/login/x";
    other.ip = "127.0.0.9".parse().expect("ip");
    for _ in 0..5 {
        assert!(!blocked(&constant, &login) && !blocked(&constant, &other));
    }
    assert!(blocked(&constant, &login), "every matching request counts together, whatever the address");
    assert!(!blocked(&constant, &req(&[])), "outside the scope-down statement");
    let e =
        acl_with(&rule("r", 0, "Block", &rate(r#""AggregateKeyType": "CONSTANT""#)), r#"{"Allow": {}}"#).unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.RateBasedStatement.ScopeDownStatement");
    assert_eq!(constant.request_rule(), Some("all"), "its scope-down reads the path");
}

#[test]
fn rate_custom_keys_each_kind() {
    let tt = r#"[{"Type": "LOWERCASE", "Priority": 0}]"#;
    let custom = |keys: &str| {
        let mut extra = format!(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{keys}]"#);
        if keys.contains("ForwardedIP") {
            extra.push_str(r#", "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH"}"#);
        }
        acl(&rule("flood", 0, "Block", &rate(&extra)))
    };
    // (key, request with component A, request with component B, request without it)
    let with =
        |headers: &[(&'static str, &'static str)], path: &'static str, query: &'static str, method: &'static str| {
            let mut r = req(headers);
            r.path = path;
            r.query = query;
            r.method = method;
            r
        };
    let cases: Vec<(String, Req, Req, Option<Req>)> = vec![
        (
            format!(r#"{{"Header": {{"Name": "x-player", "TextTransformations": {tt}}}}}"#),
            with(&[("x-player", "Alice")], "/", "", "GET"),
            with(&[("x-player", "bob")], "/", "", "GET"),
            Some(req(&[])),
        ),
        (
            format!(r#"{{"Cookie": {{"Name": "session", "TextTransformations": {tt}}}}}"#),
            with(&[("cookie", "a=1; session=abc")], "/", "", "GET"),
            with(&[("cookie", "session=def")], "/", "", "GET"),
            Some(with(&[("cookie", "Session=abc")], "/", "", "GET")),
        ),
        (
            format!(r#"{{"QueryArgument": {{"Name": "player", "TextTransformations": {tt}}}}}"#),
            with(&[], "/", "player=1&x=2", "GET"),
            with(&[], "/", "PLAYER=2", "GET"),
            Some(with(&[], "/", "x=1", "GET")),
        ),
        (
            format!(r#"{{"QueryString": {{"TextTransformations": {tt}}}}}"#),
            with(&[], "/", "a=1", "GET"),
            with(&[], "/", "a=2", "GET"),
            Some(req(&[])),
        ),
        (
            format!(r#"{{"UriPath": {{"TextTransformations": {tt}}}}}"#),
            with(&[], "/a", "", "GET"),
            with(&[], "/b", "", "GET"),
            None,
        ),
        (r#"{"HTTPMethod": {}}"#.into(), with(&[], "/", "", "GET"), with(&[], "/", "", "HEAD"), None),
        (
            // AWS: an IP or ForwardedIP key needs another key beside it.
            r#"{"ForwardedIP": {}}, {"HTTPMethod": {}}"#.into(),
            with(&[("x-forwarded-for", "192.0.2.1")], "/", "", "GET"),
            with(&[("x-forwarded-for", "192.0.2.2")], "/", "", "GET"),
            Some(req(&[])),
        ),
        (
            r#"{"JA3Fingerprint": {"FallbackBehavior": "NO_MATCH"}}"#.into(),
            {
                let mut r = req(&[]);
                r.tls = Some(fingerprint());
                r
            },
            req(&[("x", "y")]),
            Some(req(&[])),
        ),
    ];
    for (key, a, b, missing) in cases {
        let keyed = custom(&key);
        if key.contains("JA3") {
            assert_eq!(allowance(&keyed, &a), Some(10), "{key}");
            assert_eq!(allowance(&keyed, &b), None, "{key}: no fingerprint, NO_MATCH");
            continue;
        }
        assert_eq!(allowance(&keyed, &a), Some(10), "{key}");
        assert_eq!(allowance(&keyed, &b), Some(10), "{key}: another value has its own count");
        if let Some(m) = missing {
            assert_eq!(allowance(&keyed, &m), None, "{key}: a request missing the component is not counted");
        }
    }
    // Transformations apply: "Alice" and "alice" are one instance.
    let lower = custom(&format!(r#"{{"Header": {{"Name": "x-player", "TextTransformations": {tt}}}}}"#));
    assert_eq!(allowance(&lower, &req(&[("x-player", "Alice")])), Some(10));
    assert_eq!(allowance(&lower, &req(&[("x-player", "alice")])), Some(0));
    // Two keys: the combination is the instance.
    let two = custom(r#"{"IP": {}}, {"HTTPMethod": {}}"#);
    assert_eq!(allowance(&two, &req(&[])), Some(10));
    let mut other_ip = req(&[]);
    other_ip.ip = "127.0.0.7".parse().expect("ip");
    assert_eq!(allowance(&two, &other_ip), Some(10));
    assert_eq!(two.request_rule(), Some("flood"), "HTTPMethod needs a request");
    assert_eq!(custom(r#"{"IP": {}}, {"JA4Fingerprint": {"FallbackBehavior": "MATCH"}}"#).request_rule(), None);
    // A label namespace: only labels earlier rules added.
    let labelled = format!(
        "{}, {}",
        rule("tag", 0, "Count", &byte(r#"{"SingleHeader": {"Name": "x-tier"}}"#, "EXACTLY", "free", NONE))
            .replace(r#""Action": {"Count": {}}"#, r#""Action": {"Count": {}}, "RuleLabels": [{"Name": "tier:free"}]"#),
        rule(
            "flood",
            1,
            "Block",
            &rate(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{"LabelNamespace": {"Namespace": "tier:"}}]"#)
        ),
    );
    let tiered = acl(&labelled);
    assert_eq!(allowance(&tiered, &req(&[("x-tier", "free")])), Some(10));
    assert_eq!(allowance(&tiered, &req(&[("x-tier", "paid")])), None, "no label of the namespace: not counted");

    for (keys, path) in [
        ("", "Rules[0].Statement.RateBasedStatement.CustomKeys"),
        (r#"{}"#, "Rules[0].Statement.RateBasedStatement.CustomKeys[0]"),
        (r#"{"ASN": {}}"#, "Rules[0].Statement.RateBasedStatement.CustomKeys[0].ASN"),
        (
            r#"{"LabelNamespace": {"Namespace": "tier"}}"#,
            "Rules[0].Statement.RateBasedStatement.CustomKeys[0].LabelNamespace.Namespace",
        ),
        (
            r#"{"IP": {}}, {"IP": {}}, {"IP": {}}, {"IP": {}}, {"IP": {}}, {"IP": {}}"#,
            "Rules[0].Statement.RateBasedStatement.CustomKeys",
        ),
        (r#"{"ForwardedIP": {}}"#, "Rules[0].Statement.RateBasedStatement.ForwardedIPConfig"),
        (r#"{"IP": {}}"#, "Rules[0].Statement.RateBasedStatement.CustomKeys"),
    ] {
        let extra = format!(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{keys}]"#);
        let e = acl_with(&rule("r", 0, "Block", &rate(&extra)), r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, path, "{keys}");
    }
}

/// Counts carry over a recompile only when the keys are the same too.
#[test]
fn rate_counts_survive_only_the_same_keys() {
    let st = |keys: &str| rate(&format!(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{keys}]"#));
    let r = req(&[("x-player", "p1")]);
    let header = r#"{"Header": {"Name": "x-player", "TextTransformations": [{"Type": "NONE", "Priority": 0}]}}"#;
    let old = acl(&rule("flood", 0, "Block", &st(header)));
    assert_eq!(allowance(&old, &r), Some(10));
    let mut same = acl(&rule("flood", 0, "Block", &st(header)));
    same.keep_rate_counts(&old);
    assert!(blocked(&same, &r), "the same keys: still over the limit");
    let mut changed = acl(&rule("flood", 0, "Block", &st(&format!(r#"{header}, {{"IP": {{}}}}"#))));
    changed.keep_rate_counts(&old);
    assert!(!blocked(&changed, &r), "other keys start from zero");
}

/// AWS refuses `content-type` as a custom response header name; the
/// framing and hop-by-hop headers would break the response shardgate
/// writes. Each is refused, whatever its case, with the path of the name.
#[test]
fn custom_responses_refuse_content_type_framing_and_hop_by_hop_headers() {
    for name in [
        "content-type",
        "Content-Type",
        "content-length",
        "Transfer-Encoding",
        "connection",
        "keep-alive",
        "TE",
        "trailer",
        "upgrade",
    ] {
        let block = format!(
            r#"{{"Block": {{"CustomResponse": {{"ResponseCode": 403, "ResponseHeaders": [{{"Name": "x-ok", "Value": "1"}}, {{"Name": "{name}", "Value": "x"}}]}}}}}}"#
        );
        let e = acl_with("", &block).unwrap_err();
        assert_eq!(e.path, "DefaultAction.Block.CustomResponse.ResponseHeaders[1].Name", "{name}");
        assert!(e.reason.contains(&format!("{name:?} cannot be a custom response header")), "{name}: {e}");
        let as_rule = rule("r", 0, "Block", r#"{"IPSetReferenceStatement": {"ARN": "denied"}}"#)
            .replace(r#""Action": {"Block": {}}"#, &format!(r#""Action": {block}"#));
        let e = acl_with(&as_rule, r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, "Rules[0].Action.Block.CustomResponse.ResponseHeaders[1].Name", "{name}");
    }
    let e = acl_with("", r#"{"Block": {"CustomResponse": {"ResponseCode": 403, "ResponseHeaders": [{"Name": "content-type", "Value": "text/html"}]}}}"#)
        .unwrap_err();
    assert!(e.reason.contains("ContentType sets it"), "the reason points to the body's ContentType: {e}");
    // Names that only look alike are fine.
    acl_with("", r#"{"Block": {"CustomResponse": {"ResponseCode": 403, "ResponseHeaders": [{"Name": "x-content-type", "Value": "x"}, {"Name": "content-language", "Value": "en"}]}}}"#)
        .expect("other names are sent as written");
}

/// `FallbackBehavior: MATCH` on a rate-based rule's forwarded address: a
/// request whose header holds no address matches the rule at once, and is
/// not counted in any instance (before, every such request shared one
/// instance, so each junk-header client got `Limit` requests per window, and
/// the address ffff:…:ffff shared that instance). A missing header: the rule
/// does not apply.
#[test]
fn rate_forwarded_ip_match_fallback_matches_without_counting() {
    let fwd = |fallback: &str| {
        acl(&rule(
            "fwd",
            0,
            "Block",
            &rate(&format!(
                r#""AggregateKeyType": "FORWARDED_IP", "ForwardedIPConfig": {{"HeaderName": "X-Forwarded-For", "FallbackBehavior": "{fallback}"}}"#
            )),
        ))
    };
    let matching = fwd("MATCH");
    let junk = req(&[("x-forwarded-for", "junk")]);
    assert_eq!(allowance(&matching, &junk), Some(0), "MATCH: the rule applies from the first request");
    assert_eq!(allowance(&matching, &req(&[("x-forwarded-for", ", ")])), Some(0), "no address at all");
    assert_eq!(allowance(&matching, &req(&[])), None, "no header: the rule does not apply");
    let top = req(&[("x-forwarded-for", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]);
    assert_eq!(allowance(&matching, &top), Some(10), "the last IPv6 address has its own count, untouched by junk");
    let size = |a: &WebAcl| match &a.rules[0].statement {
        Statement::Rate { limiter, .. } => limiter.counts.lock().map(|g| g.0.len()).unwrap_or(0),
        _ => 0,
    };
    assert_eq!(size(&matching), 1, "only the real address is an instance");
    let skipping = fwd("NO_MATCH");
    assert_eq!(allowance(&skipping, &junk), None, "NO_MATCH: neither counted nor matched");
    assert_eq!(size(&skipping), 0);
}

/// The same for custom keys: a ForwardedIP or JA3/JA4 component unreadable
/// under MATCH makes the rule match uncounted; a missing component of any
/// kind skips the request even then.
#[test]
fn rate_custom_key_match_fallbacks_match_without_counting() {
    // The keys, with the ForwardedIPConfig a ForwardedIP key needs.
    let extra = |keys: &str| {
        let mut extra = format!(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{keys}]"#);
        if keys.contains("ForwardedIP") {
            extra.push_str(r#", "ForwardedIPConfig": {"HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH"}"#);
        }
        extra
    };
    let custom = |keys: &str| acl(&rule("flood", 0, "Block", &rate(&extra(keys))));
    let fwd = custom(r#"{"ForwardedIP": {}}, {"HTTPMethod": {}}"#);
    assert_eq!(allowance(&fwd, &req(&[("x-forwarded-for", "junk")])), Some(0), "unreadable address, MATCH");
    assert_eq!(allowance(&fwd, &req(&[])), None, "no header: skipped");
    assert_eq!(allowance(&fwd, &req(&[("x-forwarded-for", "192.0.2.9")])), Some(10));
    for name in ["JA3Fingerprint", "JA4Fingerprint"] {
        let keyed = custom(&format!(r#"{{"{name}": {{"FallbackBehavior": "MATCH"}}}}"#));
        assert_eq!(allowance(&keyed, &req(&[])), Some(0), "{name}: a plain connection matches at once");
        let mut tls = req(&[]);
        tls.tls = Some(fingerprint());
        assert_eq!(allowance(&keyed, &tls), Some(10), "{name}: a fingerprint is counted");
        let both = custom(&format!(
            r#"{{"{name}": {{"FallbackBehavior": "MATCH"}}}}, {{"Header": {{"Name": "x-player", "TextTransformations": {NONE}}}}}"#
        ));
        assert_eq!(allowance(&both, &req(&[])), None, "{name}: the header is missing, so the request is skipped");
        assert_eq!(allowance(&both, &req(&[("x-player", "p")])), Some(0), "{name}: header there, no fingerprint");
        let skipping = custom(&format!(r#"{{"{name}": {{"FallbackBehavior": "NO_MATCH"}}}}"#));
        assert_eq!(allowance(&skipping, &req(&[])), None, "{name}: NO_MATCH skips");
    }
    // AWS: an IP or ForwardedIP key needs another key beside it.
    for (keys, kind) in
        [(r#"{"IP": {}}"#, "AggregateKeyType IP"), (r#"{"ForwardedIP": {}}"#, "AggregateKeyType FORWARDED_IP")]
    {
        let e = acl_with(&rule("r", 0, "Block", &rate(&extra(keys))), r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, "Rules[0].Statement.RateBasedStatement.CustomKeys", "{keys}");
        assert!(e.reason.contains("at least one other key") && e.reason.contains(kind), "{keys}: {e}");
    }
}

/// A LabelNamespace key: a fully qualified namespace works like the short
/// one (as a LabelMatchStatement's key does), and the instance is the set of
/// distinct labels, whatever their order or repetition.
#[test]
fn rate_label_namespace_keys_are_normalised() {
    let labeller = |name: &str, prio: i64, header: &str, labels: &[&str]| {
        let labels: Vec<String> = labels.iter().map(|l| format!(r#"{{"Name": "{l}"}}"#)).collect();
        rule(name, prio, "Count", &byte(r#"{"SingleHeader": {"Name": "x-tag"}}"#, "CONTAINS", header, NONE)).replace(
            r#""Action": {"Count": {}}"#,
            &format!(r#""Action": {{"Count": {{}}}}, "RuleLabels": [{}]"#, labels.join(",")),
        )
    };
    for ns in ["tier:", "awswaf:111122223333:webacl:acl:tier:"] {
        let rules = [
            labeller("ab", 0, "ab", &["tier:a", "tier:b"]),
            labeller("ba", 1, "ba", &["tier:b", "tier:a"]),
            labeller("other", 2, "other", &["other:x"]),
            rule(
                "flood",
                3,
                "Block",
                &rate(&format!(
                    r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{{"LabelNamespace": {{"Namespace": "{ns}"}}}}]"#
                )),
            ),
        ]
        .join(",");
        let acl = acl(&rules);
        let (ab, ba, both) = (req(&[("x-tag", "ab")]), req(&[("x-tag", "ba")]), req(&[("x-tag", "ab ba")]));
        for i in 0..10 {
            let r = [&ab, &ba, &both][i % 3];
            assert!(!blocked(&acl, r), "{ns}: request {i} is within the shared limit");
        }
        for r in [&ab, &ba, &both] {
            assert!(blocked(&acl, r), "{ns}: {{a, b}} in any order or repeated is one instance");
        }
        assert_eq!(allowance(&acl, &req(&[("x-tag", "other")])), None, "{ns}: no label of the namespace");
    }
    let e = acl_with(
        &rule(
            "r",
            0,
            "Block",
            &rate(r#""AggregateKeyType": "CUSTOM_KEYS", "CustomKeys": [{"LabelNamespace": {"Namespace": "awswaf:1:webacl:acl:"}}]"#),
        ),
        r#"{"Allow": {}}"#,
    )
    .unwrap_err();
    assert_eq!(e.path, "Rules[0].Statement.RateBasedStatement.CustomKeys[0].LabelNamespace.Namespace");
}

/// AWS: a JA3/JA4 fingerprint field goes only with a ByteMatchStatement
/// whose PositionalConstraint is EXACTLY.
#[test]
fn fingerprint_fields_only_with_byte_match_exactly() {
    for name in ["JA3Fingerprint", "JA4Fingerprint"] {
        let field = format!(r#"{{"{name}": {{"FallbackBehavior": "NO_MATCH"}}}}"#);
        let statements = [
            (
                format!(
                    r#"{{"RegexMatchStatement": {{"FieldToMatch": {field}, "RegexString": "^t13", "TextTransformations": {NONE}}}}}"#
                ),
                format!("Rules[0].Statement.RegexMatchStatement.FieldToMatch.{name}"),
            ),
            (
                format!(
                    r#"{{"RegexPatternSetReferenceStatement": {{"ARN": "bots", "FieldToMatch": {field}, "TextTransformations": {NONE}}}}}"#
                ),
                format!("Rules[0].Statement.RegexPatternSetReferenceStatement.FieldToMatch.{name}"),
            ),
            (
                format!(
                    r#"{{"SizeConstraintStatement": {{"FieldToMatch": {field}, "ComparisonOperator": "GT", "Size": 1, "TextTransformations": {NONE}}}}}"#
                ),
                format!("Rules[0].Statement.SizeConstraintStatement.FieldToMatch.{name}"),
            ),
            (
                format!(r#"{{"XssMatchStatement": {{"FieldToMatch": {field}, "TextTransformations": {NONE}}}}}"#),
                format!("Rules[0].Statement.XssMatchStatement.FieldToMatch.{name}"),
            ),
            (
                byte(&field, "CONTAINS", "t13", NONE),
                "Rules[0].Statement.ByteMatchStatement.PositionalConstraint".into(),
            ),
            (
                byte(&field, "STARTS_WITH", "t13", NONE),
                "Rules[0].Statement.ByteMatchStatement.PositionalConstraint".into(),
            ),
        ];
        for (st, path) in statements {
            let e = acl_with(&rule("r", 0, "Block", &st), r#"{"Allow": {}}"#).unwrap_err();
            assert_eq!(e.path, path);
            assert!(e.reason.contains("only by a ByteMatchStatement with PositionalConstraint EXACTLY"), "{e}");
        }
        acl(&rule("r", 0, "Block", &byte(&field, "EXACTLY", "t13d0000", NONE)));
    }
}

/// Every forwarded-address config is checked the same way (AWS's
/// `HeaderName` pattern, `FallbackBehavior`, `Position`), with the path.
#[test]
fn forwarded_ip_configs_are_checked_alike() {
    let ip_set = |header: &str, fallback: &str, position: &str| {
        format!(
            r#"{{"IPSetReferenceStatement": {{"ARN": "denied", "IPSetForwardedIPConfig": {{"HeaderName": "{header}", "FallbackBehavior": "{fallback}", "Position": "{position}"}}}}}}"#
        )
    };
    let geo = |header: &str, fallback: &str| {
        format!(
            r#"{{"GeoMatchStatement": {{"CountryCodes": ["NL"], "ForwardedIPConfig": {{"HeaderName": "{header}", "FallbackBehavior": "{fallback}"}}}}}}"#
        )
    };
    let rate = |header: &str, fallback: &str| {
        rate(&format!(
            r#""AggregateKeyType": "FORWARDED_IP", "ForwardedIPConfig": {{"HeaderName": "{header}", "FallbackBehavior": "{fallback}"}}"#
        ))
    };
    let ip = "Rules[0].Statement.IPSetReferenceStatement.IPSetForwardedIPConfig";
    let g = "Rules[0].Statement.GeoMatchStatement.ForwardedIPConfig";
    let r = "Rules[0].Statement.RateBasedStatement.ForwardedIPConfig";
    for (statement, path) in [
        (ip_set("X_Forwarded", "MATCH", "FIRST"), format!("{ip}.HeaderName")),
        (ip_set("", "MATCH", "FIRST"), format!("{ip}.HeaderName")),
        (ip_set("X-Forwarded-For", "MAYBE", "FIRST"), format!("{ip}.FallbackBehavior")),
        (ip_set("X-Forwarded-For", "MATCH", "MIDDLE"), format!("{ip}.Position")),
        (geo("X Forwarded", "MATCH"), format!("{g}.HeaderName")),
        (geo("X-Forwarded-For", "YES"), format!("{g}.FallbackBehavior")),
        (rate(&"x".repeat(256), "MATCH"), format!("{r}.HeaderName")),
        (rate("X-Forwarded-For", "no_match"), format!("{r}.FallbackBehavior")),
    ] {
        let e = acl_with(&rule("r", 0, "Block", &statement), r#"{"Allow": {}}"#).unwrap_err();
        assert_eq!(e.path, path, "{statement}");
    }
    // LAST reads the last address; an empty entry is skipped.
    let last = acl(&rule("r", 0, "Block", &ip_set("X-Forwarded-For", "NO_MATCH", "LAST")));
    assert!(blocked(&last, &req(&[("x-forwarded-for", "192.0.2.1, 127.0.0.2, ")])));
    assert!(!blocked(&last, &req(&[("x-forwarded-for", "127.0.0.2, 192.0.2.1")])));
}
