//! A small HTTP/1.1 client for the Admin API and the metrics listener: one
//! request per connection (`Connection: close`), enough to see exactly what
//! the gateway answers, headers and all.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Response {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the whole answer; panics on a socket error.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    try_http(addr, method, path, headers, body).await.unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
}

/// Sends one request and reads the whole answer.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut sock = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    sock.write_all(&bytes).await?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await?;
    parse(&raw).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete HTTP response"))
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Some(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The Admin API, with or without a key.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// The admin listener.
    pub addr: SocketAddr,
    /// The key sent as `X-API-KEY`.
    pub key: Option<String>,
}

impl AdminClient {
    /// Any request; `body` is sent as is.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut headers = Vec::new();
        if let Some(k) = &self.key {
            headers.push(("X-API-KEY", k.as_str()));
        }
        http(self.addr, method, path, &headers, body.map(str::as_bytes)).await
    }

    /// Any request, returning socket errors instead of panicking.
    pub async fn try_request(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Response> {
        let mut headers = Vec::new();
        if let Some(k) = &self.key {
            headers.push(("X-API-KEY", k.as_str()));
        }
        try_http(self.addr, method, path, &headers, body.map(str::as_bytes)).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, None).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request("PUT", path, Some(&body.to_string())).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string())).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None).await
    }

    /// PUT that must succeed (200 or 201); returns the JSON answer.
    pub async fn put_ok(&self, path: &str, body: &Value) -> Value {
        let r = self.put(path, body).await;
        assert!(r.status == 200 || r.status == 201, "PUT {path} failed: {} {}", r.status, r.body);
        r.json()
    }

    /// Every stored resource of a kind, as listed.
    pub async fn list(&self, kind: &str) -> Value {
        let r = self.get(&format!("/apisix/admin/{kind}")).await;
        assert_eq!(r.status, 200, "list {kind}: {}", r.body);
        r.json()
    }
}
