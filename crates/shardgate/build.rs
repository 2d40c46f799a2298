//! Build information for `shardgate_build_info`: the git commit (from
//! `SHARDGATE_BUILD_COMMIT` when set, as an image build passes it without a
//! `.git` directory; else `git rev-parse` of the checkout; else `unknown`),
//! the compiler's version and the target triple. Nothing here uses the
//! network, and a missing git is not an error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Longest commit label kept (a full SHA-256 object name is 64 characters).
const MAX_COMMIT_LEN: usize = 64;

fn main() {
    println!("cargo:rerun-if-env-changed=SHARDGATE_BUILD_COMMIT");
    let commit = match std::env::var("SHARDGATE_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => clean(c.trim()),
        _ => git_commit().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=SHARDGATE_BUILD_COMMIT={commit}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| clean(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SHARDGATE_BUILD_RUSTC={version}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=SHARDGATE_BUILD_TARGET={target}");
}

/// Keeps printable ASCII only (the value becomes a label and a `rustc-env`
/// line), bounded.
fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(MAX_COMMIT_LEN).collect()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The short commit of the checkout holding this crate, and rebuild
/// triggers on the files that move when it changes (HEAD and the branch it
/// names). Only files that exist are named: Cargo reruns the script on
/// every build for a missing one.
fn git_commit() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
    let absolute = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    let git_dir = git(&dir, &["rev-parse", "--git-dir"]).map(absolute);
    let common_dir = git(&dir, &["rev-parse", "--git-common-dir"]).map(absolute);
    if let Some(git_dir) = &git_dir {
        let head = git_dir.join("HEAD");
        watch(&head);
        let branch =
            std::fs::read_to_string(&head).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()));
        if let (Some(common), Some(branch)) = (&common_dir, branch) {
            watch(&common.join(branch));
            watch(&common.join("packed-refs"));
        }
    }
    Some(clean(&commit))
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
