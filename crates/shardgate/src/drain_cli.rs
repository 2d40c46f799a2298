//! `shardgate drain`: start the running gateway's drain (SIGTERM through its
//! pid file) and, with `--wait`, wait for a point of it; and the drain's
//! progress that the gateway serves for it on the metrics listener
//! (`GET /status/drain`).
//!
//! ```text
//! serving --SIGTERM--> delaying: /readyz 503, listeners still accept (drain.delay)
//!         --> draining: listeners closed, open sessions run (until drain.timeout)
//!         --> the process exits 0
//! ```
//!
//! Once the gateway has taken a stop signal, another SIGTERM changes
//! nothing (during `delaying` it is logged and ignored; only SIGINT ends the
//! delay early), so running the command twice (Kubernetes delivers a preStop
//! hook "at least once"), or the kubelet's own SIGTERM, never shortens the
//! drain. A gateway whose status says it is draining already is not
//! signalled again, only for a clearer report: the look and the signal are
//! not atomic, and need not be. One whose status cannot be read is
//! signalled anyway: still starting, it stops at once (it serves nothing
//! yet); with a saturated metrics listener, it drains.
//!
//! `--wait=listeners-closed` returns once the gateway accepts no new
//! connection, which is what a Kubernetes preStop hook waits for, so that
//! the hook's end (and the kubelet's SIGTERM that follows, which changes
//! nothing) marks the point where no new player is accepted. The hook must
//! not wait for the exit: a hook still running when the container's main
//! process exits is killed with it and reported as `FailedPreStopHook`; the
//! kubelet itself waits for the exit, up to the pod's
//! `terminationGracePeriodSeconds`. `--wait` (`exited`) waits for the
//! process to be gone, for scripts and hosts without a supervisor.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::healthcheck::{self, Target};
use crate::pidfile::{self, Process};
use crate::reload_cli::EXIT_NOT_RUNNING;

/// The path of the drain status on the metrics listener.
pub const STATUS_PATH: &str = "/status/drain";
/// Exit status: the file could not be read (nothing was signalled).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the awaited point was not seen within `--timeout`.
pub const EXIT_TIMEOUT: u8 = 3;
/// Default of `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Pause between two looks at the gateway.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Longest one look at `/status/drain` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the drain is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    /// No stop signal yet.
    #[default]
    Serving,
    /// Stop signal received: `/readyz` answers 503, listeners still accept
    /// until `accepting_until_unix_ms` (`drain.delay`).
    Delaying,
    /// Listeners closed; open sessions run until they end or
    /// `deadline_unix_ms` (`drain.timeout`), then the process exits.
    Draining,
}

/// `GET /status/drain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainStatus {
    /// Where the drain is.
    pub state: DrainState,
    /// The signal that started it (`SIGTERM`, `SIGINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// When it started, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
    /// When the listeners stop accepting (start plus `drain.delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepting_until_unix_ms: Option<u64>,
    /// When sessions still open are cut (`drain.timeout` after the
    /// listeners closed); set once `draining`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix_ms: Option<u64>,
}

/// The gateway's side: the status it serves, updated by `run`.
#[derive(Debug, Clone, Default)]
pub struct StatusCell(Arc<Mutex<DrainStatus>>);

impl StatusCell {
    fn update(&self, f: impl FnOnce(&mut DrainStatus)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The stop signal `signal` arrived; listeners accept for `delay` more.
    pub fn delaying(&self, signal: &str, delay: Duration) {
        let now = SystemTime::now();
        self.update(|s| {
            s.state = DrainState::Delaying;
            s.signal = Some(signal.to_owned());
            s.started_unix_ms = Some(unix_ms(now));
            s.accepting_until_unix_ms = Some(unix_ms(now + delay));
        });
    }

    /// Every listener has stopped accepting; sessions are cut at `deadline`.
    pub fn draining(&self, deadline: SystemTime) {
        self.update(|s| {
            s.state = DrainState::Draining;
            s.deadline_unix_ms = Some(unix_ms(deadline));
        });
    }

    /// `GET /status/drain`, merged into the metrics listener's router.
    pub fn router(&self) -> axum::Router {
        let cell = self.clone();
        axum::Router::new().route(
            STATUS_PATH,
            axum::routing::get(move || {
                let cell = cell.clone();
                async move { axum::Json(cell.0.lock().unwrap_or_else(PoisonError::into_inner).clone()) }
            }),
        )
    }
}

/// What `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// The listeners have closed: no new connection is accepted (the end
    /// of `drain.delay`); open sessions may still run. For a Kubernetes
    /// preStop hook.
    ListenersClosed,
    /// The process has exited: every session ended or was cut at
    /// `drain.timeout`.
    Exited,
}

/// Runs `shardgate drain`; returns the exit status.
pub async fn drain(
    config_path: Option<&Path>,
    pid_file: Option<&Path>,
    wait: Option<WaitFor>,
    timeout: Duration,
) -> ExitCode {
    // Only the pid file's place and `metrics.listen` are needed; the file's
    // other checks are `validate`'s business and must not stand in the way
    // of a stop.
    let config = match Config::load_unchecked(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardgate: invalid config: {e}");
            eprintln!("shardgate: nothing was signalled");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let pid_path = pid_file.map(Path::to_owned).unwrap_or_else(|| pidfile::default_path(&config));
    let pid = match crate::reload_cli::find_gateway(&pid_path, config_path) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("shardgate: {e}");
            eprintln!("shardgate: nothing was signalled");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    let status = Target::from_config(&config, STATUS_PATH);
    let deadline = tokio::time::Instant::now() + timeout;
    match fetch(&status).await {
        Ok(s) if s.state != DrainState::Serving => {
            println!("shardgate (pid {pid}) is already {}; not signalling it again", describe(&s));
        }
        seen => {
            if let Err(e) = &seen {
                // Still starting (it stops at once then: nothing is served
                // yet), or its metrics listener is saturated: the signal is
                // what matters, and a second one would change nothing.
                println!("cannot read {} ({e}); signalling anyway", status.url());
            }
            let Some(target) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
                eprintln!("shardgate: {} holds pid {pid}, which is not a process id", pid_path.display());
                return ExitCode::from(EXIT_NOT_RUNNING);
            };
            if let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::TERM) {
                eprintln!("shardgate: cannot signal pid {pid}: {e}; nothing was signalled");
                return ExitCode::from(EXIT_NOT_RUNNING);
            }
            println!("sent SIGTERM to shardgate (pid {pid}): /readyz answers 503 from now on");
        }
    }

    let mut last_error = String::new();
    let mut last_said = None;
    loop {
        if !is_running(pid) {
            println!("shardgate (pid {pid}) has exited: the drain is over");
            return ExitCode::SUCCESS;
        }
        if wait != Some(WaitFor::Exited) {
            match fetch(&status).await {
                Ok(s) => {
                    let reached = match wait {
                        None => s.state != DrainState::Serving,
                        Some(WaitFor::ListenersClosed) => s.state == DrainState::Draining,
                        Some(WaitFor::Exited) => false,
                    };
                    if last_said != Some(s.state) && s.state != DrainState::Serving {
                        println!("shardgate (pid {pid}) is {}", describe(&s));
                        last_said = Some(s.state);
                    }
                    if reached {
                        return ExitCode::SUCCESS;
                    }
                }
                Err(e) => last_error = e,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let what = match wait {
                None => "the drain start",
                Some(WaitFor::ListenersClosed) => "the listeners close",
                Some(WaitFor::Exited) => "the process exit",
            };
            let why = if last_error.is_empty() { String::new() } else { format!(" (last error: {last_error})") };
            eprintln!(
                "shardgate: did not see {what} of shardgate (pid {pid}) within {}{why}; see its log and {}",
                healthcheck::seconds(timeout),
                status.url()
            );
            return ExitCode::from(EXIT_TIMEOUT);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `GET /status/drain`.
async fn fetch(target: &Target) -> Result<DrainStatus, String> {
    let answer = healthcheck::get(target, REQUEST_TIMEOUT).await?;
    if answer.status != StatusCode::OK {
        return Err(format!("{} answered {}", target.url(), answer.status));
    }
    serde_json::from_str(&answer.body).map_err(|e| format!("{}: {e}", target.url()))
}

/// Whether `pid` is still a `shardgate run` (a pid reused by another
/// program after the exit is not).
fn is_running(pid: u32) -> bool {
    Process::inspect(pid).is_ok_and(|p| p.is_shardgate_run())
}

/// "draining: listeners closed, open sessions are cut in 12s".
fn describe(s: &DrainStatus) -> String {
    let now = unix_ms(SystemTime::now());
    let in_secs = |t: Option<u64>| t.map(|t| format!("{:.0}s", t.saturating_sub(now) as f64 / 1000.0));
    match s.state {
        DrainState::Serving => "serving".into(),
        DrainState::Delaying => format!(
            "draining: not ready, listeners still accept for {}",
            in_secs(s.accepting_until_unix_ms).unwrap_or_else(|| "a while".into())
        ),
        DrainState::Draining => format!(
            "draining: listeners closed, open sessions are cut in {}",
            in_secs(s.deadline_unix_ms).unwrap_or_else(|| "a while".into())
        ),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_moves_from_serving_to_delaying_to_draining() {
        let cell = StatusCell::default();
        let get = || cell.0.lock().expect("lock").clone();
        assert_eq!(serde_json::to_value(get()).expect("json"), serde_json::json!({"state": "serving"}));
        cell.delaying("SIGTERM", Duration::from_secs(15));
        let s = get();
        assert_eq!(s.state, DrainState::Delaying);
        assert_eq!(s.signal.as_deref(), Some("SIGTERM"));
        let started = s.started_unix_ms.expect("started");
        assert_eq!(s.accepting_until_unix_ms, Some(started + 15_000));
        assert!(describe(&s).contains("listeners still accept for"), "{}", describe(&s));
        cell.draining(SystemTime::now() + Duration::from_secs(30));
        let s = get();
        assert_eq!(s.state, DrainState::Draining);
        assert!(s.deadline_unix_ms.expect("deadline") >= started + 29_000);
        let back: DrainStatus = serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("parse");
        assert_eq!(back.state, DrainState::Draining);
    }
}
