//! [`Fill`]: one object's body, written once by the task that fetches it from
//! the origin and read by any number of viewers while it is being written
//! (read-while-writer). A viewer that joins late starts from the first byte
//! already held; a viewer that is ahead waits for the next chunk. This is
//! what lets N concurrent misses share one origin request and still each get
//! their first byte as soon as the origin sends it (the patch-day stampede),
//! where nginx's `proxy_cache_lock` makes them wait for the whole file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// Largest read from a disk-backed fill in one go.
const DISK_READ: u64 = 256 * 1024;

/// How a fill ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillEnd {
    /// Every byte arrived.
    Complete,
    /// The origin failed mid-body; readers must cut their responses.
    Failed(String),
}

#[derive(Debug, Default)]
struct Inner {
    /// Disk-backed fills write here and read back with positional reads;
    /// `chunks` then stays empty, so memory holds none of the body.
    file: Option<Arc<File>>,
    chunks: Vec<Bytes>,
    /// Byte offset at which each chunk starts (same length as `chunks`).
    starts: Vec<u64>,
    len: u64,
    end: Option<FillEnd>,
}

/// A body being written once and read many times.
#[derive(Debug)]
pub struct Fill {
    inner: Mutex<Inner>,
    /// Bumped on every append and at the end; readers wait on it.
    version: watch::Sender<u64>,
}

impl Default for Fill {
    fn default() -> Self {
        Fill { inner: Mutex::new(Inner::default()), version: watch::channel(0).0 }
    }
}

/// What a reader gets for an offset.
#[derive(Debug)]
pub enum Read {
    /// Bytes starting at the offset asked for.
    Data(Bytes),
    /// Nothing yet; wait and ask again.
    Pending,
    /// The body ended at or before the offset.
    End(FillEnd),
}

impl Fill {
    /// An empty fill, still being written.
    pub fn new() -> Self {
        Fill::default()
    }

    /// An empty fill whose bytes go to `file` (opened for reading and
    /// writing, empty) instead of memory.
    pub fn on_disk(file: File) -> Self {
        let fill = Fill::new();
        fill.lock().file = Some(Arc::new(file));
        fill
    }

    /// A complete fill of `len` bytes read from `file` (a disk object found
    /// at start-up).
    pub fn from_disk(file: File, len: u64) -> Self {
        let fill = Fill::new();
        {
            let mut inner = fill.lock();
            inner.file = Some(Arc::new(file));
            inner.len = len;
            inner.end = Some(FillEnd::Complete);
        }
        fill
    }

    /// A fill holding a whole body already.
    pub fn complete(chunks: Vec<Bytes>) -> Self {
        let fill = Fill::new();
        for c in chunks {
            fill.push(c);
        }
        fill.finish(FillEnd::Complete);
        fill
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent data (appends
        // are single pushes), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a chunk (writer only).
    pub fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        {
            let mut inner = self.lock();
            if inner.end.is_some() {
                return;
            }
            let start = inner.len;
            if let Some(file) = &inner.file {
                // The page cache takes the write; readers read it back by offset.
                if let Err(e) = file.write_all_at(&chunk, start) {
                    inner.end = Some(FillEnd::Failed(format!("cache file write: {e}")));
                    drop(inner);
                    self.version.send_modify(|v| *v += 1);
                    return;
                }
                inner.len += chunk.len() as u64;
            } else {
                inner.len += chunk.len() as u64;
                inner.starts.push(start);
                inner.chunks.push(chunk);
            }
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Ends the body (writer only). Later calls are ignored.
    pub fn finish(&self, end: FillEnd) {
        {
            let mut inner = self.lock();
            if inner.end.is_some() {
                return;
            }
            inner.end = Some(end);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// After a complete fill, merges the chunks as the origin sent them
    /// (often 8–64 KiB each) into pieces of up to `piece` bytes, so that a
    /// hit is written with a few large writes instead of many small ones.
    /// Readers keep working throughout: they address bytes by offset.
    pub fn compact(&self, piece: usize) {
        let chunks: Vec<Bytes> = {
            let inner = self.lock();
            if inner.file.is_some()
                || inner.end != Some(FillEnd::Complete)
                || inner.chunks.iter().all(|c| c.len() >= piece)
            {
                return;
            }
            inner.chunks.clone()
        };
        let mut pieces = Vec::new();
        let mut starts = Vec::new();
        let mut offset = 0u64;
        let mut current = bytes::BytesMut::new();
        for c in chunks {
            if !current.is_empty() && current.len() + c.len() > piece {
                let done = current.split().freeze();
                starts.push(offset);
                offset += done.len() as u64;
                pieces.push(done);
            }
            if current.is_empty() && c.len() >= piece {
                starts.push(offset);
                offset += c.len() as u64;
                pieces.push(c);
                continue;
            }
            current.extend_from_slice(&c);
        }
        if !current.is_empty() {
            starts.push(offset);
            pieces.push(current.freeze());
        }
        let mut inner = self.lock();
        inner.chunks = pieces;
        inner.starts = starts;
    }

    /// Bytes held so far.
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the fill ended, if it has.
    pub fn end(&self) -> Option<FillEnd> {
        self.lock().end.clone()
    }

    /// The bytes at `offset`, up to the end of the chunk that holds it.
    pub fn read_at(&self, offset: u64) -> Read {
        let inner = self.lock();
        if offset < inner.len
            && let Some(file) = &inner.file
        {
            let want = (inner.len - offset).min(DISK_READ) as usize;
            let file = Arc::clone(file);
            drop(inner);
            // A positional read of at most 256 KiB, usually from the page
            // cache (as nginx reads its cache files without aio).
            let mut buf = vec![0u8; want];
            return match file.read_exact_at(&mut buf, offset) {
                Ok(()) => Read::Data(Bytes::from(buf)),
                Err(e) => Read::End(FillEnd::Failed(format!("cache file read: {e}"))),
            };
        }
        if offset < inner.len {
            // The chunk whose start is the last one <= offset.
            let i = inner.starts.partition_point(|&s| s <= offset) - 1;
            let skip = (offset - inner.starts[i]) as usize;
            return Read::Data(inner.chunks[i].slice(skip..));
        }
        match &inner.end {
            Some(end) => Read::End(end.clone()),
            None => Read::Pending,
        }
    }

    /// Waits until something changes after `seen` (a value from
    /// [`Fill::version`]); returns the new version.
    pub async fn changed(&self, seen: u64) -> u64 {
        let mut rx = self.version.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        match rx.wait_for(|v| *v != seen).await {
            Ok(v) => *v,
            Err(_) => seen,
        }
    }

    /// The current version, to pass to [`Fill::changed`].
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_follow_the_writer() {
        let fill = Arc::new(Fill::new());
        let reader = {
            let fill = Arc::clone(&fill);
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut offset = 0u64;
                loop {
                    let seen = fill.version();
                    match fill.read_at(offset) {
                        Read::Data(b) => {
                            offset += b.len() as u64;
                            out.extend_from_slice(&b);
                        }
                        Read::Pending => {
                            fill.changed(seen).await;
                        }
                        Read::End(end) => return (out, end),
                    }
                }
            })
        };
        for i in 0..50u8 {
            fill.push(Bytes::from(vec![i; 100]));
            tokio::task::yield_now().await;
        }
        fill.finish(FillEnd::Complete);
        let (out, end) = reader.await.expect("reader");
        assert_eq!(end, FillEnd::Complete);
        assert_eq!(out.len(), 5000);
        assert!(out.chunks(100).enumerate().all(|(i, c)| c.iter().all(|&b| b as usize == i)));
    }

    #[test]
    fn compaction_keeps_every_byte_at_its_offset() {
        let chunks: Vec<Bytes> = (0..100u32).map(|i| Bytes::from(vec![(i % 256) as u8; 1000 + i as usize])).collect();
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let fill = Fill::complete(chunks);
        fill.compact(16 * 1024);
        let mut out = Vec::new();
        let mut frames = 0;
        while let Read::Data(b) = fill.read_at(out.len() as u64) {
            out.extend_from_slice(&b);
            frames += 1;
        }
        assert_eq!(out, whole);
        assert!(frames <= whole.len().div_ceil(16 * 1024) + 1, "{frames} frames");
        assert!(matches!(fill.read_at(5000), Read::Data(b) if b[0] == whole[5000]));
    }

    #[test]
    fn disk_fills_read_back_by_offset() {
        let dir = std::env::temp_dir().join(format!("sg-fill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("body");
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("open");
        let fill = Fill::on_disk(file);
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        for c in body.chunks(70_000) {
            fill.push(Bytes::copy_from_slice(c));
        }
        assert!(matches!(fill.read_at(600_000), Read::Pending));
        fill.finish(FillEnd::Complete);
        let mut out = Vec::new();
        while let Read::Data(b) = fill.read_at(out.len() as u64) {
            assert!(b.len() as u64 <= DISK_READ);
            out.extend_from_slice(&b);
        }
        assert_eq!(out, body);
        let again = Fill::from_disk(std::fs::File::open(&path).expect("reopen"), 600_000);
        assert!(matches!(again.read_at(599_999), Read::Data(b) if b[..] == body[599_999..]));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn reads_from_the_middle_of_a_chunk() {
        let fill = Fill::complete(vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")]);
        assert!(matches!(fill.read_at(8), Read::Data(b) if &b[..] == b"rld"));
        assert!(matches!(fill.read_at(6), Read::Data(b) if &b[..] == b"world"));
        assert!(matches!(fill.read_at(11), Read::End(FillEnd::Complete)));
    }
}
