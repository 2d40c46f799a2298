//! Stream-route matching with APISIX's precedence. Pure and generic over the
//! routed value, so it is unit-tested, fuzzed and benched without sockets.
//!
//! Precedence (apache/apisix `apisix/stream/router/ip_port.lua`, where routes
//! with an SNI sit in a radix tree on the reversed name and the others are
//! tried in config order afterwards):
//! 1. routes whose SNI equals the connection's SNI;
//! 2. routes with a `*.suffix` SNI, longest suffix first (for routes, unlike
//!    certificates, a wildcard matches names any number of labels deeper:
//!    "no certificate is involved");
//! 3. routes with SNI `*`;
//! 4. routes without an SNI.
//!
//! Within one step, routes are tried in config order (ascending id, the order
//! etcd lists keys in); the first whose `server_port`, `server_addr` and
//! `remote_addr` filters all hold wins. A connection without an SNI (plain TCP
//! listener, or a TLS client that sent none) only reaches step 4. Stream
//! routes have no `priority` field in APISIX's schema.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use shardgate_model::{SniPattern, StreamRoute};
use shardgate_upstream::Upstream;

use crate::SniTable;

/// How specific a match was; greater is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchRank {
    /// A route without SNI condition.
    NoSni,
    /// A route with SNI `*`.
    AnySni,
    /// A `*.suffix` route; the number is the suffix length.
    Wildcard(usize),
    /// The exact SNI.
    Exact,
}

/// What a connection offers to be matched.
#[derive(Debug, Clone, Copy)]
pub struct RouteQuery<'a> {
    /// The SNI, lower-cased, if any.
    pub sni: Option<&'a str>,
    /// The gateway's local port.
    pub server_port: u16,
    /// The gateway's local address.
    pub server_addr: IpAddr,
    /// The client's address.
    pub remote_addr: IpAddr,
}

/// The non-SNI conditions of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Local port.
    pub server_port: Option<u16>,
    /// Local address.
    pub server_addr: Option<IpNet>,
    /// Client address.
    pub remote_addr: Option<IpNet>,
}

impl Filters {
    fn accept(&self, q: &RouteQuery<'_>) -> bool {
        // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
        self.server_port.is_none_or(|p| p == q.server_port)
            && self.server_addr.is_none_or(|n| n.contains(&q.server_addr.to_canonical()))
            && self.remote_addr.is_none_or(|n| n.contains(&q.remote_addr.to_canonical()))
    }
}

/// A route compiled for the data plane.
#[derive(Debug)]
pub struct StreamTarget {
    /// The route as configured.
    pub route: Arc<StreamRoute>,
    /// Its upstream's runtime.
    pub upstream: Arc<Upstream>,
    /// Idle timeout for its connections.
    pub idle_timeout: Duration,
    /// The route's web ACL, run on the client address before the handshake.
    pub waf: Option<Arc<crate::CompiledAcl>>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    filters: Filters,
    value: T,
}

/// The stream routing table.
#[derive(Debug, Clone)]
pub struct StreamRouter<T = Arc<StreamTarget>> {
    by_sni: SniTable<Vec<Entry<T>>>,
    no_sni: Vec<Entry<T>>,
    len: usize,
}

impl<T> Default for StreamRouter<T> {
    fn default() -> Self {
        StreamRouter { by_sni: SniTable::default(), no_sni: Vec::new(), len: 0 }
    }
}

impl<T: Clone> StreamRouter<T> {
    /// Adds a route; call in config order.
    pub fn insert(&mut self, snis: &[SniPattern], filters: Filters, value: T) {
        self.len += 1;
        if snis.is_empty() {
            self.no_sni.push(Entry { filters, value });
            return;
        }
        for sni in snis {
            self.by_sni.entry(sni, Vec::new).push(Entry { filters: filters.clone(), value: value.clone() });
        }
    }
}

impl<T> StreamRouter<T> {
    /// The route for a connection, with how specifically it matched.
    pub fn find(&self, q: &RouteQuery<'_>) -> Option<(&T, MatchRank)> {
        if let Some(sni) = q.sni {
            for (suffix_len, entries) in self.by_sni.matches(sni) {
                if let Some(e) = entries.iter().find(|e| e.filters.accept(q)) {
                    let rank = match suffix_len {
                        usize::MAX => MatchRank::Exact,
                        0 => MatchRank::AnySni,
                        n => MatchRank::Wildcard(n),
                    };
                    return Some((&e.value, rank));
                }
            }
        }
        self.no_sni.iter().find(|e| e.filters.accept(q)).map(|e| (&e.value, MatchRank::NoSni))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sni: Option<&str>) -> RouteQuery<'_> {
        RouteQuery {
            sni,
            server_port: 8888,
            server_addr: "127.0.0.1".parse().expect("ip"),
            remote_addr: "127.1.2.3".parse().expect("ip"),
        }
    }

    fn snis(list: &[&str]) -> Vec<SniPattern> {
        list.iter().map(|s| SniPattern::parse(s).expect("sni")).collect()
    }

    fn router() -> StreamRouter<&'static str> {
        let mut r = StreamRouter::default();
        r.insert(&[], Filters { server_port: Some(9999), ..Filters::default() }, "catch-all-other-port");
        r.insert(&[], Filters::default(), "catch-all");
        r.insert(&snis(&["*"]), Filters::default(), "star");
        r.insert(&snis(&["*.com"]), Filters::default(), "dot-com");
        r.insert(&snis(&["*.game.com"]), Filters::default(), "game");
        r.insert(
            &snis(&["gs-1.game.com"]),
            Filters { remote_addr: Some("127.168.0.0/16".parse().expect("net")), ..Filters::default() },
            "gs-1-lan-only",
        );
        r.insert(&snis(&["gs-1.game.com", "gs-1b.game.com"]), Filters::default(), "gs-1");
        r
    }

    #[test]
    fn exact_beats_longer_wildcard_beats_shorter_beats_star_beats_none() {
        let r = router();
        assert_eq!(r.find(&q(Some("gs-1.game.com"))), Some((&"gs-1", MatchRank::Exact)));
        assert_eq!(r.find(&q(Some("gs-1b.game.com"))), Some((&"gs-1", MatchRank::Exact)));
        assert_eq!(r.find(&q(Some("gs-2.game.com"))), Some((&"game", MatchRank::Wildcard(9))));
        assert_eq!(r.find(&q(Some("deep.gs-2.game.com"))), Some((&"game", MatchRank::Wildcard(9))));
        assert_eq!(r.find(&q(Some("shop.com"))), Some((&"dot-com", MatchRank::Wildcard(4))));
        assert_eq!(r.find(&q(Some("example.org"))), Some((&"star", MatchRank::AnySni)));
        assert_eq!(r.find(&q(None)), Some((&"catch-all", MatchRank::NoSni)));
        assert_eq!(r.len(), 7);
    }

    #[test]
    fn filters_are_checked_in_config_order_within_a_step() {
        let r = router();
        let mut lan = q(Some("gs-1.game.com"));
        lan.remote_addr = "127.168.1.1".parse().expect("ip");
        assert_eq!(r.find(&lan), Some((&"gs-1-lan-only", MatchRank::Exact)), "first matching in config order");
        let mut mapped = lan;
        mapped.remote_addr = "::ffff:127.168.1.1".parse().expect("ip");
        assert_eq!(r.find(&mapped), Some((&"gs-1-lan-only", MatchRank::Exact)), "v4-mapped clients match v4 CIDRs");
        let mut other_port = q(None);
        other_port.server_port = 9999;
        assert_eq!(r.find(&other_port), Some((&"catch-all-other-port", MatchRank::NoSni)));
    }

    #[test]
    fn nothing_matches_an_empty_table_or_unmet_filters() {
        let r: StreamRouter<&str> = StreamRouter::default();
        assert_eq!(r.find(&q(Some("gs-1.com"))), None);
        let mut r: StreamRouter<&str> = StreamRouter::default();
        r.insert(&snis(&["gs-1.com"]), Filters::default(), "gs-1");
        assert_eq!(r.find(&q(Some("gs-2.com"))), None);
        assert_eq!(r.find(&q(None)), None, "an SNI route never matches a connection without SNI");
    }
}
