//! Live reload of the bootstrap file (SIGHUP, or `shardgate reload`).
//!
//! ```text
//! SIGHUP -> read and check the file (the checks of `shardgate validate`), on a
//!           blocking thread (plaintext dashboard passwords are hashed there)
//!   invalid        -> refused: error logged with the field path, counted; nothing changes
//!   -> settings that cannot change live differ from the start? one warning naming each
//!   -> listeners: bind what is added (a bind failure refuses the reload, naming the
//!      address; nothing changes), then start, swap and stop (see `listeners`)
//!   -> log.level through the filter's reload handle; drain.* read at SIGTERM
//!   -> counted, timestamped, and described on the metrics listener's /status/reload
//! ```
//!
//! What applies live: `stream.tcp`, `edge.http` (listeners added, removed,
//! changed), `stream.only`, the per-connection timeouts and bounds in
//! [`LIVE`], `log.level` and `drain.*`. Everything else is fixed at start:
//! a change is reported as needing a restart and ignored until then. Fields
//! are compared in their serialized form, so a field added to the file
//! later needs a restart until it is added to [`LIVE`] (the safe default).
//!
//! Signals are coalesced: SIGHUPs that arrive while a reload runs start
//! one more reload after it, which reads the file as it is then.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shardgate_core::{Drain, Metrics};
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{Config, ConfigError, DrainConfig};
use crate::listeners::{Changes, Listeners};

/// The path of the reload status on the metrics listener.
pub const STATUS_PATH: &str = "/status/reload";

/// Settings a reload applies, as field paths of the bootstrap file (a path
/// covers everything under it). Every other field needs a restart.
pub const LIVE: [&str; 13] = [
    "stream.tcp",
    "stream.udp",
    "stream.only",
    "edge.http",
    "edge.header_read_timeout",
    "edge.idle_timeout",
    "edge.h2_keepalive_interval",
    "edge.h2_keepalive_timeout",
    "limits.handshake_timeout",
    "limits.client_hello_max_bytes",
    "log.level",
    "drain.delay",
    "drain.timeout",
];

/// Reads and checks the bootstrap file exactly as `shardgate validate` and
/// `shardgate run` do: the file's own checks, then the admin key (from the
/// file or this process's environment).
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let config = Config::load(Some(path))?;
    config.admin_key()?;
    Ok(config)
}

/// [`load`] on a blocking thread, for the reload path: hashing plaintext
/// dashboard passwords (`dashboard.users[].password`, PBKDF2, a fraction of
/// a second of CPU each) must not stall a runtime worker that carries
/// players' connections.
pub async fn load_off_runtime(path: PathBuf) -> Result<Config, String> {
    tokio::task::spawn_blocking(move || load(&path))
        .await
        .map_err(|e| format!("reading the bootstrap file: {e}"))?
        .map_err(|e| e.to_string())
}

/// The fields of `new` that differ from `started` and cannot change live,
/// as dotted paths (`store.data_dir`, `limits.max_connections`); values are
/// never included, so secrets stay out of the log.
pub fn needs_restart(started: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    match (serde_json::to_value(started), serde_json::to_value(new)) {
        (Ok(a), Ok(b)) => changed_paths(&a, &b, "", &mut out),
        (Err(e), _) | (_, Err(e)) => out.push(format!("(the files could not be compared: {e})")),
    }
    out.retain(|path| !LIVE.iter().any(|live| path == live || path.starts_with(&format!("{live}."))));
    // Secrets are not serialized; compare them apart.
    if started.data_encryption.keyring != new.data_encryption.keyring {
        out.push("data_encryption.keyring".into());
    }
    if started.store.etcd.password != new.store.etcd.password {
        out.push("store.etcd.password".into());
    }
    let trace_headers = |c: &Config| c.tracing.otlp.as_ref().map(|o| o.headers.clone());
    if trace_headers(started) != trace_headers(new) {
        out.push("tracing.otlp.headers".into());
    }
    out
}

/// Pushes the path of every leaf (or list) that differs between `a` and `b`.
fn changed_paths(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                changed_paths(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &sub, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

/// The log filter's reload handle.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.level`, then and on reload.
    from_env: bool,
}

impl LogControl {
    /// A control over the filter layer `handle` reloads.
    pub fn new(handle: reload::Handle<EnvFilter, Registry>, from_env: bool) -> Self {
        LogControl { handle, from_env }
    }
}

/// `{result}` of a reload.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// Applied (settings that need a restart are reported, not applied).
    success,
    /// Refused: the running configuration stays.
    failure,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: ReloadResult,
}

/// The reload metric families, named as Prometheus names its own
/// (`prometheus_config_last_reload_successful`,
/// `prometheus_config_last_reload_success_timestamp_seconds`).
#[derive(Debug, Clone, Default)]
struct ReloadMetrics {
    /// `shardgate_config_reloads_total{result}`.
    reloads: Family<ResultLabels, Counter>,
    /// `shardgate_config_last_reload_successful`: 1 unless the last reload was refused.
    last_successful: Gauge,
    /// `shardgate_config_last_reload_success_timestamp_seconds`: the start, then each applied reload.
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `shardgate_config_restart_required`: 1 while the file applied last
    /// holds settings that only a restart applies.
    restart_required: Gauge,
}

impl ReloadMetrics {
    fn register(metrics: &Metrics) -> Self {
        let m = ReloadMetrics::default();
        // Both series exist from the start, so increase() alerts work at 0.
        for result in [ReloadResult::success, ReloadResult::failure] {
            m.reloads.get_or_create_owned(&ResultLabels { result });
        }
        m.last_successful.set(1);
        m.last_success.set(unix_secs(SystemTime::now()));
        metrics.register(|r| {
            r.register("config_reloads", "Reloads of the bootstrap file (SIGHUP), by result", m.reloads.clone());
            r.register(
                "config_last_reload_successful",
                "1 unless the last reload of the bootstrap file was refused",
                m.last_successful.clone(),
            );
            r.register(
                "config_last_reload_success_timestamp_seconds",
                "When the bootstrap file was last applied (the start, or a reload), in seconds since the epoch",
                m.last_success.clone(),
            );
            r.register(
                "config_restart_required",
                "1 while the bootstrap file holds changed settings that only a restart applies",
                m.restart_required.clone(),
            );
        });
        m
    }
}

/// The last reload, as `GET /status/reload` on the metrics listener shows
/// it (what `shardgate reload` waits for).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// Reloads since the start.
    pub reloads: u64,
    /// The last one, if any.
    pub last: Option<LastReload>,
}

/// One reload's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastReload {
    /// Applied or refused.
    pub result: ReloadResult,
    /// When the gateway began it (after the SIGHUP), milliseconds since the epoch.
    pub started_unix_ms: u64,
    /// Why it was refused.
    pub error: Option<String>,
    /// Changed settings that only a restart applies (field paths).
    #[serde(default)]
    pub needs_restart: Vec<String>,
    /// Listeners bound and serving.
    #[serde(default)]
    pub added: Vec<String>,
    /// Listeners that stopped accepting.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Listeners serving new connections with new settings.
    #[serde(default)]
    pub changed: Vec<String>,
}

/// A shared view of the reload status, for the metrics listener.
#[derive(Debug, Clone, Default)]
pub struct StatusCell(Arc<Mutex<ReloadStatus>>);

impl StatusCell {
    fn set(&self, last: LastReload) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.reloads += 1;
        s.last = Some(last);
    }

    fn get(&self) -> ReloadStatus {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `GET /status/reload`, merged into the metrics listener's router.
    pub fn router(&self) -> axum::Router {
        let cell = self.clone();
        axum::Router::new().route(
            STATUS_PATH,
            axum::routing::get(move || {
                let cell = cell.clone();
                async move { axum::Json(cell.get()) }
            }),
        )
    }
}

/// Applies the bootstrap file again on each SIGHUP.
pub struct Reloader {
    /// The file given to `run --config`; `None` when running on the defaults.
    path: Option<PathBuf>,
    /// The file as the process started with it: what settings that need a
    /// restart are compared with.
    started: Config,
    /// The file as last applied (live settings).
    applied: Config,
    log: LogControl,
    metrics: ReloadMetrics,
    status: StatusCell,
}

impl Reloader {
    /// A reloader of `path`, which the process started with as `config`.
    pub fn new(path: Option<PathBuf>, config: &Config, log: LogControl, metrics: &Metrics) -> Self {
        Reloader {
            path,
            started: config.clone(),
            applied: config.clone(),
            log,
            metrics: ReloadMetrics::register(metrics),
            status: StatusCell::default(),
        }
    }

    /// The status the metrics listener serves.
    pub fn status(&self) -> StatusCell {
        self.status.clone()
    }

    /// `drain:` as last applied (read when SIGTERM arrives).
    pub fn drain_config(&self) -> &DrainConfig {
        &self.applied.drain
    }

    /// Reads the file again and applies it, or refuses it whole. Never
    /// fails: the outcome is logged, counted and kept for `/status/reload`.
    pub async fn reload(&mut self, listeners: &mut Listeners, drain: &Drain) {
        let started = SystemTime::now();
        let file = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        tracing::info!(file = %file, "SIGHUP: reloading the bootstrap file");
        let outcome = self.apply(listeners, drain).await;
        let started_unix_ms = started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let last = match outcome {
            Ok((changes, needs_restart)) => {
                self.metrics.reloads.get_or_create(&ResultLabels { result: ReloadResult::success }).inc();
                self.metrics.last_successful.set(1);
                self.metrics.last_success.set(unix_secs(SystemTime::now()));
                self.metrics.restart_required.set(i64::from(!needs_restart.is_empty()));
                tracing::info!(
                    file = %file,
                    added = %changes.added.join(", "),
                    removed = %changes.removed.join(", "),
                    changed = %changes.changed.join(", "),
                    "reload applied"
                );
                if !needs_restart.is_empty() {
                    tracing::warn!(
                        file = %file,
                        fields = %needs_restart.join(", "),
                        "reload: these settings changed but need a restart; the running values stay until then"
                    );
                }
                LastReload {
                    result: ReloadResult::success,
                    started_unix_ms,
                    error: None,
                    needs_restart,
                    added: changes.added,
                    removed: changes.removed,
                    changed: changes.changed,
                }
            }
            Err(error) => {
                self.metrics.reloads.get_or_create(&ResultLabels { result: ReloadResult::failure }).inc();
                self.metrics.last_successful.set(0);
                tracing::error!(
                    file = %file,
                    field = field_of(&error, &file).unwrap_or_default(),
                    error = %error,
                    "reload refused; the running configuration stays"
                );
                LastReload {
                    result: ReloadResult::failure,
                    started_unix_ms,
                    error: Some(error),
                    needs_restart: Vec::new(),
                    added: Vec::new(),
                    removed: Vec::new(),
                    changed: Vec::new(),
                }
            }
        };
        self.status.set(last);
    }

    /// Everything that can fail happens before the first change, so an
    /// error leaves the running configuration whole.
    async fn apply(&mut self, listeners: &mut Listeners, drain: &Drain) -> Result<(Changes, Vec<String>), String> {
        let Some(path) = &self.path else {
            tracing::info!("running on the defaults (no --config): nothing to read again");
            return Ok((Changes::default(), Vec::new()));
        };
        let config = load_off_runtime(path.clone()).await?;
        let needs_restart = needs_restart(&self.started, &config);
        let filter = if config.log.level != self.applied.log.level {
            if self.log.from_env {
                tracing::warn!("log.level changed, but RUST_LOG is set and wins over it; the log filter stays");
                None
            } else {
                let level = crate::config::normalized_log_filter(&config.log.level);
                Some(EnvFilter::try_new(&level).map_err(|e| format!("log.level: {e}"))?)
            }
        } else {
            None
        };
        let plan = listeners.prepare(&config).map_err(|e| format!("{e:#}"))?;
        let changes = listeners.commit(plan, drain).await;
        if let Some(filter) = filter
            && let Err(e) = self.log.handle.reload(filter)
        {
            tracing::warn!(error = %e, "cannot apply the new log.level");
        }
        self.applied = config;
        Ok((changes, needs_restart))
    }
}

/// The field path an error message starts with (`stream.tcp[0]`,
/// `log.level`), after the file name when it has one; `None` for errors
/// that are not about one field (a file that cannot be read).
fn field_of(message: &str, file: &str) -> Option<String> {
    let rest = message.strip_prefix(file).and_then(|r| r.strip_prefix(": ")).unwrap_or(message);
    let token = rest.split([':', ' ']).next()?;
    let path_chars = token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
    let is_path = token.starts_with(|c: char| c.is_ascii_lowercase()) && (token.contains('.') || token.contains('['));
    (path_chars && is_path).then(|| token.to_owned())
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        Config::parse(yaml).expect("parse")
    }

    /// The reload path reads (and hashes) the file on a blocking thread: on
    /// a one-thread runtime, another task runs before the load is done.
    #[tokio::test(flavor = "current_thread")]
    async fn the_file_is_read_and_hashed_off_the_runtime() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "admin:\n  key: admin-key-0123456789\ndashboard:\n  users:\n    - username: admin\n      password: Admin@2025\n",
        )
        .expect("write");
        let loaded = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let loaded = Arc::clone(&loaded);
            async move { !loaded.load(Ordering::SeqCst) }
        });
        let config = load_off_runtime(path).await.expect("load");
        loaded.store(true, Ordering::SeqCst);
        assert!(config.dashboard.users[0].password_hash.is_some(), "hashed at load");
        assert!(other.await.expect("task"), "another task ran while the file was loaded");
        let e = load_off_runtime(dir.path().join("missing.yaml")).await.expect_err("missing");
        assert!(e.contains("missing.yaml"), "{e}");
    }

    #[test]
    fn live_settings_need_no_restart_and_others_are_named() {
        let started = parse("stream:\n  tcp:\n    - addr: 9000\n");
        let live = parse(
            "stream:\n  tcp:\n    - addr: 9001\n      tls: true\nedge:\n  http:\n    - addr: 9002\n  idle_timeout: 5s\nlog:\n  level: debug\ndrain:\n  timeout: 1s\nlimits:\n  handshake_timeout: 3s\n",
        );
        assert_eq!(needs_restart(&started, &live), Vec::<String>::new());
        let fixed = parse(
            "stream:\n  tcp:\n    - addr: 9000\n  keepalive: 5s\nstore:\n  data_dir: /elsewhere\nlimits:\n  max_connections: 10\nadmin:\n  listen: \"127.0.0.1:1\"\nlog:\n  format: json\n",
        );
        assert_eq!(
            needs_restart(&started, &fixed),
            ["admin.listen", "limits.max_connections", "log.format", "store.data_dir", "stream.keepalive"]
        );
    }

    #[test]
    fn secrets_are_compared_but_never_shown() {
        let started = parse("data_encryption:\n  keyring: [\"0123456789abcdef\"]\n");
        let new = parse(
            "data_encryption:\n  keyring: [\"fedcba9876543210\"]\nstore:\n  etcd:\n    password: hunter2-secret\n",
        );
        let fields = needs_restart(&started, &new);
        assert_eq!(fields, ["data_encryption.keyring", "store.etcd.password"]);
        assert!(!fields.concat().contains("hunter2") && !fields.concat().contains("fedcba"));
    }

    #[test]
    fn tracing_needs_a_restart_and_its_headers_stay_secret() {
        let started = parse(
            "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n    headers:\n      authorization: Bearer old-token\n",
        );
        let new = parse(
            "tracing:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n    headers:\n      authorization: Bearer new-token\n  sample_ratio: 0.5\n",
        );
        let fields = needs_restart(&started, &new);
        assert_eq!(fields, ["tracing.sample_ratio", "tracing.otlp.headers"]);
        assert!(!fields.concat().contains("token"));
    }

    #[test]
    fn refusals_name_their_field() {
        let f = "/etc/shardgate.yaml";
        for (message, field) in [
            ("/etc/shardgate.yaml: stream.tcp[0]: unknown field `tsl`", Some("stream.tcp[0]")),
            ("log.level: \"verbose\" is not a level", Some("log.level")),
            ("data_encryption.keyring[0] is 5 bytes long", Some("data_encryption.keyring[0]")),
            (
                "stream.tcp[2].addr: binding stream listener 127.0.0.1:1 (tls: false): Address in use",
                Some("stream.tcp[2].addr"),
            ),
            ("/etc/shardgate.yaml: No such file or directory (os error 2)", None),
            ("no admin key: set admin.key", None),
        ] {
            assert_eq!(field_of(message, f).as_deref(), field, "{message}");
        }
    }

    #[test]
    fn a_list_that_changes_is_named_once() {
        let started = parse("store:\n  etcd:\n    host: [\"http://192.0.2.1:2379\"]\n");
        let new = parse("store:\n  etcd:\n    host: [\"http://192.0.2.1:2379\", \"http://192.0.2.2:2379\"]\n");
        assert_eq!(needs_restart(&started, &new), ["store.etcd.host"]);
    }
}
