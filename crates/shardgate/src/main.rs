//! The `shardgate` binary: command line, bootstrap file, logging, wiring of
//! the crates, signals and the drain. `anyhow` lives here and nowhere else.
//!
//! - `shardgate run [--config FILE] [--pid-file FILE]` starts the gateway
//!   (defaults without a file); SIGHUP reloads the file.
//! - `shardgate reload [--config FILE]` checks the file and has the running
//!   gateway apply it (SIGHUP through its pid file), then reports the outcome.
//! - `shardgate validate [--config FILE]` checks a file and exits.
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
//! - `shardgate dashboard hash-password` reads a password from standard
//!   input and prints its `password_hash` for `dashboard.users`.

#![forbid(unsafe_code)]

mod admin_client;
mod backup;
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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// shardgate: one edge for game servers and game assets.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway. SIGHUP reads the bootstrap file again (see `reload`).
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
    /// Check a bootstrap file without starting.
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
            // SIGHUP's default action ends the process: handle it before
            // anything else, so one sent while starting is applied once
            // started instead.
            let hup = {
                let _runtime = runtime.enter();
                match run::handle_sighup() {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("shardgate: cannot install the SIGHUP handler: {e}");
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
            match runtime.block_on(run::run(config, args, hup)) {
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
