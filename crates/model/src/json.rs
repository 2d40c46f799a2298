//! JSON as Admin API clients really send it.
//!
//! The seed's commands build bodies with shell substitution:
//! `-d '{"cert": "'"$(cat gs-1.crt)"'", ...}'`, which puts raw newlines inside
//! JSON strings. Strict JSON (RFC 8259 §7) forbids unescaped control
//! characters there, but APISIX's lua-cjson decoder accepts them, so those
//! scripts work against APISIX. [`parse`] escapes control characters found
//! inside strings before handing the bytes to serde_json; everything else
//! stays strict.
//!
//! [`parse`] is also where nesting is bounded. Every Admin API body and every
//! stored value the reconciler loads goes through it, and before serde builds
//! anything it counts `{`/`[` levels in one loop (no recursion) and refuses a
//! document deeper than [`MAX_DEPTH`]. serde's own limit (128) is not enough:
//! deserializing 128 levels of a typed struct such as a web ACL statement
//! overflows a 2 MiB worker stack. [`value_depth`] measures a value built in
//! memory (a PATCH result) the same way, without recursion.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Invalid;
use crate::error::join_path;

/// Why a body is not JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadJson(pub String);

/// Deepest nesting of arrays and objects accepted in any resource, counting
/// the outer object as level 1.
///
/// Every legal resource fits well inside it: the deepest is a web ACL whose
/// statements nest as far as the WAF allows
/// (`shardgate_waf::json::MAX_STATEMENT_DEPTH`, bounded while deserializing;
/// an AndStatement or OrStatement level takes three JSON levels, a
/// NotStatement two). The bound keeps every recursion
/// over a document (serde's typed deserialization, `Value` clone and drop,
/// the PATCH merge, the WAF compiler) far from the 2 MiB stack of a tokio
/// worker; `tests::the_deepest_documents_fit_a_worker_stack` checks that in a
/// debug build.
pub const MAX_DEPTH: usize = 64;

/// The error for a document deeper than [`MAX_DEPTH`].
fn too_deep() -> BadJson {
    BadJson(format!("JSON nests deeper than {MAX_DEPTH} levels"))
}

/// Parses `bytes` as JSON, tolerating raw control characters inside strings
/// and refusing documents that nest deeper than [`MAX_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Value, BadJson> {
    check_depth(bytes)?;
    let escaped = escape_controls_in_strings(bytes);
    serde_json::from_slice(escaped.as_deref().unwrap_or(bytes)).map_err(|e| BadJson(e.to_string()))
}

/// Counts array and object levels in raw JSON text in one pass, skipping
/// strings; refuses the text as soon as it goes deeper than [`MAX_DEPTH`].
/// Brackets that do not balance are left for the parser to report.
fn check_depth(bytes: &[u8]) -> Result<(), BadJson> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The nesting depth of a value (a scalar is 0, `{}` is 1), measured with
/// an explicit stack: safe on values of any depth.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                stack.extend(items.iter().map(|i| (i, level + 1)));
            }
            Value::Object(fields) => {
                deepest = deepest.max(level + 1);
                stack.extend(fields.values().map(|f| (f, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Refuses a value built in memory (a PATCH result) that nests deeper than
/// [`MAX_DEPTH`], with the same error [`parse`] gives.
pub fn check_value_depth(value: &Value) -> Result<(), BadJson> {
    if value_depth(value) > MAX_DEPTH { Err(too_deep()) } else { Ok(()) }
}

/// Returns a copy of `bytes` with control characters inside JSON strings
/// escaped, or `None` when there are none (the common case: no copy).
fn escape_controls_in_strings(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: Option<&[u8]> = if in_string && !escaped && b < 0x20 {
            Some(match b {
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                _ => b"",
            })
        } else {
            None
        };
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
        match replacement {
            Some(rep) => {
                let buf = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(bytes.len() + 64);
                    v.extend_from_slice(&bytes[..i]);
                    v
                });
                if rep.is_empty() {
                    buf.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                } else {
                    buf.extend_from_slice(rep);
                }
            }
            None => {
                if let Some(buf) = out.as_mut() {
                    buf.push(b);
                }
            }
        }
    }
    out
}

/// Deserializes a wire struct from a JSON value, turning serde's error into
/// an [`Invalid`] whose field is the JSON path of the failure.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = path_string(err.path());
        let message = err.inner().to_string();
        // serde reports unknown and missing fields at the parent's path; name
        // the field itself, the way APISIX's schema checker does.
        if let Some(name) = between(&message, "unknown field `", "`") {
            // The path already ends with the unknown key.
            let field = if path.ends_with(name) { path.clone() } else { join_path(&path, name) };
            Invalid::new(field, format!("additional properties forbidden, found {name}"))
        } else if let Some(name) = between(&message, "missing field `", "`") {
            Invalid::new(join_path(&path, name), "is required")
        } else {
            Invalid::new(path, message)
        }
    })
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn raw_newlines_in_strings_are_accepted_like_lua_cjson() {
        let body = b"{\n\"cert\": \"-----BEGIN\nABC\r\n\tEND-----\",\n\"snis\": [\"gs-1.com\"]\n}";
        let v = parse(body).expect("lenient parse");
        assert_eq!(v["cert"], "-----BEGIN\nABC\r\n\tEND-----");
        assert_eq!(v["snis"][0], "gs-1.com");
    }

    #[test]
    fn escapes_and_quotes_inside_strings_are_kept() {
        let v = parse(br#"{"a": "x\"y\\", "b": "\n"}"#).expect("strict json");
        assert_eq!(v["a"], "x\"y\\");
        assert_eq!(v["b"], "\n");
        let v = parse(b"{\"a\": \"bell\x07\"}").expect("other controls become \\u escapes");
        assert_eq!(v["a"], "bell\u{7}");
    }

    #[test]
    fn broken_json_is_still_refused() {
        assert!(parse(b"{\"a\": 1").is_err());
        assert!(parse(b"{a: 1}").is_err());
        assert!(parse(b"").is_err());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = from_value::<Outer>(serde_json::json!({"inner": [{"port": 1}, {"port": 70000}]})).unwrap_err();
        assert_eq!(e.field, "inner[1].port");
        let e = from_value::<Outer>(serde_json::json!({"inner": [{"port": 1, "host": "x"}]})).unwrap_err();
        assert_eq!(e.field, "inner[0].host");
        assert!(e.reason.contains("additional properties forbidden"), "{e}");
        let e = from_value::<Outer>(serde_json::json!({"inner": [{}]})).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("inner[0].port", "is required"));
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;
    use crate::resource::{Validation, Wire};
    use crate::{ResourceId, ResourceKind};
    use serde_json::json;

    /// A tokio worker's stack (tokio's default `thread_stack_size`).
    const WORKER_STACK: usize = 2 * 1024 * 1024;

    fn nested_arrays(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(parse(nested_arrays(MAX_DEPTH).as_bytes()).is_ok());
        let e = parse(nested_arrays(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(e.0, "JSON nests deeper than 64 levels");
        // Brackets inside strings (escaped quotes included) do not count.
        let inside = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse(inside.as_bytes()).is_ok(), "brackets in a string are text");
        // Far deeper than serde's own limit: refused by the count, no recursion.
        let e = parse(nested_arrays(1_000_000).as_bytes()).unwrap_err();
        assert!(e.0.contains("deeper than 64"), "{e}");
    }

    #[test]
    fn value_depth_matches_the_text_count() {
        assert_eq!(value_depth(&json!(1)), 0);
        assert_eq!(value_depth(&json!({})), 1);
        assert_eq!(value_depth(&json!({"a": [1, {"b": []}]})), 4);
        let deep = parse(nested_arrays(MAX_DEPTH).as_bytes()).expect("at the limit");
        assert_eq!(value_depth(&deep), MAX_DEPTH);
        assert!(check_value_depth(&deep).is_ok());
        let deeper = Value::Array(vec![deep]);
        assert_eq!(check_value_depth(&deeper).unwrap_err().0, "JSON nests deeper than 64 levels");
    }

    fn leaf_statement() -> String {
        r#"{"ByteMatchStatement": {"SearchString": "x", "FieldToMatch": {"UriPath": {}},
            "TextTransformations": [{"Priority": 0, "Type": "NONE"}], "PositionalConstraint": "CONTAINS"}}"#
            .to_owned()
    }

    /// A web ACL whose one rule's statement is `wrap` applied until the
    /// document is exactly `MAX_DEPTH` deep.
    fn deepest_acl(wrap: impl Fn(&str) -> String) -> String {
        let acl = |statement: &str| {
            format!(
                r#"{{"Name": "deep", "DefaultAction": {{"Allow": {{}}}},
                "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deep"}},
                "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
                  "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
                  "Statement": {statement}}}]}}"#
            )
        };
        let mut statement = leaf_statement();
        loop {
            let next = wrap(&statement);
            let depth = value_depth(&serde_json::from_str(&acl(&next)).expect("test JSON"));
            if depth > MAX_DEPTH {
                break;
            }
            statement = next;
        }
        let doc = acl(&statement);
        // One more wrap would pass the limit; a wrap adds two or three levels.
        let depth = value_depth(&serde_json::from_str(&doc).expect("test JSON"));
        assert!((MAX_DEPTH - 2..=MAX_DEPTH).contains(&depth), "depth {depth}");
        doc
    }

    /// Every document the depth check lets through, run through the whole
    /// pipeline the Admin API and the reconciler run (parse, typed wire,
    /// validation, references, canonical form) on a worker-sized stack.
    fn whole_pipeline(kind: ResourceKind, doc: &str) {
        let value = parse(doc.as_bytes()).expect("within the depth limit");
        let id = ResourceId::parse("deep").expect("id");
        if let Ok(wire) = Wire::from_value(kind, value) {
            // Valid or not, validation must answer, not overflow.
            if wire.validate(&id, Validation::default()).is_ok() {
                drop(wire.to_value());
            }
            drop(wire.references());
            drop(wire.clone());
        }
    }

    #[test]
    fn the_deepest_documents_fit_a_worker_stack() {
        let mut docs: Vec<(ResourceKind, String)> = vec![
            (ResourceKind::WebAcls, deepest_acl(|s| format!(r#"{{"NotStatement": {{"Statement": {s}}}}}"#))),
            (
                ResourceKind::WebAcls,
                deepest_acl(|s| format!(r#"{{"AndStatement": {{"Statements": [{s}, {}]}}}}"#, leaf_statement())),
            ),
            (
                ResourceKind::WebAcls,
                deepest_acl(|s| format!(r#"{{"OrStatement": {{"Statements": [{s}, {}]}}}}"#, leaf_statement())),
            ),
        ];
        // Every kind, with the deepest value its free-form fields can carry
        // (and fields that are typed, which must refuse it quickly).
        let deep = nested_arrays(MAX_DEPTH - 2);
        for kind in ResourceKind::ALL {
            for field in
                ["nodes", "client", "checks", "metadata", "upstream", "origins", "Rules", "Addresses", "labels"]
            {
                docs.push((kind, format!(r#"{{"{field}": {{"x": {deep}}}}}"#)));
            }
        }
        let worker = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for (kind, doc) in &docs {
                    whole_pipeline(*kind, doc);
                }
                docs.len()
            })
            .expect("spawn a worker-sized thread");
        let ran = worker.join().expect("no stack overflow on a 2 MiB stack");
        assert!(ran > 3);
    }

    /// The deepest statement tree the WAF accepts (an `AndStatement` chain
    /// `MAX_STATEMENT_DEPTH` statements deep, 3 JSON levels each) is parsed,
    /// validated and compiled on a worker-sized stack in a debug build.
    #[test]
    fn the_deepest_legal_web_acl_is_accepted_on_a_worker_stack() {
        let depth = shardgate_waf::json::MAX_STATEMENT_DEPTH;
        let mut statement = leaf_statement();
        for _ in 1..depth {
            statement = format!(r#"{{"AndStatement": {{"Statements": [{statement}, {}]}}}}"#, leaf_statement());
        }
        let doc = format!(
            r#"{{"Name": "deep", "DefaultAction": {{"Allow": {{}}}},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deep"}},
            "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
              "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
              "Statement": {statement}}}]}}"#
        );
        let worker = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let value = parse(doc.as_bytes()).expect("within the JSON depth limit");
                let wire = Wire::from_value(ResourceKind::WebAcls, value).expect("within the statement limit");
                wire.validate(&ResourceId::parse("deep").expect("id"), Validation::default()).expect("compiles");
                let deeper = format!(r#"{{"NotStatement": {{"Statement": {statement}}}}}"#);
                let doc = doc_with(&deeper);
                let e = Wire::from_value(ResourceKind::WebAcls, parse(doc.as_bytes()).expect("parse")).unwrap_err();
                e.to_string()
            })
            .expect("spawn a worker-sized thread");
        let refused = worker.join().expect("no stack overflow on a 2 MiB stack");
        assert!(refused.contains(&format!("statements nest at most {depth} deep")), "{refused}");

        fn doc_with(statement: &str) -> String {
            format!(
                r#"{{"Name": "deep", "DefaultAction": {{"Allow": {{}}}},
                "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deep"}},
                "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
                  "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
                  "Statement": {statement}}}]}}"#
            )
        }
    }

    #[test]
    fn the_issue_body_is_refused_before_any_recursion() {
        // Issue 9: NotStatement 60 deep, JSON depth ~125, under serde's 128.
        let mut statement = leaf_statement();
        for _ in 0..60 {
            statement = format!(r#"{{"NotStatement": {{"Statement": {statement}}}}}"#);
        }
        let doc = format!(r#"{{"Name": "x", "Rules": [{{"Name": "r", "Statement": {statement}}}]}}"#);
        let e = parse(doc.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "JSON nests deeper than 64 levels");
    }
}
