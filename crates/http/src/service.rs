//! The request pipeline of the edge, one function per phase:
//!
//! ```text
//! viewer input (Host lines, path normalised in place; see key::check_viewer_input)
//!   -> host -> distribution -> web ACL -> variant (canary) -> behavior + cache policy
//!   -> rewrite (channel) -> cache key -> lookup
//!      fresh: serve | stale: serve within stale-while-revalidate, else revalidate
//!      in flight: wait for the leader | miss: fetch, store, stream to every waiter
//!   -> response (304 / 206 / 416 / 200, Age, X-Cache, variant header)
//!   -> shardgate_edge_responses_total; the access log line once the body
//!      has been sent or the viewer has gone (see access_log)
//! ```
//!
//! The snapshot is loaded once per request, so a config change never alters
//! a request in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use shardgate_cache::conditional::{RangeAnswer, if_range_holds, not_modified, range};
use shardgate_cache::{
    Admitted, Cache, CachePhase, Exchange, FillEnd, FillWriter, Leader, Lookup, Object, Outcome, Timing, TtlBounds,
};
use shardgate_model::CachePolicy;
use shardgate_snapshot::{CompiledAcl, EdgeDistribution, Snapshot, SnapshotHandle};
use shardgate_waf::{Action as WafAction, RequestView, Sample, Samples, TlsFingerprint};

use crate::access_log::{AccessLog, ErrorDetail, Facts, TlsSession};
use crate::body::{EdgeBody, FillBody};
use crate::canary::{self, Variant};
use crate::key;
use crate::metrics::{
    DistributionLabels, EdgeMetrics, Label, OriginLabels, RefusedLabels, RequestLabels, ResponseLabels, WafLabels,
};
use crate::origin::{self, OriginError, OriginRequest};

/// The response header naming the side that served a canary distribution.
pub const VARIANT_HEADER: &str = "x-shardgate-variant";
/// Default wait for an origin's response head (CloudFront's default origin response timeout).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a waiter whose variant did not fit retries before fetching alone.
const MAX_WAIT_ROUNDS: usize = 3;

/// What the edge shares across requests.
#[derive(Debug)]
pub struct EdgeService {
    /// The published configuration.
    pub snapshots: Arc<SnapshotHandle>,
    /// The memory tier.
    pub cache: Arc<Cache>,
    /// Metrics.
    pub metrics: EdgeMetrics,
    /// Recent requests each web ACL matched, for the Admin API.
    pub samples: Arc<Samples>,
    /// The country database, to put a country on samples.
    pub geo: Option<Arc<shardgate_waf::GeoDb>>,
    /// The targeted cache-control fields this cache obeys, in priority order
    /// (RFC 9213 §2.1; `edge.cache.targeted_cache_control`); empty: none.
    pub targeted_cache_control: Vec<HeaderName>,
    /// One line per request (`edge.access_log`).
    pub access_log: AccessLog,
}

/// Facts about the viewer's connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The viewer.
    pub client: SocketAddr,
    /// The edge's address.
    pub local: SocketAddr,
    /// JA3 and JA4 of the connection's ClientHello (TLS listeners), computed
    /// once per connection; `Copy`, so every request carries it without an
    /// allocation.
    pub tls: Option<TlsFingerprint>,
    /// The negotiated TLS version and cipher suite (TLS listeners), for
    /// the access log.
    pub tls_session: Option<TlsSession>,
}

/// One request's resolved context.
/// Cloned (cheaply: `Arc`s and short strings) when a fetch moves to a task of its own.
#[derive(Clone)]
struct Ctx {
    svc: Arc<EdgeService>,
    snapshot: Arc<Snapshot>,
    dist: Arc<EdgeDistribution>,
    variant: Variant,
    canary_cookie: Option<String>,
    behavior_label: Label,
    origin_name: String,
    policy: Arc<CachePolicy>,
    key: String,
    viewer_target: String,
    origin_target: String,
    /// The channel header's name, when the behavior rewrites by one.
    channel_header: Option<String>,
    /// Cookies in the key, forwarded to the origin.
    cookies: Vec<String>,
    /// The Host header for the origin.
    host: String,
    conn: ConnInfo,
    head_only: bool,
    req_headers: Arc<HeaderMap>,
    /// `x-amzn-waf-*` headers the web ACL inserts into the origin request
    /// (`CustomRequestHandling`); usually empty.
    waf_headers: Vec<(HeaderName, HeaderValue)>,
    /// The request's span (disabled unless trace export is on).
    span: tracing::Span,
}

fn refuse(svc: &EdgeService, status: StatusCode, reason: &'static str, message: String) -> Response<EdgeBody> {
    svc.metrics.refused.get_or_create(&RefusedLabels { reason }).inc();
    let mut resp = plain(status, message);
    resp.extensions_mut().insert(ErrorDetail::refused(reason));
    resp
}

fn plain(status: StatusCode, message: String) -> Response<EdgeBody> {
    let mut resp = Response::new(EdgeBody::full(message + "\n"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// A uniform number in [0, 1) for weighted canary choices (splitmix64 over
/// a shared counter: cheap, lock-free, not for secrets).
fn roll() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    if z == 0 {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        STATE.store(seed, Ordering::Relaxed);
        z = seed;
    }
    (splitmix64(z) >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64's finalizer (Steele, Lea and Flood, "Fast Splittable
/// Pseudorandom Number Generators", OOPSLA 2014): a bijection on `u64` that
/// spreads every input bit. Used for canary rolls and access-log request ids.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The host a request names, as sent: the target's authority (HTTP/1.1
/// absolute-form, HTTP/2 `:authority`) or else its `Host` header, without
/// user information, port, IPv6 brackets or trailing dots; `None` when it
/// names none. Reads only through [`http::uri::Authority::host`], so no
/// `user:password@` reaches a caller (RFC 9110 §4.2.4 forbids it in an
/// http(s) authority; the routing refuses it, the access log must not write it).
pub(crate) fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    let host = match uri.authority() {
        Some(a) if !a.as_str().is_empty() => a.host().as_bytes(),
        _ => {
            let raw = without_userinfo(headers.get(header::HOST)?.as_bytes());
            if raw.first() == Some(&b'[') {
                raw.iter().position(|&b| b == b']').map_or(raw, |i| &raw[..=i])
            } else {
                raw.iter().rposition(|&b| b == b':').map_or(raw, |i| &raw[..i])
            }
        }
    };
    // Keep IPv6 literals whole, without their brackets.
    let host = host.strip_prefix(b"[").map_or(host, |h| h.strip_suffix(b"]").unwrap_or(h));
    let end = host.iter().rposition(|&b| b != b'.').map_or(0, |i| i + 1);
    let host = &host[..end];
    if host.is_empty() { None } else { Some(host) }
}

/// A `Host` value without anything up to its last `@`: a `Host` holds no
/// user information (RFC 9110 §7.2), and one that does anyway (refused as
/// `bad_host`) must not carry a password further, into the log or elsewhere.
pub(crate) fn without_userinfo(raw: &[u8]) -> &[u8] {
    raw.iter().rposition(|&b| b == b'@').map_or(raw, |i| &raw[i + 1..])
}

/// The routing host of a request: [`request_host`] in lower case.
fn host_of(req: &Request<Incoming>) -> Option<String> {
    let host = std::str::from_utf8(request_host(req.uri(), req.headers())?).ok()?;
    Some(host.to_ascii_lowercase())
}

impl EdgeService {
    /// Serves one viewer request, and writes its access log line once the
    /// response has been sent. The response carries the request's span
    /// ([`crate::trace::RequestSpan`]) for the listener to end with the body.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<EdgeBody> {
        let span = crate::trace::edge_request(&req, &conn);
        let mut entry = self.access_log.start(&req, &conn);
        let mut unlogged = Facts::default();
        let facts = entry.as_mut().map_or(&mut unlogged, |e| e.facts());
        let mut resp = Arc::clone(&self).route(req, conn, facts, &span).await;
        let distribution = Label(facts.distribution.clone().unwrap_or_else(|| Arc::from("")));
        let labels = ResponseLabels { distribution, status: ResponseLabels::class(resp.status()) };
        self.metrics.responses.get_or_create(&labels).inc();
        if !span.is_disabled() {
            crate::trace::record_status(&span, resp.status());
            resp.extensions_mut().insert(crate::trace::RequestSpan(span));
        }
        match entry {
            Some(entry) => entry.respond(resp),
            None => resp,
        }
    }

    async fn route(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        facts: &mut Facts,
        span: &tracing::Span,
    ) -> Response<EdgeBody> {
        if let Err(refusal) = key::check_viewer_input(&mut req) {
            return refuse(&self, StatusCode::BAD_REQUEST, refusal.reason, refusal.message);
        }
        let snapshot = self.snapshots.load();
        let Some(host) = host_of(&req) else {
            return refuse(&self, StatusCode::BAD_REQUEST, "no_host", "the request names no host".into());
        };
        let Some(primary) = snapshot.edge.find(&host).cloned() else {
            return refuse(&self, StatusCode::NOT_FOUND, "unknown_host", format!("no distribution serves host {host}"));
        };
        facts.distribution = Some(Arc::clone(&primary.id_label));
        // The primary's web ACL guards both sides of a canary: CloudFront
        // does not let a staging distribution change the WAF either.
        let waf_headers = match &primary.waf {
            Some(waf) => match self.inspect(waf, &req, conn, facts) {
                Ok(inserted) => inserted,
                Err(blocked) => return *blocked,
            },
            None => Vec::new(),
        };
        let head_only = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                // CloudFront's answer when a behavior allows only GET and HEAD.
                return refuse(
                    &self,
                    StatusCode::FORBIDDEN,
                    "method",
                    format!("this distribution is not configured to allow the HTTP request method {}", req.method()),
                );
            }
        };

        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (dist, variant, canary_cookie) = match &primary.canary {
            None => (primary.clone(), Variant::Primary, None),
            Some(c) => {
                let choice = canary::choose(c, req.headers(), roll(), now_unix);
                let dist = if choice.variant == Variant::Staging { Arc::clone(&c.staging) } else { primary.clone() };
                (dist, choice.variant, choice.set_cookie)
            }
        };
        if primary.canary.is_some() {
            facts.variant = Some(variant.as_str());
        }
        if variant == Variant::Staging {
            facts.primary = facts.distribution.replace(Arc::clone(&dist.id_label));
        }

        let (parts, _body) = req.into_parts();
        let req_headers = Arc::new(parts.headers);
        let path = parts.uri.path();
        let (behavior, policy, index) = dist.behavior_for(path);
        let behavior_label = Label(dist.behavior_labels.get(index).cloned().unwrap_or_else(|| Arc::from("default")));
        facts.behavior = Some(Arc::clone(&behavior_label.0));
        crate::trace::record_route(span, dist.id.as_str(), variant.as_str(), &behavior_label.0);
        let (origin_path, channel) = match key::rewrite_path(behavior.rewrite.as_ref(), &req_headers, path) {
            Ok(r) => r,
            Err(e) => return refuse(&self, StatusCode::BAD_REQUEST, "bad_channel", e.to_string()),
        };
        let query = key::filtered_query(&policy.query_strings, parts.uri.query());
        let cookies = key::filtered_cookies(&policy.cookies, &req_headers);
        let origin_target = match &query {
            Some(q) => format!("{origin_path}?{q}"),
            None => origin_path,
        };
        let viewer_target = parts.uri.path_and_query().map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
        let channel_pair =
            behavior.rewrite.as_ref().zip(channel.as_deref()).map(|(r, c)| (r.path_prefix_from_header.as_str(), c));
        let cache_key = key::cache_key(dist.id.as_str(), &origin_target, policy, &req_headers, channel_pair, &cookies);

        let origin_name = behavior.origin.clone();
        let host_value = match dist.origins.get(&origin_name).and_then(|o| o.config.host.as_deref()) {
            Some(h) => h.to_owned(),
            None => host,
        };
        let ctx = Ctx {
            svc: Arc::clone(&self),
            snapshot: Arc::clone(&snapshot),
            dist: Arc::clone(&dist),
            variant,
            canary_cookie,
            behavior_label,
            origin_name,
            policy: Arc::clone(policy),
            key: cache_key,
            viewer_target,
            origin_target,
            channel_header: behavior.rewrite.as_ref().map(|r| r.path_prefix_from_header.clone()),
            cookies,
            host: host_value,
            conn,
            head_only,
            req_headers,
            waf_headers,
            span: span.clone(),
        };
        ctx.serve().await
    }
}

impl EdgeService {
    /// Runs the distribution's web ACL: the headers it inserts into the
    /// origin request when it lets the request through, the response when it
    /// blocks.
    fn inspect(
        &self,
        waf: &CompiledAcl,
        req: &Request<Incoming>,
        conn: ConnInfo,
        facts: &mut Facts,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Box<Response<EdgeBody>>> {
        let view = RequestView {
            method: req.method().as_str(),
            uri_path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            headers: req.headers(),
            // Only GET and HEAD reach origins; their bodies are not read.
            body: (b"", false),
            client_ip: conn.client.ip(),
            tls: conn.tls.as_ref(),
        };
        let verdict = waf.acl.evaluate(&view);
        let count = |rule: &Arc<str>, action: &'static str| {
            let labels = WafLabels { web_acl: Label(Arc::clone(&waf.id_label)), rule: Label(Arc::clone(rule)), action };
            self.metrics.waf.get_or_create(&labels).inc();
        };
        for rule in &verdict.counted {
            count(rule, "count");
            if waf.acl.sampled(Some(rule)) {
                self.sample(waf, req, conn, "COUNT", Some(rule), &verdict.labels);
            }
        }
        let (action, blocked) = match &verdict.action {
            WafAction::Allow => ("allow", None),
            WafAction::Block(b) => ("block", Some(b)),
        };
        static DEFAULT: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let rule_label =
            verdict.rule.clone().unwrap_or_else(|| Arc::clone(DEFAULT.get_or_init(|| Arc::from("default"))));
        count(&rule_label, action);
        facts.waf = Some((action, Arc::clone(&rule_label)));
        if waf.acl.sampled(verdict.rule.as_deref()) {
            let upper = if blocked.is_some() { "BLOCK" } else { "ALLOW" };
            self.sample(waf, req, conn, upper, verdict.rule.as_ref(), &verdict.labels);
        }
        let Some(b) = blocked else { return Ok(verdict.request_headers) };
        tracing::info!(web_acl = %waf.id, rule = %rule_label, client = %conn.client, path = %req.uri().path(), "request blocked by the web ACL");
        let (ct, body) =
            b.body.clone().unwrap_or_else(|| ("text/plain; charset=utf-8".into(), "Request blocked.\n".into()));
        let mut resp = Response::new(EdgeBody::full(body));
        *resp.status_mut() = StatusCode::from_u16(b.status).unwrap_or(StatusCode::FORBIDDEN);
        if let Ok(v) = HeaderValue::from_str(&ct) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        for (k, v) in &b.headers {
            resp.headers_mut().append(k.clone(), v.clone());
        }
        // CloudFront marks WAF refusals as errors.
        resp.headers_mut()
            .insert(HeaderName::from_static("x-cache"), HeaderValue::from_static(CachePhase::Error.x_cache()));
        resp.extensions_mut().insert(ErrorDetail::BLOCKED);
        Err(Box::new(resp))
    }

    fn sample(
        &self,
        waf: &CompiledAcl,
        req: &Request<Incoming>,
        conn: ConnInfo,
        action: &'static str,
        rule: Option<&Arc<str>>,
        labels: &[Arc<str>],
    ) {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.samples.record_with(waf.id.as_str(), timestamp, || Sample {
            request: shardgate_waf::sample::SampleRequest {
                client_ip: conn.client.ip().to_string(),
                country: self
                    .geo
                    .as_ref()
                    .and_then(|g| g.country(conn.client.ip()))
                    .map(|c| String::from_utf8_lossy(&c).into_owned()),
                uri: shardgate_waf::sample::cut(
                    req.uri().path_and_query().map_or(req.uri().path(), |p| p.as_str()),
                    2048,
                ),
                method: req.method().to_string(),
                headers: Samples::headers(req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes()))),
            },
            weight: 1,
            timestamp,
            action,
            rule: rule.map(|r| r.to_string()),
            labels: labels.iter().map(|l| shardgate_waf::sample::SampleLabel { name: l.to_string() }).collect(),
        });
    }
}

/// What a fetch produced.
enum Fetched {
    /// Stored (body filling in the background), or a refreshed object only
    /// this request may see; with the fields that were not stored
    /// (`no-cache="f"`, `private="f"`), which only this request gets.
    Stored(Arc<Object>, CachePhase, HeaderMap),
    /// Not storable: the origin's response, passed through.
    Pass(Response<Incoming>),
}

impl Ctx {
    fn valid(&self) -> impl Fn(&Object) -> bool + '_ {
        |o: &Object| self.dist.still_valid(o.generation, &o.viewer_target, &o.origin_target)
    }

    async fn serve(self) -> Response<EdgeBody> {
        let now = Instant::now();
        let lookup = self.svc.cache.lookup(&self.key, &self.req_headers, now, self.valid());
        match lookup {
            Lookup::Fresh(object) => self.respond(&object, CachePhase::Hit),
            Lookup::Miss(leader) => self.fetch_and_respond(leader, None).await,
            Lookup::Stale { object, leader, pending } => {
                if object.within_stale_while_revalidate(now)
                    && !object.is_fresh(now)
                    && object.stale_while_revalidate > Duration::ZERO
                {
                    if let Some(leader) = leader {
                        self.revalidate_in_background(leader, Arc::clone(&object));
                    }
                    return self.respond(&object, CachePhase::StaleHit);
                }
                match (leader, pending) {
                    (Some(leader), _) => self.fetch_and_respond(leader, Some(object)).await,
                    (None, Some(pending)) => match pending.wait().await {
                        Outcome::Stored(o) if o.matches_vary(&self.req_headers) => {
                            self.respond(&o, CachePhase::RefreshHit)
                        }
                        Outcome::Failed if object.within_stale_if_error(Instant::now()) => {
                            self.respond(&object, CachePhase::StaleHit)
                        }
                        _ => self.wait_or_fetch().await,
                    },
                    (None, None) => self.wait_or_fetch().await,
                }
            }
            Lookup::Wait(pending) => match pending.wait().await {
                // CloudFront logs collapsed requests as hits.
                Outcome::Stored(o) if o.matches_vary(&self.req_headers) => self.respond(&o, CachePhase::Hit),
                Outcome::Stored(_) => self.wait_or_fetch().await,
                // Not shareable: every waiter asks the origin itself, at once.
                Outcome::Uncacheable => self.fetch_alone().await,
                Outcome::Failed => self.error_response(
                    StatusCode::BAD_GATEWAY,
                    "the origin fetch this request waited for failed",
                    ErrorDetail::error("AbortedOrigin"),
                ),
            },
        }
    }

    async fn fetch_alone(self) -> Response<EdgeBody> {
        match self.fetch(None).await {
            Ok(resp) => self.pass(resp),
            Err(e) => self.origin_error(&e),
        }
    }

    /// After a leader's outcome did not fit: take the lock or wait again a
    /// few rounds, then fetch alone without storing.
    async fn wait_or_fetch(self) -> Response<EdgeBody> {
        for _ in 0..MAX_WAIT_ROUNDS {
            match self.svc.cache.lead_or_wait(&self.key) {
                Ok(leader) => return self.fetch_and_respond(leader, None).await,
                Err(pending) => {
                    if let Outcome::Stored(o) = pending.wait().await
                        && o.matches_vary(&self.req_headers)
                    {
                        return self.respond(&o, CachePhase::Hit);
                    }
                }
            }
        }
        self.fetch_alone().await
    }

    fn revalidate_in_background(&self, leader: Leader, stale: Arc<Object>) {
        let mut ctx = self.clone();
        // The viewer has its answer: the request's span must end with it,
        // not when this fetch does, so the background fetch records none.
        ctx.span = tracing::Span::none();
        tokio::spawn(async move {
            match ctx.fetch_and_store(leader, Some(&stale)).await {
                Ok(Fetched::Stored(..) | Fetched::Pass(_)) => {}
                Err(e) => {
                    tracing::info!(distribution = %ctx.dist.id, target = %ctx.viewer_target, error = %e, "background revalidation failed")
                }
            }
        });
    }

    async fn fetch_and_respond(self, leader: Leader, stale: Option<Arc<Object>>) -> Response<EdgeBody> {
        // The fetch runs in its own task: if this viewer leaves before the
        // origin answers, the requests waiting on this leader still get it.
        let ctx = self.clone();
        let for_task = stale.clone();
        let task = tokio::spawn(async move { ctx.fetch_and_store(leader, for_task.as_deref()).await });
        let fetched = match task.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "origin fetch task failed");
                Err(FetchError::Status(StatusCode::BAD_GATEWAY))
            }
        };
        match fetched {
            Ok(Fetched::Stored(o, phase, own)) => self.respond_with(&o, phase, &own),
            Ok(Fetched::Pass(resp)) => self.pass(resp),
            Err(e) => match stale {
                // RFC 5861 stale-if-error.
                Some(s) if s.within_stale_if_error(Instant::now()) => {
                    tracing::info!(distribution = %self.dist.id, target = %self.viewer_target, error = %e, "origin failed; serving stale");
                    self.respond(&s, CachePhase::StaleHit)
                }
                _ => self.origin_error(&e),
            },
        }
    }

    fn origin_error(&self, e: &FetchError) -> Response<EdgeBody> {
        tracing::warn!(distribution = %self.dist.id, origin = %self.origin_name, target = %self.origin_target, error = %e, "origin fetch failed");
        let status = match e {
            FetchError::Origin(o) => o.status(),
            FetchError::Status(_) => StatusCode::BAD_GATEWAY,
        };
        self.error_response(status, &e.to_string(), e.detail())
    }

    fn error_response(&self, status: StatusCode, message: &str, detail: ErrorDetail) -> Response<EdgeBody> {
        self.count(CachePhase::Error, None);
        let mut resp = plain(status, message.to_owned());
        self.decorate(resp.headers_mut(), CachePhase::Error);
        resp.extensions_mut().insert(detail);
        resp
    }

    async fn fetch(&self, stale: Option<&Object>) -> Result<Response<Incoming>, FetchError> {
        let Some(origin) = self.dist.origins.get(&self.origin_name) else {
            // Compiled distributions always hold their behaviors' origins.
            return Err(FetchError::Status(StatusCode::BAD_GATEWAY));
        };
        let mut headers = self.forward_headers();
        if let Some(s) = stale {
            if let Some(etag) = s.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = s.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let read_timeout = origin.config.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        let Ok(host) = HeaderValue::from_str(&self.host) else {
            return Err(FetchError::Status(StatusCode::BAD_REQUEST));
        };
        let target = format!("{}{}", origin.config.origin_path, self.origin_target);
        let span = crate::trace::origin_fetch(&self.span, &self.origin_name, &self.host, &target, stale.is_some());
        crate::trace::inject(&span, &mut headers);
        let request = OriginRequest {
            origin,
            target,
            host,
            headers,
            client: self.conn.client,
            local: self.conn.local,
            read_timeout,
        };
        let started = Instant::now();
        let result = origin::fetch(request).await;
        crate::trace::record_origin(&span, &result);
        let dlabels = DistributionLabels { distribution: Label(Arc::clone(&self.dist.id_label)) };
        self.svc.metrics.origin_seconds.get_or_create(&dlabels).observe(started.elapsed().as_secs_f64());
        let status = match &result {
            Ok(r) => match r.status().as_u16() {
                100..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            Err(_) => "error",
        };
        let labels = OriginLabels {
            distribution: Label(Arc::clone(&self.dist.id_label)),
            origin: self.origin_name.clone(),
            status,
        };
        self.svc.metrics.origin_requests.get_or_create(&labels).inc();
        Ok(result?)
    }

    async fn fetch_and_store(&self, leader: Leader, stale: Option<&Object>) -> Result<Fetched, FetchError> {
        let request_time = SystemTime::now();
        let resp = match self.fetch(stale).await {
            Ok(r) => r,
            Err(e) => {
                leader.failed();
                return Err(e);
            }
        };
        let exchange = Exchange {
            request_headers: &self.req_headers,
            namespace: self.dist.id.as_str(),
            generation: self.snapshot.generation,
            viewer_target: &self.viewer_target,
            origin_target: &self.origin_target,
            bounds: TtlBounds { min: self.policy.min_ttl, default: self.policy.default_ttl, max: self.policy.max_ttl },
            targeted: &self.svc.targeted_cache_control,
            timing: Timing { request_time, response_time: SystemTime::now() },
        };
        match self.svc.cache.admit(leader, resp, stale, &exchange) {
            Admitted::Refreshed { object, own } => Ok(Fetched::Stored(object, CachePhase::RefreshHit, own)),
            Admitted::ServeStale(status) => Err(FetchError::Status(status)),
            Admitted::Pass(resp) => Ok(Fetched::Pass(resp)),
            Admitted::Stored { object, own, body, fill } => {
                let read_timeout = self
                    .dist
                    .origins
                    .get(&self.origin_name)
                    .and_then(|o| o.config.read_timeout)
                    .unwrap_or(DEFAULT_READ_TIMEOUT);
                tokio::spawn(drive_fill(fill, body, read_timeout, self.svc.metrics.clone()));
                Ok(Fetched::Stored(object, CachePhase::Miss, own))
            }
        }
    }

    /// What the origin gets: everything in the key, the channel header, the
    /// viewer's `Accept-Encoding`, and who asked.
    fn forward_headers(&self) -> HeaderMap {
        let req = &self.req_headers;
        let mut forward = HeaderMap::new();
        for name in &self.policy.headers {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                for v in req.get_all(&n) {
                    forward.append(n.clone(), v.clone());
                }
            }
        }
        if let Some(h) = &self.channel_header
            && let Ok(n) = HeaderName::from_bytes(h.as_bytes())
            && let Some(v) = req.get(&n)
        {
            forward.insert(n, v.clone());
        }
        // Compression is the origin's choice; `Vary: Accept-Encoding` keeps
        // the variants apart in the cache.
        if let Some(ae) = req.get(header::ACCEPT_ENCODING) {
            forward.insert(header::ACCEPT_ENCODING, ae.clone());
        }
        if !self.cookies.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.cookies.join("; "))
        {
            forward.insert(header::COOKIE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.conn.client.ip().to_string()) {
            forward.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        forward.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
        forward.insert(header::USER_AGENT, HeaderValue::from_static("shardgate"));
        // AWS WAF: an inserted header replaces one of the same name.
        for (name, value) in &self.waf_headers {
            forward.insert(name.clone(), value.clone());
        }
        forward
    }

    fn count(&self, phase: CachePhase, bytes: Option<u64>) {
        let labels = RequestLabels {
            distribution: Label(Arc::clone(&self.dist.id_label)),
            behavior: self.behavior_label.clone(),
            variant: self.variant.as_str(),
            cache: phase.label(),
        };
        self.svc.metrics.requests.get_or_create(&labels).inc();
        crate::trace::record_cache(&self.span, phase.label());
        if let Some(b) = bytes {
            let labels = DistributionLabels { distribution: Label(Arc::clone(&self.dist.id_label)) };
            self.svc.metrics.response_bytes.get_or_create(&labels).inc_by(b);
        }
    }

    fn decorate(&self, headers: &mut HeaderMap, phase: CachePhase) {
        headers.insert(HeaderName::from_static("x-cache"), HeaderValue::from_static(phase.x_cache()));
        headers.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
        if self.dist.canary.is_some() || self.variant == Variant::Staging {
            headers.insert(HeaderName::from_static(VARIANT_HEADER), HeaderValue::from_static(self.variant.as_str()));
        }
        if let Some(c) = &self.canary_cookie
            && let Ok(v) = HeaderValue::from_str(c)
        {
            headers.append(header::SET_COOKIE, v);
        }
    }

    fn pass(&self, resp: Response<Incoming>) -> Response<EdgeBody> {
        let (mut parts, body) = resp.into_parts();
        shardgate_cache::admit::strip_hop_by_hop(&mut parts.headers);
        // An `Age` passed on is sent as one valid delta-seconds: the first
        // member of a list, or nothing when it is invalid (RFC 9111 §5.1).
        if parts.headers.contains_key(header::AGE) {
            match shardgate_cache::age_of(&parts.headers) {
                Some(age) => {
                    parts.headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
                }
                None => {
                    parts.headers.remove(header::AGE);
                }
            }
        }
        self.decorate(&mut parts.headers, CachePhase::Pass);
        let len = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        self.count(CachePhase::Pass, len);
        let body = if self.head_only { EdgeBody::Empty } else { EdgeBody::Origin(body) };
        Response::from_parts(parts, body)
    }

    /// Answers from a stored object: 304, 206, 416 or the whole body.
    fn respond(&self, object: &Arc<Object>, phase: CachePhase) -> Response<EdgeBody> {
        self.respond_with(object, phase, &HeaderMap::new())
    }

    /// [`Ctx::respond`], adding `own`: fields of the origin's response that
    /// were not stored (`no-cache="f"`, `private="f"`) but belong to the
    /// request that fetched it.
    fn respond_with(&self, object: &Arc<Object>, phase: CachePhase, own: &HeaderMap) -> Response<EdgeBody> {
        let mut headers = object.headers.clone();
        for (name, value) in own {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(header::AGE, HeaderValue::from(object.age(SystemTime::now())));
        self.decorate(&mut headers, phase);

        if object.status == StatusCode::OK && not_modified(&self.req_headers, &object.headers, &object.dates) {
            // RFC 9110 §15.4.5: a 304 carries the validators and caching headers, no body.
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::CONTENT_TYPE);
            self.count(phase, Some(0));
            let mut resp = Response::new(EdgeBody::Empty);
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            *resp.headers_mut() = headers;
            return resp;
        }

        let known_len =
            object.content_length.or_else(|| (object.body.end() == Some(FillEnd::Complete)).then(|| object.body.len()));
        let mut status = object.status;
        let (start, end) = match known_len {
            Some(len) if object.status == StatusCode::OK => {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                let answer = if if_range_holds(&self.req_headers, &object.headers, &object.dates) {
                    range(&self.req_headers, len)
                } else {
                    RangeAnswer::Full
                };
                match answer {
                    RangeAnswer::Full => (0, len),
                    RangeAnswer::Partial { start, end } => {
                        status = StatusCode::PARTIAL_CONTENT;
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        (start, end + 1)
                    }
                    RangeAnswer::Unsatisfiable => {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                        self.count(phase, Some(0));
                        let mut resp = Response::new(EdgeBody::Empty);
                        *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                        *resp.headers_mut() = headers;
                        return resp;
                    }
                }
            }
            Some(len) => (0, len),
            None => (0, u64::MAX),
        };
        let body_len = if end == u64::MAX { None } else { Some(end - start) };
        match body_len {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.remove(header::CONTENT_LENGTH);
            }
        }
        self.count(phase, body_len);
        let body = if self.head_only || status == StatusCode::NO_CONTENT {
            EdgeBody::Empty
        } else {
            EdgeBody::Fill(FillBody::new(Arc::clone(&object.body), start, body_len.map(|n| start + n)))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

/// Why a fetch gave no usable response.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("origin answered {0}")]
    Status(StatusCode),
}

impl FetchError {
    /// How the access log classifies it (CloudFront's detailed result types).
    fn detail(&self) -> ErrorDetail {
        match self {
            // This host ran out of descriptors or ports, not the origin.
            FetchError::Origin(OriginError::Connect(shardgate_upstream::ConnectError::Local { .. })) => {
                ErrorDetail { result: "CapacityExceeded", detail: "CapacityExceeded" }
            }
            FetchError::Origin(OriginError::Connect(_)) => ErrorDetail::error("OriginConnectError"),
            FetchError::Origin(OriginError::Http { error, .. }) if error.is_parse_too_large() => {
                ErrorDetail::error("OriginHeaderTooBigError")
            }
            FetchError::Origin(OriginError::Http { error, .. }) if error.is_parse() => {
                ErrorDetail::error("OriginInvalidResponseError")
            }
            FetchError::Origin(OriginError::Http { .. } | OriginError::Timeout { .. }) => {
                ErrorDetail::error("OriginReadError")
            }
            FetchError::Origin(OriginError::Request(_)) => ErrorDetail::error("Error"),
            FetchError::Status(_) => ErrorDetail::error("OriginError"),
        }
    }
}

/// Removes cached objects as soon as a snapshot brings new invalidations,
/// so memory is freed at once and deleting an invalidation later cannot
/// bring old objects back. Lookups check invalidations too (objects whose
/// fetch raced the purge), so this is about memory, not correctness.
pub async fn purge_invalidated(snapshots: Arc<SnapshotHandle>, cache: Arc<Cache>, metrics: EdgeMetrics) {
    let mut rx = snapshots.subscribe();
    let mut seen = snapshots.load().generation;
    while rx.changed().await.is_ok() {
        let snapshot = snapshots.load();
        let mut purged = 0;
        // One sweep per distribution with new invalidations; which objects
        // they cover is the same rule lookups apply (`still_valid`).
        for dist in snapshot.edge.distributions() {
            if dist.invalidations.last().is_none_or(|(revision, _)| *revision <= seen) {
                continue;
            }
            purged += cache.purge(|_, o| {
                *o.namespace == *dist.id.as_str() && !dist.still_valid(o.generation, &o.viewer_target, &o.origin_target)
            });
        }
        if purged > 0 {
            tracing::info!(purged, generation = snapshot.generation, "invalidated objects removed from the cache");
            let (bytes, objects) = cache.usage();
            metrics.cache_bytes.set(bytes as i64);
            metrics.cache_objects.set(objects as i64);
        }
        seen = snapshot.generation;
    }
}

/// Copies an origin body into the object's fill, whoever reads it. Runs in
/// its own task so that a viewer who leaves does not cut the fill short for
/// the others. What the end of the body means for the object is the cache's
/// decision ([`FillWriter::finish`]).
async fn drive_fill(mut fill: FillWriter, mut body: Incoming, read_timeout: Duration, metrics: EdgeMetrics) {
    let end = loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => break FillEnd::Failed(format!("the origin sent nothing for {read_timeout:?}")),
            Ok(None) => break FillEnd::Complete,
            Ok(Some(Err(e))) => break FillEnd::Failed(format!("origin body: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    fill.push(data);
                }
            }
        }
    };
    let cache = Arc::clone(fill.cache());
    fill.finish(end);
    let (bytes, objects) = cache.usage();
    metrics.cache_bytes.set(bytes as i64);
    metrics.cache_objects.set(objects as i64);
    metrics.cache_disk_bytes.set(cache.disk_usage() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uri: &str, host_header: Option<&str>) -> Option<String> {
        let uri: http::Uri = uri.parse().expect("uri");
        let mut headers = HeaderMap::new();
        if let Some(h) = host_header {
            headers.insert(header::HOST, HeaderValue::from_str(h).expect("value"));
        }
        request_host(&uri, &headers).map(|h| String::from_utf8_lossy(h).into_owned())
    }

    #[test]
    fn the_request_host_never_carries_user_information() {
        assert_eq!(host("http://user:pass@A.example:8080/x", None).as_deref(), Some("A.example"));
        assert_eq!(host("http://user@a.example/x", Some("b.example")).as_deref(), Some("a.example"), "authority wins");
        assert_eq!(host("/x", Some("user:pass@a.example:80")).as_deref(), Some("a.example"));
        assert_eq!(host("/x", Some("user:pass@a.example")).as_deref(), Some("a.example"));
    }

    #[test]
    fn splitmix64_is_the_reference_finalizer() {
        // The reference generator's first output from state 0 (its state
        // steps by the golden gamma before the finalizer runs).
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0), 0);
    }

    #[test]
    fn the_request_host_drops_port_brackets_and_trailing_dots() {
        assert_eq!(host("/x", Some("a.example.:443")).as_deref(), Some("a.example"));
        assert_eq!(host("/x", Some("[::1]:8080")).as_deref(), Some("::1"));
        assert_eq!(host("http://[2001:db8::1]:80/x", None).as_deref(), Some("2001:db8::1"));
        assert_eq!(host("http://[2001:db8::1]/x", None).as_deref(), Some("2001:db8::1"));
        assert_eq!(host("/x", Some("a.example")).as_deref(), Some("a.example"));
        assert_eq!(host("/x", Some(".:80")), None);
        assert_eq!(host("/x", None), None);
    }
}
