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

/// Which new traces are recorded: OpenTelemetry's `TraceIdRatioBased`
/// sampler under `ParentBased` (the SDKs' default shape, and APISIX's
/// `parent_base` sampler with a `trace_id_ratio` root). A trace that
/// arrives with a `traceparent` keeps its caller's decision; a new one is
/// recorded when the low 63 bits of its trace id fall under `ratio × 2⁶³`,
/// so every service that uses the same ratio decides the same way.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    threshold: u64,
    always: bool,
}

impl Sampler {
    /// Records a `ratio` (0 to 1) of new traces; out-of-range values are
    /// clamped (the bootstrap file's check refuses them first).
    pub fn ratio(ratio: f64) -> Sampler {
        let r = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
        Sampler { threshold: (r * (1u64 << 63) as f64) as u64, always: r >= 1.0 }
    }

    /// Whether a new trace with this id is recorded.
    pub fn sample(&self, trace_id: &TraceId) -> bool {
        if self.always {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id.0[8..]);
        (u64::from_be_bytes(low) & (u64::MAX >> 1)) < self.threshold
    }
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
        let ids = IdGenerator::default();
        let traces: Vec<TraceId> = (0..20_000).map(|_| ids.trace_id()).collect();
        assert!(traces.iter().all(|t| Sampler::ratio(1.0).sample(t)));
        assert!(!traces.iter().any(|t| Sampler::ratio(0.0).sample(t)));
        assert!(!traces.iter().any(|t| Sampler::ratio(f64::NAN).sample(t)));
        let kept = traces.iter().filter(|t| Sampler::ratio(0.25).sample(t)).count();
        // 20,000 draws at p = 0.25: the standard deviation is about 61.
        assert!((4_500..=5_500).contains(&kept), "{kept}");
        // Deterministic on the trace id: every instance agrees.
        let a: Vec<bool> = traces.iter().map(|t| Sampler::ratio(0.5).sample(t)).collect();
        let b: Vec<bool> = traces.iter().map(|t| Sampler::ratio(0.5).sample(t)).collect();
        assert_eq!(a, b);
    }
}
