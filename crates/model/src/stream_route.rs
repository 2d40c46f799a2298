//! Validated stream routes: the match conditions (SNI, local port and
//! address, client CIDR) and the upstream they lead to.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::wire::{StreamRouteWire, check_labels, check_name_desc};
use crate::{Invalid, ResourceId, SniPattern, Upstream};

/// Longest idle timeout a route may set: one week.
const MAX_IDLE_SECS: f64 = 7.0 * 86_400.0;

/// Where a route sends its connections.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamRef {
    /// An upstream written inside the route.
    Inline(Arc<Upstream>),
    /// A standalone upstream resource, resolved when the snapshot is compiled.
    Id(ResourceId),
}

/// A validated stream route.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRoute {
    /// Resource id; routes without SNI are tried in id order.
    pub id: ResourceId,
    /// Name, for logs.
    pub name: Option<String>,
    /// SNIs that select this route; empty means "any connection, SNI or not".
    pub snis: Vec<SniPattern>,
    /// Local port filter.
    pub server_port: Option<u16>,
    /// Local address filter.
    pub server_addr: Option<IpNet>,
    /// Client address filter.
    pub remote_addr: Option<IpNet>,
    /// The upstream.
    pub upstream: UpstreamRef,
    /// Idle timeout for this route's connections (shardgate extension).
    pub idle_timeout: Option<Duration>,
    /// Web ACL run on the client address before the handshake (shardgate extension).
    pub web_acl: Option<ResourceId>,
    /// Forward the TLS bytes untouched instead of terminating (shardgate
    /// extension `tls_passthrough`): chosen by the SNI that shardgate's own
    /// ClientHello parser reads, so the game server holds the certificate.
    pub tls_passthrough: bool,
    /// The PROXY protocol header sent to the game server (shardgate
    /// extension); `None` leaves it to the upstream and the listener.
    pub send_proxy_protocol: Option<crate::SendProxyProtocol>,
    /// `ip-restriction` and `limit-conn`, run after routing and before TLS.
    pub plugins: crate::StreamPlugins,
}

impl StreamRoute {
    /// Validates a wire stream route.
    pub fn from_wire(id: ResourceId, w: &StreamRouteWire) -> Result<Self, Invalid> {
        check_name_desc(&w.name, &w.desc)?;
        check_labels(&w.labels)?;
        if w.service_id.is_some() {
            return Err(Invalid::new(
                "service_id",
                "services are not supported by shardgate; use upstream or upstream_id",
            ));
        }
        if w.protocol.is_some() {
            return Err(Invalid::new("protocol", "xRPC protocols are not supported by shardgate"));
        }
        let plugins = crate::StreamPlugins::from_wire(w.plugins.as_ref())?;

        let snis = match (&w.sni, &w.snis) {
            (Some(_), Some(_)) => return Err(Invalid::new("snis", "sni and snis cannot both be set")),
            (Some(one), None) => vec![SniPattern::parse(one).map_err(|e| Invalid::new("sni", e))?],
            (None, Some(list)) => {
                if list.is_empty() || list.len() > 1024 {
                    return Err(Invalid::new("snis", "must list 1 to 1024 SNIs"));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, s)| SniPattern::parse(s).map_err(|e| Invalid::new(format!("snis[{i}]"), e)))
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, None) => Vec::new(),
        };

        if w.server_port == Some(0) {
            return Err(Invalid::new("server_port", "must be between 1 and 65535"));
        }
        let server_addr = w.server_addr.as_deref().map(|s| parse_cidr("server_addr", s)).transpose()?;
        let remote_addr = w.remote_addr.as_deref().map(|s| parse_cidr("remote_addr", s)).transpose()?;

        // APISIX: when a route has both, `upstream_id` is the one used
        // (`apisix/stream/init.lua`); the inline upstream is still validated.
        let inline = match &w.upstream {
            Some(u) => Some(Upstream::from_wire(None, u).map_err(|e| e.within("upstream"))?),
            None => None,
        };
        crate::node_template::check_route(&snis, inline.as_ref())?;
        let tls_passthrough = w.tls_passthrough.unwrap_or(false);
        if tls_passthrough && snis.is_empty() {
            return Err(Invalid::new(
                "tls_passthrough",
                "a passthrough route is chosen by the SNI of the ClientHello; give it sni or snis (\"*\" for any name)",
            ));
        }
        let upstream = match (&w.upstream_id, inline) {
            (Some(uid), _) => UpstreamRef::Id(ResourceId::from_json("upstream_id", uid)?),
            (None, Some(u)) => UpstreamRef::Inline(Arc::new(u)),
            (None, None) => return Err(Invalid::new("upstream", "upstream or upstream_id is required")),
        };

        let idle_timeout = match w.idle_timeout {
            None => None,
            Some(s) if s > 0.0 && s <= MAX_IDLE_SECS => Some(Duration::from_secs_f64(s)),
            Some(_) => {
                return Err(Invalid::new(
                    "idle_timeout",
                    format!("must be a number of seconds greater than 0 and at most {MAX_IDLE_SECS}"),
                ));
            }
        };

        let web_acl = w.web_acl_id.as_ref().map(|v| ResourceId::from_json("web_acl_id", v)).transpose()?;
        let send_proxy_protocol = w
            .send_proxy_protocol
            .as_deref()
            .map(|v| crate::SendProxyProtocol::parse("send_proxy_protocol", v))
            .transpose()?;

        Ok(StreamRoute {
            id,
            name: w.name.clone(),
            snis,
            server_port: w.server_port,
            server_addr,
            remote_addr,
            upstream,
            idle_timeout,
            web_acl,
            tls_passthrough,
            send_proxy_protocol,
            plugins,
        })
    }
}

/// Parses `1.2.3.4`, `10.0.0.0/8`, `::1` or `fd00::/8` into a network.
fn parse_cidr(field: &str, s: &str) -> Result<IpNet, Invalid> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| Invalid::new(field, format!("{s:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_value;
    use serde_json::{Value, json};

    fn route(v: Value) -> Result<StreamRoute, Invalid> {
        let w: StreamRouteWire = from_value(v)?;
        StreamRoute::from_wire(ResourceId::parse("r1").expect("id"), &w)
    }

    #[test]
    fn the_seed_route_is_valid() {
        let r = route(json!({
            "upstream": {"nodes": {"gs-1.game.svc.cluster.local:9000": 1}, "type": "roundrobin"},
            "sni": "gs-1.com"
        }))
        .expect("seed 000 route");
        assert_eq!(r.snis, vec![SniPattern::Exact("gs-1.com".into())]);
        assert!(matches!(r.upstream, UpstreamRef::Inline(_)));
    }

    #[test]
    fn filters_and_errors() {
        let r = route(json!({"upstream_id": 3, "remote_addr": "127.1.2.3/8", "server_port": 8888})).expect("filters");
        assert_eq!(r.remote_addr.map(|n| n.to_string()), Some("127.0.0.0/8".into()));
        assert_eq!(r.upstream, UpstreamRef::Id(ResourceId::parse("3").expect("id")));
        assert_eq!(route(json!({"upstream_id": "u", "remote_addr": "127.0.0.300"})).unwrap_err().field, "remote_addr");
        assert_eq!(route(json!({"sni": "gs-1.com"})).unwrap_err().field, "upstream");
        assert_eq!(route(json!({"upstream_id": "u", "server_port": 0})).unwrap_err().field, "server_port");
        assert_eq!(route(json!({"upstream_id": "u", "server_port": 70000})).unwrap_err().field, "server_port");
        assert_eq!(route(json!({"upstream": {"nodes": {"a:x": 1}}})).unwrap_err().field, "upstream.nodes[\"a:x\"]");
        assert_eq!(
            route(json!({"upstream_id": "u", "plugins": {"limit-conn": {}}})).unwrap_err().field,
            "plugins.limit-conn.conn"
        );
        assert_eq!(route(json!({"upstream_id": "u", "plugins": {"syslog": {}}})).unwrap_err().field, "plugins.syslog");
        assert!(route(json!({"upstream_id": "u", "plugins": {}})).is_ok());
        assert_eq!(route(json!({"upstream_id": "u", "sni": "a..b"})).unwrap_err().field, "sni");
        assert_eq!(route(json!({"upstream_id": "u", "priority": 1})).unwrap_err().field, "priority");
        assert_eq!(route(json!({"upstream_id": "u", "web_acl_id": "a b"})).unwrap_err().field, "web_acl_id");
        let r = route(json!({"upstream_id": "u", "web_acl_id": "players"})).expect("web_acl_id");
        assert_eq!(r.web_acl, Some(ResourceId::parse("players").expect("id")));
    }

    #[test]
    fn passthrough_needs_an_sni() {
        let r = route(json!({"upstream_id": "u", "sni": "*.rooms.example.com", "tls_passthrough": true})).expect("ok");
        assert!(r.tls_passthrough);
        assert!(!route(json!({"upstream_id": "u", "sni": "a.com"})).expect("default").tls_passthrough);
        let e = route(json!({"upstream_id": "u", "tls_passthrough": true})).unwrap_err();
        assert_eq!(e.field, "tls_passthrough");
        assert!(route(json!({"upstream_id": "u", "tls_passthrough": false})).is_ok());
        assert_eq!(
            route(json!({"upstream_id": "u", "sni": "a.com", "tls_passthrough": 1})).unwrap_err().field,
            "tls_passthrough"
        );
    }

    #[test]
    fn a_node_template_needs_the_route_to_have_an_sni() {
        let template = json!({"nodes": [{"host": "{sni_label_1}.rooms.svc", "port": 7777, "weight": 1}]});
        let r = route(json!({"upstream": template, "sni": "*.rooms.example.com"})).expect("template route");
        let UpstreamRef::Inline(u) = &r.upstream else { panic!("inline") };
        assert!(u.is_template());
        let e = route(json!({"upstream": template})).unwrap_err();
        assert_eq!(e.field, "upstream.nodes[0].host");
        assert!(e.reason.contains("sni or snis"), "{e}");
    }

    #[test]
    fn send_proxy_protocol_on_routes_and_inline_upstreams() {
        let r =
            route(json!({"upstream": {"nodes": {"a:1": 1}, "send_proxy_protocol": "v1"}, "send_proxy_protocol": "v2"}))
                .expect("valid");
        assert_eq!(r.send_proxy_protocol, Some(crate::SendProxyProtocol::V2));
        let UpstreamRef::Inline(u) = &r.upstream else { panic!("inline") };
        assert_eq!(u.send_proxy_protocol, Some(crate::SendProxyProtocol::V1));
        let e = route(json!({"upstream_id": "u", "send_proxy_protocol": "v3"})).unwrap_err();
        assert_eq!(e.field, "send_proxy_protocol");
        let e = route(json!({"upstream": {"nodes": {"a:1": 1}, "send_proxy_protocol": true}})).unwrap_err();
        assert_eq!(e.field, "upstream.send_proxy_protocol");
    }
}
