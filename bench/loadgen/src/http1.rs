//! A minimal kept-alive HTTP/1.1 client for the Admin API and the metrics
//! listener: one request at a time per connection, bodies framed by
//! `Content-Length` or chunked, every read bounded in size and time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Res;

/// Largest response head read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest response body read (a `/metrics` page with 10,000 certificates
/// is a few MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Longest one request may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One kept-alive connection.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    s: TcpStream,
    /// Bytes read past the previous response (none: no pipelining).
    buf: Vec<u8>,
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Res<Conn> {
        let s = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))??;
        s.set_nodelay(true)?;
        Ok(Conn { addr, s, buf: Vec::with_capacity(16 * 1024) })
    }

    /// Sends one request and reads its answer, within [`REQUEST_TIMEOUT`].
    pub async fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Res<Answer> {
        let addr = self.addr;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, headers, body))
            .await
            .map_err(|_| format!("{method} {path} to {addr}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Res<Answer> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.s.write_all(&bytes).await?;
        self.read_answer().await
    }

    async fn fill(&mut self) -> Res<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.s.read(&mut chunk).await?;
        if n == 0 {
            return Err(format!("{} closed the connection mid-answer", self.addr).into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_answer(&mut self) -> Res<Answer> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(format!("{}: response head over {MAX_HEAD_BYTES} bytes", self.addr).into());
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])?.to_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{}: bad status line {:?}", self.addr, head.lines().next()))?;
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        self.buf.drain(..head_end);
        let body = if let Some(len) = header("content-length") {
            let len: usize = len.parse()?;
            if len > MAX_BODY_BYTES {
                return Err(format!("{}: body of {len} bytes is over {MAX_BODY_BYTES}", self.addr).into());
            }
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            self.read_chunked().await?
        } else {
            return Err(format!("{}: an answer without Content-Length or chunked framing", self.addr).into());
        };
        Ok(Answer { status, body })
    }

    async fn read_chunked(&mut self) -> Res<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let eol = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.buf.len() > 1024 {
                    return Err(format!("{}: chunk size line over 1 KiB", self.addr).into());
                }
                self.fill().await?;
            };
            let line = std::str::from_utf8(&self.buf[..eol])?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)?;
            self.buf.drain(..eol + 2);
            if out.len() + size > MAX_BODY_BYTES {
                return Err(format!("{}: chunked body over {MAX_BODY_BYTES} bytes", self.addr).into());
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            out.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return Ok(out);
            }
        }
    }
}

/// A few kept-alive connections to one server, opened as needed.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    idle: tokio::sync::Mutex<Vec<Conn>>,
}

impl Pool {
    /// An empty pool for `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Pool { addr, idle: tokio::sync::Mutex::new(Vec::new()) }
    }

    /// One request on an idle connection, or a new one; the connection
    /// goes back to the pool only after a whole answer.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Res<Answer> {
        let conn = self.idle.lock().await.pop();
        let mut conn = match conn {
            Some(c) => c,
            None => Conn::connect(self.addr).await?,
        };
        let answer = conn.request(method, path, headers, body).await?;
        self.idle.lock().await.push(conn);
        Ok(answer)
    }
}
