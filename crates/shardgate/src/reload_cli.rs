//! `shardgate reload`: check the bootstrap file here, find the running
//! gateway through its pid file, send it SIGHUP, and wait for the outcome
//! on its metrics listener (`GET /status/reload`).
//!
//! Nothing is signalled unless the file passes the checks `shardgate
//! validate` makes and the pid file names a running `shardgate run` with
//! the same `--config` file. The admin key may live only in the gateway's
//! environment (`SHARDGATE_ADMIN_KEY`), so a key missing here is not an
//! error; a key present in the file or here is checked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;

use crate::config::Config;
use crate::healthcheck::{self, Target};
use crate::pidfile::{self, Process};
use crate::reload::{ReloadResult, ReloadStatus, STATUS_PATH};

/// Exit status: the file was invalid (nothing was signalled), or the
/// gateway refused it; either way it runs on as before.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: no running gateway was found for this file (nothing was
/// signalled). `shardgate drain` exits with it too.
pub const EXIT_NOT_RUNNING: u8 = 2;
/// Exit status: signalled, but no outcome was seen within `--timeout`.
pub const EXIT_UNCONFIRMED: u8 = 3;
/// Default of `--timeout`, in seconds: a reload binds sockets and opens
/// nothing slow, but a gateway still starting runs it only once started.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Pause between two looks at the status.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Longest one look at the status may take (its size is bounded by
/// [`healthcheck::MAX_BODY_BYTES`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `shardgate reload`; returns the exit status.
pub async fn reload(config_path: Option<&Path>, pid_file: Option<&Path>, timeout: Duration) -> ExitCode {
    let config = match check(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardgate: invalid config: {e}");
            eprintln!("shardgate: nothing was signalled; the gateway keeps its running configuration");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let pid_path = pid_file.map(Path::to_owned).unwrap_or_else(|| pidfile::default_path(&config));
    let pid = match find_gateway(&pid_path, config_path) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("shardgate: {e}");
            eprintln!("shardgate: nothing was signalled");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    let status = Target::from_config(&config, STATUS_PATH);
    let sent_ms = unix_ms(SystemTime::now());
    let Some(target) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        eprintln!(
            "shardgate: {} holds pid {pid}, which is not a process id; nothing was signalled",
            pid_path.display()
        );
        return ExitCode::from(EXIT_NOT_RUNNING);
    };
    if let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::HUP) {
        eprintln!("shardgate: cannot signal pid {pid}: {e}; nothing was signalled");
        return ExitCode::from(EXIT_NOT_RUNNING);
    }
    println!("sent SIGHUP to shardgate (pid {pid}); waiting for the outcome at {}", status.url());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match fetch_status(&status).await {
            Ok(ReloadStatus { last: Some(last), .. }) if last.started_unix_ms >= sent_ms => {
                return match last.result {
                    ReloadResult::success => {
                        let mut parts = Vec::new();
                        for (what, list) in
                            [("added", &last.added), ("removed", &last.removed), ("changed", &last.changed)]
                        {
                            if !list.is_empty() {
                                parts.push(format!("{what}: {}", list.join(", ")));
                            }
                        }
                        if parts.is_empty() {
                            println!("reloaded: no listener changed");
                        } else {
                            println!("reloaded: listeners {}", parts.join("; "));
                        }
                        if !last.needs_restart.is_empty() {
                            eprintln!(
                                "shardgate: warning: these settings changed but need a restart (the running values stay): {}",
                                last.needs_restart.join(", ")
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    ReloadResult::failure => {
                        eprintln!(
                            "shardgate: the gateway (pid {pid}) refused the reload: {}",
                            last.error.as_deref().unwrap_or("no reason given")
                        );
                        eprintln!("shardgate: it keeps its running configuration");
                        ExitCode::from(EXIT_REFUSED)
                    }
                };
            }
            Ok(_) => {}
            Err(e) => last_error = e,
        }
        if tokio::time::Instant::now() >= deadline {
            let why = if last_error.is_empty() { String::new() } else { format!(" (last error: {last_error})") };
            eprintln!(
                "shardgate: sent SIGHUP to pid {pid}, but saw no outcome at {} within {}s{why}; see the gateway's log",
                status.url(),
                timeout.as_secs()
            );
            return ExitCode::from(EXIT_UNCONFIRMED);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The checks of `shardgate validate`, except that a missing admin key is
/// left to the gateway's own environment.
fn check(path: Option<&Path>) -> Result<Config, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    if config.admin.key.as_deref().is_some_and(|k| !k.is_empty()) {
        config.admin_key().map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// The pid in `pid_path`, once `/proc` confirms it is `shardgate run` with
/// the same bootstrap file.
pub(crate) fn find_gateway(pid_path: &Path, config_path: Option<&Path>) -> Result<u32, String> {
    let pid = pidfile::read(pid_path).map_err(|e| {
        format!("no running gateway found: {e} (start it with `shardgate run`, or give its --pid-file)")
    })?;
    let process = Process::inspect(pid).map_err(|e| format!("{}: stale pid file: {e}", pid_path.display()))?;
    if !process.is_shardgate_run() {
        return Err(format!(
            "{}: stale pid file: process {pid} is {} {}, not `shardgate run`",
            pid_path.display(),
            process.exe.display(),
            process.args.iter().skip(1).map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        ));
    }
    let theirs = process.config_arg();
    let same = match (&theirs, config_path) {
        (None, None) => true,
        (Some(a), Some(b)) => same_file(a, b),
        _ => false,
    };
    if !same {
        let shown = |p: Option<&Path>| p.map_or("the defaults (no --config)".to_owned(), |p| p.display().to_string());
        return Err(format!(
            "the gateway in {} (pid {pid}) runs with {}, not {}",
            pid_path.display(),
            shown(theirs.as_deref()),
            shown(config_path)
        ));
    }
    Ok(pid)
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    canonical(a) == canonical(b)
}

/// `GET /status/reload` on the metrics listener.
async fn fetch_status(target: &Target) -> Result<ReloadStatus, String> {
    let answer = healthcheck::get(target, REQUEST_TIMEOUT).await?;
    if answer.status != StatusCode::OK {
        return Err(format!("{} answered {}", target.url(), answer.status));
    }
    serde_json::from_str(&answer.body).map_err(|e| format!("{}: {e}", target.url()))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
