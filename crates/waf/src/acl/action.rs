//! Rule actions and the default action (`RuleAction`, `DefaultAction`):
//! Allow, Block with its optional `CustomResponse`, Count (AWS WAF developer
//! guide, "Rule action" and "Customized web requests and responses").

use std::collections::HashMap;

use super::{BlockResponse, WafError, err};
use crate::json::ActionJson;

/// What a matching rule does.
#[derive(Debug, Clone)]
pub(super) enum RuleAction {
    Allow,
    Block(BlockResponse),
    Count,
}

pub(super) fn compile_action(
    path: &str,
    a: &ActionJson,
    bodies: &HashMap<&str, (&str, &str)>,
    allow_count: bool,
) -> Result<RuleAction, WafError> {
    let mut found = Vec::new();
    if a.allow.is_some() {
        found.push(RuleAction::Allow);
    }
    if a.count.is_some() {
        if !allow_count {
            return Err(err(&format!("{path}.Count"), "a default action is Allow or Block"));
        }
        found.push(RuleAction::Count);
    }
    if let Some(b) = &a.block {
        let mut resp = BlockResponse::default_403();
        if let Some(c) = &b.custom_response {
            let cp = format!("{path}.Block.CustomResponse");
            if !(200..=599).contains(&c.response_code) {
                return Err(err(&format!("{cp}.ResponseCode"), "must be 200 to 599"));
            }
            resp.status = c.response_code;
            if let Some(key) = &c.custom_response_body_key {
                let (ct, body) = bodies.get(key.as_str()).ok_or_else(|| {
                    err(&format!("{cp}.CustomResponseBodyKey"), format!("no CustomResponseBodies entry named {key:?}"))
                })?;
                resp.body = Some(((*ct).to_owned(), (*body).to_owned()));
            }
            for (i, h) in c.response_headers.iter().flatten().enumerate() {
                let ok = !h.name.is_empty() && h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(err(&format!("{cp}.ResponseHeaders[{i}].Name"), "not a header name"));
                }
                // AWS prefixes custom header names with x-amzn-waf-.
                resp.headers.push((format!("x-amzn-waf-{}", h.name.to_ascii_lowercase()), h.value.clone()));
            }
        }
        found.push(RuleAction::Block(resp));
    }
    if a.captcha.is_some() || a.challenge.is_some() {
        return Err(err(path, "Captcha and Challenge actions are not supported by shardgate"));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(err(path, "an action needs exactly one of Allow, Block, Count")),
        _ => Err(err(path, "set exactly one action")),
    }
}
