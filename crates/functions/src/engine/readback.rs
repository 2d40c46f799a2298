//! Reading a function's return value back into Rust, under budgets.
//!
//! A return value is JavaScript the function controls: getters, Proxy traps
//! and shared strings can make a small heap look huge (an array of 60,000
//! references to one 1 MiB string is 60 GB once copied out). So every
//! string's JavaScript `length` is checked against what is left of a budget
//! *before* it is converted, and every array's length before it is walked:
//!
//! - the names and values of a request's query string, headers and cookies,
//!   plus its URI, share [`MAX_FIELD_BYTES`] (CloudFront's quota on a
//!   request's headers and query string, 20,480 bytes; "Quotas", "General
//!   quotas on distributions"); a response's headers and cookies share the
//!   same amount. A function may always return as much as it was given,
//!   so a large viewer request passed through unchanged is never refused.
//!   Each value also costs [`VALUE_OVERHEAD_BYTES`], which bounds how many
//!   values a map can hold (at most 5,120 in 20,480 bytes);
//! - a generated body is at most [`MAX_BODY_BYTES`] (CloudFront Functions'
//!   40 KB quota on a response body a function generates);
//! - the URI plus its query string is at most [`MAX_URI_BYTES`].
//!
//! Getters and traps run JavaScript, under the call's deadline and memory
//! limit: an interrupt or allocation failure met here is a timeout or an
//! out-of-memory, not an invalid return.
//!
//! The rules on names and values follow the AWS CloudFront Developer Guide,
//! "Restrictions on all edge functions": disallowed headers
//! ([`DISALLOWED_HEADERS`]) are not shown to functions and may not be added
//! by them; read-only headers ([`READ_ONLY_REQUEST_HEADERS`],
//! [`READ_ONLY_RESPONSE_HEADERS`]) may be read but not added, changed or
//! removed. Cookie names are RFC 6265 (section 4.1.1) tokens.

use rquickjs::{Ctx, Function, Object, Value};

use super::{CallState, RunError, RunErrorKind, classify, invalid};
use crate::event::{Body, FieldValue, Fields, Request, Response};

/// CloudFront's bound on a URI plus its query string (8,192 characters).
pub const MAX_URI_BYTES: usize = 8192;

/// The bytes a returned request's URI, query string, headers and cookies
/// (names and values) may hold together, and a returned response's headers
/// and cookies: CloudFront's 20,480-byte quota on a request's headers and
/// query string. A message larger than this on the way in may come back as
/// large.
pub const MAX_FIELD_BYTES: usize = 20_480;

/// What each value costs on top of its name and value (`: ` and CRLF).
pub const VALUE_OVERHEAD_BYTES: usize = 4;

/// CloudFront Functions' limit on the body of a response a function
/// generates: 40 KB ("Quotas on CloudFront Functions").
pub const MAX_BODY_BYTES: usize = 40 * 1024;

/// Headers CloudFront does not expose to edge functions and refuses from
/// them ("Restrictions on all edge functions", disallowed headers), plus the
/// prefixes in [`DISALLOWED_HEADER_PREFIXES`]. They are hidden from the
/// event and passed through unchanged; a function that returns one fails.
pub const DISALLOWED_HEADERS: [&str; 25] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "trailer",
    "upgrade",
    "x-accel-buffering",
    "x-accel-charset",
    "x-accel-limit-rate",
    "x-accel-redirect",
    "x-amzn-auth",
    "x-amzn-cf-billing",
    "x-amzn-cf-id",
    "x-amzn-cf-xff",
    "x-amzn-errortype",
    "x-amzn-fle-profile",
    "x-amzn-header-count",
    "x-amzn-header-order",
    "x-amzn-lambda-integration-tag",
    "x-amzn-requestid",
    "x-cache",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Prefixes of disallowed headers (`X-Amz-Cf-*`, `X-Edge-*`).
pub const DISALLOWED_HEADER_PREFIXES: [&str; 2] = ["x-amz-cf-", "x-edge-"];

/// Headers a viewer-request function may read but not add, change or remove.
pub const READ_ONLY_REQUEST_HEADERS: [&str; 4] = ["content-length", "host", "transfer-encoding", "via"];

/// Headers a viewer-response function may read but not add, change or
/// remove. A generated response may not set the framing headers
/// (`content-length`, `transfer-encoding`): the edge computes them.
pub const READ_ONLY_RESPONSE_HEADERS: [&str; 5] =
    ["content-encoding", "content-length", "transfer-encoding", "warning", "via"];

/// Framing headers a generated response may not set.
const FRAMING_HEADERS: [&str; 2] = ["content-length", "transfer-encoding"];

/// Longest `statusDescription` and body `encoding` read.
const MAX_SHORT_STRING_BYTES: usize = 256;

/// Whether CloudFront hides `name` (lower case) from functions.
pub fn is_disallowed_header(name: &str) -> bool {
    DISALLOWED_HEADERS.contains(&name) || DISALLOWED_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Which of a request's or response's maps is read (for names in errors and
/// the rules on names).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldsKind {
    Querystring,
    Headers,
    Cookies,
}

impl FieldsKind {
    fn name(self) -> &'static str {
        match self {
            FieldsKind::Querystring => "querystring",
            FieldsKind::Headers => "headers",
            FieldsKind::Cookies => "cookies",
        }
    }
}

/// What is being read back, for the header rules.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Message {
    /// A viewer-request function's request.
    Request,
    /// A viewer-response function's response.
    ViewerResponse,
    /// A response generated by a viewer-request function.
    Generated,
}

/// The bytes `fields` cost against [`MAX_FIELD_BYTES`].
pub(super) fn fields_cost(fields: &Fields) -> usize {
    fields
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| (name, v)))
        .map(|(name, v)| {
            name.len() + v.value.len() + v.attributes.as_ref().map_or(0, String::len) + VALUE_OVERHEAD_BYTES
        })
        .sum()
}

/// Reads a return value under a byte budget.
pub(super) struct Reader<'a, 'js> {
    ctx: &'a Ctx<'js>,
    state: &'a CallState,
    /// `(s) => s.length`, from the engine's own code.
    length: Function<'js>,
    /// Bytes left for names and values.
    left: usize,
}

impl<'a, 'js> Reader<'a, 'js> {
    pub(super) fn new(ctx: &'a Ctx<'js>, state: &'a CallState, length: Function<'js>, budget: usize) -> Self {
        Reader { ctx, state, length, left: budget }
    }

    /// An engine error met while reading `path`: a timeout or out-of-memory
    /// keeps its kind; anything else (a getter that throws) is an invalid
    /// return naming the field.
    fn engine(&self, e: rquickjs::Error, path: &dyn Fn() -> String) -> RunError {
        let error = classify(self.ctx, self.state, e);
        match error.kind {
            RunErrorKind::Exception { message } => invalid(format!("{}: {message}", path())),
            _ => error,
        }
    }

    fn get(&self, object: &Object<'js>, key: &str, path: &dyn Fn() -> String) -> Result<Value<'js>, RunError> {
        object.get(key).map_err(|e| self.engine(e, path))
    }

    /// A string of at most `max` bytes, checked by its JavaScript length
    /// before it is copied (a UTF-16 code unit is at least one UTF-8 byte).
    fn string_within(&self, value: &Value<'js>, max: usize, path: &dyn Fn() -> String) -> Result<String, RunError> {
        let text = if let Some(s) = value.as_string() {
            let units: f64 = self.length.call((value.clone(),)).map_err(|e| self.engine(e, path))?;
            if units > max as f64 {
                return Err(invalid(format!("{} is {units} characters, over the {max} bytes left", path())));
            }
            s.to_string().map_err(|e| self.engine(e, path))?
        } else if let Some(n) = value.as_number() {
            if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
        } else {
            return Err(invalid(format!("{} is {}, not a string", path(), value.type_name())));
        };
        if text.len() > max {
            return Err(invalid(format!("{} is {} bytes, over the {max} bytes left", path(), text.len())));
        }
        Ok(text)
    }

    /// A string charged to the shared budget.
    fn string(&mut self, value: &Value<'js>, path: &dyn Fn() -> String) -> Result<String, RunError> {
        let text = self.string_within(value, self.left, path)?;
        self.left -= text.len();
        Ok(text)
    }

    fn charge(&mut self, bytes: usize, path: &dyn Fn() -> String) -> Result<(), RunError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(invalid(format!(
                "{}: the returned fields are over their budget ({MAX_FIELD_BYTES} bytes, or what the event held)",
                path()
            ))),
        }
    }

    fn read_value(&mut self, entry: &Object<'js>, path: &dyn Fn() -> String) -> Result<FieldValue, RunError> {
        self.charge(VALUE_OVERHEAD_BYTES, path)?;
        let value = self.get(entry, "value", path)?;
        let value = self.string(&value, &|| format!("{}.value", path()))?;
        let attributes = self.get(entry, "attributes", path)?;
        let attributes = if attributes.is_undefined() || attributes.is_null() {
            None
        } else {
            Some(self.string(&attributes, &|| format!("{}.attributes", path()))?)
        };
        Ok(FieldValue { value, attributes })
    }

    /// Reads a returned `querystring`, `headers` or `cookies` map, applying
    /// CloudFront's rules for `multiValue` ("CloudFront Functions event
    /// structure", duplicate query strings, headers and cookies): a modified
    /// `multiValue` array wins; otherwise `value` replaces the first value
    /// and the array's other values stay; without an array, `value` is the
    /// only value.
    fn read_fields(
        &mut self,
        owner: &Object<'js>,
        kind: FieldsKind,
        prefix: &str,
        original: Option<&Fields>,
    ) -> Result<Fields, RunError> {
        let map_name = kind.name();
        let map_path = || format!("{prefix}.{map_name}");
        let map = self.get(owner, map_name, &map_path)?;
        if map.is_undefined() || map.is_null() {
            return Ok(Fields::new());
        }
        let Some(map) = map.as_object() else {
            return Err(invalid(format!("{} is {}, not an object", map_path(), map.type_name())));
        };
        let mut fields = Fields::new();
        for key in map.keys::<Value>() {
            let key = key.map_err(|e| self.engine(e, &map_path))?;
            let name = self.string(&key, &|| format!("a name in {}", map_path()))?;
            let path = || format!("{prefix}.{map_name}['{name}']");
            let entry: Value = map.get(key).map_err(|e| self.engine(e, &path))?;
            if entry.is_undefined() || entry.is_null() {
                continue;
            }
            match kind {
                FieldsKind::Headers => check_header_name(&name),
                FieldsKind::Cookies => check_cookie_name(&name),
                FieldsKind::Querystring => check_query_text(&name),
            }
            .map_err(|why| invalid(format!("{}: {why}", path())))?;
            let Some(entry) = entry.as_object() else {
                return Err(invalid(format!(
                    "{} is {}, not an object like {{value: \"...\"}}",
                    path(),
                    entry.type_name()
                )));
            };
            let first = self.read_value(entry, &path)?;
            let multi = self.get(entry, "multiValue", &path)?;
            let values = if multi.is_undefined() || multi.is_null() {
                vec![first]
            } else {
                let Some(array) = multi.as_array() else {
                    return Err(invalid(format!("{}.multiValue is {}, not an array", path(), multi.type_name())));
                };
                // Each value costs at least its overhead: a huge (or
                // sparse) array is refused before it is walked. The length
                // is read as a number (a sparse array's may be 2^32 - 1,
                // which `Array::len` cannot hold).
                let multi_path = || format!("{}.multiValue", path());
                let len = self.get(array.as_object(), "length", &multi_path)?;
                let len = match len.as_number() {
                    Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= self.left as f64 => n as usize,
                    _ => {
                        return Err(invalid(format!(
                            "{} has {} items, over the budget of returned fields",
                            multi_path(),
                            len.as_number().unwrap_or(f64::NAN)
                        )));
                    }
                };
                self.charge(len.saturating_mul(VALUE_OVERHEAD_BYTES), &multi_path)?;
                let mut listed = Vec::with_capacity(len);
                for i in 0..len {
                    let item_path = || format!("{}.multiValue[{i}]", path());
                    let item: Value = array.get(i).map_err(|e| self.engine(e, &item_path))?;
                    let Some(item) = item.as_object() else {
                        return Err(invalid(format!("{} is not an object", item_path())));
                    };
                    listed.push(self.read_value(item, &item_path)?);
                }
                let before = original.and_then(|o| o.get(&name));
                match before {
                    // Unchanged array: `value` replaces the first, the rest stay.
                    Some(before) if before.len() > 1 && before == listed.as_slice() => {
                        let mut values = listed;
                        values[0] = first;
                        values
                    }
                    _ if listed.is_empty() => vec![first],
                    _ => listed,
                }
            };
            for v in &values {
                match kind {
                    FieldsKind::Headers => check_header_value(&v.value),
                    FieldsKind::Cookies => check_cookie_value(v),
                    FieldsKind::Querystring => check_query_text(&v.value),
                }
                .map_err(|why| invalid(format!("{}: {why}", path())))?;
            }
            fields.set(name, values);
        }
        Ok(fields)
    }

    pub(super) fn read_request(&mut self, object: &Object<'js>, original: &Request) -> Result<Request, RunError> {
        let uri = self.get(object, "uri", &|| "request.uri".to_owned())?;
        let uri = self.string_within(&uri, MAX_URI_BYTES.min(self.left), &|| "request.uri".to_owned())?;
        self.left -= uri.len();
        if !uri.starts_with('/') {
            return Err(invalid(format!("request.uri {uri:?} does not start with '/'")));
        }
        if uri.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(invalid("request.uri holds a space or control character"));
        }
        let querystring = self.read_fields(object, FieldsKind::Querystring, "request", Some(&original.querystring))?;
        let with_query = uri.len() + query_len(&querystring);
        if with_query > MAX_URI_BYTES {
            return Err(invalid(format!(
                "request.uri with its query string is {with_query} bytes, over CloudFront's {MAX_URI_BYTES}"
            )));
        }
        let mut headers = self.read_fields(object, FieldsKind::Headers, "request", Some(&original.headers))?;
        check_header_rules(&headers, &original.headers, Message::Request)?;
        pass_disallowed(&mut headers, &original.headers);
        Ok(Request {
            // The method is read-only: changes are ignored.
            method: original.method.clone(),
            uri,
            querystring,
            headers,
            cookies: self.read_fields(object, FieldsKind::Cookies, "request", Some(&original.cookies))?,
        })
    }

    pub(super) fn read_response(
        &mut self,
        object: &Object<'js>,
        original: Option<&Response>,
    ) -> Result<Response, RunError> {
        let status = self.get(object, "statusCode", &|| "response.statusCode".to_owned())?;
        let status = match status.as_number() {
            // 1xx responses are interim: a function cannot send one.
            Some(n) if n.fract() == 0.0 && (200.0..=599.0).contains(&n) => n as u16,
            _ if status.is_undefined() => return Err(invalid("response.statusCode is missing")),
            _ => return Err(invalid("response.statusCode must be an integer from 200 to 599")),
        };
        let path = || "response.statusDescription".to_owned();
        let description = self.get(object, "statusDescription", &path)?;
        let status_description = if description.is_undefined() || description.is_null() {
            None
        } else {
            let d = self.string_within(&description, MAX_SHORT_STRING_BYTES, &path)?;
            check_header_value(&d).map_err(|why| invalid(format!("response.statusDescription: {why}")))?;
            Some(d)
        };
        let body = self.get(object, "body", &|| "response.body".to_owned())?;
        let body = self.read_body(&body)?;
        let (message, original_headers) = match original {
            Some(r) => (Message::ViewerResponse, Some(&r.headers)),
            None => (Message::Generated, None),
        };
        let mut headers = self.read_fields(object, FieldsKind::Headers, "response", original_headers)?;
        let empty = Fields::new();
        check_header_rules(&headers, original_headers.unwrap_or(&empty), message)?;
        pass_disallowed(&mut headers, original_headers.unwrap_or(&empty));
        Ok(Response {
            status_code: status,
            status_description,
            headers,
            cookies: self.read_fields(object, FieldsKind::Cookies, "response", original.map(|r| &r.cookies))?,
            body,
        })
    }

    fn read_body(&mut self, body: &Value<'js>) -> Result<Option<Body>, RunError> {
        if body.is_undefined() || body.is_null() {
            return Ok(None);
        }
        let path = || "response.body".to_owned();
        if body.is_string() {
            return self.string_within(body, MAX_BODY_BYTES, &path).map(|s| Some(Body::Text(s)));
        }
        let Some(object) = body.as_object() else {
            return Err(invalid(format!("response.body is {}, not a string or {{data, encoding}}", body.type_name())));
        };
        let encoding = self.get(object, "encoding", &|| "response.body.encoding".to_owned())?;
        let encoding = if encoding.is_undefined() {
            "text".to_owned()
        } else {
            self.string_within(&encoding, MAX_SHORT_STRING_BYTES, &|| "response.body.encoding".to_owned())?
        };
        let data = self.get(object, "data", &|| "response.body.data".to_owned())?;
        let data_path = || "response.body.data".to_owned();
        match encoding.as_str() {
            "text" => Ok(Some(Body::Text(self.string_within(&data, MAX_BODY_BYTES, &data_path)?))),
            "base64" => {
                use base64::Engine as _;
                let text = self.string_within(&data, MAX_BODY_BYTES.div_ceil(3) * 4 + 4, &data_path)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| invalid(format!("response.body.data is not valid base64: {e}")))?;
                if bytes.len() > MAX_BODY_BYTES {
                    return Err(invalid(format!(
                        "response.body is {} bytes, over CloudFront Functions' {MAX_BODY_BYTES}",
                        bytes.len()
                    )));
                }
                Ok(Some(Body::Binary(bytes)))
            }
            other => Err(invalid(format!("response.body.encoding {other:?} is neither \"text\" nor \"base64\""))),
        }
    }
}

/// The bytes of `?name=value&...` a query string adds to the URI.
fn query_len(query: &Fields) -> usize {
    let pairs: usize = query
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |v| name.len() + 1 + v.value.len()))
        .map(|pair| pair + 1)
        .sum();
    pairs
}

/// Disallowed headers may not be returned; read-only headers must come
/// back as they went in; a generated response may not set its framing.
fn check_header_rules(returned: &Fields, original: &Fields, message: Message) -> Result<(), RunError> {
    for (name, _) in returned.iter() {
        if is_disallowed_header(name) {
            return Err(invalid(format!(
                "header {name:?} is disallowed: CloudFront does not let edge functions set it"
            )));
        }
        if message == Message::Generated && FRAMING_HEADERS.contains(&name) {
            return Err(invalid(format!(
                "header {name:?} is computed by the edge: a generated response may not set it"
            )));
        }
    }
    let read_only: &[&str] = match message {
        Message::Request => &READ_ONLY_REQUEST_HEADERS,
        Message::ViewerResponse => &READ_ONLY_RESPONSE_HEADERS,
        Message::Generated => &[],
    };
    for name in read_only {
        if returned.get(name) != original.get(name) {
            return Err(invalid(format!("header {name:?} is read-only: a function may not add, change or remove it")));
        }
    }
    Ok(())
}

/// The disallowed headers of the original message, which the function never
/// saw, go on unchanged.
fn pass_disallowed(returned: &mut Fields, original: &Fields) {
    for (name, values) in original.iter() {
        if is_disallowed_header(name) {
            returned.set(name, values.to_vec());
        }
    }
}

/// Header names must be lower case ("Header names ... must be lowercase
/// when they're added by your function code") and HTTP tokens (RFC 9110,
/// section 5.1).
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a header name is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(format!("header names must be lower case (found {c:?})"));
    }
    match name.chars().find(|c| !is_tchar(*c)) {
        Some(c) => Err(format!("{c:?} is not allowed in a header name")),
        None => Ok(()),
    }
}

/// RFC 9110's `tchar` (section 5.6.2), which RFC 6265's cookie-name token
/// (section 4.1.1, through RFC 2616's `token`) also is.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_ctl(c: char) -> bool {
    c.is_ascii_control()
}

/// Header values may not hold control characters other than tab (RFC 9110, section 5.5).
pub(super) fn check_header_value(value: &str) -> Result<(), String> {
    match value.chars().find(|c| is_ctl(*c) && *c != '\t') {
        Some(c) => Err(format!("the value holds the control character {c:?}")),
        None => Ok(()),
    }
}

/// A cookie name is a token (RFC 6265, section 4.1.1).
fn check_cookie_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a cookie name is empty".to_owned());
    }
    match name.chars().find(|c| !is_tchar(*c)) {
        Some(c) => Err(format!("{c:?} is not allowed in a cookie name (RFC 6265: a token)")),
        None => Ok(()),
    }
}

/// A cookie value may not hold a control character or `;` (which would
/// start another cookie or attribute); its attributes may not hold a
/// control character (which would end the header).
fn check_cookie_value(value: &FieldValue) -> Result<(), String> {
    if let Some(c) = value.value.chars().find(|c| is_ctl(*c) || *c == ';') {
        return Err(format!("{c:?} is not allowed in a cookie value"));
    }
    if let Some(c) = value.attributes.as_deref().and_then(|a| a.chars().find(|c| is_ctl(*c))) {
        return Err(format!("the attributes hold the control character {c:?}"));
    }
    Ok(())
}

/// A query-string name or value may not hold a space, a control character
/// or `#` (which would end the query string).
fn check_query_text(text: &str) -> Result<(), String> {
    match text.chars().find(|c| is_ctl(*c) || *c == ' ' || *c == '#') {
        Some(c) => Err(format!("{c:?} is not allowed in a query string (percent-encode it)")),
        None => Ok(()),
    }
}
