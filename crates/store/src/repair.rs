//! Looking into a damaged embedded store, and getting it to start again:
//! the engine behind `shardgate store check` and `shardgate store repair`.
//!
//! Start-up refuses a log with a bad record followed by intact data (see
//! [`log`]): guessing would serve a configuration nobody wrote.
//! [`check`] says where the problem is, whether it is damage or data from
//! another version ([`ScanErrorKind`]), and what the log holds after it
//! (the records that can still be recognised past the bad bytes, found by
//! looking for the next record whose checksum holds). [`repair`] keeps a
//! copy of the whole file, truncates the log at the first bad record, and
//! reports what was lost, so the operator can write those resources again
//! (their JSON is still in the copy). Data written by another version is
//! not damage: [`repair`] leaves it alone unless forced, since truncating
//! would throw away a configuration that the version which wrote it reads
//! in full.
//!
//! [`read_only_listing`] reads the live keys out of a log without opening
//! the store (no lock taken, nothing written), so a backup can be taken
//! while a gateway runs on the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::embedded::{LOCK_FILE, LOG_FILE};
use crate::log::{self, Op, Record, ScanErrorKind};
use crate::{Listing, StoreError, io};

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

/// Where a log stops being readable and what lies beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Damaged bytes, or data from another version.
    pub kind: ScanErrorKind,
    /// Where the first bad record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// Bytes from the bad record to the end of the file.
    pub bytes_after: u64,
    /// Intact records recognised after the damage (at most [`MAX_LISTED`]).
    pub lost: Vec<LostRecord>,
    /// How many intact records were recognised in all (listed or not).
    pub lost_count: usize,
    /// Of those, how many this version cannot decode (their checksum holds;
    /// another version's format). Counted in `lost_count`, never listed.
    pub unreadable: usize,
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
    /// Damage (or foreign data) that start-up refuses, if any.
    pub damage: Option<Damage>,
}

impl Report {
    /// Whether `shardgate run` would open this store.
    pub fn opens(&self) -> bool {
        self.damage.is_none()
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store opens as it is: nothing changed.
    Nothing,
    /// The log was truncated at its first bad record; `copy` holds the
    /// whole file as it was.
    Truncated {
        /// The copy of the file before the repair.
        copy: PathBuf,
    },
    /// The log holds data from another version (or is not a store file)
    /// and `force` was not given: nothing changed.
    Refused,
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
pub fn inspect(path: PathBuf, bytes: &[u8]) -> Report {
    let file_len = bytes.len() as u64;
    let (records, good_len, torn_bytes, damage) = match log::scan(bytes) {
        Ok(scan) => (scan.records, scan.good_len, scan.torn_bytes, None),
        Err(e) => {
            let good_len = e.good_len();
            let (lost, lost_count, unreadable) = recognisable_after(bytes, e.offset);
            let damage = Damage {
                kind: e.kind,
                offset: e.offset,
                reason: e.reason,
                bytes_after: file_len - e.offset,
                lost,
                lost_count,
                unreadable,
            };
            (e.records, good_len, 0, Some(damage))
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

/// Every live key under `prefix` in the store in `dir`, read from its log
/// without opening the store: no lock is taken and nothing is written, so
/// it works while a gateway runs on the directory (`shardgate backup`).
///
/// The listing is the state at the last intact record: a record being
/// appended while the file is read is a torn tail and is left out, exactly
/// as recovery drops it ([`log::scan`]); the log is read through one open
/// file, and compaction replaces it by a rename, so the bytes read are
/// always a prefix of one log. Keys whose time to live has passed are left
/// out, as a read of the open store leaves them out. A log that start-up
/// would refuse (damage, another version's data) is refused with the same
/// error.
pub fn read_only_listing(dir: &Path, prefix: &str) -> Result<Listing, StoreError> {
    let path = dir.join(LOG_FILE);
    let mut bytes = Vec::new();
    File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(format!("read {}", path.display())))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    listing_of(&path, &bytes, prefix, now_ms)
}

/// The listing of a log's bytes at `now_ms` (see [`read_only_listing`]).
fn listing_of(path: &Path, bytes: &[u8], prefix: &str, now_ms: u64) -> Result<Listing, StoreError> {
    let scan = log::scan(bytes).map_err(|e| StoreError::from_scan(path, e))?;
    let (map, revision) = log::replay(scan.records);
    let kvs = map
        .into_values()
        .filter(|kv| kv.key.starts_with(prefix) && kv.expires_at_ms.is_none_or(|at| at > now_ms))
        .collect();
    Ok(Listing { kvs, revision })
}

/// Intact records after `bad`, compaction markers left out: the listed
/// ones, how many in all, and how many of those cannot be decoded here.
fn recognisable_after(bytes: &[u8], bad: u64) -> (Vec<LostRecord>, usize, usize) {
    let mut lost = Vec::new();
    let (mut count, mut unreadable) = (0, 0);
    for (offset, rec) in log::intact_after(bytes, usize::try_from(bad).unwrap_or(usize::MAX)) {
        let rec: Record = match rec {
            Ok(rec) if rec.op == Op::Revision => continue,
            Ok(rec) => rec,
            Err(_) => {
                count += 1;
                unreadable += 1;
                continue;
            }
        };
        count += 1;
        if lost.len() < MAX_LISTED {
            lost.push(LostRecord { offset: offset as u64, op: rec.op, key: rec.key, revision: rec.revision });
        }
    }
    (lost, count, unreadable)
}

/// Keeps a copy of the log (`store.log.damaged-<unix seconds>`), truncates
/// the log at its first bad record, and returns the report of what it held
/// before the repair with what was done. A log without damage is left
/// untouched ([`Outcome::Nothing`]); so is one holding data from another
/// version or another file ([`ScanErrorKind::Foreign`]) unless `force`
/// ([`Outcome::Refused`]). Refused while a gateway holds the store.
pub fn repair(dir: &Path, force: bool) -> Result<(Report, Outcome), StoreError> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io(format!("open {}", dir.join(LOCK_FILE).display())))?;
    lock.try_lock().map_err(|_| StoreError::Locked { path: dir.display().to_string() })?;
    let report = check(dir)?;
    let Some(damage) = &report.damage else { return Ok((report, Outcome::Nothing)) };
    if damage.kind == ScanErrorKind::Foreign && !force {
        tracing::warn!(path = %report.path.display(), offset = damage.offset, reason = %damage.reason, "not repairing a store log written by another version (or not a store file)");
        return Ok((report, Outcome::Refused));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let copy = dir.join(format!("{LOG_FILE}.damaged-{now}"));
    fs::copy(&report.path, &copy).map_err(io(format!("copy {} to {}", report.path.display(), copy.display())))?;
    File::open(&copy).and_then(|f| f.sync_all()).map_err(io(format!("fsync {}", copy.display())))?;
    let keep = report.good_len;
    let file =
        OpenOptions::new().write(true).open(&report.path).map_err(io(format!("open {}", report.path.display())))?;
    file.set_len(keep).map_err(io(format!("truncate {}", report.path.display())))?;
    file.sync_all().map_err(io(format!("fsync {}", report.path.display())))?;
    tracing::warn!(path = %report.path.display(), kept_bytes = keep, lost_records = damage.lost_count, copy = %copy.display(), forced = force && damage.kind == ScanErrorKind::Foreign, "store log truncated at its first bad record");
    Ok((report, Outcome::Truncated { copy }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::{file, put, with_unknown_op};
    use crate::log::{HEADER, MAGIC};

    #[test]
    fn a_flipped_byte_is_located_and_what_follows_is_listed() {
        let recs = [put(1, "/a", "one"), put(2, "/b", "two"), put(3, "/c", "three"), put(4, "/d", "four")];
        let mut bytes = file(&recs);
        let second = file(&recs[..1]).len();
        bytes[second + HEADER + 5] ^= 0x40;
        let report = inspect(PathBuf::from("store.log"), &bytes);
        assert!(!report.opens());
        assert_eq!((report.good_records, report.good_len, report.live_keys), (1, second as u64, 1));
        let damage = report.damage.expect("damage");
        assert_eq!((damage.kind, damage.offset), (ScanErrorKind::Damaged, second as u64));
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
        let (report, outcome) = repair(dir.path(), false).expect("repair");
        let Outcome::Truncated { copy } = outcome else { panic!("damage is repaired: {outcome:?}") };
        assert_eq!(std::fs::read(&copy).expect("copy"), bytes, "the copy is the damaged file, whole");
        assert_eq!(report.damage.expect("damage").lost_count, 1);
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).expect("log").len(), second, "cut at the bad record");
        let store = crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).expect("opens after repair");
        drop(store);
        let (again, outcome) = repair(dir.path(), false).expect("second repair");
        assert!(again.opens() && outcome == Outcome::Nothing, "nothing left to repair");
    }

    /// The read-only listing replays puts and deletes, keeps revisions,
    /// leaves out other prefixes, expired keys and a torn tail (a record
    /// being appended), and refuses damage as start-up does.
    #[test]
    fn a_read_only_listing_stops_at_the_torn_tail() {
        let mut expiring = put(4, "/apisix/ssls/t", "ttl");
        expiring.op = Op::PutExpiring;
        expiring.expires_at_ms = Some(5_000);
        let mut later = put(5, "/apisix/ssls/u", "ttl-later");
        later.op = Op::PutExpiring;
        later.expires_at_ms = Some(50_000);
        let mut second = put(6, "/apisix/upstreams/a", "two");
        second.create_revision = 1;
        second.version = 2;
        let recs = [
            put(1, "/apisix/upstreams/a", "one"),
            put(2, "/apisix/upstreams/b", "gone"),
            Record::delete("/apisix/upstreams/b".into(), 3),
            expiring,
            later,
            second,
            put(7, "/other/upstreams/x", "elsewhere"),
        ];
        let mut bytes = file(&recs);
        let whole = bytes.len();
        // A record cut while being appended.
        let mut torn = Vec::new();
        log::encode(&put(8, "/apisix/upstreams/c", "being written"), &mut torn);
        bytes.extend_from_slice(&torn[..torn.len() - 3]);

        let listing = listing_of(Path::new("store.log"), &bytes, "/apisix/", 10_000).expect("listing");
        assert_eq!(listing.revision, 7, "the last intact record's revision");
        let got: Vec<(&str, &[u8], u64, u64, u64)> = listing
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice(), kv.create_revision, kv.mod_revision, kv.version))
            .collect();
        assert_eq!(
            got,
            [("/apisix/ssls/u", &b"ttl-later"[..], 5, 5, 1), ("/apisix/upstreams/a", &b"two"[..], 1, 6, 2)],
            "deleted, expired, other-prefix and torn keys are left out"
        );
        assert_eq!(listing.kvs[0].expires_at_ms, Some(50_000));

        let mut damaged = bytes[..whole].to_vec();
        damaged[MAGIC.len() + HEADER + 3] ^= 0xff;
        let err = listing_of(Path::new("store.log"), &damaged, "/apisix/", 0).expect_err("damage is refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    /// While a store is open (its directory locked), the read-only listing
    /// sees exactly what the store lists.
    #[tokio::test]
    async fn a_read_only_listing_of_an_open_store_matches_its_list() {
        use crate::{Condition, Store};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).expect("open");
        for (k, v) in [("/apisix/upstreams/a", "1"), ("/apisix/upstreams/b", "2"), ("/apisix/ssls/1", "3")] {
            store.put(k, v.into(), Condition::Always).await.expect("put");
        }
        store.put("/apisix/upstreams/a", b"1b".to_vec(), Condition::Always).await.expect("put");
        store.delete("/apisix/upstreams/b", Condition::Always).await.expect("delete");
        assert!(
            matches!(
                crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())),
                Err(StoreError::Locked { .. })
            ),
            "the directory is locked while the store is open"
        );
        let listing = read_only_listing(dir.path(), "/apisix/").expect("read-only listing");
        assert_eq!(listing, store.list("/apisix/").await.expect("list"));
        assert_eq!(listing.kvs.len(), 2);
        assert!(read_only_listing(&dir.path().join("missing"), "/").is_err(), "no log, no listing");
    }

    /// A record from a newer version (checksum good, op unknown) and a file
    /// of another format version are not damage: repair changes nothing
    /// unless forced, and start-up names the other version instead of
    /// suggesting a repair.
    #[test]
    fn data_from_another_version_is_only_truncated_when_forced() {
        let recs = [put(1, "/a", "one"), put(2, "/b", "two")];
        let mut newer_record = file(&recs[..1]);
        let second = newer_record.len();
        newer_record.extend_from_slice(&with_unknown_op(&recs[1], 7));
        let mut newer_format = file(&recs);
        newer_format[MAGIC.len() - 1] = 2;

        for (bytes, keep) in [(newer_record, second), (newer_format, 0)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(LOG_FILE);
            std::fs::write(&path, &bytes).expect("write");
            let err = crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).expect_err("refused");
            let msg = err.to_string();
            assert!(matches!(err, StoreError::Foreign { .. }), "{msg}");
            assert!(msg.contains("another shardgate version") && !msg.contains("store repair` keeps"), "{msg}");

            let (report, outcome) = repair(dir.path(), false).expect("repair");
            assert_eq!(outcome, Outcome::Refused);
            assert_eq!(report.damage.expect("found").kind, ScanErrorKind::Foreign);
            assert_eq!(std::fs::read(&path).expect("log"), bytes, "nothing cut");
            let copies = std::fs::read_dir(dir.path()).expect("dir").filter_map(Result::ok);
            assert_eq!(copies.filter(|e| e.file_name() != LOG_FILE && e.file_name() != LOCK_FILE).count(), 0);

            let (_, outcome) = repair(dir.path(), true).expect("forced repair");
            let Outcome::Truncated { copy } = outcome else { panic!("forced: {outcome:?}") };
            assert_eq!(std::fs::read(&copy).expect("copy"), bytes);
            assert_eq!(std::fs::read(&path).expect("log").len(), keep);
            crate::EmbeddedStore::open(crate::EmbeddedOptions::new(dir.path())).expect("opens after a forced repair");
        }
    }
}
