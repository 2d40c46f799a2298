//! `shardgate dashboard hash-password`: reads a password from standard
//! input and prints its `password_hash` for `dashboard.users` (a PHC string,
//! PBKDF2-HMAC-SHA256 at 600,000 iterations). The password is never taken
//! from the command line, where other users of the machine could read it
//! (`ps`, `/proc/<pid>/cmdline`, shell history). One line is read: Enter
//! ends it (or the end of a pipe). On a terminal the echo is turned off
//! while it is typed (termios `ECHO`, as getpass(3) does) and put back
//! afterwards, also when reading fails.

use std::io::{BufRead, Read};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use shardgate_admin::dashboard::PasswordHash;
use shardgate_admin::dashboard::password::MAX_PASSWORD_BYTES;

/// Bytes read from standard input at most: the longest password, one byte
/// more (to tell a longer one apart) and a `\r\n` line end.
const MAX_INPUT_BYTES: u64 = MAX_PASSWORD_BYTES as u64 + 3;

/// The password on the first line of `input`: without its line end
/// (`\n` or `\r\n`), otherwise exactly as typed (spaces count).
pub fn password_line(input: &[u8]) -> Result<&str, String> {
    let line = match input.iter().position(|b| *b == b'\n') {
        Some(end) => &input[..end],
        None => input,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("no password on standard input (an empty password is refused)".into());
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    std::str::from_utf8(line).map_err(|_| "the password is not UTF-8 text".to_owned())
}

/// The terminal on standard input with its echo turned off; dropping it
/// (on success, error or panic) puts the saved settings back.
struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    /// Turns off the echo of the terminal on standard input.
    fn new() -> rustix::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // As getpass(3): input typed before the prompt (and echoed) is dropped.
        termios::tcsetattr(&stdin, OptionalActions::Flush, &quiet)?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Err(e) = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved) {
            eprintln!("shardgate: cannot turn the terminal's echo back on ({e}); run `stty echo`");
        }
    }
}

/// Reads the first line of standard input (at most [`MAX_INPUT_BYTES`]:
/// a line end ends it, no need for Ctrl-D) and returns its PHC string. On a
/// terminal, what is typed is not shown.
pub fn hash_password_from_stdin() -> Result<String, String> {
    let stdin = std::io::stdin();
    let echo_off = if std::io::IsTerminal::is_terminal(&stdin) {
        match EchoOff::new() {
            Ok(guard) => {
                eprint!("Type the password, then Enter (it is not shown): ");
                Some(guard)
            }
            Err(e) => {
                eprintln!("Type the password, then Enter (it is shown as typed: the echo cannot be turned off: {e}):");
                None
            }
        }
    } else {
        None
    };
    let mut input = Vec::with_capacity(MAX_INPUT_BYTES as usize);
    let read = stdin.lock().take(MAX_INPUT_BYTES).read_until(b'\n', &mut input);
    if echo_off.is_some() {
        // The Enter that ended the line was not echoed either.
        eprintln!();
    }
    drop(echo_off);
    let result = match read {
        Err(e) => Err(format!("reading standard input: {e}")),
        Ok(_) => password_line(&input)
            .and_then(|password| PasswordHash::new_random(password.as_bytes()).map_err(|e| e.to_string())),
    };
    input.fill(0);
    std::hint::black_box(&input);
    result.map(|hash| hash.to_phc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_password() {
        assert_eq!(password_line(b"s3cret pass\n"), Ok("s3cret pass"));
        assert_eq!(password_line(b"s3cret pass\r\n"), Ok("s3cret pass"));
        assert_eq!(password_line(b" spaced \nsecond line"), Ok(" spaced "));
        assert_eq!(password_line(b"no newline"), Ok("no newline"));
        for bad in [&b""[..], b"\n", b"\r\n", b"\xff\xfe\n"] {
            assert!(password_line(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'a'; MAX_PASSWORD_BYTES + 1];
        assert!(password_line(&long).expect_err("long").contains("longer than"));
        assert!(password_line(&long[..MAX_PASSWORD_BYTES]).is_ok());
    }
}
