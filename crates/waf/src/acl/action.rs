//! Rule actions and the default action (`RuleAction`, `DefaultAction`):
//! Allow and Count with their optional `CustomRequestHandling` (headers
//! inserted into the request the origin receives), Block with its optional
//! `CustomResponse` (AWS WAF developer guide, "Rule action", "Inserting
//! custom request headers for non-blocking actions" and "Sending custom
//! responses for Block actions").

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};

use super::{Action, BlockResponse, WafError, err};
use crate::json::{ActionJson, BlockJson, NameValueJson, RequestHandlingJson};

/// AWS's quota of custom request headers per web ACL (AWS WAF quotas).
const MAX_REQUEST_HEADERS: usize = 100;
/// AWS's quota of custom response headers per web ACL (AWS WAF quotas).
const MAX_RESPONSE_HEADERS: usize = 100;
/// Longest custom header name and value (`CustomHTTPHeader`: 1–64, 1–255).
const MAX_HEADER_NAME: usize = 64;
const MAX_HEADER_VALUE: usize = 255;
/// The prefix AWS gives every header it inserts into a request, "to avoid
/// confusion with the headers that are already in the request".
const INSERTED_PREFIX: &str = "x-amzn-waf-";

/// Headers a non-blocking action inserts into the request, names prefixed.
pub(super) type Inserted = Vec<(HeaderName, HeaderValue)>;

/// What a matching rule does.
#[derive(Debug, Clone)]
pub(super) enum RuleAction {
    Allow(Inserted),
    Block(BlockResponse),
    Count(Inserted),
}

/// Custom headers counted against AWS's per-web-ACL quotas while compiling.
#[derive(Debug, Default)]
pub(super) struct HeaderBudget {
    request: usize,
    response: usize,
}

/// A `CustomHTTPHeader`: AWS's name pattern `^[a-zA-Z0-9._$-]+$` (1–64) and
/// a value of 1–255 characters that HTTP can carry.
fn custom_header(path: &str, h: &NameValueJson, prefix: &str) -> Result<(HeaderName, HeaderValue), WafError> {
    let name_ok = !h.name.is_empty()
        && h.name.len() <= MAX_HEADER_NAME
        && h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._$-".contains(&b));
    if !name_ok {
        return Err(err(&format!("{path}.Name"), "1 to 64 letters, digits, . _ $ or -"));
    }
    let name = HeaderName::from_bytes(format!("{prefix}{}", h.name.to_ascii_lowercase()).as_bytes())
        .map_err(|e| err(&format!("{path}.Name"), format!("not a header name: {e}")))?;
    if h.value.is_empty() || h.value.len() > MAX_HEADER_VALUE {
        return Err(err(&format!("{path}.Value"), "1 to 255 characters"));
    }
    let value = HeaderValue::from_str(&h.value)
        .map_err(|_| err(&format!("{path}.Value"), "not a header value (visible ASCII, spaces and tabs)"))?;
    Ok((name, value))
}

/// `CustomRequestHandling.InsertHeaders`: no two of the same name (AWS).
fn inserted(path: &str, handling: &RequestHandlingJson, budget: &mut HeaderBudget) -> Result<Inserted, WafError> {
    let Some(c) = &handling.custom_request_handling else { return Ok(Vec::new()) };
    let path = format!("{path}.CustomRequestHandling.InsertHeaders");
    if c.insert_headers.is_empty() {
        return Err(err(&path, "list at least one header"));
    }
    let mut out: Inserted = Vec::with_capacity(c.insert_headers.len());
    for (i, h) in c.insert_headers.iter().enumerate() {
        let (name, value) = custom_header(&format!("{path}[{i}]"), h, INSERTED_PREFIX)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(err(&format!("{path}[{i}].Name"), format!("{:?} is listed twice", h.name)));
        }
        budget.request += 1;
        if budget.request > MAX_REQUEST_HEADERS {
            return Err(err(
                &format!("{path}[{i}]"),
                format!("at most {MAX_REQUEST_HEADERS} custom request headers per web ACL (AWS's quota)"),
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The one member an action sets, before its settings are compiled.
enum Chosen<'a> {
    Allow(&'a RequestHandlingJson),
    Count(&'a RequestHandlingJson),
    Block(&'a BlockJson),
}

/// Exactly one of `Allow`, `Block`, `Count` (Captcha and Challenge refused).
fn choose<'a>(path: &str, a: &'a ActionJson) -> Result<Chosen<'a>, WafError> {
    if a.captcha.is_some() || a.challenge.is_some() {
        return Err(err(path, "Captcha and Challenge actions are not supported by shardgate"));
    }
    let mut found = Vec::with_capacity(1);
    if let Some(allow) = &a.allow {
        found.push(Chosen::Allow(allow));
    }
    if let Some(count) = &a.count {
        found.push(Chosen::Count(count));
    }
    if let Some(block) = &a.block {
        found.push(Chosen::Block(block));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(err(path, "an action needs exactly one of Allow, Block, Count")),
        _ => Err(err(path, "set exactly one action")),
    }
}

/// A rule's `Action`.
pub(super) fn compile_action(
    path: &str,
    a: &ActionJson,
    bodies: &HashMap<&str, (&str, &str)>,
    budget: &mut HeaderBudget,
) -> Result<RuleAction, WafError> {
    Ok(match choose(path, a)? {
        Chosen::Allow(h) => RuleAction::Allow(inserted(&format!("{path}.Allow"), h, budget)?),
        Chosen::Count(h) => RuleAction::Count(inserted(&format!("{path}.Count"), h, budget)?),
        Chosen::Block(b) => RuleAction::Block(block(path, b, bodies, budget)?),
    })
}

/// The web ACL's `DefaultAction`: Allow (with the headers it inserts) or Block.
pub(super) fn compile_default(
    path: &str,
    a: &ActionJson,
    bodies: &HashMap<&str, (&str, &str)>,
    budget: &mut HeaderBudget,
) -> Result<(Action, Inserted), WafError> {
    match choose(path, a)? {
        Chosen::Allow(h) => Ok((Action::Allow, inserted(&format!("{path}.Allow"), h, budget)?)),
        Chosen::Block(b) => Ok((Action::Block(block(path, b, bodies, budget)?), Vec::new())),
        Chosen::Count(_) => Err(err(&format!("{path}.Count"), "a default action is Allow or Block")),
    }
}

/// Response header names a `CustomResponse` may not set, and why. AWS
/// refuses `content-type` ("You can specify any header name except for
/// content-type": the body's `ContentType` sets it); the others frame the
/// response or belong to one connection (RFC 9112 sections 6 and 9.6,
/// RFC 9110 section 7.6.1; RFC 9113 section 8.2.2 forbids them in HTTP/2),
/// so a copy sent as written would break the response shardgate writes.
const FORBIDDEN_RESPONSE_HEADERS: [(&str, &str); 8] = [
    ("content-type", "AWS does not allow it; the CustomResponseBodies entry's ContentType sets it"),
    ("content-length", "it frames the HTTP response, which shardgate writes itself"),
    ("transfer-encoding", "it frames the HTTP response, which shardgate writes itself"),
    ("connection", "it is a hop-by-hop header of one connection, not part of the response"),
    ("keep-alive", "it is a hop-by-hop header of one connection, not part of the response"),
    ("te", "it is a hop-by-hop header of one connection, not part of the response"),
    ("trailer", "it announces trailer fields, which a block response does not send"),
    ("upgrade", "it is a hop-by-hop header of one connection, not part of the response"),
];

/// `Block` with its optional `CustomResponse`.
fn block(
    path: &str,
    b: &BlockJson,
    bodies: &HashMap<&str, (&str, &str)>,
    budget: &mut HeaderBudget,
) -> Result<BlockResponse, WafError> {
    let mut resp = BlockResponse::default_403();
    let Some(c) = &b.custom_response else { return Ok(resp) };
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
        let hp = format!("{cp}.ResponseHeaders[{i}]");
        // Sent as written: only headers inserted into a request get
        // AWS's x-amzn-waf- prefix (a 302 needs its own `Location`).
        let (name, value) = custom_header(&hp, h, "")?;
        if let Some((_, why)) = FORBIDDEN_RESPONSE_HEADERS.iter().find(|(n, _)| *n == name.as_str()) {
            return Err(err(&format!("{hp}.Name"), format!("{:?} cannot be a custom response header: {why}", h.name)));
        }
        budget.response += 1;
        if budget.response > MAX_RESPONSE_HEADERS {
            return Err(err(
                &hp,
                format!("at most {MAX_RESPONSE_HEADERS} custom response headers per web ACL (AWS's quota)"),
            ));
        }
        resp.headers.push((name, value));
    }
    Ok(resp)
}
