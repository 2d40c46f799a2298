//! The disk tier's files: one body file and one metadata file per object,
//! in one directory.
//!
//! ```text
//! <id>.body   the body, written as it arrives from the origin
//! <id>.meta   JSON: key, status, headers, freshness, targets; written (tmp +
//!             rename) only once the body is complete
//! ```
//!
//! A body without its meta is an interrupted fill and is deleted at start-up,
//! as are metas whose body is missing or of the wrong length: after a crash
//! the tier holds only whole objects. Objects found at start-up are served
//! again (the tier survives restarts); their freshness is kept in wall-clock
//! time. Bodies are read back with positional reads (`Fill::from_disk`), so
//! an object larger than memory is never loaded whole.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::conditional::StoredDates;
use crate::fill::Fill;
use crate::memory::Object;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct DiskSettings {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// Bytes of bodies the tier holds at most.
    pub max_bytes: u64,
    /// Larger objects are not stored at all.
    pub max_object_bytes: u64,
}

/// The files of one object on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRef {
    /// Its number, unique in the directory.
    pub id: u64,
    /// The body file.
    pub body: PathBuf,
    /// The metadata file.
    pub meta: PathBuf,
}

impl DiskRef {
    fn new(dir: &Path, id: u64) -> Self {
        DiskRef { id, body: dir.join(format!("{id:016x}.body")), meta: dir.join(format!("{id:016x}.meta")) }
    }

    /// Deletes both files; missing files are not an error.
    pub fn delete(&self) {
        for p in [&self.body, &self.meta] {
            if let Err(e) = fs::remove_file(p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %p.display(), error = %e, "cannot delete a cache file");
            }
        }
    }
}

/// What `<id>.meta` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The cache key.
    pub key: String,
    /// Response status.
    pub status: u16,
    /// Response headers (values that are not visible ASCII are left out).
    pub headers: Vec<(String, String)>,
    /// Body length.
    pub len: u64,
    /// When the response was received, seconds since the epoch.
    pub received_unix: u64,
    /// The origin's `Age`, seconds.
    pub initial_age: u64,
    /// Fresh until then, milliseconds since the epoch.
    pub fresh_until_unix_ms: u64,
    /// `stale-while-revalidate` seconds.
    pub stale_while_revalidate: u64,
    /// `stale-if-error` seconds.
    pub stale_if_error: u64,
    /// The namespace (distribution id).
    pub namespace: String,
    /// Config generation of the fetch.
    pub generation: u64,
    /// Viewer target.
    pub viewer_target: String,
    /// Origin target.
    pub origin_target: String,
    /// Vary values.
    pub vary: Vec<(String, Option<String>)>,
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

impl Meta {
    /// The metadata of `object` stored under `key`.
    pub fn of(key: &str, object: &Object) -> Self {
        let now = SystemTime::now();
        let fresh_left = object.fresh_until.saturating_duration_since(Instant::now());
        let text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
        Meta {
            key: key.to_owned(),
            status: object.status.as_u16(),
            headers: object.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), text(v)?))).collect(),
            len: object.body.len(),
            received_unix: unix(object.received).as_secs(),
            initial_age: object.initial_age.as_secs(),
            fresh_until_unix_ms: (unix(now) + fresh_left).as_millis() as u64,
            stale_while_revalidate: object.stale_while_revalidate.as_secs(),
            stale_if_error: object.stale_if_error.as_secs(),
            namespace: object.namespace.to_string(),
            generation: object.generation,
            viewer_target: object.viewer_target.clone(),
            origin_target: object.origin_target.clone(),
            vary: object.vary.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_ref().and_then(text))).collect(),
        }
    }

    /// The object this metadata describes, with `body` as its fill.
    pub fn into_object(self, body: Fill, disk: DiskRef) -> Option<(String, Object)> {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            headers.append(HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?);
        }
        let mut vary = Vec::new();
        for (k, v) in &self.vary {
            let value = match v {
                Some(v) => Some(HeaderValue::from_str(v).ok()?),
                None => None,
            };
            vary.push((HeaderName::from_bytes(k.as_bytes()).ok()?, value));
        }
        let now_ms = unix(SystemTime::now()).as_millis() as u64;
        let fresh_left = Duration::from_millis(self.fresh_until_unix_ms.saturating_sub(now_ms));
        let received = UNIX_EPOCH + Duration::from_secs(self.received_unix);
        let object = Object {
            status: StatusCode::from_u16(self.status).ok()?,
            dates: StoredDates::of(&headers, received),
            headers,
            body: std::sync::Arc::new(body),
            content_length: Some(self.len),
            received,
            initial_age: Duration::from_secs(self.initial_age),
            fresh_until: Instant::now() + fresh_left,
            stale_while_revalidate: Duration::from_secs(self.stale_while_revalidate),
            stale_if_error: Duration::from_secs(self.stale_if_error),
            namespace: self.namespace.into(),
            generation: self.generation,
            viewer_target: self.viewer_target,
            origin_target: self.origin_target,
            vary,
            disk: Some(disk),
        };
        Some((self.key, object))
    }
}

/// The tier's directory.
#[derive(Debug)]
pub struct Disk {
    settings: DiskSettings,
    next_id: AtomicU64,
}

impl Disk {
    /// Opens (creating) the directory and returns the whole objects in it;
    /// everything else in it that looks like ours is deleted.
    pub fn open(settings: DiskSettings) -> io::Result<(Disk, Vec<(String, Object)>)> {
        fs::create_dir_all(&settings.dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&settings.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.ends_with(".tmp") {
                fs::remove_file(&path)?;
                continue;
            }
            if let Some(id) = name.strip_suffix(".body").and_then(|h| u64::from_str_radix(h, 16).ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut objects = Vec::new();
        for &id in &ids {
            let r = DiskRef::new(&settings.dir, id);
            match Self::load_one(&r) {
                Some(o) => objects.push(o),
                None => r.delete(),
            }
        }
        let next = ids.last().map_or(1, |m| m + 1);
        Ok((Disk { settings, next_id: AtomicU64::new(next) }, objects))
    }

    fn load_one(r: &DiskRef) -> Option<(String, Object)> {
        let meta: Meta = serde_json::from_slice(&fs::read(&r.meta).ok()?).ok()?;
        let file = File::open(&r.body).ok()?;
        if file.metadata().ok()?.len() != meta.len {
            return None;
        }
        let len = meta.len;
        meta.into_object(Fill::from_disk(file, len), r.clone())
    }

    /// The settings.
    pub fn settings(&self) -> &DiskSettings {
        &self.settings
    }

    /// A new, empty body file and the fill that writes to it.
    pub fn create(&self) -> io::Result<(Fill, DiskRef)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let r = DiskRef::new(&self.settings.dir, id);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&r.body)?;
        Ok((Fill::on_disk(file), r))
    }

    /// Writes the metadata of a complete object (tmp + rename, so a crash
    /// leaves either the old meta, none, or the new one).
    pub fn persist(r: &DiskRef, meta: &Meta) -> io::Result<()> {
        let tmp = r.meta.with_extension("meta.tmp");
        fs::write(&tmp, serde_json::to_vec(meta).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &r.meta)
    }
}
