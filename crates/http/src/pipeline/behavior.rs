//! Phases "behavior" and "key": the cache behavior whose path pattern
//! matches the viewer's path (first match in precedence order, else the
//! default behavior) with its cache policy; then, from the request as the
//! viewer-request function left it, the channel rewrite, the query string
//! and cookies the policy keeps, the origin's target and the cache key.

use std::sync::Arc;

use http::StatusCode;
use http::request::Parts;
use shardgate_model::CachePolicy;
use shardgate_model::edge::Behavior;
use shardgate_snapshot::EdgeDistribution;

use super::Refused;
use crate::key;
use crate::metrics::Label;

/// The behavior serving a request.
#[derive(Debug)]
pub(crate) struct Chosen<'a> {
    pub(crate) behavior: &'a Behavior,
    pub(crate) policy: &'a Arc<CachePolicy>,
    /// Index in `dist.config.behaviors`; its length is the default behavior.
    pub(crate) index: usize,
    /// The behavior's metric label (its path pattern, or `default`).
    pub(crate) label: Label,
}

/// Phase "behavior": the behavior of `dist` for the viewer's `path`.
pub(crate) fn behavior<'a>(dist: &'a EdgeDistribution, path: &str) -> Chosen<'a> {
    let (behavior, policy, index) = dist.behavior_for(path);
    let label = Label(dist.behavior_labels.get(index).cloned().unwrap_or_else(|| Arc::from("default")));
    Chosen { behavior, policy, index, label }
}

/// The behavior at `index` of `dist` (as [`Chosen::index`]): one of its
/// path-pattern behaviors, or the default one.
pub(crate) fn behavior_at(dist: &EdgeDistribution, index: usize) -> &Behavior {
    dist.config.behaviors.get(index).unwrap_or(&dist.config.default_behavior)
}

/// Before the key phase: the viewer's `CloudFront-*` and `X-Amz-Cf-*`
/// headers are dropped (only the edge makes them: a viewer must not forge
/// one into a cache key or an origin request), and those of
/// [`shardgate_model::edge::CLOUDFRONT_HEADERS`] the cache policy keys on
/// are set to the edge's values, so the key holds what the origin gets.
pub(crate) fn edge_made(parts: &mut Parts, policy: &CachePolicy, conn: &crate::service::ConnInfo) {
    let forged: Vec<http::HeaderName> =
        parts.headers.keys().filter(|n| shardgate_model::edge::edge_reserved(n.as_str())).cloned().collect();
    for name in forged {
        parts.headers.remove(name);
    }
    for name in &policy.headers {
        if let Some(value) = super::fetch::edge_header_value(name, conn, parts.version)
            && let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
        {
            parts.headers.insert(n, v);
        }
    }
}

/// What the key phase derives from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyed {
    /// The cache key (see [`key::cache_key`]).
    pub(crate) key: String,
    /// The viewer's path and query, for invalidations.
    pub(crate) viewer_target: String,
    /// The origin's path (after the channel rewrite) and the query the
    /// policy keeps, without the origin's `origin_path`.
    pub(crate) origin_target: String,
    /// The cookies the policy keys on, `name=value`, forwarded to the origin.
    pub(crate) cookies: Vec<String>,
}

/// Phase "key": the targets and the cache key of a request to the
/// distribution `namespace` served by `behavior` with `policy`. A channel
/// header that cannot be a path segment is refused (`bad_channel`).
pub(crate) fn key(namespace: &str, behavior: &Behavior, policy: &CachePolicy, parts: &Parts) -> Result<Keyed, Refused> {
    let path = parts.uri.path();
    let (origin_path, channel) = key::rewrite_path(behavior.rewrite.as_ref(), &parts.headers, path)
        .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, "bad_channel", e.to_string()))?;
    let query = key::filtered_query(&policy.query_strings, parts.uri.query());
    let cookies = key::filtered_cookies(&policy.cookies, &parts.headers);
    let origin_target = match &query {
        Some(q) => format!("{origin_path}?{q}"),
        None => origin_path,
    };
    let viewer_target = parts.uri.path_and_query().map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let channel_pair =
        behavior.rewrite.as_ref().zip(channel.as_deref()).map(|(r, c)| (r.path_prefix_from_header.as_str(), c));
    let key = key::cache_key(namespace, &origin_target, policy, &parts.headers, channel_pair, &cookies);
    Ok(Keyed { key, viewer_target, origin_target, cookies })
}
