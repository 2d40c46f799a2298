use serde_json::json;

use super::*;

/// APISIX's documented example keyring entry (`conf/config-default.yaml`).
const ENTRY_16: &str = "edd1c9f0985e76a2";
const ENTRY_32: &str = "shardgate-test-keyring-32-bytes!";
/// An Ed25519 key made for these tests (`openssl genpkey -algorithm ed25519`).
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDLEvOG2fYURr0oPfbRUs0YfCZgjxfQChjbwGIOcG6m1\n-----END PRIVATE KEY-----\n";
/// `PEM` encrypted by OpenSSL 3.0.19, an implementation independent of
/// aws-lc-rs, with `PEM` in key.pem:
/// `openssl enc -aes-128-cbc -K 65646431633966303938356537366132 -iv 65646431633966303938356537366132 -base64 -A -in key.pem`
/// (key and IV both the hex of `edd1c9f0985e76a2`).
const OPENSSL_AES_128: &str = "YnwwDKc5vNzo0OU4StTRQSQ5kK6XRAkpSTk0e4k8g2ezuDos+MLGaXLdxyAV5UfV/hcUREKODOsrSjCzBfCTSCiA5TkxyuQR0ie+AXowoeE3YV3xMIrOgi5ykL71TV0l7Je3mxxFScsCbBZDmpmj+MbXHqFD4YooWfT6g6QEpJ0=";
/// Same, AES-256 with the key the 32 bytes of `ENTRY_32` and the IV its
/// first 16:
/// `openssl enc -aes-256-cbc -K 7368617264676174652d746573742d6b657972696e672d33322d627974657321 -iv 7368617264676174652d746573742d6b -base64 -A -in key.pem`
const OPENSSL_AES_256: &str = "IYzTODbE+Qqx85BVRipN8YTMIgDT1lf74lpReoFOUkygqh9ymzf//i/HK5fxM/Y8xyHvsY2SpCgddcpnS8KABJsR8DxU1+znv1XEAMXFtwoF8l88A8HK7DiORq+hMQu9xablfvspWor+2wgQTvJQIWJtc5oaOoCBYvWn9uypnnU=";

fn keyring(entries: &[&str]) -> Keyring {
    Keyring::new(entries.iter().map(|e| (*e).to_owned()).collect()).expect("valid keyring")
}

/// Asserts that nothing secret shows in a text meant for errors or logs.
fn assert_no_secret(text: &str) {
    for secret in [ENTRY_16, ENTRY_32, "MC4CAQAwBQYDK2VwBCIEIDLEvOG2", &OPENSSL_AES_128[..24], &OPENSSL_AES_256[..24]] {
        assert!(!text.contains(secret), "{text:?} shows secret material");
    }
}

#[test]
fn round_trips_with_16_and_32_byte_entries() {
    for entry in [ENTRY_16, ENTRY_32] {
        let k = keyring(&[entry]);
        let sealed = k.encrypt(PEM).expect("encrypt");
        assert!(!sealed.starts_with("---") && !sealed.contains("PRIVATE"), "{sealed}");
        assert!(is_encrypted(&sealed));
        assert_eq!(k.decrypt(&sealed).expect("decrypt"), PEM);
    }
}

#[test]
fn matches_openssl_for_aes_128_and_aes_256() {
    assert_eq!(keyring(&[ENTRY_16]).encrypt(PEM).expect("encrypt"), OPENSSL_AES_128);
    assert_eq!(keyring(&[ENTRY_16]).decrypt(OPENSSL_AES_128).expect("decrypt"), PEM);
    assert_eq!(keyring(&[ENTRY_32]).encrypt(PEM).expect("encrypt"), OPENSSL_AES_256);
    assert_eq!(keyring(&[ENTRY_32]).decrypt(OPENSSL_AES_256).expect("decrypt"), PEM);
    // Unpadded base64 is read too.
    assert_eq!(keyring(&[ENTRY_16]).decrypt(OPENSSL_AES_128.trim_end_matches('=')).expect("decrypt"), PEM);
}

#[test]
fn every_entry_is_tried_and_the_first_one_encrypts() {
    // Rotation: the new entry first, the old one kept to read old keys.
    let rotated = keyring(&[ENTRY_32, ENTRY_16]);
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated.decrypt(OPENSSL_AES_128).expect("old entry decrypts"), PEM);
    assert_eq!(rotated.decrypt(OPENSSL_AES_256).expect("new entry decrypts"), PEM);
    assert_eq!(rotated.encrypt(PEM).expect("encrypt"), OPENSSL_AES_256, "the first entry encrypts");
}

#[test]
fn plaintext_passes_both_ways() {
    let k = keyring(&[ENTRY_16]);
    assert_eq!(k.decrypt(PEM).expect("a PEM is returned as is"), PEM);
    // Only PEMs are encrypted; anything else (an encrypted value, a
    // `$secret://` reference) is stored as given.
    assert_eq!(k.encrypt(OPENSSL_AES_128).expect("encrypt"), OPENSSL_AES_128);
    assert_eq!(k.encrypt("$secret://vault/1/key").expect("encrypt"), "$secret://vault/1/key");
}

#[test]
fn a_wrong_keyring_is_an_error_without_key_material() {
    let wrong = keyring(&["0123456789abcdef", "fedcba9876543210fedcba9876543210"]);
    let err = wrong.decrypt(OPENSSL_AES_128).unwrap_err();
    assert_eq!(err, KeyringError::NoEntryDecrypts { entries: 2 });
    assert_no_secret(&err.to_string());
    assert_no_secret(&format!("{err:?}"));
    let debug = format!("{:?}", keyring(&[ENTRY_16, ENTRY_32]));
    assert_eq!(debug, "Keyring { aes_bits: [128, 256] }");
}

#[test]
fn bad_entries_are_refused_by_index_and_length() {
    assert_eq!(Keyring::new(Vec::new()).unwrap_err(), KeyringError::Empty);
    let err = Keyring::new(vec![ENTRY_16.to_owned(), "tooshort".to_owned()]).unwrap_err();
    assert_eq!(err, KeyringError::EntryLength { index: 1, len: 8 });
    assert_eq!(
        err.to_string(),
        "keyring entry 1 is 8 bytes long; an entry must be 16 bytes (AES-128-CBC) or 32 bytes (AES-256-CBC)"
    );
    // Length in bytes, as Lua counts it: 16 characters of which one is two bytes.
    let err = Keyring::new(vec!["édd1c9f0985e76a2".to_owned()]).unwrap_err();
    assert_eq!(err, KeyringError::EntryLength { index: 0, len: 17 });
    assert!(!err.to_string().contains("d1c9f0985e76a2"));
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let k = keyring(&[ENTRY_16]);
    let b64 = |bytes: &[u8]| BASE64.encode(bytes);
    let not_encrypted = [
        String::new(),
        "not base64 at all!".to_owned(),
        "$env://TLS_KEY".to_owned(),
        b64(&[0u8; 15]),
        b64(&[0u8; 17]),
        "A".repeat(MAX_ENCRYPTED_LEN + 4),
    ];
    for value in &not_encrypted {
        assert_eq!(k.decrypt(value), Err(KeyringError::NotEncrypted), "{:.40}", value);
        assert!(!is_encrypted(value));
    }
    for bytes in [&[0u8; 16][..], &[0xffu8; 32][..], &[0x10u8; 48][..]] {
        assert_eq!(k.decrypt(&b64(bytes)), Err(KeyringError::NoEntryDecrypts { entries: 1 }));
    }

    // Padding-oracle style probing: every value of the byte that drives the
    // last padding byte. Bad padding and a bad plaintext give the same error,
    // so the answer tells nothing about the padding; no forged value decrypts
    // to the original key.
    let mut ct = BASE64.decode(OPENSSL_AES_128).expect("base64");
    let at = ct.len() - BLOCK_LEN - 1;
    let original = ct[at];
    for v in 0..=255u8 {
        if v == original {
            continue;
        }
        ct[at] = v;
        match k.decrypt(&b64(&ct)) {
            Err(e) => assert_eq!(e, KeyringError::NoEntryDecrypts { entries: 1 }),
            Ok(forged) => {
                assert!(forged.starts_with("-----BEGIN"));
                assert_ne!(forged, PEM);
            }
        }
    }
}

#[test]
fn generated_entries_are_printable_random_and_work() {
    let (k1, e1) = Keyring::generate().expect("generate");
    let (_, e2) = Keyring::generate().expect("generate");
    assert_eq!(e1.len(), GENERATED_ENTRY_LEN);
    assert!(e1.bytes().all(|b| b.is_ascii_alphanumeric()), "{e1}");
    assert_ne!(e1, e2);
    let sealed = k1.encrypt(PEM).expect("encrypt");
    assert_eq!(keyring(&[&e1]).decrypt(&sealed).expect("the returned entry decrypts"), PEM);
}

#[test]
fn ssl_values_are_sealed_and_opened_in_place() {
    let k = keyring(&[ENTRY_16]);
    let mut value =
        json!({"cert": "c", "key": PEM, "certs": ["c1", "c2"], "keys": [PEM, OPENSSL_AES_128], "snis": ["a"]});
    seal_ssl_value(&k, &mut value).expect("seal");
    assert_eq!(value["key"], OPENSSL_AES_128);
    assert_eq!(value["keys"], json!([OPENSSL_AES_128, OPENSSL_AES_128]), "already encrypted keys stay");
    assert_eq!(value["cert"], "c", "only keys are encrypted");

    let sealed = value.clone();
    let err = open_ssl_value(None, &mut value.clone()).unwrap_err();
    assert_eq!(err.field, "key");
    assert_eq!(err.reason, UNDECRYPTABLE);
    assert_no_secret(&err.to_string());

    let mut only_keys = json!({"key": PEM, "keys": [PEM, OPENSSL_AES_128]});
    let err = open_ssl_value(Some(&keyring(&[ENTRY_32])), &mut only_keys).unwrap_err();
    assert_eq!(err.field, "keys[1]");
    assert_eq!(err.reason, UNDECRYPTABLE);

    open_ssl_value(Some(&k), &mut value).expect("open");
    assert_eq!(value["key"], PEM);
    assert_eq!(value["keys"], json!([PEM, PEM]));
    assert_ne!(value, sealed);
}

#[test]
fn opening_leaves_what_validation_must_judge() {
    // A plaintext store (no keyring anywhere), secret references, values of
    // the wrong type and non-objects pass through untouched.
    for original in [
        json!({"key": PEM, "keys": [PEM]}),
        json!({"key": "$secret://vault/1/key", "keys": ["$env://KEY"]}),
        json!({"key": 42, "keys": "nope"}),
        json!({"key": "short junk"}),
        json!([PEM]),
    ] {
        for keyring in [None, Some(keyring(&[ENTRY_16]))] {
            let mut v = original.clone();
            open_ssl_value(keyring.as_ref(), &mut v).expect("nothing to decrypt");
            assert_eq!(v, original);
        }
        let mut v = original.clone();
        seal_ssl_value(&keyring(&[ENTRY_16]), &mut v).expect("seal");
        if original.get("key").and_then(Value::as_str) != Some(PEM) {
            assert_eq!(v, original, "only PEMs are sealed");
        }
    }
}
