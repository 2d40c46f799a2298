//! The pid file, where `shardgate reload` finds a running gateway, and the
//! checks that a process id still names that gateway.
//!
//! `shardgate run` writes its pid to `<store.data_dir>/shardgate.pid` (or
//! `--pid-file`), mode 0644, right after it starts handling SIGHUP, and
//! removes it on the way out if it still holds its pid. A file left by a
//! process that is gone, or whose pid now belongs to another program, is
//! stale and replaced; one held by another running shardgate (two gateways
//! on one data directory, as etcd instances may be) is left alone, with a
//! warning.
//!
//! A process is taken for a shardgate gateway when `/proc/<pid>/exe` is a
//! file named `shardgate…` and its arguments are `shardgate run …`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The pid file's name in the data directory.
pub const FILE_NAME: &str = "shardgate.pid";
/// Largest pid file read (a pid and a newline; anything longer is not one).
const MAX_PID_FILE_BYTES: u64 = 64;

/// Where the pid file is when `--pid-file` is not given.
pub fn default_path(config: &Config) -> PathBuf {
    config.store.data_dir.join(FILE_NAME)
}

/// A pid file this process wrote; removed when dropped, if it still holds
/// this process's pid.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path` (atomically: a temporary file,
    /// then a rename). Returns `Ok(None)` when another running shardgate
    /// holds the file.
    pub fn create(path: &Path) -> Result<Option<PidFile>, String> {
        let pid = std::process::id();
        if let Ok(other) = read(path)
            && other != pid
            && let Ok(process) = Process::inspect(other)
            && process.is_shardgate_run()
        {
            tracing::warn!(
                file = %path.display(),
                pid = other,
                "another running shardgate holds the pid file; not replacing it (give this gateway its own --pid-file so `shardgate reload` can find it)"
            );
            return Ok(None);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("pid.{pid}.tmp"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            if let Err(rm) = std::fs::remove_file(&tmp) {
                tracing::debug!(file = %tmp.display(), error = %rm, "no temporary pid file to remove");
            }
            return Err(format!("{}: {e}", path.display()));
        }
        tracing::info!(file = %path.display(), pid, "pid file written");
        Ok(Some(PidFile { path: path.to_owned(), pid }))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another gateway may have replaced a file it found stale: leave its pid.
        if read(&self.path).is_ok_and(|p| p == self.pid)
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

/// The pid in a pid file.
pub fn read(path: &Path) -> Result<u32, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_PID_FILE_BYTES {
        return Err(format!("{}: not a pid file ({} bytes)", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0 && i32::try_from(*p).is_ok())
        .ok_or_else(|| format!("{}: {:?} is not a process id", path.display(), text.trim()))
}

/// What `/proc` says about a process.
#[derive(Debug)]
pub struct Process {
    /// The executable.
    pub exe: PathBuf,
    /// Its arguments, the program name first.
    pub args: Vec<OsString>,
    /// Its working directory (relative paths in its arguments start here).
    pub cwd: PathBuf,
}

impl Process {
    /// Reads `/proc/<pid>`; an error says the process is gone or cannot be
    /// inspected by this user.
    pub fn inspect(pid: u32) -> Result<Process, String> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let exe = std::fs::read_link(proc.join("exe")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("no process {pid} is running"),
            _ => format!("cannot inspect process {pid}: {e}"),
        })?;
        let cmdline = std::fs::read(proc.join("cmdline")).map_err(|e| format!("cannot inspect process {pid}: {e}"))?;
        let args = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
            .collect();
        let cwd = std::fs::read_link(proc.join("cwd")).map_err(|e| format!("cannot inspect process {pid}: {e}"))?;
        Ok(Process { exe, args, cwd })
    }

    /// Whether it is `shardgate run`.
    pub fn is_shardgate_run(&self) -> bool {
        let name = self.exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A binary replaced on disk while running reads "shardgate (deleted)".
        name.starts_with("shardgate") && self.args.get(1).is_some_and(|a| a == "run")
    }

    /// The `--config` it runs with, resolved against its working directory;
    /// `None` when it runs on the defaults.
    pub fn config_arg(&self) -> Option<PathBuf> {
        let mut args = self.args.iter().skip(2);
        while let Some(a) = args.next() {
            let bytes = a.as_bytes();
            let value = if bytes == b"--config" || bytes == b"-c" {
                args.next().cloned()
            } else {
                let inline =
                    bytes.strip_prefix(b"--config=").or_else(|| bytes.strip_prefix(b"-c").filter(|v| !v.is_empty()));
                inline.map(|v| std::ffi::OsStr::from_bytes(v).to_owned())
            };
            if let Some(v) = value {
                return Some(self.cwd.join(v));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_written_0644_and_removed_only_while_it_holds_our_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(FILE_NAME);
        let file = PidFile::create(&path).expect("create").expect("written");
        assert_eq!(read(&path).expect("read"), std::process::id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "at most 0644 (before the umask): {mode:o}");
        assert_ne!(mode & 0o400, 0, "readable by its owner: {mode:o}");
        drop(file);
        assert!(!path.exists(), "removed on drop");

        let file = PidFile::create(&path).expect("create").expect("written");
        std::fs::write(&path, "1\n").expect("another writer");
        drop(file);
        assert_eq!(read(&path).expect("kept"), 1, "another process's pid is left alone");
    }

    #[test]
    fn bad_pid_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert!(read(&path).unwrap_err().contains(FILE_NAME));
        for bad in ["", "abc", "0", "-5", "99999999999"] {
            std::fs::write(&path, bad).expect("write");
            assert!(read(&path).unwrap_err().contains("not a process id"), "{bad:?}");
        }
        std::fs::write(&path, "1".repeat(100)).expect("write");
        assert!(read(&path).unwrap_err().contains("not a pid file"));
    }

    #[test]
    fn this_test_process_is_not_a_gateway_and_config_args_resolve() {
        let me = Process::inspect(std::process::id()).expect("inspect self");
        assert!(!me.is_shardgate_run());
        let p = Process {
            exe: "/usr/bin/shardgate (deleted)".into(),
            args: ["shardgate", "run", "--config", "gw.yaml"].iter().map(OsString::from).collect(),
            cwd: "/srv".into(),
        };
        assert!(p.is_shardgate_run());
        assert_eq!(p.config_arg(), Some(PathBuf::from("/srv/gw.yaml")));
        for args in [["shardgate", "run", "-c/etc/x.yaml"], ["shardgate", "run", "--config=/etc/x.yaml"]] {
            let p = Process { args: args.iter().map(OsString::from).collect(), ..p_clone(&p) };
            assert_eq!(p.config_arg(), Some(PathBuf::from("/etc/x.yaml")));
        }
        let p = Process { args: ["shardgate", "run"].iter().map(OsString::from).collect(), ..p_clone(&p) };
        assert_eq!(p.config_arg(), None);
        let p = Process { args: ["shardgate", "validate"].iter().map(OsString::from).collect(), ..p_clone(&p) };
        assert!(!p.is_shardgate_run());
    }

    fn p_clone(p: &Process) -> Process {
        Process { exe: p.exe.clone(), args: p.args.clone(), cwd: p.cwd.clone() }
    }
}
