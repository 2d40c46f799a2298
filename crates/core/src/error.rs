//! The vocabulary shared by data-plane errors: which side of the proxy failed.
//!
//! Crates define their own `thiserror` enums; they use [`ErrorSource`] to say
//! where an error came from, which decides the metric label, the log level and
//! whether the operation may be retried on another peer.

use std::fmt;

/// Which side of the proxy an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// The client (player) side: bad handshake, reset, timeout while reading from it.
    Downstream,
    /// The server (game server or origin) side: refused, reset, timed out.
    Upstream,
    /// shardgate itself: configuration missing, resource exhausted.
    Internal,
}

impl ErrorSource {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Downstream => "downstream",
            ErrorSource::Upstream => "upstream",
            ErrorSource::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
