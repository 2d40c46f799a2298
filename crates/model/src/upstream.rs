//! Validated upstreams: nodes, balancer, retries and timeouts.
//!
//! Conversion from [`UpstreamWire`] follows APISIX's `upstream_schema` and
//! refuses, with a reason, the parts shardgate does not implement (service
//! discovery, TLS to the upstream) rather than storing settings that would
//! silently do nothing. Health checks (`checks`) are validated by
//! [`crate::health`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::health::HealthChecks;
use crate::id::json_type;
use crate::wire::{UpstreamWire, check_labels, check_name_desc};
use crate::{Invalid, ResourceId};

/// Most nodes in one upstream.
pub const MAX_NODES: usize = 4096;
/// Longest timeout accepted, in seconds (one day).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// A validated upstream. Equality compares configuration only, which is what
/// lets the runtime registry keep a balancer when an edit changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Its id when it is a standalone resource; `None` when inline in a route.
    pub id: Option<ResourceId>,
    /// The nodes, in the order given (map form: sorted by address).
    pub nodes: Vec<Node>,
    /// How a node is chosen.
    pub balance: Balance,
    /// Extra connect attempts on other nodes; `None` means nodes − 1 (APISIX).
    pub retries: Option<u32>,
    /// Total time allowed for all attempts; `None` for no limit beyond the
    /// per-attempt connect timeout.
    pub retry_timeout: Option<Duration>,
    /// Connect timeout per attempt; `None` uses the bootstrap default.
    pub connect_timeout: Option<Duration>,
    /// Idle timeout from `timeout.send`/`timeout.read`; `None` uses the
    /// route's or the bootstrap default.
    pub idle_timeout: Option<Duration>,
    /// The PROXY protocol header sent to the nodes (shardgate extension);
    /// `None` leaves it to the listener.
    pub send_proxy_protocol: Option<crate::SendProxyProtocol>,
    /// Health checks (`checks`); `None` when the upstream has none.
    pub checks: Option<HealthChecks>,
}

/// One node: where to connect and how much traffic it gets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// IP address or DNS name.
    pub host: Host,
    /// TCP port.
    pub port: u16,
    /// Relative weight; 0 takes the node out of rotation.
    pub weight: u32,
    /// Higher priorities are used first; lower ones only when every node of
    /// the higher priority has failed (APISIX `priority`, default 0).
    pub priority: i32,
}

/// A node's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address, used as is.
    Ip(IpAddr),
    /// A DNS name, resolved (and re-resolved) by the upstream registry.
    Name(Box<str>),
    /// A name made from each connection's SNI (see [`crate::node_template`]).
    Template(crate::NodeTemplate),
}

/// The balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm). APISIX `roundrobin`.
    RoundRobin,
    /// Consistent hashing on a connection variable. APISIX `chash`.
    ConsistentHash(HashKey),
    /// Fewest active connections relative to weight. APISIX `least_conn`.
    LeastConnections,
}

/// What a consistent-hash upstream hashes (APISIX `hash_on: vars` + `key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// `remote_addr`: the client IP, so a player keeps landing on one node.
    RemoteAddr,
    /// `server_addr`: the gateway's local IP.
    ServerAddr,
    /// `server_port`: the gateway's local port.
    ServerPort,
    /// `ssl_server_name`: the SNI.
    Sni,
}

impl HashKey {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "remote_addr" => HashKey::RemoteAddr,
            "server_addr" => HashKey::ServerAddr,
            "server_port" => HashKey::ServerPort,
            "ssl_server_name" | "server_name" => HashKey::Sni,
            _ => return None,
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
            Host::Template(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Upstream {
    /// Validates a wire upstream. `id` is `Some` for a standalone resource.
    pub fn from_wire(id: Option<ResourceId>, w: &UpstreamWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        crate::node_template::refuse_checks(w)?;
        refuse_unsupported(w)?;

        let nodes = match &w.nodes {
            Some(v) => parse_nodes(v)?,
            None => return Err(Invalid::new("nodes", "is required (service discovery is not supported)")),
        };
        crate::node_template::check_nodes(&nodes)?;

        let balance = match w.balancer.as_deref() {
            None | Some("roundrobin") => Balance::RoundRobin,
            Some("least_conn") => Balance::LeastConnections,
            Some("chash") => {
                match w.hash_on.as_deref() {
                    None | Some("vars") => {}
                    Some(other) => {
                        return Err(Invalid::new(
                            "hash_on",
                            format!("{other:?} is not supported for stream upstreams; use \"vars\""),
                        ));
                    }
                }
                let key = w.key.as_deref().ok_or_else(|| Invalid::new("key", "is required when type is chash"))?;
                let key = HashKey::parse(key).ok_or_else(|| {
                    Invalid::new(
                        "key",
                        format!(
                            "{key:?} is not a stream variable shardgate can hash; use remote_addr, server_addr, server_port or ssl_server_name"
                        ),
                    )
                })?;
                Balance::ConsistentHash(key)
            }
            Some("ewma") => {
                return Err(Invalid::new("type", "ewma is not supported; least_conn is the closest"));
            }
            Some(other) => {
                return Err(Invalid::new(
                    "type",
                    format!("unknown balancer {other:?}; expected roundrobin, chash or least_conn"),
                ));
            }
        };

        let retries = match w.retries {
            None => None,
            Some(n) if (0..=i64::from(u16::MAX)).contains(&n) => u32::try_from(n).ok(),
            Some(_) => return Err(Invalid::new("retries", "must be between 0 and 65535")),
        };
        let retry_timeout = match w.retry_timeout {
            None => None,
            Some(0.0) => None,
            Some(s) => Some(seconds("retry_timeout", s)?),
        };
        let (connect_timeout, idle_timeout) = match &w.timeout {
            None => (None, None),
            Some(t) => {
                let connect = seconds("timeout.connect", t.connect)?;
                let send = seconds("timeout.send", t.send)?;
                let read = seconds("timeout.read", t.read)?;
                // nginx's stream module has a single idle timer, proxy_timeout,
                // "between two successive read or write operations"
                // (nginx.org ngx_stream_proxy_module); send and read both feed it.
                (Some(connect), Some(send.max(read)))
            }
        };

        let send_proxy_protocol = w
            .send_proxy_protocol
            .as_deref()
            .map(|v| crate::SendProxyProtocol::parse("send_proxy_protocol", v))
            .transpose()?;
        let checks = match &w.checks {
            None => None,
            Some(v) => Some(HealthChecks::from_json(v).map_err(|e| e.within("checks"))?),
        };

        Ok(Upstream {
            id,
            nodes,
            balance,
            retries,
            retry_timeout,
            connect_timeout,
            idle_timeout,
            send_proxy_protocol,
            checks,
        })
    }
}

fn refuse_unsupported(w: &UpstreamWire) -> Result<(), Invalid> {
    if w.service_name.is_some() || w.discovery_type.is_some() || w.discovery_args.is_some() {
        let field = if w.discovery_type.is_some() { "discovery_type" } else { "service_name" };
        return Err(Invalid::new(field, "service discovery is not supported by shardgate; list the nodes instead"));
    }
    if w.tls.is_some() {
        return Err(Invalid::new("tls", "TLS to the upstream is not supported yet"));
    }
    // APISIX's upstream_schema lists `udp`; as in APISIX, the listener a
    // session arrives on decides the transport (a `stream.udp` listener
    // talks UDP to the nodes), so `udp` is accepted and changes nothing.
    match w.scheme.as_deref() {
        None | Some("tcp") | Some("http") | Some("udp") => {}
        Some("tls") => return Err(Invalid::new("scheme", "TLS to the upstream is not supported yet")),
        Some(other) => {
            return Err(Invalid::new(
                "scheme",
                format!("{other:?} is not supported for stream upstreams; use \"tcp\" or \"udp\""),
            ));
        }
    }
    // APISIX's upstream_schema: `pass_host: rewrite` depends on
    // `upstream_host`, a host name or address with an optional port.
    if let Some(host) = &w.upstream_host {
        if host.is_empty() {
            return Err(Invalid::new("upstream_host", "must not be empty"));
        }
        parse_host_port(host).map_err(|e| Invalid::new("upstream_host", e))?;
    }
    match w.pass_host.as_deref() {
        None | Some("pass") | Some("node") => {}
        Some("rewrite") if w.upstream_host.is_some() => {}
        Some("rewrite") => {
            return Err(Invalid::new("upstream_host", "is required when pass_host is \"rewrite\""));
        }
        Some(other) => {
            return Err(Invalid::new("pass_host", format!("{other:?} must be one of pass, node, rewrite")));
        }
    }
    Ok(())
}

fn seconds(field: &str, s: f64) -> Result<Duration, Invalid> {
    if !(s > 0.0 && s <= MAX_TIMEOUT_SECS) {
        return Err(Invalid::new(
            field,
            format!("must be a number of seconds greater than 0 and at most {MAX_TIMEOUT_SECS}"),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Parses APISIX's two node forms.
fn parse_nodes(v: &Value) -> Result<Vec<Node>, Invalid> {
    let nodes = match v {
        Value::Object(map) => {
            if map.len() > MAX_NODES {
                return Err(Invalid::new("nodes", format!("at most {MAX_NODES} nodes are allowed")));
            }
            let mut nodes = Vec::with_capacity(map.len());
            for (addr, weight) in map {
                let field = format!("nodes[{addr:?}]");
                crate::node_template::refuse_in_map(&field, addr)?;
                let (host, port) = parse_host_port(addr).map_err(|e| Invalid::new(&field, e))?;
                let port = match (port, &host) {
                    (Some(port), _) => port,
                    (None, Host::Ip(IpAddr::V6(_))) => return Err(Invalid::new(&field, unbracketed(addr))),
                    (None, _) => return Err(Invalid::new(&field, format!("{addr:?} has no port; write host:port"))),
                };
                let weight = parse_weight(&field, weight)?;
                nodes.push(Node { host, port, weight, priority: 0 });
            }
            nodes
        }
        Value::Array(list) => {
            if list.len() > MAX_NODES {
                return Err(Invalid::new("nodes", format!("at most {MAX_NODES} nodes are allowed")));
            }
            let mut nodes = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                nodes.push(parse_node_object(i, item)?);
            }
            nodes
        }
        other => {
            return Err(Invalid::new(
                "nodes",
                format!("wrong type: expected object or array, got {}", json_type(other)),
            ));
        }
    };
    Ok(nodes)
}

fn parse_node_object(i: usize, item: &Value) -> Result<Node, Invalid> {
    let base = format!("nodes[{i}]");
    let Value::Object(obj) = item else {
        return Err(Invalid::new(base, format!("wrong type: expected object, got {}", json_type(item))));
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "host" | "port" | "weight" | "priority" | "metadata") {
            return Err(Invalid::new(format!("{base}.{key}"), format!("additional properties forbidden, found {key}")));
        }
    }
    let host = match obj.get("host") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(Invalid::new(
                format!("{base}.host"),
                format!("wrong type: expected string, got {}", json_type(other)),
            ));
        }
        None => return Err(Invalid::new(format!("{base}.host"), "is required")),
    };
    let (host, port_in_host) = match crate::node_template::parse_host(host) {
        Some(template) => (template.map_err(|e| Invalid::new(format!("{base}.host"), e))?, None),
        None => parse_host_port(host).map_err(|e| Invalid::new(format!("{base}.host"), e))?,
    };
    let port = match obj.get("port") {
        None => port_in_host.ok_or_else(|| Invalid::new(format!("{base}.port"), "is required for stream upstreams"))?,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p @ 1..=65535) => p as u16,
            _ => return Err(Invalid::new(format!("{base}.port"), "must be an integer between 1 and 65535")),
        },
        Some(other) => {
            return Err(Invalid::new(
                format!("{base}.port"),
                format!("wrong type: expected integer, got {}", json_type(other)),
            ));
        }
    };
    let weight = match obj.get("weight") {
        Some(w) => parse_weight(&format!("{base}.weight"), w)?,
        None => return Err(Invalid::new(format!("{base}.weight"), "is required")),
    };
    let priority = match obj.get("priority") {
        None => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| Invalid::new(format!("{base}.priority"), "must be an integer"))?,
        Some(other) => {
            return Err(Invalid::new(
                format!("{base}.priority"),
                format!("wrong type: expected integer, got {}", json_type(other)),
            ));
        }
    };
    if let Some(meta) = obj.get("metadata")
        && !meta.is_object()
    {
        return Err(Invalid::new(format!("{base}.metadata"), "wrong type: expected object"));
    }
    Ok(Node { host, port, weight, priority })
}

fn parse_weight(field: &str, v: &Value) -> Result<u32, Invalid> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(w) if w <= 1_000_000 => Ok(w as u32),
            _ => Err(Invalid::new(field, "weight must be an integer between 0 and 1000000")),
        },
        other => Err(Invalid::new(field, format!("wrong type: expected integer, got {}", json_type(other)))),
    }
}

/// Why an IPv6 node key without brackets is refused: `::1:80` is itself an
/// IPv6 address, so its port cannot be told apart (RFC 3986 §3.2.2 puts
/// IPv6 literals in brackets; APISIX's examples write `[::1]:80`).
///
/// The hint reads the last group as the port when what comes before it is
/// an address (`::1:80` → `[::1]:80`; `fe80::1::80`, a port after `::`, →
/// `[fe80::1]:80`); otherwise the whole key is the address and the port is
/// left to write (`2001:db8::1` → `[2001:db8::1]:<port>`).
fn unbracketed(addr: &str) -> String {
    let split = addr.rsplit_once(':').and_then(|(ip, port)| {
        port.parse::<u16>().ok().filter(|p| *p > 0)?;
        let ip = if ip.ends_with("::") { ip } else { ip.strip_suffix(':').unwrap_or(ip) };
        ip.parse::<std::net::Ipv6Addr>().ok().map(|ip| format!("[{ip}]:{port}"))
    });
    let hint = match split {
        Some(hint) => hint,
        None => match addr.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => format!("[{ip}]:<port>"),
            Err(_) => "[<IPv6 address>]:<port>".to_owned(),
        },
    };
    format!(
        "{addr:?} is an IPv6 address without brackets, so its port is ambiguous; write the address in brackets followed by the port, e.g. {hint:?}"
    )
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address is
/// accepted without brackets when it carries no port (the `host` of an
/// array-form node).
pub fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), String> {
    let bad_port = || format!("{s:?} has an invalid port; expected 1 to 65535");
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(|| format!("{s:?} has an unclosed '['"))?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0).ok_or_else(bad_port)?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), None));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => return Err(unbracketed(s)),
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad_port)?)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    check_dns_name(host)?;
    Ok((Host::Name(host.to_ascii_lowercase().into()), port))
}

fn check_dns_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{host:?} is not a valid host name"));
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("{host:?} is not a valid host name or IP address"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_value;
    use serde_json::json;

    fn up(v: Value) -> Result<Upstream, Invalid> {
        let w: UpstreamWire = from_value(v)?;
        Upstream::from_wire(None, &w)
    }

    #[test]
    fn both_node_forms_parse() {
        let u = up(json!({"nodes": {"gs-1.game.svc.cluster.local:9000": 1, "[::1]:80": 2, "127.0.0.1:7": 0}, "type": "roundrobin"}))
            .expect("map form");
        assert_eq!(u.nodes.len(), 3);
        assert!(u.nodes.iter().any(|n| n.host == Host::Name("gs-1.game.svc.cluster.local".into()) && n.port == 9000));
        assert!(u.nodes.iter().any(|n| n.to_string() == "[::1]:80" && n.weight == 2));
        let u =
            up(json!({"nodes": [{"host": "127.0.0.10", "port": 7777, "weight": 5, "priority": -1}]})).expect("array");
        assert_eq!(u.nodes[0].priority, -1);
        assert_eq!(u.balance, Balance::RoundRobin);
    }

    #[test]
    fn bad_nodes_name_the_field() {
        let e = up(json!({"nodes": {"gs-1:notaport": 1}})).unwrap_err();
        assert_eq!(e.field, "nodes[\"gs-1:notaport\"]");
        let e = up(json!({"nodes": {"bad host:80": 1}})).unwrap_err();
        assert!(e.reason.contains("not a valid host"), "{e}");
        let e = up(json!({"nodes": {"gs-1:80": "1"}})).unwrap_err();
        assert!(e.reason.contains("expected integer"), "{e}");
        let e = up(json!({"nodes": {"gs-1": 1}})).unwrap_err();
        assert!(e.reason.contains("no port"), "{e}");
        let e = up(json!({"nodes": [{"host": "a", "port": 0, "weight": 1}]})).unwrap_err();
        assert_eq!(e.field, "nodes[0].port");
        let e = up(json!({"nodes": [{"host": "a", "port": 1}]})).unwrap_err();
        assert_eq!(e.field, "nodes[0].weight");
        let e = up(json!({"nodes": 3})).unwrap_err();
        assert_eq!(e.field, "nodes");
    }

    #[test]
    fn balancers_and_timeouts() {
        let u = up(json!({"nodes": {"a:1": 1}, "type": "chash", "key": "remote_addr"})).expect("chash");
        assert_eq!(u.balance, Balance::ConsistentHash(HashKey::RemoteAddr));
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "type": "chash"})).unwrap_err().field, "key");
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "type": "random"})).unwrap_err().field, "type");
        let u =
            up(json!({"nodes": {"a:1": 1}, "type": "least_conn", "timeout": {"connect": 0.5, "send": 30, "read": 60}}))
                .expect("least_conn");
        assert_eq!(u.connect_timeout, Some(Duration::from_millis(500)));
        assert_eq!(u.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            up(json!({"nodes": {"a:1": 1}, "timeout": {"connect": 0, "send": 1, "read": 1}})).unwrap_err().field,
            "timeout.connect"
        );
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "timeout": {"connect": 1}})).unwrap_err().field, "timeout.send");
    }

    #[test]
    fn unsupported_features_are_refused_not_ignored() {
        assert_eq!(up(json!({"service_name": "x", "discovery_type": "dns"})).unwrap_err().field, "discovery_type");
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "scheme": "tls"})).unwrap_err().field, "scheme");
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "scheme": "kafka"})).unwrap_err().field, "scheme");
        assert_eq!(up(json!({"nodes": {"a:1": 1}, "bogus": 1})).unwrap_err().field, "bogus");
    }

    #[test]
    fn node_templates_in_the_array_form_only_without_fixed_nodes_or_checks() {
        let node = |host: &str| json!({"host": host, "port": 7777, "weight": 1});
        let u = up(json!({"nodes": [node("{sni_label_1}.rooms.svc"), node("{sni_label_1}.backup.svc")]}))
            .expect("two templates");
        assert!(u.is_template());
        assert_eq!(u.nodes[0].to_string(), "{sni_label_1}.rooms.svc:7777");
        let e = up(json!({"nodes": [node("{room}.rooms.svc")]})).unwrap_err();
        assert_eq!(e.field, "nodes[0].host");
        assert!(e.reason.contains("unknown placeholder {room}"), "{e}");
        let e = up(json!({"nodes": {"{sni_label_1}.rooms.svc:7777": 1}})).unwrap_err();
        assert_eq!(e.field, "nodes[\"{sni_label_1}.rooms.svc:7777\"]");
        assert!(e.reason.contains("array form"), "{e}");
        let e = up(json!({"nodes": [node("{sni_label_1}.rooms.svc"), node("127.0.0.1")]})).unwrap_err();
        assert_eq!(e.field, "nodes[1].host");
        assert!(e.reason.contains("only templates"), "{e}");
        let e =
            up(json!({"nodes": [node("{sni_label_1}.rooms.svc")], "checks": {"active": {"type": "tcp"}}})).unwrap_err();
        assert_eq!(e.field, "checks");
        assert!(e.reason.contains("no fixed node to probe"), "{e}");
        assert!(!up(json!({"nodes": [node("gs-1.svc")]})).expect("plain").is_template());
    }

    #[test]
    fn checks_are_validated_under_their_path() {
        let u = up(json!({"nodes": {"a:1": 1}, "checks": {"active": {"type": "tcp"}}})).expect("checks");
        assert!(u.checks.is_some_and(|c| c.active.kind == crate::health::ProbeKind::Tcp));
        assert!(up(json!({"nodes": {"a:1": 1}})).expect("none").checks.is_none());
        let e = up(json!({"nodes": {"a:1": 1}, "checks": {"active": {"healthy": {"interval": 0}}}})).unwrap_err();
        assert_eq!(e.field, "checks.active.healthy.interval");
        let e = up(json!({"nodes": {"a:1": 1}, "checks": {"passive": {}}})).unwrap_err();
        assert_eq!(e.field, "checks.active");
    }

    #[test]
    fn the_udp_scheme_of_apisix_is_accepted() {
        let u = up(json!({"nodes": {"127.0.0.1:9200": 1}, "scheme": "udp"})).expect("scheme udp");
        assert_eq!(u, up(json!({"nodes": {"127.0.0.1:9200": 1}})).expect("no scheme"), "the listener decides");
    }

    #[test]
    fn unbracketed_ipv6_nodes_are_refused_with_the_fix() {
        for (key, hint) in [
            ("::1:80", "[::1]:80"),
            ("2001:db8::1:8080", "[2001:db8::1]:8080"),
            ("fe80::1::80", "[fe80::1]:80"),
            ("2001:db8::1", "[2001:db8::1]:<port>"),
            ("2001:db8::", "[2001:db8::]:<port>"),
            ("fe80::zz:80", "[<IPv6 address>]:<port>"),
        ] {
            let e = up(json!({"nodes": {key: 1}})).unwrap_err();
            assert_eq!(e.field, format!("nodes[{key:?}]"));
            assert!(e.reason.contains("without brackets"), "{key}: {e}");
            assert!(e.reason.contains(hint), "{key}: {e}");
        }
        assert!(up(json!({"nodes": {"[::1]:80": 1}})).is_ok());
        // The array form names host and port apart: a bare IPv6 host is fine.
        assert!(up(json!({"nodes": [{"host": "::1", "port": 80, "weight": 1}]})).is_ok());
    }

    #[test]
    fn rewrite_needs_a_real_upstream_host() {
        let e = up(json!({"nodes": {"a:1": 1}, "pass_host": "rewrite"})).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("upstream_host", "is required when pass_host is \"rewrite\"")
        );
        let e = up(json!({"nodes": {"a:1": 1}, "pass_host": "rewrite", "upstream_host": ""})).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("upstream_host", "must not be empty"));
        let e = up(json!({"nodes": {"a:1": 1}, "pass_host": "rewrite", "upstream_host": "bad host"})).unwrap_err();
        assert_eq!(e.field, "upstream_host");
        assert!(up(json!({"nodes": {"a:1": 1}, "pass_host": "rewrite", "upstream_host": "game.example:8080"})).is_ok());
    }
}
