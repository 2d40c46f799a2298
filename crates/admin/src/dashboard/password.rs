//! Dashboard passwords: PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) through aws-lc-rs,
//! stored as a PHC string (the P-H-C "PHC string format":
//! `$<id>$<param>=<value>$<salt>$<hash>`, salt and hash in standard base64
//! without padding), the form the RustCrypto `pbkdf2` crate and passlib's
//! `pbkdf2_sha256` also write:
//!
//! ```text
//! $pbkdf2-sha256$i=600000$<16-byte salt>$<32-byte hash>
//! ```
//!
//! New hashes use [`ITERATIONS`] = 600,000, the count OWASP's Password
//! Storage Cheat Sheet recommends for PBKDF2-HMAC-SHA256 since 2023.
//! Parsing bounds what a configured hash may ask for, because every sign-in
//! attempt pays for it: at least [`MIN_ITERATIONS`] (weaker hashes are
//! refused, naming why), at most [`MAX_ITERATIONS`] (one attempt must not
//! take the CPU for minutes). Verification compares in constant time
//! (`aws_lc_rs::pbkdf2::verify`).
//!
//! A [`PasswordHash`] never prints its salt or hash (`Debug` says which
//! parameters it has), so it cannot reach a log by accident.

use std::fmt;
use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// The PHC identifier of PBKDF2 with HMAC-SHA256.
pub const ALGORITHM_ID: &str = "pbkdf2-sha256";
/// Iterations of new hashes: OWASP Password Storage Cheat Sheet (2023),
/// "PBKDF2-HMAC-SHA256: 600,000 iterations".
pub const ITERATIONS: u32 = 600_000;
/// Fewest iterations a configured hash may have: 100,000, a sixth of
/// OWASP's count; older, weaker hashes must be made again.
pub const MIN_ITERATIONS: u32 = 100_000;
/// Most iterations a configured hash may have: ten million (about 17 times
/// OWASP's count), so one sign-in attempt stays a fraction of a second to a
/// few seconds of CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt length of new hashes (NIST SP 800-132 asks for at least 128 bits).
pub const SALT_LEN: usize = 16;
/// Salt lengths accepted in a configured hash.
const SALT_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
/// Hash length of new hashes: SHA-256's output.
pub const HASH_LEN: usize = 32;
/// Hash lengths accepted in a configured hash.
const HASH_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
/// Longest PHC string parsed.
const MAX_PHC_LEN: usize = 256;
/// Longest password hashed or verified, in bytes (a longer one is simply
/// wrong at sign-in, refused by `hash-password`).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A parsed PBKDF2-HMAC-SHA256 PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .field("hash_len", &self.hash.len())
            .finish()
    }
}

/// Why a PHC string was refused; the message names the part at fault and
/// never repeats the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhcError(String);

impl fmt::Display for PhcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PhcError {}

fn bad(why: impl Into<String>) -> PhcError {
    PhcError(why.into())
}

impl PasswordHash {
    /// Parses `$pbkdf2-sha256$i=<iterations>[,l=<hash length>]$<salt>$<hash>`.
    pub fn parse(phc: &str) -> Result<Self, PhcError> {
        const EXPECTED: &str = "expected $pbkdf2-sha256$i=<iterations>$<base64 salt>$<base64 hash> (made by `shardgate dashboard hash-password`)";
        if phc.len() > MAX_PHC_LEN {
            return Err(bad(format!("longer than {MAX_PHC_LEN} characters; {EXPECTED}")));
        }
        let Some(rest) = phc.strip_prefix('$') else {
            return Err(bad(format!("does not start with '$'; {EXPECTED}")));
        };
        let parts: Vec<&str> = rest.split('$').collect();
        let [id, params, salt, hash] = parts.as_slice() else {
            return Err(bad(format!("has {} '$'-separated parts instead of 4; {EXPECTED}", parts.len())));
        };
        if *id != ALGORITHM_ID {
            let shown: String = id.chars().take(32).filter(|c| c.is_ascii_graphic()).collect();
            return Err(bad(format!("algorithm {shown:?} is not supported; only {ALGORITHM_ID} is ({EXPECTED})")));
        }
        let mut iterations = None;
        let mut length = None;
        for param in params.split(',') {
            let (name, value) =
                param.split_once('=').ok_or_else(|| bad(format!("parameter {param:?} is not name=value")))?;
            let number: u32 =
                value.parse().map_err(|_| bad(format!("parameter {name}: {value:?} is not a whole number")))?;
            let slot = match name {
                "i" => &mut iterations,
                "l" => &mut length,
                other => return Err(bad(format!("unknown parameter {other:?} (only i and l are known)"))),
            };
            if slot.replace(number).is_some() {
                return Err(bad(format!("parameter {name} is given twice")));
            }
        }
        let iterations = iterations.ok_or_else(|| bad("the iteration count i=<n> is missing"))?;
        if iterations < MIN_ITERATIONS {
            return Err(bad(format!(
                "i={iterations} is below the minimum of {MIN_ITERATIONS} iterations; hash the password again with `shardgate dashboard hash-password` ({ITERATIONS})"
            )));
        }
        if iterations > MAX_ITERATIONS {
            return Err(bad(format!(
                "i={iterations} is above the maximum of {MAX_ITERATIONS} iterations (every sign-in attempt would pay for them)"
            )));
        }
        let salt =
            STANDARD_NO_PAD.decode(salt).map_err(|e| bad(format!("the salt is not base64 without padding: {e}")))?;
        if !SALT_RANGE.contains(&salt.len()) {
            return Err(bad(format!(
                "the salt is {} bytes; {} to {} are accepted",
                salt.len(),
                SALT_RANGE.start(),
                SALT_RANGE.end()
            )));
        }
        let hash =
            STANDARD_NO_PAD.decode(hash).map_err(|e| bad(format!("the hash is not base64 without padding: {e}")))?;
        if !HASH_RANGE.contains(&hash.len()) {
            return Err(bad(format!(
                "the hash is {} bytes; {} to {} are accepted",
                hash.len(),
                HASH_RANGE.start(),
                HASH_RANGE.end()
            )));
        }
        if let Some(l) = length
            && usize::try_from(l).ok() != Some(hash.len())
        {
            return Err(bad(format!("l={l} does not match the hash's {} bytes", hash.len())));
        }
        let iterations = NonZeroU32::new(iterations).ok_or_else(|| bad("i=0"))?;
        Ok(PasswordHash { iterations, salt, hash })
    }

    /// Hashes `password` with `salt` at [`ITERATIONS`].
    pub fn derive(password: &[u8], salt: &[u8]) -> Self {
        let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
        let mut hash = vec![0u8; HASH_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password, &mut hash);
        PasswordHash { iterations, salt: salt.to_vec(), hash }
    }

    /// A hash no password matches, costing `iterations` (clamped to
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]) to check: checked against
    /// when a user name is unknown, so that answer takes as long as a wrong
    /// password. Give it the largest count among the configured users, so
    /// an unknown name is never the quickest answer.
    pub fn decoy(iterations: u32) -> Self {
        let iterations = NonZeroU32::new(iterations.clamp(MIN_ITERATIONS, MAX_ITERATIONS)).unwrap_or(NonZeroU32::MIN);
        PasswordHash { iterations, salt: vec![0u8; SALT_LEN], hash: vec![0u8; HASH_LEN] }
    }

    /// Hashes `password` with a fresh random salt at [`ITERATIONS`].
    pub fn new_random(password: &[u8]) -> Result<Self, PhcError> {
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| bad("the system's random generator failed"))?;
        Ok(Self::derive(password, &salt))
    }

    /// Whether `password` is the one hashed; constant time in the hash
    /// comparison. Takes the hash's iteration count of CPU: call it off the
    /// async runtime (`spawn_blocking`).
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, self.iterations, &self.salt, password, &self.hash).is_ok()
    }

    /// The PHC string.
    pub fn to_phc(&self) -> String {
        format!(
            "${ALGORITHM_ID}$i={}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hash_round_trips_and_verifies_only_its_password() {
        let h = PasswordHash::new_random(b"Admin@2025").expect("hash");
        let phc = h.to_phc();
        assert!(phc.starts_with("$pbkdf2-sha256$i=600000$"), "{phc}");
        let parsed = PasswordHash::parse(&phc).expect("parse");
        assert_eq!(parsed, h);
        assert!(parsed.verify(b"Admin@2025"));
        assert!(!parsed.verify(b"Admin@2024"));
        assert!(!parsed.verify(b""));
        let other = PasswordHash::new_random(b"Admin@2025").expect("hash");
        assert_ne!(other.to_phc(), phc, "a fresh salt each time");
        assert!(!format!("{h:?}").contains(&phc[25..40]), "Debug shows no salt or hash");
    }

    /// The hash of a known vector: RFC 7914 §11 lists PBKDF2-HMAC-SHA256
    /// test vectors; P="passwd", S="salt", c=1, dkLen=64 starts 55 ac 04 6e.
    /// With c below the minimum it cannot be parsed, so check the engine
    /// directly and the parser's refusal of it.
    #[test]
    fn the_engine_matches_rfc_7914_and_weak_counts_are_refused() {
        let mut out = [0u8; 64];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, NonZeroU32::MIN, b"salt", b"passwd", &mut out);
        assert_eq!(&out[..4], &[0x55, 0xac, 0x04, 0x6e]);
        let phc = format!("$pbkdf2-sha256$i=1${}${}", STANDARD_NO_PAD.encode([7u8; 16]), STANDARD_NO_PAD.encode(out));
        let e = PasswordHash::parse(&phc).expect_err("i=1");
        assert!(e.to_string().contains("below the minimum"), "{e}");
    }

    #[test]
    fn bad_strings_are_refused_with_their_reason() {
        let salt = STANDARD_NO_PAD.encode([1u8; 16]);
        let hash = STANDARD_NO_PAD.encode([2u8; 32]);
        let ok = format!("$pbkdf2-sha256$i=600000${salt}${hash}");
        PasswordHash::parse(&ok).expect("well formed");
        PasswordHash::parse(&format!("$pbkdf2-sha256$i=600000,l=32${salt}${hash}")).expect("with l");
        for (phc, why) in [
            ("Admin@2025".to_owned(), "does not start with '$'"),
            (String::new(), "does not start with '$'"),
            (format!("$pbkdf2-sha256${salt}${hash}"), "3 '$'-separated parts"),
            (format!("$pbkdf2-sha512$i=600000${salt}${hash}"), "\"pbkdf2-sha512\" is not supported"),
            (format!("$argon2id$v=19$m=65536,t=3,p=4${salt}${hash}"), "5 '$'-separated parts"),
            (format!("$pbkdf2-sha256$rounds=600000${salt}${hash}"), "unknown parameter \"rounds\""),
            (format!("$pbkdf2-sha256$600000${salt}${hash}"), "not name=value"),
            (format!("$pbkdf2-sha256$i=lots${salt}${hash}"), "not a whole number"),
            (format!("$pbkdf2-sha256$i=600000,i=600000${salt}${hash}"), "given twice"),
            (format!("$pbkdf2-sha256$l=32${salt}${hash}"), "i=<n> is missing"),
            (format!("$pbkdf2-sha256$i=29000${salt}${hash}"), "below the minimum"),
            (format!("$pbkdf2-sha256$i=4000000000${salt}${hash}"), "above the maximum"),
            (format!("$pbkdf2-sha256$i=600000$not*base64${hash}"), "salt is not base64"),
            (format!("$pbkdf2-sha256$i=600000${salt}=${hash}"), "salt is not base64"),
            (format!("$pbkdf2-sha256$i=600000${}${hash}", STANDARD_NO_PAD.encode([1u8; 8])), "salt is 8 bytes"),
            (format!("$pbkdf2-sha256$i=600000${salt}$"), "hash is 0 bytes"),
            (format!("$pbkdf2-sha256$i=600000${salt}$!!"), "hash is not base64"),
            (format!("$pbkdf2-sha256$i=600000,l=64${salt}${hash}"), "l=64 does not match"),
            (format!("$pbkdf2-sha256$i=600000${salt}${hash}{}", "A".repeat(300)), "longer than 256"),
        ] {
            let e = PasswordHash::parse(&phc).expect_err(&phc).to_string();
            assert!(e.contains(why), "{phc}: {e}");
            assert!(!e.contains(&hash), "the error does not repeat the hash: {e}");
        }
    }

    #[test]
    fn a_password_over_the_bound_never_verifies() {
        let long = vec![b'a'; MAX_PASSWORD_BYTES + 1];
        let h = PasswordHash::derive(&long, &[3u8; 16]);
        assert!(!h.verify(&long));
    }
}
