//! Shared by the integration tests (each test file includes it with `mod common;`).

#![allow(dead_code)]

use std::process::Output;

use shardgate_e2e::{Gateway, GatewayBuilder};

/// A gateway builder for this package's binary.
pub fn gateway() -> GatewayBuilder {
    Gateway::builder(env!("CARGO_BIN_EXE_shardgate"))
}

/// Runs a bash script on a blocking thread (so in-process game servers keep
/// serving while it runs) and returns its output.
pub async fn bash(script: String, dir: &std::path::Path) -> Output {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash").arg("-c").arg(&script).current_dir(dir).output().expect("run bash")
    })
    .await
    .expect("bash task")
}

/// stdout and stderr of a command, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
