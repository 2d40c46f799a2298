//! How a failed etcd RPC becomes a [`StoreError`], and whether it may be
//! retried.
//!
//! etcd reports availability problems (no leader, leader changed, request
//! timed out, a member stopping) as gRPC `UNAVAILABLE` (etcd's
//! `api/v3rpc/rpctypes/error.go`), and the transport reports a connection
//! that failed or broke the same way: those are
//! [`StoreError::Unavailable`]. Everything else etcd refuses (bad
//! credentials, permission denied, a request too large, a full database)
//! retrying cannot fix: [`StoreError::Backend`] with etcd's words.

use shardgate_store::StoreError;
use tonic::Code;

/// Whether a request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A read (or a lease grant): safe to repeat on any availability error.
    Repeatable,
    /// A write: repeated only when it surely never reached etcd (no
    /// connection could be made), so it is never applied twice.
    NotSent,
}

/// What one failed attempt means.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The error to report if no retry succeeds.
    pub error: StoreError,
    /// Whether this attempt may be made again.
    pub retry: bool,
}

/// Everything the error says, outermost first, without repeats or
/// wrapper-only words ("transport error"), e.g. `tcp connect error:
/// Connection refused (os error 111)`.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = match err.downcast_ref::<tonic::Status>() {
            Some(status) => status.message().to_owned(),
            None => err.to_string(),
        };
        let text = text.trim().to_owned();
        if !text.is_empty() && text != "transport error" && !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Whether the error chain shows the request never left the client: the
/// connection could not be made.
fn not_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        if err.to_string() == "tcp connect error" {
            return true;
        }
        next = err.source();
    }
    false
}

/// The TLS failure in the chain, if any (a certificate etcd or we do not
/// trust): a setting to fix, not an outage.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    // A TLS alert etcd sends after the handshake (it refused our client
    // certificate) reaches us through HTTP/2 as text only.
    let text = describe(e);
    if text.contains("received fatal alert") {
        return Some(format!("{text} (etcd refused this client: check tls.cert and tls.key)"));
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // tokio-rustls wraps it in an io::Error, whose `source` skips it.
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        next = err.source();
    }
    None
}

/// Context for errors: what was being done, and as which user.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    /// e.g. `put /apisix/ssls/1`.
    pub op: &'a str,
    /// Every endpoint, comma-separated.
    pub endpoints: &'a str,
    /// The etcd user, if any.
    pub user: Option<&'a str>,
}

impl Context<'_> {
    fn unavailable(&self, reason: String) -> StoreError {
        StoreError::Unavailable { endpoints: self.endpoints.to_owned(), reason: format!("{}: {reason}", self.op) }
    }

    fn backend(&self, reason: String) -> StoreError {
        StoreError::Backend { context: format!("etcd {}", self.op), reason }
    }

    /// The error for an attempt that did not answer within `timeout`.
    pub fn timed_out(&self, timeout: std::time::Duration, last: Option<&StoreError>) -> StoreError {
        let last = match last {
            Some(StoreError::Unavailable { reason, .. }) => format!(" (before that: {reason})"),
            Some(other) => format!(" (before that: {other})"),
            None => String::new(),
        };
        StoreError::Unavailable {
            endpoints: self.endpoints.to_owned(),
            reason: format!("{}: timed out after {timeout:?}{last}", self.op),
        }
    }

    /// What a failed attempt means under `retry`.
    pub fn classify(&self, e: etcd_client::Error, retry: Retry) -> Failure {
        match e {
            etcd_client::Error::GRpcStatus(status) => self.status(&status, retry),
            etcd_client::Error::TransportError(t) => {
                if let Some(tls) = tls_failure(&t) {
                    return Failure { error: self.backend(format!("TLS with etcd failed: {tls}")), retry: false };
                }
                Failure { retry: retry == Retry::Repeatable || not_sent(&t), error: self.unavailable(describe(&t)) }
            }
            etcd_client::Error::IoError(io) => {
                Failure { retry: retry == Retry::Repeatable || not_sent(&io), error: self.unavailable(describe(&io)) }
            }
            etcd_client::Error::WatchError(msg) => Failure { error: self.unavailable(msg), retry: false },
            other => Failure { error: self.backend(describe(&other)), retry: false },
        }
    }

    fn status(&self, status: &tonic::Status, retry: Retry) -> Failure {
        let message = status.message();
        let user = self.user.unwrap_or("(none)");
        let refused = |reason: String| Failure { error: self.backend(reason), retry: false };
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled | Code::Unknown => {
                if let Some(tls) = tls_failure(status) {
                    return refused(format!("TLS with etcd failed: {tls}"));
                }
                let retry = retry == Retry::Repeatable || not_sent(status);
                Failure { error: self.unavailable(describe(status)), retry }
            }
            // etcd's ErrGRPCAuthFailed, ErrGRPCInvalidAuthToken, ErrGRPCUserEmpty.
            _ if message.contains("authentication failed") => Failure {
                error: StoreError::Backend {
                    context: format!("etcd authentication as user {user:?}"),
                    reason: format!("authentication failed: wrong user name or password ({message})"),
                },
                retry: false,
            },
            _ if message.contains("user name is empty") => {
                refused(format!("etcd has authentication enabled: set the etcd user and password ({message})"))
            }
            _ if message.contains("authentication is not enabled") => {
                refused(format!("a user is set but etcd has authentication disabled ({message})"))
            }
            // etcd's ErrGRPCRequestTooLarge, or gRPC's own receive limit
            // (--max-request-bytes plus 512 KiB) for larger requests.
            _ if message.contains("request is too large") || message.contains("received message larger than max") => {
                refused(format!("the request is larger than etcd accepts (its --max-request-bytes): {message}"))
            }
            Code::PermissionDenied => refused(format!("permission denied for etcd user {user:?} ({message})")),
            Code::Unauthenticated => refused(format!("etcd refused the credentials of user {user:?} ({message})")),
            Code::OutOfRange | Code::ResourceExhausted if message.contains("message length too large") => refused(
                format!("etcd's answer is larger than the limit; raise store.etcd.max_response_bytes ({message})"),
            ),
            _ => refused(format!("{message} (gRPC {:?})", status.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const CTX: Context<'static> =
        Context { op: "put /apisix/ssls/1", endpoints: "http://a:1,http://b:2", user: Some("root") };

    fn status(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    fn refused_connect() -> etcd_client::Error {
        let mut s = tonic::Status::unavailable("tcp connect error");
        s.set_source(Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
        etcd_client::Error::GRpcStatus(s)
    }

    #[test]
    fn a_refused_connection_is_retried_even_for_writes() {
        let f = CTX.classify(refused_connect(), Retry::NotSent);
        assert!(f.retry);
        match f.error {
            StoreError::Unavailable { endpoints, reason } => {
                assert_eq!(endpoints, "http://a:1,http://b:2");
                assert!(reason.starts_with("put /apisix/ssls/1: tcp connect error: "), "{reason}");
                assert!(reason.to_lowercase().contains("connection refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_outage_after_sending_retries_reads_only() {
        for message in ["etcdserver: leader changed", "etcdserver: request timed out", "etcdserver: no leader"] {
            assert!(!CTX.classify(status(Code::Unavailable, message), Retry::NotSent).retry, "{message}");
            let f = CTX.classify(status(Code::Unavailable, message), Retry::Repeatable);
            assert!(f.retry, "{message}");
            assert!(matches!(f.error, StoreError::Unavailable { ref reason, .. } if reason.contains(message)));
        }
    }

    #[test]
    fn refusals_are_backend_errors_that_say_why() {
        let cases = [
            (
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
                "wrong user name or password",
            ),
            (Code::PermissionDenied, "etcdserver: permission denied", "permission denied for etcd user \"root\""),
            (Code::InvalidArgument, "etcdserver: request is too large", "larger than etcd accepts"),
            (Code::InvalidArgument, "etcdserver: user name is empty", "set the etcd user and password"),
            (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded", "database space exceeded"),
        ];
        for (code, message, expected) in cases {
            let f = CTX.classify(status(code, message), Retry::Repeatable);
            assert!(!f.retry, "{message}");
            let shown = f.error.to_string();
            assert!(matches!(f.error, StoreError::Backend { .. }), "{message}: {shown}");
            assert!(shown.contains(expected), "{message}: {shown}");
        }
    }
}
