//! The stream plugins shardgate runs, validated from a stream route's
//! `plugins` object in APISIX's own schemas: `ip-restriction`
//! (apache/apisix `apisix/plugins/ip-restriction/init.lua`, which
//! `apisix/stream/plugins/ip-restriction.lua` reuses) and `limit-conn`
//! (`apisix/stream/plugins/limit-conn.lua`, enforced by
//! `apisix/plugins/limit-conn/init.lua`). Any other plugin is refused with
//! a reason rather than stored and silently not run.
//!
//! Where APISIX's stream schema would accept a field that means nothing
//! on a TCP connection (`limit-conn`'s HTTP-only `rejected_code`), it is
//! refused with the reason: a refused connection is closed, there is no
//! response to shape. `ip-restriction`'s `message` and `response_code` are
//! accepted for compatibility with configurations written for HTTP routes
//! and validated as APISIX does; on a stream connection nothing is sent
//! (APISIX's stream subsystem also just closes).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::Invalid;
use crate::json::from_value;

/// Most entries in an `ip-restriction` list (AWS WAF's IP sets hold up to
/// 10,000 addresses; a longer list belongs in an IP set and a web ACL).
pub const MAX_IP_LIST: usize = 10_000;
/// Longest `limit-conn.default_conn_delay`, in seconds: a delayed
/// connection holds a connection slot while it waits.
pub const MAX_CONN_DELAY_SECS: f64 = 60.0;
/// Longest `limit-conn.key` template.
const MAX_KEY_LEN: usize = 256;
/// APISIX's default `ip-restriction.message`.
const DEFAULT_MESSAGE: &str = "Your IP address is not allowed";

/// The plugins of one stream route, in the order APISIX runs them
/// (higher priority first: `ip-restriction` 3000, `limit-conn` 1003).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamPlugins {
    /// `ip-restriction`, unless absent or `_meta.disable`d.
    pub ip_restriction: Option<IpRestriction>,
    /// `limit-conn`, unless absent or `_meta.disable`d.
    pub limit_conn: Option<LimitConn>,
}

impl StreamPlugins {
    /// Whether no plugin runs.
    pub fn is_empty(&self) -> bool {
        self.ip_restriction.is_none() && self.limit_conn.is_none()
    }

    /// Validates a route's `plugins` object; errors name `plugins.<name>.<field>`.
    pub fn from_wire(plugins: Option<&serde_json::Map<String, Value>>) -> Result<Self, Invalid> {
        let mut out = StreamPlugins::default();
        let Some(plugins) = plugins else { return Ok(out) };
        for (name, conf) in plugins {
            let path = format!("plugins.{name}");
            let within = |e: Invalid| e.within(&path);
            match name.as_str() {
                "ip-restriction" => {
                    let (conf, disabled) = split_meta(conf).map_err(within)?;
                    let ip = IpRestriction::from_wire(conf).map_err(within)?;
                    out.ip_restriction = (!disabled).then_some(ip);
                }
                "limit-conn" => {
                    let (conf, disabled) = split_meta(conf).map_err(within)?;
                    let lc = LimitConn::from_wire(conf).map_err(within)?;
                    out.limit_conn = (!disabled).then_some(lc);
                }
                other => {
                    return Err(Invalid::new(
                        path,
                        format!(
                            "stream plugin {other:?} is not supported by shardgate; the supported stream plugins are ip-restriction and limit-conn (web_acl_id covers address, country and rate rules)"
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Takes APISIX's injected `_meta` out of a plugin's configuration: only
/// `_meta.disable` is supported (the others shape HTTP responses or plugin
/// order, which a stream route does not have).
fn split_meta(conf: &Value) -> Result<(Value, bool), Invalid> {
    let Value::Object(map) = conf else {
        return Err(Invalid::new("", format!("wrong type: expected object, got {}", crate::id::json_type(conf))));
    };
    let mut map = map.clone();
    let disabled = match map.remove("_meta") {
        None => false,
        Some(Value::Object(meta)) => {
            let mut disabled = false;
            for (k, v) in &meta {
                match (k.as_str(), v) {
                    ("disable", Value::Bool(b)) => disabled = *b,
                    ("disable", _) => return Err(Invalid::new("_meta.disable", "wrong type: expected boolean")),
                    (other, _) => {
                        return Err(Invalid::new(
                            format!("_meta.{other}"),
                            "is not supported on stream routes; only _meta.disable is",
                        ));
                    }
                }
            }
            disabled
        }
        Some(_) => return Err(Invalid::new("_meta", "wrong type: expected object")),
    };
    Ok((Value::Object(map), disabled))
}

/// `ip-restriction`: exactly one of an allow list and a deny list.
#[derive(Debug, Clone, PartialEq)]
pub struct IpRestriction {
    /// The list and what a match means.
    pub rule: IpRule,
    /// APISIX's `message` (not sent on a stream connection).
    pub message: String,
    /// APISIX's `response_code`, 403 or 404 (not sent on a stream connection).
    pub response_code: u16,
}

/// An `ip-restriction` list.
#[derive(Debug, Clone, PartialEq)]
pub enum IpRule {
    /// `whitelist`: only these addresses may connect.
    Allow(Vec<IpNet>),
    /// `blacklist`: these addresses may not connect.
    Deny(Vec<IpNet>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpRestrictionWire {
    #[serde(default)]
    whitelist: Option<Vec<String>>,
    #[serde(default)]
    blacklist: Option<Vec<String>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    response_code: Option<i64>,
}

impl IpRestriction {
    fn from_wire(conf: Value) -> Result<Self, Invalid> {
        let w: IpRestrictionWire = from_value(conf)?;
        let rule = match (w.whitelist, w.blacklist) {
            (Some(list), None) => IpRule::Allow(ip_list("whitelist", &list)?),
            (None, Some(list)) => IpRule::Deny(ip_list("blacklist", &list)?),
            (Some(_), Some(_)) => {
                return Err(Invalid::new("blacklist", "whitelist and blacklist cannot both be set"));
            }
            (None, None) => return Err(Invalid::new("whitelist", "one of whitelist or blacklist is required")),
        };
        let message = match w.message {
            None => DEFAULT_MESSAGE.to_owned(),
            Some(m) if (1..=1024).contains(&m.chars().count()) => m,
            Some(_) => return Err(Invalid::new("message", "must be 1 to 1024 characters long")),
        };
        let response_code = match w.response_code {
            None => 403,
            Some(c @ (403 | 404)) => c as u16,
            Some(_) => return Err(Invalid::new("response_code", "must be 403 or 404")),
        };
        Ok(IpRestriction { rule, message, response_code })
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        match &self.rule {
            IpRule::Allow(list) => list.iter().any(|n| n.contains(&ip)),
            IpRule::Deny(list) => !list.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// APISIX's `ip_def` items: an IPv4 or IPv6 address, with or without a
/// prefix length.
fn ip_list(field: &str, list: &[String]) -> Result<Vec<IpNet>, Invalid> {
    if list.is_empty() {
        return Err(Invalid::new(field, "must list at least 1 address"));
    }
    if list.len() > MAX_IP_LIST {
        return Err(Invalid::new(field, format!("must list at most {MAX_IP_LIST} addresses")));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let net = s.parse::<IpNet>().map(|n| n.trunc()).or_else(|_| s.parse::<IpAddr>().map(IpNet::from));
            // APISIX's own wording: "invalid ip address: <value>".
            net.map_err(|_| Invalid::new(format!("{field}[{i}]"), format!("invalid ip address: {s}")))
        })
        .collect()
}

/// `limit-conn`: connections open at once per key, with a burst that waits.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConn {
    /// Connections per key served at once without delay (`conn`, > 0).
    pub conn: u32,
    /// Connections over `conn` that are delayed rather than refused (`burst`, ≥ 0).
    pub burst: u32,
    /// The delay unit (`default_conn_delay`): a connection that makes the
    /// count `n > conn` waits `default_conn_delay × ⌊(n − 1) / conn⌋`
    /// (lua-resty-limit-traffic's `resty.limit.conn`).
    pub default_conn_delay: Duration,
    /// `only_use_default_delay`: accepted and stored. In APISIX's stream
    /// subsystem the delay never adapts to measured latencies (that is
    /// HTTP-only in `limit-conn/init.lua`), so it is always
    /// `default_conn_delay`, with this flag or without.
    pub only_use_default_delay: bool,
    /// What is counted.
    pub key: LimitKey,
}

/// What `limit-conn` counts by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// `key_type: var`: one connection variable.
    Var(ConnVar),
    /// `key_type: var_combination`: text with `$var` or `${var}` in it,
    /// e.g. `"$remote_addr $server_addr"`.
    Combination(Vec<KeyPart>),
}

/// One piece of a `var_combination` key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// Literal text.
    Text(String),
    /// A variable's value.
    Var(ConnVar),
}

/// A connection variable a stream key can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnVar {
    /// `remote_addr`: the client's IP (the one a PROXY protocol header
    /// carried, when the listener reads one).
    RemoteAddr,
    /// `server_addr`: the gateway's local IP.
    ServerAddr,
}

impl ConnVar {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "remote_addr" => Some(ConnVar::RemoteAddr),
            "server_addr" => Some(ConnVar::ServerAddr),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConnWire {
    conn: i64,
    burst: i64,
    default_conn_delay: f64,
    #[serde(default)]
    only_use_default_delay: Option<bool>,
    key: String,
    #[serde(default)]
    key_type: Option<String>,
}

fn unknown_var(field: &str, name: &str) -> Invalid {
    Invalid::new(
        field,
        format!(
            "{name:?} is not a variable a stream connection has before it is proxied; use remote_addr or server_addr"
        ),
    )
}

impl LimitConn {
    fn from_wire(conf: Value) -> Result<Self, Invalid> {
        if let Value::Object(map) = &conf {
            for http_only in ["rejected_code", "rejected_msg", "policy", "allow_degradation"] {
                if map.contains_key(http_only) {
                    return Err(Invalid::new(
                        http_only,
                        "is not part of the stream limit-conn plugin (apisix/stream/plugins/limit-conn.lua): a refused connection is closed",
                    ));
                }
            }
        }
        let w: LimitConnWire = from_value(conf)?;
        let conn = u32::try_from(w.conn)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| Invalid::new("conn", "must be an integer greater than 0"))?;
        let burst = u32::try_from(w.burst).map_err(|_| Invalid::new("burst", "must be an integer of at least 0"))?;
        if !(w.default_conn_delay > 0.0 && w.default_conn_delay <= MAX_CONN_DELAY_SECS) {
            return Err(Invalid::new(
                "default_conn_delay",
                format!("must be a number of seconds greater than 0 and at most {MAX_CONN_DELAY_SECS}"),
            ));
        }
        let key = match w.key_type.as_deref() {
            None | Some("var") => LimitKey::Var(ConnVar::parse(&w.key).ok_or_else(|| unknown_var("key", &w.key))?),
            Some("var_combination") => LimitKey::Combination(parse_combination(&w.key)?),
            Some(other) => {
                return Err(Invalid::new("key_type", format!("{other:?} must be \"var\" or \"var_combination\"")));
            }
        };
        Ok(LimitConn {
            conn,
            burst,
            default_conn_delay: Duration::from_secs_f64(w.default_conn_delay),
            only_use_default_delay: w.only_use_default_delay.unwrap_or(false),
            key,
        })
    }

    /// The delay of a connection that makes the count `n` (1-based), at
    /// most [`MAX_CONN_DELAY_SECS`], or `None` when `n` is over
    /// `conn + burst` and the connection is refused.
    pub fn delay_for(&self, n: u32) -> Option<Duration> {
        if n > self.conn.saturating_add(self.burst) {
            return None;
        }
        if n <= self.conn {
            return Some(Duration::ZERO);
        }
        // A waiting connection holds a connection slot: never longer than
        // MAX_CONN_DELAY_SECS, whatever conn and burst multiply to.
        Some((self.default_conn_delay * ((n - 1) / self.conn)).min(Duration::from_secs_f64(MAX_CONN_DELAY_SECS)))
    }
}

/// Parses a `var_combination` key the way APISIX's `core.utils.resolve_var`
/// reads it: `$name` or `${name}` (name: letters, digits, `_`), where a `$`
/// after a backslash is literal text.
fn parse_combination(key: &str) -> Result<Vec<KeyPart>, Invalid> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Invalid::new("key", format!("must be 1 to {MAX_KEY_LEN} bytes long")));
    }
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = key;
    while let Some(i) = rest.find('$') {
        let escaped = rest[..i].ends_with('\\');
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if escaped {
            text.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match after.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        let name = &body[..end];
        if name.is_empty() {
            return Err(Invalid::new("key", "a `$` must be followed by a variable name, e.g. $remote_addr"));
        }
        let var = ConnVar::parse(name).ok_or_else(|| unknown_var("key", name))?;
        if !text.is_empty() {
            parts.push(KeyPart::Text(std::mem::take(&mut text)));
        }
        parts.push(KeyPart::Var(var));
        rest = &body[end..];
        if braced {
            // resolve_var's pattern makes the closing brace optional.
            rest = rest.strip_prefix('}').unwrap_or(rest);
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(KeyPart::Text(text));
    }
    if !parts.iter().any(|p| matches!(p, KeyPart::Var(_))) {
        return Err(Invalid::new(
            "key",
            "a var_combination key must name at least one variable, e.g. \"$remote_addr $server_addr\"",
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugins(v: Value) -> Result<StreamPlugins, Invalid> {
        let Value::Object(map) = v else { panic!("object") };
        StreamPlugins::from_wire(Some(&map))
    }

    fn err(v: Value) -> (String, String) {
        let e = plugins(v).unwrap_err();
        (e.field, e.reason)
    }

    #[test]
    fn ip_restriction_in_apisix_schema() {
        let p = plugins(json!({"ip-restriction": {"whitelist": ["127.0.0.1", "198.18.0.0/15", "2001:db8::/32"]}}))
            .expect("valid");
        let ip = p.ip_restriction.expect("on");
        assert_eq!((ip.message.as_str(), ip.response_code), (DEFAULT_MESSAGE, 403));
        assert!(ip.allows("198.19.2.3".parse().expect("ip")));
        assert!(ip.allows("::ffff:127.0.0.1".parse().expect("ip")), "IPv4-mapped clients match IPv4 entries");
        assert!(ip.allows("2001:db8::9".parse().expect("ip")));
        assert!(!ip.allows("127.0.0.2".parse().expect("ip")));
        let deny = plugins(
            json!({"ip-restriction": {"blacklist": ["127.0.0.2"], "message": "go away", "response_code": 404}}),
        )
        .expect("valid")
        .ip_restriction
        .expect("on");
        assert!(!deny.allows("127.0.0.2".parse().expect("ip")));
        assert!(deny.allows("127.0.0.1".parse().expect("ip")));

        assert_eq!(err(json!({"ip-restriction": {}})).0, "plugins.ip-restriction.whitelist");
        assert_eq!(
            err(json!({"ip-restriction": {"whitelist": ["1.1.1.1"], "blacklist": ["2.2.2.2"]}})).0,
            "plugins.ip-restriction.blacklist"
        );
        assert_eq!(
            err(json!({"ip-restriction": {"whitelist": ["1.1.1.1", "300.1.1.1"]}})),
            ("plugins.ip-restriction.whitelist[1]".into(), "invalid ip address: 300.1.1.1".into())
        );
        assert_eq!(err(json!({"ip-restriction": {"whitelist": []}})).0, "plugins.ip-restriction.whitelist");
        assert_eq!(
            err(json!({"ip-restriction": {"blacklist": ["1.1.1.1"], "message": ""}})).0,
            "plugins.ip-restriction.message"
        );
        assert_eq!(
            err(json!({"ip-restriction": {"blacklist": ["1.1.1.1"], "response_code": 401}})).0,
            "plugins.ip-restriction.response_code"
        );
        assert_eq!(
            err(json!({"ip-restriction": {"blacklist": ["1.1.1.1"], "deny": 1}})).0,
            "plugins.ip-restriction.deny"
        );
        assert_eq!(err(json!({"ip-restriction": ["1.1.1.1"]})).0, "plugins.ip-restriction");
    }

    #[test]
    fn limit_conn_in_apisix_schema() {
        let p =
            plugins(json!({"limit-conn": {"conn": 2, "burst": 1, "default_conn_delay": 0.5, "key": "remote_addr"}}))
                .expect("valid");
        let lc = p.limit_conn.expect("on");
        assert_eq!(lc.key, LimitKey::Var(ConnVar::RemoteAddr));
        assert!(!lc.only_use_default_delay);
        // resty.limit.conn: n ≤ conn at once; then conn·⌊(n−1)/conn⌋; refused beyond conn + burst.
        let d = Duration::from_millis(500);
        assert_eq!([1, 2, 3, 4].map(|n| lc.delay_for(n)), [Some(Duration::ZERO), Some(Duration::ZERO), Some(d), None]);
        let wide = LimitConn { conn: 2, burst: 5, ..lc.clone() };
        assert_eq!(wide.delay_for(5), Some(d * 2));
        assert_eq!(wide.delay_for(7), Some(d * 3));
        assert_eq!(wide.delay_for(8), None);
        let long = LimitConn { conn: 1, burst: 1000, default_conn_delay: Duration::from_secs(1), ..lc.clone() };
        assert_eq!(long.delay_for(1001), Some(Duration::from_secs(60)), "capped");

        let p = plugins(json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1, "key": "server_addr",
                                              "key_type": "var", "only_use_default_delay": true}}))
        .expect("valid");
        assert_eq!(p.limit_conn.expect("on").key, LimitKey::Var(ConnVar::ServerAddr));

        let p = plugins(json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 1,
                                              "key": "${remote_addr}-\\$x $server_addr", "key_type": "var_combination"}}))
        .expect("valid");
        assert_eq!(
            p.limit_conn.expect("on").key,
            LimitKey::Combination(vec![
                KeyPart::Var(ConnVar::RemoteAddr),
                KeyPart::Text("-\\$x ".into()),
                KeyPart::Var(ConnVar::ServerAddr),
            ])
        );

        let base = json!({"conn": 2, "burst": 1, "default_conn_delay": 0.5, "key": "remote_addr"});
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            err(json!({"limit-conn": c}))
        };
        assert_eq!(with("conn", json!(0)).0, "plugins.limit-conn.conn");
        assert_eq!(with("burst", json!(-1)).0, "plugins.limit-conn.burst");
        assert_eq!(with("default_conn_delay", json!(0)).0, "plugins.limit-conn.default_conn_delay");
        assert_eq!(with("default_conn_delay", json!(61)).0, "plugins.limit-conn.default_conn_delay");
        let (field, reason) = with("key", json!("http_x_real_ip"));
        assert_eq!(field, "plugins.limit-conn.key");
        assert!(reason.contains("remote_addr or server_addr"), "{reason}");
        assert_eq!(with("key_type", json!("constant")).0, "plugins.limit-conn.key_type");
        let mut combo = base.clone();
        combo["key_type"] = json!("var_combination");
        combo["key"] = json!("$remote_addr $ssl_server_name");
        assert_eq!(err(json!({"limit-conn": combo.clone()})).0, "plugins.limit-conn.key");
        combo["key"] = json!("no variable");
        assert_eq!(err(json!({"limit-conn": combo})).0, "plugins.limit-conn.key");
        assert_eq!(with("rejected_code", json!(503)).0, "plugins.limit-conn.rejected_code");
        let mut missing = base.clone();
        missing.as_object_mut().expect("object").remove("burst");
        assert_eq!(err(json!({"limit-conn": missing})), ("plugins.limit-conn.burst".into(), "is required".into()));
    }

    #[test]
    fn meta_disable_and_unknown_plugins() {
        let p = plugins(json!({"limit-conn": {"conn": 2, "burst": 1, "default_conn_delay": 0.5, "key": "remote_addr",
                                              "_meta": {"disable": true}}}))
        .expect("valid");
        assert!(p.is_empty(), "a disabled plugin is validated but does not run");
        assert_eq!(
            err(json!({"limit-conn": {"conn": 2, "burst": 1, "default_conn_delay": 0.5, "key": "remote_addr",
                                      "_meta": {"priority": 1}}}))
            .0,
            "plugins.limit-conn._meta.priority"
        );
        let (field, reason) = err(json!({"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}}));
        assert_eq!(field, "plugins.mqtt-proxy");
        assert!(reason.contains("ip-restriction and limit-conn"), "{reason}");
        assert!(plugins(json!({})).expect("empty").is_empty());
    }
}
