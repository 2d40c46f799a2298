//! `send_proxy_protocol` (shardgate extension on upstreams and stream
//! routes): whether connections to the game servers start with a PROXY
//! protocol header (HAProxy's `proxy-protocol.txt`) carrying the player's
//! address, and in which version.
//!
//! APISIX has only the listener-level `proxy_protocol_to_upstream: true`
//! (nginx's `proxy_protocol on`, version 1); shardgate accepts that on
//! `stream.tcp` listeners too. The per-resource setting chooses the version
//! and wins over the listener's: a route's over its upstream's, an
//! upstream's over the listener's. `"off"` turns it off for that route or
//! upstream.

use std::fmt;

use crate::Invalid;

/// The value of `send_proxy_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendProxyProtocol {
    /// `"off"`: no header, whatever the upstream or listener says.
    Off,
    /// `"v1"`: the text header (`PROXY TCP4 ...\r\n`), as nginx and HAProxy's `send-proxy` send it.
    V1,
    /// `"v2"`: the binary header, as HAProxy's `send-proxy-v2` sends it.
    V2,
}

impl SendProxyProtocol {
    /// Parses the wire value; errors name `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        match s {
            "off" => Ok(SendProxyProtocol::Off),
            "v1" => Ok(SendProxyProtocol::V1),
            "v2" => Ok(SendProxyProtocol::V2),
            other => Err(Invalid::new(field, format!("{other:?} must be \"v1\", \"v2\" or \"off\""))),
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SendProxyProtocol::Off => "off",
            SendProxyProtocol::V1 => "v1",
            SendProxyProtocol::V2 => "v2",
        }
    }

    /// The setting that applies to one connection: the route's, else the
    /// upstream's, else the listener's `proxy_protocol_to_upstream` (v1).
    /// `None` when no header is sent.
    pub fn effective(route: Option<Self>, upstream: Option<Self>, listener_v1: bool) -> Option<Self> {
        let chosen = route.or(upstream).or(listener_v1.then_some(SendProxyProtocol::V1));
        chosen.filter(|c| *c != SendProxyProtocol::Off)
    }
}

impl fmt::Display for SendProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SendProxyProtocol::*;

    #[test]
    fn parse_and_precedence() {
        assert_eq!(SendProxyProtocol::parse("f", "v2"), Ok(V2));
        let e = SendProxyProtocol::parse("upstream.send_proxy_protocol", "2").unwrap_err();
        assert_eq!(e.field, "upstream.send_proxy_protocol");
        assert_eq!(SendProxyProtocol::effective(None, None, false), None);
        assert_eq!(SendProxyProtocol::effective(None, None, true), Some(V1), "APISIX's listener switch sends v1");
        assert_eq!(SendProxyProtocol::effective(None, Some(V2), true), Some(V2), "upstream over listener");
        assert_eq!(SendProxyProtocol::effective(Some(V1), Some(V2), false), Some(V1), "route over upstream");
        assert_eq!(SendProxyProtocol::effective(Some(Off), Some(V2), true), None, "off turns it off");
        assert_eq!(SendProxyProtocol::effective(None, Some(Off), true), None);
    }
}
