//! The embedded store's file format: an append-only log of CRC-framed records.
//!
//! ```text
//! file    := MAGIC record*
//! record  := len:u32le crc:u32le payload[len]        crc = CRC-32 (IEEE) of payload
//! payload := op:u8 revision:u64le create_revision:u64le version:u64le
//!            key_len:u32le key value_len:u32le value [expires_at_ms:u64le]
//! op      := 1 put | 2 delete | 3 revision marker (key and value empty)
//!          | 4 put with an expiry (the payload ends with expires_at_ms)
//! ```
//!
//! `expires_at_ms` is wall-clock time in milliseconds since the Unix epoch
//! (a key written with a TTL, like an etcd key attached to a lease). When it
//! passes, the store appends a delete record for the key, as etcd deletes a
//! lease's keys when the lease expires; a key found expired when the store
//! opens is deleted the same way before anything reads it.
//!
//! Compatibility: op 4 was added after the first release. Files written
//! before it hold only ops 1–3 and open unchanged (the magic stays
//! `SGSTORE\x01`). The other way round does not work: once any write with a
//! time to live (an Admin API `?ttl=`) has been stored, the file holds an
//! op 4 record and an older binary cannot read it, and it stays so until
//! that key is gone and the log compacted. The older binary refuses to
//! start at that record ("unknown op 4"; it calls that corruption and
//! suggests `store repair`, which would cut every record from there on: do
//! not run it). A downgrade therefore needs a copy of the data directory
//! taken before the first TTL write, or the resources read from the Admin
//! API and written again to the older version.
//!
//! What cannot be read is classified ([`ScanErrorKind`]): a bad checksum or
//! length is damage, which `store repair` truncates; a record whose checksum
//! holds but whose op this version does not know, or a file with another
//! magic or format version, was written by another version (or is not a
//! store file) and is never truncated without `--force`.
//!
//! A write is appended and `fdatasync`ed before it is acknowledged, so after a
//! crash (kill -9, power loss) only the last, unacknowledged record can be
//! incomplete. Recovery ([`scan`]) keeps every record up to the first bad one
//! and, if what follows is a torn tail (a record running past the end of the
//! file, or zero fill left by a file extension), drops it. A bad record with
//! intact data after it is real corruption: recovery refuses to guess.

/// First bytes of every store file; the last byte is the format version.
pub const MAGIC: &[u8; 8] = b"SGSTORE\x01";
/// Bytes before a record's payload.
pub const HEADER: usize = 8;
/// Largest payload accepted when reading; anything larger is corruption.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Record operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A key was written.
    Put = 1,
    /// A key was deleted.
    Delete = 2,
    /// The store revision at compaction time (no key).
    Revision = 3,
    /// A key was written with an expiry time.
    PutExpiring = 4,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub op: Op,
    /// Store revision of the operation.
    pub revision: u64,
    /// For a put: the key's create revision.
    pub create_revision: u64,
    /// For a put: the key's version.
    pub version: u64,
    /// The key (empty for a revision marker).
    pub key: String,
    /// The value (empty for delete and marker).
    pub value: Vec<u8>,
    /// For [`Op::PutExpiring`]: when the key expires, in milliseconds since
    /// the Unix epoch; `None` for every other op.
    pub expires_at_ms: Option<u64>,
}

impl Record {
    /// The record of a delete of `key` at `revision`.
    pub fn delete(key: String, revision: u64) -> Self {
        Record { op: Op::Delete, revision, create_revision: 0, version: 0, key, value: Vec::new(), expires_at_ms: None }
    }
}

/// Appends the framed encoding of `rec` to `out`.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    let expiry = if rec.op == Op::PutExpiring { rec.expires_at_ms } else { None };
    let payload_len = 1 + 8 * 3 + 4 + rec.key.len() + 4 + rec.value.len() + expiry.map_or(0, |_| 8);
    let start = out.len();
    out.reserve(HEADER + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(rec.op as u8);
    out.extend_from_slice(&rec.revision.to_le_bytes());
    out.extend_from_slice(&rec.create_revision.to_le_bytes());
    out.extend_from_slice(&rec.version.to_le_bytes());
    out.extend_from_slice(&(rec.key.len() as u32).to_le_bytes());
    out.extend_from_slice(rec.key.as_bytes());
    out.extend_from_slice(&(rec.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&rec.value);
    if let Some(at) = expiry {
        out.extend_from_slice(&at.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The outcome of reading a whole log.
#[derive(Debug)]
pub struct Scan {
    /// Every good record, in file order.
    pub records: Vec<Record>,
    /// Length of the good prefix of the file (where the next append goes).
    pub good_len: u64,
    /// Bytes of torn tail dropped after `good_len`.
    pub torn_bytes: u64,
}

/// The live keys a log's records leave, and the highest revision they
/// reached: the one replay that opening the store and a read-only backup
/// both make (expired keys are kept; callers decide what to do with them).
pub fn replay(records: Vec<Record>) -> (std::collections::BTreeMap<String, crate::KeyValue>, u64) {
    let mut map = std::collections::BTreeMap::new();
    let mut revision = 0;
    for rec in records {
        revision = revision.max(rec.revision);
        match rec.op {
            Op::Put | Op::PutExpiring => {
                let kv = crate::KeyValue {
                    key: rec.key.clone(),
                    value: rec.value,
                    create_revision: rec.create_revision,
                    mod_revision: rec.revision,
                    version: rec.version,
                    expires_at_ms: rec.expires_at_ms,
                };
                map.insert(rec.key, kv);
            }
            Op::Delete => drop(map.remove(&rec.key)),
            Op::Revision => {}
        }
    }
    (map, revision)
}

/// Why a log cannot be read, which decides what may be done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// Bytes changed after they were written: a checksum that does not
    /// hold, a length out of range, or a record cut short with intact
    /// records after it (so not a torn tail). Truncating at the bad record
    /// (`store repair`) keeps everything before it.
    Damaged,
    /// Intact bytes this version cannot read: a record whose checksum holds
    /// but whose content it does not know (an unknown op: a newer format),
    /// or a file that does not start with this version's magic (another
    /// format version, or not a store file at all). Nothing is damaged, so
    /// nothing may be cut without being told to.
    Foreign,
}

/// Why a log cannot be recovered, with what could be read before the
/// problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Damage, or data from another version.
    pub kind: ScanErrorKind,
    /// Where the bad record starts (0 for a bad magic).
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The good records before `offset`, in file order: what a repair keeps.
    pub records: Vec<Record>,
}

impl ScanError {
    /// Length of the good prefix: the file up to the bad record (nothing
    /// when the magic itself is bad).
    pub fn good_len(&self) -> u64 {
        if self.offset < MAGIC.len() as u64 { 0 } else { self.offset }
    }
}

/// Reads a whole log file's bytes, applying the recovery rules above.
pub fn scan(bytes: &[u8]) -> Result<Scan, ScanError> {
    let foreign = |reason: String| ScanError { kind: ScanErrorKind::Foreign, offset: 0, reason, records: Vec::new() };
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        // A file cut while its header was written holds nothing acknowledged.
        return Ok(Scan { records: Vec::new(), good_len: 0, torn_bytes: bytes.len() as u64 });
    }
    let name = &MAGIC[..MAGIC.len() - 1];
    match bytes.get(..MAGIC.len()) {
        Some(head) if head == MAGIC => {}
        Some(head) if &head[..name.len()] == name => {
            return Err(foreign(format!(
                "store format version {}, this shardgate reads version {}",
                head[name.len()],
                MAGIC[name.len()]
            )));
        }
        _ => return Err(foreign("not a shardgate store file (bad magic)".into())),
    }
    let mut records = Vec::new();
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        match frame_at(bytes, pos) {
            Ok((payload, next)) => match decode_payload(payload) {
                Ok(rec) => {
                    records.push(rec);
                    pos = next;
                }
                // The checksum holds: these are the bytes that were
                // written, in a format this version does not know.
                Err(reason) => {
                    return Err(ScanError {
                        kind: ScanErrorKind::Foreign,
                        offset: pos as u64,
                        reason: format!("{reason} in a record whose checksum holds"),
                        records,
                    });
                }
            },
            Err(reason) => {
                let rest = &bytes[pos..];
                let runs_past_end = rest.len() < HEADER
                    || HEADER + u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize > rest.len();
                let zero_fill = rest.iter().all(|b| *b == 0);
                // A bad length can make a damaged record look like a torn
                // tail; a torn tail never has an intact record after it.
                if (runs_past_end || zero_fill) && intact_after(bytes, pos).next().is_none() {
                    return Ok(Scan { records, good_len: pos as u64, torn_bytes: rest.len() as u64 });
                }
                return Err(ScanError { kind: ScanErrorKind::Damaged, offset: pos as u64, reason, records });
            }
        }
    }
    Ok(Scan { records, good_len: pos as u64, torn_bytes: 0 })
}

/// The intact records after a bad one at `bad`: every offset past it where
/// a record's checksum holds, skipping over each one found. A record this
/// version cannot decode (a newer format) is intact too: `Err` with why.
pub(crate) fn intact_after(bytes: &[u8], bad: usize) -> impl Iterator<Item = (usize, Result<Record, String>)> + '_ {
    let mut pos = bad.saturating_add(1);
    std::iter::from_fn(move || {
        while pos + HEADER < bytes.len() {
            match frame_at(bytes, pos) {
                Ok((payload, next)) => {
                    let at = pos;
                    pos = next;
                    return Some((at, decode_payload(payload)));
                }
                Err(_) => pos += 1,
            }
        }
        None
    })
}

/// The payload of the record at `pos` if its frame is whole and its
/// checksum holds, with the offset of the next record; else what is wrong.
fn frame_at(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), String> {
    let rest = &bytes[pos..];
    if rest.len() < HEADER {
        return Err("truncated record header".into());
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(format!("record length {len} out of range"));
    }
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Err("record runs past the end of the file".into());
    };
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok((payload, pos + HEADER + len))
}

/// Decodes a payload whose checksum holds.
fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader { buf: payload };
    let op = match r.u8()? {
        1 => Op::Put,
        2 => Op::Delete,
        3 => Op::Revision,
        4 => Op::PutExpiring,
        other => return Err(format!("unknown op {other}")),
    };
    let revision = r.u64()?;
    let create_revision = r.u64()?;
    let version = r.u64()?;
    let key_len = r.u32()? as usize;
    let key = String::from_utf8(r.take(key_len)?.to_vec()).map_err(|_| "key is not UTF-8".to_string())?;
    let value_len = r.u32()? as usize;
    let value = r.take(value_len)?.to_vec();
    let expires_at_ms = if op == Op::PutExpiring { Some(r.u64()?) } else { None };
    if !r.buf.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(Record { op, revision, create_revision, version, key, value, expires_at_ms })
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("record payload too short".into());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn put(rev: u64, key: &str, value: &str) -> Record {
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

    pub(crate) fn file(records: &[Record]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    /// `rec` framed with a valid checksum but op `op`, which this version
    /// does not know (a record from a newer format).
    pub(crate) fn with_unknown_op(rec: &Record, op: u8) -> Vec<u8> {
        let mut out = Vec::new();
        encode(rec, &mut out);
        out[HEADER] = op;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn round_trip() {
        let recs = vec![
            put(1, "/a", "x"),
            Record {
                op: Op::Delete,
                revision: 2,
                create_revision: 0,
                version: 0,
                key: "/a".into(),
                value: vec![],
                expires_at_ms: None,
            },
            Record {
                op: Op::PutExpiring,
                revision: 3,
                create_revision: 3,
                version: 1,
                key: "/b".into(),
                value: b"v".to_vec(),
                expires_at_ms: Some(1_800_000_000_000),
            },
        ];
        let bytes = file(&recs);
        let scan = scan(&bytes).expect("scan");
        assert_eq!(scan.records, recs);
        assert_eq!(scan.good_len, bytes.len() as u64);
        assert_eq!(scan.torn_bytes, 0);
    }

    #[test]
    fn every_torn_tail_is_dropped_and_the_prefix_kept() {
        let full = file(&[put(1, "/a", "first"), put(2, "/b", "second")]);
        let first_len = file(&[put(1, "/a", "first")]).len();
        for cut in first_len..full.len() {
            let scan = scan(&full[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e:?}"));
            assert_eq!(scan.records.len(), 1, "cut at {cut}");
            assert_eq!(scan.good_len, first_len as u64);
        }
        let mut zero_filled = file(&[put(1, "/a", "first")]);
        zero_filled.extend_from_slice(&[0; 100]);
        assert_eq!(scan(&zero_filled).expect("zero fill").records.len(), 1);
        assert_eq!(scan(&MAGIC[..3]).expect("torn header").records.len(), 0);
    }

    #[test]
    fn corruption_before_good_data_is_refused() {
        let mut bytes = file(&[put(1, "/a", "first"), put(2, "/b", "second")]);
        bytes[MAGIC.len() + HEADER + 3] ^= 0xff;
        let err = scan(&bytes).unwrap_err();
        assert_eq!((err.kind, err.offset), (ScanErrorKind::Damaged, MAGIC.len() as u64));
        assert!(err.reason.contains("checksum"));
        assert!(err.records.is_empty());
    }

    /// Bytes this version cannot read but that nobody damaged: a newer
    /// format's record (checksum good, op unknown), another format version,
    /// another file. They are foreign, never damage, and the error carries
    /// the good records before them.
    #[test]
    fn data_from_another_version_is_foreign_not_damaged() {
        let first = put(1, "/a", "first");
        let mut bytes = file(std::slice::from_ref(&first));
        let good_len = bytes.len();
        // A well-framed record with op 9 (a format this version predates).
        let newer = with_unknown_op(&put(2, "/b", "second"), 9);
        bytes.extend_from_slice(&newer);
        let err = scan(&bytes).unwrap_err();
        assert_eq!((err.kind, err.offset), (ScanErrorKind::Foreign, good_len as u64));
        assert!(err.reason.contains("unknown op 9"), "{}", err.reason);
        assert_eq!(err.records, vec![first.clone()], "the good prefix comes with the error");
        assert_eq!(err.good_len(), good_len as u64);
        // Even as the very last record: a complete record is no torn tail.
        let mut last = file(std::slice::from_ref(&first));
        last.extend_from_slice(&newer);
        assert_eq!(scan(&last).unwrap_err().kind, ScanErrorKind::Foreign);

        let mut v2 = file(std::slice::from_ref(&first));
        v2[MAGIC.len() - 1] = 2;
        let err = scan(&v2).unwrap_err();
        assert_eq!((err.kind, err.offset, err.good_len()), (ScanErrorKind::Foreign, 0, 0));
        assert!(err.reason.contains("format version 2"), "{}", err.reason);
        for other in [&b"NOTSTORE-----"[..], b"{\"json\": true}\n", b"xyz"] {
            let err = scan(other).unwrap_err();
            assert_eq!(err.kind, ScanErrorKind::Foreign, "{other:?}");
            assert!(err.reason.contains("bad magic"), "{}", err.reason);
        }
    }

    /// A torn tail in front of a newer-format record is not a torn tail: the
    /// intact record after it (checksum good, op unknown) says so.
    #[test]
    fn a_record_from_a_newer_version_after_bad_bytes_is_intact() {
        let mut bytes = file(&[put(1, "/a", "first")]);
        let bad = bytes.len();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 1, 2, 3, 4]);
        let newer = with_unknown_op(&put(2, "/b", "second"), 9);
        bytes.extend_from_slice(&newer);
        let err = scan(&bytes).expect_err("not dropped as a torn tail");
        assert_eq!((err.kind, err.offset), (ScanErrorKind::Damaged, bad as u64));
    }

    /// A flipped bit in a length field makes the record run past the end of
    /// the file, like a torn write; the intact records after it tell the
    /// two apart, so acknowledged writes are never dropped silently.
    #[test]
    fn a_damaged_length_with_intact_records_after_is_not_a_torn_tail() {
        let recs = [put(1, "/a", "first"), put(2, "/b", "second"), put(3, "/c", "third")];
        let mut bytes = file(&recs);
        let second = file(&recs[..1]).len();
        bytes[second + 2] ^= 0x01;
        let err = scan(&bytes).unwrap_err();
        assert_eq!((err.kind, err.offset), (ScanErrorKind::Damaged, second as u64));
        assert_eq!(err.records.len(), 1);
        // The last record cut short is still a torn tail.
        let full = file(&recs);
        let scan = scan(&full[..full.len() - 3]).expect("torn tail");
        assert_eq!(scan.records.len(), 2);
    }

    /// A file written before op 4 existed: ops 1–3 only, byte for byte as
    /// the first release encoded them. It must keep opening.
    #[test]
    fn files_from_before_expiry_records_still_read() {
        let mut old = MAGIC.to_vec();
        // put "/a" = "x" at revision 1, then delete it at revision 2.
        let payloads: [&[u8]; 2] = [
            b"\x01\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0/a\x01\0\0\0x",
            b"\x02\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02\0\0\0/a\0\0\0\0",
        ];
        for p in payloads {
            old.extend_from_slice(&(p.len() as u32).to_le_bytes());
            old.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            old.extend_from_slice(p);
        }
        let scan = scan(&old).expect("an old file reads");
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[0], put(1, "/a", "x"));
        assert_eq!(scan.records[1].op, Op::Delete);
        assert!(scan.records.iter().all(|r| r.expires_at_ms.is_none()));
    }
}
