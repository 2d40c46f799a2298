//! DNS for node names: resolved through the system resolver (so
//! `/etc/hosts`, search domains and Kubernetes' cluster DNS work as for any
//! program), or through the nameservers the bootstrap file lists
//! (`stream.dns.nameservers`, asked over UDP by hickory-resolver, with its
//! query-id and source checks); cached, and bounded.
//!
//! - **Positive answers** live `stream.dns_ttl`; when a re-resolution fails
//!   the last good answer is served, and asked for again after
//!   [`NEGATIVE_TTL`].
//! - **Negative answers** (no such name, no address, a timeout, a server
//!   error) live [`NEGATIVE_TTL`]: a player asking again and again for a
//!   room that does not exist costs one query per name per 5 seconds.
//! - **Names in flight**: lookups of one name share one query, and at most
//!   [`MAX_IN_FLIGHT`] names are looked up at once; a lookup beyond that
//!   fails at once, unqueried (counted in
//!   `shardgate_upstream_dns_failures_total{reason="busy"}`). This bounds
//!   what a flood of distinct names costs: sockets, the system resolver's
//!   blocking threads, queries to the DNS.
//! - **Cache size**: at most [`MAX_ENTRIES`] names, positive and negative;
//!   the least recently used goes first.
//!
//! The system resolver's lookups run on tokio's blocking threads: one that
//! times out here (after the resolver's timeout) releases its in-flight
//! slot, while the thread finishes on its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Most names cached, answered or not; beyond it the least recently used
/// entries go.
pub const MAX_ENTRIES: usize = 10_000;
/// How long a failed lookup is remembered, and how long a last good answer
/// is served before a failed re-resolution is tried again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Most distinct names looked up at once.
pub const MAX_IN_FLIGHT: usize = 128;
/// Most nameservers in `stream.dns.nameservers`.
pub const MAX_NAMESERVERS: usize = 8;
/// One query's timeout with configured nameservers; two attempts fit in
/// the resolver's overall timeout (5 s by default).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a name has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveFailure {
    /// The DNS says the name does not exist or has no address.
    NotFound,
    /// No answer within the resolver's timeout.
    Timeout,
    /// [`MAX_IN_FLIGHT`] names were being looked up: not asked.
    Busy,
    /// Any other failure (a server error, a refused query, a socket error).
    Error,
}

impl ResolveFailure {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveFailure::NotFound => "not_found",
            ResolveFailure::Timeout => "timeout",
            ResolveFailure::Busy => "busy",
            ResolveFailure::Error => "error",
        }
    }
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot resolve {name}: {reason}")]
pub struct ResolveError {
    /// The name.
    pub name: String,
    /// Why.
    pub reason: String,
    /// The kind of failure.
    pub kind: ResolveFailure,
}

type Answer = Result<Arc<[IpAddr]>, ResolveError>;

#[derive(Debug)]
struct Entry {
    answer: Answer,
    expires: Instant,
    used: Instant,
}

#[derive(Debug, Default)]
struct State {
    cache: HashMap<Box<str>, Entry>,
    in_flight: HashMap<Box<str>, Arc<OnceCell<Answer>>>,
}

enum Backend {
    /// `getaddrinfo`, through tokio's blocking threads.
    System,
    /// The configured nameservers.
    Nameservers(Box<TokioResolver>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::System => f.write_str("System"),
            Backend::Nameservers(r) => f.debug_tuple("Nameservers").field(&r.config().name_servers().len()).finish(),
        }
    }
}

/// A caching resolver shared by every upstream.
#[derive(Debug)]
pub struct Resolver {
    ttl: Duration,
    timeout: Duration,
    max_in_flight: usize,
    backend: Backend,
    state: Mutex<State>,
}

impl Resolver {
    /// A resolver through the system's, whose answers live `ttl`, each
    /// lookup bounded by `timeout`.
    pub fn new(ttl: Duration, timeout: Duration) -> Self {
        Resolver { ttl, timeout, max_in_flight: MAX_IN_FLIGHT, backend: Backend::System, state: Mutex::default() }
    }

    /// Asks `servers` (UDP, in order) instead of the system resolver; no
    /// change when the list is empty. Names are asked as absolute names
    /// (no search list), and `/etc/hosts` is not read.
    pub fn with_nameservers(mut self, servers: &[SocketAddr]) -> Self {
        if servers.is_empty() {
            return self;
        }
        let group: Vec<NameServerConfig> =
            servers.iter().map(|addr| NameServerConfig::new(*addr, Protocol::Udp)).collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), NameServerConfigGroup::from(group));
        let mut opts = ResolverOpts::default();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        opts.ndots = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        // This resolver's cache is the one cache (positive and negative TTLs above).
        opts.cache_size = 0;
        opts.num_concurrent_reqs = 1;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(opts).build();
        self.backend = Backend::Nameservers(Box::new(resolver));
        self
    }

    #[cfg(test)]
    fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// The addresses of `name`.
    pub async fn resolve(&self, name: &str) -> Result<Arc<[IpAddr]>, ResolveError> {
        let now = Instant::now();
        let (stale, cell) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = match state.cache.get_mut(name) {
                Some(e) if now < e.expires => {
                    e.used = now;
                    return e.answer.clone();
                }
                Some(Entry { answer: Ok(addrs), .. }) => Some(Arc::clone(addrs)),
                _ => None,
            };
            let cell = match state.in_flight.get(name) {
                Some(cell) => Arc::clone(cell),
                None if state.in_flight.len() >= self.max_in_flight => {
                    drop(state);
                    return match stale {
                        Some(addrs) => Ok(addrs),
                        None => Err(ResolveError {
                            name: name.to_owned(),
                            reason: format!("{} names are being resolved already", self.max_in_flight),
                            kind: ResolveFailure::Busy,
                        }),
                    };
                }
                None => {
                    let cell = Arc::new(OnceCell::new());
                    state.in_flight.insert(name.into(), Arc::clone(&cell));
                    cell
                }
            };
            (stale, cell)
        };
        let guard = InFlight { resolver: self, name, cell };
        // One lookup per name: the others wait for its answer (and one of
        // them takes over if the one looking up is dropped).
        let answer = guard.cell.get_or_init(|| self.lookup(name)).await.clone();
        guard.finish(&answer, stale.as_ref());
        match (answer, stale) {
            (Ok(addrs), _) => Ok(addrs),
            (Err(e), Some(addrs)) => {
                tracing::warn!(name, error = %e.reason, "DNS re-resolution failed; using the last good answer");
                Ok(addrs)
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn lookup(&self, name: &str) -> Answer {
        let err = |kind: ResolveFailure, reason: String| ResolveError { name: name.to_owned(), reason, kind };
        let timed_out = || err(ResolveFailure::Timeout, format!("timed out after {:?}", self.timeout));
        let mut addrs: Vec<IpAddr> = match &self.backend {
            Backend::System => tokio::time::timeout(self.timeout, tokio::net::lookup_host((name, 0)))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| err(ResolveFailure::Error, e.to_string()))?
                .map(|sa| sa.ip())
                .collect(),
            Backend::Nameservers(r) => {
                // Absolute: no search list is appended.
                let fqdn = format!("{name}.");
                match tokio::time::timeout(self.timeout, r.lookup_ip(fqdn.as_str())).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                        return Err(err(ResolveFailure::NotFound, "no such name or no address".into()));
                    }
                    Ok(Err(e)) => return Err(err(ResolveFailure::Error, e.to_string())),
                    Ok(Ok(found)) => found.iter().collect(),
                }
            }
        };
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(err(ResolveFailure::NotFound, "no addresses".into()));
        }
        Ok(addrs.into())
    }
}

/// A lookup's place in the in-flight table, freed when the answer is in or
/// when every task waiting for it is gone.
struct InFlight<'a> {
    resolver: &'a Resolver,
    name: &'a str,
    cell: Arc<OnceCell<Answer>>,
}

impl InFlight<'_> {
    /// Caches `answer` and frees the name's in-flight place (the first of
    /// its waiters to get here does it).
    fn finish(&self, answer: &Answer, stale: Option<&Arc<[IpAddr]>>) {
        let now = Instant::now();
        let mut state = self.resolver.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.in_flight.get(self.name).is_some_and(|c| Arc::ptr_eq(c, &self.cell)) {
            return;
        }
        state.in_flight.remove(self.name);
        let entry = match (answer, stale) {
            (Ok(addrs), _) => Entry { answer: Ok(Arc::clone(addrs)), expires: now + self.resolver.ttl, used: now },
            // Keep serving the last good answer; ask again after NEGATIVE_TTL.
            (Err(_), Some(addrs)) => Entry { answer: Ok(Arc::clone(addrs)), expires: now + NEGATIVE_TTL, used: now },
            (Err(e), None) => Entry { answer: Err(e.clone()), expires: now + NEGATIVE_TTL, used: now },
        };
        if state.cache.len() >= MAX_ENTRIES
            && !state.cache.contains_key(self.name)
            && let Some(oldest) = state.cache.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())
        {
            state.cache.remove(&oldest);
        }
        state.cache.insert(self.name.into(), entry);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Every waiter gone before an answer (their connections closed):
        // free the place, or the name would hold it for good.
        let mut state = self.resolver.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.cell.get().is_none()
            && Arc::strong_count(&self.cell) == 2
            && state.in_flight.get(self.name).is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            state.in_flight.remove(self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dns::{TestDns, asked};

    #[tokio::test]
    async fn resolves_localhost_and_caches_it() {
        let r = Resolver::new(Duration::from_secs(30), Duration::from_secs(5));
        let a = r.resolve("localhost").await.expect("localhost resolves");
        assert!(a.iter().any(|ip| ip.is_loopback()));
        let b = r.resolve("localhost").await.expect("cached");
        assert!(Arc::ptr_eq(&a, &b), "second answer comes from the cache");
    }

    #[tokio::test]
    async fn an_unknown_name_is_an_error_naming_it() {
        let r = Resolver::new(Duration::from_secs(30), Duration::from_secs(5));
        let e = r.resolve("no-such-host.invalid").await.unwrap_err();
        assert_eq!(e.name, "no-such-host.invalid");
    }

    #[tokio::test]
    async fn configured_nameservers_answer_and_failures_are_remembered_briefly() {
        let (ns, queries) = TestDns::start(&[("known", "127.0.0.9")], false).await;
        let r = Resolver::new(Duration::from_secs(30), Duration::from_secs(5)).with_nameservers(&[ns]);
        let a = r.resolve("known").await.expect("known");
        assert_eq!(&*a, &["127.0.0.9".parse::<IpAddr>().expect("ip")]);
        let known = asked(&queries, "known");
        assert!(known >= 1);
        r.resolve("known").await.expect("cached");
        assert_eq!(asked(&queries, "known"), known, "the positive answer is cached");
        let e = r.resolve("unknown").await.expect_err("NXDOMAIN");
        assert_eq!(e.kind, ResolveFailure::NotFound);
        let unknown = asked(&queries, "unknown");
        assert!(unknown >= 1);
        let again = r.resolve("unknown").await.expect_err("cached NXDOMAIN");
        assert_eq!(again.kind, ResolveFailure::NotFound);
        assert_eq!(asked(&queries, "unknown"), unknown, "the negative answer is cached");
    }

    #[tokio::test]
    async fn names_in_flight_are_bounded_and_one_name_is_asked_once() {
        let (ns, queries) = TestDns::start(&[], true).await;
        let r = Arc::new(
            Resolver::new(Duration::from_secs(30), Duration::from_secs(3))
                .with_nameservers(&[ns])
                .with_max_in_flight(2),
        );
        let mut waiting = Vec::new();
        for name in ["a.test", "a.test", "b.test"] {
            let r = Arc::clone(&r);
            waiting.push(tokio::spawn(async move { r.resolve(name).await }));
        }
        // Both names are in flight once all three lookups have started.
        for _ in 0..500 {
            if r.state.lock().map(|s| s.in_flight.len() == 2).unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = r.resolve("c.test").await.expect_err("a third name is refused");
        assert_eq!(e.kind, ResolveFailure::Busy);
        for w in waiting {
            let e = w.await.expect("task").expect_err("the silent server times out");
            assert_eq!(e.kind, ResolveFailure::Timeout);
        }
        // One name, one lookup: "a.test", wanted twice, was asked as often as "b.test".
        assert!(asked(&queries, "b.test") > 0);
        assert_eq!(asked(&queries, "a.test"), asked(&queries, "b.test"));
        assert_eq!(asked(&queries, "c.test"), 0, "the refused name was never asked");
        assert!(r.state.lock().map(|s| s.in_flight.is_empty()).unwrap_or(false), "places freed");
    }

    #[tokio::test]
    async fn a_lookup_whose_waiters_all_left_frees_its_place() {
        let (ns, _) = TestDns::start(&[], true).await;
        let r = Resolver::new(Duration::from_secs(30), Duration::from_secs(30)).with_nameservers(&[ns]);
        let gave_up = tokio::time::timeout(Duration::from_millis(50), r.resolve("slow.test")).await;
        assert!(gave_up.is_err(), "still waiting");
        assert!(r.state.lock().map(|s| s.in_flight.is_empty()).unwrap_or(false));
    }
}
