//! The APISIX stream plugins a stream route may carry, at run time:
//! `ip-restriction` and `limit-conn` (validated by
//! `shardgate_model::stream_plugins`). They run once the connection is
//! routed and before anything else is done for it: on a TLS listener after
//! the ClientHello chose the route and the route's web ACL let it through,
//! before any certificate work or handshake; on a plain listener before the
//! upstream connect. In APISIX's order: `ip-restriction` (priority 3000)
//! first, then `limit-conn` (1003).
//!
//! `limit-conn` counts open connections per key (the client's address, the
//! gateway's, or a combination) in a [`LimitConnRegistry`] that lives
//! outside the snapshot, like the upstream registry: a route keeps its
//! counts across configuration changes as long as its `limit-conn`
//! configuration is unchanged (APISIX keys its counts by the route's
//! version, so any edit of the route resets them). A changed configuration
//! starts from zero; connections counted under the old one release their
//! count there. A connection that makes its key's count `n`:
//! - `n ≤ conn`: goes on at once;
//! - `conn < n ≤ conn + burst`: waits `default_conn_delay × ⌊(n − 1) / conn⌋`
//!   (lua-resty-limit-traffic's `resty.limit.conn`), then goes on;
//! - `n > conn + burst`: closed (reason `limit_conn`), not counted.
//!
//! The count is held by a [`LimitGuard`] for the connection's whole life and
//! released when it drops. A key's entry exists only while a connection
//! holds it, so a limiter holds at most as many keys as connections are open
//! (`limits.max_connections`): the map is bounded without evicting live
//! counts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardgate_model::ResourceId;
use shardgate_model::stream_plugins::{ConnVar, KeyPart, LimitConn, LimitKey};
use shardgate_snapshot::StreamTarget;

use crate::conn::ListenerCtx;
use crate::metrics::{CloseReason, RouteLabels};

/// The value one connection is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyValue {
    Ip(IpAddr),
    Text(Box<str>),
}

fn var(v: ConnVar, client: IpAddr, local: IpAddr) -> IpAddr {
    match v {
        ConnVar::RemoteAddr => client.to_canonical(),
        ConnVar::ServerAddr => local.to_canonical(),
    }
}

fn key_value(key: &LimitKey, client: IpAddr, local: IpAddr) -> KeyValue {
    match key {
        LimitKey::Var(v) => KeyValue::Ip(var(*v, client, local)),
        LimitKey::Combination(parts) => {
            let mut s = String::with_capacity(64);
            for p in parts {
                match p {
                    KeyPart::Text(t) => s.push_str(t),
                    KeyPart::Var(v) => s.push_str(&var(*v, client, local).to_string()),
                }
            }
            KeyValue::Text(s.into())
        }
    }
}

/// One route's `limit-conn` counts, for one configuration.
#[derive(Debug)]
struct Limiter {
    config: LimitConn,
    counts: Mutex<HashMap<KeyValue, u32>>,
}

impl Limiter {
    fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).values().map(|n| *n as usize).sum()
    }
}

/// Holds one connection's `limit-conn` count; releases it when dropped.
#[derive(Debug)]
pub struct LimitGuard {
    limiter: Arc<Limiter>,
    key: KeyValue,
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// `limit-conn` counts of every route, shared by all stream listeners
/// (a route matched on two listeners has one count), outliving snapshots.
#[derive(Debug, Default)]
pub struct LimitConnRegistry {
    limiters: Mutex<HashMap<ResourceId, Arc<Limiter>>>,
}

impl LimitConnRegistry {
    /// The limiter of `route` for `config`: the existing one while its
    /// configuration is unchanged, otherwise a fresh one.
    fn limiter(&self, route: &ResourceId, config: &LimitConn) -> Arc<Limiter> {
        let mut map = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = map.get(route)
            && l.config == *config
        {
            return Arc::clone(l);
        }
        // A configuration change (rare): drop limiters nobody is counted in
        // (routes deleted or changed; a fresh limiter would be identical), so
        // the map follows the routes in use.
        map.retain(|_, l| l.open() > 0);
        let l = Arc::new(Limiter { config: config.clone(), counts: Mutex::new(HashMap::new()) });
        map.insert(route.clone(), Arc::clone(&l));
        l
    }

    /// Counts a connection under `key` for `route`: its delay and the guard
    /// that holds the count, or `None` when over `conn + burst`.
    fn acquire(
        &self,
        route: &ResourceId,
        config: &LimitConn,
        client: IpAddr,
        local: IpAddr,
    ) -> Option<(LimitGuard, Duration)> {
        let limiter = self.limiter(route, config);
        let key = key_value(&config.key, client, local);
        let delay = {
            let mut counts = limiter.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let n = counts.get(&key).copied().unwrap_or(0).saturating_add(1);
            let delay = config.delay_for(n)?;
            counts.insert(key.clone(), n);
            delay
        };
        Some((LimitGuard { limiter, key }, delay))
    }

    /// Connections counted now for `route` under its current configuration
    /// (for tests and diagnostics).
    pub fn open(&self, route: &ResourceId) -> usize {
        self.limiters.lock().unwrap_or_else(PoisonError::into_inner).get(route).map_or(0, |l| l.open())
    }
}

/// A connection the plugins let through.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// Holds the `limit-conn` count until the connection ends.
    _guard: Option<LimitGuard>,
    /// How long `limit-conn` holds it back before it goes on.
    pub(crate) delay: Duration,
}

impl Admitted {
    /// Waits out the delay, if any. The timer is boxed: only delayed
    /// connections pay for it, and every connection's future stays small.
    pub(crate) async fn wait(&self) {
        if !self.delay.is_zero() {
            Box::pin(tokio::time::sleep(self.delay)).await;
        }
    }
}

/// Runs the route's plugins on a new UDP session from `client` to `local`:
/// `ip-restriction` as on a connection; `limit-conn` counts sessions, and a
/// session within the burst is admitted at once (a datagram cannot wait:
/// held, it would arrive late, or be dropped). The guard holds the count
/// until the session ends.
pub(crate) fn admit_session(
    limits: &LimitConnRegistry,
    target: &StreamTarget,
    client: SocketAddr,
    local: SocketAddr,
) -> Result<Option<LimitGuard>, CloseReason> {
    let plugins = &target.route.plugins;
    if let Some(ip) = &plugins.ip_restriction
        && !ip.allows(client.ip())
    {
        return Err(CloseReason::ip_restricted);
    }
    let Some(limit) = &plugins.limit_conn else { return Ok(None) };
    match limits.acquire(&target.route.id, limit, client.ip(), local.ip()) {
        Some((guard, _delay)) => Ok(Some(guard)),
        None => Err(CloseReason::limit_conn),
    }
}

/// Runs the route's plugins on a connection from `client` to `local`:
/// refuses it (the close reason), or lets it through with the delay
/// `limit-conn` asks for (see [`Admitted::wait`]).
pub(crate) fn admit(
    ctx: &ListenerCtx,
    target: &StreamTarget,
    client: SocketAddr,
    local: SocketAddr,
) -> Result<Admitted, CloseReason> {
    let route = &target.route;
    let plugins = &route.plugins;
    if let Some(ip) = &plugins.ip_restriction
        && !ip.allows(client.ip())
    {
        tracing::debug!(listener = %ctx.name, peer = %client, route = %route.id, "connection refused by ip-restriction");
        return Err(CloseReason::ip_restricted);
    }
    let Some(limit) = &plugins.limit_conn else { return Ok(Admitted::default()) };
    let Some((guard, delay)) = ctx.limit_conn.acquire(&route.id, limit, client.ip(), local.ip()) else {
        tracing::debug!(listener = %ctx.name, peer = %client, route = %route.id, conn = limit.conn, burst = limit.burst, "connection refused by limit-conn");
        return Err(CloseReason::limit_conn);
    };
    if !delay.is_zero() {
        ctx.metrics.limit_conn_delayed.get_or_create(&RouteLabels { route: route.id.to_string() }).inc();
        tracing::debug!(listener = %ctx.name, peer = %client, route = %route.id, delay_ms = delay.as_millis() as u64, "connection delayed by limit-conn");
    }
    Ok(Admitted { _guard: Some(guard), delay })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(conn: u32, burst: u32, key: LimitKey) -> LimitConn {
        LimitConn { conn, burst, default_conn_delay: Duration::from_millis(100), only_use_default_delay: false, key }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn counts_per_key_release_on_drop_and_refuse_over_burst() {
        let reg = LimitConnRegistry::default();
        let route = ResourceId::parse("r1").expect("id");
        let cfg = limit(2, 1, LimitKey::Var(ConnVar::RemoteAddr));
        let local = ip("127.0.0.1");
        let a = ip("198.51.100.1");
        let g1 = reg.acquire(&route, &cfg, a, local).expect("1st");
        let g2 = reg.acquire(&route, &cfg, a, local).expect("2nd");
        assert_eq!((g1.1, g2.1), (Duration::ZERO, Duration::ZERO));
        let g3 = reg.acquire(&route, &cfg, a, local).expect("3rd, within the burst");
        assert_eq!(g3.1, Duration::from_millis(100));
        assert!(reg.acquire(&route, &cfg, a, local).is_none(), "4th: over conn + burst");
        // Another key has its own count; an IPv4-mapped address is the same key.
        assert!(reg.acquire(&route, &cfg, ip("198.51.100.2"), local).is_some_and(|g| g.1.is_zero()));
        assert!(reg.acquire(&route, &cfg, ip("::ffff:198.51.100.1"), local).is_none());
        assert_eq!(reg.open(&route), 3);
        drop(g1);
        assert_eq!(reg.open(&route), 2);
        let g4 = reg.acquire(&route, &cfg, a, local).expect("a released count is free again");
        assert_eq!(g4.1, Duration::from_millis(100));
        drop((g2, g3, g4));
        assert_eq!(reg.open(&route), 0);
        let map = reg.limiters.lock().expect("lock");
        assert!(
            map.get(&route).expect("limiter").counts.lock().expect("lock").is_empty(),
            "no key without a connection"
        );
    }

    #[test]
    fn counts_survive_until_the_configuration_changes() {
        let reg = LimitConnRegistry::default();
        let route = ResourceId::parse("r1").expect("id");
        let cfg = limit(1, 0, LimitKey::Var(ConnVar::ServerAddr));
        let held = reg.acquire(&route, &cfg, ip("198.51.100.1"), ip("127.0.0.1")).expect("1st");
        // Same configuration (a new snapshot's copy): same count, keyed by the local address.
        assert!(reg.acquire(&route, &cfg.clone(), ip("198.51.100.2"), ip("127.0.0.1")).is_none());
        assert!(reg.acquire(&route, &cfg, ip("198.51.100.2"), ip("127.0.0.2")).is_some());
        // A changed configuration starts from zero; the old guard releases into the old limiter.
        let changed = limit(1, 1, LimitKey::Var(ConnVar::ServerAddr));
        let fresh = reg.acquire(&route, &changed, ip("198.51.100.2"), ip("127.0.0.1")).expect("fresh count");
        assert!(fresh.1.is_zero());
        drop(held);
        assert_eq!(reg.open(&route), 1);
    }

    #[test]
    fn combination_keys_render_the_variables() {
        let key = LimitKey::Combination(vec![
            KeyPart::Var(ConnVar::RemoteAddr),
            KeyPart::Text("|".into()),
            KeyPart::Var(ConnVar::ServerAddr),
        ]);
        assert_eq!(
            key_value(&key, ip("::ffff:198.51.100.1"), ip("127.0.0.1")),
            KeyValue::Text("198.51.100.1|127.0.0.1".into())
        );
    }
}
