//! Resource ids as APISIX defines them (`id_schema` in `apisix/schema_def.lua`):
//! a string of 1–64 characters from `[a-zA-Z0-9-_.]`, or an integer ≥ 1, which
//! is kept as its decimal string.
//!
//! One departure: the ids `.` and `..` match APISIX's pattern but are refused.
//! In a URL they are dot-segments that clients and proxies remove (RFC 3986
//! §5.2.4: curl turns `/apisix/admin/upstreams/..` into `/apisix/admin/`), so
//! such a resource could be created by one client and never be reached again
//! by another.

use std::fmt;

use serde_json::Value;

use crate::Invalid;

/// A validated resource id. Ids order as strings, which is the order etcd
/// lists keys in and therefore APISIX's "config order".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(Box<str>);

/// Longest id APISIX accepts.
pub const MAX_ID_LEN: usize = 64;

impl ResourceId {
    /// Validates an id taken from a URL path or a string field.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(format!("id must be 1 to {MAX_ID_LEN} characters long"));
        }
        if s == "." || s == ".." {
            return Err(format!(
                "id {s:?} is not allowed: \".\" and \"..\" are URL dot-segments that clients remove (RFC 3986)"
            ));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(format!("id may only contain letters, digits, '-', '_' and '.', found {bad:?}"));
        }
        Ok(ResourceId(s.into()))
    }

    /// Validates an id given in a JSON body: a string or a positive integer.
    pub fn from_json(field: &str, v: &Value) -> Result<Self, Invalid> {
        match v {
            Value::String(s) => ResourceId::parse(s).map_err(|e| Invalid::new(field, e)),
            Value::Number(n) => match n.as_u64() {
                Some(n) if n >= 1 => Ok(ResourceId(n.to_string().into())),
                _ => Err(Invalid::new(field, "an integer id must be 1 or greater")),
            },
            other => {
                Err(Invalid::new(field, format!("wrong type: expected string or integer, got {}", json_type(other))))
            }
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The JSON type name of a value, as APISIX's schema errors say it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_follow_apisix_id_schema() {
        assert!(ResourceId::parse("gs-1.route_A").is_ok());
        assert!(ResourceId::parse("").is_err());
        assert!(ResourceId::parse(&"a".repeat(65)).is_err());
        assert!(ResourceId::parse("a/b").is_err());
        for dots in [".", ".."] {
            let e = ResourceId::parse(dots).unwrap_err();
            assert!(e.contains("dot-segments"), "{e}");
            assert!(ResourceId::from_json("id", &json!(dots)).is_err());
        }
        assert!(ResourceId::parse("...").is_ok(), "only the two dot-segments are refused");
        assert!(ResourceId::parse(".hidden").is_ok());
        assert_eq!(ResourceId::from_json("id", &json!(7)).map(|i| i.to_string()), Ok("7".into()));
        assert!(ResourceId::from_json("id", &json!(0)).is_err());
        assert!(ResourceId::from_json("id", &json!(true)).is_err());
    }
}
