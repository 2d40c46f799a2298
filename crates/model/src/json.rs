//! JSON as Admin API clients really send it.
//!
//! The seed's commands build bodies with shell substitution:
//! `-d '{"cert": "'"$(cat gs-1.crt)"'", ...}'`, which puts raw newlines inside
//! JSON strings. Strict JSON (RFC 8259 §7) forbids unescaped control
//! characters there, but APISIX's lua-cjson decoder accepts them, so those
//! scripts work against APISIX. [`parse`] escapes control characters found
//! inside strings before handing the bytes to serde_json; everything else
//! stays strict.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Invalid;
use crate::error::join_path;

/// Why a body is not JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadJson(pub String);

/// Parses `bytes` as JSON, tolerating raw control characters inside strings.
pub fn parse(bytes: &[u8]) -> Result<Value, BadJson> {
    let escaped = escape_controls_in_strings(bytes);
    serde_json::from_slice(escaped.as_deref().unwrap_or(bytes)).map_err(|e| BadJson(e.to_string()))
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
