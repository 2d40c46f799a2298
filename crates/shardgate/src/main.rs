//! The `shardgate` binary: command line, bootstrap file, logging, wiring of
//! the crates, signals and the drain. `anyhow` lives here and nowhere else.
//!
//! - `shardgate run [--config FILE] [--pid-file FILE]` starts the gateway
//!   (defaults without a file); SIGHUP reloads the file.
//! - `shardgate reload [--config FILE]` checks the file and has the running
//!   gateway apply it (SIGHUP through its pid file), then reports the outcome.
//! - `shardgate validate [--config FILE]` checks a file and exits.
//! - `shardgate healthcheck [--config FILE | --url URL] [--path /readyz]`
//!   asks the metrics listener whether the gateway is ready (exit 0) or not
//!   (exit 1, with the reason), for container health checks.
//! - `shardgate drain [--config FILE] [--wait[=exited|listeners-closed]]`
//!   starts the running gateway's drain and waits for it (a preStop hook).
//! - `shardgate store check|repair [--config FILE | --data-dir DIR]` looks
//!   into the embedded store, or repairs a damaged one (`repair --force`
//!   also cuts data written by another shardgate version).
//! - `shardgate export -o DIR [--include-secrets] [--force]` writes every
//!   resource of a running gateway (its Admin API) to `DIR/<kind>/<id>.yaml`.
//! - `shardgate diff -f DIR` compares such a directory with a running
//!   gateway (exit 0 same, 2 different, 1 error).
//! - `shardgate apply -f DIR [--prune] [--dry-run]` makes a running gateway
//!   hold what the directory says.
//! - `shardgate backup -o FILE [--config FILE]` copies everything under the
//!   store prefix, at one revision, to a JSON file (a running gateway too).
//! - `shardgate restore -i FILE [--config FILE] [--replace]` writes a backup
//!   into the embedded store of a stopped gateway, or into an etcd prefix.
//! - `shardgate cache warm --distribution ID --paths-from FILE` fills a
//!   distribution's cache through a running gateway's Admin API, with a
//!   progress bar and a summary (see `cache_cli`).
//! - `shardgate dashboard hash-password` reads a password from standard
//!   input and prints its `password_hash` for `dashboard.users`.

#![forbid(unsafe_code)]

mod admin_client;
mod backup;
mod cache_cli;
mod config;
mod config_code;
mod dashboard_cli;
mod fds;
mod listeners;
mod open;
mod pidfile;
mod reload;
mod reload_cli;
mod run;
mod secrets;
mod store_cli;
mod trace_export;

// Probes and the drain, for container runtimes, Kubernetes and supervisors.
mod drain_cli;
mod healthcheck;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the per-request and per-message
/// paths allocate and free many short-lived objects of a few hundred bytes
/// to a few KiB, where glibc consolidates its fast bins on every larger
/// request (`malloc_consolidate` in the profiles). Measured in
/// `bench/README.md` (issue 14, "Allocator"); the choice is in `docs/ARCHITECTURE.md`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shardgate: one edge for game servers and game assets.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version, about, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `shardgate --help` says the program is.
const LONG_ABOUT: &str = "\
shardgate: one edge for game servers and game assets.

  Stream gateway (L4)  One public TCP port for every game server: players
                       connect with TLS, shardgate picks the certificate by
                       SNI, terminates TLS (or passes it through) and routes
                       the connection by SNI to the game server's upstream.
                       UDP, PROXY protocol, health checks, ip-restriction
                       and limit-conn included.
  Edge (L7)            A caching HTTP(S) edge in front of an asset origin,
                       in CloudFront's model: distributions and behaviors,
                       cache policies, canary release (continuous
                       deployment policies), per-channel delivery,
                       invalidations.
  WAF                  Web ACLs written as AWS WAF v2 JSON, on the edge's
                       requests and on stream connections (IP sets, geo,
                       rate-based rules, TLS fingerprints).

Routes, certificates, upstreams and everything above change at runtime
through the Admin API (APISIX's Admin API v3 for ssls, upstreams and
stream_routes; X-API-KEY), stored in an embedded store or in etcd.";

/// What every `shardgate --help` ends with.
const AFTER_HELP: &str = "\
Start with `shardgate run --config shardgate.yaml` (the admin key in
SHARDGATE_ADMIN_KEY); `shardgate <command> --help` explains each command.
The Admin API listens on 127.0.0.1:9180 and the dashboard on its /ui/;
metrics, /healthz and /readyz on 127.0.0.1:9091.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. SIGHUP reads the bootstrap file again (see `reload`).
    #[command(after_help = "\
`run` opens what the bootstrap file lists: the stream gateway's listeners
(stream.tcp with TLS termination or passthrough by SNI, stream.udp), the
edge's HTTP(S) listeners (edge.http: cache, canary, invalidations), the WAF
on both (web ACLs from the Admin API, waf.geoip_database for geo rules), the
Admin API (admin.listen) and the metrics listener (metrics.listen: /metrics,
/healthz, /readyz, /v1/healthcheck). The admin key comes from
SHARDGATE_ADMIN_KEY or admin.key; without one, nothing starts.

Signals: SIGHUP reloads the file; SIGTERM or SIGINT drains (/readyz turns
503, listeners close after drain.delay, sessions get drain.timeout) and
exits 0. During drain.delay another SIGTERM changes nothing and SIGINT closes
the listeners at once. Before the gateway is ready, SIGTERM or SIGINT stops
it at once (exit 0: nothing is served yet).")]
    Run {
        /// Bootstrap file (YAML). Without it, the defaults apply: a TLS stream
        /// listener on 0.0.0.0:8888, the Admin API on 127.0.0.1:9180, metrics
        /// on 127.0.0.1:9091, data in ./data.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Where to write this process's pid, for `shardgate reload`
        /// (default `<store.data_dir>/shardgate.pid`; removed on exit).
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
    },
    /// Apply an edited bootstrap file to the running gateway without a
    /// restart: listeners added, removed or changed, log.level, drain and
    /// per-connection timeouts. Open sessions are never dropped.
    #[command(after_help = "\
The file is checked here first (as `shardgate validate` does); an invalid one
is not sent. The gateway is found through its pid file, which must name a
running `shardgate run` with the same --config. It is sent SIGHUP (the same as
`kill -HUP <pid>`), and the outcome is read from its metrics listener
(GET /status/reload on metrics.listen).

Exit status:
  0  applied (settings that need a restart are named in a warning)
  1  refused: the file is invalid (nothing was sent), or the gateway refused
     it (e.g. an address it cannot bind); it keeps its running configuration
  2  no running gateway found for this file (nothing was sent)
  3  sent, but no outcome seen within --timeout (see the gateway's log)")]
    Reload {
        /// The bootstrap file the gateway runs with (its `run --config`).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The gateway's pid file (default `<store.data_dir>/shardgate.pid`).
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Longest wait for the outcome, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = reload_cli::DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
    },
    /// Ask the running gateway's metrics listener whether it is ready: exit
    /// 0 when `GET /readyz` (or --path) answers 200, 1 otherwise with the
    /// reason on stderr. For container health checks (the image has no curl).
    Healthcheck {
        /// Bootstrap file (YAML) whose `metrics.listen` to ask (a wildcard
        /// address is asked on loopback). Default: the defaults' 127.0.0.1:9091.
        #[arg(short, long, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// Ask this URL instead (`http://host:port`, optionally with the path).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// The path to ask: /readyz (ready to take players) or /healthz (alive).
        #[arg(long, default_value = healthcheck::DEFAULT_PATH)]
        path: String,
        /// Longest the whole check may take, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = healthcheck::DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
    },
    /// Start the running gateway's drain (SIGTERM through its pid file) and,
    /// with --wait, wait for it: /readyz answers 503 at once, listeners keep
    /// accepting for drain.delay, then close; open sessions run until they
    /// end or drain.timeout; then the gateway exits 0.
    #[command(after_help = "\
Once draining, the gateway ignores another SIGTERM (SIGINT ends drain.delay
at once), so the command may run twice, as Kubernetes may deliver a preStop
hook twice; a gateway already draining is not signalled again. A gateway
still starting (e.g. waiting for etcd) stops at once. Progress is read from
the metrics listener (GET /status/drain on metrics.listen).

--wait=listeners-closed returns once no new connection is accepted: the point
a Kubernetes preStop hook waits for. The kubelet sends SIGTERM when the hook
returns, which changes nothing, and waits for the exit up to
terminationGracePeriodSeconds, which must exceed drain.delay +
drain.timeout + 5 s. (A hook still running when the gateway exits is killed
with the container and reported as FailedPreStopHook.)
--wait (=exited) returns once the process has exited.

Exit status:
  0  signalled (or already draining) and, with --wait, the point was reached
  1  the file cannot be read (nothing was signalled)
  2  no running gateway found for this file (nothing was signalled)
  3  the point was not seen within --timeout")]
    Drain {
        /// The bootstrap file the gateway runs with (its `run --config`).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The gateway's pid file (default `<store.data_dir>/shardgate.pid`).
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Wait until the listeners have closed, or (alone) until the process exits.
        #[arg(long, value_enum, value_name = "UNTIL", num_args = 0..=1, require_equals = true, default_missing_value = "exited")]
        wait: Option<drain_cli::WaitFor>,
        /// Longest wait, in seconds (without --wait: for the gateway to confirm).
        #[arg(long, value_name = "SECS", default_value_t = drain_cli::DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
    },
    /// Check a bootstrap file without starting.
    #[command(after_help = "\
Checks what `run` would refuse (unknown fields, bad values, listeners that
overlap, a missing admin key, an unreadable waf.geoip_database) and values
that would silently turn something off (a log.level that is not a level).
Prints the listeners it would open: stream (TCP/TLS, UDP), edge (HTTP/HTTPS)
and the Admin API and metrics addresses, then warnings (an Admin API beyond
loopback, a key published in documentation). Exit 0 valid, 1 invalid.")]
    Validate {
        /// Bootstrap file (YAML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Look into the embedded store, or repair a damaged one.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Write every resource of a running gateway to DIR, one YAML file per
    /// resource (`DIR/<kind>/<id>.yaml`), through its Admin API.
    Export {
        #[command(flatten)]
        admin: AdminArgs,
        /// The directory to write; created if missing. One that is not
        /// empty is refused unless --force.
        #[arg(short, long = "output", value_name = "DIR")]
        output: PathBuf,
        /// Also export the SSL objects' private keys (the admin key only;
        /// the files are written with mode 0600).
        #[arg(long)]
        include_secrets: bool,
        /// Write into a directory that is not empty: the resource files
        /// (`<kind>/*.yaml|yml|json`) are rewritten, and those of resources
        /// no longer on the gateway removed; nothing else is touched.
        #[arg(long)]
        force: bool,
    },
    /// Compare a directory of resource files with a running gateway. Exits
    /// 0 when they agree, 2 when `apply` would change something, 1 on error.
    Diff {
        #[command(flatten)]
        admin: AdminArgs,
        /// The directory of resource files.
        #[arg(short = 'f', long = "dir", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Make a running gateway hold what a directory of resource files says:
    /// create and update (referenced resources first), and with --prune
    /// delete what the files do not hold.
    Apply {
        #[command(flatten)]
        admin: AdminArgs,
        /// The directory of resource files.
        #[arg(short = 'f', long = "dir", value_name = "DIR")]
        dir: PathBuf,
        /// Also delete the resources on the gateway that the files do not
        /// hold (never invalidations: they are history).
        #[arg(long)]
        prune: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy everything under the store prefix, at one revision, to one JSON
    /// file (works while a gateway runs on the store).
    Backup {
        /// Bootstrap file (YAML) naming the store.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The backup file to write (mode 0600: it holds private keys).
        #[arg(short, long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Write a backup into the store: an embedded store's gateway must be
    /// stopped (use `apply` on a running one); an etcd prefix may be live.
    Restore {
        /// Bootstrap file (YAML) naming the store.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The backup file to read.
        #[arg(short, long = "input", value_name = "FILE")]
        input: PathBuf,
        /// Restore into a store that already holds data: it then holds
        /// exactly the backup (keys the backup does not hold are deleted).
        #[arg(long)]
        replace: bool,
    },
    /// The edge's cache on a running gateway: fill it ahead of a release
    /// (`cache warm`).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// The web dashboard on the Admin listener (`/ui/`): its users' password
    /// hashes.
    Dashboard {
        #[command(subcommand)]
        action: DashboardAction,
    },
}

/// `shardgate dashboard ...`.
#[derive(Debug, Subcommand)]
enum DashboardAction {
    /// Print the password_hash of a dashboard user's password, read from
    /// standard input (never from the command line).
    #[command(after_help = "\
Reads one line from standard input (its line end is not part of the
password) and prints a PHC string such as
  $pbkdf2-sha256$i=600000$<salt>$<hash>
(PBKDF2-HMAC-SHA256, 600,000 iterations, a random salt each time).

Put it in the bootstrap file under the Admin listener's dashboard users:

  dashboard:
    users:
      - username: ops
        password_hash: \"$pbkdf2-sha256$i=600000$...\"
      - username: support
        password_hash: \"$pbkdf2-sha256$i=600000$...\"
        read_only: true      # may look, never change

Quote the value: YAML treats some characters specially. Then apply it with a
restart (`shardgate validate` checks the file first).

Example:
  printf '%s\\n' \"$PASSWORD\" | shardgate dashboard hash-password
  shardgate dashboard hash-password < password.txt")]
    HashPassword,
}

/// `shardgate cache ...`.
#[derive(Debug, Subcommand)]
enum CacheAction {
    /// Fill a distribution's cache from a list of paths ahead of a release,
    /// so the first players get hits: a bounded number at once, with a
    /// progress bar (rate, ETA) and a summary (fetched, already fresh,
    /// failed with reasons).
    #[command(after_help = "\
The running gateway does the work (POST /apisix/admin/distributions/<ID>/warm):
each path is fetched as a player's GET would be, through the distribution's
canary, behaviors, cache and origins; not its web ACL (the fetch is yours, run
inside the gateway; the access log shows it with user agent
shardgate-cache-warm). It needs an edge listener (edge.http), of any kind.
`fetched`: the edge went to the origin and stored it; `already fresh`: the
cache held a fresh copy; `failed`: an error status, an unreachable origin, or
an answer the cache does not store (no-store, private, too large), with the
reason.

The paths file has one path per line (with its query, if the cache policy keys
on one); blank lines and lines starting with # are skipped; - reads standard
input. At most 100000 paths per run. --variant staging warms the staging
distribution of the distribution's continuous deployment policy, whatever
its traffic settings (a header, or a weight with or without stickiness).

A gateway warms its own cache: in a cluster, run it against each instance
(--admin-url). Progress is drawn on stderr (a bar on a terminal, a line every
5 s otherwise); the summary goes to stdout. Ctrl-C cancels the job.

Exit status:
  0  every path is in the cache (fetched or already fresh)
  1  nothing was warmed: the file, the request or the Admin API failed
  2  the job ran, but some paths failed (listed), or it was cancelled

Example:
  export SHARDGATE_ADMIN_KEY=...
  find build/cdn -type f -printf '/%P\\n' > paths.txt
  shardgate cache warm --distribution assets --paths-from paths.txt --concurrency 16
  git diff --name-only v1.1 v1.2 -- cdn/ | sed 's|^cdn||' \\
    | shardgate cache warm --distribution assets --variant staging --paths-from -")]
    Warm {
        #[command(flatten)]
        admin: AdminArgs,
        /// The distribution's id (a primary; with --variant staging, its
        /// staging side is warmed).
        #[arg(long, value_name = "ID")]
        distribution: String,
        /// The file of paths, one per line; `-` for standard input.
        #[arg(long, value_name = "FILE")]
        paths_from: PathBuf,
        /// The side of a canary to warm.
        #[arg(long, value_enum, default_value = "primary")]
        variant: cache_cli::Variant,
        /// Fetches at once (1 to 64).
        #[arg(long, value_name = "N", default_value_t = shardgate_admin::api::warm::DEFAULT_WARM_CONCURRENCY as u32,
              value_parser = clap::value_parser!(u32).range(1..=shardgate_admin::api::warm::MAX_WARM_CONCURRENCY as i64))]
        concurrency: u32,
    },
}

/// How to reach a running gateway's Admin API.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// The Admin API's URL.
    #[arg(long, env = "SHARDGATE_ADMIN_URL", default_value = admin_client::DEFAULT_ADMIN_URL)]
    admin_url: String,
    /// The admin key. Prefer the environment variable: a command line is
    /// visible to other users of the machine.
    #[arg(long, env = "SHARDGATE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Longest one Admin API request may take, connecting included, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = admin_client::DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
}

impl AdminArgs {
    fn client(self) -> anyhow::Result<admin_client::AdminClient> {
        let key = config_code::admin_key(self.admin_key)?;
        admin_client::AdminClient::new(&self.admin_url, key, std::time::Duration::from_secs(self.timeout))
            .map_err(anyhow::Error::msg)
    }
}

#[derive(Debug, Subcommand)]
enum StoreAction {
    /// Report what the store file holds and where it is damaged, without
    /// changing it. Exits 1 when `run` would refuse the store.
    Check {
        /// Bootstrap file (YAML) naming `store.data_dir`.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The data directory (instead of the one in the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Keep a copy of a damaged store file, truncate it at its first bad
    /// record and report what was lost. Refused while a gateway runs on it,
    /// and for a file written by another shardgate version (or not a store
    /// file) unless `--force`.
    Repair {
        /// Bootstrap file (YAML) naming `store.data_dir`.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The data directory (instead of the one in the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also truncate where the file holds data this version cannot
        /// read (written by a newer shardgate, or not a store file): what
        /// follows is lost for every version (a copy is kept).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match config::Config::load(config.as_deref()) {
            Ok(c) => {
                let key = match c.admin_key() {
                    Ok(_) => "set",
                    Err(e) => {
                        eprintln!("shardgate: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                println!(
                    "ok: {} stream listener(s), {} edge listener(s), admin on {}, metrics on {}, store {} (admin key {key})",
                    c.stream.tcp.len() + c.stream.udp.len(),
                    c.edge.http.len(),
                    c.admin.listen,
                    c.metrics.listen,
                    c.store.data_dir.display()
                );
                println!("listeners it would open:");
                for line in c.describe_listeners() {
                    println!("  {line}");
                }
                for w in c.warnings() {
                    eprintln!("shardgate: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardgate: invalid config: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Store { action } => store_command(action),
        Command::Dashboard { action: DashboardAction::HashPassword } => match dashboard_cli::hash_password_from_stdin()
        {
            Ok(phc) => {
                println!("{phc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardgate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Cache { action: CacheAction::Warm { admin, distribution, paths_from, variant, concurrency } } => {
            cli_command(async move {
                let args =
                    cache_cli::WarmArgs { distribution: &distribution, paths_from: &paths_from, variant, concurrency };
                cache_cli::warm(admin.client()?, args).await
            })
        }
        Command::Export { admin, output, include_secrets, force } => cli_command(async move {
            config_code::export(&mut admin.client()?, &output, include_secrets, force).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Diff { admin, dir } => cli_command(async move {
            Ok(match config_code::diff(&mut admin.client()?, &dir).await? {
                config_code::DiffOutcome::Same => ExitCode::SUCCESS,
                config_code::DiffOutcome::Differs => ExitCode::from(2),
                config_code::DiffOutcome::Refused => ExitCode::FAILURE,
            })
        }),
        Command::Apply { admin, dir, prune, dry_run } => cli_command(async move {
            config_code::apply(&mut admin.client()?, &dir, prune, dry_run).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backup { config, output } => cli_command(async move {
            let config = config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
            backup::backup(&config, &output).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restore { config, input, replace } => cli_command(async move {
            let config = config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
            backup::restore(&config, &input, replace).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Healthcheck { config, url, path, timeout } => cli_command(async move {
            Ok(healthcheck::healthcheck(
                config.as_deref(),
                url.as_deref(),
                &path,
                std::time::Duration::from_secs(timeout.max(1)),
            )
            .await)
        }),
        Command::Drain { config, pid_file, wait, timeout } => cli_command(async move {
            Ok(drain_cli::drain(
                config.as_deref(),
                pid_file.as_deref(),
                wait,
                std::time::Duration::from_secs(timeout.max(1)),
            )
            .await)
        }),
        Command::Reload { config, pid_file, timeout } => cli_command(async move {
            Ok(reload_cli::reload(
                config.as_deref(),
                pid_file.as_deref(),
                std::time::Duration::from_secs(timeout.max(1)),
            )
            .await)
        }),
        Command::Run { config: config_path, pid_file } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("shardgate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // SIGHUP's default action ends the process, and a PID 1 (in a
            // container) never sees a SIGTERM it has no handler for: handle
            // them before anything else, so a SIGHUP sent while starting is
            // applied once started and a stop signal stops a gateway still
            // starting.
            let signals = {
                let _runtime = runtime.enter();
                match run::Signals::install() {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("shardgate: cannot install the signal handlers: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            let config = match config::Config::load(config_path.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shardgate: invalid config: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let args = run::RunArgs { config_path, pid_file };
            match runtime.block_on(run::run(config, args, signals)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "shardgate stopped on an error");
                    eprintln!("shardgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a command that is not the gateway on a small runtime; an error is
/// printed with its context chain and exits 1.
fn cli_command(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn store_command(action: StoreAction) -> ExitCode {
    let (repair, force, config, data_dir) = match action {
        StoreAction::Check { config, data_dir } => (false, false, config, data_dir),
        StoreAction::Repair { config, data_dir, force } => (true, force, config, data_dir),
    };
    let dir = match data_dir {
        Some(d) => d,
        None => match config::Config::load_unchecked(config.as_deref()) {
            Ok(c) => c.store.data_dir,
            Err(e) => {
                eprintln!("shardgate: invalid config: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = if repair { store_cli::repair(&dir, force) } else { store_cli::check(&dir) };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("shardgate: {e}");
            ExitCode::FAILURE
        }
    }
}
