//! The viewer's request body before the origin phase: methods other than
//! GET and HEAD carry one. A `Content-Length` above
//! [`MAX_REQUEST_BODY_BYTES`] is refused (413) at once. When a web ACL
//! inspects the request, the first bytes (at most AWS WAF's body inspection
//! limit for CloudFront, 16 KB; `OversizeHandling` applies beyond it) are
//! read first, within [`REQUEST_BODY_IDLE_TIMEOUT`]; the rest stays in the
//! connection until the origin request streams it ([`Upload`]).

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Refused, ViewerBody};
use crate::origin::upload::{MAX_REQUEST_BODY_BYTES, REQUEST_BODY_IDLE_TIMEOUT, Upload};

/// A request body, partly read.
#[derive(Debug)]
pub(crate) struct ViewerUpload {
    /// Whether the method forwards a body (all but GET and HEAD).
    forwards: bool,
    prefix: BytesMut,
    /// The unread rest; `None` once the body ended (or for none at all).
    rest: Option<Incoming>,
    length: Option<u64>,
}

impl ViewerUpload {
    /// Takes the body of a request with head `parts`.
    pub(crate) fn start(body: ViewerBody, parts: &Parts) -> Result<Self, Refused> {
        let forwards = parts.method != Method::GET && parts.method != Method::HEAD;
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if forwards && length.is_some_and(|n| n > MAX_REQUEST_BODY_BYTES) {
            return Err(Refused::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {MAX_REQUEST_BODY_BYTES} bytes"),
            ));
        }
        let rest = match body {
            ViewerBody::Empty => None,
            ViewerBody::Incoming(b) => Some(b),
        };
        Ok(ViewerUpload { forwards, prefix: BytesMut::new(), rest, length })
    }

    /// Reads the first `max` bytes of the body (fewer if it ends first):
    /// what the web ACL inspects, and whether the body holds more.
    pub(crate) async fn inspect(&mut self, max: usize) -> Result<(&[u8], bool), Refused> {
        if !self.forwards {
            return Ok((b"", false));
        }
        while self.prefix.len() <= max {
            let Some(rest) = &mut self.rest else { break };
            match tokio::time::timeout(REQUEST_BODY_IDLE_TIMEOUT, rest.frame()).await {
                Err(_) => {
                    return Err(Refused::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!("no request body bytes for {REQUEST_BODY_IDLE_TIMEOUT:?}"),
                    ));
                }
                Ok(None) => self.rest = None,
                Ok(Some(Err(e))) => {
                    return Err(Refused::new(StatusCode::BAD_REQUEST, "bad_body", format!("request body: {e}")));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.prefix.extend_from_slice(&data);
                    }
                }
            }
        }
        let more = self.prefix.len() > max || self.rest.is_some();
        Ok((&self.prefix[..self.prefix.len().min(max)], more))
    }

    /// The body for the origin request: `None` for GET and HEAD.
    pub(crate) fn into_upload(self) -> Option<Upload> {
        if !self.forwards {
            return None;
        }
        let prefix: Bytes = self.prefix.freeze();
        Some(Upload::new(prefix, self.rest, self.length))
    }
}
