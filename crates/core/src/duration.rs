//! Durations as people write them in config files: `250ms`, `30s`, `5m`, `2h`,
//! or a bare number of seconds (APISIX writes timeouts as seconds).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A [`Duration`] that deserializes from `"30s"`, `"250ms"`, `"5m"`, `"2h"` or a
/// number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        ConfigDuration(Duration::from_secs(secs))
    }

    /// A duration of milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(Duration::from_millis(ms))
    }

    /// The wrapped duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a number followed by ms, s, m or h (e.g. \"30s\")")]
pub struct InvalidDuration {
    input: String,
}

/// Longest duration accepted, in seconds: ten years. Every timeout in the
/// bootstrap file is added to `Instant::now()`, which panics on overflow;
/// no real setting comes near this bound.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

/// Parse `"250ms"`, `"30s"`, `"5m"`, `"2h"` or `"1.5"` (seconds), at most
/// [`MAX_SECS`].
pub fn parse(input: &str) -> Result<Duration, InvalidDuration> {
    let bad = || InvalidDuration { input: input.to_owned() };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=MAX_SECS as f64).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\", \"5m\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v > MAX_SECS {
                    return Err(E::custom(format!("invalid duration {v}: at most {MAX_SECS} seconds (ten years)")));
                }
                Ok(ConfigDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                parse(&v.to_string()).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse(v).map(ConfigDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) { write!(f, "{ms}ms") } else { write!(f, "{}s", ms / 1000) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
        assert!(parse("-3s").is_err());
        assert!(parse("1e300").is_err());
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let d: ConfigDuration = serde_json::from_str("\"100ms\"").expect("string");
        assert_eq!(d.get(), Duration::from_millis(100));
        let d: ConfigDuration = serde_json::from_str("7").expect("integer");
        assert_eq!(d.get(), Duration::from_secs(7));
        let d: ConfigDuration = serde_json::from_str("0.5").expect("float");
        assert_eq!(d.get(), Duration::from_millis(500));
        assert!(serde_json::from_str::<ConfigDuration>("-1").is_err());
        // Integers get the same ten-year cap as strings: a huge timeout would
        // overflow `Instant + Duration` and panic at start or per request.
        let max: ConfigDuration = serde_json::from_str(&MAX_SECS.to_string()).expect("ten years");
        assert_eq!(max.get(), Duration::from_secs(MAX_SECS));
        for huge in [(MAX_SECS + 1).to_string(), u64::MAX.to_string(), i64::MAX.to_string()] {
            let e = serde_json::from_str::<ConfigDuration>(&huge).expect_err("over the cap");
            assert!(e.to_string().contains("at most"), "{huge}: {e}");
        }
        assert!(serde_json::from_str::<ConfigDuration>("315360001.0").is_err(), "floats too");
        assert_eq!(ConfigDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(ConfigDuration::from_secs(60).to_string(), "60s");
    }
}
