//! Which side of a continuous deployment policy serves a request (Amazon
//! CloudFront Developer Guide, "Use CloudFront continuous deployment to
//! safely test CDN configuration changes", and the API reference's
//! `ContinuousDeploymentPolicyConfig`):
//!
//! - `single_header`: the request carries the header with exactly the value;
//! - `single_weight`: a share of requests. With session stickiness, a viewer
//!   stays on its side: by a cookie (CloudFront's way; its name is not
//!   documented, shardgate's is [`COOKIE`]) that expires after `idle_ttl`
//!   without requests and `maximum_ttl` after the session began, or by a
//!   configured header such as a player id, hashed with the policy so the
//!   same player always lands on the same side without any state.
//!
//! Sessions reset when the policy changes (CloudFront resets them when the
//! policy is enabled, disabled or its stickiness changes): the cookie names
//! the policy revision it was issued under.

use http::HeaderMap;
use shardgate_model::edge::Traffic;
use shardgate_snapshot::Canary;

/// The stickiness cookie.
pub const COOKIE: &str = "shardgate-cd";

/// The side that serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The primary distribution.
    Primary,
    /// The staging distribution.
    Staging,
}

impl Variant {
    /// The label used in the response header and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Primary => "primary",
            Variant::Staging => "staging",
        }
    }
}

/// The decision, and the cookie to set on the response, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The side.
    pub variant: Variant,
    /// A `Set-Cookie` value that starts or extends the session.
    pub set_cookie: Option<String>,
}

fn hash_share(policy: &str, revision: u64, key: &[u8]) -> f64 {
    let mut h = crc32fast::Hasher::new();
    h.update(policy.as_bytes());
    h.update(&revision.to_be_bytes());
    h.update(key);
    // Spread the CRC through a multiplicative mix: CRC alone is linear and
    // clusters on ids that differ in one digit.
    let mixed = (u64::from(h.finalize()) ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v)
}

/// Chooses the side for a request. `roll` is a uniform number in [0, 1)
/// used when the request has no session; `now` is seconds since the epoch.
pub fn choose(canary: &Canary, headers: &HeaderMap, roll: f64, now: u64) -> Choice {
    match &canary.traffic {
        Traffic::Header { name, value } => {
            let staging = headers.get_all(name.as_str()).iter().any(|v| v.as_bytes() == value.as_bytes());
            Choice { variant: if staging { Variant::Staging } else { Variant::Primary }, set_cookie: None }
        }
        Traffic::Weight { weight, stickiness } => {
            let pick = |share: f64| if share < *weight { Variant::Staging } else { Variant::Primary };
            let Some(sticky) = stickiness else { return Choice { variant: pick(roll), set_cookie: None } };
            if let Some(header) = &sticky.header
                && let Some(v) = headers.get(header.as_str())
            {
                let share = hash_share(canary.policy_id.as_str(), canary.revision, v.as_bytes());
                return Choice { variant: pick(share), set_cookie: None };
            }
            // Cookie sessions: `<policy>.<revision>.<p|s>.<started>`.
            let session = session_cookie(headers).and_then(|v| {
                let mut parts = v.split('.');
                let (policy, revision, side, started) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some()
                    || policy != canary.policy_id.as_str()
                    || revision.parse::<u64>().ok()? != canary.revision
                {
                    return None;
                }
                let started: u64 = started.parse().ok()?;
                if now < started || now - started >= sticky.maximum_ttl.as_secs() {
                    return None;
                }
                let variant = match side {
                    "s" => Variant::Staging,
                    "p" => Variant::Primary,
                    _ => return None,
                };
                Some((variant, started))
            });
            let (variant, started) = session.unwrap_or((pick(roll), now));
            let left = sticky.maximum_ttl.as_secs().saturating_sub(now - started);
            let max_age = sticky.idle_ttl.as_secs().min(left);
            let side = if variant == Variant::Staging { 's' } else { 'p' };
            let cookie = format!(
                "{COOKIE}={}.{}.{side}.{started}; Max-Age={max_age}; Path=/; HttpOnly",
                canary.policy_id, canary.revision
            );
            Choice { variant, set_cookie: Some(cookie) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use shardgate_model::edge::Stickiness;
    use std::time::Duration;

    fn canary(traffic: Traffic) -> Canary {
        // A staging distribution is needed only for its presence.
        let w: shardgate_model::wire::DistributionWire = shardgate_model::json::from_value(serde_json::json!({
            "staging": true, "origins": {"b": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}}
        }))
        .expect("wire");
        let config = shardgate_model::Distribution::from_wire(shardgate_model::ResourceId::parse("s").expect("id"), &w)
            .expect("staging");
        Canary {
            policy_id: shardgate_model::ResourceId::parse("cd1").expect("id"),
            revision: 7,
            traffic,
            staging: std::sync::Arc::new(shardgate_snapshot::EdgeDistribution {
                id: config.id.clone(),
                revision: 1,
                config: std::sync::Arc::new(config),
                origins: Default::default(),
                policies: Vec::new(),
                request_policies: Vec::new(),
                canary: None,
                invalidations: Vec::new(),
                waf: None,
                id_label: std::sync::Arc::from("s"),
                behavior_labels: Vec::new(),
            }),
        }
    }

    #[test]
    fn header_mode_needs_the_exact_value() {
        let c = canary(Traffic::Header { name: "aws-cf-cd-resource".into(), value: "b".into() });
        let mut h = HeaderMap::new();
        assert_eq!(choose(&c, &h, 0.0, 0).variant, Variant::Primary);
        h.insert("aws-cf-cd-resource", HeaderValue::from_static("B"));
        assert_eq!(choose(&c, &h, 0.0, 0).variant, Variant::Primary);
        h.insert("aws-cf-cd-resource", HeaderValue::from_static("b"));
        assert_eq!(choose(&c, &h, 0.99, 0).variant, Variant::Staging);
    }

    #[test]
    fn weight_without_stickiness_follows_the_roll() {
        let c = canary(Traffic::Weight { weight: 0.01, stickiness: None });
        let h = HeaderMap::new();
        assert_eq!(choose(&c, &h, 0.005, 0).variant, Variant::Staging);
        assert_eq!(choose(&c, &h, 0.5, 0).variant, Variant::Primary);
    }

    #[test]
    fn cookie_sessions_stick_and_expire() {
        let sticky =
            Stickiness { idle_ttl: Duration::from_secs(300), maximum_ttl: Duration::from_secs(600), header: None };
        let c = canary(Traffic::Weight { weight: 0.5, stickiness: Some(sticky) });
        let first = choose(&c, &HeaderMap::new(), 0.1, 1000);
        assert_eq!(first.variant, Variant::Staging);
        let cookie = first.set_cookie.expect("a session starts");
        assert!(cookie.starts_with("shardgate-cd=cd1.7.s.1000; Max-Age=300"), "{cookie}");
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_str(cookie.split(';').next().expect("pair")).expect("value"));
        assert_eq!(choose(&c, &h, 0.9, 1200).variant, Variant::Staging, "the roll is ignored inside a session");
        let late = choose(&c, &h, 0.9, 1500);
        assert!(late.set_cookie.as_deref().is_some_and(|c| c.contains("Max-Age=100")), "capped by maximum_ttl");
        assert_eq!(choose(&c, &h, 0.9, 1600).variant, Variant::Primary, "maximum_ttl ends the session");
        let mut changed = canary(c.traffic.clone());
        changed.revision = 8;
        assert_eq!(choose(&changed, &h, 0.9, 1200).variant, Variant::Primary, "a policy change resets sessions");
    }

    #[test]
    fn header_stickiness_is_stable_and_near_the_weight() {
        let sticky = Stickiness {
            idle_ttl: Duration::from_secs(300),
            maximum_ttl: Duration::from_secs(600),
            header: Some("x-player-id".into()),
        };
        let c = canary(Traffic::Weight { weight: 0.1, stickiness: Some(sticky) });
        let mut staging = 0;
        for id in 0..20_000u32 {
            let mut h = HeaderMap::new();
            h.insert("x-player-id", HeaderValue::from_str(&format!("player-{id}")).expect("value"));
            let a = choose(&c, &h, 0.0, 0).variant;
            assert_eq!(a, choose(&c, &h, 0.99, 50).variant, "same player, same side");
            staging += usize::from(a == Variant::Staging);
        }
        assert!((1_700..=2_300).contains(&staging), "{staging} of 20000 on staging for a 10 % weight");
    }
}
