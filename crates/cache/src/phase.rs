//! [`CachePhase`]: how the cache answered one request, in the two spellings
//! the edge reports it: the `X-Cache` response header (CloudFront's values,
//! e.g. `Hit from cloudfront`, with this gateway's name) and the `cache`
//! label of `shardgate_edge_requests_total` (also the request span's
//! `shardgate.cache` field).

/// How the cache answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CachePhase {
    /// Served from a fresh stored object (or from a fetch this request
    /// waited for: CloudFront counts collapsed requests as hits).
    Hit,
    /// Served from a stored object after the origin confirmed it (a 304),
    /// or from a refresh another request made.
    RefreshHit,
    /// Served from a stale object: within `stale-while-revalidate`, or
    /// within `stale-if-error` when the origin failed (RFC 5861).
    StaleHit,
    /// Fetched from the origin and stored.
    Miss,
    /// Fetched from the origin and passed through without being stored.
    Pass,
    /// No response from the cache or the origin: the edge answered with an error.
    Error,
}

impl CachePhase {
    /// The `X-Cache` value. A response passed through without being
    /// stored is a miss to the viewer, as in CloudFront.
    pub const fn x_cache(self) -> &'static str {
        match self {
            CachePhase::Hit => "Hit from shardgate",
            CachePhase::RefreshHit => "RefreshHit from shardgate",
            CachePhase::StaleHit => "StaleHit from shardgate",
            CachePhase::Miss | CachePhase::Pass => "Miss from shardgate",
            CachePhase::Error => "Error from shardgate",
        }
    }

    /// The metric label (`cache` of `shardgate_edge_requests_total`).
    pub const fn label(self) -> &'static str {
        match self {
            CachePhase::Hit => "hit",
            CachePhase::RefreshHit => "refresh_hit",
            CachePhase::StaleHit => "stale_hit",
            CachePhase::Miss => "miss",
            CachePhase::Pass => "pass",
            CachePhase::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CachePhase::{self, *};

    #[test]
    fn each_phase_has_its_header_and_label() {
        let table: [(CachePhase, &str, &str); 6] = [
            (Hit, "Hit from shardgate", "hit"),
            (RefreshHit, "RefreshHit from shardgate", "refresh_hit"),
            (StaleHit, "StaleHit from shardgate", "stale_hit"),
            (Miss, "Miss from shardgate", "miss"),
            (Pass, "Miss from shardgate", "pass"),
            (Error, "Error from shardgate", "error"),
        ];
        for (phase, x_cache, label) in table {
            assert_eq!(phase.x_cache(), x_cache, "{phase:?}");
            assert_eq!(phase.label(), label, "{phase:?}");
        }
    }
}
