//! The event a function receives and what it returns, in Rust.
//!
//! Shapes follow the AWS CloudFront Developer Guide, "CloudFront Functions
//! event structure": `{version: "1.0", context, viewer: {ip}, request,
//! response}`. Query-string parameters, headers and cookies are maps of
//! `name → {value, multiValue?}` in JavaScript; here a [`Fields`] keeps every
//! value of a name in order (the first one is JavaScript's `value`, all of
//! them its `multiValue` when there are several). Header names are lower
//! case. The JSON forms (serde) are CloudFront's, used by the Admin API's
//! `test` endpoint.

use std::collections::HashMap;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which event a function runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// Before the cache: the function may rewrite the request or answer it.
    #[serde(rename = "viewer-request")]
    ViewerRequest,
    /// Before the response goes to the viewer: the function may change it.
    #[serde(rename = "viewer-response")]
    ViewerResponse,
}

impl EventType {
    /// CloudFront's name (`viewer-request`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ViewerRequest => "viewer-request",
            EventType::ViewerResponse => "viewer-response",
        }
    }
}

/// One value of a query-string parameter, header or cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    /// The value.
    pub value: String,
    /// A response cookie's attributes (`Path=/; Secure`), as in `Set-Cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
}

impl FieldValue {
    /// A value without attributes.
    pub fn new(value: impl Into<String>) -> FieldValue {
        FieldValue { value: value.into(), attributes: None }
    }
}

/// Query-string parameters, headers or cookies: each name with its values
/// (at least one), in the order names first appeared. Lookups by name go
/// through an index, so building one from a viewer's many cookies or
/// headers costs O(n), not O(n²).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    entries: Vec<(String, Vec<FieldValue>)>,
    /// Each name's position in `entries`.
    index: HashMap<String, usize>,
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Fields {}

impl Fields {
    /// No fields.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Adds a value to `name` (after its other values).
    pub fn append(&mut self, name: impl Into<String>, value: FieldValue) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&at) => self.entries[at].1.push(value),
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, vec![value]));
            }
        }
    }

    /// Replaces every value of `name` (keeping its place); an empty `values`
    /// removes it.
    pub fn set(&mut self, name: impl Into<String>, values: Vec<FieldValue>) {
        let name = name.into();
        match (self.index.get(&name).copied(), values.is_empty()) {
            (Some(at), false) => self.entries[at].1 = values,
            (Some(at), true) => {
                self.entries.remove(at);
                self.index.remove(&name);
                for (_, i) in self.index.iter_mut() {
                    if *i > at {
                        *i -= 1;
                    }
                }
            }
            (None, false) => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, values));
            }
            (None, true) => {}
        }
    }

    /// The values of `name`.
    pub fn get(&self, name: &str) -> Option<&[FieldValue]> {
        self.index.get(name).map(|&at| self.entries[at].1.as_slice())
    }

    /// The first value of `name` (JavaScript's `value`).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.first()).map(|v| v.value.as_str())
    }

    /// Each name with its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[FieldValue])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Fields {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        let mut fields = Fields::new();
        for (n, v) in iter {
            fields.append(n, FieldValue::new(v));
        }
        fields
    }
}

/// CloudFront's JSON form of one name: `{value, attributes?, multiValue?}`.
#[derive(Serialize, Deserialize)]
struct FieldJson {
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attributes: Option<String>,
    #[serde(default, rename = "multiValue", skip_serializing_if = "Option::is_none")]
    multi_value: Option<Vec<FieldValue>>,
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (name, values) in &self.entries {
            let Some(first) = values.first() else { continue };
            let json = FieldJson {
                value: first.value.clone(),
                attributes: first.attributes.clone(),
                multi_value: (values.len() > 1).then(|| values.clone()),
            };
            map.serialize_entry(name, &json)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut fields = Fields::new();
        for (name, value) in map {
            let json: FieldJson =
                serde_json::from_value(value).map_err(|e| D::Error::custom(format_args!("`{name}`: {e}")))?;
            let values = match json.multi_value {
                Some(multi) if !multi.is_empty() => multi,
                _ => vec![FieldValue { value: json.value, attributes: json.attributes }],
            };
            fields.set(name, values);
        }
        Ok(fields)
    }
}

/// The viewer's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The method; a function cannot change it.
    pub method: String,
    /// The path, starting with `/`.
    pub uri: String,
    /// Query-string parameters.
    #[serde(default)]
    pub querystring: Fields,
    /// Headers other than `Cookie`, lower-case names.
    #[serde(default)]
    pub headers: Fields,
    /// Cookies of the `Cookie` headers.
    #[serde(default)]
    pub cookies: Fields,
}

/// A response body a function sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `{data, encoding: "text"}` or a plain string.
    Text(String),
    /// `{data, encoding: "base64"}`, decoded.
    Binary(Vec<u8>),
}

impl Body {
    /// The body's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Text(s) => s.as_bytes(),
            Body::Binary(b) => b,
        }
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut map = s.serialize_map(Some(2))?;
        match self {
            Body::Text(text) => {
                map.serialize_entry("data", text)?;
                map.serialize_entry("encoding", "text")?;
            }
            Body::Binary(bytes) => {
                map.serialize_entry("data", &base64::engine::general_purpose::STANDARD.encode(bytes))?;
                map.serialize_entry("encoding", "base64")?;
            }
        }
        map.end()
    }
}

/// A response: the one CloudFront is about to send (viewer-response), or one
/// a function generates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The status code.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The reason phrase; optional when a function generates a response.
    #[serde(rename = "statusDescription", default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    /// Headers other than `Set-Cookie`, lower-case names.
    #[serde(default)]
    pub headers: Fields,
    /// Cookies of the `Set-Cookie` headers (with their attributes).
    #[serde(default)]
    pub cookies: Fields,
    /// A body set by the function; `None` keeps the cached or origin body
    /// (a function cannot read it).
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub body: Option<Body>,
}

/// `event.context` (the event type comes from the call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContext {
    /// The distribution's domain name.
    #[serde(rename = "distributionDomainName", default)]
    pub distribution_domain_name: String,
    /// The distribution's id.
    #[serde(rename = "distributionId", default)]
    pub distribution_id: String,
    /// The request's id (the same for its response).
    #[serde(rename = "requestId", default)]
    pub request_id: String,
}

/// The event a function receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `event.context`.
    #[serde(default)]
    pub context: EventContext,
    /// `event.viewer.ip`: the viewer's address.
    #[serde(default)]
    pub viewer: Viewer,
    /// `event.request`.
    pub request: Request,
    /// `event.response` (viewer-response only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

/// `event.viewer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// The viewer's IP address.
    #[serde(default)]
    pub ip: String,
}

/// What a viewer-request function returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The request, possibly rewritten: go on with it.
    Request(Request),
    /// A generated response (a redirect, an error page): send it, skip the cache and origin.
    Response(Response),
}
