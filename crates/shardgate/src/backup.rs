//! `shardgate backup` and `shardgate restore`: everything under the store
//! prefix, at one revision, as one JSON document.
//!
//! ```json
//! {"format": "shardgate-backup/1", "prefix": "/apisix", "revision": 42,
//!  "taken_at": "2025-01-31T12:00:00Z",
//!  "kvs": [{"key": "/upstreams/u1", "value": {...}},
//!          {"key": "/ssls/1", "value": {...}, "expires_at_ms": 1767225600000}]}
//! ```
//!
//! Keys are relative to the prefix; values are the stored JSON as the store
//! holds it (a private key stays as stored). `expires_at_ms` is there only
//! for a key written with a time to live (`?ttl=`) in the embedded store,
//! and restore gives it the time it has left (a key that expired meanwhile
//! is not restored). etcd keeps a lease, not an expiry time, so a backup of
//! an etcd prefix records such keys as permanent.
//!
//! A backup reads through the [`shardgate_store::Store`] trait: one listing is one revision.
//! The embedded store of a running gateway is locked by that gateway, so
//! the backup reads its log read-only instead
//! ([`shardgate_store::repair::read_only_listing`]), at its last intact
//! record. A restore writes through the store: an embedded store needs its
//! gateway stopped (it is locked); an etcd prefix can be restored while
//! instances run (they apply the keys as they land; each write moves the
//! write fence, so Admin API writes in flight check again). A store that
//! already holds keys
//! under the prefix is refused unless `--replace`, which also deletes the
//! keys the backup does not hold. Every value is checked against
//! `limits.store_value_max_bytes` before the first write.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shardgate_model::json as mjson;
use shardgate_store::{Condition, Store, StoreError};

use crate::config::{Backend, Config};
use crate::open::open_store;

/// The `format` of the backups this version writes and reads.
pub const FORMAT: &str = "shardgate-backup/1";

/// A backup file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backup {
    format: String,
    prefix: String,
    revision: u64,
    taken_at: String,
    kvs: Vec<BackupKv>,
}

/// One key of a backup.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupKv {
    /// The key without the prefix (`/upstreams/u1`).
    key: String,
    /// The stored JSON value.
    value: Value,
    /// When a key written with a time to live expires, in milliseconds
    /// since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `secs` since the Unix epoch as RFC 3339 UTC (`2025-01-31T12:00:00Z`),
/// with the civil-from-days conversion of the proleptic Gregorian calendar.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The store listing prefix: every key under `prefix/`.
fn list_prefix(config: &Config) -> String {
    format!("{}/", config.store.prefix)
}

fn is_locked(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Locked { .. }))
}

/// `shardgate backup -o FILE`.
pub async fn backup(config: &Config, out: &Path) -> anyhow::Result<()> {
    if config.store.backend == Backend::Embedded && !config.store.data_dir.is_dir() {
        bail!(
            "no store to back up: the data directory {} does not exist (store.data_dir)",
            config.store.data_dir.display()
        );
    }
    let prefix = list_prefix(config);
    let (listing, running) = match open_store(config).await {
        Ok(store) => (store.list(&prefix).await.context("listing the store")?, false),
        Err(e) if is_locked(&e) => {
            // A gateway runs on it: read its log without the lock.
            let listing = shardgate_store::repair::read_only_listing(&config.store.data_dir, &prefix)
                .with_context(|| format!("reading the store in {} read-only", config.store.data_dir.display()))?;
            (listing, true)
        }
        Err(e) => return Err(e),
    };
    let mut kvs = Vec::with_capacity(listing.kvs.len());
    let bookkeeping = format!("{}{}", config.store.prefix, shardgate_etcd::BOOKKEEPING);
    for kv in listing.kvs.into_iter().filter(|kv| !kv.key.starts_with(&bookkeeping)) {
        let value =
            mjson::parse(&kv.value).map_err(|e| anyhow::anyhow!("the stored value of {} is not JSON: {e}", kv.key))?;
        let key = kv.key.strip_prefix(&config.store.prefix).unwrap_or(&kv.key).to_owned();
        kvs.push(BackupKv { key, value, expires_at_ms: kv.expires_at_ms });
    }
    let doc = Backup {
        format: FORMAT.into(),
        prefix: config.store.prefix.clone(),
        revision: listing.revision,
        taken_at: rfc3339(now_ms() / 1000),
        kvs,
    };
    let bytes = serde_json::to_vec_pretty(&doc).context("encoding the backup")?;
    write_private(out, &bytes)?;
    println!(
        "backed up {} key(s) under {} at revision {} to {}{}",
        doc.kvs.len(),
        doc.prefix,
        doc.revision,
        out.display(),
        if running { " (read from the log of the running gateway)" } else { "" }
    );
    Ok(())
}

/// Writes `bytes` to `path` (mode 0600: a backup holds private keys)
/// through a temporary file, fsynced and renamed, so a failed backup never
/// leaves a half-written file under the name of a good one.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Reads and checks a backup file: format, keys, value sizes. Nothing is
/// written before it passes.
fn read_backup(input: &Path, max_value: usize) -> anyhow::Result<(Backup, Vec<Vec<u8>>)> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let doc: Backup = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a shardgate backup ({FORMAT})", input.display()))?;
    if doc.format != FORMAT {
        bail!("{}: format {:?}; this shardgate reads {FORMAT}", input.display(), doc.format);
    }
    let mut seen = HashSet::new();
    let mut values = Vec::with_capacity(doc.kvs.len());
    for kv in &doc.kvs {
        if !kv.key.starts_with('/') || kv.key.len() < 2 {
            bail!("{}: key {:?} is not a key under the prefix (it starts with '/')", input.display(), kv.key);
        }
        if !seen.insert(kv.key.as_str()) {
            bail!("{}: key {} appears twice", input.display(), kv.key);
        }
        let value = serde_json::to_vec(&kv.value).context("encoding a value")?;
        if value.len() > max_value {
            bail!(
                "{}: the value of {} is {} bytes, over limits.store_value_max_bytes ({max_value}); raise the limit to restore it",
                input.display(),
                kv.key,
                value.len()
            );
        }
        values.push(value);
    }
    Ok((doc, values))
}

/// Refuses a backup whose SSL private keys are encrypted under a keyring
/// the target store does not have: restored, they would load as problems
/// and the certificates would stop serving.
fn check_keys_open(config: &Config, doc: &Backup, values: &[Vec<u8>]) -> anyhow::Result<()> {
    let keyring = crate::secrets::existing_keyring(config)?;
    for (kv, bytes) in doc.kvs.iter().zip(values) {
        if !kv.key.starts_with("/ssls/") {
            continue;
        }
        let Ok(mut value) = shardgate_model::json::parse(bytes) else { continue };
        if shardgate_model::keyring::open_ssl_value(keyring.as_ref(), &mut value).is_err() {
            let hint = match config.store.backend {
                crate::config::Backend::Embedded => format!(
                    "copy the source's keyring file (<its data_dir>/{}) to {} or set data_encryption.keyring",
                    crate::secrets::KEYRING_FILE,
                    config.store.data_dir.join(crate::secrets::KEYRING_FILE).display()
                ),
                crate::config::Backend::Etcd => "set data_encryption.keyring to the source's entries (an embedded source keeps its entry in <its data_dir>/keyring)".to_owned(),
            };
            bail!(
                "the backup's ssl {} holds a private key encrypted under a keyring this store does not have: {hint}; nothing was restored",
                kv.key.trim_start_matches("/ssls/")
            );
        }
    }
    Ok(())
}

/// How many times one restore write is tried while gateways keep writing.
const FENCE_TRIES: usize = 100;

/// Runs one restore write (a put of `value`, or a delete when `None`)
/// under the write fence, so that an Admin API write on a running instance
/// that checked references against what this restore replaces checks
/// again (restoring into a live etcd cluster). Returns whether the key
/// existed before.
async fn fenced_write(
    store: &dyn Store,
    key: &str,
    value: Option<Vec<u8>>,
    ttl: Option<std::time::Duration>,
) -> Result<bool, StoreError> {
    let mut tries = 0;
    loop {
        let mut fence = store.fence().await?;
        let result = match &value {
            Some(v) => {
                store.put_fenced(key, v.clone(), Condition::Always, ttl, &mut fence).await.map(|r| r.prev.is_some())
            }
            None => store.delete_fenced(key, Condition::Always, &mut fence).await.map(|prev| prev.is_some()),
        };
        match result {
            Err(StoreError::Fenced) if tries < FENCE_TRIES => tries += 1,
            other => return other,
        }
    }
}

/// `shardgate restore -i FILE [--replace]`.
pub async fn restore(config: &Config, input: &Path, replace: bool) -> anyhow::Result<()> {
    let (doc, values) = read_backup(input, config.limits.store_value_max_bytes)?;
    check_keys_open(config, &doc, &values)?;
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(e) if is_locked(&e) => bail!(
            "the store in {} is in use by a running gateway: stop it before restoring, or bring the running gateway to an export with `shardgate apply`",
            config.store.data_dir.display()
        ),
        Err(e) => return Err(e),
    };
    let prefix = list_prefix(config);
    let mut existing = store.list(&prefix).await.context("listing the store")?;
    // shardgate's bookkeeping (the write fence) is neither counted nor deleted.
    let bookkeeping = format!("{}{}", config.store.prefix, shardgate_etcd::BOOKKEEPING);
    existing.kvs.retain(|kv| !kv.key.starts_with(&bookkeeping));
    if !existing.kvs.is_empty() && !replace {
        bail!(
            "the store already holds {} key(s) under {}: restore into an empty store, or pass --replace to make it hold exactly the backup (keys the backup does not hold are deleted)",
            existing.kvs.len(),
            config.store.prefix
        );
    }
    let now = now_ms();
    let (mut written, mut expired) = (0, 0);
    let mut keep = HashSet::new();
    for (kv, value) in doc.kvs.iter().zip(values) {
        let key = format!("{}{}", config.store.prefix, kv.key);
        let ttl = match kv.expires_at_ms {
            Some(at) if at <= now => {
                expired += 1;
                continue;
            }
            Some(at) => Some(std::time::Duration::from_millis(at - now)),
            None => None,
        };
        fenced_write(store.as_ref(), &key, Some(value), ttl)
            .await
            .with_context(|| format!("writing {key} ({written} key(s) written before it)"))?;
        keep.insert(key);
        written += 1;
    }
    let mut deleted = 0;
    for kv in existing.kvs.iter().filter(|kv| !keep.contains(&kv.key)) {
        let existed =
            fenced_write(store.as_ref(), &kv.key, None, None).await.with_context(|| format!("deleting {}", kv.key))?;
        if existed {
            deleted += 1;
        }
    }
    println!(
        "restored {written} key(s) under {} from {} (revision {} taken at {}); deleted {deleted}; skipped {expired} expired",
        config.store.prefix,
        input.display(),
        doc.revision,
        doc.taken_at
    );
    if doc.prefix != config.store.prefix {
        println!("the backup was taken under {}; its keys were written under {}", doc.prefix, config.store.prefix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc_3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_738_324_800 + 3_723), "2025-01-31T13:02:03Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn a_backup_is_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.json");
        let doc = |kvs: Value| serde_json::json!({"format": FORMAT, "prefix": "/apisix", "revision": 3, "taken_at": "x", "kvs": kvs});
        let check = |v: Value, max: usize| {
            std::fs::write(&path, v.to_string()).expect("write");
            read_backup(&path, max).map(|(d, _)| d.kvs.len()).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(check(doc(serde_json::json!([{"key": "/upstreams/u", "value": {"nodes": {}}}])), 100), Ok(1));
        let e = check(doc(serde_json::json!([{"key": "/upstreams/u", "value": {"desc": "x".repeat(200)}}])), 100);
        assert!(e.as_ref().is_err_and(|e| e.contains("/upstreams/u") && e.contains("store_value_max_bytes")), "{e:?}");
        let e = check(doc(serde_json::json!([{"key": "/a", "value": 1}, {"key": "/a", "value": 2}])), 100);
        assert!(e.as_ref().is_err_and(|e| e.contains("appears twice")), "{e:?}");
        let e = check(doc(serde_json::json!([{"key": "upstreams/u", "value": 1}])), 100);
        assert!(e.as_ref().is_err_and(|e| e.contains("starts with '/'")), "{e:?}");
        let mut other = doc(serde_json::json!([]));
        other["format"] = "shardgate-backup/9".into();
        let e = check(other, 100);
        assert!(e.as_ref().is_err_and(|e| e.contains("shardgate-backup/9")), "{e:?}");
        let e = check(serde_json::json!({"list": []}), 100);
        assert!(e.as_ref().is_err_and(|e| e.contains("not a shardgate backup")), "{e:?}");
    }
}
