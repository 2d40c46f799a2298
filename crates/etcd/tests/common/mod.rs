//! Shared helpers of the etcd backend tests: options for a test cluster and
//! bounded reads of a watch.

#![allow(dead_code)]

use std::time::Duration;

use shardgate_e2e::EtcdCluster;
use shardgate_etcd::{EtcdOptions, EtcdStore};
use shardgate_store::{Event, StoreError, Watch};

/// The prefix every test writes under, as APISIX's default.
pub const PREFIX: &str = "/apisix";

/// Options for `cluster` with a short timeout (tests wait on it when etcd
/// is down).
pub fn options(cluster: &EtcdCluster) -> EtcdOptions {
    let mut o = EtcdOptions::new(cluster.endpoints(), PREFIX);
    o.timeout = Duration::from_secs(3);
    o
}

/// A store connected to `cluster`.
pub async fn connect(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(options(cluster)).await.expect("connect to etcd")
}

/// The next item of `w`, waiting at most 10 s.
pub async fn next(w: &mut Watch) -> Option<Result<Vec<Event>, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("a watch item within 10s")
}

/// Events from `w` until `n` have arrived (10 s at most in all).
pub async fn events(w: &mut Watch, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        match next(w).await {
            Some(Ok(batch)) => out.extend(batch),
            other => panic!("watch ended after {} of {n} events: {other:?}", out.len()),
        }
    }
    out
}
