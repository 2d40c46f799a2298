//! Certificates that cannot be used are refused in words:
//! a PEM cut short says which block and which line is missing, never raw
//! bytes; an RSA-1024 key says why aws-lc-rs refuses it. The bodies are
//! built the way seed 000's commands build them: `openssl` files pasted into
//! the JSON with shell substitution, sent with `curl`.

mod common;

use common::{bash, gateway, text};
use serde_json::Value;
use shardgate_e2e::ADMIN_KEY;

/// PUTs `cert`/`key` (file names in `dir`) as `ssls/1` with curl; returns
/// the status and the JSON answer.
async fn put_ssl(admin: std::net::SocketAddr, dir: &std::path::Path, cert: &str, key: &str) -> (u16, Value) {
    let script = format!(
        r#"curl -s -o answer.json -w '%{{http_code}}' -X PUT http://{admin}/apisix/admin/ssls/1 -H 'X-API-KEY: {ADMIN_KEY}' -d '
{{
"cert": "'"$(cat {cert})"'",
"key": "'"$(cat {key})"'",
"snis": ["gs-1.com"]
}}'"#
    );
    let out = bash(script, dir).await;
    assert!(out.status.success(), "curl: {}", text(&out));
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().expect("status code");
    let answer = std::fs::read_to_string(dir.join("answer.json")).expect("answer");
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_pem_and_rsa_1024_are_refused_in_words() {
    let gw = gateway().spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bash(
        r#"set -e
openssl req -new -newkey rsa:2048 -days 365 -nodes -x509 -keyout gs-1.key -out gs-1.crt -subj "/CN=gs-1.com" 2>/dev/null
openssl req -new -newkey rsa:1024 -days 365 -nodes -x509 -keyout weak.key -out weak.crt -subj "/CN=gs-1.com" 2>/dev/null
head -c 600 gs-1.crt > cut.crt            # cut in the middle of the base64, no END line
head -n 6 gs-1.key > cut.key
"#
        .to_owned(),
        dir.path(),
    )
    .await;
    assert!(out.status.success(), "openssl: {}", text(&out));

    let (status, answer) = put_ssl(gw.admin, dir.path(), "cut.crt", "gs-1.key").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error_msg"],
        "invalid configuration: property \"cert\" validation failed: the PEM block \"CERTIFICATE\" is truncated: no \"-----END CERTIFICATE-----\" line at the end of the text"
    );

    let (status, answer) = put_ssl(gw.admin, dir.path(), "gs-1.crt", "cut.key").await;
    assert_eq!(status, 400, "{answer}");
    let msg = answer["error_msg"].as_str().unwrap_or_default();
    assert!(msg.contains("property \"key\"") && msg.contains("\"PRIVATE KEY\" is truncated"), "{msg}");
    let key_text = std::fs::read_to_string(dir.path().join("cut.key")).expect("key");
    assert!(key_text.lines().skip(1).all(|l| !msg.contains(l)), "no key material in the answer: {msg}");

    let (status, answer) = put_ssl(gw.admin, dir.path(), "weak.crt", "weak.key").await;
    assert_eq!(status, 400, "{answer}");
    let msg = answer["error_msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("invalid configuration: property \"key\" validation failed: RSA keys shorter than 2048 bits or longer than 8192 bits are refused (this key has 1024)"),
        "{msg}"
    );

    for (status, answer) in [
        put_ssl(gw.admin, dir.path(), "cut.crt", "gs-1.key").await,
        put_ssl(gw.admin, dir.path(), "weak.crt", "weak.key").await,
    ] {
        let msg = answer["error_msg"].as_str().unwrap_or_default();
        assert!(status == 400 && !msg.contains('['), "no byte arrays in {msg}");
    }
    let (status, _) = put_ssl(gw.admin, dir.path(), "gs-1.crt", "gs-1.key").await;
    assert_eq!(status, 201, "the whole pair is accepted");
}
