//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): trace and span
//! ids, the `traceparent` header (read and written), the `tracestate`
//! header's bounds, id generation and the ratio sampler.
//!
//! Pure: no I/O, no clock.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The W3C `sampled` trace flag (bit 0 of `trace-flags`).
pub const FLAG_SAMPLED: u8 = 0x01;

/// Longest `tracestate` passed on. W3C Trace Context §3.3.1.5 asks vendors
/// to propagate at least 512 characters; a longer one (from a viewer, so
/// untrusted) is dropped whole rather than cut inside an entry.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// A 16-byte trace id; never all zeros (W3C: an all-zero id is invalid).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    /// Lower-case hex, as `traceparent` and OTLP/JSON write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// What a `traceparent` header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span (`parent-id`).
    pub parent_id: SpanId,
    /// `trace-flags`; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceParent {
    /// Whether the caller recorded its span.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Reads a `traceparent` value, by the rules of W3C Trace Context
    /// §3.2.2: lower-case hex only, version `ff` invalid, all-zero ids
    /// invalid, version `00` exactly 55 characters; a later version is read
    /// as `00` is when its first four fields fit, whatever follows a `-`
    /// after them. `None` for anything else: the request then starts a
    /// trace of its own.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let b = value.as_bytes();
        // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2.
        const LEN: usize = 55;
        if b.len() < LEN {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        if version == 0xff || (version == 0 && b.len() != LEN) || (b.len() > LEN && b[LEN] != b'-') {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut trace = [0u8; 16];
        for (i, out) in trace.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent = [0u8; 8];
        for (i, out) in parent.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace == [0; 16] || parent == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id: TraceId(trace), parent_id: SpanId(parent), flags })
    }

    /// The header value, version `00`.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// One byte from two lower-case hex digits (W3C: upper case is invalid).
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

/// A `tracestate` value worth passing on: at most [`MAX_TRACESTATE_LEN`]
/// visible ASCII characters (W3C §3.3.1), else `None`.
pub fn checked_tracestate(value: &str) -> Option<&str> {
    let v = value.trim();
    let visible = v.bytes().all(|c| c == b' ' || c == b'\t' || (0x21..=0x7e).contains(&c));
    (!v.is_empty() && v.len() <= MAX_TRACESTATE_LEN && visible).then_some(v)
}

/// Random trace and span ids: SipHash, keyed once per process from the
/// operating system's randomness (std's `RandomState`), over a counter. The
/// outputs are unpredictable without the key and unique while the counter
/// does not wrap; no lock, no system call per id.
#[derive(Debug)]
pub struct IdGenerator {
    keys: std::hash::RandomState,
    counter: AtomicU64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        IdGenerator { keys: std::hash::RandomState::new(), counter: AtomicU64::new(1) }
    }
}

impl IdGenerator {
    fn next_u64(&self) -> u64 {
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let v = self.keys.hash_one(n);
            if v != 0 {
                return v;
            }
        }
    }

    /// A new trace id (never zero: each half is non-zero).
    pub fn trace_id(&self) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        TraceId(id)
    }

    /// A new span id (never zero).
    pub fn span_id(&self) -> SpanId {
        SpanId(self.next_u64().to_be_bytes())
    }
}

/// Which new traces are recorded: a ratio, decided by a random draw before
/// the trace's first span exists (so a trace that is not recorded costs the
/// data path nothing). With a caller's `traceparent` the caller's decision
/// stands instead: OpenTelemetry's `ParentBased` sampler with a ratio root,
/// the SDKs' default shape and APISIX's `parent_base` sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// A draw below this is recorded; `u64::MAX`: always; 0: never.
    threshold: u64,
}

impl Sampler {
    /// Records a `ratio` (0 to 1) of new traces; out-of-range values are
    /// clamped (the bootstrap file's check refuses them first).
    pub fn ratio(ratio: f64) -> Sampler {
        let r = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
        let threshold = if r >= 1.0 { u64::MAX } else { (r * 18_446_744_073_709_551_616.0) as u64 };
        Sampler { threshold }
    }

    /// Records nothing.
    pub const NEVER: Sampler = Sampler { threshold: 0 };

    /// Whether a new trace is recorded, given a uniform random `draw`.
    pub fn sample(&self, draw: u64) -> bool {
        self.threshold == u64::MAX || draw < self.threshold
    }

    /// The threshold, for an atomic.
    pub(crate) fn threshold(self) -> u64 {
        self.threshold
    }

    /// The sampler of a stored threshold.
    pub(crate) fn from_threshold(threshold: u64) -> Sampler {
        Sampler { threshold }
    }
}

/// A uniform random number for sampling draws: splitmix64 over a
/// per-thread state seeded from std's randomly keyed hasher. Cheap (no
/// lock, no shared cache line), not for secrets.
pub fn random_u64() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> =
            std::cell::Cell::new(std::hash::RandomState::new().hash_one(std::thread::current().id()));
    }
    STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_reads_and_writes_the_w3c_example() {
        let p = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled());
        assert_eq!(p.header(), EXAMPLE);
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.sampled());
    }

    #[test]
    fn traceparent_refuses_what_w3c_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00_when_its_fields_fit() {
        let p = TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds")
            .expect("future version");
        assert_eq!(p.header(), EXAMPLE, "written back as version 00");
    }

    #[test]
    fn tracestate_is_bounded_and_visible_ascii() {
        assert_eq!(checked_tracestate(" congo=t61rcWkgMzE "), Some("congo=t61rcWkgMzE"));
        assert_eq!(checked_tracestate(""), None);
        assert_eq!(checked_tracestate("a=\u{7f}"), None);
        assert_eq!(checked_tracestate(&"a".repeat(MAX_TRACESTATE_LEN + 1)), None);
        assert!(checked_tracestate(&"a".repeat(MAX_TRACESTATE_LEN)).is_some());
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids = IdGenerator::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = ids.trace_id();
            assert!(t.0[..8] != [0; 8] && t.0[8..] != [0; 8]);
            assert!(seen.insert(t.0.to_vec()));
            assert!(seen.insert(ids.span_id().0.to_vec()));
        }
        // Another generator has other keys: its first id is not this one's.
        assert_ne!(IdGenerator::default().span_id(), IdGenerator::default().span_id());
    }

    #[test]
    fn the_ratio_sampler_keeps_about_its_share_and_the_edges_exactly() {
        let draws: Vec<u64> = (0..20_000).map(|_| random_u64()).collect();
        assert!(draws.iter().all(|d| Sampler::ratio(1.0).sample(*d)));
        assert!(Sampler::ratio(1.0).sample(u64::MAX));
        assert!(!draws.iter().any(|d| Sampler::ratio(0.0).sample(*d)));
        assert!(!draws.iter().any(|d| Sampler::NEVER.sample(*d)));
        assert!(!draws.iter().any(|d| Sampler::ratio(f64::NAN).sample(*d)));
        assert_eq!(Sampler::ratio(7.0), Sampler::ratio(1.0));
        let kept = draws.iter().filter(|d| Sampler::ratio(0.25).sample(**d)).count();
        // 20,000 draws at p = 0.25: the standard deviation is about 61.
        assert!((4_500..=5_500).contains(&kept), "{kept}");
    }
}
