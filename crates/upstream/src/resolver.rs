//! DNS for node names: resolved through the system resolver (so
//! `/etc/hosts`, search domains and Kubernetes' cluster DNS work as for any
//! program), cached for a TTL, re-resolved when it expires, and served from
//! the last good answer when a re-resolution fails.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Most names cached; beyond it the least recently used entries go.
const MAX_ENTRIES: usize = 10_000;

/// Why a name could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot resolve {name}: {reason}")]
pub struct ResolveError {
    /// The name.
    pub name: String,
    /// Why.
    pub reason: String,
}

#[derive(Debug)]
struct Entry {
    addrs: Arc<[IpAddr]>,
    fetched: Instant,
    used: Instant,
}

/// A caching resolver shared by every upstream.
#[derive(Debug)]
pub struct Resolver {
    ttl: Duration,
    timeout: Duration,
    cache: Mutex<HashMap<Box<str>, Entry>>,
}

impl Resolver {
    /// A resolver whose answers live `ttl`, each lookup bounded by `timeout`.
    pub fn new(ttl: Duration, timeout: Duration) -> Self {
        Resolver { ttl, timeout, cache: Mutex::new(HashMap::new()) }
    }

    /// The addresses of `name`.
    pub async fn resolve(&self, name: &str) -> Result<Arc<[IpAddr]>, ResolveError> {
        let now = Instant::now();
        let stale = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.get_mut(name) {
                Some(e) if now.duration_since(e.fetched) < self.ttl => {
                    e.used = now;
                    return Ok(Arc::clone(&e.addrs));
                }
                Some(e) => Some(Arc::clone(&e.addrs)),
                None => None,
            }
        };
        match self.lookup(name).await {
            Ok(addrs) => {
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= MAX_ENTRIES
                    && !cache.contains_key(name)
                    && let Some(oldest) = cache.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone())
                {
                    cache.remove(&oldest);
                }
                cache.insert(name.into(), Entry { addrs: Arc::clone(&addrs), fetched: now, used: now });
                Ok(addrs)
            }
            Err(e) => match stale {
                Some(addrs) => {
                    tracing::warn!(name, error = %e.reason, "DNS re-resolution failed; using the last good answer");
                    Ok(addrs)
                }
                None => Err(e),
            },
        }
    }

    async fn lookup(&self, name: &str) -> Result<Arc<[IpAddr]>, ResolveError> {
        let err = |reason: String| ResolveError { name: name.to_owned(), reason };
        let found = tokio::time::timeout(self.timeout, tokio::net::lookup_host((name, 0)))
            .await
            .map_err(|_| err(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| err(e.to_string()))?;
        let mut addrs: Vec<IpAddr> = found.map(|sa| sa.ip()).collect();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(err("no addresses".into()));
        }
        Ok(addrs.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
