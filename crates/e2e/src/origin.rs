//! A real HTTP/1.1 origin for edge tests: serves files from memory, counts
//! the requests each path receives, answers `If-None-Match` with 304, can
//! stream a body slowly (so concurrent misses overlap) and can be stopped
//! (so stale-if-error can be seen). It counts the connections it accepted
//! (so keep-alive reuse can be seen), records the method and body of the
//! last request to each path, and can serve HTTPS with a certificate from
//! a test CA ([`TestOrigin::start_tls`]).
//!
//! Every answer carries a `Date` written here (hyper's automatic one is
//! off), unless the file sets its own or is served without one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One file the origin serves.
#[derive(Debug, Clone, Default)]
pub struct OriginFile {
    /// The body.
    pub body: Bytes,
    /// `Cache-Control` to send, if any.
    pub cache_control: Option<String>,
    /// `ETag` to send, if any (quoted).
    pub etag: Option<String>,
    /// `Vary` to send, if any.
    pub vary: Option<String>,
    /// Stream the body in this many chunks with `chunk_delay` between them.
    pub chunks: usize,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// Other response headers, sent with every answer.
    pub headers: Vec<(String, String)>,
    /// Send no `Date` (RFC 9110 §6.6.1 lets an origin without a clock
    /// omit it).
    pub without_date: bool,
    /// The status to answer with (200 when unset).
    pub status: Option<u16>,
}

impl OriginFile {
    /// A file with this body and nothing else.
    pub fn new(body: impl Into<Bytes>) -> Self {
        OriginFile { body: body.into(), chunks: 1, ..OriginFile::default() }
    }

    /// Sets `Cache-Control`.
    pub fn cache_control(mut self, v: &str) -> Self {
        self.cache_control = Some(v.to_owned());
        self
    }

    /// Sets `ETag`.
    pub fn etag(mut self, v: &str) -> Self {
        self.etag = Some(v.to_owned());
        self
    }

    /// Sets `Vary` (one header name); the body then ends with `|<the request's value>`.
    pub fn vary(mut self, v: &str) -> Self {
        self.vary = Some(v.to_owned());
        self
    }

    /// Adds a response header (e.g. `Last-Modified`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends every answer (200 and 304) without `Date`.
    pub fn without_date(mut self) -> Self {
        self.without_date = true;
        self
    }

    /// Answers with `status` instead of 200 (a redirect, an error).
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Streams the body in `n` chunks, `delay` apart.
    pub fn slow(mut self, n: usize, delay: Duration) -> Self {
        self.chunks = n.max(1);
        self.chunk_delay = delay;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, OriginFile>,
    hits: HashMap<String, usize>,
    methods: HashMap<String, Vec<String>>,
    last_headers: HashMap<String, Vec<(String, String)>>,
    last_bodies: HashMap<String, (String, Bytes)>,
    connections: usize,
    /// The tasks serving open connections, aborted by [`TestOrigin::stop`].
    serving: Vec<tokio::task::AbortHandle>,
}

/// A running test origin; stops when dropped.
#[derive(Debug)]
pub struct TestOrigin {
    /// Its address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed its certificate ([`TestOrigin::start_tls`]).
    pub ca_pem: Option<String>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestOrigin {
    /// Starts an origin on a free loopback port.
    pub async fn start(files: Vec<(&str, OriginFile)>) -> TestOrigin {
        Self::start_with(files, None).await
    }

    /// Starts an HTTPS origin (HTTP/1.1 over TLS) whose certificate for
    /// `names` is signed by a fresh test CA, given in [`TestOrigin::ca_pem`].
    pub async fn start_tls(files: Vec<(&str, OriginFile)>, names: &[&str]) -> TestOrigin {
        use rustls::pki_types::PrivateKeyDer;
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "shardgate test origin CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = params.signed_by(&key, &issuer).expect("leaf");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).expect("key der"))
            .expect("certificate and key");
        let mut origin = Self::start_with(files, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await;
        origin.ca_pem = Some(ca.pem());
        origin
    }

    async fn start_with(files: Vec<(&str, OriginFile)>, tls: Option<tokio_rustls::TlsAcceptor>) -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(Mutex::new(State::default()));
        {
            let mut s = state.lock().expect("state");
            for (p, f) in files {
                s.files.insert(p.to_owned(), f);
            }
        }
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                st.lock().expect("state").connections += 1;
                let st = Arc::clone(&st);
                let tls = tls.clone();
                let registry = Arc::clone(&st);
                let handle = tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(Arc::clone(&st), req));
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // `serve` writes Date itself, so that a test can leave it out.
                    builder.http1().auto_date_header(false);
                    builder.http2().auto_date_header(false);
                    let served = match tls {
                        None => builder.serve_connection(TokioIo::new(sock), svc).await,
                        Some(acceptor) => match acceptor.accept(sock).await {
                            Ok(stream) => builder.serve_connection(TokioIo::new(stream), svc).await,
                            Err(e) => {
                                eprintln!("test origin: TLS handshake failed: {e}");
                                return;
                            }
                        },
                    };
                    if let Err(e) = served {
                        // A client (the gateway) that hangs up mid-response is
                        // part of some tests; shown only when a test fails.
                        eprintln!("test origin: connection ended: {e}");
                    }
                });
                let mut s = registry.lock().expect("state");
                s.serving.retain(|h| !h.is_finished());
                s.serving.push(handle.abort_handle());
            }
        });
        TestOrigin { addr, ca_pem: None, state, task }
    }

    /// Connections accepted so far (TLS handshakes included, failed or not).
    pub fn connections(&self) -> usize {
        self.state.lock().expect("state").connections
    }

    /// The method and body of the last request for `path` (path and query as sent).
    pub fn last_body(&self, path: &str) -> Option<(String, Bytes)> {
        self.state.lock().expect("state").last_bodies.get(path).cloned()
    }

    /// Replaces or adds a file.
    pub fn set(&self, path: &str, file: OriginFile) {
        self.state.lock().expect("state").files.insert(path.to_owned(), file);
    }

    /// Requests received for `path` (path and query as sent).
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().expect("state").hits.get(path).copied().unwrap_or(0)
    }

    /// The methods of the requests received for `path`, in order.
    pub fn methods(&self, path: &str) -> Vec<String> {
        self.state.lock().expect("state").methods.get(path).cloned().unwrap_or_default()
    }

    /// Requests received in all.
    pub fn total_hits(&self) -> usize {
        self.state.lock().expect("state").hits.values().sum()
    }

    /// The headers of the last request for `path`, lower-case names.
    pub fn last_headers(&self, path: &str) -> Vec<(String, String)> {
        self.state.lock().expect("state").last_headers.get(path).cloned().unwrap_or_default()
    }

    /// Goes down: stops accepting connections (the port then refuses) and
    /// closes the open ones (keep-alive connections the edge holds included).
    pub fn stop(&self) {
        self.task.abort();
        for h in self.state.lock().expect("state").serving.drain(..) {
            h.abort();
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

type OriginBody = http_body_util::Either<Full<Bytes>, Channel<Bytes, Infallible>>;

async fn serve(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            eprintln!("test origin: request body failed: {e}");
            Bytes::new()
        }
    };
    let req = Request::from_parts(parts, ());
    state.lock().expect("state").last_bodies.insert(target.clone(), (req.method().to_string(), body));
    let file = {
        let mut s = state.lock().expect("state");
        *s.hits.entry(target.clone()).or_default() += 1;
        s.methods.entry(target.clone()).or_default().push(req.method().as_str().to_owned());
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        s.last_headers.insert(target.clone(), headers);
        s.files.get(req.uri().path()).cloned()
    };
    let now = http_date(SystemTime::now());
    let Some(file) = file else {
        let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from_static(b"not found\n"))));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut().insert("date", now.parse().expect("an HTTP-date is a header value"));
        return Ok(r);
    };
    let status = file.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let mut resp = Response::builder().status(status);
    if !file.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        resp = resp.header("content-type", "application/octet-stream");
    }
    if let Some(cc) = &file.cache_control {
        resp = resp.header("cache-control", cc);
    }
    for (name, value) in &file.headers {
        resp = resp.header(name.as_str(), value.as_str());
    }
    if !file.without_date && !file.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
        resp = resp.header("date", &now);
    }
    if let Some(etag) = &file.etag {
        resp = resp.header("etag", etag);
        let inm = req.headers().get("if-none-match").and_then(|v| v.to_str().ok());
        if inm.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
            let r = resp
                .status(StatusCode::NOT_MODIFIED)
                .body(http_body_util::Either::Left(Full::new(Bytes::new())))
                .expect("304");
            return Ok(r);
        }
    }
    let mut file = file;
    if let Some(vary) = &file.vary {
        resp = resp.header("vary", vary);
        // The body tells which variant was served: `<body>|<value>`.
        let value = req.headers().get(vary.as_str()).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut body = file.body.to_vec();
        body.extend_from_slice(format!("|{}", value.unwrap_or_default()).as_bytes());
        file.body = Bytes::from(body);
    }
    resp = resp.header("content-length", file.body.len());
    if file.chunks <= 1 {
        return Ok(resp.body(http_body_util::Either::Left(Full::new(file.body))).expect("response"));
    }
    let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        let size = file.body.len().div_ceil(file.chunks);
        for (i, chunk) in file.body.chunks(size.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(file.chunk_delay).await;
            }
            if tx.send(Frame::data(file.body.slice_ref(chunk))).await.is_err() {
                return;
            }
        }
    });
    Ok(resp.body(http_body_util::Either::Right(body)).expect("response"))
}

/// `t` as an IMF-fixdate (RFC 9110 §5.6.7), written here rather than taken
/// from the gateway's crates so that the origin stays independent of them.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    // Walk the years, then the months: test dates are near now, so this is short.
    let (mut year, mut left) = (1970u64, days);
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    while left >= if leap(year) { 366 } else { 365 } {
        left -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while left >= lengths[month] {
        left -= lengths[month];
        month += 1;
    }
    let t = secs % 86_400;
    format!(
        "{}, {:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        left + 1,
        MONTHS[month],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// One HTTP/1.1 GET through the edge: `(status, headers, body)`.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Bytes) {
    request(addr, "GET", host, path, headers).await
}

/// One HTTP/1.1 request with `method` (no body) through the edge:
/// `(status, headers, body)`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Bytes) {
    let sock = tokio::net::TcpStream::connect(addr).await.expect("connect edge");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(sock)).await.expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::new())).expect("request")).await.expect("response");
    let status = resp.status().as_u16();
    let hs = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, hs, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(at(1_780_272_000 + 86_399), "Mon, 01 Jun 2026 23:59:59 GMT");
    }
}
