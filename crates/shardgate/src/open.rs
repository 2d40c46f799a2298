//! Opening the configuration store named by the bootstrap file, for
//! `shardgate run` and for the commands that work on the store directly
//! (`backup`, `restore`). One place knows the backends.

use std::sync::Arc;

use anyhow::Context;
use shardgate_etcd::{EtcdOptions, EtcdStore, EtcdTls};
use shardgate_store::{EmbeddedOptions, EmbeddedStore, Store};

use crate::config::{Backend, Config};

/// Opens the store of `config.store`, with values bounded by
/// `limits.store_value_max_bytes`. The embedded store takes its data
/// directory's lock: a second process on the same directory fails with
/// [`shardgate_store::StoreError::Locked`] (reachable through the error's
/// chain with `downcast_ref`).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match config.store.backend {
        Backend::Embedded => {
            let mut opts = EmbeddedOptions::new(&config.store.data_dir);
            opts.max_value_bytes = config.limits.store_value_max_bytes;
            let store = EmbeddedStore::open(opts)
                .with_context(|| format!("opening the store in {}", config.store.data_dir.display()))?;
            Arc::new(store)
        }
        Backend::Etcd => {
            let etcd = &config.store.etcd;
            let mut opts = EtcdOptions::new(etcd.host.iter().cloned(), config.store.prefix.clone());
            opts.timeout = etcd.timeout.get();
            opts.user = etcd.user.clone();
            opts.password = config.etcd_password();
            opts.max_value_bytes = config.limits.store_value_max_bytes;
            opts.max_response_bytes = etcd.max_response_bytes;
            opts.tls = etcd.tls.as_ref().map(|t| EtcdTls {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
                verify: t.verify,
            });
            let store = EtcdStore::connect(opts)
                .await
                .with_context(|| format!("connecting to etcd (store.etcd.host: {})", etcd.host.join(", ")))?;
            Arc::new(store)
        }
    };
    Ok(store)
}
