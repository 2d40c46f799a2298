//! The first phases: the viewer's input checked and normalised, the host
//! that routes the request, the distribution serving that host, and the
//! methods served.

use std::sync::Arc;

use http::header;
use http::request::Parts;
use http::{HeaderMap, Method, Request, StatusCode};
use shardgate_model::edge::AllowedMethods;
use shardgate_snapshot::{EdgeDistribution, Snapshot};

use super::Refused;
use crate::key;

/// Phase "viewer input": Host lines and the path are checked and the path
/// normalised in place, before routing, the web ACL, the cache key or the
/// origin read them (see [`key::check_viewer_input`]).
pub(crate) fn viewer_input(parts: &mut Parts) -> Result<(), Refused> {
    // `check_viewer_input` reads a request; lending it the parts moves
    // them in and out, without a copy.
    let mut req = Request::from_parts(std::mem::replace(parts, Request::new(()).into_parts().0), ());
    let checked = key::check_viewer_input(&mut req);
    *parts = req.into_parts().0;
    checked.map_err(|r| Refused::new(StatusCode::BAD_REQUEST, r.reason, r.message))
}

/// Phase "route": the distribution serving the request's host, and that
/// host (lower case).
pub(crate) fn route(snapshot: &Snapshot, parts: &Parts) -> Result<(Arc<EdgeDistribution>, String), Refused> {
    let Some(host) = routing_host(parts) else {
        return Err(Refused::new(StatusCode::BAD_REQUEST, "no_host", "the request names no host".into()));
    };
    match snapshot.edge.find(&host) {
        Some(dist) => Ok((Arc::clone(dist), host)),
        None => Err(Refused::new(StatusCode::NOT_FOUND, "unknown_host", format!("no distribution serves host {host}"))),
    }
}

/// Phase "method", once the behavior is known: whether the request is a
/// HEAD (`true`); a method the behavior's `allowed_methods` leaves out is
/// refused with CloudFront's answer.
pub(crate) fn allowed_method(method: &Method, allowed: AllowedMethods) -> Result<bool, Refused> {
    match *method {
        Method::HEAD => Ok(true),
        _ if allowed.allows(method.as_str()) => Ok(false),
        _ => Err(Refused::new(
            StatusCode::FORBIDDEN,
            "method",
            format!("this distribution is not configured to allow the HTTP request method {method}"),
        )),
    }
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
pub(crate) fn routing_host(parts: &Parts) -> Option<String> {
    let host = std::str::from_utf8(request_host(&parts.uri, &parts.headers)?).ok()?;
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn host(uri: &str, host_header: Option<&str>) -> Option<String> {
        let uri: http::Uri = uri.parse().expect("uri");
        let mut headers = HeaderMap::new();
        if let Some(h) = host_header {
            headers.insert(header::HOST, HeaderValue::from_str(h).expect("value"));
        }
        request_host(&uri, &headers).map(|h| String::from_utf8_lossy(h).into_owned())
    }

    fn parts(uri: &str, host_header: Option<&str>) -> Parts {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host_header {
            b = b.header(header::HOST, h);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_request_host_never_carries_user_information() {
        assert_eq!(host("http://user:pass@A.example:8080/x", None).as_deref(), Some("A.example"));
        assert_eq!(host("http://user@a.example/x", Some("b.example")).as_deref(), Some("a.example"), "authority wins");
        assert_eq!(host("/x", Some("user:pass@a.example:80")).as_deref(), Some("a.example"));
        assert_eq!(host("/x", Some("user:pass@a.example")).as_deref(), Some("a.example"));
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

    #[test]
    fn the_routing_host_is_lower_case() {
        assert_eq!(routing_host(&parts("/x", Some("Game.EXAMPLE:8080"))).as_deref(), Some("game.example"));
        assert_eq!(routing_host(&parts("/x", None)), None);
    }

    #[test]
    fn an_empty_snapshot_routes_nothing() {
        let snapshot = Snapshot::default();
        let refused = route(&snapshot, &parts("/x", Some("a.example"))).expect_err("no distribution");
        assert_eq!((refused.status, refused.reason), (StatusCode::NOT_FOUND, "unknown_host"));
        assert_eq!(refused.message, "no distribution serves host a.example");
        let refused = route(&snapshot, &parts("/x", None)).expect_err("no host");
        assert_eq!((refused.status, refused.reason), (StatusCode::BAD_REQUEST, "no_host"));
    }

    #[test]
    fn viewer_input_normalises_the_path_in_place_and_refuses_bad_hosts() {
        let mut p = parts("/a/./b/../c", Some("a.example"));
        viewer_input(&mut p).expect("valid");
        assert_eq!(p.uri.path(), "/a/c");
        assert_eq!(p.headers.get(header::HOST).map(HeaderValue::as_bytes), Some(&b"a.example"[..]), "kept");
        let mut p = parts("/x", Some("a b"));
        let refused = viewer_input(&mut p).expect_err("invalid Host");
        assert_eq!((refused.status, refused.reason), (StatusCode::BAD_REQUEST, "bad_host"));
    }

    #[test]
    fn only_get_and_head_are_served() {
        assert_eq!(allowed_method(&Method::GET, AllowedMethods::GetHead), Ok(false));
        assert_eq!(allowed_method(&Method::HEAD, AllowedMethods::GetHead), Ok(true));
        let refused = allowed_method(&Method::POST, AllowedMethods::GetHead).expect_err("POST");
        assert_eq!((refused.status, refused.reason), (StatusCode::FORBIDDEN, "method"));
        assert_eq!(refused.message, "this distribution is not configured to allow the HTTP request method POST");
    }

    #[test]
    fn a_behavior_allowing_all_seven_methods_serves_them() {
        for m in [Method::OPTIONS, Method::PUT, Method::PATCH, Method::POST, Method::DELETE] {
            assert_eq!(allowed_method(&m, AllowedMethods::All), Ok(false), "{m}");
        }
        assert_eq!(allowed_method(&Method::OPTIONS, AllowedMethods::GetHeadOptions), Ok(false));
        assert!(allowed_method(&Method::PUT, AllowedMethods::GetHeadOptions).is_err());
        assert!(allowed_method(&Method::TRACE, AllowedMethods::All).is_err(), "not one of CloudFront's seven");
    }
}
