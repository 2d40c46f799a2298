//! The open-file budget of the process.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit (what
//! nginx's `worker_rlimit_nofile` and HAProxy do by themselves), then the
//! connection limit is sized from it: every proxied connection holds two
//! descriptors (the player's socket and the game server's), and a reserve
//! stays free for the Admin API, `/metrics` and `/readyz` (their own
//! connection caps), the store, cache files and origin fetches
//! (`limits.fd_reserve`). Without that
//! reserve a crowd of players reaching the open-file limit would make the
//! health endpoints stop answering, and a load balancer would take a
//! working gateway out of service.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors one proxied connection holds: the player's and the upstream's.
const FDS_PER_CONNECTION: u64 = 2;

/// What the open-file limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft open-file limit in force (after raising it), `None` if unlimited.
    pub nofile: Option<u64>,
    /// Connections to allow at once: the configured limit, or less.
    pub max_connections: usize,
}

impl FdBudget {
    /// Whether the configured connection limit had to be lowered.
    pub fn lowered(&self, configured: usize) -> bool {
        self.max_connections < configured
    }
}

/// Raises the soft open-file limit to the hard one (a failure is logged, the
/// current limit stays) and sizes the connection limit from it.
pub fn plan(configured: usize, reserve: usize) -> FdBudget {
    let limit = getrlimit(Resource::Nofile);
    let soft = if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit.maximum,
            Err(e) => {
                tracing::warn!(soft = ?limit.current, hard = ?limit.maximum, error = %e, "cannot raise the open-file limit to its hard limit");
                limit.current
            }
        }
    } else {
        limit.current
    };
    budget(soft, configured, reserve)
}

/// The connection limit `soft` descriptors allow (pure, for tests).
fn budget(soft: Option<u64>, configured: usize, reserve: usize) -> FdBudget {
    let max_connections = match soft {
        None => configured,
        Some(n) => {
            let allowed = n.saturating_sub(reserve as u64) / FDS_PER_CONNECTION;
            // Never zero: a gateway that accepts nobody is worse than one
            // that may hit the limit; the warning says what to raise.
            configured.min(usize::try_from(allowed).unwrap_or(usize::MAX)).max(1)
        }
    };
    FdBudget { nofile: soft, max_connections }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_per_connection_after_the_reserve() {
        assert_eq!(budget(Some(1024), 100_000, 256).max_connections, 384);
        assert_eq!(budget(Some(1_048_576), 100_000, 256).max_connections, 100_000);
        assert!(budget(Some(1024), 100_000, 256).lowered(100_000));
        assert!(!budget(None, 100_000, 256).lowered(100_000));
        assert_eq!(budget(Some(100), 10, 256).max_connections, 1, "never zero");
    }
}
