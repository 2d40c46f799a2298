//! AWS WAF v2 JSON, field for field as AWS writes it (PascalCase), for the
//! parts shardgate implements. Shapes follow botocore's
//! `wafv2/2019-07-29/service-2.json`; CloudFormation's spellings of the
//! same shapes (`AWS::WAFv2::WebACL`: `Arn`, `SearchStringBase64`) are
//! accepted too. Unknown fields are
//! refused, so a rule that uses something shardgate does not implement is a
//! 400 naming it, never a rule that silently does nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields every AWS WAF resource has here: the server-owned id and
/// timestamps (APISIX conventions), AWS's `Name`, `Description` and `Scope`
/// (accepted, not used: one gateway serves one scope).
macro_rules! aws_resource {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Resource id (set by the server).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub id: Option<Value>,
            /// Set by the server.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub create_time: Option<i64>,
            /// Set by the server.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub update_time: Option<i64>,
            /// `Name`.
            #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// `Description`.
            #[serde(rename = "Description", default, skip_serializing_if = "Option::is_none")]
            pub description: Option<String>,
            /// `Scope`: `CLOUDFRONT` or `REGIONAL` (accepted, not used).
            #[serde(rename = "Scope", default, skip_serializing_if = "Option::is_none")]
            pub scope: Option<String>,
            /// `Tags`: `[{Key, Value}]` (kept, not used).
            #[serde(rename = "Tags", default, skip_serializing_if = "Option::is_none")]
            pub tags: Option<Vec<TagJson>>,
            $($body)*
        }
    };
}

/// `Tag`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TagJson {
    /// `Key`: 1 to 128 characters.
    #[serde(rename = "Key")]
    pub key: String,
    /// `Value`: 0 to 256 characters.
    #[serde(rename = "Value")]
    pub value: String,
}

impl TagJson {
    /// Checks AWS's lengths (`Tag` in botocore's wafv2 service model);
    /// `Err` holds the field and the reason.
    pub fn check_all(tags: Option<&[TagJson]>) -> Result<(), (String, &'static str)> {
        for (i, t) in tags.unwrap_or_default().iter().enumerate() {
            if t.key.is_empty() || t.key.chars().count() > 128 {
                return Err((format!("Tags[{i}].Key"), "1 to 128 characters"));
            }
            if t.value.chars().count() > 256 {
                return Err((format!("Tags[{i}].Value"), "at most 256 characters"));
            }
        }
        Ok(())
    }
}

aws_resource! {
    /// `CreateWebACL` input, plus the APISIX-style resource fields.
    pub struct WebAclJson {
        /// `DefaultAction`.
        #[serde(rename = "DefaultAction", default, skip_serializing_if = "Option::is_none")]
        pub default_action: Option<ActionJson>,
        /// `Rules`.
        #[serde(rename = "Rules", default, skip_serializing_if = "Option::is_none")]
        pub rules: Option<Vec<RuleJson>>,
        /// `VisibilityConfig`.
        #[serde(rename = "VisibilityConfig", default, skip_serializing_if = "Option::is_none")]
        pub visibility_config: Option<VisibilityJson>,
        /// `CustomResponseBodies`: key → `{ContentType, Content}`.
        #[serde(rename = "CustomResponseBodies", default, skip_serializing_if = "Option::is_none")]
        pub custom_response_bodies: Option<std::collections::BTreeMap<String, CustomBodyJson>>,
    }
}

/// `CustomResponseBody`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomBodyJson {
    /// `TEXT_PLAIN`, `TEXT_HTML` or `APPLICATION_JSON`.
    #[serde(rename = "ContentType")]
    pub content_type: String,
    /// The body.
    #[serde(rename = "Content")]
    pub content: String,
}

/// `VisibilityConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VisibilityJson {
    /// `SampledRequestsEnabled`.
    #[serde(rename = "SampledRequestsEnabled")]
    pub sampled_requests_enabled: bool,
    /// `CloudWatchMetricsEnabled` (accepted; shardgate exports Prometheus).
    #[serde(rename = "CloudWatchMetricsEnabled")]
    pub cloud_watch_metrics_enabled: bool,
    /// `MetricName`.
    #[serde(rename = "MetricName")]
    pub metric_name: String,
}

/// `Rule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `Priority`: lowest first.
    #[serde(rename = "Priority")]
    pub priority: i64,
    /// `Statement`.
    #[serde(rename = "Statement")]
    pub statement: StatementJson,
    /// `Action`.
    #[serde(rename = "Action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionJson>,
    /// `OverrideAction` (rule groups only; refused).
    #[serde(rename = "OverrideAction", default, skip_serializing_if = "Option::is_none")]
    pub override_action: Option<Value>,
    /// `RuleLabels`: `[{Name}]`.
    #[serde(rename = "RuleLabels", default, skip_serializing_if = "Option::is_none")]
    pub rule_labels: Option<Vec<LabelJson>>,
    /// `VisibilityConfig`.
    #[serde(rename = "VisibilityConfig")]
    pub visibility_config: VisibilityJson,
}

/// `Label`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelJson {
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `RuleAction` / `DefaultAction`: exactly one member.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionJson {
    /// `Allow`: `{CustomRequestHandling?}`.
    #[serde(rename = "Allow", default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<RequestHandlingJson>,
    /// `Block`: `{CustomResponse?}`.
    #[serde(rename = "Block", default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockJson>,
    /// `Count`: `{CustomRequestHandling?}`.
    #[serde(rename = "Count", default, skip_serializing_if = "Option::is_none")]
    pub count: Option<RequestHandlingJson>,
    /// `Captcha` (not supported).
    #[serde(rename = "Captcha", default, skip_serializing_if = "Option::is_none")]
    pub captcha: Option<Value>,
    /// `Challenge` (not supported).
    #[serde(rename = "Challenge", default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Value>,
}

/// `AllowAction` and `CountAction`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHandlingJson {
    /// `CustomRequestHandling`: headers inserted into the request the origin receives.
    #[serde(rename = "CustomRequestHandling", default, skip_serializing_if = "Option::is_none")]
    pub custom_request_handling: Option<CustomRequestHandlingJson>,
}

/// `CustomRequestHandling`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRequestHandlingJson {
    /// `InsertHeaders`: `[{Name, Value}]`, each name sent as `x-amzn-waf-<Name>`.
    #[serde(rename = "InsertHeaders")]
    pub insert_headers: Vec<NameValueJson>,
}

/// `BlockAction`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockJson {
    /// `CustomResponse`.
    #[serde(rename = "CustomResponse", default, skip_serializing_if = "Option::is_none")]
    pub custom_response: Option<CustomResponseJson>,
}

/// `CustomResponse`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomResponseJson {
    /// `ResponseCode` (200–599).
    #[serde(rename = "ResponseCode")]
    pub response_code: u16,
    /// `CustomResponseBodyKey`.
    #[serde(rename = "CustomResponseBodyKey", default, skip_serializing_if = "Option::is_none")]
    pub custom_response_body_key: Option<String>,
    /// `ResponseHeaders`: `[{Name, Value}]`.
    #[serde(rename = "ResponseHeaders", default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<Vec<NameValueJson>>,
}

/// `{Name, Value}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameValueJson {
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `Value`.
    #[serde(rename = "Value")]
    pub value: String,
}

/// Deepest statement tree, counted in statements: a rule's `Statement` is
/// level 1, each `AndStatement`/`OrStatement` member, `NotStatement`
/// statement and `ScopeDownStatement` one level more. AWS documents no
/// number; 21 is what earlier versions of shardgate accepted, so a web ACL
/// stored by them still loads. It keeps every recursion over a statement
/// tree (parsing, compiling, evaluating, walking references) shallow, and the
/// deepest legal web ACL inside the Admin API's JSON nesting limit
/// (`shardgate_model::json::MAX_DEPTH`): a rule's statement object is at
/// JSON level 4, each `AndStatement`/`OrStatement` level costs 3 more, and
/// the deepest leaf (`FieldToMatch.Headers.MatchPattern.IncludedHeaders`) 5,
/// so 21 levels are 4 + 3 × 20 + 5 = 69 JSON levels.
pub const MAX_STATEMENT_DEPTH: usize = 21;

/// The reason given when a statement tree is deeper than [`MAX_STATEMENT_DEPTH`].
pub fn too_deep() -> String {
    format!(
        "statements nest at most {MAX_STATEMENT_DEPTH} deep (shardgate's limit: a rule's Statement is level 1, each nested statement one more)"
    )
}

thread_local! {
    /// Statements being deserialized on this thread, outermost first.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of statement nesting while deserializing; refuses the level
/// past [`MAX_STATEMENT_DEPTH`] before serde recurses into it, so a deep
/// document is an error, never a stack overflow (serde's derived code
/// recurses once per level, with large frames).
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Result<DepthGuard, String> {
        DEPTH.with(|d| {
            if d.get() >= MAX_STATEMENT_DEPTH {
                return Err(too_deep());
            }
            d.set(d.get() + 1);
            Ok(DepthGuard)
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

impl<'de> Deserialize<'de> for StatementJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _level = DepthGuard::enter().map_err(serde::de::Error::custom)?;
        // The inherent function derived with `remote = "Self"`.
        StatementJson::deserialize(d)
    }
}

impl Serialize for StatementJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StatementJson::serialize(self, s)
    }
}

/// `Statement`: exactly one member. (De)serialized through the impls above,
/// which bound the nesting.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct StatementJson {
    /// `ByteMatchStatement`.
    #[serde(rename = "ByteMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub byte_match: Option<Box<ByteMatchJson>>,
    /// `RegexMatchStatement`.
    #[serde(rename = "RegexMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub regex_match: Option<Box<RegexMatchJson>>,
    /// `RegexPatternSetReferenceStatement`.
    #[serde(rename = "RegexPatternSetReferenceStatement", default, skip_serializing_if = "Option::is_none")]
    pub regex_pattern_set: Option<Box<RegexSetRefJson>>,
    /// `IPSetReferenceStatement`.
    #[serde(rename = "IPSetReferenceStatement", default, skip_serializing_if = "Option::is_none")]
    pub ip_set: Option<Box<IpSetRefJson>>,
    /// `SizeConstraintStatement`.
    #[serde(rename = "SizeConstraintStatement", default, skip_serializing_if = "Option::is_none")]
    pub size_constraint: Option<Box<SizeConstraintJson>>,
    /// `SqliMatchStatement`.
    #[serde(rename = "SqliMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub sqli_match: Option<Box<SqliMatchJson>>,
    /// `XssMatchStatement`.
    #[serde(rename = "XssMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub xss_match: Option<Box<XssMatchJson>>,
    /// `LabelMatchStatement`.
    #[serde(rename = "LabelMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub label_match: Option<Box<LabelMatchJson>>,
    /// `AndStatement`.
    #[serde(rename = "AndStatement", default, skip_serializing_if = "Option::is_none")]
    pub and: Option<Box<StatementsJson>>,
    /// `OrStatement`.
    #[serde(rename = "OrStatement", default, skip_serializing_if = "Option::is_none")]
    pub or: Option<Box<StatementsJson>>,
    /// `NotStatement`.
    #[serde(rename = "NotStatement", default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<NotJson>>,
    /// `GeoMatchStatement`.
    #[serde(rename = "GeoMatchStatement", default, skip_serializing_if = "Option::is_none")]
    pub geo_match: Option<Box<GeoMatchJson>>,
    /// `RateBasedStatement` (top level of a rule only).
    #[serde(rename = "RateBasedStatement", default, skip_serializing_if = "Option::is_none")]
    pub rate_based: Option<Box<RateBasedJson>>,
    /// `ManagedRuleGroupStatement` (refused: AWS-managed groups are AWS's).
    #[serde(rename = "ManagedRuleGroupStatement", default, skip_serializing_if = "Option::is_none")]
    pub managed_rule_group: Option<Value>,
    /// `RuleGroupReferenceStatement` (refused).
    #[serde(rename = "RuleGroupReferenceStatement", default, skip_serializing_if = "Option::is_none")]
    pub rule_group_reference: Option<Value>,
}

/// One member of a [`StatementJson`], borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    /// `ByteMatchStatement`.
    ByteMatch(&'a ByteMatchJson),
    /// `RegexMatchStatement`.
    RegexMatch(&'a RegexMatchJson),
    /// `RegexPatternSetReferenceStatement`.
    RegexPatternSet(&'a RegexSetRefJson),
    /// `IPSetReferenceStatement`.
    IpSet(&'a IpSetRefJson),
    /// `SizeConstraintStatement`.
    SizeConstraint(&'a SizeConstraintJson),
    /// `SqliMatchStatement`.
    SqliMatch(&'a SqliMatchJson),
    /// `XssMatchStatement`.
    XssMatch(&'a XssMatchJson),
    /// `LabelMatchStatement`.
    LabelMatch(&'a LabelMatchJson),
    /// `AndStatement`.
    And(&'a StatementsJson),
    /// `OrStatement`.
    Or(&'a StatementsJson),
    /// `NotStatement`.
    Not(&'a NotJson),
    /// `GeoMatchStatement`.
    GeoMatch(&'a GeoMatchJson),
    /// `RateBasedStatement`.
    RateBased(&'a RateBasedJson),
    /// `ManagedRuleGroupStatement`.
    ManagedRuleGroup,
    /// `RuleGroupReferenceStatement`.
    RuleGroupReference,
}

impl StatementJson {
    /// The members that are set, with their JSON names, in declaration order.
    /// A valid statement has exactly one.
    pub fn members(&self) -> impl Iterator<Item = (&'static str, Member<'_>)> {
        let list: [Option<(&'static str, Member<'_>)>; 15] = [
            self.byte_match.as_deref().map(|m| ("ByteMatchStatement", Member::ByteMatch(m))),
            self.regex_match.as_deref().map(|m| ("RegexMatchStatement", Member::RegexMatch(m))),
            self.regex_pattern_set
                .as_deref()
                .map(|m| ("RegexPatternSetReferenceStatement", Member::RegexPatternSet(m))),
            self.ip_set.as_deref().map(|m| ("IPSetReferenceStatement", Member::IpSet(m))),
            self.size_constraint.as_deref().map(|m| ("SizeConstraintStatement", Member::SizeConstraint(m))),
            self.sqli_match.as_deref().map(|m| ("SqliMatchStatement", Member::SqliMatch(m))),
            self.xss_match.as_deref().map(|m| ("XssMatchStatement", Member::XssMatch(m))),
            self.label_match.as_deref().map(|m| ("LabelMatchStatement", Member::LabelMatch(m))),
            self.and.as_deref().map(|m| ("AndStatement", Member::And(m))),
            self.or.as_deref().map(|m| ("OrStatement", Member::Or(m))),
            self.not.as_deref().map(|m| ("NotStatement", Member::Not(m))),
            self.geo_match.as_deref().map(|m| ("GeoMatchStatement", Member::GeoMatch(m))),
            self.rate_based.as_deref().map(|m| ("RateBasedStatement", Member::RateBased(m))),
            self.managed_rule_group.as_ref().map(|_| ("ManagedRuleGroupStatement", Member::ManagedRuleGroup)),
            self.rule_group_reference.as_ref().map(|_| ("RuleGroupReferenceStatement", Member::RuleGroupReference)),
        ];
        list.into_iter().flatten()
    }

    /// The statements nested directly in this one, with the path suffix that
    /// leads to each: `AndStatement`/`OrStatement` members, the
    /// `NotStatement`'s statement, a `RateBasedStatement`'s
    /// `ScopeDownStatement`. [`StatementJson::walk`] (and so every search of
    /// a tree, such as [`StatementJson::references`]) goes through here; the
    /// WAF's compiler descends through each kind's own compile function
    /// instead, and a new nesting kind is added to both.
    pub fn children(&self) -> Vec<(String, &StatementJson)> {
        let mut out = Vec::new();
        for (name, member) in self.members() {
            match member {
                Member::And(l) | Member::Or(l) => {
                    out.extend(l.statements.iter().enumerate().map(|(i, s)| (format!(".{name}.Statements[{i}]"), s)))
                }
                Member::Not(n) => out.push((format!(".{name}.Statement"), &n.statement)),
                Member::RateBased(r) => {
                    if let Some(s) = &r.scope_down_statement {
                        out.push((format!(".{name}.ScopeDownStatement"), s));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Calls `visit` with the path and statement of every statement of the
    /// tree rooted here (at `path`), parents first, at most
    /// [`MAX_STATEMENT_DEPTH`] levels deep (a deeper tree does not compile;
    /// the walk stays bounded for one built in code).
    pub fn walk<'a>(&'a self, path: &str, visit: &mut dyn FnMut(&str, &'a StatementJson)) {
        fn go<'a>(s: &'a StatementJson, path: &str, level: usize, visit: &mut dyn FnMut(&str, &'a StatementJson)) {
            visit(path, s);
            if level >= MAX_STATEMENT_DEPTH {
                return;
            }
            for (suffix, child) in s.children() {
                go(child, &format!("{path}{suffix}"), level + 1, visit);
            }
        }
        go(self, path, 1, visit);
    }

    /// Every set this tree refers to by ARN, at any depth, with the JSON path
    /// of the `ARN` field.
    pub fn references(&self, path: &str) -> Vec<SetReference> {
        let mut out = Vec::new();
        self.walk(path, &mut |p, s| {
            for (name, member) in s.members() {
                let (kind, arn) = match member {
                    Member::IpSet(i) => (SetKind::IpSet, &i.arn),
                    Member::RegexPatternSet(r) => (SetKind::RegexPatternSet, &r.arn),
                    _ => continue,
                };
                out.push(SetReference { path: format!("{p}.{name}.ARN"), kind, arn: arn.clone() });
            }
        });
        out
    }
}

/// The kinds of resource a web ACL refers to by ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// An IP set (`IPSetReferenceStatement`).
    IpSet,
    /// A regex pattern set (`RegexPatternSetReferenceStatement`).
    RegexPatternSet,
}

/// One reference from a web ACL to a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReference {
    /// JSON path of the `ARN` field (`Rules[0].Statement.AndStatement.Statements[1].IPSetReferenceStatement.ARN`).
    pub path: String,
    /// What is referred to.
    pub kind: SetKind,
    /// The `ARN` as written (an AWS ARN or a shardgate id; see `acl::arn_id`).
    pub arn: String,
}

impl WebAclJson {
    /// Every set the web ACL's rules refer to, at any depth.
    pub fn references(&self) -> Vec<SetReference> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().flatten().enumerate() {
            out.extend(r.statement.references(&format!("Rules[{i}].Statement")));
        }
        out
    }
}

/// `GeoMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeoMatchJson {
    /// `CountryCodes`: ISO 3166-1 alpha-2.
    #[serde(rename = "CountryCodes")]
    pub country_codes: Vec<String>,
    /// `ForwardedIPConfig`: `{HeaderName, FallbackBehavior}`.
    #[serde(rename = "ForwardedIPConfig", default, skip_serializing_if = "Option::is_none")]
    pub forwarded_ip_config: Option<GeoForwardedJson>,
}

/// `ForwardedIPConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeoForwardedJson {
    /// `HeaderName`.
    #[serde(rename = "HeaderName")]
    pub header_name: String,
    /// `FallbackBehavior`: `MATCH` or `NO_MATCH`.
    #[serde(rename = "FallbackBehavior")]
    pub fallback_behavior: String,
}

/// `RateBasedStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateBasedJson {
    /// `Limit`: requests per window from one key (AWS: 10 or more).
    #[serde(rename = "Limit")]
    pub limit: u64,
    /// `EvaluationWindowSec`: 60, 120, 300 (default) or 600.
    #[serde(rename = "EvaluationWindowSec", default, skip_serializing_if = "Option::is_none")]
    pub evaluation_window_sec: Option<u64>,
    /// `AggregateKeyType`: `IP`, `FORWARDED_IP`, `CONSTANT` or `CUSTOM_KEYS`.
    #[serde(rename = "AggregateKeyType")]
    pub aggregate_key_type: String,
    /// `ForwardedIPConfig`: the header of `FORWARDED_IP` and of a
    /// `ForwardedIP` custom key.
    #[serde(rename = "ForwardedIPConfig", default, skip_serializing_if = "Option::is_none")]
    pub forwarded_ip_config: Option<GeoForwardedJson>,
    /// `CustomKeys`: 1 to 5, with `CUSTOM_KEYS`.
    #[serde(rename = "CustomKeys", default, skip_serializing_if = "Option::is_none")]
    pub custom_keys: Option<Vec<CustomKeyJson>>,
    /// `ScopeDownStatement`: only matching requests are counted.
    #[serde(rename = "ScopeDownStatement", default, skip_serializing_if = "Option::is_none")]
    pub scope_down_statement: Option<StatementJson>,
}

/// `RateBasedStatementCustomKey`: exactly one member.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomKeyJson {
    /// `Header`: `{Name, TextTransformations}`.
    #[serde(rename = "Header", default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedKeyJson>,
    /// `Cookie`: `{Name, TextTransformations}`.
    #[serde(rename = "Cookie", default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<NamedKeyJson>,
    /// `QueryArgument`: `{Name, TextTransformations}`.
    #[serde(rename = "QueryArgument", default, skip_serializing_if = "Option::is_none")]
    pub query_argument: Option<NamedKeyJson>,
    /// `QueryString`: `{TextTransformations}`.
    #[serde(rename = "QueryString", default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<TransformedKeyJson>,
    /// `HTTPMethod`: `{}`.
    #[serde(rename = "HTTPMethod", default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<EmptyJson>,
    /// `ForwardedIP`: `{}` (the statement's `ForwardedIPConfig` names the header).
    #[serde(rename = "ForwardedIP", default, skip_serializing_if = "Option::is_none")]
    pub forwarded_ip: Option<EmptyJson>,
    /// `IP`: `{}`.
    #[serde(rename = "IP", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<EmptyJson>,
    /// `LabelNamespace`: `{Namespace}`.
    #[serde(rename = "LabelNamespace", default, skip_serializing_if = "Option::is_none")]
    pub label_namespace: Option<NamespaceJson>,
    /// `UriPath`: `{TextTransformations}`.
    #[serde(rename = "UriPath", default, skip_serializing_if = "Option::is_none")]
    pub uri_path: Option<TransformedKeyJson>,
    /// `JA3Fingerprint`: `{FallbackBehavior}`.
    #[serde(rename = "JA3Fingerprint", default, skip_serializing_if = "Option::is_none")]
    pub ja3_fingerprint: Option<FallbackJson>,
    /// `JA4Fingerprint`: `{FallbackBehavior}`.
    #[serde(rename = "JA4Fingerprint", default, skip_serializing_if = "Option::is_none")]
    pub ja4_fingerprint: Option<FallbackJson>,
    /// `ASN` (refused: shardgate has no ASN database).
    #[serde(rename = "ASN", default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<Value>,
}

/// `{Name, TextTransformations}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedKeyJson {
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `{TextTransformations}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformedKeyJson {
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `{Namespace}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceJson {
    /// `Namespace`: ends with `:`.
    #[serde(rename = "Namespace")]
    pub namespace: String,
}

/// `{}`: a member that takes no settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyJson {}

/// `{Statements: [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatementsJson {
    /// `Statements`.
    #[serde(rename = "Statements")]
    pub statements: Vec<StatementJson>,
}

/// `{Statement: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotJson {
    /// `Statement`.
    #[serde(rename = "Statement")]
    pub statement: StatementJson,
}

/// `TextTransformation`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformJson {
    /// `Priority`.
    #[serde(rename = "Priority")]
    pub priority: i64,
    /// `Type`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// `ByteMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ByteMatchJson {
    /// `SearchString` (text, as the console, the CLI and CloudFormation
    /// write it). Exactly one of it and `SearchStringBase64`.
    #[serde(rename = "SearchString", default, skip_serializing_if = "Option::is_none")]
    pub search_string: Option<String>,
    /// `SearchStringBase64` (CloudFormation): the bytes, base64-encoded.
    #[serde(rename = "SearchStringBase64", default, skip_serializing_if = "Option::is_none")]
    pub search_string_base64: Option<String>,
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
    /// `PositionalConstraint`.
    #[serde(rename = "PositionalConstraint")]
    pub positional_constraint: String,
}

/// `RegexMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexMatchJson {
    /// `RegexString`.
    #[serde(rename = "RegexString")]
    pub regex_string: String,
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `RegexPatternSetReferenceStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexSetRefJson {
    /// `ARN` (CloudFormation: `Arn`): an AWS ARN (its last segment is the
    /// id) or a shardgate id.
    #[serde(rename = "ARN", alias = "Arn")]
    pub arn: String,
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `IPSetReferenceStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpSetRefJson {
    /// `ARN` (CloudFormation: `Arn`): an AWS ARN (its last segment is the
    /// id) or a shardgate id.
    #[serde(rename = "ARN", alias = "Arn")]
    pub arn: String,
    /// `IPSetForwardedIPConfig`.
    #[serde(rename = "IPSetForwardedIPConfig", default, skip_serializing_if = "Option::is_none")]
    pub forwarded_ip_config: Option<ForwardedIpJson>,
}

/// `IPSetForwardedIPConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedIpJson {
    /// `HeaderName`.
    #[serde(rename = "HeaderName")]
    pub header_name: String,
    /// `FallbackBehavior`: `MATCH` or `NO_MATCH`.
    #[serde(rename = "FallbackBehavior")]
    pub fallback_behavior: String,
    /// `Position`: `FIRST`, `LAST` or `ANY`.
    #[serde(rename = "Position")]
    pub position: String,
}

/// `SizeConstraintStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SizeConstraintJson {
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `ComparisonOperator`.
    #[serde(rename = "ComparisonOperator")]
    pub comparison_operator: String,
    /// `Size`.
    #[serde(rename = "Size")]
    pub size: u64,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `SqliMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqliMatchJson {
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
    /// `SensitivityLevel`: `LOW` (default) or `HIGH`.
    #[serde(rename = "SensitivityLevel", default, skip_serializing_if = "Option::is_none")]
    pub sensitivity_level: Option<String>,
}

/// `XssMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XssMatchJson {
    /// `FieldToMatch`.
    #[serde(rename = "FieldToMatch")]
    pub field_to_match: FieldJson,
    /// `TextTransformations`.
    #[serde(rename = "TextTransformations")]
    pub text_transformations: Vec<TransformJson>,
}

/// `LabelMatchStatement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMatchJson {
    /// `LABEL` or `NAMESPACE`.
    #[serde(rename = "Scope")]
    pub scope: String,
    /// `Key`.
    #[serde(rename = "Key")]
    pub key: String,
}

/// `FieldToMatch`: exactly one member.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldJson {
    /// `UriPath`.
    #[serde(rename = "UriPath", default, skip_serializing_if = "Option::is_none")]
    pub uri_path: Option<Value>,
    /// `QueryString`.
    #[serde(rename = "QueryString", default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<Value>,
    /// `SingleQueryArgument`: `{Name}`.
    #[serde(rename = "SingleQueryArgument", default, skip_serializing_if = "Option::is_none")]
    pub single_query_argument: Option<NameJson>,
    /// `AllQueryArguments`.
    #[serde(rename = "AllQueryArguments", default, skip_serializing_if = "Option::is_none")]
    pub all_query_arguments: Option<Value>,
    /// `SingleHeader`: `{Name}`.
    #[serde(rename = "SingleHeader", default, skip_serializing_if = "Option::is_none")]
    pub single_header: Option<NameJson>,
    /// `Headers`.
    #[serde(rename = "Headers", default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<MultiJson>,
    /// `Cookies`.
    #[serde(rename = "Cookies", default, skip_serializing_if = "Option::is_none")]
    pub cookies: Option<MultiJson>,
    /// `Method`.
    #[serde(rename = "Method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Value>,
    /// `Body`: `{OversizeHandling?}`.
    #[serde(rename = "Body", default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyJson>,
    /// `JsonBody` (not supported yet).
    #[serde(rename = "JsonBody", default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// `JA3Fingerprint`: `{FallbackBehavior}`, the connection's JA3.
    #[serde(rename = "JA3Fingerprint", default, skip_serializing_if = "Option::is_none")]
    pub ja3_fingerprint: Option<FallbackJson>,
    /// `JA4Fingerprint`: `{FallbackBehavior}`, the connection's JA4.
    #[serde(rename = "JA4Fingerprint", default, skip_serializing_if = "Option::is_none")]
    pub ja4_fingerprint: Option<FallbackJson>,
}

/// `{FallbackBehavior}`: what a request without the component matches.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackJson {
    /// `MATCH` or `NO_MATCH`.
    #[serde(rename = "FallbackBehavior")]
    pub fallback_behavior: String,
}

/// `{Name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameJson {
    /// `Name`.
    #[serde(rename = "Name")]
    pub name: String,
}

/// `Headers` and `Cookies`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultiJson {
    /// `MatchPattern`.
    #[serde(rename = "MatchPattern")]
    pub match_pattern: MatchPatternJson,
    /// `MatchScope`: `ALL`, `KEY` or `VALUE`.
    #[serde(rename = "MatchScope")]
    pub match_scope: String,
    /// `OversizeHandling`: `CONTINUE`, `MATCH` or `NO_MATCH`.
    #[serde(rename = "OversizeHandling")]
    pub oversize_handling: String,
}

/// `MatchPattern`: exactly one member.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchPatternJson {
    /// `All`.
    #[serde(rename = "All", default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Value>,
    /// `IncludedHeaders` / `IncludedCookies`.
    #[serde(rename = "IncludedHeaders", alias = "IncludedCookies", default, skip_serializing_if = "Option::is_none")]
    pub included: Option<Vec<String>>,
    /// `ExcludedHeaders` / `ExcludedCookies`.
    #[serde(rename = "ExcludedHeaders", alias = "ExcludedCookies", default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Vec<String>>,
}

/// `Body`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BodyJson {
    /// `OversizeHandling`.
    #[serde(rename = "OversizeHandling", default, skip_serializing_if = "Option::is_none")]
    pub oversize_handling: Option<String>,
}

aws_resource! {
    /// `CreateIPSet` input.
    pub struct IpSetJson {
        /// `IPAddressVersion`: `IPV4` or `IPV6`.
        #[serde(rename = "IPAddressVersion", default, skip_serializing_if = "Option::is_none")]
        pub ip_address_version: Option<String>,
        /// `Addresses`: CIDRs.
        #[serde(rename = "Addresses", default, skip_serializing_if = "Option::is_none")]
        pub addresses: Option<Vec<String>>,
    }
}

aws_resource! {
    /// `CreateRegexPatternSet` input.
    pub struct RegexSetJson {
        /// `RegularExpressionList`: `[{RegexString}]`.
        #[serde(rename = "RegularExpressionList", default, skip_serializing_if = "Option::is_none")]
        pub regular_expression_list: Option<Vec<RegexStringJson>>,
    }
}

/// `{RegexString}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexStringJson {
    /// `RegexString`.
    #[serde(rename = "RegexString")]
    pub regex_string: String,
}
