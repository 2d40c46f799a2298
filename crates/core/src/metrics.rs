//! The handle to the one Prometheus registry of the process.
//!
//! Each area (stream, upstream, control) defines its metric families in its own
//! crate, with typed label sets, and registers them here at startup under the
//! `shardgate_` prefix; `/metrics` encodes the registry in the text format.
//! Metrics whose names are fixed by convention across exporters (the
//! `process_*` family of the Prometheus client libraries, which dashboards
//! query by name) live in a second registry without the prefix, encoded in
//! the same exposition (see [`Metrics::register_standard`]).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::registry::Registry;

/// A cheap, clonable handle to the process-wide registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Families named by convention, without the `shardgate_` prefix.
    standard: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry whose metric names all start with `shardgate_`.
    pub fn new() -> Self {
        Metrics {
            registry: Arc::new(Mutex::new(Registry::with_prefix("shardgate"))),
            standard: Arc::new(Mutex::new(Registry::default())),
        }
    }

    /// Runs `f` with the registry, to register an area's families. Registration
    /// happens at startup only, never on a data path.
    pub fn register<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// Runs `f` with the registry of families whose names are fixed by a
    /// convention shared across exporters and get no `shardgate_` prefix:
    /// only the standard process metrics (`process_cpu_seconds_total`, ...)
    /// belong here. Startup only, like [`Metrics::register`].
    pub fn register_standard<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self.standard.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// Both registries in the OpenMetrics text format (what Prometheus asks
    /// for with `Accept: application/openmetrics-text`).
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        {
            let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            encode_registry(&mut out, &registry)?;
        }
        {
            let standard = self.standard.lock().unwrap_or_else(PoisonError::into_inner);
            encode_registry(&mut out, &standard)?;
        }
        encode_eof(&mut out)?;
        Ok(out)
    }

    /// The registry in the classic Prometheus text format 0.0.4 (what curl,
    /// older scrapers and `promtool check metrics` read).
    pub fn encode_prometheus(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus(&self.encode_openmetrics()?))
    }
}

/// Converts OpenMetrics text to the classic format: counter families are
/// named with their `_total` suffix in `# HELP`/`# TYPE` (the classic format
/// names the family after its sample), and `# UNIT` and `# EOF` go.
/// Both formats are specified in prometheus/docs `exposition_formats.md` and
/// the OpenMetrics spec; gauges and histograms read the same in both.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn classic_format_names_counters_with_total() {
        let m = Metrics::new();
        let c: Counter = Counter::default();
        c.inc();
        let g: Gauge = Gauge::default();
        m.register(|r| {
            r.register("config_applies", "Snapshots published", c.clone());
            r.register_with_unit("stream_sent", "Bytes sent", prometheus_client::registry::Unit::Bytes, c.clone());
            r.register("config_generation", "Revision", g.clone());
        });
        let text = m.encode_prometheus().expect("encode");
        assert!(text.contains("# TYPE shardgate_config_applies_total counter\n"), "{text}");
        assert!(text.contains("# HELP shardgate_config_applies_total Snapshots published.\n"), "{text}");
        assert!(text.contains("# TYPE shardgate_stream_sent_bytes_total counter\n"), "{text}");
        assert!(text.contains("shardgate_config_applies_total 1\n"));
        assert!(text.contains("# TYPE shardgate_config_generation gauge\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(m.encode_openmetrics().expect("encode").ends_with("# EOF\n"));
    }

    #[test]
    fn standard_families_have_no_prefix_and_one_eof() {
        let m = Metrics::new();
        let c: Counter = Counter::default();
        c.inc_by(3);
        m.register(|r| r.register("config_applies", "Snapshots published", c.clone()));
        m.register_standard(|r| r.register("process_example", "Conventional name", c.clone()));
        let open = m.encode_openmetrics().expect("encode");
        assert!(open.contains("\nprocess_example_total 3\n"), "{open}");
        assert!(!open.contains("shardgate_process_example"), "{open}");
        assert!(open.contains("shardgate_config_applies_total 3\n"), "{open}");
        assert_eq!(open.matches("# EOF").count(), 1, "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        let classic = m.encode_prometheus().expect("encode");
        assert!(classic.contains("# TYPE process_example_total counter\n"), "{classic}");
    }
}
