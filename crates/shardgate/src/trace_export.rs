//! Export of finished spans to an OpenTelemetry collector over OTLP/HTTP,
//! JSON-encoded (`tracing.otlp`; the recording is `shardgate_core::trace`).
//!
//! ```text
//! data path: a span closes -> SpanLayer -> bounded queue (try_send: never
//!            waits; full -> dropped, counted)
//! export task: collect until tracing.batch_size spans, or
//!              tracing.export_interval after the batch's first span
//!   -> encode (ExportTraceServiceRequest, JSON) -> POST the endpoint on one
//!      kept-alive HTTP/1.1 connection (TLS for https://), all within
//!      tracing.otlp.timeout
//!   -> 2xx: exported (a partialSuccess's rejectedSpans count as failed)
//!      429, 502, 503, 504, or no answer: tried again after Retry-After (at
//!      most MAX_RETRY_DELAY) or 1 s then 2 s, with jitter; then failed
//!      any other status: failed at once (the OTLP specification: not retryable)
//!   -> shardgate_trace_spans_exported_total{result}; problems logged at
//!      most once per LOG_EVERY, with what was lost since
//! stop (after the drain): what is queued is sent once, within FLUSH_TIMEOUT
//! ```
//!
//! One request at a time: while the task waits on the collector, spans
//! queue, and beyond `tracing.max_queue` they are dropped
//! (`shardgate_trace_spans_dropped_total`), so a slow or absent collector
//! costs the data path nothing but those counts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use shardgate_core::Metrics;
use shardgate_core::trace::otlp::{self, Resource};
use shardgate_core::trace::{FinishedSpan, Sampler, SpanLayer, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::trace::{Endpoint, OtlpConfig, TracingConfig};

/// Attempts per batch: the first and two retries.
const MAX_ATTEMPTS: u32 = 3;
/// The first retry's delay; doubled for the next.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Largest collector answer read (a partial-success message or an error).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How often a continuing problem is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// The longest wait at stop for queued spans to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the drop count is looked at (logged at most once per [`LOG_EVERY`]).
const DROP_CHECK: Duration = Duration::from_secs(1);
/// Largest CA bundle read.
const MAX_CA_BUNDLE: u64 = 16 * 1024 * 1024;
/// Where the system's CA bundle is looked for, after `SSL_CERT_FILE`
/// (Debian and Ubuntu, Fedora and RHEL, Alpine and macOS).
const CA_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// `{result}` of `shardgate_trace_spans_exported_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum ExportResult {
    /// The collector took the span.
    success,
    /// The span was lost: the collector refused it, or could not be reached
    /// within the attempts.
    failure,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: ExportResult,
}

/// The export's metric families.
#[derive(Debug, Clone, Default)]
struct ExportMetrics {
    /// `shardgate_trace_spans_exported_total{result}`.
    exported: Family<ResultLabels, Counter>,
    /// `shardgate_trace_spans_dropped_total`: the queue was full.
    dropped: Counter,
}

impl ExportMetrics {
    fn count(&self, result: ExportResult, n: u64) {
        self.exported.get_or_create(&ResultLabels { result }).inc_by(n);
    }
}

/// The pieces `run` wires: the layer for the subscriber, and the task that
/// sends what it queues.
pub struct TraceExport {
    /// The subscriber layer (with `shardgate_core::trace::span_filter`).
    pub layer: SpanLayer,
    /// The export task, not yet started.
    pub task: ExportTask,
}

impl TraceExport {
    /// Builds the layer and the task from a checked `tracing:` section whose
    /// `otlp` is set. Fails when an `https://` endpoint has no CA to trust.
    pub fn new(tracing: &TracingConfig, otlp: &OtlpConfig) -> anyhow::Result<TraceExport> {
        let endpoint = otlp.endpoint()?;
        let headers = otlp.header_map()?;
        let tls = if endpoint.tls { Some(tls_config(otlp)?) } else { None };
        let metrics = ExportMetrics::default();
        let (tx, rx) = mpsc::channel(tracing.max_queue);
        let layer = SpanLayer::new(tx, metrics.dropped.clone());
        shardgate_core::trace::record_new_traces(Sampler::ratio(tracing.sample_ratio));
        let task = ExportTask {
            rx,
            client: Client { endpoint, headers, timeout: otlp.timeout.get(), tls, conn: None },
            resource: resource(tracing),
            batch_size: tracing.batch_size,
            interval: tracing.export_interval.get(),
            metrics,
            failures: Throttle::default(),
        };
        Ok(TraceExport { layer, task })
    }
}

/// The resource every span is sent under.
fn resource(tracing: &TracingConfig) -> Resource {
    let mut attributes = vec![
        ("service.name".to_owned(), Value::Str(tracing.service_name.trim().to_owned())),
        ("service.version".to_owned(), Value::Str(env!("CARGO_PKG_VERSION").to_owned())),
        (
            "service.instance.id".to_owned(),
            Value::Str(shardgate_core::trace::context::IdGenerator::default().trace_id().to_string()),
        ),
        ("telemetry.sdk.name".to_owned(), Value::Str("shardgate".to_owned())),
        ("telemetry.sdk.language".to_owned(), Value::Str("rust".to_owned())),
    ];
    if let Some(host) = host_name() {
        attributes.push(("host.name".to_owned(), Value::Str(host)));
    }
    for (k, v) in &tracing.resource {
        attributes.retain(|(key, _)| key != k);
        attributes.push((k.clone(), Value::Str(v.clone())));
    }
    Resource { attributes, scope_name: "shardgate", scope_version: env!("CARGO_PKG_VERSION") }
}

/// This host's name (Linux), bounded.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.len() <= 255).then(|| name.to_owned())
}

/// The TLS client configuration for an `https://` collector: `ca_file`, or
/// the system's bundle.
fn tls_config(otlp: &OtlpConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let candidates: Vec<std::path::PathBuf> = match &otlp.ca_file {
        Some(ca) => vec![ca.clone()],
        None => std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(CA_BUNDLES.iter().map(std::path::PathBuf::from))
            .collect(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for path in candidates {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() > MAX_CA_BUNDLE {
            anyhow::bail!("tracing.otlp: CA bundle {} is larger than {MAX_CA_BUNDLE} bytes", path.display());
        }
        let pem = std::fs::read(&path).with_context(|| format!("tracing.otlp: reading {}", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if added == 0 {
            anyhow::bail!("tracing.otlp: {} holds no PEM certificate", path.display());
        }
        break;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "tracing.otlp.endpoint is https:// but no CA bundle was found (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt, ...); set tracing.otlp.ca_file"
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tracing.otlp: TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Logs a continuing problem at most once per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Sends batches to the collector; see the module's flow.
pub struct ExportTask {
    rx: mpsc::Receiver<FinishedSpan>,
    client: Client,
    resource: Resource,
    batch_size: usize,
    interval: Duration,
    metrics: ExportMetrics,
    failures: Throttle,
}

/// The running export task.
pub struct ExportHandle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    drops: tokio::task::JoinHandle<()>,
    flush_timeout: Duration,
}

impl ExportTask {
    /// Registers `shardgate_trace_spans_exported_total{result}` and
    /// `shardgate_trace_spans_dropped_total` (both results present from the
    /// start, so a rate alert works at zero).
    pub fn register(&self, metrics: &Metrics) {
        for result in [ExportResult::success, ExportResult::failure] {
            self.metrics.exported.get_or_create_owned(&ResultLabels { result });
        }
        let m = self.metrics.clone();
        metrics.register(|r| {
            r.register(
                "trace_spans_exported",
                "Spans sent to the OpenTelemetry collector, by result (failure: refused, or not delivered within the attempts)",
                m.exported,
            );
            r.register(
                "trace_spans_dropped",
                "Spans dropped before export because the queue (tracing.max_queue) was full",
                m.dropped,
            );
        });
    }

    /// Starts the task on the current runtime.
    pub fn spawn(self) -> ExportHandle {
        let (stop, stopped) = oneshot::channel();
        let flush_timeout = self.client.timeout.min(FLUSH_TIMEOUT);
        tracing::info!(endpoint = %self.client.endpoint.display(), batch_size = self.batch_size, interval_ms = self.interval.as_millis() as u64, "exporting trace spans over OTLP/HTTP");
        // Apart from the export, which may be waiting on the collector.
        let drops = tokio::spawn(report_drops(self.metrics.dropped.clone(), self.rx.max_capacity()));
        ExportHandle { stop, task: tokio::spawn(self.run(stopped)), drops, flush_timeout }
    }

    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        // Whether `stopped` has fired (a finished oneshot is not polled again).
        let mut stop_seen = false;
        loop {
            // Set when the batch's first span arrives.
            let mut deadline: Option<Instant> = None;
            let mut stop = stop_seen;
            while !stop && batch.len() < self.batch_size {
                let room = self.batch_size - batch.len();
                // Only read once the first span has set the deadline.
                let due = deadline.unwrap_or_else(Instant::now);
                tokio::select! {
                    biased;
                    // A dropped handle stops the task too.
                    _ = &mut stopped, if !stop_seen => { stop_seen = true; stop = true; break; }
                    () = tokio::time::sleep_until(due), if deadline.is_some() => break,
                    n = self.rx.recv_many(&mut batch, room) => {
                        if n == 0 {
                            stop = true;
                            break;
                        }
                        // The batch's window starts when its first span arrives.
                        deadline.get_or_insert_with(|| Instant::now() + self.interval);
                    }
                }
            }
            if !batch.is_empty() {
                let attempts = if stop { 1 } else { MAX_ATTEMPTS };
                let watch = if stop_seen { None } else { Some(&mut stopped) };
                if self.export(&mut batch, attempts, watch).await {
                    stop_seen = true;
                    stop = true;
                }
            }
            if stop {
                // What is queued now goes once, no retries; the handle bounds the time.
                while let Ok(first) = self.rx.try_recv() {
                    batch.push(first);
                    while batch.len() < self.batch_size
                        && let Ok(s) = self.rx.try_recv()
                    {
                        batch.push(s);
                    }
                    self.export(&mut batch, 1, None).await;
                }
                return;
            }
        }
    }

    /// Sends `batch` (emptied), trying up to `attempts` times. A stop that
    /// arrives on `stopped` while waiting to retry ends the wait: one last
    /// attempt is made at once, and `true` says the stop was seen, so the
    /// flush at exit is not held up by a collector's `Retry-After`.
    async fn export(
        &mut self,
        batch: &mut Vec<FinishedSpan>,
        mut attempts: u32,
        mut stopped: Option<&mut oneshot::Receiver<()>>,
    ) -> bool {
        let mut stop_seen = false;
        let n = batch.len() as u64;
        let body = otlp::encode(&self.resource, batch);
        batch.clear();
        let body = match body {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                self.metrics.count(ExportResult::failure, n);
                tracing::error!(error = %e, spans = n, "cannot encode trace spans");
                return stop_seen;
            }
        };
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.client.send(body.clone()).await;
            let (retry_after, problem) = match outcome {
                Ok(Answer::Accepted { rejected, message }) => {
                    let rejected = rejected.min(n);
                    self.metrics.count(ExportResult::success, n - rejected);
                    if rejected > 0 {
                        self.metrics.count(ExportResult::failure, rejected);
                        if self.failures.ready() {
                            tracing::warn!(endpoint = %self.client.endpoint.display(), rejected, message = %message, "the collector rejected some trace spans");
                        }
                    }
                    return stop_seen;
                }
                Ok(Answer::Refused { status, message }) => {
                    self.metrics.count(ExportResult::failure, n);
                    if self.failures.ready() {
                        tracing::warn!(endpoint = %self.client.endpoint.display(), status = status.as_u16(), message = %message, spans = n, "the collector refused trace spans (not retried)");
                    }
                    return stop_seen;
                }
                Ok(Answer::Busy { status, retry_after }) => (retry_after, format!("answered {status}")),
                Err(e) => (None, e),
            };
            if attempt >= attempts {
                self.metrics.count(ExportResult::failure, n);
                if self.failures.ready() {
                    tracing::warn!(endpoint = %self.client.endpoint.display(), error = %problem, spans = n, attempts, "trace spans not exported");
                }
                return stop_seen;
            }
            let wait = retry_after.map_or_else(|| jittered(delay), |d| d.min(MAX_RETRY_DELAY));
            tracing::debug!(endpoint = %self.client.endpoint.display(), error = %problem, wait_ms = wait.as_millis() as u64, "trace export failed; trying again");
            match stopped.as_deref_mut() {
                Some(rx) => tokio::select! {
                    _ = rx => {
                        stop_seen = true;
                        stopped = None;
                        attempts = attempt + 1;
                    }
                    () = tokio::time::sleep(wait) => {}
                },
                None => tokio::time::sleep(wait).await,
            }
            delay = delay.saturating_mul(2);
        }
    }
}

/// Logs the spans dropped on a full queue: the first ones within
/// [`DROP_CHECK`], then at most once per [`LOG_EVERY`], with the count since
/// the last line. Runs until the handle stops it.
async fn report_drops(dropped: Counter, max_queue: usize) {
    let mut seen = 0;
    let mut throttle = Throttle::default();
    let mut tick = tokio::time::interval(DROP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = dropped.get();
        if now > seen && throttle.ready() {
            tracing::warn!(
                dropped = now - seen,
                max_queue,
                "trace spans dropped: the export queue was full (collector slow or unreachable; see tracing.max_queue)"
            );
            seen = now;
        }
    }
}

/// A collector's free text, for the log: at most 200 characters, printable
/// ASCII only (control characters and anything else become `?`), so it
/// cannot forge log lines.
fn printable(text: &str) -> String {
    text.chars().take(200).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// `d` plus up to half of it, at random, so instances do not retry in step.
fn jittered(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    let r = std::hash::RandomState::new().hash_one(std::time::SystemTime::now());
    d + d.mul_f64((r % 1000) as f64 / 2000.0)
}

impl ExportHandle {
    /// Sends what is queued and stops, within the flush bound.
    pub async fn shutdown(mut self) {
        self.drops.abort();
        if self.stop.send(()).is_err() {
            tracing::debug!("the trace export task had already stopped");
        }
        match tokio::time::timeout(self.flush_timeout, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export task failed"),
            Err(_) => {
                self.task.abort();
                tracing::warn!(
                    timeout_ms = self.flush_timeout.as_millis() as u64,
                    "trace spans still queued at exit were not all sent"
                );
            }
        }
    }
}

impl Endpoint {
    /// The URL without its query (which may hold a token), for logs.
    fn display(&self) -> String {
        let path = self.path_and_query.split_once('?').map_or(self.path_and_query.as_str(), |(p, _)| p);
        format!("{}://{}{}", if self.tls { "https" } else { "http" }, self.authority, path)
    }
}

/// What the collector said.
enum Answer {
    /// 2xx; `rejected` spans from a partial success.
    Accepted { rejected: u64, message: String },
    /// 429, 502, 503 or 504: try again.
    Busy { status: StatusCode, retry_after: Option<Duration> },
    /// Any other status: do not try again.
    Refused { status: StatusCode, message: String },
}

/// A byte stream to the collector, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One HTTP/1.1 connection to the collector, kept between exports and made
/// again when it closes.
struct Client {
    endpoint: Endpoint,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// One export request, within the timeout; `Err` says what failed.
    async fn send(&mut self, body: Bytes) -> Result<Answer, String> {
        match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }

    async fn exchange(&mut self, body: Bytes) -> Result<Answer, String> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut request = Request::post(self.endpoint.path_and_query.as_str())
            .header(header::HOST, self.endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("shardgate/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        self.conn = Some(sender);
        let status = parts.status;
        if status.is_success() {
            let (rejected, message) = partial_success(&bytes);
            return Ok(Answer::Accepted { rejected, message });
        }
        if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
            let retry_after = parts
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Ok(Answer::Busy { status, retry_after });
        }
        let message = printable(&String::from_utf8_lossy(&bytes[..bytes.len().min(200)]));
        Ok(Answer::Refused { status, message })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let e = &self.endpoint;
        let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| format!("connecting to {}:{}: {err}", e.host, e.port))?;
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set on the collector connection");
        }
        let io: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = ServerName::try_from(e.host.clone()).map_err(|err| format!("TLS name {}: {err}", e.host))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|err| format!("TLS with {}: {err}", e.host))?;
                Box::new(tls)
            }
        };
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|err| format!("HTTP: {err}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "collector connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// `partialSuccess.rejectedSpans` (a JSON number or, as proto3 writes an
/// int64, a string) and `errorMessage` of an answer; 0 when the body is
/// not that (empty, or binary protobuf).
fn partial_success(body: &[u8]) -> (u64, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return (0, String::new()) };
    let p = &v["partialSuccess"];
    let rejected = match &p["rejectedSpans"] {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let message = printable(p["errorMessage"].as_str().unwrap_or(""));
    (rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_reads_numbers_and_strings() {
        assert_eq!(
            partial_success(br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad"}}"#),
            (3, "bad".into())
        );
        assert_eq!(partial_success(br#"{"partialSuccess":{"rejectedSpans":2}}"#).0, 2);
        assert_eq!(partial_success(b"{}"), (0, String::new()));
        assert_eq!(partial_success(b""), (0, String::new()));
        assert_eq!(partial_success(b"\x0a\x00"), (0, String::new()));
    }

    #[test]
    fn collector_text_is_bounded_and_printable() {
        assert_eq!(printable("bad span\r\nlevel=ERROR forged"), "bad span??level=ERROR forged");
        assert_eq!(printable(&"é".repeat(300)).len(), 200);
    }

    #[test]
    fn jitter_adds_at_most_half() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(3), "{d:?}");
        }
    }

    #[test]
    fn the_resource_names_the_service_and_takes_extra_attributes() {
        let mut t = TracingConfig { service_name: "edge-eu".into(), ..TracingConfig::default() };
        t.resource.insert("deployment.environment".into(), "prod".into());
        t.resource.insert("host.name".into(), "edge-1".into());
        let r = resource(&t);
        let get = |k: &str| r.attributes.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("service.name"), Some(Value::Str("edge-eu".into())));
        assert_eq!(get("deployment.environment"), Some(Value::Str("prod".into())));
        assert_eq!(get("host.name"), Some(Value::Str("edge-1".into())), "configured wins");
        assert_eq!(r.attributes.iter().filter(|(k, _)| k == "host.name").count(), 1);
        assert!(get("service.instance.id").is_some());
    }
}
