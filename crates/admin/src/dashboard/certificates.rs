//! `GET /ui/api/certificates`: every stored SSL object with its SNIs and
//! the validity of its certificate, soonest expiry first, so the dashboard
//! shows what needs renewing.
//!
//! An object with several certificates (`cert` plus `certs`, e.g. an RSA and
//! an ECDSA one) is listed with the one that expires first. An object whose
//! stored certificate cannot be read is listed first, with `error` saying
//! why (such an object cannot be served either). Only certificates are
//! read: private keys are never touched.

use serde_json::{Value, json};
use x509_parser::pem::Pem;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// One SSL object's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its resource id.
    pub id: String,
    /// Its SNIs (`snis`, or `sni`).
    pub snis: Vec<String>,
    /// The soonest-expiring certificate, or why none could be read.
    pub validity: Result<Validity, String>,
}

/// A certificate's validity and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// The subject's distinguished name.
    pub subject: String,
}

/// The line of the SSL object stored under `key` with `value`.
pub fn entry(key: &str, value: &[u8]) -> Entry {
    let id = key.rsplit('/').next().unwrap_or(key).to_owned();
    let parsed: Value = match serde_json::from_slice(value) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Entry { id, snis: Vec::new(), validity: Err("the stored object is not a JSON object".into()) },
    };
    let snis = match (&parsed["snis"], &parsed["sni"]) {
        (Value::Array(list), _) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        (_, Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let mut pems: Vec<(String, &str)> = Vec::new();
    match parsed["cert"].as_str() {
        Some(c) => pems.push(("cert".into(), c)),
        None => return Entry { id, snis, validity: Err("cert: missing".into()) },
    }
    if let Some(extra) = parsed["certs"].as_array() {
        pems.extend(extra.iter().enumerate().filter_map(|(i, c)| c.as_str().map(|c| (format!("certs[{i}]"), c))));
    }
    let mut soonest: Option<Validity> = None;
    for (field, pem) in pems {
        match validity(pem) {
            Ok(v) => {
                if soonest.as_ref().is_none_or(|s| v.not_after < s.not_after) {
                    soonest = Some(v);
                }
            }
            Err(why) => return Entry { id, snis, validity: Err(format!("{field}: {why}")) },
        }
    }
    Entry { id, snis, validity: soonest.ok_or_else(|| "cert: missing".to_owned()) }
}

/// The leaf (first certificate) of a PEM chain.
fn validity(pem: &str) -> Result<Validity, String> {
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or("no PEM block found")?
        .map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "the first PEM block is {:?}, not a CERTIFICATE",
            block.label.chars().take(32).collect::<String>()
        ));
    }
    let cert = block.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let v = cert.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
    })
}

/// Whole days from `now` to `not_after`, rounded down (negative once expired).
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(DAY)
}

/// The answer's `list`: unreadable objects first, then by notAfter, then id.
pub fn list(mut entries: Vec<Entry>, now: i64) -> Value {
    entries.sort_by(|a, b| {
        let key = |e: &Entry| (e.validity.is_ok(), e.validity.as_ref().map_or(i64::MIN, |v| v.not_after));
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    });
    let list: Vec<Value> = entries
        .into_iter()
        .map(|e| match e.validity {
            Ok(v) => json!({
                "id": e.id,
                "snis": e.snis,
                "not_before": v.not_before,
                "not_after": v.not_after,
                "days_left": days_left(v.not_after, now),
                "issuer": v.issuer,
                "subject": v.subject,
            }),
            Err(why) => json!({"id": e.id, "snis": e.snis, "error": why}),
        })
        .collect();
    json!({ "list": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str, not_after: (i32, u8, u8)) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn entries_are_sorted_soonest_first_with_unreadable_ones_on_top() {
        let late = pem("late.example", (2031, 1, 1));
        let soon = pem("soon.example", (2030, 1, 1));
        let entries = vec![
            entry("/apisix/ssls/a", json!({"cert": late, "snis": ["late.example"]}).to_string().as_bytes()),
            entry("/apisix/ssls/b", json!({"cert": soon, "sni": "soon.example"}).to_string().as_bytes()),
            entry("/apisix/ssls/c", json!({"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "snis": ["x.example"]}).to_string().as_bytes()),
            entry("/apisix/ssls/d", b"not json"),
        ];
        let now = 1_893_456_000 - 10 * DAY - 1; // 2030-01-01T00:00:00Z less ten days and a second
        let out = list(entries, now);
        let ids: Vec<&str> =
            out["list"].as_array().expect("list").iter().map(|e| e["id"].as_str().expect("id")).collect();
        assert_eq!(ids, ["c", "d", "b", "a"]);
        let b = &out["list"][2];
        assert_eq!(b["snis"], json!(["soon.example"]));
        assert_eq!(b["not_after"], 1_893_456_000);
        assert_eq!(b["not_before"], 1_704_067_200);
        assert_eq!(b["days_left"], 10);
        assert_eq!(b["subject"], "CN=soon.example");
        assert_eq!(b["issuer"], "CN=soon.example");
        assert!(
            out["list"][0]["error"].as_str().expect("error").starts_with("cert: not an X.509 certificate"),
            "{}",
            out["list"][0]
        );
        assert_eq!(out["list"][1]["error"], "the stored object is not a JSON object");
    }

    #[test]
    fn the_soonest_of_several_certificates_counts() {
        let first = pem("a.example", (2031, 1, 1));
        let second = pem("a.example", (2030, 6, 1));
        let e = entry(
            "/apisix/ssls/1",
            json!({"cert": first, "certs": [second], "snis": ["a.example"]}).to_string().as_bytes(),
        );
        assert_eq!(e.validity.expect("valid").not_after, 1_906_502_400);
    }

    #[test]
    fn days_round_down_and_go_negative() {
        assert_eq!(days_left(DAY * 3, 0), 3);
        assert_eq!(days_left(DAY * 3 - 1, 0), 2);
        assert_eq!(days_left(0, 1), -1);
        assert_eq!(days_left(0, DAY), -1);
        assert_eq!(days_left(0, DAY + 1), -2);
    }
}
