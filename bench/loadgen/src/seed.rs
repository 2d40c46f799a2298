//! `seed-etcd` and `cold-start`: a large configuration written straight
//! into etcd, and the time a new instance takes from process start to
//! ready on it.
//!
//! `seed-etcd` writes N stream routes and N SSL objects, each SSL object
//! with its own ECDSA P-256 certificate for its route's SNI. Values are made
//! by the Admin API's own path (`Wire::from_value`, the id and the times
//! set, SSL private keys sealed under the keyring with `seal_ssl_value`),
//! so they are byte for byte what a `PUT` through the Admin API stores;
//! they go to etcd with `EtcdStore` puts, many in flight.
//!
//! `cold-start` spawns `shardgate run`, polls `/readyz` every millisecond
//! until 200, reads the process's RSS, checks on `/metrics` that every
//! resource loaded without problems, and splits the start from the
//! instance's JSON log: first log line, connected to etcd, configuration
//! loaded (list and decode), published (compile), ready. The instance is
//! stopped with SIGTERM (SIGKILL after 10 s) before returning.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shardgate_e2e::TestCert;
use shardgate_etcd::{EtcdOptions, EtcdStore};
use shardgate_model::resource::Wire;
use shardgate_model::{Keyring, ResourceId, ResourceKind};
use shardgate_store::{Condition, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Res;
use crate::cluster::{log_message, log_time_us, metric_value, now_us};
use crate::http1::Conn;

/// Settings of `seed-etcd`.
#[derive(Debug, Clone)]
pub struct SeedSettings {
    /// An etcd endpoint.
    pub etcd: String,
    /// The store prefix, e.g. `/apisix`.
    pub prefix: String,
    /// Stream routes and SSL objects to write (as many of each).
    pub count: usize,
    /// The keyring entry SSL private keys are sealed under.
    pub keyring: String,
    /// Puts in flight at once.
    pub concurrency: usize,
    /// The routes' upstream node.
    pub upstream: String,
    /// SNIs are `s<i>.<zone>`.
    pub zone: String,
}

/// The stored bytes of `body` as the Admin API's `PUT /<kind>/<id>` makes
/// them (`admin::api` `put` and `stored_bytes`).
fn stored(kind: ResourceKind, id: &str, body: Value, now: i64, keyring: &Keyring) -> Res<(String, Vec<u8>)> {
    let id = ResourceId::parse(id).map_err(|e| format!("id {id}: {e}"))?;
    let mut wire = Wire::from_value(kind, body).map_err(|e| format!("{kind} {id}: {e}"))?;
    wire.set_id(&id);
    wire.set_times(now, now);
    let bytes = if kind == ResourceKind::Ssls {
        let mut value = wire.to_value();
        shardgate_model::keyring::seal_ssl_value(keyring, &mut value)?;
        serde_json::to_vec(&value)?
    } else {
        wire.to_bytes()
    };
    Ok((id.to_string(), bytes))
}

/// Runs `seed-etcd`; prints a JSON summary.
pub async fn seed(s: SeedSettings) -> Res<()> {
    let keyring = Keyring::new(vec![s.keyring.clone()])?;
    let now = (now_us() / 1_000_000) as i64;

    // Certificates first, on every core: the load is timed on its own.
    let generating = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per = s.count.div_ceil(threads);
    let zone = s.zone.clone();
    let certs: Vec<TestCert> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let zone = &zone;
                scope.spawn(move || {
                    (t * per..((t + 1) * per).min(s.count))
                        .map(|i| TestCert::ecdsa(&[&format!("s{i}.{zone}")]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    if certs.len() != s.count {
        return Err(format!("made {} certificates of {}", certs.len(), s.count).into());
    }
    let mut kvs: Vec<(String, Vec<u8>)> = Vec::with_capacity(2 * s.count);
    for (i, cert) in certs.iter().enumerate() {
        let sni = format!("s{i}.{}", s.zone);
        let (id, bytes) = stored(ResourceKind::Ssls, &format!("s{i}"), cert.ssl_body(&[&sni]), now, &keyring)?;
        kvs.push((ResourceKind::Ssls.key(&s.prefix, &ResourceId::parse(&id)?), bytes));
        let route = json!({"sni": sni, "upstream": {"nodes": {s.upstream.clone(): 1}, "type": "roundrobin"}});
        let (id, bytes) = stored(ResourceKind::StreamRoutes, &format!("r{i}"), route, now, &keyring)?;
        kvs.push((ResourceKind::StreamRoutes.key(&s.prefix, &ResourceId::parse(&id)?), bytes));
    }
    let generate_secs = generating.elapsed().as_secs_f64();
    let bytes: usize = kvs.iter().map(|(k, v)| k.len() + v.len()).sum();

    let store = EtcdStore::connect(EtcdOptions::new([s.etcd.clone()], s.prefix.clone())).await?;
    let loading = Instant::now();
    let slots = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let keys = kvs.len();
    for (key, value) in kvs {
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let store = store.clone();
        tasks.spawn(async move {
            let r = store.put(&key, value, Condition::Always).await.map_err(|e| format!("put {key}: {e}"));
            drop(permit);
            r
        });
        // Reap finished puts as we go: an error stops the load early.
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let load_secs = loading.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"keys": keys, "bytes": bytes, "generate_seconds": generate_secs, "load_seconds": load_secs,
               "revision": store.revision().await?})
    );
    Ok(())
}

/// Settings of `cold-start`.
#[derive(Debug, Clone)]
pub struct ColdSettings {
    /// The `shardgate` binary.
    pub shardgate: PathBuf,
    /// Its bootstrap file (store on etcd, JSON logs at info).
    pub config: PathBuf,
    /// Its metrics listener.
    pub metrics: std::net::SocketAddr,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
    /// Longest wait for ready.
    pub timeout: Duration,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs one `cold-start`; prints a JSON summary.
pub async fn cold_start(s: ColdSettings) -> Res<()> {
    let log = std::fs::File::create(&s.log).map_err(|e| format!("{}: {e}", s.log.display()))?;
    let spawned_us = now_us();
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(&s.shardgate)
        .arg("run")
        .arg("--config")
        .arg(&s.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", s.shardgate.display()))?;
    let pid = child.id().ok_or("the instance exited at once")?;
    let result = measure(&s, &mut child, pid, spawned, spawned_us).await;
    // Stop what was started, by its PID, whatever happened.
    let term = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    if !term.is_ok_and(|st| st.success()) || tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err()
    {
        child.kill().await?;
    }
    println!("{}", result?);
    Ok(())
}

async fn measure(
    s: &ColdSettings,
    child: &mut tokio::process::Child,
    pid: u32,
    spawned: Instant,
    spawned_us: u64,
) -> Res<Value> {
    let deadline = spawned + s.timeout;
    let mut conn: Option<Conn> = None;
    let ready = loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("the instance exited with {status} before ready; see {}", s.log.display()).into());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {:?}; see {}", s.timeout, s.log.display()).into());
        }
        if conn.is_none() {
            conn = Conn::connect(s.metrics).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.request("GET", "/readyz", &[], &[]).await {
                Ok(a) if a.status == 200 => break spawned.elapsed(),
                Ok(_) => {}
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let rss_ready = rss_kb(pid);
    let page = match conn.as_mut() {
        Some(c) => c.request("GET", "/metrics", &[], &[]).await?.body,
        None => Vec::new(),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_later = rss_kb(pid);

    // The start, split by the instance's own log.
    let text = std::fs::read_to_string(&s.log)?;
    let mut first = None;
    let mut marks: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut compile_us = None;
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    for v in &lines {
        let Some(at) = log_time_us(v) else { continue };
        first.get_or_insert(at);
        let Some(msg) = log_message(v) else { continue };
        for m in
            ["connected to etcd", "configuration loaded from the store", "configuration published", "shardgate ready"]
        {
            if msg == m && !marks.contains_key(m) {
                marks.insert(m, at);
                if m == "configuration published" {
                    compile_us = v.get("compile_us").and_then(Value::as_u64);
                }
            }
        }
    }
    let since = |at: Option<u64>| at.map(|t| (t.saturating_sub(spawned_us) as f64 / 1000.0 * 10.0).round() / 10.0);
    let connected = marks.get("connected to etcd").copied();
    let loaded = marks.get("configuration loaded from the store").copied();
    let published = marks.get("configuration published").copied();
    let ms = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a) as f64 / 1000.0 * 10.0).round() / 10.0),
        _ => None,
    };
    Ok(json!({
        "ready_ms": (ready.as_secs_f64() * 10_000.0).round() / 10.0,
        "rss_ready_kb": rss_ready,
        "rss_2s_kb": rss_later,
        "stream_routes": metric_value(&page, "shardgate_config_resources{kind=\"stream_routes\"} "),
        "ssls": metric_value(&page, "shardgate_config_resources{kind=\"ssls\"} "),
        "problems": metric_value(&page, "shardgate_config_problems "),
        "log_ms_since_spawn": {
            "first_line": since(first),
            "connected": since(connected),
            "loaded": since(loaded),
            "published": since(published),
            "ready": since(marks.get("shardgate ready").copied()),
        },
        "resync_ms": ms(connected, published),
        "list_and_decode_ms": ms(connected, loaded),
        "compile_ms": compile_us.map(|c| (c as f64 / 100.0).round() / 10.0),
    }))
}
