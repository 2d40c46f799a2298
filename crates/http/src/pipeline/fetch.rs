//! Phase "origin": the request to the origin (headers forwarded, validators
//! of a stale object, the origin's `origin_path` and Host), its metrics and
//! span; then admission, which the cache decides
//! ([`shardgate_cache::Cache::admit`]), and the copy of a stored object's
//! body from the origin into the cache, in a task of its own.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use shardgate_cache::{Admitted, CachePhase, Exchange, FillEnd, FillWriter, Leader, Object, Timing, TtlBounds};

use shardgate_model::edge::{KeyItems, OriginRequestPolicy};

use super::Ctx;
use crate::access_log::ErrorDetail;
use crate::body::EdgeBody;
use crate::metrics::{DistributionLabels, EdgeMetrics, Label, OriginLabels};
use crate::origin::upload::Upload;
use crate::origin::{self, OriginError, OriginRequest};

/// Default wait for an origin's response head (CloudFront's default origin response timeout).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a fetch produced.
pub(crate) enum Fetched {
    /// Stored (body filling in the background), or a refreshed object only
    /// this request may see; with the fields that were not stored
    /// (`no-cache="f"`, `private="f"`), which only this request gets.
    Stored(Arc<Object>, CachePhase, HeaderMap),
    /// Not storable: the origin's response, passed through.
    Pass(Response<Incoming>),
}

/// Why a fetch gave no usable response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("origin answered {0}")]
    Status(StatusCode),
}

impl FetchError {
    /// How the access log classifies it (CloudFront's detailed result types).
    pub(crate) fn detail(&self) -> ErrorDetail {
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
            FetchError::Origin(OriginError::Tls { .. }) => ErrorDetail::error("OriginSslError"),
            // The viewer's body, not the origin: too large, stalled, or cut off.
            FetchError::Origin(OriginError::Viewer { status, .. }) => ErrorDetail::error(match *status {
                StatusCode::PAYLOAD_TOO_LARGE => "InvalidRequest",
                StatusCode::REQUEST_TIMEOUT => "ClientCommError",
                _ => "ClientHungUpRequest",
            }),
            FetchError::Origin(OriginError::Request(_)) => ErrorDetail::error("Error"),
            FetchError::Status(_) => ErrorDetail::error("OriginError"),
        }
    }
}

impl Ctx {
    /// Phase "origin": one request to the behavior's origin; with `stale`,
    /// a revalidation carrying its validators.
    pub(crate) async fn fetch_origin(&self, stale: Option<&Object>) -> Result<Response<Incoming>, FetchError> {
        self.fetch_origin_with(stale, None, true).await
    }

    /// The origin phase of a request that is not cached: the viewer's
    /// method and body (streamed) go to the origin, and its response is
    /// passed through, never stored.
    pub(crate) async fn forward_uncached(&self, upload: Option<Upload>) -> Response<EdgeBody> {
        match self.fetch_origin_with(None, upload, false).await {
            Ok(resp) => self.pass(resp),
            Err(e) => self.origin_error(&e),
        }
    }

    /// [`Ctx::fetch_origin`], sending `upload` as the request body; a fetch
    /// `for_cache` asks for a `HEAD` with a `GET` (the cache stores whole
    /// objects), any other sends the viewer's method.
    async fn fetch_origin_with(
        &self,
        stale: Option<&Object>,
        upload: Option<Upload>,
        for_cache: bool,
    ) -> Result<Response<Incoming>, FetchError> {
        let Some(origin) = self.dist.origins.get(&self.origin_name) else {
            // Compiled distributions always hold their behaviors' origins.
            return Err(FetchError::Status(StatusCode::BAD_GATEWAY));
        };
        let policy = self.dist.request_policy(self.behavior_index);
        let mut headers = self.forward_headers(policy.map(Arc::as_ref), stale);
        if upload.is_some() {
            // What the body is goes with it.
            for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING, header::CONTENT_LANGUAGE] {
                if let Some(v) = self.req_headers.get(&name) {
                    headers.insert(name, v.clone());
                }
            }
        }
        if let Some(s) = stale {
            if let Some(etag) = s.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = s.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let read_timeout = origin.config.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        // A policy that forwards the viewer's Host (or a cache policy that
        // keys on it) sends it even to an origin with a `host` of its own,
        // as CloudFront's AllViewer does. An HTTP/2 viewer may send no Host
        // header: its `:authority` names the host then (RFC 9113 §8.3.1).
        let forwards_host =
            policy.is_some_and(|p| p.headers.forwards("host")) || self.policy.headers.iter().any(|h| h == "host");
        let host = match self.req_headers.get(header::HOST).filter(|_| forwards_host) {
            Some(h) => h.clone(),
            None => {
                let name = if forwards_host { &self.viewer_host } else { &self.host };
                match HeaderValue::from_str(name) {
                    Ok(h) => h,
                    Err(_) => return Err(FetchError::Status(StatusCode::BAD_REQUEST)),
                }
            }
        };
        let target = format!("{}{}", origin.config.origin_path, self.origin_request_target(policy.map(Arc::as_ref)));
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
        let exchange = origin::Exchange {
            // GET and HEAD are fetched whole with GET, for the cache.
            method: if for_cache && self.method == http::Method::HEAD {
                http::Method::GET
            } else {
                self.method.clone()
            },
            body: None,
            upload,
            viewer_https: self.conn.tls_session.is_some(),
        };
        let result = self.svc.origins.fetch(request, exchange).await;
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

    /// The origin phase for the leader of the key, then admission: the
    /// cache stores, refreshes or passes the response
    /// ([`shardgate_cache::Cache::admit`]); a stored body is copied into
    /// the cache by [`drive_fill`].
    pub(crate) async fn admit(&self, leader: Leader, stale: Option<&Object>) -> Result<Fetched, FetchError> {
        let request_time = SystemTime::now();
        let resp = match self.fetch_origin(stale).await {
            Ok(r) => r,
            Err(e) => {
                leader.failed();
                return Err(e);
            }
        };
        let error_caching = self.error_caching();
        let exchange = Exchange {
            request_headers: &self.req_headers,
            namespace: self.dist.id.as_str(),
            generation: self.snapshot.generation,
            viewer_target: &self.viewer_target,
            origin_target: &self.origin_target,
            bounds: TtlBounds { min: self.policy.min_ttl, default: self.policy.default_ttl, max: self.policy.max_ttl },
            targeted: &self.svc.targeted_cache_control,
            timing: Timing { request_time, response_time: SystemTime::now() },
            error_caching: &error_caching,
        };
        match self.svc.cache.admit(leader, resp, stale, &exchange) {
            Admitted::Refreshed { object, own } => Ok(Fetched::Stored(object, CachePhase::RefreshHit, own)),
            Admitted::ServeStale(status) => Err(FetchError::Status(status)),
            Admitted::Pass(resp) => Ok(Fetched::Pass(resp)),
            Admitted::Stored { object, own, body, fill } => {
                tokio::spawn(drive_fill(fill, body, self.read_timeout(), self.svc.metrics.clone()));
                Ok(Fetched::Stored(object, CachePhase::Miss, own))
            }
        }
    }

    /// The origin's read timeout: the wait for its response head, and for
    /// each frame of its body (stored or passed through).
    pub(crate) fn read_timeout(&self) -> Duration {
        self.dist.origins.get(&self.origin_name).and_then(|o| o.config.read_timeout).unwrap_or(DEFAULT_READ_TIMEOUT)
    }

    /// The origin's path and query: the key's query strings, plus those the
    /// origin request policy forwards (in the viewer's order).
    fn origin_request_target(&self, policy: Option<&OriginRequestPolicy>) -> String {
        let Some(policy) = policy.filter(|p| p.query_strings != KeyItems::None) else {
            return self.origin_target.clone();
        };
        let path = self.origin_target.split_once('?').map_or(self.origin_target.as_str(), |(p, _)| p);
        let query = self.viewer_target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
                !pair.is_empty() && (self.policy.query_strings.includes(name) || policy.query_strings.includes(name))
            })
            .collect();
        if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
    }

    /// What the origin gets: everything in the key, the channel header, the
    /// viewer headers and cookies the origin request policy forwards (not
    /// in the key), on a revalidation the request headers the stored
    /// response varies on, the viewer's `Accept-Encoding`, and who asked.
    fn forward_headers(&self, policy: Option<&OriginRequestPolicy>, stale: Option<&Object>) -> HeaderMap {
        let req = &self.req_headers;
        let mut forward = HeaderMap::new();
        let listed = connection_listed(req);
        for name in &self.policy.headers {
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else { continue };
            if let Some(value) = self.edge_header(name) {
                // Made here, as in the key (see behavior::edge_made).
                if let Ok(v) = HeaderValue::from_str(&value) {
                    forward.insert(n, v);
                }
                continue;
            }
            if !forwardable(&n, &listed) {
                // Host goes as `OriginRequest::host`; the rest is hop-by-hop
                // or the edge's own.
                continue;
            }
            for v in req.get_all(&n) {
                forward.append(n.clone(), v.clone());
            }
        }
        if let Some(rewrite) = &self.behavior().rewrite
            && let Ok(n) = HeaderName::from_bytes(rewrite.path_prefix_from_header.as_bytes())
            && let Some(v) = req.get(&n)
        {
            forward.insert(n, v.clone());
        }
        if let Some(policy) = policy {
            for name in req.keys() {
                if forward.contains_key(name) || !policy.headers.forwards(name.as_str()) || !forwardable(name, &listed)
                {
                    continue;
                }
                for v in req.get_all(name) {
                    forward.append(name.clone(), v.clone());
                }
            }
        }
        // A revalidation asks for the variant the stored response is: the
        // request headers it varies on go along (RFC 9111 §4.1, §4.3.1).
        if let Some(s) = stale {
            for name in vary_names(&s.headers) {
                if !forward.contains_key(&name) && forwardable(&name, &listed) {
                    for v in req.get_all(&name) {
                        forward.append(name.clone(), v.clone());
                    }
                }
            }
        }
        // Compression is the origin's choice; `Vary: Accept-Encoding` keeps
        // the variants apart in the cache.
        if let Some(ae) = req.get(header::ACCEPT_ENCODING) {
            forward.insert(header::ACCEPT_ENCODING, ae.clone());
        }
        let cookies = match policy.filter(|p| p.cookies != KeyItems::None) {
            None => self.cookies.clone(),
            Some(p) => {
                let either = |name: &str| self.policy.cookies.includes(name) || p.cookies.includes(name);
                viewer_cookies(req)
                    .filter(|c| either(c.split_once('=').map_or(c, |(n, _)| n)))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }
        };
        if !cookies.is_empty()
            && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
        {
            forward.insert(header::COOKIE, v);
        }
        // X-Forwarded-For: the viewer's list, when forwarded, then the viewer.
        let xff = HeaderName::from_static("x-forwarded-for");
        let client = self.conn.client.ip().to_string();
        // Every line the viewer sent, in order (RFC 9110 §5.3: lines of a
        // list field combine with commas).
        let mut xff_value = forward.get_all(&xff).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ");
        if !xff_value.is_empty() {
            xff_value.push_str(", ");
        }
        xff_value.push_str(&client);
        if let Ok(v) = HeaderValue::from_str(&xff_value) {
            forward.insert(xff, v);
        }
        forward.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
        if !forward.contains_key(header::USER_AGENT) {
            forward.insert(header::USER_AGENT, HeaderValue::from_static("shardgate"));
        }
        if let Some(policy) = policy {
            for name in policy.headers.edge_headers() {
                if let (Some(value), Ok(n)) = (self.edge_header(name), HeaderName::from_bytes(name.as_bytes()))
                    && let Ok(v) = HeaderValue::from_str(&value)
                {
                    forward.insert(n, v);
                }
            }
        }
        // AWS WAF: an inserted header replaces one of the same name.
        for (name, value) in &self.waf_headers {
            forward.insert(name.clone(), value.clone());
        }
        forward
    }
}

/// The value of the edge-made header `name` (one of
/// [`shardgate_model::edge::CLOUDFRONT_HEADERS`]) for a request over
/// `conn` in HTTP `version`; `None` for any other name.
pub(crate) fn edge_header_value(name: &str, conn: &crate::service::ConnInfo, version: http::Version) -> Option<String> {
    Some(match name {
        "cloudfront-forwarded-proto" => (if conn.tls_session.is_some() { "https" } else { "http" }).to_owned(),
        "cloudfront-viewer-address" => conn.client.to_string(),
        "cloudfront-viewer-http-version" => match version {
            http::Version::HTTP_09 => "0.9",
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2.0",
            http::Version::HTTP_3 => "3.0",
            _ => "1.1",
        }
        .to_owned(),
        _ => return None,
    })
}

impl Ctx {
    /// [`edge_header_value`] for this request.
    fn edge_header(&self, name: &str) -> Option<String> {
        edge_header_value(name, &self.conn, self.version)
    }
}

/// The viewer's cookies, `name=value`, in its order.
fn viewer_cookies(req: &HeaderMap) -> impl Iterator<Item = &str> {
    req.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Header names a viewer's `Connection` lists (hop-by-hop for this
/// connection, RFC 9110 §7.6.1).
fn connection_listed(req: &HeaderMap) -> Vec<String> {
    req.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The request header names a stored response varies on (`*` left out:
/// nothing to forward for it).
fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Whether a viewer header may be copied into an origin request: not
/// hop-by-hop (RFC 9110 §7.6.1, and those its `Connection` lists), not one
/// the edge writes itself for this exchange (Host, the body's framing,
/// `Cookie` which the cookie settings decide, the conditionals and ranges
/// of a fetch for the cache), and no `CloudFront-*` or `X-Amz-Cf-*` header
/// (the edge makes those; a viewer must not forge them).
fn forwardable(name: &HeaderName, connection_listed: &[String]) -> bool {
    // The edge's own for this exchange: Host, the cookies the cookie
    // settings choose, the conditionals and ranges of a fetch for the cache.
    const OWN: [&str; 8] = [
        "host",
        "cookie",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "range",
    ];
    let n = name.as_str();
    !shardgate_model::edge::HOP_BY_HOP_HEADERS.contains(&n)
        && !OWN.contains(&n)
        && !connection_listed.iter().any(|l| l == n)
        && !shardgate_model::edge::edge_reserved(n)
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
