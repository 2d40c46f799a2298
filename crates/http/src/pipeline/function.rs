//! Phases "viewer-request function" and "viewer-response function": where
//! CloudFront Functions run, the LIVE stage of the ones associated with the
//! request's cache behavior (at most one per event type), through
//! `shardgate_functions`. A behavior without a function costs one lookup
//! in `dist.functions`: no event is built.
//!
//! - The viewer-request function runs after the behavior is chosen from
//!   the viewer's path and before the key phase. Its event is the request
//!   as it reached this phase: `uri` the path, `querystring` parsed from the
//!   query as the viewer sent it (values still percent-encoded), `headers`
//!   with lower-case names (`host` added from HTTP/2's `:authority`),
//!   `cookies` from the `Cookie` headers, `viewer.ip` the client's address,
//!   and `context` naming the host, the distribution and the request id of
//!   the access log line. A returned request is applied to `parts`: a
//!   changed `uri` or `querystring` becomes the request target (bytes a
//!   target cannot hold percent-encoded), changed headers or cookies
//!   replace the request's, and the key phase, the origin request and
//!   invalidation targets then use the rewritten request, while the
//!   behavior and origin stay those of the viewer's path (CloudFront: a
//!   changed `uri` "does not change the cache behavior or the origin"). A
//!   returned response is sent as is, never cached, with
//!   `X-Cache: FunctionGeneratedResponse from shardgate`.
//! - The viewer-response function runs on the response about to be sent
//!   (from the cache or the origin), except when its status is 400 or more
//!   ("CloudFront doesn't invoke edge functions for viewer response events
//!   when the origin returns HTTP status code 400 or higher"). It may change
//!   the status, headers and cookies (`Set-Cookie`); it never sees the
//!   body, and a `body` it returns is ignored. The response is the
//!   request's own copy (a stored object's headers are cloned per
//!   response), and its extensions (the cache phase) are kept.
//! - The method is read-only, and so are the headers that frame the message
//!   or belong to the edge (CloudFront's read-only and disallowed headers:
//!   `Host`, `Content-Length`, `Transfer-Encoding`, `Via`, `X-Cache`, the
//!   hop-by-hop fields, and `Content-Encoding` and `Warning` on a response):
//!   a function's change to them is not applied, so framing stays right.
//! - A call that fails (time or memory budget, an exception, an invalid
//!   return value) answers CloudFront's 503, with the access log's
//!   `x-edge-detailed-result-type` and `X-Cache` naming the error
//!   (`FunctionThrottledError` for a call stopped at its time budget,
//!   `FunctionValidationError` for an invalid return value,
//!   `FunctionExecutionError` otherwise), and counts in
//!   `shardgate_edge_function_errors_total{distribution, function,
//!   event_type, kind}`; every call counts in
//!   `shardgate_edge_function_invocations_total`.
//!
//! Sources: CloudFront Developer Guide, "CloudFront Functions event
//! structure", "Writing function code", "Restrictions on all edge
//! functions" (status codes, read-only and disallowed headers) and
//! "Monitoring CloudFront Functions" (invocations, validation, execution
//! errors and throttles).

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use shardgate_functions::event::Viewer;
use shardgate_functions::{
    self as functions, Event, EventContext, EventType, FieldValue, Fields, RequestOutcome, RunError, RunErrorKind,
};
use shardgate_snapshot::EdgeDistribution;
use shardgate_snapshot::edge::EdgeFunction;

use super::Ctx;
use crate::access_log::{ErrorDetail, Facts};
use crate::body::EdgeBody;
use crate::metrics::{FunctionErrorLabels, FunctionLabels, Label};
use crate::service::{ConnInfo, EdgeService};

/// `X-Cache` of a response a viewer-request function generated (CloudFront
/// sends `FunctionGeneratedResponse from cloudfront`).
const X_CACHE_GENERATED: &str = "FunctionGeneratedResponse from shardgate";

/// Bytes of a failed call's error (an exception's message) written to the
/// log: a function may throw a long string.
const MAX_LOGGED_ERROR: usize = 1024;

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Request headers a viewer-request function cannot change: CloudFront's
/// read-only headers of viewer-request events and the hop-by-hop fields.
fn request_read_only(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::VIA,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::EXPECT,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ]
    .contains(name)
}

/// Response headers a function cannot set: what frames the body (the edge
/// computes it), CloudFront's read-only headers of viewer-response events,
/// the edge's own `X-Cache` and `Via`, and the hop-by-hop fields.
fn response_read_only(name: &HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_ENCODING,
        header::WARNING,
        header::VIA,
        X_CACHE,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ]
    .contains(name)
}

/// Runs the viewer-request function of behavior `behavior_index` of `dist`
/// (if it has one) on the request: `None` to go on with `parts` as the
/// function left them, or the response to send (one the function
/// generated, or a 503 when it failed). `host` is the viewer's host that
/// chose the distribution.
pub(crate) fn viewer_request_function(
    svc: &EdgeService,
    dist: &EdgeDistribution,
    host: &str,
    behavior_index: usize,
    parts: &mut Parts,
    conn: ConnInfo,
    facts: &mut Facts,
) -> Option<Response<EdgeBody>> {
    let function = dist.functions.get(behavior_index)?.viewer_request.as_ref()?;
    let call = Call { svc, dist, function, event_type: EventType::ViewerRequest };
    let event = Event {
        context: call.context(host, facts),
        viewer: Viewer { ip: conn.client.ip().to_string() },
        request: request_event(&parts.method, parts.uri.path(), parts.uri.query(), &parts.headers, host),
        response: None,
    };
    let outcome = call.run(|f| functions::run_viewer_request(f, &event));
    let result = match outcome {
        Ok(RequestOutcome::Request(request)) => apply_request(parts, &event.request, request).map(|()| None),
        Ok(RequestOutcome::Response(response)) => generated(response).map(Some),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| Some(call.failed(&e)))
}

/// Runs the viewer-response function of the request's behavior (if it has
/// one) on `resp` before it is sent; a failed call replaces `resp` with a
/// 503 that keeps its extensions.
pub(crate) fn viewer_response_function(ctx: &Ctx, facts: &mut Facts, resp: &mut Response<EdgeBody>) {
    let Some(function) = ctx.dist.functions.get(ctx.behavior_index).and_then(|f| f.viewer_response.as_ref()) else {
        return;
    };
    if resp.status().as_u16() >= 400 {
        return;
    }
    let call = Call { svc: &ctx.svc, dist: &ctx.dist, function, event_type: EventType::ViewerResponse };
    let (path, query) = match ctx.viewer_target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (ctx.viewer_target.as_str(), None),
    };
    let before = response_event(resp);
    let event = Event {
        context: call.context(&ctx.viewer_host, facts),
        viewer: Viewer { ip: ctx.conn.client.ip().to_string() },
        request: request_event(&ctx.method, path, query, &ctx.req_headers, &ctx.viewer_host),
        response: Some(before),
    };
    let outcome = call.run(|f| functions::run_viewer_response(f, &event));
    let result = outcome.and_then(|after| match &event.response {
        Some(before) => apply_response(resp, before, after),
        None => Ok(()),
    });
    if let Err(e) = result {
        let extensions = std::mem::take(resp.extensions_mut());
        let mut failed = call.failed(&e);
        let detail = failed.extensions_mut().remove::<ErrorDetail>();
        *failed.extensions_mut() = extensions;
        if let Some(d) = detail {
            failed.extensions_mut().insert(d);
        }
        *resp = failed;
    }
}

/// One call of one function, for metrics and the error answer.
struct Call<'a> {
    svc: &'a EdgeService,
    dist: &'a EdgeDistribution,
    function: &'a EdgeFunction,
    event_type: EventType,
}

impl Call<'_> {
    fn context(&self, host: &str, facts: &mut Facts) -> EventContext {
        EventContext {
            distribution_domain_name: host.to_owned(),
            distribution_id: self.dist.id.as_str().to_owned(),
            request_id: self.svc.access_log.request_id(facts),
        }
    }

    /// Counts the call and runs it.
    fn run<T>(&self, call: impl FnOnce(&functions::CompiledFunction) -> Result<T, RunError>) -> Result<T, RunError> {
        let labels = FunctionLabels {
            distribution: Label(self.dist.id_label.clone()),
            function: Label(self.function.label.clone()),
            event_type: self.event_type.as_str(),
        };
        self.svc.metrics.function_invocations.get_or_create(&labels).inc();
        call(&self.function.compiled)
    }

    /// The 503 a failed call answers, counted and logged.
    fn failed(&self, e: &RunError) -> Response<EdgeBody> {
        let labels = FunctionErrorLabels {
            distribution: Label(self.dist.id_label.clone()),
            function: Label(self.function.label.clone()),
            event_type: self.event_type.as_str(),
            kind: e.kind.label(),
        };
        self.svc.metrics.function_errors.get_or_create(&labels).inc();
        let mut error = e.to_string();
        if error.len() > MAX_LOGGED_ERROR {
            let mut cut = MAX_LOGGED_ERROR;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push_str("...");
        }
        tracing::warn!(
            distribution = %self.dist.id,
            function = %self.function.id,
            event_type = self.event_type.as_str(),
            kind = e.kind.label(),
            error = %error,
            "function failed; the viewer gets a 503"
        );
        let detail = match e.kind {
            RunErrorKind::Timeout => "FunctionThrottledError",
            RunErrorKind::InvalidReturn { .. } => "FunctionValidationError",
            RunErrorKind::Memory | RunErrorKind::Exception { .. } => "FunctionExecutionError",
        };
        let message = format!(
            "503 Service Unavailable: the {} function of this cache behavior failed ({}).\n",
            self.event_type.as_str(),
            e.kind.label()
        );
        let mut resp = Response::new(EdgeBody::full(message));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let Ok(v) = HeaderValue::from_str(&format!("{detail} from shardgate")) {
            headers.insert(X_CACHE, v);
        }
        headers.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
        resp.extensions_mut().insert(ErrorDetail::error(detail));
        resp
    }
}

fn invalid(why: String) -> RunError {
    RunError { kind: RunErrorKind::InvalidReturn { why } }
}

/// A header value as the event shows it (text; bytes that are not UTF-8
/// replaced).
fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The event's `request`: `host` is added when the request has no `Host`
/// (HTTP/2 carries it as `:authority`).
fn request_event(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    host: &str,
) -> functions::Request {
    let mut fields = Fields::new();
    let mut cookies = Fields::new();
    if !headers.contains_key(header::HOST) {
        fields.append("host", FieldValue::new(host));
    }
    for (name, value) in headers {
        if name == header::COOKIE {
            for pair in String::from_utf8_lossy(value.as_bytes()).split(';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                cookies.append(n.trim(), FieldValue::new(v.trim()));
            }
        } else {
            fields.append(name.as_str(), FieldValue::new(text(value)));
        }
    }
    functions::Request {
        method: method.as_str().to_owned(),
        uri: path.to_owned(),
        querystring: parse_query(query),
        headers: fields,
        cookies,
    }
}

/// A query string as CloudFront's map: `name=value` pairs split on `&`,
/// values kept as sent (percent-encoded); a name without `=` has the value `""`.
fn parse_query(query: Option<&str>) -> Fields {
    let mut fields = Fields::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        fields.append(n, FieldValue::new(v));
    }
    fields
}

/// Appends `s`, percent-encoding each byte `keep` refuses (a `%` is kept,
/// so values that are already encoded stay as they are).
fn encode_into(out: &mut String, s: &str, keep: fn(u8) -> bool) {
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// RFC 3986 `pchar`s, `/` and `%`.
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)
}

/// Query characters (RFC 3986 §3.4) other than the separators `&` and `=`.
fn query_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$'()*+,;:@/?%".contains(&b)
}

/// Query characters other than `&`.
fn query_value_byte(b: u8) -> bool {
    query_name_byte(b) || b == b'='
}

fn build_query(fields: &Fields) -> String {
    let mut out = String::new();
    for (name, values) in fields.iter() {
        for v in values {
            if !out.is_empty() {
                out.push('&');
            }
            encode_into(&mut out, name, query_name_byte);
            out.push('=');
            encode_into(&mut out, &v.value, query_value_byte);
        }
    }
    out
}

fn header_name(name: &str, map: &str) -> Result<HeaderName, RunError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(format!("{map}['{name}']: {e}")))
}

fn header_value(value: &str, name: &str, map: &str) -> Result<HeaderValue, RunError> {
    HeaderValue::from_bytes(value.as_bytes()).map_err(|e| invalid(format!("{map}['{name}'].value: {e}")))
}

/// Applies a returned request to `parts`; `before` is the event's request.
fn apply_request(parts: &mut Parts, before: &functions::Request, after: functions::Request) -> Result<(), RunError> {
    if after.uri != before.uri || after.querystring != before.querystring {
        let mut target = String::with_capacity(after.uri.len() + 16);
        encode_into(&mut target, &after.uri, path_byte);
        let query = if after.querystring == before.querystring {
            parts.uri.query().map(str::to_owned)
        } else {
            Some(build_query(&after.querystring)).filter(|q| !q.is_empty())
        };
        if let Some(q) = query {
            target.push('?');
            target.push_str(&q);
        }
        let pq = PathAndQuery::try_from(target).map_err(|e| invalid(format!("request.uri: {e}")))?;
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = Some(pq);
        parts.uri = Uri::from_parts(uri).map_err(|e| invalid(format!("request.uri: {e}")))?;
    }
    if after.headers != before.headers || after.cookies != before.cookies {
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
        for (name, value) in &parts.headers {
            let keep = request_read_only(name) || (name == header::COOKIE && after.cookies == before.cookies);
            if keep {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, values) in after.headers.iter() {
            let name = header_name(name, "request.headers")?;
            if request_read_only(&name) || name == header::COOKIE {
                continue;
            }
            for v in values {
                headers.append(name.clone(), header_value(&v.value, name.as_str(), "request.headers")?);
            }
        }
        if after.cookies != before.cookies && !after.cookies.is_empty() {
            let mut line = String::new();
            for (name, values) in after.cookies.iter() {
                for v in values {
                    if !line.is_empty() {
                        line.push_str("; ");
                    }
                    line.push_str(name);
                    line.push('=');
                    line.push_str(&v.value);
                }
            }
            headers.insert(header::COOKIE, header_value(&line, "cookie", "request.cookies")?);
        }
        parts.headers = headers;
    }
    Ok(())
}

/// Statuses that carry no body (RFC 9110 §6.4.1).
fn bodiless(status: StatusCode) -> bool {
    status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

fn final_status(code: u16) -> Result<StatusCode, RunError> {
    match StatusCode::from_u16(code) {
        Ok(s) if s.as_u16() >= 200 => Ok(s),
        _ => Err(invalid(format!("response.statusCode {code} is not a final status (200 to 599)"))),
    }
}

/// The reason phrase of an HTTP/1.1 status line, when the function gave
/// one other than the status's own.
fn reason(resp: &mut Response<EdgeBody>, description: Option<&str>) {
    let Some(d) = description.filter(|d| Some(*d) != resp.status().canonical_reason()) else { return };
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(Bytes::copy_from_slice(d.as_bytes())) {
        resp.extensions_mut().insert(phrase);
    }
}

/// A `Set-Cookie` line of a response cookie.
fn set_cookie(name: &str, value: &FieldValue) -> String {
    let mut line = format!("{name}={}", value.value);
    if let Some(a) = value.attributes.as_deref().filter(|a| !a.is_empty()) {
        line.push_str("; ");
        line.push_str(a);
    }
    line
}

/// Adds a function's headers and cookies to `headers`, leaving out the ones
/// it cannot set.
fn add_response_fields(headers: &mut HeaderMap, after: &functions::Response, cookies: bool) -> Result<(), RunError> {
    for (name, values) in after.headers.iter() {
        let name = header_name(name, "response.headers")?;
        if response_read_only(&name) {
            continue;
        }
        for v in values {
            headers.append(name.clone(), header_value(&v.value, name.as_str(), "response.headers")?);
        }
    }
    if cookies {
        for (name, values) in after.cookies.iter() {
            for v in values {
                headers.append(header::SET_COOKIE, header_value(&set_cookie(name, v), name, "response.cookies")?);
            }
        }
    }
    Ok(())
}

/// The response a viewer-request function generated.
fn generated(out: functions::Response) -> Result<Response<EdgeBody>, RunError> {
    let status = final_status(out.status_code)?;
    let mut headers = HeaderMap::new();
    add_response_fields(&mut headers, &out, true)?;
    headers.insert(X_CACHE, HeaderValue::from_static(X_CACHE_GENERATED));
    headers.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
    // An empty body is `Empty` (it ends as soon as the head is written).
    let body = match out.body {
        Some(body) if !bodiless(status) && !body.as_bytes().is_empty() => EdgeBody::full(match body {
            functions::Body::Text(s) => Bytes::from(s),
            functions::Body::Binary(b) => Bytes::from(b),
        }),
        _ => EdgeBody::Empty,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    reason(&mut resp, out.status_description.as_deref());
    resp.extensions_mut().insert(ErrorDetail::FUNCTION_GENERATED);
    Ok(resp)
}

/// The event's `response`: status, headers other than `Set-Cookie`, and
/// the cookies of the `Set-Cookie` lines with their attributes.
fn response_event(resp: &Response<EdgeBody>) -> functions::Response {
    let mut headers = Fields::new();
    let mut cookies = Fields::new();
    for (name, value) in resp.headers() {
        if name == header::SET_COOKIE {
            let line = text(value);
            let (pair, attributes) = match line.split_once(';') {
                Some((p, a)) => (p, Some(a.trim().to_owned()).filter(|a| !a.is_empty())),
                None => (line.as_str(), None),
            };
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            cookies.append(n.trim(), FieldValue { value: v.trim().to_owned(), attributes });
        } else {
            headers.append(name.as_str(), FieldValue::new(text(value)));
        }
    }
    functions::Response {
        status_code: resp.status().as_u16(),
        status_description: resp.status().canonical_reason().map(str::to_owned),
        headers,
        cookies,
        body: None,
    }
}

/// Applies a viewer-response function's result to `resp`: status, reason,
/// headers and cookies; the body and the headers that frame it stay.
fn apply_response(
    resp: &mut Response<EdgeBody>,
    before: &functions::Response,
    after: functions::Response,
) -> Result<(), RunError> {
    if after.status_code != before.status_code {
        let status = final_status(after.status_code)?;
        *resp.status_mut() = status;
        if bodiless(status) {
            *resp.body_mut() = EdgeBody::Empty;
            resp.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    if after.status_description != before.status_description {
        reason(resp, after.status_description.as_deref());
    }
    if after.headers != before.headers || after.cookies != before.cookies {
        let cookies_changed = after.cookies != before.cookies;
        let old = std::mem::take(resp.headers_mut());
        let mut headers = HeaderMap::with_capacity(old.len() + 4);
        for (name, value) in &old {
            if response_read_only(name) || (name == header::SET_COOKIE && !cookies_changed) {
                headers.append(name.clone(), value.clone());
            }
        }
        add_response_fields(&mut headers, &after, cookies_changed)?;
        *resp.headers_mut() = headers;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_event_request_has_cloudfronts_maps() {
        let p = parts(
            "/a/b.file?x=1&y=2&x=3&flag",
            &[
                ("x-vendor-type", "a_vendor"),
                ("accept", "a"),
                ("accept", "b"),
                ("cookie", "s=1; t=2"),
                ("cookie", "s=3"),
            ],
        );
        let r = request_event(&p.method, p.uri.path(), p.uri.query(), &p.headers, "cdn.example.com");
        assert_eq!(r.uri, "/a/b.file");
        assert_eq!(r.querystring.get("x").map(<[_]>::len), Some(2));
        assert_eq!(r.querystring.first("flag"), Some(""));
        assert_eq!(r.headers.first("host"), Some("cdn.example.com"), "host from the authority");
        assert_eq!(r.headers.get("accept").map(<[_]>::len), Some(2));
        assert!(r.headers.get("cookie").is_none());
        assert_eq!(
            r.cookies.get("s").map(|v| v.iter().map(|v| v.value.as_str()).collect::<Vec<_>>()),
            Some(vec!["1", "3"])
        );
        assert_eq!(r.cookies.first("t"), Some("2"));
    }

    #[test]
    fn an_unchanged_request_is_left_as_it_is() {
        let mut p = parts("/a?b=%2F&&c", &[("x", "1"), ("cookie", "a=1;b=2")]);
        let before = request_event(&p.method, p.uri.path(), p.uri.query(), &p.headers, "h");
        let copy = p.headers.clone();
        apply_request(&mut p, &before, before.clone()).expect("applies");
        assert_eq!(p.uri, "/a?b=%2F&&c");
        assert_eq!(p.headers, copy);
    }

    #[test]
    fn a_rewritten_request_becomes_the_target_and_headers() {
        let mut p = parts("/example.file?keep=1", &[("host", "h"), ("x-vendor-type", "a"), ("content-length", "0")]);
        let before = request_event(&p.method, p.uri.path(), p.uri.query(), &p.headers, "h");
        let mut after = before.clone();
        after.uri = "/a_vendor/ex ample/文件".into();
        apply_request(&mut p, &before, after.clone()).expect("applies");
        assert_eq!(p.uri, "/a_vendor/ex%20ample/%E6%96%87%E4%BB%B6?keep=1", "query kept, bytes encoded");

        after.querystring = [("q", "a b&c")].into_iter().collect();
        after.headers.set("x-vendor-type", vec![]);
        after.headers.set("x-new", vec![FieldValue::new("1"), FieldValue::new("2")]);
        after.headers.set("content-length", vec![FieldValue::new("99")]);
        after.cookies = [("k", "v"), ("k", "w")].into_iter().collect();
        apply_request(&mut p, &before, after).expect("applies");
        assert_eq!(p.uri.query(), Some("q=a%20b%26c"));
        assert!(p.headers.get("x-vendor-type").is_none());
        assert_eq!(p.headers.get_all("x-new").iter().count(), 2);
        assert_eq!(p.headers["content-length"], "0", "read-only");
        assert_eq!(p.headers["host"], "h");
        assert_eq!(p.headers["cookie"], "k=v; k=w");
    }

    fn response(status: u16, headers: &[(&str, &'static str)]) -> Response<EdgeBody> {
        let mut r = Response::new(EdgeBody::full("body"));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        for (n, v) in headers {
            r.headers_mut().append(HeaderName::from_bytes(n.as_bytes()).expect("name"), HeaderValue::from_static(v));
        }
        r
    }

    #[test]
    fn a_viewer_response_function_changes_headers_not_framing() {
        let mut r = response(
            200,
            &[
                ("content-length", "4"),
                ("x-cache", "Hit from shardgate"),
                ("set-cookie", "a=1; Path=/"),
                ("etag", "\"e\""),
            ],
        );
        r.extensions_mut().insert(shardgate_cache::CachePhase::Hit);
        let before = response_event(&r);
        assert_eq!(before.cookies.get("a").map(|v| v[0].attributes.clone()), Some(Some("Path=/".to_owned())));
        let mut after = before.clone();
        after.headers.set("strict-transport-security", vec![FieldValue::new("max-age=63072000")]);
        after.headers.set("content-length", vec![FieldValue::new("1")]);
        after.headers.set("x-cache", vec![]);
        after.headers.set("etag", vec![]);
        after.body = Some(functions::Body::Text("ignored".into()));
        apply_response(&mut r, &before, after).expect("applies");
        assert_eq!(r.headers()["strict-transport-security"], "max-age=63072000");
        assert_eq!(r.headers()["content-length"], "4");
        assert_eq!(r.headers()["x-cache"], "Hit from shardgate");
        assert_eq!(r.headers()["set-cookie"], "a=1; Path=/", "cookies unchanged");
        assert!(r.headers().get("etag").is_none());
        assert_eq!(r.extensions().get::<shardgate_cache::CachePhase>(), Some(&shardgate_cache::CachePhase::Hit));
        assert!(matches!(r.body(), EdgeBody::Full(Some(b)) if b == "body"));

        let before = response_event(&r);
        let mut after = before.clone();
        after.status_code = 304;
        after.cookies = [("s", "x")].into_iter().collect();
        apply_response(&mut r, &before, after).expect("applies");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(matches!(r.body(), EdgeBody::Empty));
        assert!(r.headers().get("content-length").is_none());
        assert_eq!(r.headers()["set-cookie"], "s=x");

        let before = response_event(&r);
        let mut after = before.clone();
        after.status_code = 101;
        assert!(matches!(
            apply_response(&mut r, &before, after),
            Err(RunError { kind: RunErrorKind::InvalidReturn { .. } })
        ));
    }

    #[test]
    fn a_generated_response_is_framed_by_the_edge() {
        let out = functions::Response {
            status_code: 302,
            status_description: Some("Found".into()),
            headers: [("location", "https://example.com/"), ("content-length", "7")].into_iter().collect(),
            cookies: Fields::from_iter([("k", "v")]),
            body: None,
        };
        let r = generated(out).expect("valid");
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "https://example.com/");
        assert!(r.headers().get("content-length").is_none());
        assert_eq!(r.headers()["set-cookie"], "k=v");
        assert_eq!(r.headers()["x-cache"], X_CACHE_GENERATED);
        assert_eq!(r.extensions().get::<ErrorDetail>(), Some(&ErrorDetail::FUNCTION_GENERATED));
    }
}
