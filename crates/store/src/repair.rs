//! Looking into a damaged embedded store, and getting it to start again:
//! the engine behind `shardgate store check` and `shardgate store repair`.
//!
//! Start-up refuses a log with a bad record followed by intact data (see
//! [`log`]): guessing would serve a configuration nobody wrote.
//! [`check`] says where the damage is and what the log holds after it (the
//! records that can still be recognised past the bad bytes, found by
//! looking for the next record whose checksum holds). [`repair`] keeps a
//! copy of the whole file, truncates the log at the first bad record, and
//! reports what was lost, so the operator can write those resources again
//! (their JSON is still in the copy).

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::embedded::{LOCK_FILE, LOG_FILE};
use crate::log::{self, MAGIC, Op, Record};

/// Most lost records listed one by one in a report.
pub const MAX_LISTED: usize = 1000;

/// A record found after the damage: lost when the log is truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRecord {
    /// Where it starts in the file.
    pub offset: u64,
    /// Put or delete (compaction markers are not listed).
    pub op: Op,
    /// The key.
    pub key: String,
    /// Its store revision.
    pub revision: u64,
}

/// Where a log is damaged and what lies beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the first bad record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Bytes from the bad record to the end of the file.
    pub bytes_after: u64,
    /// Intact records recognised after the damage (at most [`MAX_LISTED`]).
    pub lost: Vec<LostRecord>,
    /// How many intact records were recognised in all.
    pub lost_count: usize,
}

/// What a store file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The log file.
    pub path: PathBuf,
    /// Its size.
    pub file_len: u64,
    /// Good records before any damage.
    pub good_records: usize,
    /// Length of the good prefix.
    pub good_len: u64,
    /// Keys live after replaying the good records.
    pub live_keys: usize,
    /// Highest revision among the good records.
    pub revision: u64,
    /// A torn tail (a write cut by a crash) that start-up drops by itself.
    pub torn_bytes: u64,
    /// Damage that start-up refuses, if any.
    pub damage: Option<Damage>,
}

impl Report {
    /// Whether `shardgate run` would open this store.
    pub fn opens(&self) -> bool {
        self.damage.is_none()
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io { context, source }
}

/// Reads the store in `dir` without changing it. Safe while the gateway runs
/// (it only reads), though a running gateway may append meanwhile.
pub fn check(dir: &Path) -> Result<Report, StoreError> {
    let path = dir.join(LOG_FILE);
    let mut bytes = Vec::new();
    File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(format!("read {}", path.display())))?;
    Ok(inspect(path, &bytes))
}

/// The report for a log's bytes.
fn inspect(path: PathBuf, bytes: &[u8]) -> Report {
    let file_len = bytes.len() as u64;
    let (records, good_len, torn_bytes, damage) = match log::scan(bytes) {
        Ok(scan) => (scan.records, scan.good_len, scan.torn_bytes, None),
        Err(e) => {
            let (records, good_len) = good_prefix(bytes, e.offset);
            let (lost, lost_count) = recognisable_after(bytes, e.offset);
            let damage =
                Damage { offset: e.offset, reason: e.reason, bytes_after: file_len - e.offset, lost, lost_count };
            (records, good_len, 0, Some(damage))
        }
    };
    let mut live = std::collections::BTreeSet::new();
    let mut revision = 0;
    for r in &records {
        revision = revision.max(r.revision);
        match r.op {
            Op::Put | Op::PutExpiring => drop(live.insert(r.key.as_str())),
            Op::Delete => drop(live.remove(r.key.as_str())),
            Op::Revision => {}
        }
    }
    Report {
        path,
        file_len,
        good_records: records.len(),
        good_len,
        live_keys: live.len(),
        revision,
        torn_bytes,
        damage,
    }
}

/// The records before `bad` (which `scan` found to be the first bad one).
fn good_prefix(bytes: &[u8], bad: u64) -> (Vec<Record>, u64) {
    let mut records = Vec::new();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return (records, 0);
    }
    let mut pos = MAGIC.len();
    while (pos as u64) < bad {
        match log::decode_at(bytes, pos) {
            Ok((rec, next)) => {
                records.push(rec);
                pos = next;
            }
            Err(_) => break,
        }
    }
    (records, pos as u64)
}

/// Intact records after `bad`, compaction markers left out.
fn recognisable_after(bytes: &[u8], bad: u64) -> (Vec<LostRecord>, usize) {
    let mut lost = Vec::new();
    let mut count = 0;
    for (offset, rec) in log::intact_after(bytes, usize::try_from(bad).unwrap_or(usize::MAX)) {
        if rec.op == Op::Revision {
            continue;
        }
        count += 1;
        if lost.len() < MAX_LISTED {
            lost.push(LostRecord { offset: offset as u64, op: rec.op, key: rec.key, revision: rec.revision });
        }
    }
    (lost, count)
}

/// Keeps a copy of the log (`store.log.damaged-<unix seconds>`), truncates
/// the log at its first bad record, and returns the report of what it held
/// before the repair with the copy's path. A log without damage is left
/// untouched (`None`). Refused while a gateway holds the store.
pub fn repair(dir: &Path) -> Result<(Report, Option<PathBuf>), StoreError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io(format!("open {}", dir.join(LOCK_FILE).display())))?;
    lock.try_lock().map_err(|_| StoreError::Locked { path: dir.display().to_string() })?;
    let report = check(dir)?;
    let Some(damage) = &report.damage else { return Ok((report, None)) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let copy = dir.join(format!("{LOG_FILE}.damaged-{now}"));
    fs::copy(&report.path, &copy).map_err(io(format!("copy {} to {}", report.path.display(), copy.display())))?;
    File::open(&copy).and_then(|f| f.sync_all()).map_err(io(format!("fsync {}", copy.display())))?;
    let keep = if damage.offset < MAGIC.len() as u64 { 0 } else { damage.offset };
    let file =
        OpenOptions::new().write(true).open(&report.path).map_err(io(format!("open {}", report.path.display())))?;
    file.set_len(keep).map_err(io(format!("truncate {}", report.path.display())))?;
    file.sync_all().map_err(io(format!("fsync {}", report.path.display())))?;
    tracing::warn!(path = %report.path.display(), kept_bytes = keep, lost_records = damage.lost_count, copy = %copy.display(), "store log truncated at its first bad record");
    Ok((report, Some(copy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::encode;

    fn put(rev: u64, key: &str, value: &str) -> Record {
        Record {
            op: Op::Put,
            revision: rev,
            create_revision: rev,
            version: 1,
            key: key.into(),
            value: value.into(),
            expires_at_ms: None,
        }
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn a_flipped_byte_is_located_and_what_follows_is_listed() {
        let recs = [put(1, "/a", "one"), put(2, "/b", "two"), put(3, "/c", "three"), put(4, "/d", "four")];
        let mut bytes = file(&recs);
        let second = file(&recs[..1]).len();
        bytes[second + log::HEADER + 5] ^= 0x40;
        let report = inspect(PathBuf::from("store.log"), &bytes);
        assert!(!report.opens());
        assert_eq!((report.good_records, report.good_len, report.live_keys), (1, second as u64, 1));
        let damage = report.damage.expect("damage");
        assert_eq!(damage.offset, second as u64);
        assert!(damage.reason.contains("checksum"), "{}", damage.reason);
        let keys: Vec<&str> = damage.lost.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["/c", "/d"], "the intact records after the bad one");
        assert_eq!(damage.lost_count, 2);
    }

    #[test]
    fn repair_keeps_a_copy_and_truncates_so_the_store_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = [put(1, "/a", "one"), put(2, "/b", "two"), put(3, "/c", "three")];
        let mut bytes = file(&recs);
        let second = file(&recs[..1]).len();
        bytes[second + 2] ^= 0xff;
        std::fs::write(dir.path().join(LOG_FILE), &bytes).expect("write");
        assert!(crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).is_err(), "refused before");
        let (report, copy) = repair(dir.path()).expect("repair");
        let copy = copy.expect("a copy");
        assert_eq!(std::fs::read(&copy).expect("copy"), bytes, "the copy is the damaged file, whole");
        assert_eq!(report.damage.expect("damage").lost_count, 1);
        let store = crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).expect("opens after repair");
        drop(store);
        let (again, none) = repair(dir.path()).expect("second repair");
        assert!(again.opens() && none.is_none(), "nothing left to repair");
    }
}
