//! The `shardgate` binary: command line, bootstrap file, logging, wiring of
//! the crates, signals and the drain. `anyhow` lives here and nowhere else.
//!
//! - `shardgate run [--config FILE]` starts the gateway (defaults without a file).
//! - `shardgate validate [--config FILE]` checks a file and exits.
//! - `shardgate store check|repair [--config FILE | --data-dir DIR]` looks
//!   into the embedded store, or repairs a damaged one (`repair --force`
//!   also cuts data written by another shardgate version).

#![forbid(unsafe_code)]

mod config;
mod fds;
mod run;
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
    /// Run the gateway.
    Run {
        /// Bootstrap file (YAML). Without it, the defaults apply: a TLS stream
        /// listener on 0.0.0.0:8888, the Admin API on 127.0.0.1:9180, metrics
        /// on 127.0.0.1:9091, data in ./data.
        #[arg(short, long)]
        config: Option<PathBuf>,
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
                    c.stream.tcp.len(),
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
        Command::Run { config } => {
            let config = match config::Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shardgate: invalid config: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("shardgate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run::run(config)) {
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
