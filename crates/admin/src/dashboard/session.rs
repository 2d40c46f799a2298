//! Dashboard session tokens: signed and self-contained, so every replica
//! that shares the signing key accepts a session another one issued, with
//! no shared session store.
//!
//! ```text
//! v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "v1." + claims part))>
//! claims: {"u": user, "r": "admin"|"viewer", "k": "user"|"key",
//!          "e": expiry (unix seconds), "i": random 128-bit id, "c": credential stamp}
//! ```
//!
//! The MAC (RFC 2104 HMAC with SHA-256) is checked in constant time before
//! anything in the token is read. The credential stamp binds the session to
//! the credential it was made with (the user's password hash and role, or
//! the key and its role): a changed password, a user made read-only or
//! removed, or a rotated key ends that credential's sessions at once, on
//! every replica.
//!
//! The CSRF token is `base64url(HMAC-SHA256(key, "csrf\0" + session id))`:
//! derived from the session, so no replica needs to remember it (the
//! "HMAC-based synchronizer token" of OWASP's CSRF Prevention Cheat Sheet),
//! and compared in constant time.
//!
//! Sign-out puts the session id on this process's [`DenyList`] until the
//! session would have expired. Other replicas do not learn of it: a token
//! copied before sign-out stays valid there until it expires
//! (`dashboard.session_ttl`). The list is bounded ([`MAX_DENIED`]); when
//! full, the entry closest to its own expiry makes room.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Longest session token accepted (cookie value), in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Most signed-out sessions remembered at once (about 100 bytes each).
pub const MAX_DENIED: usize = 100_000;
/// Bytes of randomness in a session id.
const ID_BYTES: usize = 16;
/// Bytes of the credential stamp kept in a token.
const STAMP_BYTES: usize = 16;
/// Token format version prefix.
const VERSION: &str = "v1";

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every method.
    Admin,
    /// `GET` only, private keys never.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// How the session was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A configured user and password.
    User,
    /// The admin key or the viewer key.
    Key,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::User => "user",
            Via::Key => "key",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Via::User),
            "key" => Some(Via::Key),
            _ => None,
        }
    }
}

/// The signing key of sessions and CSRF tokens (HMAC-SHA256). `Debug`
/// shows nothing of it.
#[derive(Clone)]
pub struct SessionKey {
    key: hmac::Key,
    /// The raw key, to derive stable salts from (see [`SessionKey::derive`]).
    raw: [u8; 32],
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// The label under which the signing key is derived from its source.
const KEY_LABEL: &[u8] = b"shardgate dashboard session key v1";

impl SessionKey {
    /// The key derived from `dashboard.secret` when set, else from the
    /// admin key: `HMAC-SHA256(source, label)`. Replicas with the same
    /// source derive the same key and accept each other's sessions.
    pub fn from_source(source: &[u8]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, source), KEY_LABEL);
        let mut raw = [0u8; 32];
        raw.copy_from_slice(tag.as_ref());
        SessionKey { key: hmac::Key::new(hmac::HMAC_SHA256, &raw), raw }
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            // Length-prefixed, so no two part lists give the same input.
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        ctx.sign()
    }

    /// `len` bytes derived from this key for `purpose` and `input` (e.g. a
    /// stable password salt per user for hashes made from a plaintext
    /// password, so every replica computes the same hash).
    pub fn derive(&self, purpose: &str, input: &[u8], len: usize) -> Vec<u8> {
        let tag =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.raw), &[purpose.as_bytes(), b"\0", input].concat());
        tag.as_ref()[..len.min(32)].to_vec()
    }

    /// The stamp of a credential: changes when the credential, the role or
    /// the user does.
    pub fn stamp(&self, via: Via, user: &str, role: Role, credential: &[u8]) -> Vec<u8> {
        let tag = self.mac(&[b"stamp", via.as_str().as_bytes(), user.as_bytes(), role.as_str().as_bytes(), credential]);
        tag.as_ref()[..STAMP_BYTES].to_vec()
    }

    /// The CSRF token of the session with `id`.
    pub fn csrf(&self, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(&[b"csrf", id.as_bytes()]).as_ref())
    }

    /// Whether `presented` is the CSRF token of session `id` (constant time).
    pub fn csrf_matches(&self, id: &str, presented: &str) -> bool {
        constant_time::verify_slices_are_equal(self.csrf(id).as_bytes(), presented.as_bytes()).is_ok()
    }

    /// A new signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = json!({
            "u": claims.user,
            "r": claims.role.as_str(),
            "k": claims.via.as_str(),
            "e": claims.expires_at,
            "i": claims.id,
            "c": URL_SAFE_NO_PAD.encode(&claims.stamp),
        });
        let payload = URL_SAFE_NO_PAD.encode(body.to_string());
        let signed = format!("{VERSION}.{payload}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a token this key signed, if it did and it has not
    /// expired at `now` (unix seconds). Says why not, for the debug log.
    pub fn open(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("too long"));
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed("no signature"))?;
        let (version, payload) = signed.split_once('.').ok_or(TokenError::Malformed("no version"))?;
        if version != VERSION {
            return Err(TokenError::Malformed("unknown version"));
        }
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        // Signed by us: what follows holds unless the key has leaked.
        let body = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed("claims are not base64url"))?;
        let body: Value = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed("claims are not JSON"))?;
        let text = |k: &str| body.get(k).and_then(Value::as_str).ok_or(TokenError::Malformed("a claim is missing"));
        let claims = Claims {
            user: text("u")?.to_owned(),
            role: Role::parse(text("r")?).ok_or(TokenError::Malformed("unknown role"))?,
            via: Via::parse(text("k")?).ok_or(TokenError::Malformed("unknown sign-in kind"))?,
            expires_at: body.get("e").and_then(Value::as_i64).ok_or(TokenError::Malformed("no expiry"))?,
            id: text("i")?.to_owned(),
            stamp: URL_SAFE_NO_PAD.decode(text("c")?).map_err(|_| TokenError::Malformed("stamp is not base64url"))?,
        };
        if claims.expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this format.
    Malformed(&'static str),
    /// Not signed with this key (forged, or another deployment's).
    BadSignature,
    /// Past its expiry.
    Expired,
    /// Signed out.
    SignedOut,
    /// The credential changed since (password, role, user removed, key rotated).
    Stale,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed session token: {why}"),
            TokenError::BadSignature => f.write_str("session token signed with another key"),
            TokenError::Expired => f.write_str("session expired"),
            TokenError::SignedOut => f.write_str("session signed out"),
            TokenError::Stale => f.write_str("the credential of the session changed"),
        }
    }
}

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user name (for key sign-in: `admin key` or `viewer key`).
    pub user: String,
    /// The role at sign-in.
    pub role: Role,
    /// How the session was signed in.
    pub via: Via,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// Random id (base64url of 128 bits): CSRF token source and sign-out key.
    pub id: String,
    /// The credential stamp (see [`SessionKey::stamp`]).
    pub stamp: Vec<u8>,
}

/// A fresh random session id.
pub fn new_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut id = [0u8; ID_BYTES];
    aws_lc_rs::rand::fill(&mut id)?;
    Ok(URL_SAFE_NO_PAD.encode(id))
}

/// Session ids signed out on this process, each until its session's expiry.
///
/// Indexed both ways: by id (the check every session request makes) and by
/// expiry (what makes room), so both stay O(log n) under the lock even with
/// [`MAX_DENIED`] entries.
#[derive(Debug, Default)]
pub struct DenyList {
    inner: Mutex<Denied>,
}

#[derive(Debug, Default)]
struct Denied {
    /// Id → its expiry.
    until: HashMap<String, i64>,
    /// (expiry, id), soonest first.
    by_expiry: BTreeSet<(i64, String)>,
}

impl Denied {
    fn remove_soonest(&mut self) -> Option<i64> {
        let (until, id) = self.by_expiry.pop_first()?;
        self.until.remove(&id);
        Some(until)
    }
}

impl DenyList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Denied> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Denies `id` until `expires_at`; at [`MAX_DENIED`], forgets entries
    /// past their expiry, then if still full the one closest to it.
    pub fn deny(&self, id: &str, expires_at: i64, now: i64) {
        let mut d = self.lock();
        if let Some(old) = d.until.remove(id) {
            d.by_expiry.remove(&(old, id.to_owned()));
        }
        if d.until.len() >= MAX_DENIED {
            while d.by_expiry.first().is_some_and(|(until, _)| *until <= now) {
                d.remove_soonest();
            }
        }
        if d.until.len() >= MAX_DENIED {
            d.remove_soonest();
        }
        d.until.insert(id.to_owned(), expires_at);
        d.by_expiry.insert((expires_at, id.to_owned()));
    }

    /// Whether `id` was signed out.
    pub fn denied(&self, id: &str) -> bool {
        self.lock().until.contains_key(id)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        let d = self.lock();
        debug_assert_eq!(d.until.len(), d.by_expiry.len(), "both indexes hold the same entries");
        d.until.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: i64) -> Claims {
        let key = SessionKey::from_source(b"a-secret-of-sixteen-bytes");
        Claims {
            user: "ops".into(),
            role: Role::Viewer,
            via: Via::User,
            expires_at,
            id: new_id().expect("id"),
            stamp: key.stamp(Via::User, "ops", Role::Viewer, b"$pbkdf2-sha256$..."),
        }
    }

    #[test]
    fn a_token_opens_with_its_key_only_and_until_it_expires() {
        let key = SessionKey::from_source(b"a-secret-of-sixteen-bytes");
        let c = claims(1_000);
        let token = key.sign(&c);
        assert!(token.starts_with("v1.") && token.split('.').count() == 3, "{token}");
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "cookie-safe: {token}");
        assert_eq!(key.open(&token, 999).expect("valid"), c);
        assert_eq!(key.open(&token, 1_000), Err(TokenError::Expired));
        let other = SessionKey::from_source(b"another-secret-0123456789");
        assert_eq!(other.open(&token, 999), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_changed_claim_breaks_the_signature() {
        let key = SessionKey::from_source(b"a-secret-of-sixteen-bytes");
        let token = key.sign(&claims(1_000));
        let (v, rest) = token.split_once('.').expect("version");
        let (payload, mac) = rest.split_once('.').expect("mac");
        let mut body: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        body["r"] = json!("admin");
        let forged = format!("{v}.{}.{mac}", URL_SAFE_NO_PAD.encode(body.to_string()));
        assert_eq!(key.open(&forged, 0), Err(TokenError::BadSignature));
        for bad in ["", "v1", "v1.abc", "v2.abc.def", "v1.abc.not base64", &"x".repeat(2000)] {
            assert!(matches!(key.open(bad, 0), Err(TokenError::Malformed(_))), "{bad:?}");
        }
        // Signed, but not claims: refused without panicking.
        let signed = "v1.bm90IGpzb24";
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&key.key, signed.as_bytes()).as_ref());
        assert_eq!(key.open(&format!("{signed}.{mac}"), 0), Err(TokenError::Malformed("claims are not JSON")));
    }

    #[test]
    fn csrf_tokens_belong_to_one_session_and_one_key() {
        let key = SessionKey::from_source(b"a-secret-of-sixteen-bytes");
        let csrf = key.csrf("id-1");
        assert!(key.csrf_matches("id-1", &csrf));
        assert!(!key.csrf_matches("id-2", &csrf));
        assert!(!key.csrf_matches("id-1", ""));
        assert!(!SessionKey::from_source(b"another-secret-0123456789").csrf_matches("id-1", &csrf));
    }

    #[test]
    fn stamps_change_with_the_credential_role_and_user() {
        let key = SessionKey::from_source(b"a-secret-of-sixteen-bytes");
        let base = key.stamp(Via::User, "ops", Role::Admin, b"hash-1");
        assert_eq!(base, key.stamp(Via::User, "ops", Role::Admin, b"hash-1"));
        assert_ne!(base, key.stamp(Via::User, "ops", Role::Viewer, b"hash-1"));
        assert_ne!(base, key.stamp(Via::User, "ops", Role::Admin, b"hash-2"));
        assert_ne!(base, key.stamp(Via::User, "ops2", Role::Admin, b"hash-1"));
        assert_ne!(base, key.stamp(Via::Key, "ops", Role::Admin, b"hash-1"));
    }

    #[test]
    fn the_deny_list_is_bounded() {
        let list = DenyList::default();
        for i in 0..MAX_DENIED {
            list.deny(&format!("id-{i}"), 100 + i as i64, 0);
        }
        assert_eq!(list.len(), MAX_DENIED);
        list.deny("last", 10_000_000, 0);
        assert_eq!(list.len(), MAX_DENIED);
        assert!(list.denied("last") && !list.denied("id-0"), "the soonest to expire made room");
        // Past their expiry, entries go first.
        list.deny("later", 10_000_000, 50_000);
        // Entries id-49901..=id-99999 (until 50,001 and later), "last" and "later".
        assert_eq!(list.len(), 50_101);
        assert!(list.denied("later") && list.denied("last"));
    }

    #[test]
    fn denying_an_id_again_moves_its_expiry() {
        let list = DenyList::default();
        list.deny("a", 100, 0);
        list.deny("b", 200, 0);
        list.deny("a", 300, 0);
        assert_eq!(list.len(), 2, "one entry per id");
        let d = list.lock();
        let order: Vec<&str> = d.by_expiry.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(order, ["b", "a"], "a's old expiry is gone from the index");
        drop(d);
        // At capacity, the soonest expiry ("b") makes room, not a's old one.
        let full = DenyList::default();
        for i in 0..MAX_DENIED - 2 {
            full.deny(&format!("id-{i}"), 1_000 + i as i64, 0);
        }
        full.deny("a", 10, 0);
        full.deny("b", 20, 0);
        full.deny("a", 5_000_000, 0);
        full.deny("new", 6_000_000, 0);
        assert!(full.denied("a") && full.denied("new") && !full.denied("b"));
        assert_eq!(full.len(), MAX_DENIED);
    }
}
