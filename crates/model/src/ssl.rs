//! Validated SSL objects: parsed certificate chains with their keys, the SNIs
//! they serve, and the protocol versions allowed.
//!
//! Parsing happens once per change (when the Admin API validates a write and
//! when the reconciler applies it), never per handshake: the result holds
//! rustls [`CertifiedKey`]s ready to be served.
//!
//! Errors are words, never the submitted bytes: a PEM block cut short is
//! "truncated", a key outside what aws-lc-rs signs with says its size. A key's
//! base64 is secret and never appears in a message or a log.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys, SignatureAlgorithm};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::wire::{SslWire, check_labels};
use crate::{Invalid, ResourceId, SniPattern};

/// Smallest and largest PEM certificate APISIX accepts (`_M.ssl.cert`).
const CERT_LEN: std::ops::RangeInclusive<usize> = 128..=64 * 1024;
/// Smallest and largest PEM key APISIX accepts (`_M.ssl.key`).
const KEY_LEN: std::ops::RangeInclusive<usize> = 64..=64 * 1024;
/// Most SNIs on one SSL object.
const MAX_SNIS: usize = 1024;
/// Most extra cert/key pairs.
const MAX_PAIRS: usize = 8;
/// RSA modulus sizes aws-lc-rs signs with (`RsaKeyPair`: "the public modulus
/// (n) must be 2048 to 8192 bits"); rustls refuses keys outside it.
const RSA_BITS: std::ops::RangeInclusive<u32> = 2048..=8192;

/// The crypto provider shardgate uses everywhere: rustls on aws-lc-rs.
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// TLS protocol versions an SSL object allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsVersions {
    /// TLS 1.2 allowed.
    pub tls12: bool,
    /// TLS 1.3 allowed.
    pub tls13: bool,
}

impl Default for TlsVersions {
    fn default() -> Self {
        TlsVersions { tls12: true, tls13: true }
    }
}

/// One certificate chain with its key.
#[derive(Clone)]
pub struct KeyPair {
    /// The chain and signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// The key's algorithm (ECDSA, RSA, Ed25519).
    pub algorithm: SignatureAlgorithm,
    /// The leaf's notAfter, in seconds since the epoch.
    pub not_after: i64,
    /// The leaf's subject, for logs (never the key).
    pub subject: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl PartialEq for KeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.certified.cert == other.certified.cert
            && self.certified.key.public_key() == other.certified.key.public_key()
    }
}

/// A validated SSL object.
#[derive(Debug, Clone, PartialEq)]
pub struct Ssl {
    /// Resource id.
    pub id: ResourceId,
    /// `type: client` objects are only referenced by upstreams, never served.
    pub client_only: bool,
    /// `status: 0` objects are kept but not served.
    pub enabled: bool,
    /// The SNIs served.
    pub snis: Vec<SniPattern>,
    /// `cert`/`key` first, then `certs`/`keys` in order.
    pub pairs: Vec<KeyPair>,
    /// Allowed protocol versions.
    pub versions: TlsVersions,
}

impl Ssl {
    /// Validates a wire SSL object. `now_unix` is `Some` when expired
    /// certificates must be refused (Admin API writes with
    /// `admin.refuse_expired_certificates`); otherwise they load, as APISIX
    /// and nginx load them, and the expiry shows in logs and metrics.
    pub fn from_wire(id: ResourceId, w: &SslWire, now_unix: Option<i64>) -> Result<Self, Invalid> {
        check_labels(&w.labels)?;
        if let Some(desc) = &w.desc
            && desc.len() > 256
        {
            return Err(Invalid::new("desc", "must be at most 256 characters long"));
        }
        let client_only = match w.ssl_type.as_deref() {
            None | Some("server") => false,
            Some("client") => true,
            Some(other) => return Err(Invalid::new("type", format!("{other:?} must be \"server\" or \"client\""))),
        };
        let enabled = match w.status {
            None | Some(1) => true,
            Some(0) => false,
            Some(_) => return Err(Invalid::new("status", "must be 1 (enabled) or 0 (disabled)")),
        };
        if w.client.is_some() {
            return Err(Invalid::new("client", "client certificate verification (mTLS) is not supported yet"));
        }

        let snis = match (&w.sni, &w.snis) {
            (Some(_), Some(_)) => return Err(Invalid::new("snis", "sni and snis cannot both be set")),
            (Some(one), None) => vec![SniPattern::parse(one).map_err(|e| Invalid::new("sni", e))?],
            (None, Some(list)) => {
                if list.is_empty() {
                    return Err(Invalid::new("snis", "must have at least one SNI"));
                }
                if list.len() > MAX_SNIS {
                    return Err(Invalid::new("snis", format!("at most {MAX_SNIS} SNIs are allowed")));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, s)| SniPattern::parse(s).map_err(|e| Invalid::new(format!("snis[{i}]"), e)))
                    .collect::<Result<Vec<_>, _>>()?
            }
            (None, None) if client_only => Vec::new(),
            (None, None) => return Err(Invalid::new("snis", "sni or snis is required for a server certificate")),
        };

        let cert = w.cert.as_deref().ok_or_else(|| Invalid::new("cert", "is required"))?;
        let key = w.key.as_deref().ok_or_else(|| Invalid::new("key", "is required"))?;
        let extra_certs = w.certs.as_deref().unwrap_or_default();
        let extra_keys = w.keys.as_deref().unwrap_or_default();
        if extra_certs.len() != extra_keys.len() {
            // APISIX `check_ssl_conf`: "mismatched number of certs and keys".
            return Err(Invalid::new("keys", "mismatched number of certs and keys"));
        }
        if extra_certs.len() > MAX_PAIRS {
            return Err(Invalid::new("certs", format!("at most {MAX_PAIRS} extra certificates are allowed")));
        }

        let mut pairs = Vec::with_capacity(1 + extra_certs.len());
        pairs.push(load_pair(("cert", cert), ("key", key), now_unix)?);
        for (i, (c, k)) in extra_certs.iter().zip(extra_keys).enumerate() {
            pairs.push(load_pair((&format!("certs[{i}]"), c), (&format!("keys[{i}]"), k), now_unix)?);
        }

        let versions = match &w.ssl_protocols {
            None => TlsVersions::default(),
            Some(list) => parse_protocols(list)?,
        };

        Ok(Ssl { id, client_only, enabled, snis, pairs, versions })
    }

    /// Whether this object takes part in SNI selection.
    pub fn serves(&self) -> bool {
        self.enabled && !self.client_only
    }
}

fn parse_protocols(list: &[String]) -> Result<TlsVersions, Invalid> {
    if list.is_empty() || list.len() > 3 {
        return Err(Invalid::new("ssl_protocols", "must list 1 to 3 protocols"));
    }
    let mut v = TlsVersions { tls12: false, tls13: false };
    for (i, p) in list.iter().enumerate() {
        match p.as_str() {
            "TLSv1.2" => v.tls12 = true,
            "TLSv1.3" => v.tls13 = true,
            "TLSv1.1" => {
                return Err(Invalid::new(
                    format!("ssl_protocols[{i}]"),
                    "TLSv1.1 is not supported: shardgate speaks TLS 1.2 and 1.3 only",
                ));
            }
            other => {
                return Err(Invalid::new(
                    format!("ssl_protocols[{i}]"),
                    format!("{other:?} must be one of TLSv1.2, TLSv1.3"),
                ));
            }
        }
    }
    Ok(v)
}

fn load_pair(
    (cert_field, cert): (&str, &str),
    (key_field, key): (&str, &str),
    now_unix: Option<i64>,
) -> Result<KeyPair, Invalid> {
    if cert.starts_with("$secret://") || cert.starts_with("$env://") {
        return Err(Invalid::new(
            cert_field,
            "secret references ($secret://, $env://) are not supported; send the PEM",
        ));
    }
    if key.starts_with("$secret://") || key.starts_with("$env://") {
        return Err(Invalid::new(key_field, "secret references ($secret://, $env://) are not supported; send the PEM"));
    }
    if !CERT_LEN.contains(&cert.len()) {
        return Err(Invalid::new(cert_field, "must be a PEM certificate of 128 bytes to 64 KiB"));
    }
    if !KEY_LEN.contains(&key.len()) {
        return Err(Invalid::new(key_field, "must be a PEM private key of 64 bytes to 64 KiB"));
    }

    check_pem_blocks(cert).map_err(|e| Invalid::new(cert_field, e))?;
    check_pem_blocks(key).map_err(|e| Invalid::new(key_field, e))?;
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Invalid::new(cert_field, pem_words(cert, &e)))?;
    let Some(leaf) = chain.first() else {
        return Err(Invalid::new(cert_field, "no PEM block \"CERTIFICATE\" found (-----BEGIN CERTIFICATE-----)"));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        Invalid::new(
            cert_field,
            format!("the PEM block \"CERTIFICATE\" does not hold a whole X.509 certificate (it may be cut short): {e}"),
        )
    })?;
    let not_after = parsed.validity().not_after.timestamp();
    if let Some(now) = now_unix
        && not_after < now
    {
        return Err(Invalid::new(
            cert_field,
            format!("the certificate expired at {} (subject {})", parsed.validity().not_after, parsed.subject()),
        ));
    }
    let subject = parsed.subject().to_string();

    if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = parsed.public_key().parsed() {
        let bits = u32::try_from(rsa.key_size()).unwrap_or(u32::MAX);
        if !RSA_BITS.contains(&bits) {
            return Err(Invalid::new(key_field, rsa_size_words(Some(bits))));
        }
    }

    let key_der = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => Invalid::new(
            key_field,
            "no private key found: expected a PEM block \"PRIVATE KEY\" (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) or \"EC PRIVATE KEY\" (SEC1)",
        ),
        other => Invalid::new(key_field, pem_words(key, &other)),
    })?;
    let certified = CertifiedKey::from_der(chain, key_der.clone_key(), provider()).map_err(|e| match e {
        TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            Invalid::new(key_field, format!("the key does not match the certificate {cert_field} (subject {subject})"))
        }
        other => Invalid::new(key_field, unusable_key_words(&key_der, &other)),
    })?;
    let algorithm = certified.key.algorithm();
    Ok(KeyPair { certified: Arc::new(certified), algorithm, not_after, subject })
}

/// Checks the PEM structure of `text` line by line: every `-----BEGIN X-----`
/// has its `-----END X-----` before the next BEGIN line and before the end.
/// rustls's reader drops a block whose END line is missing when another
/// block follows, so a chain cut in its first certificate would otherwise
/// load as a shorter chain.
fn check_pem_blocks(text: &str) -> Result<(), String> {
    let mut open: Option<(usize, &str)> = None;
    let mut blocks = 0;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            if let Some((n, label)) = open {
                return Err(truncated(n, label, "before the next -----BEGIN line"));
            }
            blocks += 1;
            open = Some((blocks, label));
        } else if let Some(label) = line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----")) {
            match open.take() {
                Some((_, begun)) if begun == label => {}
                Some((n, begun)) => {
                    return Err(format!(
                        "PEM block {n} begins as {:?} but ends as {:?}",
                        printable(begun),
                        printable(label)
                    ));
                }
                None => return Err(format!("an -----END {}----- line has no BEGIN line", printable(label))),
            }
        }
    }
    match open {
        Some((n, label)) => Err(truncated(n, label, "at the end of the text")),
        None => Ok(()),
    }
}

fn truncated(n: usize, label: &str, where_: &str) -> String {
    let label = printable(label);
    let which = if n > 1 { format!(" (block {n})") } else { String::new() };
    format!("the PEM block {label:?}{which} is truncated: no \"-----END {label}-----\" line {where_}")
}

/// A PEM label or marker for a message: printable ASCII, at most 40 characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(40).collect()
}

/// The label of the first PEM block in `text`, for messages.
fn first_label(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN ").map(|l| l.trim_end_matches('-').to_owned()))
        .map_or_else(|| "?".to_owned(), |l| printable(&l))
}

/// A PEM reading error in words. rustls-pki-types' own messages print
/// markers as byte arrays, and its base64 error text is not for a key.
fn pem_words(text: &str, e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            truncated(1, &String::from_utf8_lossy(end_marker), "at the end of the text")
        }
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line does not end with five dashes (-----)".to_owned(),
        pem::Error::Base64Decode(_) => format!(
            "the base64 text of the PEM block {:?} is damaged or cut short (only A-Z, a-z, 0-9, +, / and = padding may appear between the BEGIN and END lines)",
            first_label(text)
        ),
        pem::Error::NoItemsFound => "no PEM block found (a -----BEGIN ...----- line)".to_owned(),
        pem::Error::SectionTooLarge => "a PEM block is larger than 256 MiB".to_owned(),
        other => format!("the PEM text cannot be read: {other}"),
    }
}

/// Why aws-lc-rs refuses RSA keys of `bits` (when known).
fn rsa_size_words(bits: Option<u32>) -> String {
    let (lo, hi) = (RSA_BITS.start(), RSA_BITS.end());
    let this = bits.map_or_else(String::new, |b| format!(" (this key has {b})"));
    format!(
        "RSA keys shorter than {lo} bits or longer than {hi} bits are refused{this}: aws-lc-rs, the TLS library, does not sign with them; use RSA-2048 or larger, or ECDSA P-256"
    )
}

/// Why rustls refused a private key that parsed as PEM, in words.
fn unusable_key_words(key: &PrivateKeyDer<'_>, e: &TlsError) -> String {
    // rustls tries RSA, then ECDSA, then EdDSA, and reports only that all
    // failed; asking the RSA loader alone tells a wrong-sized RSA key apart.
    // Its answer is text: `RsaSigningKey::new` (rustls
    // `crypto/aws_lc_rs/sign.rs`) formats aws-lc-rs's `KeyRejected` into
    // `Error::General(String)`, and `KeyRejected` has no public kind, only
    // its description (`TooSmall`, `TooLarge`), so there is no type or
    // variant to match on. (The certificate's own key size is checked
    // above from its parsed public key; this catches a key that does not
    // belong to it.)
    if let Err(TlsError::General(why)) = rustls::crypto::aws_lc_rs::sign::RsaSigningKey::new(key)
        && (why.contains("TooSmall") || why.contains("TooLarge"))
    {
        return rsa_size_words(None);
    }
    format!("unusable private key: it is damaged, cut short, or not an RSA, ECDSA (P-256, P-384) or Ed25519 key ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_value;
    use serde_json::json;

    fn self_signed(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn ssl(v: serde_json::Value, now: Option<i64>) -> Result<Ssl, Invalid> {
        let w: SslWire = from_value(v)?;
        Ssl::from_wire(ResourceId::parse("1").expect("id"), &w, now)
    }

    #[test]
    fn rsa_and_ecdsa_pairs_load() {
        let (c1, k1) = self_signed("gs-1.com", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (c2, k2) = self_signed("gs-1.com", &rcgen::PKCS_RSA_SHA256);
        let s = ssl(
            json!({"cert": c1, "key": k1, "certs": [c2], "keys": [k2], "snis": ["gs-1.com", "*.gs-1.com"]}),
            Some(0),
        )
        .expect("valid");
        assert_eq!(s.pairs.len(), 2);
        assert_eq!(s.pairs[0].algorithm, SignatureAlgorithm::ECDSA);
        assert_eq!(s.pairs[1].algorithm, SignatureAlgorithm::RSA);
        assert_eq!(s.snis.len(), 2);
        assert!(s.serves());
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let (c1, _) = self_signed("gs-1.com", &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, k2) = self_signed("gs-2.com", &rcgen::PKCS_ECDSA_P256_SHA256);
        let e = ssl(json!({"cert": c1, "key": k2, "sni": "gs-1.com"}), None).unwrap_err();
        assert_eq!(e.field, "key");
        assert!(e.reason.contains("does not match"), "{e}");
    }

    #[test]
    fn garbage_expired_and_missing_fields_name_the_field() {
        let (c, k) = self_signed("gs-1.com", &rcgen::PKCS_ECDSA_P256_SHA256);
        let junk = "-----BEGIN CERTIFICATE-----\nnot base64 at all, not at all, not at all, not at all, not at all, not at all, not at all!!\n-----END CERTIFICATE-----\n";
        assert_eq!(ssl(json!({"cert": junk, "key": k, "sni": "a.com"}), None).unwrap_err().field, "cert");
        let e = ssl(json!({"cert": c, "key": k, "sni": "a.com"}), Some(i64::MAX / 2)).unwrap_err();
        assert!(e.reason.contains("expired"), "{e}");
        assert_eq!(ssl(json!({"cert": c, "key": k}), None).unwrap_err().field, "snis");
        assert_eq!(ssl(json!({"key": k, "sni": "a.com"}), None).unwrap_err().field, "cert");
        assert_eq!(
            ssl(json!({"cert": c, "key": k, "sni": "a.com", "snis": ["b.com"]}), None).unwrap_err().field,
            "snis"
        );
        assert_eq!(
            ssl(json!({"cert": c, "key": k, "snis": ["ok.com", "bad..com"]}), None).unwrap_err().field,
            "snis[1]"
        );
        assert_eq!(ssl(json!({"cert": c, "key": k, "sni": "a.com", "certs": [c]}), None).unwrap_err().field, "keys");
        assert_eq!(
            ssl(json!({"cert": c, "key": k, "sni": "a.com", "ssl_protocols": ["TLSv1.1"]}), None).unwrap_err().field,
            "ssl_protocols[0]"
        );
    }

    /// A self-signed RSA-1024 certificate and key (`openssl req -newkey
    /// rsa:1024`, valid for 100 years); test data, not a secret.
    const RSA1024_CERT: &str = include_str!("../testdata/rsa1024.crt");
    const RSA1024_KEY: &str = include_str!("../testdata/rsa1024.key");

    #[test]
    fn truncated_pem_is_reported_in_words() {
        let (c, k) = self_signed("gs-1.com", &rcgen::PKCS_ECDSA_P256_SHA256);
        // Cut in the middle of the base64: no END line.
        let cut = &c[..c.len() / 2];
        let e = ssl(json!({"cert": cut, "key": k, "sni": "gs-1.com"}), None).unwrap_err();
        assert_eq!(e.field, "cert");
        assert_eq!(
            e.reason,
            "the PEM block \"CERTIFICATE\" is truncated: no \"-----END CERTIFICATE-----\" line at the end of the text"
        );
        // The first certificate of a chain cut, a whole one after it.
        let chain = format!("{cut}\n{c}");
        let e = ssl(json!({"cert": chain, "key": k, "sni": "gs-1.com"}), None).unwrap_err();
        assert!(e.reason.contains("truncated") && e.reason.contains("before the next -----BEGIN line"), "{e}");
        // A key cut short: words, and none of the key's text.
        let key_cut = &k[..k.len() - 40];
        let e = ssl(json!({"cert": c, "key": key_cut, "sni": "gs-1.com"}), None).unwrap_err();
        assert_eq!(e.field, "key");
        assert!(e.reason.contains("\"PRIVATE KEY\" is truncated"), "{e}");
        let body_line = k.lines().nth(1).expect("a base64 line");
        assert!(!e.reason.contains(&body_line[..16]), "no key material in the message: {e}");
        // Base64 lines removed from the middle, END line kept.
        let mut lines: Vec<&str> = c.lines().collect();
        lines.remove(3);
        let gap = lines.join("\n");
        let e = ssl(json!({"cert": gap, "key": k, "sni": "gs-1.com"}), None).unwrap_err();
        assert_eq!(e.field, "cert");
        assert!(!e.reason.contains('['), "no byte arrays: {e}");
        assert!(e.reason.contains("base64") || e.reason.contains("cut short"), "{e}");
        // END line with another label.
        let swapped = c.replace("-----END CERTIFICATE-----", "-----END PRIVATE KEY-----");
        let e = ssl(json!({"cert": swapped, "key": k, "sni": "gs-1.com"}), None).unwrap_err();
        assert!(e.reason.contains("begins as \"CERTIFICATE\" but ends as \"PRIVATE KEY\""), "{e}");
    }

    #[test]
    fn rsa_1024_gets_the_real_reason() {
        let e = ssl(json!({"cert": RSA1024_CERT, "key": RSA1024_KEY, "sni": "weak.example"}), None).unwrap_err();
        assert_eq!(e.field, "key");
        assert!(
            e.reason.starts_with(
                "RSA keys shorter than 2048 bits or longer than 8192 bits are refused (this key has 1024)"
            ),
            "{e}"
        );
        // The key alone (with a certificate it does not match) names its size too.
        let (c, _) = self_signed("weak.example", &rcgen::PKCS_ECDSA_P256_SHA256);
        let e = ssl(json!({"cert": c, "key": RSA1024_KEY, "sni": "weak.example"}), None).unwrap_err();
        assert_eq!(e.field, "key");
        assert!(e.reason.starts_with("RSA keys shorter than 2048 bits"), "{e}");
    }

    #[test]
    fn expired_certificates_load_unless_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["old.com".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let cert = params.self_signed(&key).expect("cert");
        let body = json!({"cert": cert.pem(), "key": key.serialize_pem(), "sni": "old.com"});
        let loaded = ssl(body.clone(), None).expect("APISIX accepts expired certificates");
        assert_eq!(loaded.pairs[0].not_after, 1_577_836_800);
        let e = ssl(body, Some(1_700_000_000)).unwrap_err();
        assert!(e.reason.contains("expired"), "{e}");
    }
}
