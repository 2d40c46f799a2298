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
/// The deepest legal resource is a web ACL whose statements nest as far as
/// the WAF allows (`shardgate_waf::json::MAX_STATEMENT_DEPTH`, 21
/// statements, bounded while deserializing): a rule's statement object is
/// at level 4, each AndStatement or OrStatement level adds three JSON
/// levels (a NotStatement two), and the deepest leaf
/// (`FieldToMatch.Headers.MatchPattern.IncludedHeaders`) five, so
/// 4 + 3 × 20 + 5 = 69 levels. 80 leaves a margin of 11 for fields AWS may
/// add. The bound keeps every recursion over a document (serde's typed
/// deserialization, `Value` clone and drop, the PATCH merge, the WAF
/// compiler) far from the 2 MiB stack of a tokio worker; the tests
/// `the_deepest_documents_fit_a_worker_stack` and
/// `the_deepest_legal_web_acl_is_accepted_on_a_worker_stack` check that in a
/// debug build.
pub const MAX_DEPTH: usize = 80;

/// The error for a document deeper than [`MAX_DEPTH`].
fn too_deep() -> BadJson {
    BadJson(format!("JSON nests deeper than {MAX_DEPTH} levels"))
}

/// Parses `bytes` as JSON, tolerating raw control characters inside strings
/// and refusing documents that nest deeper than [`MAX_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Value, BadJson> {
    let escaped = prepare(bytes)?;
    serde_json::from_slice(escaped.as_deref().unwrap_or(bytes)).map_err(|e| BadJson(e.to_string()))
}

/// One pass over raw JSON text that tracks strings once for two jobs:
/// counts array and object levels outside strings, refusing the text as soon
/// as it goes deeper than [`MAX_DEPTH`] (brackets that do not balance are
/// left for the parser to report); and escapes control characters inside
/// strings, returning a copy only when there are some (the common case: no
/// copy).
fn prepare(bytes: &[u8]) -> Result<Option<Vec<u8>>, BadJson> {
    let mut out: Option<Vec<u8>> = None;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        let mut replacement: Option<&[u8]> = None;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else if b < 0x20 {
                replacement = Some(match b {
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    b'\t' => b"\\t",
                    _ => b"",
                });
            }
        } else {
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
    Ok(out)
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
    use shardgate_waf::json::MAX_STATEMENT_DEPTH;

    /// A tokio worker's stack (tokio's default `thread_stack_size`).
    const WORKER_STACK: usize = 2 * 1024 * 1024;

    fn nested_arrays(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(parse(nested_arrays(MAX_DEPTH).as_bytes()).is_ok());
        let e = parse(nested_arrays(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(e.0, "JSON nests deeper than 80 levels");
        // Brackets inside strings (escaped quotes included) do not count.
        let inside = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse(inside.as_bytes()).is_ok(), "brackets in a string are text");
        // Far deeper than serde's own limit: refused by the count, no recursion.
        let e = parse(nested_arrays(1_000_000).as_bytes()).unwrap_err();
        assert!(e.0.contains("deeper than 80"), "{e}");
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
        assert_eq!(check_value_depth(&deeper).unwrap_err().0, "JSON nests deeper than 80 levels");
    }

    /// The deepest leaf statement: a ByteMatchStatement on `Headers` with an
    /// `IncludedHeaders` list, five JSON levels below its statement object.
    fn leaf_statement() -> String {
        r#"{"ByteMatchStatement": {"SearchString": "x", "FieldToMatch": {"Headers": {"MatchPattern":
            {"IncludedHeaders": ["user-agent"]}, "MatchScope": "VALUE", "OversizeHandling": "CONTINUE"}},
            "TextTransformations": [{"Priority": 0, "Type": "NONE"}], "PositionalConstraint": "CONTAINS"}}"#
            .to_owned()
    }

    /// A web ACL whose one rule's statement is `statement`.
    fn acl_doc(statement: &str) -> String {
        format!(
            r#"{{"Name": "deep", "DefaultAction": {{"Allow": {{}}}},
            "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deep"}},
            "Rules": [{{"Name": "r", "Priority": 0, "Action": {{"Block": {{}}}},
              "VisibilityConfig": {{"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "r"}},
              "Statement": {statement}}}]}}"#
        )
    }

    /// Wraps a statement in one more level.
    type Wrap = fn(&str) -> String;

    /// The ways a statement nests another: NotStatement, and AndStatement
    /// and OrStatement with a second, leaf member.
    fn wrappers() -> [(&'static str, Wrap); 3] {
        [
            ("NotStatement", |s| format!(r#"{{"NotStatement": {{"Statement": {s}}}}}"#)),
            ("AndStatement", |s| format!(r#"{{"AndStatement": {{"Statements": [{s}, {}]}}}}"#, leaf_statement())),
            ("OrStatement", |s| format!(r#"{{"OrStatement": {{"Statements": [{s}, {}]}}}}"#, leaf_statement())),
        ]
    }

    /// A statement tree `levels` statements deep: `wrap` around the leaf.
    fn chain(levels: usize, wrap: Wrap) -> String {
        (1..levels).fold(leaf_statement(), |s, _| wrap(&s))
    }

    fn json_depth(doc: &str) -> usize {
        value_depth(&serde_json::from_str(doc).expect("test JSON"))
    }

    /// What the Admin API and the reconciler run on a body (parse, typed
    /// wire, validation, references, canonical form, clone); whether it
    /// validated. Any input must get an answer, not overflow the stack.
    fn whole_pipeline(kind: ResourceKind, doc: &str) -> Result<(), String> {
        let value = parse(doc.as_bytes()).map_err(|e| e.to_string())?;
        let id = ResourceId::parse("deep").expect("id");
        let wire = Wire::from_value(kind, value).map_err(|e| e.to_string())?;
        drop(wire.references());
        drop(wire.clone());
        wire.validate(&id, Validation::default()).map_err(|e| e.to_string())?;
        drop(wire.to_value());
        Ok(())
    }

    /// On a worker-sized stack in a debug build:
    /// - the deepest legal statement trees (MAX_STATEMENT_DEPTH statements
    ///   of each nesting kind, around the deepest leaf) go through the whole
    ///   pipeline and validate;
    /// - the deepest documents the JSON bound lets through, nested by
    ///   statements, are refused by the statement bound while parsing;
    /// - every kind, with the deepest value its free-form fields can carry
    ///   (and typed fields, which must refuse it), gets an answer.
    #[test]
    fn the_deepest_documents_fit_a_worker_stack() {
        let mut legal: Vec<(&str, String)> = Vec::new();
        let mut too_deep: Vec<(&str, String)> = Vec::new();
        for (name, wrap) in wrappers() {
            legal.push((name, acl_doc(&chain(MAX_STATEMENT_DEPTH, wrap))));
            let mut levels = MAX_STATEMENT_DEPTH + 1;
            while json_depth(&acl_doc(&chain(levels + 1, wrap))) <= MAX_DEPTH {
                levels += 1;
            }
            let doc = acl_doc(&chain(levels, wrap));
            // One more wrap would pass the limit; a wrap adds two or three levels.
            assert!((MAX_DEPTH - 2..=MAX_DEPTH).contains(&json_depth(&doc)), "{name}: {}", json_depth(&doc));
            too_deep.push((name, doc));
        }
        let mut others: Vec<(ResourceKind, String)> = Vec::new();
        let deep = nested_arrays(MAX_DEPTH - 2);
        for kind in ResourceKind::ALL {
            for field in
                ["nodes", "client", "checks", "metadata", "upstream", "origins", "Rules", "Addresses", "labels"]
            {
                others.push((kind, format!(r#"{{"{field}": {{"x": {deep}}}}}"#)));
            }
        }
        let worker = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let legal: Vec<(&str, Result<(), String>)> =
                    legal.iter().map(|(name, doc)| (*name, whole_pipeline(ResourceKind::WebAcls, doc))).collect();
                let refused: Vec<(&str, Result<(), String>)> =
                    too_deep.iter().map(|(name, doc)| (*name, whole_pipeline(ResourceKind::WebAcls, doc))).collect();
                for (kind, doc) in &others {
                    // Valid or not, each must answer.
                    drop(whole_pipeline(*kind, doc));
                }
                (legal, refused, others.len())
            })
            .expect("spawn a worker-sized thread");
        let (legal, refused, others) = worker.join().expect("no stack overflow on a 2 MiB stack");
        for (name, r) in legal {
            assert_eq!(r, Ok(()), "{MAX_STATEMENT_DEPTH} levels of {name} validate");
        }
        for (name, r) in refused {
            let e = r.expect_err("deeper than the statement bound");
            assert!(e.contains(&format!("statements nest at most {MAX_STATEMENT_DEPTH} deep")), "{name}: {e}");
        }
        assert_eq!(others, ResourceKind::ALL.len() * 9);
    }

    /// The deepest web ACL the WAF accepts (an `AndStatement` chain
    /// `MAX_STATEMENT_DEPTH` statements deep around the deepest leaf: 69 JSON
    /// levels) fits the JSON bound, and is parsed, validated and compiled on
    /// a worker-sized stack in a debug build; one statement level more is
    /// refused with the limit named.
    #[test]
    fn the_deepest_legal_web_acl_is_accepted_on_a_worker_stack() {
        let and = wrappers()[1].1;
        let doc = acl_doc(&chain(MAX_STATEMENT_DEPTH, and));
        assert_eq!(json_depth(&doc), 4 + 3 * (MAX_STATEMENT_DEPTH - 1) + 5);
        assert!(json_depth(&doc) < MAX_DEPTH, "room to spare under the JSON bound");
        let deeper = acl_doc(&chain(MAX_STATEMENT_DEPTH + 1, and));
        assert!(json_depth(&deeper) <= MAX_DEPTH, "the statement bound, not the JSON one, refuses the next level");
        let worker = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                (whole_pipeline(ResourceKind::WebAcls, &doc), whole_pipeline(ResourceKind::WebAcls, &deeper))
            })
            .expect("spawn a worker-sized thread");
        let (accepted, refused) = worker.join().expect("no stack overflow on a 2 MiB stack");
        assert_eq!(accepted, Ok(()));
        let e = refused.expect_err("one level too deep");
        assert!(e.contains(&format!("statements nest at most {MAX_STATEMENT_DEPTH} deep")), "{e}");
    }

    /// A rule whose statement is 60 nested NotStatements (JSON depth ~125,
    /// under serde_json's own limit of 128) once overflowed a worker's
    /// stack; the JSON bound refuses it before anything recurses.
    #[test]
    fn a_sixty_level_statement_is_refused_before_any_recursion() {
        let mut statement = leaf_statement();
        for _ in 0..60 {
            statement = format!(r#"{{"NotStatement": {{"Statement": {statement}}}}}"#);
        }
        let doc = format!(r#"{{"Name": "x", "Rules": [{{"Name": "r", "Statement": {statement}}}]}}"#);
        let e = parse(doc.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "JSON nests deeper than 80 levels");
    }
}
