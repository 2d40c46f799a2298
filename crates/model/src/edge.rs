//! Validated edge resources: distributions, cache policies, origin request
//! policies, continuous deployment policies and invalidations, with
//! CloudFront's meaning. The constraints cited below come from the CloudFront
//! API Reference (`DistributionConfig`, `CachePolicyConfig`,
//! `OriginRequestPolicyConfig`, `ContinuousDeploymentPolicyConfig`,
//! `InvalidationBatch`) and the
//! CloudFront Developer Guide ("Quotas", `cloudfront-limits.html`;
//! "Invalidate files", `Invalidation.html`) at docs.aws.amazon.com.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::edge::{
    BehaviorWire, CachePolicyWire, CdPolicyWire, CustomErrorResponseWire, DistributionWire, InvalidationWire,
    KeyItemsWire, OriginRequestPolicyWire, OriginWire, StickinessWire, TrafficWire,
};
use crate::wire::{check_labels, check_name_desc};
use crate::{Invalid, ResourceId, SniPattern, Upstream, UpstreamRef};

/// Most hosts one distribution answers.
const MAX_HOSTS: usize = 100;
/// Most origins one distribution has.
const MAX_ORIGINS: usize = 25;
/// Most path-pattern behaviors (CloudFront's default quota is 25).
const MAX_BEHAVIORS: usize = 100;
/// Longest path pattern (CloudFront: 255 characters).
const MAX_PATTERN: usize = 255;
/// Most names in a cache key list (CloudFront's default quota is 10).
const MAX_KEY_NAMES: usize = 32;
/// Longest invalidation path (CloudFront: 4,000 characters).
const MAX_INVALIDATION_PATH: usize = 4000;
/// Most paths in one invalidation (CloudFront: 3,000 in flight).
const MAX_INVALIDATION_PATHS: usize = 3000;
/// Longest TTL accepted: 100 years, in seconds.
const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;

/// A validated HTTP header name, lower-cased.
fn header_name(field: &str, s: &str) -> Result<String, Invalid> {
    // RFC 9110 §5.1: a field name is a token.
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(Invalid::new(field, format!("{s:?} is not a valid header name")));
    }
    Ok(s.to_ascii_lowercase())
}

fn seconds(field: &str, v: Option<f64>, max: f64) -> Result<Option<Duration>, Invalid> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= max => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(Invalid::new(field, format!("must be a number of seconds above 0 and at most {max}"))),
    }
}

// ---------------------------------------------------------------------------
// Distributions
// ---------------------------------------------------------------------------

/// A CloudFront path pattern: `*` matches any run of characters (slashes
/// included), `?` exactly one; case-sensitive; a missing leading `/` is
/// implied, as CloudFront does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(Box<str>);

impl PathPattern {
    /// Validates a pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_PATTERN {
            return Err(format!("a path pattern must be 1 to {MAX_PATTERN} characters long"));
        }
        if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{s:?} contains {c:?}, which cannot appear in a request path"));
        }
        let norm = if s.starts_with('/') || s.starts_with('*') { s.to_owned() } else { format!("/{s}") };
        Ok(PathPattern(norm.into()))
    }

    /// The pattern as written (normalised).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` matches. Linear in practice: the classic greedy glob
    /// walk that backtracks only to the last `*`.
    pub fn matches(&self, path: &str) -> bool {
        let (p, s) = (self.0.as_bytes(), path.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// Where a distribution fetches from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The nodes.
    pub upstream: UpstreamRef,
    /// Prefix of every origin path, without a trailing slash (`""` for none).
    pub origin_path: String,
    /// Host header for the origin; `None` keeps the viewer's.
    pub host: Option<String>,
    /// Wait for the response head at most this long.
    pub read_timeout: Option<Duration>,
    /// Plain HTTP or HTTPS to the origin.
    pub protocol_policy: ProtocolPolicy,
    /// Port of HTTP connections, instead of each node's port.
    pub http_port: Option<u16>,
    /// Port of HTTPS connections, instead of each node's port.
    pub https_port: Option<u16>,
    /// PEM certificates trusted for HTTPS instead of the system's bundle
    /// (validated: at least one certificate, nothing else).
    pub ca_bundle: Option<Arc<str>>,
    /// Server name for HTTPS; `None`: the Host header sent.
    pub sni: Option<String>,
    /// How long an idle connection is kept; `None`: the edge's default.
    pub keepalive_timeout: Option<Duration>,
    /// Idle connections kept per node; `None`: the edge's default.
    pub max_idle_connections: Option<u32>,
}

/// CloudFront's `OriginProtocolPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProtocolPolicy {
    /// HTTP whatever the viewer used (the default).
    #[default]
    HttpOnly,
    /// HTTPS whatever the viewer used.
    HttpsOnly,
    /// The viewer's protocol.
    MatchViewer,
}

impl ProtocolPolicy {
    /// Whether a request from a viewer over HTTPS (`viewer_https`) goes to
    /// the origin over HTTPS.
    pub fn https(self, viewer_https: bool) -> bool {
        match self {
            ProtocolPolicy::HttpOnly => false,
            ProtocolPolicy::HttpsOnly => true,
            ProtocolPolicy::MatchViewer => viewer_https,
        }
    }
}

/// Longest `ca_bundle` accepted (PEM text).
const MAX_CA_BUNDLE: usize = 1 << 20;
/// Longest origin keep-alive timeout (CloudFront allows up to 180 s on request).
const MAX_KEEPALIVE_SECS: f64 = 180.0;
/// Most idle connections per origin node.
const MAX_IDLE_PER_NODE: u64 = 1024;

fn port(field: &str, v: Option<u64>) -> Result<Option<u16>, Invalid> {
    match v {
        None => Ok(None),
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(Invalid::new(field, format!("{p} is not a port (1-65535)"))),
        },
    }
}

/// A PEM bundle holding at least one certificate and nothing but certificates.
fn ca_bundle(field: &str, pem: &str) -> Result<Arc<str>, Invalid> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    if pem.len() > MAX_CA_BUNDLE {
        return Err(Invalid::new(field, format!("must be at most {MAX_CA_BUNDLE} bytes")));
    }
    // Only certificates: a pasted private key (or anything else) is refused
    // by its kind, and nothing of its content is echoed back or stored.
    for (i, line) in pem.lines().enumerate() {
        if let Some(label) = line.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----"))
            && label != "CERTIFICATE"
        {
            let label: String = label.chars().take(40).filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
            return Err(Invalid::new(
                field,
                format!("line {}: a {label} PEM section; a CA bundle holds only CERTIFICATE sections", i + 1),
            ));
        }
    }
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| Invalid::new(field, format!("not a PEM certificate bundle: {e}")))?;
        x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| Invalid::new(field, format!("certificate {} cannot be parsed: {e}", count + 1)))?;
        count += 1;
    }
    if count == 0 {
        return Err(Invalid::new(field, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(Arc::from(pem))
}

/// A DNS name (RFC 1123 labels) for SNI.
fn server_name(field: &str, name: &str) -> Result<String, Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(Invalid::new(field, format!("{name:?} is not a DNS name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// Rewrites a request before the cache lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Lower-cased header whose value prefixes the origin path and joins the key.
    pub path_prefix_from_header: String,
}

/// One cache behavior.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// `None` for the default behavior.
    pub pattern: Option<PathPattern>,
    /// A key of the distribution's origins.
    pub origin: String,
    /// The cache policy; `None` is the built-in one.
    pub cache_policy: Option<ResourceId>,
    /// The origin request policy; `None`: only what the cache key holds is
    /// forwarded.
    pub origin_request_policy: Option<ResourceId>,
    /// Methods served; others get 403.
    pub allowed_methods: AllowedMethods,
    /// Methods whose responses are cached.
    pub cached_methods: CachedMethods,
    /// Compress responses for viewers that accept it.
    pub compress: bool,
    /// Rewrite before the lookup.
    pub rewrite: Option<Rewrite>,
    /// Functions run on viewer requests and responses (at most one per event type).
    pub function_associations: Vec<crate::function::FunctionAssociation>,
}

/// A validated distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Resource id.
    pub id: ResourceId,
    /// Name, for logs and metrics.
    pub name: Option<String>,
    /// Hosts answered (empty for staging).
    pub hosts: Vec<SniPattern>,
    /// Reached only through a continuous deployment policy.
    pub staging: bool,
    /// Origins by name.
    pub origins: BTreeMap<String, Origin>,
    /// Path-pattern behaviors in precedence order.
    pub behaviors: Vec<Behavior>,
    /// The behavior when no pattern matches.
    pub default_behavior: Behavior,
    /// The continuous deployment policy, if any.
    pub cd_policy: Option<ResourceId>,
    /// The web ACL, if any.
    pub web_acl: Option<ResourceId>,
    /// Error statuses with a caching time and maybe a page of their own, by
    /// error code (at most one each).
    pub custom_error_responses: Vec<CustomErrorResponse>,
}

/// The methods CloudFront knows (`AllowedMethods`): request methods are
/// case-sensitive (RFC 9110 §9.1), so only these spellings are accepted.
const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"];

/// A list of method names as a bit set over [`METHODS`]; errors name the item.
fn method_set(field: &str, list: &[String]) -> Result<u8, Invalid> {
    let mut set = 0u8;
    for (i, m) in list.iter().enumerate() {
        let Some(bit) = METHODS.iter().position(|k| k == m) else {
            return Err(Invalid::new(format!("{field}[{i}]"), format!("{m:?} is not one of {}", METHODS.join(", "))));
        };
        if set & (1 << bit) != 0 {
            return Err(Invalid::new(format!("{field}[{i}]"), format!("{m} is listed twice")));
        }
        set |= 1 << bit;
    }
    Ok(set)
}

/// CloudFront's `AllowedMethods`: one of three fixed sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllowedMethods {
    /// `GET`, `HEAD` (the default).
    #[default]
    GetHead,
    /// `GET`, `HEAD`, `OPTIONS`.
    GetHeadOptions,
    /// `GET`, `HEAD`, `OPTIONS`, `PUT`, `PATCH`, `POST`, `DELETE`.
    All,
}

impl AllowedMethods {
    /// Whether `method` (as sent, case-sensitive) is served.
    pub fn allows(self, method: &str) -> bool {
        match method {
            "GET" | "HEAD" => true,
            "OPTIONS" => self != AllowedMethods::GetHead,
            "PUT" | "PATCH" | "POST" | "DELETE" => self == AllowedMethods::All,
            _ => false,
        }
    }

    fn from_wire(field: &str, list: Option<&[String]>) -> Result<Self, Invalid> {
        let Some(list) = list else { return Ok(AllowedMethods::default()) };
        match method_set(field, list)? {
            0b0000011 => Ok(AllowedMethods::GetHead),
            0b0000111 => Ok(AllowedMethods::GetHeadOptions),
            0b1111111 => Ok(AllowedMethods::All),
            _ => Err(Invalid::new(
                field,
                "must be one of CloudFront's sets: [GET, HEAD], [GET, HEAD, OPTIONS], \
                 or [GET, HEAD, OPTIONS, PUT, PATCH, POST, DELETE]",
            )),
        }
    }
}

/// CloudFront's `CachedMethods`: `GET` and `HEAD` responses are always
/// cacheable; `OPTIONS` ones only when listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachedMethods {
    /// `GET`, `HEAD` (the default).
    #[default]
    GetHead,
    /// `GET`, `HEAD`, `OPTIONS`.
    GetHeadOptions,
}

impl CachedMethods {
    /// Whether responses to `method` may be stored and served from the cache.
    pub fn caches(self, method: &str) -> bool {
        match method {
            "GET" | "HEAD" => true,
            "OPTIONS" => self == CachedMethods::GetHeadOptions,
            _ => false,
        }
    }

    fn from_wire(field: &str, list: Option<&[String]>, allowed: AllowedMethods) -> Result<Self, Invalid> {
        let Some(list) = list else { return Ok(CachedMethods::default()) };
        let cached = match method_set(field, list)? {
            0b011 => CachedMethods::GetHead,
            0b111 => CachedMethods::GetHeadOptions,
            _ => {
                return Err(Invalid::new(field, "must be [GET, HEAD] or [GET, HEAD, OPTIONS]"));
            }
        };
        if cached == CachedMethods::GetHeadOptions && allowed == AllowedMethods::GetHead {
            return Err(Invalid::new(field, "OPTIONS is cached only if allowed_methods allows it"));
        }
        Ok(cached)
    }
}

/// The error statuses CloudFront lets a `CustomErrorResponse` name (`ErrorCode`).
pub const CUSTOM_ERROR_CODES: [u16; 11] = [400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];
/// The statuses a custom error page may be returned with (`ResponseCode`):
/// 200 or one of the error codes.
const CUSTOM_RESPONSE_CODES: [u16; 12] = [200, 400, 403, 404, 405, 414, 416, 500, 501, 502, 503, 504];
/// How long an error is cached when `error_caching_min_ttl` is not set
/// (CloudFront: 10 seconds).
pub const DEFAULT_ERROR_CACHING_MIN_TTL: Duration = Duration::from_secs(10);
/// Longest `response_page_path` accepted.
const MAX_RESPONSE_PAGE_PATH: usize = 1024;

/// CloudFront's `CustomErrorResponse`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomErrorResponse {
    /// The origin's status this applies to (one of [`CUSTOM_ERROR_CODES`]).
    pub error_code: u16,
    /// How long the error (or its page) is cached.
    pub error_caching_min_ttl: Duration,
    /// Status returned with the page; `None`: the origin's.
    pub response_code: Option<u16>,
    /// Path of the page served instead, starting with `/`.
    pub response_page_path: Option<String>,
}

fn custom_error_from_wire(field: &str, w: &CustomErrorResponseWire) -> Result<CustomErrorResponse, Invalid> {
    let error_code = match w.error_code {
        None => return Err(Invalid::new(format!("{field}.error_code"), "required")),
        Some(c) => match CUSTOM_ERROR_CODES.iter().find(|k| u64::from(**k) == c) {
            Some(k) => *k,
            None => {
                return Err(Invalid::new(
                    format!("{field}.error_code"),
                    format!("{c} is not one of CloudFront's error codes {CUSTOM_ERROR_CODES:?}"),
                ));
            }
        },
    };
    let error_caching_min_ttl = match w.error_caching_min_ttl {
        None => DEFAULT_ERROR_CACHING_MIN_TTL,
        Some(s) if s <= MAX_TTL_SECS => Duration::from_secs(s),
        Some(_) => {
            return Err(Invalid::new(
                format!("{field}.error_caching_min_ttl"),
                format!("at most {MAX_TTL_SECS} seconds"),
            ));
        }
    };
    let response_page_path = match &w.response_page_path {
        None => None,
        Some(p) => {
            let ok = p.starts_with('/')
                && p.len() <= MAX_RESPONSE_PAGE_PATH
                && !p.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok {
                return Err(Invalid::new(
                    format!("{field}.response_page_path"),
                    format!(
                        "{p:?} must start with '/', be at most {MAX_RESPONSE_PAGE_PATH} characters, without spaces or controls"
                    ),
                ));
            }
            Some(p.clone())
        }
    };
    let response_code = match w.response_code {
        None => None,
        Some(_) if response_page_path.is_none() => {
            // CloudFront: "If you specify a value for ResponseCode, you must
            // also specify a value for ResponsePagePath."
            return Err(Invalid::new(format!("{field}.response_code"), "needs response_page_path"));
        }
        Some(c) => match CUSTOM_RESPONSE_CODES.iter().find(|k| u64::from(**k) == c) {
            Some(k) => Some(*k),
            None => {
                return Err(Invalid::new(
                    format!("{field}.response_code"),
                    format!("{c} is not one of {CUSTOM_RESPONSE_CODES:?}"),
                ));
            }
        },
    };
    Ok(CustomErrorResponse { error_code, error_caching_min_ttl, response_code, response_page_path })
}

fn origin_from_wire(field: &str, w: &OriginWire) -> Result<Origin, Invalid> {
    let upstream = match (&w.upstream, &w.upstream_id) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(field, "set one of upstream and upstream_id, not both"));
        }
        (Some(u), None) => {
            let up = Upstream::from_wire(None, u).map_err(|e| e.within(&format!("{field}.upstream")))?;
            crate::node_template::refuse_in_origin(&up).map_err(|e| e.within(&format!("{field}.upstream")))?;
            UpstreamRef::Inline(Arc::new(up))
        }
        (None, Some(id)) => UpstreamRef::Id(ResourceId::from_json(&format!("{field}.upstream_id"), id)?),
        (None, None) => return Err(Invalid::new(field, "an origin needs upstream or upstream_id")),
    };
    match w.scheme.as_deref() {
        None | Some("http") => {}
        Some("https") => {
            return Err(Invalid::new(
                format!("{field}.scheme"),
                "HTTPS to the origin is chosen by protocol_policy (\"https-only\" or \"match-viewer\")",
            ));
        }
        Some(other) => return Err(Invalid::new(format!("{field}.scheme"), format!("unknown scheme {other:?}"))),
    }
    let origin_path = match w.origin_path.as_deref() {
        None | Some("") => String::new(),
        Some(p) => {
            // CloudFront: starts with a slash, no trailing slash.
            let ok = p.starts_with('/')
                && !p.ends_with('/')
                && p.len() <= 255
                && p.split('/').skip(1).all(|seg| !seg.is_empty() && seg != "." && seg != "..")
                && p.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%' | b'\\'));
            if !ok {
                return Err(Invalid::new(
                    format!("{field}.origin_path"),
                    format!("{p:?} must start with '/', not end with '/', and hold only plain path segments"),
                ));
            }
            p.to_owned()
        }
    };
    let host = match &w.host {
        None => None,
        Some(h) => {
            let ok = !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if !ok {
                return Err(Invalid::new(format!("{field}.host"), format!("{h:?} is not a valid host")));
            }
            Some(h.clone())
        }
    };
    let read_timeout = seconds(&format!("{field}.read_timeout"), w.read_timeout, 3600.0)?;
    let protocol_policy = match w.protocol_policy.as_deref() {
        None | Some("http-only") => ProtocolPolicy::HttpOnly,
        Some("https-only") => ProtocolPolicy::HttpsOnly,
        Some("match-viewer") => ProtocolPolicy::MatchViewer,
        Some(other) => {
            return Err(Invalid::new(
                format!("{field}.protocol_policy"),
                format!("{other:?} must be \"http-only\", \"https-only\" or \"match-viewer\""),
            ));
        }
    };
    let http_port = port(&format!("{field}.http_port"), w.http_port)?;
    let https_port = port(&format!("{field}.https_port"), w.https_port)?;
    let ca_bundle = w.ca_bundle.as_deref().map(|p| ca_bundle(&format!("{field}.ca_bundle"), p)).transpose()?;
    let sni = w.sni.as_deref().map(|n| server_name(&format!("{field}.sni"), n)).transpose()?;
    let keepalive_timeout = seconds(&format!("{field}.keepalive_timeout"), w.keepalive_timeout, MAX_KEEPALIVE_SECS)?;
    let max_idle_connections = match w.max_idle_connections {
        None => None,
        Some(n) if n <= MAX_IDLE_PER_NODE => Some(n as u32),
        Some(n) => {
            return Err(Invalid::new(
                format!("{field}.max_idle_connections"),
                format!("{n} is above the limit of {MAX_IDLE_PER_NODE}"),
            ));
        }
    };
    Ok(Origin {
        upstream,
        origin_path,
        host,
        read_timeout,
        protocol_policy,
        http_port,
        https_port,
        ca_bundle,
        sni,
        keepalive_timeout,
        max_idle_connections,
    })
}

fn behavior_from_wire(
    field: &str,
    w: &BehaviorWire,
    origins: &BTreeMap<String, Origin>,
    is_default: bool,
) -> Result<Behavior, Invalid> {
    let pattern = match (&w.path_pattern, is_default) {
        (Some(_), true) => {
            return Err(Invalid::new(
                format!("{field}.path_pattern"),
                "the default behavior has no path pattern: it serves every path no behavior matches",
            ));
        }
        (None, false) => return Err(Invalid::new(format!("{field}.path_pattern"), "required")),
        (Some(p), false) => Some(PathPattern::parse(p).map_err(|e| Invalid::new(format!("{field}.path_pattern"), e))?),
        (None, true) => None,
    };
    let origin = match &w.origin {
        None if origins.len() == 1 => origins.keys().next().cloned().unwrap_or_default(),
        None => return Err(Invalid::new(format!("{field}.origin"), "required when there is more than one origin")),
        Some(o) if origins.contains_key(o) => o.clone(),
        Some(o) => {
            return Err(Invalid::new(format!("{field}.origin"), format!("no origin named {o:?} in origins")));
        }
    };
    let cache_policy = w
        .cache_policy_id
        .as_ref()
        .map(|v| ResourceId::from_json(&format!("{field}.cache_policy_id"), v))
        .transpose()?;
    let origin_request_policy = w
        .origin_request_policy_id
        .as_ref()
        .map(|v| ResourceId::from_json(&format!("{field}.origin_request_policy_id"), v))
        .transpose()?;
    let allowed_methods = AllowedMethods::from_wire(&format!("{field}.allowed_methods"), w.allowed_methods.as_deref())?;
    let cached_methods =
        CachedMethods::from_wire(&format!("{field}.cached_methods"), w.cached_methods.as_deref(), allowed_methods)?;
    let rewrite = match &w.rewrite {
        None => None,
        Some(r) => match &r.path_prefix_from_header {
            None => {
                return Err(Invalid::new(format!("{field}.rewrite.path_prefix_from_header"), "required"));
            }
            Some(h) => Some(Rewrite {
                path_prefix_from_header: header_name(&format!("{field}.rewrite.path_prefix_from_header"), h)?,
            }),
        },
    };
    let function_associations =
        crate::function::associations_from_wire(&format!("{field}.function_associations"), &w.function_associations)?;
    Ok(Behavior {
        pattern,
        origin,
        cache_policy,
        origin_request_policy,
        allowed_methods,
        cached_methods,
        compress: w.compress.unwrap_or(false),
        rewrite,
        function_associations,
    })
}

impl Distribution {
    /// Validates a wire distribution.
    pub fn from_wire(id: ResourceId, w: &DistributionWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        let staging = w.staging.unwrap_or(false);
        let hosts = match (&w.hosts, staging) {
            (Some(h), true) if !h.is_empty() => {
                // CloudFront refuses Aliases on a staging distribution.
                return Err(Invalid::new(
                    "hosts",
                    "a staging distribution has no hosts: viewers reach it through the primary's continuous deployment policy",
                ));
            }
            (_, true) => Vec::new(),
            (None, false) => return Err(Invalid::new("hosts", "required (unless staging is true)")),
            (Some(list), false) => {
                if list.is_empty() || list.len() > MAX_HOSTS {
                    return Err(Invalid::new("hosts", format!("must list 1 to {MAX_HOSTS} hosts")));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, h)| SniPattern::parse(h).map_err(|e| Invalid::new(format!("hosts[{i}]"), e)))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        if staging && w.continuous_deployment_policy_id.is_some() {
            return Err(Invalid::new(
                "continuous_deployment_policy_id",
                "only a primary distribution has a continuous deployment policy",
            ));
        }
        if w.origins.is_empty() || w.origins.len() > MAX_ORIGINS {
            return Err(Invalid::new("origins", format!("must have 1 to {MAX_ORIGINS} origins")));
        }
        let mut origins = BTreeMap::new();
        for (name, o) in &w.origins {
            let field = format!("origins.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(Invalid::new(field, "an origin name is 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            origins.insert(name.clone(), origin_from_wire(&field, o)?);
        }
        let default_behavior = match &w.default_behavior {
            Some(b) => behavior_from_wire("default_behavior", b, &origins, true)?,
            None if origins.len() == 1 => Behavior {
                pattern: None,
                origin: origins.keys().next().cloned().unwrap_or_default(),
                cache_policy: None,
                origin_request_policy: None,
                allowed_methods: AllowedMethods::default(),
                cached_methods: CachedMethods::default(),
                compress: false,
                rewrite: None,
                function_associations: Vec::new(),
            },
            None => return Err(Invalid::new("default_behavior", "required when there is more than one origin")),
        };
        let behaviors = match &w.behaviors {
            None => Vec::new(),
            Some(list) if list.len() > MAX_BEHAVIORS => {
                return Err(Invalid::new("behaviors", format!("at most {MAX_BEHAVIORS} behaviors")));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, b)| behavior_from_wire(&format!("behaviors[{i}]"), b, &origins, false))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let cd_policy = w
            .continuous_deployment_policy_id
            .as_ref()
            .map(|v| ResourceId::from_json("continuous_deployment_policy_id", v))
            .transpose()?;
        let web_acl = w.web_acl_id.as_ref().map(|v| ResourceId::from_json("web_acl_id", v)).transpose()?;
        let mut custom_error_responses: Vec<CustomErrorResponse> = Vec::new();
        for (i, c) in w.custom_error_responses.iter().flatten().enumerate() {
            let field = format!("custom_error_responses[{i}]");
            let c = custom_error_from_wire(&field, c)?;
            if custom_error_responses.iter().any(|o| o.error_code == c.error_code) {
                return Err(Invalid::new(format!("{field}.error_code"), format!("{} is listed twice", c.error_code)));
            }
            custom_error_responses.push(c);
        }
        Ok(Distribution {
            id,
            name: w.name.clone(),
            hosts,
            staging,
            origins,
            behaviors,
            default_behavior,
            cd_policy,
            web_acl,
            custom_error_responses,
        })
    }

    /// The behavior for a request path: the first pattern that matches, in
    /// list order (CloudFront evaluates behaviors in precedence order and
    /// falls back to the default behavior).
    pub fn behavior_for(&self, path: &str) -> &Behavior {
        self.behaviors
            .iter()
            .find(|b| b.pattern.as_ref().is_some_and(|p| p.matches(path)))
            .unwrap_or(&self.default_behavior)
    }

    /// Upstream resources this distribution refers to.
    pub fn upstream_ids(&self) -> impl Iterator<Item = &ResourceId> {
        self.origins.values().filter_map(|o| match &o.upstream {
            UpstreamRef::Id(id) => Some(id),
            UpstreamRef::Inline(_) => None,
        })
    }

    /// Cache policies this distribution refers to.
    pub fn cache_policy_ids(&self) -> impl Iterator<Item = &ResourceId> {
        self.behaviors.iter().chain(std::iter::once(&self.default_behavior)).filter_map(|b| b.cache_policy.as_ref())
    }

    /// Origin request policies this distribution refers to.
    pub fn origin_request_policy_ids(&self) -> impl Iterator<Item = &ResourceId> {
        self.behaviors
            .iter()
            .chain(std::iter::once(&self.default_behavior))
            .filter_map(|b| b.origin_request_policy.as_ref())
    }

    /// The custom error response for an origin status, if any.
    pub fn custom_error_response(&self, status: u16) -> Option<&CustomErrorResponse> {
        self.custom_error_responses.iter().find(|c| c.error_code == status)
    }
}

// ---------------------------------------------------------------------------
// Cache policies
// ---------------------------------------------------------------------------

/// Which query strings or cookies join the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyItems {
    /// None of them.
    #[default]
    None,
    /// All of them.
    All,
    /// Only these names.
    Only(Vec<String>),
    /// All but these names.
    AllExcept(Vec<String>),
}

impl KeyItems {
    fn from_wire(field: &str, w: &Option<KeyItemsWire>, lower: bool) -> Result<Self, Invalid> {
        let Some(w) = w else { return Ok(KeyItems::None) };
        let names = || -> Result<Vec<String>, Invalid> {
            let items = w.items.as_deref().unwrap_or_default();
            if items.is_empty() || items.len() > MAX_KEY_NAMES {
                return Err(Invalid::new(
                    format!("{field}.items"),
                    format!("{} needs 1 to {MAX_KEY_NAMES} names", w.behavior),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    if n.is_empty() || n.len() > 256 || n.chars().any(char::is_control) {
                        Err(Invalid::new(format!("{field}.items[{i}]"), "a name is 1 to 256 characters"))
                    } else {
                        Ok(if lower { n.to_ascii_lowercase() } else { n.clone() })
                    }
                })
                .collect()
        };
        let no_items = |kind: KeyItems| {
            if w.items.as_ref().is_some_and(|i| !i.is_empty()) {
                Err(Invalid::new(format!("{field}.items"), format!("{} takes no items", w.behavior)))
            } else {
                Ok(kind)
            }
        };
        match w.behavior.as_str() {
            "none" => no_items(KeyItems::None),
            "all" => no_items(KeyItems::All),
            "whitelist" => Ok(KeyItems::Only(names()?)),
            "all_except" | "allExcept" => Ok(KeyItems::AllExcept(names()?)),
            other => Err(Invalid::new(
                format!("{field}.behavior"),
                format!("{other:?} is not one of none, all, whitelist, all_except"),
            )),
        }
    }

    /// Whether `name` joins the key.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            KeyItems::None => false,
            KeyItems::All => true,
            KeyItems::Only(names) => names.iter().any(|n| n == name),
            KeyItems::AllExcept(names) => !names.iter().any(|n| n == name),
        }
    }
}

/// A validated cache policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Lower bound on freshness, even when the origin says not to cache.
    pub min_ttl: Duration,
    /// Freshness when the origin says nothing.
    pub default_ttl: Duration,
    /// Upper bound on freshness.
    pub max_ttl: Duration,
    /// Lower-cased request headers in the key.
    pub headers: Vec<String>,
    /// Query strings in the key.
    pub query_strings: KeyItems,
    /// Cookies in the key (names are case-sensitive).
    pub cookies: KeyItems,
    /// `Accept-Encoding: gzip` joins the key, normalised.
    pub enable_accept_encoding_gzip: bool,
    /// `Accept-Encoding: br` joins the key, normalised.
    pub enable_accept_encoding_brotli: bool,
}

impl CachePolicy {
    /// The policy of behaviors that name none: CloudFront's managed
    /// `CachingOptimized` (MinTTL 1 s, DefaultTTL 1 day, MaxTTL 1 year, no
    /// headers, query strings or cookies in the key).
    pub fn builtin() -> Self {
        CachePolicy {
            min_ttl: Duration::from_secs(1),
            default_ttl: Duration::from_secs(86_400),
            max_ttl: Duration::from_secs(31_536_000),
            headers: Vec::new(),
            query_strings: KeyItems::None,
            cookies: KeyItems::None,
            enable_accept_encoding_gzip: false,
            enable_accept_encoding_brotli: false,
        }
    }

    /// Validates a wire cache policy.
    pub fn from_wire(w: &CachePolicyWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        let ttl = |field: &str, v: Option<u64>, default: u64| -> Result<Duration, Invalid> {
            let s = v.unwrap_or(default);
            if s > MAX_TTL_SECS {
                return Err(Invalid::new(field, format!("at most {MAX_TTL_SECS} seconds")));
            }
            Ok(Duration::from_secs(s))
        };
        let min_ttl = ttl("min_ttl", w.min_ttl, 0)?;
        let default_ttl = ttl("default_ttl", w.default_ttl, 86_400.max(w.min_ttl.unwrap_or(0)))?;
        let max_ttl = ttl("max_ttl", w.max_ttl, 31_536_000.max(default_ttl.as_secs()))?;
        // CloudFront: MinTTL <= DefaultTTL <= MaxTTL.
        if default_ttl < min_ttl {
            return Err(Invalid::new("default_ttl", "must be at least min_ttl"));
        }
        if max_ttl < default_ttl {
            return Err(Invalid::new("max_ttl", "must be at least default_ttl"));
        }
        let headers = match &w.headers {
            None => Vec::new(),
            Some(list) if list.len() > MAX_KEY_NAMES => {
                return Err(Invalid::new("headers", format!("at most {MAX_KEY_NAMES} headers")));
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, h)| key_header_name(&format!("headers[{i}]"), h))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(CachePolicy {
            min_ttl,
            default_ttl,
            max_ttl,
            headers,
            query_strings: KeyItems::from_wire("query_strings", &w.query_strings, false)?,
            cookies: KeyItems::from_wire("cookies", &w.cookies, false)?,
            enable_accept_encoding_gzip: w.enable_accept_encoding_gzip.unwrap_or(false),
            enable_accept_encoding_brotli: w.enable_accept_encoding_brotli.unwrap_or(false),
        })
    }
}

/// Request headers that describe one connection or the message's framing
/// (RFC 9110 §7.6.1, RFC 9112 §6): never in a cache key, never forwarded
/// from the viewer.
pub const HOP_BY_HOP_HEADERS: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

/// Whether `name` (lower-case) is reserved for the edge: a `CloudFront-*`
/// or `X-Amz-Cf-*` header, which only the edge makes (a viewer's are never
/// forwarded).
pub fn edge_reserved(name: &str) -> bool {
    name.starts_with("cloudfront-") || name.starts_with("x-amz-cf-")
}

/// A header name a cache policy keys on: not hop-by-hop or framing, and
/// not a `CloudFront-*` / `X-Amz-Cf-*` name the edge does not make (Host
/// is allowed, as in CloudFront).
fn key_header_name(field: &str, raw: &str) -> Result<String, Invalid> {
    let name = header_name(field, raw)?;
    if HOP_BY_HOP_HEADERS.contains(&name.as_str()) {
        return Err(Invalid::new(
            field,
            format!("{name} describes the connection or the body's framing and cannot be in a cache key"),
        ));
    }
    if edge_reserved(&name) && !CLOUDFRONT_HEADERS.contains(&name.as_str()) {
        return Err(Invalid::new(
            field,
            format!("{name} is not a CloudFront header the edge adds ({})", CLOUDFRONT_HEADERS.join(", ")),
        ));
    }
    Ok(name)
}

// ---------------------------------------------------------------------------
// Origin request policies
// ---------------------------------------------------------------------------

/// Headers the edge itself adds for the origin when an origin request policy
/// names them (CloudFront's "CloudFront HTTP headers" that shardgate knows):
/// the viewer's scheme, address (`ip:port`) and HTTP version.
pub const CLOUDFRONT_HEADERS: [&str; 3] =
    ["cloudfront-forwarded-proto", "cloudfront-viewer-address", "cloudfront-viewer-http-version"];

/// Which viewer headers go to the origin (CloudFront
/// `OriginRequestPolicyHeaderBehavior`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HeaderForward {
    /// Only those of the cache key.
    #[default]
    None,
    /// These (lower-cased) names; `cloudfront-*` ones are made by the edge.
    Only(Vec<String>),
    /// Every viewer header.
    AllViewer,
    /// Every viewer header plus these edge-made `cloudfront-*` ones.
    AllViewerAnd(Vec<String>),
    /// Every viewer header but these.
    AllExcept(Vec<String>),
}

impl HeaderForward {
    fn from_wire(field: &str, w: &Option<KeyItemsWire>) -> Result<Self, Invalid> {
        let Some(w) = w else { return Ok(HeaderForward::None) };
        let items = w.items.as_deref().unwrap_or_default();
        // `allExcept` lists what is left out, so it may name Authorization.
        let names = |edge_only: bool, excluding: bool| -> Result<Vec<String>, Invalid> {
            if items.is_empty() || items.len() > MAX_KEY_NAMES {
                return Err(Invalid::new(
                    format!("{field}.items"),
                    format!("{} needs 1 to {MAX_KEY_NAMES} names", w.behavior),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let f = format!("{field}.items[{i}]");
                    let n = header_name(&f, n)?;
                    let edge_made = CLOUDFRONT_HEADERS.contains(&n.as_str());
                    if n.starts_with("cloudfront-") && !edge_made {
                        return Err(Invalid::new(
                            f,
                            format!("{n} is not a CloudFront header the edge adds ({})", CLOUDFRONT_HEADERS.join(", ")),
                        ));
                    }
                    if n == "authorization" && !excluding {
                        // CloudFront refuses it too: a forwarded Authorization
                        // must be in the cache key, or the cache could serve
                        // one viewer's authorized answer to another.
                        return Err(Invalid::new(
                            f,
                            "authorization cannot be forwarded by an origin request policy: put it in the cache policy's headers",
                        ));
                    }
                    if edge_only && !edge_made {
                        return Err(Invalid::new(
                            f,
                            format!(
                                "{n}: allViewerAndWhitelistCloudFront lists only {}",
                                CLOUDFRONT_HEADERS.join(", ")
                            ),
                        ));
                    }
                    Ok(n)
                })
                .collect()
        };
        let no_items = |kind: HeaderForward| {
            if items.is_empty() {
                Ok(kind)
            } else {
                Err(Invalid::new(format!("{field}.items"), format!("{} takes no items", w.behavior)))
            }
        };
        match w.behavior.as_str() {
            "none" => no_items(HeaderForward::None),
            "whitelist" => Ok(HeaderForward::Only(names(false, false)?)),
            "allViewer" | "all_viewer" => no_items(HeaderForward::AllViewer),
            "allViewerAndWhitelistCloudFront" | "all_viewer_and_whitelist_cloudfront" => {
                Ok(HeaderForward::AllViewerAnd(names(true, false)?))
            }
            "allExcept" | "all_except" => Ok(HeaderForward::AllExcept(names(false, true)?)),
            other => Err(Invalid::new(
                format!("{field}.behavior"),
                format!(
                    "{other:?} is not one of none, whitelist, allViewer, allViewerAndWhitelistCloudFront, allExcept"
                ),
            )),
        }
    }

    /// Whether the viewer header `name` (lower-case) is forwarded.
    pub fn forwards(&self, name: &str) -> bool {
        match self {
            HeaderForward::None => false,
            HeaderForward::Only(names) => names.iter().any(|n| n == name),
            HeaderForward::AllViewer | HeaderForward::AllViewerAnd(_) => true,
            HeaderForward::AllExcept(names) => !names.iter().any(|n| n == name),
        }
    }

    /// The edge-made `cloudfront-*` headers to add.
    pub fn edge_headers(&self) -> impl Iterator<Item = &str> {
        let list: &[String] = match self {
            HeaderForward::Only(names) | HeaderForward::AllViewerAnd(names) => names,
            _ => &[],
        };
        list.iter().map(String::as_str).filter(|n| CLOUDFRONT_HEADERS.contains(n))
    }
}

/// A validated origin request policy: what reaches the origin beyond the
/// cache key, without joining it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginRequestPolicy {
    /// Viewer headers forwarded.
    pub headers: HeaderForward,
    /// Cookies forwarded (names are case-sensitive).
    pub cookies: KeyItems,
    /// Query strings forwarded.
    pub query_strings: KeyItems,
}

impl OriginRequestPolicy {
    /// Validates a wire origin request policy.
    pub fn from_wire(w: &OriginRequestPolicyWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        Ok(OriginRequestPolicy {
            headers: HeaderForward::from_wire("headers", &w.headers)?,
            cookies: KeyItems::from_wire("cookies", &w.cookies, false)?,
            query_strings: KeyItems::from_wire("query_strings", &w.query_strings, false)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Continuous deployment policies
// ---------------------------------------------------------------------------

/// How a viewer stays on one side under a weight policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stickiness {
    /// A session ends after this long without requests.
    pub idle_ttl: Duration,
    /// A session ends this long after it started.
    pub maximum_ttl: Duration,
    /// Key on this lower-cased request header instead of a cookie.
    pub header: Option<String>,
}

/// Which requests go to staging.
#[derive(Debug, Clone, PartialEq)]
pub enum Traffic {
    /// Requests whose header `name` equals `value`.
    Header {
        /// Lower-cased header name.
        name: String,
        /// Exact value.
        value: String,
    },
    /// A share of requests (0.0 to 1.0).
    Weight {
        /// Share for staging.
        weight: f64,
        /// Session stickiness.
        stickiness: Option<Stickiness>,
    },
}

/// A validated continuous deployment policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CdPolicy {
    /// The staging distribution.
    pub staging: ResourceId,
    /// Whether traffic goes to staging at all.
    pub enabled: bool,
    /// How requests are chosen.
    pub traffic: Traffic,
}

fn stickiness_from_wire(w: &StickinessWire) -> Result<Stickiness, Invalid> {
    let f = "traffic.session_stickiness";
    // CloudFront: IdleTTL and MaximumTTL 300–3600 s, IdleTTL <= MaximumTTL.
    // shardgate allows longer sessions (game sessions last hours), up to a day.
    let secs = |name: &str, v: Option<u64>| -> Result<Duration, Invalid> {
        match v {
            Some(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
            Some(_) => Err(Invalid::new(format!("{f}.{name}"), "must be 1 to 86400 seconds")),
            None => Err(Invalid::new(format!("{f}.{name}"), "required")),
        }
    };
    let idle_ttl = secs("idle_ttl", w.idle_ttl)?;
    let maximum_ttl = secs("maximum_ttl", w.maximum_ttl)?;
    if idle_ttl > maximum_ttl {
        return Err(Invalid::new(format!("{f}.idle_ttl"), "must not exceed maximum_ttl"));
    }
    let header = w.header.as_ref().map(|h| header_name(&format!("{f}.header"), h)).transpose()?;
    Ok(Stickiness { idle_ttl, maximum_ttl, header })
}

fn traffic_from_wire(w: &TrafficWire) -> Result<Traffic, Invalid> {
    match w.kind.as_str() {
        "single_header" | "SingleHeader" => {
            if w.weight.is_some() || w.session_stickiness.is_some() {
                return Err(Invalid::new("traffic", "single_header takes header and value, not weight"));
            }
            let name = match &w.header {
                Some(h) => header_name("traffic.header", h)?,
                None => return Err(Invalid::new("traffic.header", "required for single_header")),
            };
            let value = match &w.value {
                // CloudFront: Value is 1–1783 characters.
                Some(v) if !v.is_empty() && v.len() <= 1783 && !v.chars().any(char::is_control) => v.clone(),
                Some(_) => return Err(Invalid::new("traffic.value", "must be 1 to 1783 characters, no controls")),
                None => return Err(Invalid::new("traffic.value", "required for single_header")),
            };
            Ok(Traffic::Header { name, value })
        }
        "single_weight" | "SingleWeight" => {
            if w.header.is_some() || w.value.is_some() {
                return Err(Invalid::new("traffic", "single_weight takes weight, not header and value"));
            }
            let weight = match w.weight {
                Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => x,
                Some(_) => {
                    return Err(Invalid::new("traffic.weight", "must be a share from 0.0 to 1.0 (0.01 is 1 %)"));
                }
                None => return Err(Invalid::new("traffic.weight", "required for single_weight")),
            };
            let stickiness = w.session_stickiness.as_ref().map(stickiness_from_wire).transpose()?;
            Ok(Traffic::Weight { weight, stickiness })
        }
        other => Err(Invalid::new("traffic.type", format!("{other:?} is not single_header or single_weight"))),
    }
}

impl CdPolicy {
    /// Validates a wire policy.
    pub fn from_wire(w: &CdPolicyWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        let staging = match &w.staging_distribution_id {
            Some(v) => ResourceId::from_json("staging_distribution_id", v)?,
            None => return Err(Invalid::new("staging_distribution_id", "required")),
        };
        let Some(enabled) = w.enabled else { return Err(Invalid::new("enabled", "required")) };
        let traffic = match &w.traffic {
            Some(t) => traffic_from_wire(t)?,
            None => return Err(Invalid::new("traffic", "required")),
        };
        Ok(CdPolicy { staging, enabled, traffic })
    }
}

// ---------------------------------------------------------------------------
// Invalidations
// ---------------------------------------------------------------------------

/// One invalidation path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationPath {
    /// The path with its query string, exactly (no query string = none).
    Exact(String),
    /// Everything that starts with this (the path ended in `*`).
    Prefix(String),
}

impl InvalidationPath {
    /// Parses a path: starts with `/`, at most 4,000 characters, `*` only as
    /// the last character (CloudFront `Invalidation.md`).
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} must start with '/'"));
        }
        if s.len() > MAX_INVALIDATION_PATH {
            return Err(format!("a path is at most {MAX_INVALIDATION_PATH} characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(format!("{s:?} contains a control character"));
        }
        match s.find('*') {
            None => Ok(InvalidationPath::Exact(s.to_owned())),
            Some(i) if i == s.len() - 1 => Ok(InvalidationPath::Prefix(s[..i].to_owned())),
            Some(_) => Err(format!("{s:?}: '*' is allowed only as the last character")),
        }
    }

    /// Whether a request target (path plus `?query` if any) is covered.
    pub fn covers(&self, target: &str) -> bool {
        match self {
            InvalidationPath::Exact(p) => p == target,
            InvalidationPath::Prefix(p) => target.starts_with(p.as_str()),
        }
    }
}

/// A validated invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// The distribution whose cache it clears.
    pub distribution: ResourceId,
    /// The paths.
    pub paths: Vec<InvalidationPath>,
}

impl Invalidation {
    /// Validates a wire invalidation.
    pub fn from_wire(w: &InvalidationWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        let distribution = match &w.distribution_id {
            Some(v) => ResourceId::from_json("distribution_id", v)?,
            None => return Err(Invalid::new("distribution_id", "required")),
        };
        let paths = match &w.paths {
            Some(p) if !p.is_empty() && p.len() <= MAX_INVALIDATION_PATHS => p
                .iter()
                .enumerate()
                .map(|(i, s)| InvalidationPath::parse(s).map_err(|e| Invalid::new(format!("paths[{i}]"), e)))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(Invalid::new("paths", format!("must list 1 to {MAX_INVALIDATION_PATHS} paths"))),
        };
        if w.caller_reference.as_ref().is_some_and(|c| c.len() > 128) {
            return Err(Invalid::new("caller_reference", "at most 128 characters"));
        }
        Ok(Invalidation { distribution, paths })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn dist(v: serde_json::Value) -> Result<Distribution, Invalid> {
        let w: DistributionWire = json::from_value(v)?;
        Distribution::from_wire(ResourceId::parse("d").expect("id"), &w)
    }

    #[test]
    fn path_patterns_follow_cloudfront() {
        let p = PathPattern::parse("/abtest-demo*").expect("valid");
        assert!(p.matches("/abtest-demo"));
        assert!(p.matches("/abtest-demo/x/y.file"));
        assert!(!p.matches("/other/abtest-demo"));
        let p = PathPattern::parse("images/*.jpg").expect("valid");
        assert_eq!(p.as_str(), "/images/*.jpg");
        assert!(p.matches("/images/a/b.jpg"));
        assert!(!p.matches("/images/a.JPG"), "case-sensitive");
        let p = PathPattern::parse("/a?c").expect("valid");
        assert!(p.matches("/abc") && !p.matches("/ac") && !p.matches("/abbc"));
        assert!(PathPattern::parse("/a b").is_err());
    }

    #[test]
    fn behaviors_in_precedence_order_then_default() {
        let d = dist(serde_json::json!({
            "hosts": ["www.company.com"],
            "origins": {"a": {"upstream": {"nodes": {"127.0.0.1:80": 1}}}},
            "behaviors": [
                {"path_pattern": "/abtest-demo*", "rewrite": {"path_prefix_from_header": "X-Vendor-Type"}},
                {"path_pattern": "/*"}
            ]
        }))
        .expect("valid");
        assert!(d.behavior_for("/abtest-demo.file").rewrite.is_some());
        assert_eq!(d.behavior_for("/x").pattern.as_ref().map(PathPattern::as_str), Some("/*"));
        assert_eq!(d.behaviors[0].rewrite.as_ref().map(|r| r.path_prefix_from_header.as_str()), Some("x-vendor-type"));
    }

    #[test]
    fn origin_protocol_and_keepalive_settings() {
        let origin = |o: serde_json::Value| {
            let mut v = serde_json::json!({"upstream_id": "u"});
            if let (Some(base), Some(extra)) = (v.as_object_mut(), o.as_object()) {
                base.extend(extra.clone());
            }
            dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": v}})).map(|d| d.origins["a"].clone())
        };
        let o = origin(serde_json::json!({})).expect("defaults");
        assert_eq!(o.protocol_policy, ProtocolPolicy::HttpOnly);
        assert!(o.ca_bundle.is_none() && o.sni.is_none() && o.keepalive_timeout.is_none());
        let o = origin(
            serde_json::json!({"protocol_policy": "match-viewer", "https_port": 8443, "sni": "Origin.Example.com",
            "keepalive_timeout": 30, "max_idle_connections": 0}),
        )
        .expect("valid");
        assert_eq!(o.protocol_policy, ProtocolPolicy::MatchViewer);
        assert!(o.protocol_policy.https(true) && !o.protocol_policy.https(false));
        assert_eq!((o.https_port, o.sni.as_deref()), (Some(8443), Some("origin.example.com")));
        assert_eq!((o.keepalive_timeout, o.max_idle_connections), (Some(Duration::from_secs(30)), Some(0)));
        for (bad, field) in [
            (serde_json::json!({"protocol_policy": "https"}), "origins.a.protocol_policy"),
            (serde_json::json!({"scheme": "https"}), "origins.a.scheme"),
            (serde_json::json!({"https_port": 0}), "origins.a.https_port"),
            (serde_json::json!({"http_port": 70000}), "origins.a.http_port"),
            (serde_json::json!({"sni": "bad name"}), "origins.a.sni"),
            (serde_json::json!({"ca_bundle": "not pem"}), "origins.a.ca_bundle"),
            (
                serde_json::json!({"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
                "origins.a.ca_bundle",
            ),
            (serde_json::json!({"keepalive_timeout": 181}), "origins.a.keepalive_timeout"),
            (serde_json::json!({"max_idle_connections": 1025}), "origins.a.max_idle_connections"),
        ] {
            let e = origin(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn a_ca_bundle_with_a_private_key_is_refused_without_echoing_it() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["origin.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let key_pem = key.serialize_pem();
        assert!(ca_bundle("f", &cert.pem()).is_ok(), "a certificate alone is a bundle");
        let e = ca_bundle("origins.a.ca_bundle", &format!("{}{key_pem}", cert.pem())).expect_err("a key is refused");
        assert_eq!(e.field, "origins.a.ca_bundle");
        assert!(e.reason.contains("PRIVATE KEY"), "{}", e.reason);
        let body_line = key_pem.lines().nth(1).expect("a base64 line");
        assert!(!e.reason.contains(body_line), "no key material in the error: {}", e.reason);
    }

    #[test]
    fn distribution_errors_name_the_field() {
        let base = |o: serde_json::Value| serde_json::json!({"hosts": ["a.com"], "origins": {"a": o}});
        let e = dist(base(serde_json::json!({"upstream": {"nodes": {"127.0.0.1:x": 1}}}))).unwrap_err();
        assert_eq!(e.field, "origins.a.upstream.nodes[\"127.0.0.1:x\"]");
        let e = dist(base(serde_json::json!({"upstream_id": "u", "origin_path": "/a/../b"}))).unwrap_err();
        assert_eq!(e.field, "origins.a.origin_path");
        let e = dist(serde_json::json!({"origins": {"a": {"upstream_id": "u"}}})).unwrap_err();
        assert_eq!(e.field, "hosts");
        let e = dist(serde_json::json!({"staging": true, "hosts": ["a.com"], "origins": {"a": {"upstream_id": "u"}}}))
            .unwrap_err();
        assert_eq!(e.field, "hosts");
        let e = dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": {"upstream_id": "u"}},
            "behaviors": [{"path_pattern": "/x", "origin": "b"}]}))
        .unwrap_err();
        assert_eq!(e.field, "behaviors[0].origin");
        let e = dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": {"upstream_id": "u", "extra": 1}}}))
            .unwrap_err();
        assert!(e.field.starts_with("origins.a"), "{e}");
    }

    #[test]
    fn cache_policy_ttls_are_ordered() {
        let p = |v: serde_json::Value| -> Result<CachePolicy, Invalid> {
            CachePolicy::from_wire(&json::from_value::<CachePolicyWire>(v)?)
        };
        let ok = p(serde_json::json!({"min_ttl": 10, "headers": ["X-Vendor-Type"],
            "query_strings": {"behavior": "whitelist", "items": ["v"]}}))
        .expect("valid");
        assert_eq!(ok.default_ttl, Duration::from_secs(86_400));
        assert_eq!(ok.headers, vec!["x-vendor-type".to_owned()]);
        assert!(ok.query_strings.includes("v") && !ok.query_strings.includes("w"));
        assert_eq!(p(serde_json::json!({"min_ttl": 10, "default_ttl": 5})).unwrap_err().field, "default_ttl");
        assert_eq!(
            p(serde_json::json!({"query_strings": {"behavior": "some"}})).unwrap_err().field,
            "query_strings.behavior"
        );
        assert_eq!(p(serde_json::json!({"headers": ["bad header"]})).unwrap_err().field, "headers[0]");
        for refused in
            ["Transfer-Encoding", "connection", "Content-Length", "TE", "CloudFront-Viewer-Country", "x-amz-cf-id"]
        {
            let e = p(serde_json::json!({"headers": ["x-ok", refused]})).unwrap_err();
            assert_eq!(e.field, "headers[1]", "{refused}");
            assert!(e.reason.contains(&refused.to_ascii_lowercase()), "{refused}: {}", e.reason);
        }
        let edge = p(serde_json::json!({"headers": ["Host", "CloudFront-Viewer-Address"]})).expect("valid");
        assert_eq!(edge.headers, vec!["host".to_owned(), "cloudfront-viewer-address".to_owned()]);
    }

    #[test]
    fn behavior_methods_are_cloudfronts_sets() {
        let behavior = |b: serde_json::Value| {
            dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": {"upstream_id": "u"}}, "default_behavior": b}))
                .map(|d| d.default_behavior)
        };
        let d = behavior(serde_json::json!({})).expect("defaults");
        assert_eq!(
            (d.allowed_methods, d.cached_methods, d.compress),
            (AllowedMethods::GetHead, CachedMethods::GetHead, false)
        );
        assert!(d.allowed_methods.allows("GET") && d.allowed_methods.allows("HEAD"));
        assert!(!d.allowed_methods.allows("POST") && !d.allowed_methods.allows("OPTIONS"));
        assert!(d.origin_request_policy.is_none());

        let all = behavior(
            serde_json::json!({"allowed_methods": ["POST", "GET", "DELETE", "HEAD", "PATCH", "OPTIONS", "PUT"],
            "cached_methods": ["HEAD", "OPTIONS", "GET"], "compress": true, "origin_request_policy_id": "orp"}),
        )
        .expect("order does not matter");
        assert_eq!(all.allowed_methods, AllowedMethods::All);
        assert!(
            ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"].iter().all(|m| all.allowed_methods.allows(m))
        );
        assert!(
            !all.allowed_methods.allows("post") && !all.allowed_methods.allows("CONNECT"),
            "case-sensitive, seven only"
        );
        assert_eq!(all.cached_methods, CachedMethods::GetHeadOptions);
        assert!(all.cached_methods.caches("OPTIONS") && !all.cached_methods.caches("POST"));
        assert!(all.compress);
        assert_eq!(all.origin_request_policy.as_ref().map(ResourceId::as_str), Some("orp"));
        let opts = behavior(serde_json::json!({"allowed_methods": ["GET", "HEAD", "OPTIONS"]})).expect("valid");
        assert_eq!(opts.allowed_methods, AllowedMethods::GetHeadOptions);
        assert!(!opts.cached_methods.caches("OPTIONS"), "OPTIONS is cached only when cached_methods lists it");

        for (bad, field) in [
            (serde_json::json!({"allowed_methods": ["GET", "HEAD", "POST"]}), "default_behavior.allowed_methods"),
            (serde_json::json!({"allowed_methods": ["GET"]}), "default_behavior.allowed_methods"),
            (serde_json::json!({"allowed_methods": ["GET", "HEAD", "TRACE"]}), "default_behavior.allowed_methods[2]"),
            (serde_json::json!({"allowed_methods": ["GET", "HEAD", "get"]}), "default_behavior.allowed_methods[2]"),
            (serde_json::json!({"allowed_methods": ["GET", "HEAD", "HEAD"]}), "default_behavior.allowed_methods[2]"),
            (serde_json::json!({"cached_methods": ["GET", "HEAD", "OPTIONS"]}), "default_behavior.cached_methods"),
            (
                serde_json::json!({"allowed_methods": ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"],
                "cached_methods": ["GET", "HEAD", "POST"]}),
                "default_behavior.cached_methods",
            ),
            (serde_json::json!({"cached_methods": ["GET"]}), "default_behavior.cached_methods"),
            (serde_json::json!({"origin_request_policy_id": ""}), "default_behavior.origin_request_policy_id"),
        ] {
            let e = behavior(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn custom_error_responses_follow_cloudfront() {
        let errors = |list: serde_json::Value| {
            dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": {"upstream_id": "u"}},
                "custom_error_responses": list}))
        };
        let d = dist(serde_json::json!({"hosts": ["a.com"], "origins": {"a": {"upstream_id": "u"}}})).expect("valid");
        assert!(d.custom_error_responses.is_empty(), "none by default");
        let d = errors(serde_json::json!([
            {"error_code": 404, "error_caching_min_ttl": 0},
            {"error_code": 503, "response_code": 200, "response_page_path": "/errors/503.html"},
            {"error_code": 500, "response_page_path": "/errors/500.html", "error_caching_min_ttl": 60}
        ]))
        .expect("valid");
        assert_eq!(
            d.custom_error_response(404),
            Some(&CustomErrorResponse {
                error_code: 404,
                error_caching_min_ttl: Duration::ZERO,
                response_code: None,
                response_page_path: None
            })
        );
        let e503 = d.custom_error_response(503).expect("503");
        assert_eq!(e503.error_caching_min_ttl, DEFAULT_ERROR_CACHING_MIN_TTL, "CloudFront's default of 10 s");
        assert_eq!((e503.response_code, e503.response_page_path.as_deref()), (Some(200), Some("/errors/503.html")));
        assert_eq!(d.custom_error_response(500).map(|e| e.response_code), Some(None), "the origin's status");
        assert!(d.custom_error_response(502).is_none());

        for (bad, field) in [
            (serde_json::json!([{}]), "custom_error_responses[0].error_code"),
            (serde_json::json!([{"error_code": 418}]), "custom_error_responses[0].error_code"),
            (serde_json::json!([{"error_code": 200}]), "custom_error_responses[0].error_code"),
            (
                serde_json::json!([{"error_code": 404}, {"error_code": 404, "error_caching_min_ttl": 5}]),
                "custom_error_responses[1].error_code",
            ),
            (serde_json::json!([{"error_code": 404, "response_code": 200}]), "custom_error_responses[0].response_code"),
            (
                serde_json::json!([{"error_code": 404, "response_code": 302, "response_page_path": "/x"}]),
                "custom_error_responses[0].response_code",
            ),
            (
                serde_json::json!([{"error_code": 404, "response_page_path": "errors/404.html"}]),
                "custom_error_responses[0].response_page_path",
            ),
            (
                serde_json::json!([{"error_code": 404, "error_caching_min_ttl": 4_000_000_000u64}]),
                "custom_error_responses[0].error_caching_min_ttl",
            ),
        ] {
            let e = errors(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.field, field, "{bad}: {e}");
        }
        let e = errors(serde_json::json!([{"error_code": 404, "extra": 1}])).unwrap_err();
        assert!(e.field.starts_with("custom_error_responses[0]"), "{e}");
    }

    #[test]
    fn origin_request_policies_forward_without_keying() {
        let p = |v: serde_json::Value| -> Result<OriginRequestPolicy, Invalid> {
            OriginRequestPolicy::from_wire(&json::from_value::<OriginRequestPolicyWire>(v)?)
        };
        let none = p(serde_json::json!({})).expect("empty policy");
        assert_eq!(none, OriginRequestPolicy::default());
        assert!(!none.headers.forwards("x-player-id"));
        let w = p(serde_json::json!({"headers": {"behavior": "whitelist", "items": ["X-Player-Id", "CloudFront-Viewer-Address"]},
            "cookies": {"behavior": "all"}, "query_strings": {"behavior": "allExcept", "items": ["utm"]}}))
        .expect("valid");
        assert!(w.headers.forwards("x-player-id") && !w.headers.forwards("x-other"));
        assert_eq!(w.headers.edge_headers().collect::<Vec<_>>(), vec!["cloudfront-viewer-address"]);
        assert!(w.cookies.includes("session") && w.query_strings.includes("v") && !w.query_strings.includes("utm"));
        let all = p(serde_json::json!({"headers": {"behavior": "allViewerAndWhitelistCloudFront",
            "items": ["CloudFront-Forwarded-Proto"]}}))
        .expect("valid");
        assert!(all.headers.forwards("anything"));
        assert_eq!(all.headers.edge_headers().collect::<Vec<_>>(), vec!["cloudfront-forwarded-proto"]);
        let except =
            p(serde_json::json!({"headers": {"behavior": "allExcept", "items": ["Authorization"]}})).expect("valid");
        assert!(except.headers.forwards("x-a") && !except.headers.forwards("authorization"));
        assert!(p(serde_json::json!({"headers": {"behavior": "allViewer"}})).expect("valid").headers.forwards("x"));

        let many: Vec<String> = (0..=MAX_KEY_NAMES).map(|i| format!("x-h{i}")).collect();
        for (bad, field) in [
            (serde_json::json!({"headers": {"behavior": "all"}}), "headers.behavior"),
            (serde_json::json!({"headers": {"behavior": "allViewer", "items": ["x"]}}), "headers.items"),
            (serde_json::json!({"headers": {"behavior": "whitelist"}}), "headers.items"),
            (serde_json::json!({"headers": {"behavior": "whitelist", "items": many}}), "headers.items"),
            (
                serde_json::json!({"headers": {"behavior": "whitelist", "items": ["ok", "bad name"]}}),
                "headers.items[1]",
            ),
            (
                serde_json::json!({"headers": {"behavior": "allViewerAndWhitelistCloudFront", "items": ["x-player"]}}),
                "headers.items[0]",
            ),
            (
                serde_json::json!({"headers": {"behavior": "whitelist", "items": ["CloudFront-Unknown"]}}),
                "headers.items[0]",
            ),
            (serde_json::json!({"cookies": {"behavior": "allViewer"}}), "cookies.behavior"),
            (
                serde_json::json!({"headers": {"behavior": "whitelist", "items": ["x-a", "Authorization"]}}),
                "headers.items[1]",
            ),
            (serde_json::json!({"query_strings": {"behavior": "whitelist", "items": []}}), "query_strings.items"),
            (serde_json::json!({"name": ""}), "name"),
        ] {
            let e = p(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(e.field, field, "{bad}: {e}");
        }
    }

    #[test]
    fn cache_policy_compression_flags_default_off() {
        let p = |v: serde_json::Value| -> Result<CachePolicy, Invalid> {
            CachePolicy::from_wire(&json::from_value::<CachePolicyWire>(v)?)
        };
        let off = p(serde_json::json!({})).expect("valid");
        assert!(!off.enable_accept_encoding_gzip && !off.enable_accept_encoding_brotli);
        assert_eq!((off.enable_accept_encoding_gzip, off.enable_accept_encoding_brotli), {
            let b = CachePolicy::builtin();
            (b.enable_accept_encoding_gzip, b.enable_accept_encoding_brotli)
        });
        let on = p(serde_json::json!({"enable_accept_encoding_gzip": true, "enable_accept_encoding_brotli": true}))
            .expect("valid");
        assert!(on.enable_accept_encoding_gzip && on.enable_accept_encoding_brotli);
        assert!(p(serde_json::json!({"enable_accept_encoding_gzip": "yes"})).is_err());
    }

    #[test]
    fn cd_policies_and_invalidations() {
        let cd = |v: serde_json::Value| -> Result<CdPolicy, Invalid> {
            CdPolicy::from_wire(&json::from_value::<CdPolicyWire>(v)?)
        };
        let h = cd(serde_json::json!({"staging_distribution_id": "b", "enabled": true,
            "traffic": {"type": "single_header", "header": "aws-cf-cd-resource", "value": "b"}}))
        .expect("valid");
        assert_eq!(h.traffic, Traffic::Header { name: "aws-cf-cd-resource".into(), value: "b".into() });
        let e = cd(serde_json::json!({"staging_distribution_id": "b", "enabled": true,
            "traffic": {"type": "single_weight", "weight": 1.5}}))
        .unwrap_err();
        assert_eq!(e.field, "traffic.weight");
        let e = cd(serde_json::json!({"staging_distribution_id": "b", "enabled": true,
            "traffic": {"type": "single_weight", "weight": 0.01, "session_stickiness": {"idle_ttl": 600, "maximum_ttl": 300}}}))
        .unwrap_err();
        assert_eq!(e.field, "traffic.session_stickiness.idle_ttl");

        assert_eq!(InvalidationPath::parse("/images/*"), Ok(InvalidationPath::Prefix("/images/".into())));
        assert!(InvalidationPath::parse("/im*ages").is_err());
        assert!(InvalidationPath::parse("images").is_err());
        let p = InvalidationPath::parse("/images/image.jpg*").expect("valid");
        assert!(p.covers("/images/image.jpg?v=2") && !p.covers("/images/other.jpg"));
        assert!(InvalidationPath::parse("/example.file").expect("valid").covers("/example.file"));
    }
}
