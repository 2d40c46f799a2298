//! `propagate`: configuration changes written through the Admin APIs of
//! several instances sharing one etcd, at a fixed rate, and the time from
//! each write's acknowledgement until every instance serves it.
//!
//! Each change is one Admin API write (`PUT` with an id), spread over the
//! instances in turn, in a cycle of ten: five new stream routes with new
//! SNIs (three under a wildcard certificate, two under a certificate of
//! their own made a moment before), three upstream node changes and two new
//! SSL objects (ECDSA P-256, one per new SNI). Writes go out on schedule
//! whether or not earlier ones have been answered (an open loop).
//!
//! The Admin API does not return a write's revision, so every written value
//! carries a marker in its `desc`, and a watch on the prefix in etcd reads
//! the revision of each marker. An instance serves a write once the snapshot
//! it publishes is at or past that revision. Two observers tell when that
//! happens, independently:
//! - the instance's log: the `configuration published` line (JSON format)
//!   has the generation and the time the snapshot was swapped in, stamped by
//!   the instance itself, so this observer has no polling granularity;
//! - `shardgate_config_generation` on `/metrics`, polled over a kept-alive
//!   connection per instance every `--poll-us`; the time is when the answer
//!   arrived, so it is late by up to one polling interval.
//!
//! At the end, a sample of the new routes is checked on every instance: a
//! TLS connection with the route's SNI must present the expected
//! certificate and echo 64 bytes through the route's upstream (this
//! process's own echo servers), proving the change serves, not only that it
//! compiled.
//!
//! Every loop is bounded in count and time; only the addresses given are
//! contacted.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shardgate_e2e::{TestCert, TlsClient};
use shardgate_etcd::{EtcdOptions, EtcdStore};
use shardgate_store::{EventKind, Store};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::Res;
use crate::http1::{Conn, Pool};

/// Most writes in flight at once; a slower Admin API delays later writes
/// past their schedule rather than piling up without bound.
const MAX_IN_FLIGHT: usize = 256;
/// Longest wait, after the last write, for every instance to serve it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Upstream objects the changes rotate over.
const UPSTREAMS: usize = 10;
/// The change cycle (see the module documentation).
const CYCLE: [Kind; 10] = [
    Kind::WildRoute { inline: false },
    Kind::Upstream,
    Kind::Ssl,
    Kind::OwnRoute,
    Kind::WildRoute { inline: true },
    Kind::Upstream,
    Kind::WildRoute { inline: false },
    Kind::Ssl,
    Kind::OwnRoute,
    Kind::Upstream,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A new route whose SNI the wildcard certificate covers; its upstream
    /// inline or by id.
    WildRoute { inline: bool },
    /// A new route for the SNI of the SSL object written just before.
    OwnRoute,
    /// New nodes (weights) for one of the upstream objects.
    Upstream,
    /// A new SSL object with its own certificate.
    Ssl,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::WildRoute { .. } | Kind::OwnRoute => "stream_route",
            Kind::Upstream => "upstream",
            Kind::Ssl => "ssl",
        }
    }
}

/// Settings of one `propagate` run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every instance's Admin API; writes go to each in turn.
    pub admin: Vec<SocketAddr>,
    /// The admin key.
    pub key: String,
    /// Changes per second, all instances together.
    pub rate: u64,
    /// How long changes are written.
    pub seconds: u64,
    /// An etcd endpoint, to read each write's revision; without it only
    /// the writes are made (a load, no propagation figures).
    pub etcd: Option<String>,
    /// The instances' store prefix.
    pub prefix: String,
    /// Every instance's metrics listener, in the order of `admin` (empty:
    /// no polling).
    pub metrics: Vec<SocketAddr>,
    /// Every instance's log file (JSON format, level info), in the order
    /// of `admin` (empty: no log observer).
    pub logs: Vec<PathBuf>,
    /// Every instance's TLS stream listener, in the order of `admin`, for
    /// the final check.
    pub stream: Vec<SocketAddr>,
    /// Metrics polling interval, µs; 0 turns polling off.
    pub poll_us: u64,
    /// How many new routes to check through every instance at the end.
    pub verify: usize,
    /// Makes SNIs (and, without `ids`, ids) unique to this run (several
    /// runs share one etcd).
    pub tag: String,
    /// The ids' prefix, when not the tag: a run with the ids of an earlier
    /// one replaces its objects (new SNIs and certificates under the same
    /// ids), so the configuration stays the same size run after run.
    pub ids: Option<String>,
}

/// One write as the client saw it.
#[derive(Debug, Clone)]
struct Write {
    kind: Kind,
    instance: usize,
    /// HTTP status, 0 for a transport error.
    status: u16,
    /// When it was sent and when the answer arrived, µs since the epoch.
    sent_us: u64,
    ack_us: u64,
    /// Lateness of the send against the schedule, µs.
    late_us: u64,
}

/// A new route the final check may use.
#[derive(Debug, Clone)]
struct RouteCheck {
    change: usize,
    sni: String,
    cert_der: Arc<Vec<u8>>,
}

/// (time µs since the epoch, generation) as an observer saw it; sorted by time.
type Observations = Vec<(u64, u64)>;

pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The `p` quantile of sorted `v` (nearest rank below).
pub(crate) fn quantile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn summary_ms(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "count": v.len(),
        "p50_ms": ms(quantile(&v, 0.50)),
        "p90_ms": ms(quantile(&v, 0.90)),
        "p99_ms": ms(quantile(&v, 0.99)),
        "max_ms": ms(v.last().copied().unwrap_or(0)),
    })
}

fn marker(tag: &str, what: &str) -> String {
    format!("bench {tag} {what}")
}

async fn echo_server() -> Res<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            if s.set_nodelay(true).is_ok() {
                tokio::spawn(crate::echo_loop(s));
            }
        }
    });
    Ok(addr)
}

struct Writer {
    pools: Vec<Pool>,
    key: String,
}

impl Writer {
    async fn put(&self, instance: usize, path: &str, body: &Value) -> Res<(u16, Vec<u8>)> {
        let bytes = serde_json::to_vec(body)?;
        let a = self.pools[instance]
            .request("PUT", path, &[("X-API-KEY", &self.key), ("Content-Type", "application/json")], &bytes)
            .await?;
        Ok((a.status, a.body))
    }

    async fn put_ok(&self, instance: usize, path: &str, body: &Value) -> Res<()> {
        let (status, answer) = self.put(instance, path, body).await?;
        if status != 200 && status != 201 {
            return Err(format!("PUT {path}: {status} {}", String::from_utf8_lossy(&answer)).into());
        }
        Ok(())
    }
}

/// Follows `<prefix>/` in etcd and maps each `desc` marker to the revision
/// of the write that carried it.
fn follow_revisions(
    store: EtcdStore,
    prefix: String,
    from: u64,
    stop: Arc<AtomicBool>,
) -> Arc<Mutex<HashMap<String, u64>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let out = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut watch = match store.watch(&format!("{prefix}/"), from).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("propagate: etcd watch: {e}");
                return;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let batch = match tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(batch))) => batch,
                Ok(Some(Err(e))) => {
                    eprintln!("propagate: etcd watch ended: {e}");
                    return;
                }
                Ok(None) => return,
            };
            let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for e in batch.into_iter().filter(|e| e.kind == EventKind::Put) {
                let desc = serde_json::from_slice::<Value>(&e.kv.value)
                    .ok()
                    .and_then(|v| v.get("desc").and_then(Value::as_str).map(str::to_owned));
                if let Some(desc) = desc {
                    seen.insert(desc, e.kv.mod_revision);
                }
            }
        }
    });
    out
}

/// Polls `shardgate_config_generation` on `addr` every `every`, recording
/// each new value with the time its answer arrived.
fn poll_generation(addr: SocketAddr, every: Duration, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Observations> {
    tokio::spawn(async move {
        let mut out: Observations = Vec::new();
        let mut conn: Option<Conn> = None;
        let mut last = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut errors = 0u32;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::connect(addr).await {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                },
            };
            match c.request("GET", "/metrics", &[], &[]).await {
                Ok(a) => {
                    let at = now_us();
                    if let Some(g) = generation_of(&a.body)
                        && last != Some(g)
                    {
                        last = Some(g);
                        out.push((at, g));
                    }
                }
                Err(_) => {
                    errors += 1;
                    conn = None;
                }
            }
        }
        if errors > 0 {
            eprintln!("propagate: {errors} failed polls of {addr}/metrics");
        }
        out
    })
}

/// The value of `shardgate_config_generation` in a Prometheus text page.
pub(crate) fn generation_of(page: &[u8]) -> Option<u64> {
    metric_value(page, "shardgate_config_generation ")
}

/// The first sample of the series whose line starts with `series` (name
/// and labels, then a space).
pub(crate) fn metric_value(page: &[u8], series: &str) -> Option<u64> {
    let text = std::str::from_utf8(page).ok()?;
    let line = text.lines().find(|l| l.starts_with(series))?;
    let v: f64 = line[series.len()..].trim().parse().ok()?;
    Some(v as u64)
}

/// A `configuration published` line of an instance's JSON log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    pub at_us: u64,
    pub generation: u64,
    pub compile_us: u64,
}

/// Reads new lines of `path` every millisecond until `stop`, keeping the
/// `configuration published` ones. (Reads of a regular file return at
/// once, so they run on the runtime.)
fn tail_log(path: PathBuf, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Res<Vec<Published>>> {
    tokio::spawn(async move {
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.seek(SeekFrom::End(0))?;
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let n = f.read(&mut chunk)?;
            pending.extend_from_slice(&chunk[..n]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                if let Some(p) = published(&line) {
                    out.push(p);
                }
            }
            if n == 0 {
                if stopping {
                    return Ok(out);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
}

/// Parses a JSON log line; `Some` for `configuration published`.
pub(crate) fn published(line: &[u8]) -> Option<Published> {
    let v: Value = serde_json::from_slice(line).ok()?;
    (log_message(&v)? == "configuration published").then_some(())?;
    Some(Published {
        at_us: log_time_us(&v)?,
        generation: v.get("generation")?.as_u64()?,
        compile_us: v.get("compile_us").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// The message of a JSON log line (tracing-subscriber's `flatten_event`).
pub(crate) fn log_message(v: &Value) -> Option<&str> {
    v.get("message").and_then(Value::as_str)
}

/// The timestamp of a JSON log line, µs since the epoch.
pub(crate) fn log_time_us(v: &Value) -> Option<u64> {
    rfc3339_us(v.get("timestamp")?.as_str()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC, as tracing-subscriber writes it)
/// as µs since the epoch.
pub(crate) fn rfc3339_us(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let mut micros = 0i64;
    for (i, c) in frac.chars().take(6).enumerate() {
        micros += i64::from(c.to_digit(10)?) * 10i64.pow(5 - i as u32);
    }
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The first time at or after which `obs` shows a generation ≥ `rev`.
fn served_at(obs: &Observations, rev: u64) -> Option<u64> {
    obs.iter().find(|(_, g)| *g >= rev).map(|(t, _)| *t)
}

/// Runs one `propagate`; prints a JSON summary.
pub async fn propagate(s: Settings) -> Res<()> {
    let n = s.admin.len();
    if n == 0 {
        return Err("give at least one --admin address".into());
    }
    for (name, len) in [("--metrics", s.metrics.len()), ("--log", s.logs.len()), ("--stream", s.stream.len())] {
        if len != 0 && len != n {
            return Err(format!("{name} lists {len} addresses; give one per --admin ({n}) or none").into());
        }
    }
    let echo = [echo_server().await?, echo_server().await?];
    let writer = Arc::new(Writer { pools: s.admin.iter().map(|a| Pool::new(*a)).collect(), key: s.key.clone() });
    let tag = s.tag.clone();
    let ids = s.ids.clone().unwrap_or_else(|| tag.clone());
    let zone = format!("{tag}.bench.test");

    // Revisions come from etcd, from before the setup on.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let revisions = match &s.etcd {
        Some(endpoint) => {
            let store = EtcdStore::connect(EtcdOptions::new([endpoint.clone()], s.prefix.clone())).await?;
            let from = store.revision().await? + 1;
            Some(follow_revisions(store, s.prefix.clone(), from, Arc::clone(&stop_watch)))
        }
        None => None,
    };

    // Setup: the upstreams the changes rotate over and the wildcard certificate.
    let wild = TestCert::ecdsa(&[&format!("*.{zone}")]);
    let wild_der = Arc::new(wild.der.clone());
    for k in 0..UPSTREAMS {
        let body = json!({"nodes": {echo[0].to_string(): 1}, "type": "roundrobin", "desc": marker(&tag, &format!("setup u{k}"))});
        writer.put_ok(k % n, &format!("/apisix/admin/upstreams/{ids}-u{k}"), &body).await?;
    }
    let mut body = wild.ssl_body(&[&format!("*.{zone}")]);
    body["desc"] = json!(marker(&tag, "setup wildcard"));
    writer.put_ok(0, &format!("/apisix/admin/ssls/{ids}-wild"), &body).await?;

    // Certificates for the new SSL objects, made before the clock starts.
    let total = (s.rate * s.seconds) as usize;
    let ssl_slots: Vec<usize> = (0..total).filter(|i| CYCLE[i % CYCLE.len()] == Kind::Ssl).collect();
    let mut certs: HashMap<usize, TestCert> = HashMap::new();
    for &i in &ssl_slots {
        certs.insert(i, TestCert::ecdsa(&[&format!("c{i}.{zone}")]));
    }
    let certs = Arc::new(certs);

    // The setup must serve everywhere before the clock starts.
    let setup_marker = marker(&tag, "setup wildcard");
    if let Some(revs) = &revisions
        && !s.metrics.is_empty()
    {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let rev = loop {
            if let Some(r) = revs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&setup_marker) {
                break *r;
            }
            if Instant::now() > deadline {
                return Err("the setup writes never showed in etcd's watch".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        for m in &s.metrics {
            let mut c = Conn::connect(*m).await?;
            loop {
                let a = c.request("GET", "/metrics", &[], &[]).await?;
                if generation_of(&a.body).is_some_and(|g| g >= rev) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("instance {m} never served the setup (revision {rev})").into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Observers.
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = if s.poll_us > 0 {
        s.metrics.iter().map(|m| poll_generation(*m, Duration::from_micros(s.poll_us), Arc::clone(&stop))).collect()
    } else {
        Vec::new()
    };
    let tailers: Vec<_> = s.logs.iter().map(|p| tail_log(p.clone(), Arc::clone(&stop))).collect();

    // The writes, on schedule.
    let period = Duration::from_secs_f64(1.0 / s.rate.max(1) as f64);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    eprintln!("propagate: writing {total} changes at {}/s", s.rate);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut checks: Vec<RouteCheck> = Vec::new();
    for i in 0..total {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let late_us = Instant::now().saturating_duration_since(due).as_micros() as u64;
        let kind = CYCLE[i % CYCLE.len()];
        let desc = marker(&tag, &format!("change {i}"));
        let (path, body) = match kind {
            Kind::WildRoute { inline } => {
                let sni = format!("r{i}.{zone}");
                checks.push(RouteCheck { change: i, sni: sni.clone(), cert_der: Arc::clone(&wild_der) });
                let mut body = json!({"sni": sni, "desc": desc});
                if inline {
                    body["upstream"] = json!({"nodes": {echo[i % 2].to_string(): 1}, "type": "roundrobin"});
                } else {
                    body["upstream_id"] = json!(format!("{ids}-u{}", i % UPSTREAMS));
                }
                (format!("/apisix/admin/stream_routes/{ids}-r{i}"), body)
            }
            Kind::OwnRoute => {
                // The SSL object of the slot before.
                let sni = format!("c{}.{zone}", i - 1);
                let der = certs.get(&(i - 1)).map(|c| Arc::new(c.der.clone())).ok_or("no certificate for the route")?;
                checks.push(RouteCheck { change: i, sni: sni.clone(), cert_der: der });
                let body = json!({"sni": sni, "upstream_id": format!("{ids}-u{}", i % UPSTREAMS), "desc": desc});
                (format!("/apisix/admin/stream_routes/{ids}-r{i}"), body)
            }
            Kind::Upstream => {
                // The upstream changes (three a cycle) rotate over the
                // upstreams: each is rewritten every UPSTREAMS of them.
                let nth =
                    i / CYCLE.len() * 3 + CYCLE[..i % CYCLE.len()].iter().filter(|k| **k == Kind::Upstream).count();
                let k = nth % UPSTREAMS;
                // Both echo servers, weights changing with every write.
                let body = json!({
                    "nodes": {echo[0].to_string(): 1 + i % 7, echo[1].to_string(): 1 + (i / 7) % 5},
                    "type": "roundrobin",
                    "desc": desc,
                });
                (format!("/apisix/admin/upstreams/{ids}-u{k}"), body)
            }
            Kind::Ssl => {
                let cert = certs.get(&i).ok_or("no certificate for the SSL object")?;
                let mut body = cert.ssl_body(&[&format!("c{i}.{zone}")]);
                body["desc"] = json!(desc);
                (format!("/apisix/admin/ssls/{ids}-s{i}"), body)
            }
        };
        let instance = i % n;
        let writer = Arc::clone(&writer);
        tasks.push(tokio::spawn(async move {
            let sent_us = now_us();
            let status = match writer.put(instance, &path, &body).await {
                Ok((status, answer)) => {
                    if status != 200 && status != 201 {
                        eprintln!(
                            "propagate: PUT {path} to instance {instance}: {status} {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                    status
                }
                Err(e) => {
                    eprintln!("propagate: PUT {path} to instance {instance}: {e}");
                    0
                }
            };
            drop(permit);
            Write { kind, instance, status, sent_us, ack_us: now_us(), late_us }
        }));
    }
    let mut writes = Vec::with_capacity(total);
    for t in tasks {
        writes.push(t.await?);
    }
    let write_secs = started.elapsed().as_secs_f64();

    // Wait until every acknowledged write has its revision and every
    // instance serves the last of them.
    let ok = |w: &Write| w.status == 200 || w.status == 201;
    let mut rev_of: Vec<Option<u64>> = vec![None; total];
    if let Some(revs) = &revisions {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            {
                let seen = revs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (i, r) in rev_of.iter_mut().enumerate() {
                    *r = seen.get(&marker(&tag, &format!("change {i}"))).copied();
                }
            }
            let missing = writes.iter().zip(&rev_of).filter(|(w, r)| ok(w) && r.is_none()).count();
            if missing == 0 || Instant::now() > deadline {
                if missing > 0 {
                    eprintln!("propagate: {missing} acknowledged writes never showed in etcd's watch");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let last = rev_of.iter().flatten().copied().max().unwrap_or(0);
        for m in &s.metrics {
            let mut c = Conn::connect(*m).await?;
            loop {
                let a = c.request("GET", "/metrics", &[], &[]).await?;
                if generation_of(&a.body).is_some_and(|g| g >= last) || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // The log observer reads every millisecond; let it catch the last line.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    stop_watch.store(true, Ordering::Relaxed);
    let mut polled: Vec<Observations> = Vec::new();
    for p in pollers {
        polled.push(p.await?);
    }
    let mut logged: Vec<Vec<Published>> = Vec::new();
    for t in tailers {
        logged.push(t.await??);
    }

    // Statuses.
    let mut statuses: HashMap<String, u64> = HashMap::new();
    for w in &writes {
        *statuses.entry(if w.status == 0 { "error".to_owned() } else { w.status.to_string() }).or_default() += 1;
    }
    let mut by_kind: HashMap<&str, u64> = HashMap::new();
    for w in writes.iter().filter(|w| ok(w)) {
        *by_kind.entry(w.kind.label()).or_default() += 1;
    }
    let write_latency: Vec<u64> = writes.iter().filter(|w| ok(w)).map(|w| w.ack_us.saturating_sub(w.sent_us)).collect();
    let late: Vec<u64> = writes.iter().map(|w| w.late_us).collect();

    // Propagation: acknowledgement → served by every instance.
    let spread = |obs: &[Observations]| {
        let mut all = Vec::new();
        let mut writer_only = Vec::new();
        let mut unseen = 0u64;
        for (w, rev) in writes.iter().zip(&rev_of) {
            let (true, Some(rev)) = (ok(w), rev) else { continue };
            let at: Vec<Option<u64>> = obs.iter().map(|o| served_at(o, *rev)).collect();
            if at.iter().any(Option::is_none) {
                unseen += 1;
                continue;
            }
            let last = at.iter().flatten().copied().max().unwrap_or(0);
            // An instance may serve before its client has the answer: 0 then.
            all.push(last.saturating_sub(w.ack_us));
            if let Some(Some(t)) = at.get(w.instance) {
                writer_only.push(t.saturating_sub(w.ack_us));
            }
        }
        (all, writer_only, unseen)
    };
    let log_obs: Vec<Observations> =
        logged.iter().map(|l| l.iter().map(|p| (p.at_us, p.generation)).collect()).collect();
    let mut result = json!({
        "instances": n,
        "rate": s.rate,
        "writes": total,
        "write_seconds": write_secs,
        "statuses": statuses,
        "acknowledged_by_kind": by_kind,
        "write_latency": summary_ms(write_latency),
        "send_lateness": summary_ms(late),
    });
    if revisions.is_some() {
        if !logged.is_empty() {
            let (all, own, unseen) = spread(&log_obs);
            let compile: Vec<u64> = logged.iter().flatten().map(|p| p.compile_us).collect();
            let publishes: Vec<usize> = logged.iter().map(Vec::len).collect();
            result["propagation_log"] = summary_ms(all);
            result["propagation_log"]["unseen"] = json!(unseen);
            result["propagation_log_writing_instance"] = summary_ms(own);
            result["compile"] = summary_ms(compile);
            result["publishes_per_instance"] = json!(publishes);
        }
        if !polled.is_empty() {
            let (all, own, unseen) = spread(&polled);
            result["propagation_poll"] = summary_ms(all);
            result["propagation_poll"]["unseen"] = json!(unseen);
            result["propagation_poll"]["interval_us"] = json!(s.poll_us);
            result["propagation_poll_writing_instance"] = summary_ms(own);
        }
    }

    // The final check: sampled new routes through every instance.
    if s.verify > 0 && !s.stream.is_empty() {
        let acked: Vec<&RouteCheck> = checks.iter().filter(|c| ok(&writes[c.change])).collect();
        let step = (acked.len() / s.verify).max(1);
        let sample: Vec<&RouteCheck> = acked.iter().step_by(step).take(s.verify).copied().collect();
        let client = TlsClient::default();
        let (mut good, mut bad) = (0u64, 0u64);
        for c in &sample {
            for addr in &s.stream {
                match check_route(&client, *addr, &c.sni, &c.cert_der).await {
                    Ok(()) => good += 1,
                    Err(e) => {
                        bad += 1;
                        eprintln!("propagate: {} through {addr}: {e}", c.sni);
                    }
                }
            }
        }
        result["verified"] = json!({"routes": sample.len(), "connections_ok": good, "connections_failed": bad});
    }
    println!("{result}");
    Ok(())
}

/// One TLS connection with `sni` to `addr`: the certificate presented must
/// be `der`, and 64 bytes must come back.
async fn check_route(client: &TlsClient, addr: SocketAddr, sni: &str, der: &[u8]) -> Res<()> {
    let mut s = client.connect(addr, Some(sni)).await?;
    if shardgate_e2e::tls::presented_cert(&s) != der {
        return Err("the gateway presented another certificate".into());
    }
    let mut buf = [0u8; 128];
    tokio::time::timeout(Duration::from_secs(5), crate::echo_once(&mut s, &[b'v'; 64], &mut buf))
        .await
        .map_err(|_| "no echo within 5 s")??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps_become_epoch_micros() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_us("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        // date -u -d 2026-11-23T04:11:40Z +%s → 1795407100
        assert_eq!(rfc3339_us("2026-11-23T04:11:40.123456Z"), Some(1_795_407_100_123_456));
        assert_eq!(rfc3339_us("2024-02-29T23:59:59.000001Z"), Some(1_709_251_199_000_001));
        assert_eq!(rfc3339_us("not a time"), None);
    }

    #[test]
    fn published_lines_are_read_from_json_logs() {
        let line = br#"{"timestamp":"1970-01-01T00:00:02.000250Z","level":"INFO","message":"configuration published","generation":42,"stream_routes":3,"compile_us":117,"target":"shardgate_control::reconciler"}"#;
        let p = published(line).expect("a published line");
        assert_eq!((p.at_us, p.generation, p.compile_us), (2_000_250, 42, 117));
        assert!(published(br#"{"timestamp":"1970-01-01T00:00:02Z","message":"resource stored"}"#).is_none());
    }

    #[test]
    fn the_generation_is_read_from_prometheus_text() {
        let page = b"# HELP shardgate_config_generation x\nshardgate_config_generation_other 3\nshardgate_config_generation 1234\n";
        assert_eq!(generation_of(page), Some(1234));
        assert_eq!(metric_value(b"a{kind=\"ssls\"} 10000\n", "a{kind=\"ssls\"} "), Some(10000));
    }
}
