//! The keyring that encrypts SSL private keys at rest (APISIX's
//! `apisix.data_encryption`): from the bootstrap file, or for the embedded
//! store generated once into `<data_dir>/keyring`, so that keys written
//! through the Admin API are not plaintext in the store file (keys stored
//! before, or restored from a plaintext backup, stay as they are).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use shardgate_model::Keyring;

use crate::config::{Backend, Config};

/// The file, in the embedded store's data directory, that holds a keyring
/// generated on first start (one entry, 0600).
pub const KEYRING_FILE: &str = "keyring";

/// The keyring to seal and open SSL private keys with, or `None` to store
/// them as sent (`enable_encrypt_fields: false`, or etcd without a
/// configured keyring: APISIX instances sharing the cluster need the same
/// entries, which shardgate cannot choose for them).
pub fn keyring(config: &Config) -> anyhow::Result<Option<Arc<Keyring>>> {
    let enc = &config.data_encryption;
    if !enc.enable_encrypt_fields {
        return Ok(None);
    }
    if !enc.keyring.is_empty() {
        let ring = Keyring::new(enc.keyring.clone()).context("data_encryption.keyring")?;
        return Ok(Some(Arc::new(ring)));
    }
    match config.store.backend {
        Backend::Etcd => {
            tracing::warn!(
                "data_encryption.keyring is not set: SSL private keys are written to etcd in plain text; set the same keyring on every instance (and on APISIX, if it shares the cluster)"
            );
            Ok(None)
        }
        Backend::Embedded => load_or_generate(&config.store.data_dir).map(|k| Some(Arc::new(k))),
    }
}

/// The keyring a store already has, without generating one: the configured
/// entries, or the embedded store's `<data_dir>/keyring` if it exists
/// (`restore` checks a backup's keys against it before writing).
pub fn existing_keyring(config: &Config) -> anyhow::Result<Option<Keyring>> {
    let enc = &config.data_encryption;
    if !enc.keyring.is_empty() {
        return Keyring::new(enc.keyring.clone()).map(Some).context("data_encryption.keyring");
    }
    let path = config.store.data_dir.join(KEYRING_FILE);
    if config.store.backend == Backend::Embedded && path.exists() {
        return read_file(&path).map(Some);
    }
    Ok(None)
}

fn read_file(path: &Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    Keyring::new(entries).with_context(|| format!("reading the keyring in {}", path.display()))
}

/// Reads `<dir>/keyring` (one entry per line), writing a new random entry
/// there first if the file does not exist.
fn load_or_generate(dir: &Path) -> anyhow::Result<Keyring> {
    let path = dir.join(KEYRING_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let entries: Vec<String> =
                text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            Keyring::new(entries).with_context(|| format!("reading the keyring in {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let (ring, entry) = Keyring::generate().context("generating a keyring")?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(format!("{entry}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(file = %path.display(), "generated the keyring that encrypts SSL private keys in the store; back it up with the data directory");
            Ok(ring)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
