//! Phase "variant": which side of a continuous deployment policy (canary)
//! serves the request, the primary distribution or its staging one. The
//! choice itself is [`crate::canary::choose`]; this phase draws the random
//! number for weighted policies and records the side for the access log. A
//! request the edge makes itself for a cache warm names its side
//! ([`crate::warm::WarmRequest`], a request extension no viewer can set).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::request::Parts;
use shardgate_snapshot::EdgeDistribution;

use crate::access_log::Facts;
use crate::canary::{self, Variant};

/// The side that serves a request.
#[derive(Debug)]
pub(crate) struct Side {
    /// The distribution: the primary, or its staging distribution.
    pub(crate) dist: Arc<EdgeDistribution>,
    pub(crate) variant: Variant,
    /// The sticky-session cookie to set, if any.
    pub(crate) set_cookie: Option<String>,
}

/// Chooses the side of `primary` that serves `req`; `roll` is uniform in
/// [0, 1) ([`roll`]), `now_unix` the time in seconds. `facts` gets the
/// variant (on a distribution with a canary) and, for staging, the staging
/// distribution with the primary kept beside it.
pub(crate) fn variant(
    primary: Arc<EdgeDistribution>,
    req: &Parts,
    roll: f64,
    now_unix: u64,
    facts: &mut Facts,
) -> Side {
    let Some(c) = &primary.canary else {
        return Side { dist: primary, variant: Variant::Primary, set_cookie: None };
    };
    let choice = match req.extensions.get::<crate::warm::WarmRequest>() {
        // A cache warm's side, without a session cookie.
        Some(warm) => canary::Choice { variant: warm.variant, set_cookie: None },
        None => canary::choose(c, &req.headers, roll, now_unix),
    };
    facts.variant = Some(choice.variant.as_str());
    let dist = if choice.variant == Variant::Staging {
        let staging = Arc::clone(&c.staging);
        facts.primary = facts.distribution.replace(Arc::clone(&staging.id_label));
        staging
    } else {
        primary
    };
    Side { dist, variant: choice.variant, set_cookie: choice.set_cookie }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A uniform number in [0, 1) for weighted canary choices (splitmix64 over
/// a shared counter: cheap, lock-free, not for secrets).
pub(crate) fn roll() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    if z == 0 {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        STATE.store(seed, Ordering::Relaxed);
        z = seed;
    }
    (splitmix64(z) >> 11) as f64 / (1u64 << 53) as f64
}

/// splitmix64's finalizer (Steele, Lea and Flood, "Fast Splittable
/// Pseudorandom Number Generators", OOPSLA 2014): a bijection on `u64` that
/// spreads every input bit. Used for canary rolls and access-log request ids.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_is_the_reference_finalizer() {
        // The reference generator's first output from state 0 (its state
        // steps by the golden gamma before the finalizer runs).
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0), 0);
    }

    #[test]
    fn rolls_are_in_the_unit_interval() {
        for _ in 0..1000 {
            let r = roll();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}
