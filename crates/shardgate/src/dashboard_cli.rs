//! `shardgate dashboard hash-password`: reads a password from standard
//! input and prints its `password_hash` for `dashboard.users` (a PHC string,
//! PBKDF2-HMAC-SHA256 at 600,000 iterations). The password is never taken
//! from the command line, where other users of the machine could read it
//! (`ps`, `/proc/<pid>/cmdline`, shell history).

use std::io::Read;

use shardgate_admin::dashboard::PasswordHash;
use shardgate_admin::dashboard::password::MAX_PASSWORD_BYTES;

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

/// Reads standard input (one line, bounded) and returns the PHC string.
pub fn hash_password_from_stdin() -> Result<String, String> {
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        eprintln!("Type the password, then Enter (it is shown as typed; pipe it in to avoid that):");
    }
    let mut input = Vec::new();
    // One byte over the bound, plus a line end, tells a long password apart.
    stdin
        .lock()
        .take(MAX_PASSWORD_BYTES as u64 + 3)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let hash = {
        let password = password_line(&input)?;
        PasswordHash::new_random(password.as_bytes()).map_err(|e| e.to_string())?
    };
    input.fill(0);
    Ok(hash.to_phc())
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
