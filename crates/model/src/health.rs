//! Validated health checks of an upstream (`checks`), in APISIX's
//! `health_checker` schema (apache/apisix `apisix/schema_def.lua`): active
//! probes (`tcp`, `http`, `https`) and passive checks on real traffic, with
//! APISIX's defaults and ranges.
//!
//! As in APISIX, `active` is required (`anyOf {active}, {active, passive}`):
//! a node that real traffic alone marked unhealthy gets no more traffic, so
//! without probes it could never come back. `passive`, when left out, takes
//! the defaults lua-resty-healthcheck fills in (APISIX's checker library), so
//! connect failures of real traffic count either way.
//!
//! shardgate is stricter than the JSON schema where a value could not work
//! or would let a probe write something other than one well-formed HTTP/1.1
//! request: unknown fields are refused at every level (not only the top), a
//! path must be an origin-form path without spaces or control characters,
//! `req_headers` must be `Name: value` lines and cannot set the headers the
//! probe writes itself, and every size, count and time has an upper bound
//! (the constants below). Every error names its path under `checks`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::Invalid;
use crate::error::join_path;
use crate::id::json_type;

/// Longest `interval`, in seconds (one hour; APISIX has no upper bound).
pub const MAX_INTERVAL_SECS: u64 = 3600;
/// Longest probe `timeout`, in seconds.
pub const MAX_PROBE_TIMEOUT_SECS: f64 = 300.0;
/// Most probes of one upstream in flight at once (`concurrency`).
pub const MAX_CONCURRENCY: u64 = 256;
/// Longest `http_path`, in bytes.
pub const MAX_HTTP_PATH: usize = 2048;
/// Longest `host`, in bytes (a DNS name).
pub const MAX_HOST: usize = 253;
/// Most `req_headers` entries.
pub const MAX_REQ_HEADERS: usize = 32;
/// Longest `req_headers` entry, in bytes.
pub const MAX_REQ_HEADER: usize = 1024;
/// Longest `http_req_body`, in bytes.
pub const MAX_REQ_BODY: usize = 4096;
/// Largest counter threshold (`successes`, `tcp_failures`, ...): APISIX's
/// 254, the most an 8-bit counter of lua-resty-healthcheck holds.
pub const MAX_THRESHOLD: u64 = 254;

/// Request methods an HTTP probe may use (APISIX's `method_schema`).
const METHODS: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
/// Headers the probe writes itself: setting them in `req_headers` would send
/// them twice or break the request's framing.
const OWN_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "te"];

/// The `checks` of an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChecks {
    /// Active probes.
    pub active: ActiveCheck,
    /// Passive checks on real traffic (APISIX's defaults when left out).
    pub passive: PassiveCheck,
}

/// What a probe does, and how passive results are read (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// A TCP connect; success when it is accepted.
    Tcp,
    /// An HTTP/1.1 request; judged by its status code.
    Http,
    /// An HTTP/1.1 request over TLS.
    Https,
}

impl ProbeKind {
    /// The name APISIX uses (`tcp`, `http`, `https`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
        }
    }
}

/// A set of HTTP status codes (200–599).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<u16>);

impl StatusSet {
    fn of(codes: &[u16]) -> Self {
        StatusSet(codes.to_vec())
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        self.0.contains(&code)
    }

    /// The codes, in the order given.
    pub fn codes(&self) -> &[u16] {
        &self.0
    }
}

/// `checks.active`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCheck {
    /// `type`, default `http`.
    pub kind: ProbeKind,
    /// `timeout`: the whole probe (connect, TLS, request, status line), default 1 s.
    pub timeout: Duration,
    /// `concurrency`: probes of this upstream in flight at once, default 10.
    pub concurrency: u32,
    /// `host`: the `Host` header and TLS server name; default the node's host.
    pub host: Option<Box<str>>,
    /// `port`: probe this port instead of the node's.
    pub port: Option<u16>,
    /// `http_method`, default `GET`.
    pub http_method: Box<str>,
    /// `http_path`, default `/`.
    pub http_path: Box<str>,
    /// `http_req_body`, default empty (a body adds `Content-Length`).
    pub http_req_body: Box<str>,
    /// `https_verify_certificate`, default true.
    pub https_verify_certificate: bool,
    /// `req_headers`: extra `Name: value` lines.
    pub req_headers: Vec<Box<str>>,
    /// `healthy`.
    pub healthy: ActiveHealthy,
    /// `unhealthy`.
    pub unhealthy: ActiveUnhealthy,
}

/// `checks.active.healthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveHealthy {
    /// `interval` between probes of a node that takes traffic, default 1 s.
    pub interval: Duration,
    /// `http_statuses` that count as a success, default [200, 302].
    pub http_statuses: StatusSet,
    /// `successes` in a row that make a node healthy, default 2.
    pub successes: u8,
}

/// `checks.active.unhealthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveUnhealthy {
    /// `interval` between probes of a node that takes no traffic, default 1 s.
    pub interval: Duration,
    /// `http_statuses` that count as an HTTP failure, default
    /// [429, 404, 500, 501, 502, 503, 504, 505].
    pub http_statuses: StatusSet,
    /// `http_failures` in a row that make a node unhealthy, default 5.
    pub http_failures: u8,
    /// `tcp_failures` in a row, default 2.
    pub tcp_failures: u8,
    /// `timeouts` in a row, default 3.
    pub timeouts: u8,
}

/// `checks.passive`.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveCheck {
    /// `type`, default `http`. A stream connection has no HTTP response, so
    /// on the stream gateway only connect results count.
    pub kind: ProbeKind,
    /// `healthy`.
    pub healthy: PassiveHealthy,
    /// `unhealthy`.
    pub unhealthy: PassiveUnhealthy,
}

/// `checks.passive.healthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveHealthy {
    /// `http_statuses`, default 200–208, 226, 300–308.
    pub http_statuses: StatusSet,
    /// `successes` in a row (successful connects), default 5.
    pub successes: u8,
}

/// `checks.passive.unhealthy`.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveUnhealthy {
    /// `http_statuses`, default [429, 500, 503].
    pub http_statuses: StatusSet,
    /// `tcp_failures` in a row (refused or failed connects), default 2.
    pub tcp_failures: u8,
    /// `timeouts` in a row (connects that timed out), default 7.
    pub timeouts: u8,
    /// `http_failures` in a row, default 5.
    pub http_failures: u8,
}

impl Default for PassiveCheck {
    /// lua-resty-healthcheck's defaults, which APISIX's checker runs with
    /// when `passive` is left out.
    fn default() -> Self {
        PassiveCheck {
            kind: ProbeKind::Http,
            healthy: PassiveHealthy {
                http_statuses: StatusSet::of(&[
                    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308,
                ]),
                successes: 5,
            },
            unhealthy: PassiveUnhealthy {
                http_statuses: StatusSet::of(&[429, 500, 503]),
                tcp_failures: 2,
                timeouts: 7,
                http_failures: 5,
            },
        }
    }
}

impl HealthChecks {
    /// Validates `checks`; error paths are relative to it
    /// (`active.healthy.interval`): the caller prefixes them.
    pub fn from_json(v: &Value) -> Result<Self, Invalid> {
        let top = Obj::new("", v, &["active", "passive"])?;
        let active = match top.get("active") {
            Some(a) => active(&Obj::new(
                "active",
                a,
                &[
                    "type",
                    "timeout",
                    "concurrency",
                    "host",
                    "port",
                    "http_method",
                    "http_path",
                    "http_req_body",
                    "https_verify_certificate",
                    "req_headers",
                    "healthy",
                    "unhealthy",
                ],
            )?)?,
            None => {
                return Err(Invalid::new(
                    "active",
                    "is required: passive checks alone are refused, as APISIX does, because a node that real traffic marked unhealthy gets no more traffic and could never recover; add active probes, e.g. {\"type\": \"tcp\"}",
                ));
            }
        };
        let passive = match top.get("passive") {
            Some(p) => passive(&Obj::new("passive", p, &["type", "healthy", "unhealthy"])?)?,
            None => PassiveCheck::default(),
        };
        Ok(HealthChecks { active, passive })
    }
}

fn active(o: &Obj<'_>) -> Result<ActiveCheck, Invalid> {
    let kind = o.kind("type")?;
    let timeout = o.seconds("timeout", 1.0, MAX_PROBE_TIMEOUT_SECS)?;
    let concurrency = o.integer("concurrency", 10, 1, MAX_CONCURRENCY)? as u32;
    let host = match o.string("host", MAX_HOST)? {
        None => None,
        Some(h) => {
            // APISIX's host_def (`^\*?[0-9a-zA-Z-._]+$`) without the wildcard,
            // which means nothing in a Host header.
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
                return Err(
                    o.invalid("host", format!("{h:?} is not a host name: letters, digits, '-', '.' and '_' only"))
                );
            }
            Some(h.into())
        }
    };
    let port = match o.get("port") {
        None => None,
        Some(_) => Some(o.integer("port", 0, 1, 65_535)? as u16),
    };
    let http_method = match o.string("http_method", 16)? {
        None => "GET",
        Some(m) => METHODS
            .iter()
            .copied()
            .find(|x| *x == m)
            .ok_or_else(|| o.invalid("http_method", format!("{m:?} is not one of {}", METHODS.join(", "))))?,
    };
    let http_path = match o.string("http_path", MAX_HTTP_PATH)? {
        None => "/",
        Some(p) => {
            if !p.starts_with('/') || !p.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(o.invalid(
                    "http_path",
                    format!(
                        "{p:?} must start with '/' and hold no spaces or control characters (an HTTP request target)"
                    ),
                ));
            }
            p
        }
    };
    let http_req_body = o.string("http_req_body", MAX_REQ_BODY)?.unwrap_or("");
    let https_verify_certificate = o.boolean("https_verify_certificate", true)?;
    let req_headers = match o.get("req_headers") {
        None => Vec::new(),
        Some(v) => req_headers(&o.path("req_headers"), v)?,
    };
    let healthy = match o.get("healthy") {
        None => Obj::empty(o.path("healthy")),
        Some(v) => Obj::new(&o.path("healthy"), v, &["interval", "http_statuses", "successes"])?,
    };
    let unhealthy = match o.get("unhealthy") {
        None => Obj::empty(o.path("unhealthy")),
        Some(v) => Obj::new(
            &o.path("unhealthy"),
            v,
            &["interval", "http_statuses", "http_failures", "tcp_failures", "timeouts"],
        )?,
    };
    Ok(ActiveCheck {
        kind: kind.unwrap_or(ProbeKind::Http),
        timeout,
        concurrency,
        host,
        port,
        http_method: http_method.into(),
        http_path: http_path.into(),
        http_req_body: http_req_body.into(),
        https_verify_certificate,
        req_headers,
        healthy: ActiveHealthy {
            interval: healthy.interval()?,
            http_statuses: healthy.statuses("http_statuses", &[200, 302])?,
            successes: healthy.threshold("successes", 2)?,
        },
        unhealthy: ActiveUnhealthy {
            interval: unhealthy.interval()?,
            http_statuses: unhealthy.statuses("http_statuses", &[429, 404, 500, 501, 502, 503, 504, 505])?,
            http_failures: unhealthy.threshold("http_failures", 5)?,
            tcp_failures: unhealthy.threshold("tcp_failures", 2)?,
            timeouts: unhealthy.threshold("timeouts", 3)?,
        },
    })
}

fn passive(o: &Obj<'_>) -> Result<PassiveCheck, Invalid> {
    let defaults = PassiveCheck::default();
    let healthy = match o.get("healthy") {
        None => Obj::empty(o.path("healthy")),
        Some(v) => Obj::new(&o.path("healthy"), v, &["http_statuses", "successes"])?,
    };
    let unhealthy = match o.get("unhealthy") {
        None => Obj::empty(o.path("unhealthy")),
        Some(v) => Obj::new(&o.path("unhealthy"), v, &["http_statuses", "tcp_failures", "timeouts", "http_failures"])?,
    };
    Ok(PassiveCheck {
        kind: o.kind("type")?.unwrap_or(defaults.kind),
        healthy: PassiveHealthy {
            http_statuses: healthy.statuses("http_statuses", defaults.healthy.http_statuses.codes())?,
            successes: healthy.threshold("successes", defaults.healthy.successes)?,
        },
        unhealthy: PassiveUnhealthy {
            http_statuses: unhealthy.statuses("http_statuses", defaults.unhealthy.http_statuses.codes())?,
            tcp_failures: unhealthy.threshold("tcp_failures", defaults.unhealthy.tcp_failures)?,
            timeouts: unhealthy.threshold("timeouts", defaults.unhealthy.timeouts)?,
            http_failures: unhealthy.threshold("http_failures", defaults.unhealthy.http_failures)?,
        },
    })
}

/// `req_headers`: APISIX's array of `"Name: value"` strings (at least one).
fn req_headers(path: &str, v: &Value) -> Result<Vec<Box<str>>, Invalid> {
    let Value::Array(items) = v else {
        return Err(Invalid::new(path, format!("wrong type: expected array, got {}", json_type(v))));
    };
    if items.is_empty() {
        return Err(Invalid::new(path, "expect array to have at least 1 items"));
    }
    if items.len() > MAX_REQ_HEADERS {
        return Err(Invalid::new(path, format!("at most {MAX_REQ_HEADERS} headers are allowed")));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("{path}[{i}]");
        let Value::String(line) = item else {
            return Err(Invalid::new(field, format!("wrong type: expected string, got {}", json_type(item))));
        };
        if line.len() > MAX_REQ_HEADER {
            return Err(Invalid::new(field, format!("is longer than {MAX_REQ_HEADER} bytes")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Invalid::new(field, format!("{line:?} is not a header line; write \"Name: value\"")));
        };
        // RFC 9110 §5.1: a field name is a token; values hold no CR, LF or NUL.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(Invalid::new(field, format!("{name:?} is not a valid header name")));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Invalid::new(field, "a header value cannot hold CR, LF or NUL"));
        }
        if OWN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(Invalid::new(
                field,
                format!(
                    "{name} is written by the probe itself (set `host` for Host, `http_req_body` for a body); it cannot be set here"
                ),
            ));
        }
        out.push(format!("{name}: {}", value.trim()).into());
    }
    Ok(out)
}

/// One JSON object of the schema, with its path for errors.
struct Obj<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Obj<'a> {
    /// `v` at `path`, which must be an object with only `allowed` keys.
    fn new(path: &str, v: &'a Value, allowed: &[&str]) -> Result<Self, Invalid> {
        let Value::Object(map) = v else {
            return Err(Invalid::new(path, format!("wrong type: expected object, got {}", json_type(v))));
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Invalid::new(join_path(path, key), format!("additional properties forbidden, found {key}")));
        }
        Ok(Obj { path: path.to_owned(), map: Some(map) })
    }

    /// An object left out: every field takes its default.
    fn empty(path: String) -> Self {
        Obj { path, map: None }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key))
    }

    fn path(&self, key: &str) -> String {
        join_path(&self.path, key)
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> Invalid {
        Invalid::new(self.path(key), reason)
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> Invalid {
        self.invalid(key, format!("wrong type: expected {expected}, got {}", json_type(got)))
    }

    fn integer(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, Invalid> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => match n.as_u64() {
                Some(x) if (min..=max).contains(&x) => Ok(x),
                _ => Err(self.invalid(key, format!("must be an integer between {min} and {max}"))),
            },
            Some(other) => Err(self.wrong_type(key, "integer", other)),
        }
    }

    fn threshold(&self, key: &str, default: u8) -> Result<u8, Invalid> {
        Ok(self.integer(key, u64::from(default), 1, MAX_THRESHOLD)? as u8)
    }

    fn interval(&self) -> Result<Duration, Invalid> {
        Ok(Duration::from_secs(self.integer("interval", 1, 1, MAX_INTERVAL_SECS)?))
    }

    /// A number of seconds greater than 0 and at most `max`.
    fn seconds(&self, key: &str, default: f64, max: f64) -> Result<Duration, Invalid> {
        let s = match self.get(key) {
            None => default,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => return Err(self.wrong_type(key, "number", other)),
        };
        if !(s > 0.0 && s <= max) {
            return Err(self.invalid(key, format!("must be a number of seconds greater than 0 and at most {max}")));
        }
        Ok(Duration::from_secs_f64(s))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, Invalid> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong_type(key, "boolean", other)),
        }
    }

    fn string(&self, key: &str, max: usize) -> Result<Option<&'a str>, Invalid> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
            Some(Value::String(_)) => Err(self.invalid(key, format!("is longer than {max} bytes"))),
            Some(other) => Err(self.wrong_type(key, "string", other)),
        }
    }

    fn kind(&self, key: &str) -> Result<Option<ProbeKind>, Invalid> {
        Ok(match self.string(key, 16)? {
            None => None,
            Some("tcp") => Some(ProbeKind::Tcp),
            Some("http") => Some(ProbeKind::Http),
            Some("https") => Some(ProbeKind::Https),
            Some(other) => return Err(self.invalid(key, format!("{other:?} must be one of http, https, tcp"))),
        })
    }

    /// APISIX's status arrays: at least one item, unique, each 200–599.
    fn statuses(&self, key: &str, default: &[u16]) -> Result<StatusSet, Invalid> {
        let items = match self.get(key) {
            None => return Ok(StatusSet::of(default)),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, "array", other)),
        };
        if items.is_empty() {
            return Err(self.invalid(key, "expect array to have at least 1 items"));
        }
        let mut codes: Vec<u16> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("{}[{i}]", self.path(key));
            let code = match item {
                Value::Number(n) if n.is_i64() || n.is_u64() => match n.as_u64() {
                    Some(c @ 200..=599) => c as u16,
                    _ => return Err(Invalid::new(field, "must be an HTTP status between 200 and 599")),
                },
                other => {
                    return Err(Invalid::new(field, format!("wrong type: expected integer, got {}", json_type(other))));
                }
            };
            if codes.contains(&code) {
                return Err(Invalid::new(field, format!("{code} is listed twice (items must be unique)")));
            }
            codes.push(code);
        }
        Ok(StatusSet(codes))
    }
}

#[cfg(test)]
mod tests;
