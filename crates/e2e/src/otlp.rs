//! [`OtlpReceiver`]: a small OTLP/HTTP trace receiver on loopback, standing
//! in for an OpenTelemetry Collector's `otlp` receiver (HTTP protocol). It
//! keeps every `ExportTraceServiceRequest` posted to it (JSON bodies, read
//! with serde_json), counts the TCP connections it accepted, and answers
//! 200 with an empty `ExportTraceServiceResponse`, or the statuses a test
//! queues, or nothing at all (`hang`) to play a stuck collector. Plain
//! HTTP, or HTTPS with a test certificate.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::TestCert;

/// Largest request body read (the OTLP specification's recommended limit).
const MAX_BODY: usize = 20 * 1024 * 1024;
/// How long a hanging receiver holds a request before answering 503.
const HANG_FOR: Duration = Duration::from_secs(30);

/// One export request as received.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
}

impl ExportRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One span of a received request, with its resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span's JSON object.
    pub span: Value,
    /// The resource's attributes (key to OTLP `AnyValue`).
    pub resource: HashMap<String, Value>,
}

fn attribute_map(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), kv["value"].clone())))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default()
}

fn any_str(v: &Value) -> Option<&str> {
    v["stringValue"].as_str()
}

fn any_int(v: &Value) -> Option<i64> {
    // proto3 JSON writes int64 as a string; numbers are accepted too.
    match &v["intValue"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

impl ReceivedSpan {
    /// `name`.
    pub fn name(&self) -> &str {
        self.span["name"].as_str().unwrap_or_default()
    }

    /// `traceId` (hex).
    pub fn trace_id(&self) -> &str {
        self.span["traceId"].as_str().unwrap_or_default()
    }

    /// `spanId` (hex).
    pub fn span_id(&self) -> &str {
        self.span["spanId"].as_str().unwrap_or_default()
    }

    /// `parentSpanId` (hex), if any.
    pub fn parent_span_id(&self) -> Option<&str> {
        self.span["parentSpanId"].as_str().filter(|s| !s.is_empty())
    }

    /// `kind` (2 server, 3 client).
    pub fn kind(&self) -> i64 {
        self.span["kind"].as_i64().unwrap_or_default()
    }

    /// `status.code` (0 unset, 2 error).
    pub fn status_code(&self) -> i64 {
        self.span["status"]["code"].as_i64().unwrap_or_default()
    }

    /// A string attribute.
    pub fn str(&self, key: &str) -> Option<String> {
        attribute_map(&self.span["attributes"]).get(key).and_then(any_str).map(str::to_owned)
    }

    /// An integer attribute.
    pub fn int(&self, key: &str) -> Option<i64> {
        attribute_map(&self.span["attributes"]).get(key).and_then(any_int)
    }

    /// Every attribute key.
    pub fn keys(&self) -> Vec<String> {
        attribute_map(&self.span["attributes"]).into_keys().collect()
    }

    /// A string resource attribute.
    pub fn resource_str(&self, key: &str) -> Option<String> {
        self.resource.get(key).and_then(any_str).map(str::to_owned)
    }

    /// Start and end, nanoseconds since the epoch.
    pub fn times(&self) -> (u64, u64) {
        let n = |k: &str| match &self.span[k] {
            Value::String(s) => s.parse().unwrap_or_default(),
            Value::Number(n) => n.as_u64().unwrap_or_default(),
            _ => 0,
        };
        (n("startTimeUnixNano"), n("endTimeUnixNano"))
    }
}

#[derive(Debug, Default)]
struct State {
    connections: usize,
    requests: Vec<ExportRequest>,
    /// Statuses to answer, in order; then 200.
    answers: VecDeque<u16>,
    /// `Retry-After` seconds on 429 and 503 answers.
    retry_after: Option<u64>,
    hang: bool,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind OTLP receiver");
        OtlpReceiver::serve(listener, None)
    }

    /// Starts a receiver on `addr` (a port a test reserved).
    pub async fn start_on(addr: SocketAddr) -> OtlpReceiver {
        let listener = TcpListener::bind(addr).await.expect("bind OTLP receiver");
        OtlpReceiver::serve(listener, None)
    }

    /// Starts an HTTPS receiver on a free loopback port, presenting `cert`.
    pub async fn start_tls(cert: &TestCert) -> OtlpReceiver {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).expect("test key");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
            .expect("certificate and key");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind OTLP receiver");
        OtlpReceiver::serve(listener, Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn serve(listener: TcpListener, tls: Option<TlsAcceptor>) -> OtlpReceiver {
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(Mutex::new(State::default()));
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                st.lock().expect("state").connections += 1;
                let st = Arc::clone(&st);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(sock, st).await,
                        Some(acceptor) => match acceptor.accept(sock).await {
                            Ok(stream) => serve_connection(stream, st).await,
                            Err(e) => eprintln!("OTLP receiver: TLS handshake failed: {e}"),
                        },
                    }
                });
            }
        });
        OtlpReceiver { addr, state, task }
    }

    /// The traces URL to configure (`tracing.otlp.endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("state").connections
    }

    /// Every export request so far.
    pub fn requests(&self) -> Vec<ExportRequest> {
        self.state.lock().expect("state").requests.clone()
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for r in self.requests() {
            for rs in r.body["resourceSpans"].as_array().into_iter().flatten() {
                let resource = attribute_map(&rs["resource"]["attributes"]);
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        out.push(ReceivedSpan { span: span.clone(), resource: resource.clone() });
                    }
                }
            }
        }
        out
    }

    /// Answers the next requests with these statuses, in order (then 200).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().expect("state").answers.extend(statuses);
    }

    /// Puts `Retry-After: <secs>` on the 429 and 503 answers that follow.
    pub fn retry_after(&self, secs: u64) {
        self.state.lock().expect("state").retry_after = Some(secs);
    }

    /// Holds every request unanswered (for 30 s, then 503), as a stuck collector.
    pub fn hang(&self, on: bool) {
        self.state.lock().expect("state").hang = on;
    }

    /// Stops accepting connections (the port then refuses).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection<I>(io: I, state: Arc<Mutex<State>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| receive(Arc::clone(&state), req));
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc).await {
        eprintln!("OTLP receiver: connection ended: {e}");
    }
}

async fn receive(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let answer = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert("content-type", "application/json".parse().expect("header value"));
        Ok(r)
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "{\"message\":\"too large\"}"),
    };
    let hang = state.lock().expect("state").hang;
    if hang {
        tokio::time::sleep(HANG_FOR).await;
        return answer(StatusCode::SERVICE_UNAVAILABLE, "{}");
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return answer(StatusCode::BAD_REQUEST, "{\"message\":\"not JSON\"}");
    };
    let (status, retry_after) = {
        let mut s = state.lock().expect("state");
        let status = s.answers.pop_front().unwrap_or(200);
        // What a collector refuses or cannot take is not received.
        if status == 200 {
            s.requests.push(ExportRequest { path, headers, body: json });
        }
        (status, s.retry_after.filter(|_| status == 429 || status == 503))
    };
    let mut r = answer(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "{}");
    if let (Ok(r), Some(secs)) = (r.as_mut(), retry_after) {
        r.headers_mut().insert("retry-after", secs.into());
    }
    r
}
