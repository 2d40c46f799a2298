//! A small client of a running gateway's Admin API, for `export`, `diff`,
//! `apply` and `cache warm`: hyper's HTTP/1.1 client over one keep-alive connection
//! (opened again when the server has closed it), the key in `X-API-KEY`.
//!
//! Every request, connecting included, is bounded by one timeout, and every
//! answer by [`MAX_RESPONSE_BYTES`]. Errors name the method, the URL and
//! what the Admin API said (`error_msg`, and APISIX's `description` on a
//! 401), never the key.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shardgate_model::{ResourceId, ResourceKind};

/// Where the Admin API is when `--admin-url` and `SHARDGATE_ADMIN_URL` are
/// not given: the gateway's default `admin.listen`.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9180";
/// The default bound on one request, connecting included, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Largest answer read, in bytes: a listing of one kind comes in one
/// answer, so this bounds the size of one kind's resources together.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Longest piece of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 200;

/// A failed Admin API request.
#[derive(Debug)]
pub struct RequestError {
    /// The method.
    pub method: Method,
    /// The full URL (query included; it never holds the key).
    pub url: String,
    /// The answer's status, when there was one.
    pub status: Option<StatusCode>,
    /// What went wrong: the Admin API's `error_msg`, or the transport error.
    pub message: String,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} {}: {} {}", self.method, self.url, s.as_u16(), self.message),
            None => write!(f, "{} {}: {}", self.method, self.url, self.message),
        }
    }
}

impl std::error::Error for RequestError {}

/// A client of one gateway's Admin API.
pub struct AdminClient {
    /// `host:port`, to connect to and for the `Host` header.
    authority: String,
    /// `http://host:port` and any path before `/apisix/admin`, for messages.
    base: String,
    /// The path before `/apisix/admin` (empty, or `/prefix` behind a proxy).
    base_path: String,
    key: String,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl AdminClient {
    /// A client of the Admin API at `url` (`http://host:port`, optionally
    /// with a path prefix; a trailing `/apisix/admin` is accepted too).
    pub fn new(url: &str, key: String, timeout: Duration) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--admin-url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "--admin-url {url}: https is not supported; the Admin API serves plain HTTP (keep it on loopback or reach it through an SSH tunnel)"
                ));
            }
            _ => return Err(format!("--admin-url {url:?} must start with http://")),
        }
        let host = uri.host().ok_or_else(|| format!("--admin-url {url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri.path().trim_end_matches('/');
        let base_path = path.strip_suffix("/apisix/admin").unwrap_or(path).to_owned();
        if timeout.is_zero() {
            return Err("--timeout must be greater than 0".into());
        }
        Ok(AdminClient {
            base: format!("http://{authority}{base_path}"),
            authority,
            base_path,
            key,
            timeout,
            conn: None,
        })
    }

    /// The URL of `path` (which starts with `/apisix/admin`), for messages.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every resource of `kind`: `(id, value)` in the Admin API's order.
    /// With `secrets`, SSL objects come with their private keys
    /// (`?include_secrets=true`, the admin key only).
    pub async fn list(&mut self, kind: ResourceKind, secrets: bool) -> Result<Vec<(ResourceId, Value)>, RequestError> {
        let path = if secrets {
            format!("/apisix/admin/{}?include_secrets=true", kind.plural())
        } else {
            format!("/apisix/admin/{}", kind.plural())
        };
        let (status, doc) = self.call(Method::GET, &path, None).await?;
        let bad =
            |message: String| RequestError { method: Method::GET, url: self.url(&path), status: Some(status), message };
        let list = doc
            .get("list")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("the answer has no \"list\"; is this a shardgate Admin API?".into()))?;
        let mut out = Vec::with_capacity(list.len());
        for entry in list {
            let key = entry.get("key").and_then(Value::as_str).unwrap_or_default();
            let id = key
                .rsplit('/')
                .next()
                .and_then(|id| ResourceId::parse(id).ok())
                .ok_or_else(|| bad(format!("an entry has no usable key ({key:?})")))?;
            let value = entry.get("value").cloned().ok_or_else(|| bad(format!("entry {key} has no value")))?;
            out.push((id, value));
        }
        Ok(out)
    }

    /// `PUT /apisix/admin/<kind>/<id>` with `value`; the status (201
    /// created, 200 replaced).
    pub async fn put(
        &mut self,
        kind: ResourceKind,
        id: &ResourceId,
        value: &Value,
    ) -> Result<StatusCode, RequestError> {
        let path = format!("/apisix/admin/{}/{id}", kind.plural());
        let body = serde_json::to_vec(value).map_err(|e| RequestError {
            method: Method::PUT,
            url: self.url(&path),
            status: None,
            message: format!("encoding the body: {e}"),
        })?;
        Ok(self.send(Method::PUT, &path, Some(body)).await?.0)
    }

    /// `DELETE /apisix/admin/<kind>/<id>`.
    pub async fn delete(&mut self, kind: ResourceKind, id: &ResourceId) -> Result<(), RequestError> {
        let path = format!("/apisix/admin/{}/{id}", kind.plural());
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    /// Any request: `method` on `path` (which starts with `/apisix/admin`)
    /// with `body` as JSON; the status and the JSON answer of a 2xx. A
    /// status other than 2xx is an error carrying the Admin API's message
    /// ([`RequestError::status`] tells which).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), RequestError> {
        let url = self.url(path);
        let fail = |status: Option<StatusCode>, message: String| RequestError {
            method: method.clone(),
            url: url.clone(),
            status,
            message,
        };
        let body =
            body.map(serde_json::to_vec).transpose().map_err(|e| fail(None, format!("encoding the body: {e}")))?;
        let (status, bytes) = self.send(method.clone(), path, body).await?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(Some(status), format!("the answer is not JSON ({e}); is this a shardgate Admin API?")))?;
        Ok((status, value))
    }

    /// Sends one request within the timeout; a status other than 2xx is an
    /// error carrying the Admin API's message.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), RequestError> {
        let url = self.url(path);
        let timeout = self.timeout;
        let fail = |status: Option<StatusCode>, message: String| RequestError {
            method: method.clone(),
            url: url.clone(),
            status,
            message,
        };
        let result = tokio::time::timeout(timeout, self.exchange(&method, path, body.map(Bytes::from))).await;
        let (status, bytes) = match result {
            Err(_) => {
                // The connection may still carry the unfinished exchange:
                // the next request opens another.
                self.conn = None;
                return Err(fail(None, format!("no answer within {timeout:?}")));
            }
            Ok(Err(message)) => return Err(fail(None, message)),
            Ok(Ok(answer)) => answer,
        };
        if status.is_success() {
            return Ok((status, bytes));
        }
        Err(fail(Some(status), error_message(&bytes)))
    }

    /// One request and its whole answer. A request that could not be sent
    /// on a kept-alive connection (the server closed it meanwhile) is sent
    /// again on a new one; a request that was sent is never repeated.
    async fn exchange(
        &mut self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), String> {
        let full_path = format!("{}{path}", self.base_path);
        let mut request = Some(self.request(method, &full_path, body)?);
        for _ in 0..2 {
            let reused = self.conn.is_some();
            let sender = match &mut self.conn {
                Some(s) => s,
                None => self.conn.insert(self.connect().await?),
            };
            if sender.ready().await.is_err() {
                self.conn = None;
                if reused {
                    continue;
                }
                return Err(format!("the connection to {} closed before the request was sent", self.authority));
            }
            let Some(req) = request.take() else { break };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                        .collect()
                        .await
                        .map_err(|e| {
                            self.conn = None;
                            if e.is::<http_body_util::LengthLimitError>() {
                                format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")
                            } else {
                                format!("reading the answer: {e}")
                            }
                        })?
                        .to_bytes();
                    return Ok((status, bytes));
                }
                Err(mut e) => {
                    self.conn = None;
                    match e.take_message() {
                        Some(req) if reused => request = Some(req),
                        _ => return Err(format!("sending the request: {}", e.error())),
                    }
                }
            }
        }
        Err(format!("the connection to {} kept closing before the request was sent", self.authority))
    }

    fn request(&self, method: &Method, path: &str, body: Option<Bytes>) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.authority)
            .header("x-api-key", &self.key);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        builder.body(Full::new(body.unwrap_or_default())).map_err(|e| format!("building the request: {e}"))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| {
            format!("cannot connect to {}: {e} (is the gateway running? see --admin-url)", self.authority)
        })?;
        // Small requests, one at a time: do not wait for more to send.
        stream.set_nodelay(true).map_err(|e| format!("connection to {}: {e}", self.authority))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.authority))?;
        tokio::spawn(async move {
            // The next request sees a closed connection and opens another.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Admin API connection ended");
            }
        });
        Ok(sender)
    }
}

/// What an error answer says: `error_msg` (with APISIX's `description`,
/// which says why a key was refused), else the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(msg) = v.get("error_msg").and_then(Value::as_str)
    {
        return match v.get("description").and_then(Value::as_str) {
            Some(d) => format!("{msg} ({d})"),
            None => msg.to_owned(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no error message".into();
    }
    let cut: String = text.chars().take(MAX_QUOTED_BODY).collect();
    if cut.len() < text.len() { format!("{cut}...") } else { cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_an_optional_prefix() {
        let key = || "k".to_owned();
        let t = Duration::from_secs(1);
        let c = AdminClient::new("http://127.0.0.1:9180", key(), t).expect("plain");
        assert_eq!(c.url("/apisix/admin/ssls"), "http://127.0.0.1:9180/apisix/admin/ssls");
        let c = AdminClient::new("http://127.0.0.1:9180/apisix/admin/", key(), t).expect("with the admin path");
        assert_eq!(c.url("/apisix/admin/ssls"), "http://127.0.0.1:9180/apisix/admin/ssls");
        let c = AdminClient::new("http://gw.internal/edge", key(), t).expect("behind a proxy");
        assert_eq!(
            (c.authority.as_str(), c.url("/apisix/admin/ssls").as_str()),
            ("gw.internal:80", "http://gw.internal:80/edge/apisix/admin/ssls")
        );
        let c = AdminClient::new("http://[::1]:9180", key(), t).expect("ipv6");
        assert_eq!(c.authority, "[::1]:9180");
        for (bad, why) in [
            ("https://127.0.0.1:9180", "https is not supported"),
            ("127.0.0.1:9180", "http://"),
            ("http://", "not a URL"),
        ] {
            let e = AdminClient::new(bad, key(), t).err().unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(AdminClient::new("http://127.0.0.1:1", key(), Duration::ZERO).is_err());
    }

    #[test]
    fn error_messages_quote_the_admin_api() {
        assert_eq!(
            error_message(br#"{"error_msg":"failed to check token","description":"wrong apikey"}"#),
            "failed to check token (wrong apikey)"
        );
        assert_eq!(
            error_message(br#"{"error_msg":"invalid configuration: nodes: x"}"#),
            "invalid configuration: nodes: x"
        );
        assert_eq!(error_message(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert_eq!(error_message(b""), "no error message");
        assert!(error_message("x".repeat(1000).as_bytes()).ends_with("..."));
    }
}
