//! Phase "web ACL": the distribution's AWS WAF web ACL inspects the
//! request; it blocks it (CloudFront's answer: the block response, marked
//! as an error), or lets it through with the headers it inserts into the
//! origin request. Counters, samples for the Admin API and the access
//! log's WAF fields are recorded here.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use shardgate_cache::CachePhase;
use shardgate_snapshot::CompiledAcl;
use shardgate_waf::{Action as WafAction, RequestView, Sample, Samples};

use crate::access_log::{ErrorDetail, Facts};
use crate::body::EdgeBody;
use crate::metrics::{Label, WafLabels};
use crate::service::{ConnInfo, EdgeService};

/// Runs `waf` on the request: the headers it inserts into the origin
/// request when it lets the request through, the response when it blocks.
pub(crate) fn web_acl(
    svc: &EdgeService,
    waf: &CompiledAcl,
    req: &Parts,
    body: (&[u8], bool),
    conn: ConnInfo,
    facts: &mut Facts,
) -> Result<Vec<(HeaderName, HeaderValue)>, Box<Response<EdgeBody>>> {
    let view = RequestView {
        method: req.method.as_str(),
        uri_path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        headers: &req.headers,
        // The first bytes of the body (none for GET and HEAD), and whether
        // it holds more (`OversizeHandling`).
        body,
        client_ip: conn.client.ip(),
        tls: conn.tls.as_ref(),
    };
    let verdict = waf.acl.evaluate(&view);
    let count = |rule: &Arc<str>, action: &'static str| {
        let labels = WafLabels { web_acl: Label(Arc::clone(&waf.id_label)), rule: Label(Arc::clone(rule)), action };
        svc.metrics.waf.get_or_create(&labels).inc();
    };
    for rule in &verdict.counted {
        count(rule, "count");
        if waf.acl.sampled(Some(rule)) {
            sample(svc, waf, req, conn, "COUNT", Some(rule), &verdict.labels);
        }
    }
    let (action, blocked) = match &verdict.action {
        WafAction::Allow => ("allow", None),
        WafAction::Block(b) => ("block", Some(b)),
    };
    static DEFAULT: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    let rule_label = verdict.rule.clone().unwrap_or_else(|| Arc::clone(DEFAULT.get_or_init(|| Arc::from("default"))));
    count(&rule_label, action);
    facts.waf = Some((action, Arc::clone(&rule_label)));
    if waf.acl.sampled(verdict.rule.as_deref()) {
        let upper = if blocked.is_some() { "BLOCK" } else { "ALLOW" };
        sample(svc, waf, req, conn, upper, verdict.rule.as_ref(), &verdict.labels);
    }
    let Some(b) = blocked else { return Ok(verdict.request_headers) };
    tracing::info!(web_acl = %waf.id, rule = %rule_label, client = %conn.client, path = %req.uri.path(), "request blocked by the web ACL");
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
    svc: &EdgeService,
    waf: &CompiledAcl,
    req: &Parts,
    conn: ConnInfo,
    action: &'static str,
    rule: Option<&Arc<str>>,
    labels: &[Arc<str>],
) {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    svc.samples.record_with(waf.id.as_str(), timestamp, || Sample {
        request: shardgate_waf::sample::SampleRequest {
            client_ip: conn.client.ip().to_string(),
            country: svc
                .geo
                .as_ref()
                .and_then(|g| g.country(conn.client.ip()))
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
            uri: shardgate_waf::sample::cut(req.uri.path_and_query().map_or(req.uri.path(), |p| p.as_str()), 2048),
            method: req.method.to_string(),
            headers: Samples::headers(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))),
        },
        weight: 1,
        timestamp,
        action,
        rule: rule.map(|r| r.to_string()),
        labels: labels.iter().map(|l| shardgate_waf::sample::SampleLabel { name: l.to_string() }).collect(),
    });
}
