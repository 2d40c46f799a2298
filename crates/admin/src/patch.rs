//! PATCH semantics of the APISIX Admin API (`apisix/admin/resource.lua`):
//! `PATCH /x/{id}` merges the body into the stored object (RFC 7386 JSON
//! merge patch: objects merge, `null` removes a field, anything else replaces,
//! arrays included); `PATCH /x/{id}/{sub/path}` replaces the value at that
//! path.
//!
//! [`merge`] recurses once per level of the patch, which `json::parse` has
//! bounded to 80 levels ([`shardgate_model::json::MAX_DEPTH`]); [`replace_at`] walks the path in a loop. The result
//! can nest deeper than either part (a deep value at a deep path), so the
//! caller checks it with `json::check_value_depth` before anything else
//! recurses over it.

use serde_json::Value;

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(obj) = target {
                for (k, v) in fields {
                    if v.is_null() {
                        obj.remove(&k);
                    } else {
                        merge(obj.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other,
    }
}

/// Replaces the value at `path` (`nodes`, `timeout/connect`, `snis/0`).
/// Every parent must exist; the last segment may be new in an object.
pub fn replace_at(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segments.split_last() else {
        return Err("empty sub path".into());
    };
    let mut cur = target;
    for seg in parents {
        cur = match cur {
            Value::Object(obj) => obj.get_mut(*seg).ok_or_else(|| format!("sub path {path:?}: no field {seg:?}"))?,
            Value::Array(arr) => {
                let i: usize = seg.parse().map_err(|_| format!("sub path {path:?}: {seg:?} is not an index"))?;
                arr.get_mut(i).ok_or_else(|| format!("sub path {path:?}: index {i} out of range"))?
            }
            _ => return Err(format!("sub path {path:?}: {seg:?} is not an object or array")),
        };
    }
    match cur {
        Value::Object(obj) => {
            obj.insert((*last).to_owned(), value);
            Ok(())
        }
        Value::Array(arr) => {
            let i: usize = last.parse().map_err(|_| format!("sub path {path:?}: {last:?} is not an index"))?;
            let slot = arr.get_mut(i).ok_or_else(|| format!("sub path {path:?}: index {i} out of range"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!("sub path {path:?}: the parent is not an object or array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut v = json!({"nodes": {"a:1": 1, "b:2": 1}, "type": "roundrobin", "desc": "x"});
        merge(&mut v, json!({"nodes": {"b:2": null, "c:3": 5}, "desc": null, "retries": 2}));
        assert_eq!(v, json!({"nodes": {"a:1": 1, "c:3": 5}, "type": "roundrobin", "retries": 2}));
        let mut v = json!({"snis": ["a.com", "b.com"]});
        merge(&mut v, json!({"snis": ["c.com"]}));
        assert_eq!(v, json!({"snis": ["c.com"]}), "arrays are replaced whole");
    }

    #[test]
    fn sub_path_replacement() {
        let mut v = json!({"timeout": {"connect": 1, "send": 2, "read": 3}, "snis": ["a.com"]});
        replace_at(&mut v, "timeout/connect", json!(5)).expect("nested");
        replace_at(&mut v, "snis/0", json!("b.com")).expect("index");
        replace_at(&mut v, "retries", json!(1)).expect("new leaf");
        assert_eq!(v, json!({"timeout": {"connect": 5, "send": 2, "read": 3}, "snis": ["b.com"], "retries": 1}));
        assert!(replace_at(&mut v, "nope/x", json!(1)).is_err());
        assert!(replace_at(&mut v, "snis/4", json!(1)).is_err());
    }
}
