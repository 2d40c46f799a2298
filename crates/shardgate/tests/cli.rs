//! The command line: `validate` (bad fields, silent traps such as a log
//! filter that is not a level in `log.level` or `RUST_LOG`, an unreadable
//! GeoIP database, keys from documentation), `run` refusing to start without
//! an admin key, and `--help` on every subcommand.

use std::process::Command;

fn shardgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    c.env_remove("SHARDGATE_ADMIN_KEY");
    c
}

fn write(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let p = dir.join("shardgate.yaml");
    std::fs::write(&p, yaml).expect("write config");
    p
}

#[test]
fn validate_accepts_a_good_file_and_names_the_path_of_a_bad_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(
        dir.path(),
        "stream:\n  only: true\n  tcp:\n    - addr: 8888\n      tls: true\nadmin:\n  key: a-key-that-is-long-enough\n",
    );
    let out = shardgate().args(["validate", "--config"]).arg(&good).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 stream listener"));

    let bad = write(dir.path(), "stream:\n  tcp:\n    - addr: 8888\n      tls: yes-please\n");
    let out = shardgate().args(["validate", "--config"]).arg(&bad).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("stream.tcp[0].tls"), "{err}");

    let targeted =
        write(dir.path(), "edge:\n  cache:\n    targeted_cache_control: [CDN-Cache-Control, Cache-Control]\n");
    let out = shardgate().args(["validate", "--config"]).arg(&targeted).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("edge.cache.targeted_cache_control[1]"), "{err}");

    let unknown = write(dir.path(), "admin:\n  lisen: 127.0.0.1:9180\n");
    let out = shardgate().args(["validate", "--config"]).arg(&unknown).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn run_refuses_to_start_without_an_admin_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(dir.path(), &format!("store:\n  data_dir: {}\n", dir.path().join("data").display()));
    let out = shardgate().args(["run", "--config"]).arg(&cfg).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {err}");
    assert!(err.contains("no admin key") && err.contains("SHARDGATE_ADMIN_KEY"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was started or created");

    // The environment variable is enough, and validate without --config checks the defaults.
    let out = shardgate().arg("validate").env("SHARDGATE_ADMIN_KEY", "0123456789abcdef0123").output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = shardgate().arg("validate").env("SHARDGATE_ADMIN_KEY", "short").output().expect("run");
    assert!(!out.status.success(), "a short key is refused");
}

#[test]
fn validate_prints_the_listeners_and_refuses_silent_traps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "stream:\n  tcp:\n    - addr: 8888\n      tls: true\n    - addr: \"127.0.0.1:9100\"\nedge:\n  http:\n    - addr: 8080\n    - addr: 8443\n      tls: true\nadmin:\n  listen: \"0.0.0.0:9180\"\n  key: a-key-that-is-long-enough\n",
    );
    let out = shardgate().args(["validate", "--config"]).arg(&cfg).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in [
        "stream tls 0.0.0.0:8888",
        "stream tcp 127.0.0.1:9100",
        "edge http 0.0.0.0:8080",
        "edge https 0.0.0.0:8443",
        "admin 0.0.0.0:9180",
    ] {
        assert!(stdout.lines().any(|l| l.trim() == line), "{line:?} listed:\n{stdout}");
    }
    assert!(
        stderr.contains("warning") && stderr.contains("beyond this host"),
        "an exposed Admin API is warned about: {stderr}"
    );

    // A log level that would silence every log line is refused, by `validate` and by `run`.
    let cfg = write(dir.path(), "log:\n  level: verbose\nadmin:\n  key: a-key-that-is-long-enough\n");
    for cmd in ["validate", "run"] {
        let out = shardgate().args([cmd, "--config"]).arg(&cfg).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} must refuse it");
        assert!(err.contains("log.level") && err.contains("\"verbose\" is not a level"), "{cmd}: {err}");
    }
}

/// The example file in the repository is a valid bootstrap file.
#[test]
fn the_example_config_validates() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shardgate.example.yaml");
    let out = shardgate()
        .args(["validate", "--config", example])
        .env("SHARDGATE_ADMIN_KEY", "0123456789abcdef0123")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `RUST_LOG` wins over `log.level`, so a bare word there silences the log
/// just the same: refused by `validate` and by `run`, naming the variable.
#[test]
fn a_rust_log_that_would_silence_the_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(dir.path(), "admin:\n  key: a-key-that-is-long-enough\n");
    for cmd in ["validate", "run"] {
        let out = shardgate().args([cmd, "--config"]).arg(&cfg).env("RUST_LOG", "verbose").output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} must refuse it");
        assert!(err.contains("RUST_LOG: \"verbose\" is not a level"), "{cmd}: {err}");
    }
    let out = shardgate()
        .args(["validate", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,shardgate::access=off")
        .output()
        .expect("run");
    assert!(out.status.success(), "a real filter passes: {}", String::from_utf8_lossy(&out.stderr));
}

/// Keys printed in documentation are accepted (the seed's walkthrough uses
/// APISIX's) but warned about, wherever they come from.
#[test]
fn keys_from_documentation_are_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(dir.path(), "admin:\n  viewer_key: 4054f7cf07e344346cd3f287985e76a2\n");
    let out = shardgate()
        .args(["validate", "--config"])
        .arg(&cfg)
        .env("SHARDGATE_ADMIN_KEY", "replace-with-a-long-random-secret")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: the admin key is the placeholder in shardgate's README"), "{err}");
    assert!(err.contains("warning: the admin.viewer_key is APISIX's published default viewer key"), "{err}");

    let cfg = write(dir.path(), "admin:\n  key: edd1c9f034335f136f87ad84b625c8f1\n");
    let out = shardgate().args(["validate", "--config"]).arg(&cfg).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("APISIX's published default admin key"), "{err}");

    let cfg = write(dir.path(), "admin:\n  key: a-key-that-is-long-enough\n");
    let out = shardgate().args(["validate", "--config"]).arg(&cfg).output().expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "a key of one's own is not warned about");
}

/// A geo database that cannot be opened is refused by `validate`, as `run`
/// refuses it, instead of passing and failing at start.
#[test]
fn validate_opens_the_geoip_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such.mmdb");
    let cfg = write(
        dir.path(),
        &format!("waf:\n  geoip_database: {}\nadmin:\n  key: a-key-that-is-long-enough\n", missing.display()),
    );
    let out = shardgate().args(["validate", "--config"]).arg(&cfg).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("waf.geoip_database") && err.contains("no-such.mmdb"), "{err}");
}

/// Every subcommand has a `--help`; the program's own describes the stream
/// gateway, the edge and the WAF, and `run`'s says what it opens.
#[test]
fn every_subcommand_has_help() {
    let out = shardgate().arg("--help").output().expect("run");
    let top = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    for part in ["Stream gateway (L4)", "Edge (L7)", "WAF", "AWS WAF v2 JSON", "Admin API"] {
        assert!(top.contains(part), "{part:?} in --help:\n{top}");
    }
    // The command list: the lines after "Commands:" up to the blank line.
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    for c in &commands {
        let out = shardgate().args([c, "--help"]).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage: shardgate"), "{c} --help:\n{text}");
    }
    let run = shardgate().args(["run", "--help"]).output().expect("run");
    let run = String::from_utf8_lossy(&run.stdout);
    for part in ["stream.tcp", "edge.http", "WAF", "/readyz", "SIGTERM"] {
        assert!(run.contains(part), "{part:?} in run --help:\n{run}");
    }
    for sub in ["check", "repair"] {
        let out = shardgate().args(["store", sub, "--help"]).output().expect("run");
        assert!(out.status.success(), "store {sub} --help");
    }
}
