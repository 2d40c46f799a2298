//! Detection and false-positive rates of `SqliMatch` and `XssMatch` on
//! outside corpora. Not a test (the corpora are not in the repository and the
//! rates are measurements, not pass/fail):
//!
//! ```sh
//! cargo run --release -p shardgate-waf --example corpus -- <corpora dir>
//! ```
//!
//! The corpora are libinjection's test data (github.com/libinjection/libinjection,
//! `data/`) and the OWASP Core Rule Set's regression tests
//! (github.com/coreruleset/coreruleset, `tests/regression/tests`), laid out as:
//!
//! - `<dir>/libinjection/data/{sqli,xss}-*.txt`: one payload per line, each
//!   inspected as a query argument value (`?q=<payload>`, URL-encoded as a
//!   client would send it); `false_positives.txt`: benign strings, which no
//!   detector should flag.
//! - `<dir>/crs/REQUEST-94{1,2}-*/*.yaml`: OWASP CRS regression cases; each
//!   request is evaluated against a web ACL that runs the detector on the
//!   fields an AWS rule would name (URI path, query string and arguments,
//!   body, header values, cookies; URL and HTML-entity decoded). Cases that expect the
//!   family's rule to fire count toward detection, cases that expect it not
//!   to fire toward false positives; raw `encoded_request` cases are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use shardgate_waf::json::WebAclJson;
use shardgate_waf::{Action, NoSets, RequestView, WebAcl};

fn acl(statement: &str) -> WebAcl {
    acl_with(statement, "")
}

fn acl_with(statement: &str, extra: &str) -> WebAcl {
    let fields = [
        r#"{"UriPath": {}}"#,
        r#"{"QueryString": {}}"#,
        r#"{"AllQueryArguments": {}}"#,
        r#"{"Body": {"OversizeHandling": "CONTINUE"}}"#,
        r#"{"Headers": {"MatchPattern": {"ExcludedHeaders": ["host", "accept", "content-type", "content-length"]}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}}"#,
        r#"{"Cookies": {"MatchPattern": {"All": {}}, "MatchScope": "ALL", "OversizeHandling": "CONTINUE"}}"#,
    ];
    let statements: Vec<String> = fields
        .iter()
        .map(|f| {
            format!(
                r#"{{"{statement}": {{"FieldToMatch": {f}, "TextTransformations": [{{"Type": "URL_DECODE", "Priority": 0}}, {{"Type": "HTML_ENTITY_DECODE", "Priority": 1}}]{extra}}}}}"#
            )
        })
        .collect();
    let text = format!(
        r#"{{"Name": "eval", "DefaultAction": {{"Allow": {{}}}},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "eval"}},
            "Rules": [{{"Name": "detect", "Priority": 0, "Action": {{"Block": {{}}}},
              "Statement": {{"OrStatement": {{"Statements": [{}]}}}},
              "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "detect"}}}}]}}"#,
        statements.join(",")
    );
    let json: WebAclJson = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => panic!("evaluation ACL: {e}"),
    };
    match WebAcl::compile(&json, &NoSets) {
        Ok(a) => a,
        Err(e) => panic!("evaluation ACL: {e}"),
    }
}

struct Req {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn blocked(acl: &WebAcl, r: &Req) -> bool {
    let view = RequestView {
        method: &r.method,
        uri_path: &r.path,
        query: &r.query,
        headers: &r.headers,
        body: (&r.body[..r.body.len().min(16 * 1024)], r.body.len() > 16 * 1024),
        client_ip: "127.0.0.1".parse().expect("ip"),
        tls: None,
    };
    matches!(acl.evaluate(&view).action, Action::Block(_))
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The lists hold payloads URL-encoded as they were seen (libinjection's
/// own test driver decodes each line once); decode, then encode for the query.
fn payload_request(p: &str) -> Req {
    let decoded = shardgate_waf::transform::Transform::UrlDecode.apply(std::borrow::Cow::Borrowed(p.as_bytes()));
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    Req {
        method: "GET".into(),
        path: "/".into(),
        query: format!("q={}", encode(&decoded)),
        headers: HeaderMap::new(),
        body: Vec::new(),
    }
}

#[derive(Default)]
struct Tally {
    hit: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hit += usize::from(hit);
    }
    fn rate(&self) -> String {
        if self.total == 0 {
            return "n/a".into();
        }
        format!("{:.1} % ({} of {})", 100.0 * self.hit as f64 / self.total as f64, self.hit, self.total)
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_owned)
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .collect()
        })
        .unwrap_or_default()
}

fn libinjection(dir: &Path, sqli: &WebAcl, xss: &WebAcl) {
    let data = dir.join("libinjection/data");
    let Ok(entries) = std::fs::read_dir(&data) else {
        println!("libinjection: {} not found, skipped", data.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let (mut s, mut x, mut fp_s, mut fp_x) = (Tally::default(), Tally::default(), Tally::default(), Tally::default());
    let mut per_file = BTreeMap::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let payloads = lines(&f);
        let mut t = Tally::default();
        for p in &payloads {
            let r = payload_request(p);
            if name.starts_with("sqli-") {
                let hit = blocked(sqli, &r);
                s.add(hit);
                t.add(hit);
            } else if name.starts_with("xss-") {
                let hit = blocked(xss, &r);
                x.add(hit);
                t.add(hit);
            } else if name == "false_positives.txt" {
                let (a, b) = (blocked(sqli, &r), blocked(xss, &r));
                if std::env::var_os("CORPUS_SHOW").is_some() && (a || b) {
                    println!("  false positive (sqli {a}, xss {b}): {p}");
                }
                fp_s.add(a);
                fp_x.add(b);
            }
        }
        if t.total > 0 {
            per_file.insert(name, t.rate());
        }
    }
    println!("libinjection payload lists (as a query argument):");
    println!("  SqliMatch detection: {}", s.rate());
    println!("  XssMatch detection:  {}", x.rate());
    println!("  false_positives.txt flagged by SqliMatch: {}", fp_s.rate());
    println!("  false_positives.txt flagged by XssMatch:  {}", fp_x.rate());
    for (f, r) in per_file {
        println!("    {f}: {r}");
    }
}

fn header_map(v: &serde_yaml_ng::Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(m) = v.as_mapping() {
        for (k, val) in m {
            let (Some(k), Some(val)) =
                (k.as_str(), val.as_str().map(str::to_owned).or_else(|| val.as_i64().map(|n| n.to_string())))
            else {
                continue;
            };
            if let (Ok(n), Ok(v)) =
                (HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(&val))
            {
                h.append(n, v);
            }
        }
    }
    h
}

fn crs(dir: &Path, family: &str, acl: &WebAcl, rule_prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir.join("crs").join(family)) else {
        println!("crs {family}: not found, skipped");
        return;
    };
    let (mut det, mut fp, mut skipped) = (Tally::default(), Tally::default(), 0usize);
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
            skipped += 1;
            continue;
        };
        for test in doc.get("tests").and_then(|t| t.as_sequence()).into_iter().flatten() {
            for stage in test.get("stages").and_then(|s| s.as_sequence()).into_iter().flatten() {
                let input = stage.get("input").or_else(|| stage.get("stage").and_then(|s| s.get("input")));
                let output = stage.get("output").or_else(|| stage.get("stage").and_then(|s| s.get("output")));
                let (Some(input), Some(output)) = (input, output) else { continue };
                if input.get("encoded_request").is_some() {
                    skipped += 1;
                    continue;
                }
                let ids = |key: &str| -> Vec<i64> {
                    output
                        .get("log")
                        .and_then(|l| l.get(key))
                        .or_else(|| output.get(key))
                        .and_then(|v| v.as_sequence())
                        .map(|s| s.iter().filter_map(|x| x.as_i64()).collect())
                        .unwrap_or_default()
                };
                let in_family = |v: &[i64]| v.iter().any(|id| id.to_string().starts_with(rule_prefix));
                let (expect, no_expect) = (ids("expect_ids"), ids("no_expect_ids"));
                let uri = input.get("uri").and_then(|u| u.as_str()).unwrap_or("/");
                let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
                let body = input
                    .get("data")
                    .map(|d| match d.as_str() {
                        Some(s) => s.as_bytes().to_vec(),
                        None => d
                            .as_sequence()
                            .map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("\r\n").into_bytes())
                            .unwrap_or_default(),
                    })
                    .unwrap_or_default();
                let r = Req {
                    method: input.get("method").and_then(|m| m.as_str()).unwrap_or("GET").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    headers: input.get("headers").map(header_map).unwrap_or_default(),
                    body,
                };
                let show = std::env::var_os("CORPUS_SHOW").is_some();
                if in_family(&expect) {
                    let hit = blocked(acl, &r);
                    if show && !hit {
                        println!(
                            "  missed {}: {} ?{} {}",
                            e.path().display(),
                            r.path,
                            r.query,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    det.add(hit);
                } else if in_family(&no_expect) {
                    let hit = blocked(acl, &r);
                    if show && hit {
                        println!(
                            "  false positive {}: {} ?{} {}",
                            e.path().display(),
                            r.path,
                            r.query,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    fp.add(hit);
                }
            }
        }
    }
    println!(
        "CRS {family}: detection {}, false positives {}, skipped (raw requests or unreadable) {skipped}",
        det.rate(),
        fp.rate()
    );
}

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: corpus <corpora dir> (holding libinjection/ and crs/)");
        return std::process::ExitCode::from(2);
    };
    let sqli = acl("SqliMatchStatement");
    let xss = acl("XssMatchStatement");
    println!("== SqliMatch SensitivityLevel LOW (the default) ==");
    libinjection(&dir, &sqli, &xss);
    crs(&dir, "REQUEST-942-APPLICATION-ATTACK-SQLI", &sqli, "942");
    crs(&dir, "REQUEST-941-APPLICATION-ATTACK-XSS", &xss, "941");
    println!("== SqliMatch SensitivityLevel HIGH ==");
    let high = acl_with("SqliMatchStatement", r#", "SensitivityLevel": "HIGH""#);
    libinjection(&dir, &high, &xss);
    crs(&dir, "REQUEST-942-APPLICATION-ATTACK-SQLI", &high, "942");
    std::process::ExitCode::SUCCESS
}
