//! Sampled requests: the most recent requests each web ACL matched, for the
//! Admin API (AWS's `GetSampledRequests`). Bounded: a fixed number of
//! samples per ACL, a fixed number of ACLs, headers cut to a count and a
//! length. Sampling follows each rule's `VisibilityConfig.SampledRequestsEnabled`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Samples kept per web ACL.
pub const PER_ACL: usize = 100;
/// Web ACLs tracked at most.
const MAX_ACLS: usize = 1000;
/// Samples taken per web ACL per second at most: sampling must not add an
/// allocation and a lock to every request of a busy edge.
pub const PER_SECOND: u32 = 10;
/// Headers kept per sample, and bytes per header value.
const MAX_HEADERS: usize = 50;
const MAX_VALUE: usize = 256;

/// One header of a sampled request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SampleHeader {
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Value (cut at 256 bytes).
    #[serde(rename = "Value")]
    pub value: String,
}

/// The request part of a sample.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SampleRequest {
    /// `ClientIP`.
    #[serde(rename = "ClientIP")]
    pub client_ip: String,
    /// `Country` (ISO code), when a GeoIP database is configured.
    #[serde(rename = "Country", skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `URI` (path and query).
    #[serde(rename = "URI")]
    pub uri: String,
    /// `Method`.
    #[serde(rename = "Method")]
    pub method: String,
    /// `Headers`.
    #[serde(rename = "Headers")]
    pub headers: Vec<SampleHeader>,
}

/// One sampled request, in the shape of AWS's `SampledHTTPRequest`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// `Request`.
    #[serde(rename = "Request")]
    pub request: SampleRequest,
    /// `Weight` (always 1: every sample stands for itself).
    #[serde(rename = "Weight")]
    pub weight: u32,
    /// `Timestamp`, seconds since the epoch.
    #[serde(rename = "Timestamp")]
    pub timestamp: u64,
    /// `Action`: `ALLOW`, `BLOCK` or `COUNT`.
    #[serde(rename = "Action")]
    pub action: &'static str,
    /// The rule that matched; absent for the default action.
    #[serde(rename = "RuleName", skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `Labels`: `[{Name}]`.
    #[serde(rename = "Labels")]
    pub labels: Vec<SampleLabel>,
}

/// `{Name}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SampleLabel {
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Sample>,
    population: u64,
    second: u64,
    taken_this_second: u32,
}

/// Recent samples of every web ACL.
#[derive(Debug, Default)]
pub struct Samples {
    inner: Mutex<HashMap<String, Ring>>,
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Samples {
    /// Makes a sample's headers from name/value pairs, bounded.
    pub fn headers<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<SampleHeader> {
        pairs
            .take(MAX_HEADERS)
            .map(|(n, v)| SampleHeader { name: n.to_owned(), value: cut(&String::from_utf8_lossy(v), MAX_VALUE) })
            .collect()
    }

    /// Counts a matched request of `acl` at `now` (seconds) and, while the
    /// ACL has taken fewer than [`PER_SECOND`] samples this second, records
    /// the sample `make` builds (only then is it built), dropping the oldest
    /// beyond [`PER_ACL`].
    pub fn record_with(&self, acl: &str, now: u64, make: impl FnOnce() -> Sample) {
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(acl) && map.len() >= MAX_ACLS {
            return;
        }
        let ring = map.entry(acl.to_owned()).or_default();
        ring.population += 1;
        if ring.second != now {
            ring.second = now;
            ring.taken_this_second = 0;
        }
        if ring.taken_this_second >= PER_SECOND {
            return;
        }
        ring.taken_this_second += 1;
        if ring.samples.len() == PER_ACL {
            ring.samples.pop_front();
        }
        ring.samples.push_back(make());
    }

    /// The samples of `acl`, newest last, and how many were recorded in all.
    pub fn get(&self, acl: &str) -> (Vec<Sample>, u64) {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(acl).map_or((Vec::new(), 0), |r| (r.samples.iter().cloned().collect(), r.population))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Sample {
        Sample {
            request: SampleRequest {
                client_ip: "127.0.0.1".into(),
                country: None,
                uri: format!("/{i}"),
                method: "GET".into(),
                headers: Vec::new(),
            },
            weight: 1,
            timestamp: i,
            action: "BLOCK",
            rule: Some("r".into()),
            labels: Vec::new(),
        }
    }

    #[test]
    fn samples_are_bounded_and_newest_last() {
        let s = Samples::default();
        for i in 0..(PER_ACL as u64 + 10) {
            s.record_with("acl", i, || sample(i));
        }
        let (list, population) = s.get("acl");
        assert_eq!(list.len(), PER_ACL);
        assert_eq!(population, PER_ACL as u64 + 10);
        assert_eq!(list.last().map(|x| x.timestamp), Some(PER_ACL as u64 + 9));
        assert_eq!(cut("ééé", 3), "é");
        let busy = Samples::default();
        for _ in 0..1000 {
            busy.record_with("acl", 7, || sample(7));
        }
        let (list, population) = busy.get("acl");
        assert_eq!((list.len(), population), (PER_SECOND as usize, 1000), "at most PER_SECOND samples a second");
        let h = Samples::headers((0..80).map(|_| ("x", &b"v"[..])));
        assert_eq!(h.len(), 50);
    }
}
