//! Encryption of SSL private keys at rest, as APISIX does it, so a store
//! shared with APISIX 3.x (etcd) reads the same both ways.
//!
//! APISIX encrypts the `key` and `keys[*]` fields of an `ssls` resource with
//! the `apisix.data_encryption.keyring` of its `config.yaml` (on by default
//! since 3.10): AES-CBC whose key AND initialization vector are both the
//! bytes of the keyring entry, PKCS#7 padding, standard base64 (apache/apisix
//! `apisix/ssl.lua` `aes_encrypt_pkey` / `aes_decrypt_pkey`,
//! `apisix/core/data_encryption.lua`). A 16-byte entry gives AES-128-CBC and
//! a 32-byte entry AES-256-CBC (apache/apisix PR #13756); for AES-256 the IV
//! is the first 16 bytes of the entry, because lua-resty-string's `resty.aes`
//! copies the whole `{iv = entry}` string into a cipher-sized buffer and
//! OpenSSL's `EVP_EncryptInit_ex` reads one block (16 bytes) of it.
//!
//! Only a value that starts with `---` (a PEM) is encrypted, always with the
//! first entry. Reading tries each entry in order (key rotation: put the new
//! entry first, keep the old ones until every key is rewritten). Unlike
//! APISIX, a decryption counts only when the padding is valid AND the result
//! is a PEM (`-----BEGIN`), so a wrong entry that happens to end in valid
//! padding (about 1 in 256) is not taken for the right one.
//!
//! The IV is fixed per entry, so the same key always encrypts to the same
//! text: this keeps keys out of plain sight in an etcd dump or backup, as
//! APISIX intends, and is no substitute for access control on the store.
//!
//! No error or log here ever carries key material: not the entry, not the
//! plaintext, not the ciphertext.

use std::fmt;

use aws_lc_rs::cipher::{
    AES_128, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use crate::Invalid;

/// AES block (and IV) length in bytes.
const BLOCK_LEN: usize = 16;
/// Largest encrypted value (base64 text) worth decrypting: the base64 of the
/// largest PEM key `ssls` accepts (64 KiB, `ssl::KEY_LEN`) plus one block of
/// padding. Anything longer cannot decrypt to an acceptable key.
pub const MAX_ENCRYPTED_LEN: usize = (64 * 1024 + BLOCK_LEN).div_ceil(3) * 4;
/// Length of the entry [`Keyring::generate`] makes (AES-128, the one length
/// every APISIX 3.x release accepts).
pub const GENERATED_ENTRY_LEN: usize = 16;
/// Characters of a generated entry: printable, so it can be pasted into an
/// APISIX `config.yaml` as is.
const GENERATED_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// What APISIX's `ngx.encode_base64` writes (standard alphabet, padded); on
/// reading, a value whose padding was stripped is accepted too.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a keyring could not be built or a value could not be decrypted.
/// Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No entries.
    #[error("the keyring is empty: give at least one entry of 16 bytes (AES-128-CBC) or 32 bytes (AES-256-CBC)")]
    Empty,
    /// An entry of a length AES-CBC cannot use.
    #[error(
        "keyring entry {index} is {len} bytes long; an entry must be 16 bytes (AES-128-CBC) or 32 bytes (AES-256-CBC)"
    )]
    EntryLength {
        /// Position of the entry (0-based).
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// The value is neither a PEM nor base64 of whole AES blocks, so it is not
    /// something APISIX encrypted.
    #[error("the value is neither a PEM nor an encrypted key (base64 of AES-CBC blocks)")]
    NotEncrypted,
    /// The value looks encrypted but no entry decrypts it to a PEM.
    #[error("no keyring entry decrypts the value ({entries} tried)")]
    NoEntryDecrypts {
        /// How many entries were tried.
        entries: usize,
    },
    /// The system random generator failed (generating an entry).
    #[error("the system random generator failed")]
    Random,
    /// aws-lc-rs refused an operation that cannot fail with valid inputs.
    #[error("AES-CBC {0} failed")]
    Cipher(&'static str),
}

/// One entry, ready to use: the AES key and the IV (the entry's first block).
struct Entry {
    bits: u16,
    encrypt: PaddedBlockEncryptingKey,
    decrypt: PaddedBlockDecryptingKey,
    iv: [u8; BLOCK_LEN],
}

/// APISIX's `data_encryption.keyring`: the first entry encrypts, every entry
/// is tried to decrypt. Debug output shows the entry sizes, never the keys.
pub struct Keyring {
    entries: Vec<Entry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits: Vec<u16> = self.entries.iter().map(|e| e.bits).collect();
        f.debug_struct("Keyring").field("aes_bits", &bits).finish()
    }
}

impl Keyring {
    /// A keyring of `entries`, in order (the first one encrypts). Each entry
    /// is a string of 16 bytes (AES-128-CBC) or 32 bytes (AES-256-CBC), as in
    /// APISIX's `config.yaml`.
    pub fn new(entries: Vec<String>) -> Result<Keyring, KeyringError> {
        if entries.is_empty() {
            return Err(KeyringError::Empty);
        }
        let entries = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| Entry::new(index, entry.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { entries })
    }

    /// A keyring of one random entry of [`GENERATED_ENTRY_LEN`] printable
    /// characters, and that entry (for a data directory that has none: the
    /// caller stores it, since keys encrypted with it need it forever).
    pub fn generate() -> Result<(Keyring, String), KeyringError> {
        let mut entry = String::with_capacity(GENERATED_ENTRY_LEN);
        // Rejection sampling keeps every character equally likely: 248 is
        // the largest multiple of 62 that fits in a byte.
        let limit = (256 / GENERATED_ALPHABET.len() * GENERATED_ALPHABET.len()) as u8;
        let mut buf = [0u8; 64];
        while entry.len() < GENERATED_ENTRY_LEN {
            aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeyringError::Random)?;
            for &b in buf.iter().filter(|&&b| b < limit) {
                if entry.len() == GENERATED_ENTRY_LEN {
                    break;
                }
                entry.push(char::from(GENERATED_ALPHABET[usize::from(b) % GENERATED_ALPHABET.len()]));
            }
        }
        let keyring = Keyring::new(vec![entry.clone()])?;
        Ok((keyring, entry))
    }

    /// How many entries the keyring holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a keyring has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored form of `value`: a PEM (starts with `---`) is encrypted with
    /// the first entry and base64-encoded; anything else is returned as is
    /// (APISIX encrypts only PEMs, so an already encrypted value stays).
    pub fn encrypt(&self, value: &str) -> Result<String, KeyringError> {
        if !is_plaintext(value) {
            return Ok(value.to_owned());
        }
        let first = &self.entries[0];
        let mut buf = value.as_bytes().to_vec();
        first
            .encrypt
            .less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(first.iv)))
            .map_err(|_| KeyringError::Cipher("encryption"))?;
        Ok(BASE64.encode(&buf))
    }

    /// The PEM of a stored value: a PEM (starts with `---`) as is, otherwise
    /// the base64 AES-CBC ciphertext decrypted by the first entry that yields
    /// valid padding and a PEM.
    pub fn decrypt(&self, stored: &str) -> Result<String, KeyringError> {
        if is_plaintext(stored) {
            return Ok(stored.to_owned());
        }
        let ciphertext = ciphertext(stored).ok_or(KeyringError::NotEncrypted)?;
        for entry in &self.entries {
            let mut buf = ciphertext.clone();
            let Ok(plain) = entry.decrypt.decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(entry.iv)))
            else {
                continue;
            };
            if plain.starts_with(b"-----BEGIN")
                && let Ok(pem) = std::str::from_utf8(plain)
            {
                return Ok(pem.to_owned());
            }
        }
        Err(KeyringError::NoEntryDecrypts { entries: self.entries.len() })
    }
}

impl Entry {
    fn new(index: usize, bytes: &[u8]) -> Result<Entry, KeyringError> {
        let (algorithm, bits) = match bytes.len() {
            16 => (&AES_128, 128),
            32 => (&AES_256, 256),
            len => return Err(KeyringError::EntryLength { index, len }),
        };
        let key = || UnboundCipherKey::new(algorithm, bytes).map_err(|_| KeyringError::Cipher("key setup"));
        let encrypt = PaddedBlockEncryptingKey::cbc_pkcs7(key()?).map_err(|_| KeyringError::Cipher("key setup"))?;
        let decrypt = PaddedBlockDecryptingKey::cbc_pkcs7(key()?).map_err(|_| KeyringError::Cipher("key setup"))?;
        let mut iv = [0u8; BLOCK_LEN];
        iv.copy_from_slice(&bytes[..BLOCK_LEN]);
        Ok(Entry { bits, encrypt, decrypt, iv })
    }
}

/// Whether a stored key is in clear (APISIX's test: it starts with `---`).
fn is_plaintext(value: &str) -> bool {
    value.starts_with("---")
}

/// The ciphertext of a value that has the shape APISIX writes: base64 of a
/// non-empty whole number of AES blocks, no longer than [`MAX_ENCRYPTED_LEN`].
fn ciphertext(value: &str) -> Option<Vec<u8>> {
    if value.is_empty() || value.len() > MAX_ENCRYPTED_LEN {
        return None;
    }
    let bytes = BASE64.decode(value).ok()?;
    (!bytes.is_empty() && bytes.len().is_multiple_of(BLOCK_LEN)).then_some(bytes)
}

/// Whether a stored key is encrypted (has APISIX's encrypted shape).
pub fn is_encrypted(value: &str) -> bool {
    !is_plaintext(value) && ciphertext(value).is_some()
}

/// The private-key fields of an `ssls` value with their JSON paths: `key`,
/// then `keys[i]`.
fn key_fields(value: &mut Value) -> Vec<(String, &mut String)> {
    let Some(obj) = value.as_object_mut() else { return Vec::new() };
    let mut out = Vec::new();
    let (mut key, mut keys) = (None, None);
    for (name, v) in obj.iter_mut() {
        match name.as_str() {
            "key" => key = Some(v),
            "keys" => keys = Some(v),
            _ => {}
        }
    }
    if let Some(Value::String(s)) = key {
        out.push(("key".to_owned(), s));
    }
    if let Some(Value::Array(items)) = keys {
        for (i, item) in items.iter_mut().enumerate() {
            if let Value::String(s) = item {
                out.push((format!("keys[{i}]"), s));
            }
        }
    }
    out
}

/// Encrypts, in place, the private keys (`key`, `keys[*]`) of an `ssls`
/// value about to be stored. Values already encrypted, and fields of the
/// wrong type (left for validation to report), are not touched.
pub fn seal_ssl_value(keyring: &Keyring, value: &mut Value) -> Result<(), KeyringError> {
    for (_, s) in key_fields(value) {
        if is_plaintext(s) {
            *s = keyring.encrypt(s)?;
        }
    }
    Ok(())
}

/// The reason given for an encrypted key that cannot be decrypted.
pub const UNDECRYPTABLE: &str = "the private key is encrypted (APISIX data_encryption) and no keyring entry decrypts it; configure `data_encryption.keyring`";

/// Decrypts, in place, the private keys (`key`, `keys[*]`) of a stored
/// `ssls` value. A PEM stays; a value that is not APISIX-encrypted stays too
/// (validation then says what is wrong with it, e.g. a `$secret://`
/// reference); an encrypted value with no keyring, or that no entry
/// decrypts, is an [`Invalid`] on its field.
pub fn open_ssl_value(keyring: Option<&Keyring>, value: &mut Value) -> Result<(), Invalid> {
    for (field, s) in key_fields(value) {
        if !is_encrypted(s) {
            continue;
        }
        let Some(keyring) = keyring else {
            return Err(Invalid::new(field, UNDECRYPTABLE));
        };
        match keyring.decrypt(s) {
            Ok(pem) => *s = pem,
            Err(KeyringError::NoEntryDecrypts { .. }) => return Err(Invalid::new(field, UNDECRYPTABLE)),
            Err(e) => return Err(Invalid::new(field, e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
