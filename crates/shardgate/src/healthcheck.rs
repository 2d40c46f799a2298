//! `shardgate healthcheck`: one bounded `GET` of `/readyz` (or another
//! path) on the gateway's metrics listener, for probes that have no HTTP
//! client of their own (the container image's `HEALTHCHECK` has no curl).
//!
//! The listener comes from the bootstrap file (`metrics.listen`; a wildcard
//! address is reached on loopback) or from `--url`. The whole check (name
//! resolution, connect, request, answer) is bounded by `--timeout`, and at
//! most [`MAX_BODY_BYTES`] of the answer are read. Exit 0 when the answer is
//! 200, 1 otherwise, with one line on stderr saying why (the status and the
//! first line of the body, or the connection error).
//!
//! [`get`] is also how `shardgate drain` reads `/status/drain` and
//! `shardgate reload` reads `/status/reload`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;

use crate::config::Config;

/// Default of `--path`: ready means config loaded, listeners bound, not draining.
pub const DEFAULT_PATH: &str = "/readyz";
/// Default of `--timeout`, in seconds: a probe that waits longer than this
/// for a local listener is looking at a gateway in trouble.
pub const DEFAULT_TIMEOUT_SECS: u64 = 2;
/// Largest answer read (`/readyz` answers a dozen bytes; `/status/drain`
/// and `/status/reload` a few hundred).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest reason printed from an answer's body.
const MAX_REASON_CHARS: usize = 200;

/// Where a check goes: an address to connect to, the `Host` it is asked
/// for, and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as given (an IP address, or a name resolved at check time).
    pub authority: String,
    /// The request path, starting with `/`.
    pub path: String,
}

impl Target {
    /// The metrics listener of `config`, at `path`.
    pub fn from_config(config: &Config, path: &str) -> Target {
        Target { authority: reachable(config.metrics.listen).to_string(), path: path.to_owned() }
    }

    /// `--url`: `http://host:port` with an optional path; without one (or
    /// with `/`), `path` applies.
    pub fn from_url(url: &str, path: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--url {url:?}: scheme {other:?} is not supported (the metrics listener speaks plain http)"
                ));
            }
            None => return Err(format!("--url {url:?}: give a URL such as http://127.0.0.1:9091")),
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("--url {url:?}: user information is not supported"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let authority = if host.starts_with('[') || !host.contains(':') {
            format!("{host}:{port}")
        } else {
            format!("[{host}]:{port}")
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => path.to_owned(),
            Some(p) => p.to_owned(),
        };
        Ok(Target { authority, path })
    }

    /// The URL, for messages.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Where a listener bound to `addr` is reached from this host: a wildcard
/// address on loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// An answer: its status and (at most [`MAX_BODY_BYTES`] of) its body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, as text (lossy).
    pub body: String,
}

/// One `GET`, all of it (resolution, connect, request, body) within `timeout`.
pub async fn get(target: &Target, timeout: Duration) -> Result<Answer, String> {
    let work = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.authority.as_str())
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", target.authority))?
            .collect();
        let mut last = format!("{} resolves to no address", target.authority);
        let mut stream = None;
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", target.authority))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "probe connection ended with an error");
            }
        });
        let request = Request::get(target.path.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::USER_AGENT, concat!("shardgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{}: {e}", target.url()))?;
        let response = send.send_request(request).await.map_err(|e| format!("{}: {e}", target.url()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", target.url()))?
            .to_bytes();
        Ok(Answer { status, body: String::from_utf8_lossy(&body).into_owned() })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer from {} within {}", target.url(), seconds(timeout)))?
}

/// Runs `shardgate healthcheck`; returns the exit status.
pub async fn healthcheck(config_path: Option<&Path>, url: Option<&str>, path: &str, timeout: Duration) -> ExitCode {
    if !path.starts_with('/') {
        eprintln!("shardgate: healthcheck: --path {path:?} must start with /");
        return ExitCode::FAILURE;
    }
    let target = match url {
        Some(url) => Target::from_url(url, path),
        // Only `metrics.listen` is needed: the file's other checks are
        // `validate`'s business, and a missing admin key is not this probe's.
        None => Config::load_unchecked(config_path)
            .map(|c| Target::from_config(&c, path))
            .map_err(|e| format!("invalid config: {e}")),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("shardgate: healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match get(&target, timeout).await {
        Ok(a) if a.status == StatusCode::OK => {
            println!("{} answered {}: {}", target.url(), a.status.as_u16(), reason(&a.body));
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("shardgate: healthcheck: {} answered {}: {}", target.url(), a.status, reason(&a.body));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("shardgate: healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first line of a body, printable and short.
fn reason(body: &str) -> String {
    let line = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("(empty body)").trim();
    let mut out: String = line.chars().map(|c| if c.is_control() { '?' } else { c }).take(MAX_REASON_CHARS).collect();
    if line.chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    out
}

/// `2s`, `1.5s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{}s", d.as_secs()) } else { format!("{s:.1}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_an_authority_and_a_path() {
        let t = Target::from_url("http://127.0.0.1:9091", "/readyz").expect("url");
        assert_eq!(t, Target { authority: "127.0.0.1:9091".into(), path: "/readyz".into() });
        let t = Target::from_url("http://localhost:9091/healthz", "/readyz").expect("url");
        assert_eq!(t, Target { authority: "localhost:9091".into(), path: "/healthz".into() });
        let t = Target::from_url("http://[::1]:9091/", "/readyz").expect("url");
        assert_eq!(t, Target { authority: "[::1]:9091".into(), path: "/readyz".into() });
        let t = Target::from_url("http://gateway", "/readyz").expect("url");
        assert_eq!(t.authority, "gateway:80");
        for (bad, why) in [
            ("https://127.0.0.1:9091", "not supported"),
            ("127.0.0.1:9091", "give a URL"),
            ("http://user@127.0.0.1:9091", "user information"),
            ("http://bad host", "--url"),
        ] {
            let e = Target::from_url(bad, "/readyz").expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0:9091".parse().expect("addr")), "127.0.0.1:9091".parse().expect("addr"));
        assert_eq!(reachable("[::]:9091".parse().expect("addr")), "[::1]:9091".parse().expect("addr"));
        assert_eq!(reachable("192.0.2.7:9091".parse().expect("addr")), "192.0.2.7:9091".parse().expect("addr"));
    }

    #[test]
    fn reasons_are_one_short_printable_line() {
        assert_eq!(reason("not ready: draining\n"), "not ready: draining");
        assert_eq!(reason(""), "(empty body)");
        assert_eq!(reason("a\u{1b}[31mb\nsecond"), "a?[31mb");
        let long = "x".repeat(500);
        assert_eq!(reason(&long).chars().count(), MAX_REASON_CHARS + 1);
    }
}
