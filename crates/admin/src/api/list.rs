//! List filters of `GET /apisix/admin/<kind>`, as APISIX's v3 adapter
//! (`apisix/admin/v3_adapter.lua`) applies them before counting `total` and
//! paging:
//!
//! - `name=<regex>`: the resource's `name` matches the regular expression
//!   anywhere (APISIX: `ngx.re.find`, PCRE; here Rust's `regex` syntax,
//!   linear time, no look-around or backreferences). A resource without a
//!   name does not match; web ACLs, IP sets and regex pattern sets match on
//!   their AWS `Name`.
//! - `label=<key>`: the resource has that label key (APISIX matches keys
//!   only); `label=<key>:<value>` (shardgate) also asks for that value.
//! - `uri=<regex>`: the resource's `uri` or one of its `uris` matches (HTTP
//!   routes only in APISIX; no shardgate kind has a `uri`, so it matches
//!   nothing, as APISIX answers for its upstreams).
//! - `filter=<urlencoded key=value&...>` (APISIX 3.13): every named field
//!   equals its value. APISIX takes `service_id` and `upstream_id` on stream
//!   routes; shardgate also takes the reference fields of its own kinds. A
//!   field the kind does not have is refused with 400 naming the fields it
//!   takes (APISIX logs a warning and matches nothing).
//!
//! Every condition must hold.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_json::Value;
use shardgate_model::{ResourceKind, json as mjson};
use shardgate_store::KeyValue;

use crate::ApiError;

/// Longest `name` or `uri` pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Most compiled size of a `name` or `uri` pattern (the `regex` crate's
/// `size_limit`): patterns that expand past it are refused.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Most `key=value` pairs in one `filter`.
const MAX_FILTER_PAIRS: usize = 16;

/// The fields `filter=` may name for `kind`.
fn filter_fields(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::StreamRoutes => &["service_id", "upstream_id", "web_acl_id"],
        ResourceKind::Distributions => &["web_acl_id", "continuous_deployment_policy_id"],
        ResourceKind::CdPolicies => &["staging_distribution_id"],
        ResourceKind::Invalidations => &["distribution_id"],
        _ => &[],
    }
}

fn pattern(param: &str, text: &str) -> Result<Regex, ApiError> {
    if text.len() > MAX_PATTERN_BYTES {
        return Err(ApiError::BadRequest(format!(
            "invalid argument {param}: the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        )));
    }
    RegexBuilder::new(text)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| ApiError::BadRequest(format!("invalid argument {param}: not a regular expression: {e}")))
}

/// A JSON id (string or integer) as the text it stands for.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Keeps the resources of `kvs` that match every filter in `query`.
pub(super) fn filter(
    kind: ResourceKind,
    kvs: Vec<KeyValue>,
    query: &HashMap<String, String>,
) -> Result<Vec<KeyValue>, ApiError> {
    let name = query.get("name").map(|p| pattern("name", p)).transpose()?;
    let uri = query.get("uri").map(|p| pattern("uri", p)).transpose()?;
    let label = query.get("label");
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(raw) = query.get("filter") {
        fields = form_urlencoded::parse(raw.as_bytes()).into_owned().take(MAX_FILTER_PAIRS + 1).collect();
        if fields.len() > MAX_FILTER_PAIRS {
            return Err(ApiError::BadRequest(format!(
                "invalid argument filter: at most {MAX_FILTER_PAIRS} key=value pairs"
            )));
        }
        let allowed = filter_fields(kind);
        if let Some((field, _)) = fields.iter().find(|(f, _)| !allowed.contains(&f.as_str())) {
            let takes = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(ApiError::BadRequest(format!(
                "invalid argument filter: {kind} cannot be filtered by {field:?} (fields: {takes})"
            )));
        }
    }
    if name.is_none() && uri.is_none() && label.is_none() && fields.is_empty() {
        return Ok(kvs);
    }
    Ok(kvs
        .into_iter()
        .filter(|kv| {
            let Ok(value) = mjson::parse(&kv.value) else { return false };
            let text = |field: &str| value.get(field).and_then(Value::as_str);
            // AWS WAF's kinds spell it `Name`.
            if let Some(re) = &name
                && !text("name").or_else(|| text("Name")).is_some_and(|n| re.is_match(n))
            {
                return false;
            }
            if let Some(re) = &uri {
                let uris = value.get("uris").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
                if !text("uri").into_iter().chain(uris).any(|u| re.is_match(u)) {
                    return false;
                }
            }
            if let Some(label) = label {
                let labels = value.get("labels").and_then(Value::as_object);
                let by_key = labels.is_some_and(|l| l.contains_key(label.as_str()));
                let by_pair = label
                    .split_once(':')
                    .is_some_and(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v));
                if !(by_key || by_pair) {
                    return false;
                }
            }
            fields.iter().all(|(field, want)| value.get(field).and_then(id_text).as_deref() == Some(want))
        })
        .collect())
}
