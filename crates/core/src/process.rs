//! Process metrics and build information, read at scrape time.
//!
//! - The standard process metrics every Prometheus client library exports
//!   under the same names (`process_cpu_seconds_total`,
//!   `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//!   `process_open_fds`, `process_max_fds`, `process_start_time_seconds`,
//!   `process_threads`), so existing dashboards and alerts work unchanged.
//!   They are read from `/proc/self` on each scrape by a prometheus-client
//!   `Collector` in the registry without the `shardgate_` prefix
//!   ([`Metrics::register_standard`]);
//!   on other operating systems nothing is registered. A file that cannot be
//!   read leaves its metrics out of that scrape rather than failing it.
//! - `shardgate_build_info{version, commit, rustc, target}`, a gauge that is
//!   always 1 (the Prometheus convention for build information), so a query
//!   can join it to tell which build each instance runs.
//!
//! The `/proc` formats are the kernel's `proc(5)`: `/proc/self/stat` (one
//! line; the command name in parentheses may hold spaces and parentheses,
//! so fields are counted after the last `)`), `/proc/self/status`
//! (`VmRSS:` in kB), `/proc/self/limits` and `/proc/stat` (`btime`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::Metrics;

/// What `shardgate_build_info` reports; the binary fills it from its build
/// script.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// The git commit built, or `unknown` (no git, or not a checkout).
    pub commit: &'static str,
    /// The compiler (`rustc --version`).
    pub rustc: &'static str,
    /// The target triple.
    pub target: &'static str,
}

/// The label set of `shardgate_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    rustc: String,
    target: String,
}

/// Registers `shardgate_build_info` and, on Linux, the process collector.
pub fn register(metrics: &Metrics, build: &BuildInfo) {
    let family: Family<BuildLabels, Gauge> = Family::default();
    family
        .get_or_create(&BuildLabels {
            version: build.version.to_owned(),
            commit: build.commit.to_owned(),
            rustc: build.rustc.to_owned(),
            target: build.target.to_owned(),
        })
        .set(1);
    metrics.register(|r| {
        r.register("build_info", "The build this process runs (always 1; the labels say which build)", family)
    });
    #[cfg(target_os = "linux")]
    metrics.register_standard(|r| r.register_collector(Box::new(linux::ProcessCollector)));
}

#[cfg(target_os = "linux")]
mod linux {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Clock ticks per second of the times in `/proc/self/stat` and
    /// `/proc/stat`: the kernel exports them in `USER_HZ`, which is 100 on
    /// every architecture Linux supports through its stable ABI (the
    /// Prometheus Go client's procfs library makes the same assumption).
    const USER_HZ: f64 = 100.0;

    /// Reads `/proc/self` on every scrape.
    #[derive(Debug)]
    pub(super) struct ProcessCollector;

    /// One scrape's readings; a reading the kernel did not give is `None`.
    #[derive(Debug, Default, PartialEq)]
    pub(super) struct Sample {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<i64>,
        pub virtual_bytes: Option<i64>,
        pub open_fds: Option<i64>,
        pub max_fds: Option<i64>,
        pub start_time_seconds: Option<f64>,
        pub threads: Option<i64>,
    }

    /// The fields of `/proc/self/stat` this collector reads.
    #[derive(Debug, PartialEq)]
    pub(super) struct Stat {
        /// `utime + stime`, in clock ticks.
        pub cpu_ticks: u64,
        /// `num_threads`.
        pub threads: i64,
        /// `starttime`: clock ticks after boot.
        pub start_ticks: u64,
        /// `vsize`, bytes.
        pub vsize: i64,
    }

    /// Parses `/proc/self/stat`. Fields are numbered as in proc(5); the
    /// second (the command name) is skipped by starting after its last `)`.
    pub(super) fn parse_stat(text: &str) -> Option<Stat> {
        let (_, after) = text.rsplit_once(')')?;
        // `after` starts with field 3 (state) at index 0.
        let fields: Vec<&str> = after.split_ascii_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).copied();
        let num = |n: usize| field(n)?.parse::<u64>().ok();
        Some(Stat {
            cpu_ticks: num(14)?.checked_add(num(15)?)?,
            threads: field(20)?.parse().ok()?,
            start_ticks: num(22)?,
            vsize: field(23)?.parse().ok()?,
        })
    }

    /// `VmRSS` of `/proc/self/status`, in bytes (the kernel writes kB).
    pub(super) fn parse_rss(status: &str) -> Option<i64> {
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        let kb: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kb.checked_mul(1024)
    }

    /// The soft `Max open files` limit of `/proc/self/limits`; `unlimited`
    /// gives none.
    pub(super) fn parse_max_fds(limits: &str) -> Option<i64> {
        let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
        line.split_ascii_whitespace().next()?.parse().ok()
    }

    /// `btime` of `/proc/stat`: the boot time, seconds since the epoch.
    pub(super) fn parse_btime(stat: &str) -> Option<u64> {
        stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
    }

    fn read(path: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(file = path, error = %e, "cannot read a process metrics file");
                None
            }
        }
    }

    /// Reads every metric now.
    pub(super) fn sample() -> Sample {
        let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
        let btime = read("/proc/stat").as_deref().and_then(parse_btime);
        let open_fds = match std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor is listed too, as in the
            // other client libraries' readings.
            Ok(dir) => Some(dir.count() as i64),
            Err(e) => {
                tracing::debug!(error = %e, "cannot list /proc/self/fd");
                None
            }
        };
        Sample {
            cpu_seconds: stat.as_ref().map(|s| s.cpu_ticks as f64 / USER_HZ),
            resident_bytes: read("/proc/self/status").as_deref().and_then(parse_rss),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            open_fds,
            max_fds: read("/proc/self/limits").as_deref().and_then(parse_max_fds),
            start_time_seconds: stat.as_ref().zip(btime).map(|(s, b)| b as f64 + s.start_ticks as f64 / USER_HZ),
            threads: stat.as_ref().map(|s| s.threads),
        }
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let s = sample();
            if let Some(v) = s.cpu_seconds {
                let m = ConstCounter::new(v);
                // The counter encoder appends `_total`.
                m.encode(encoder.encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                    None,
                    m.metric_type(),
                )?)?;
            }
            // Whole numbers are written as integers, as the other client
            // libraries write them.
            let whole: [(&str, &str, Option<i64>); 5] = [
                ("process_resident_memory_bytes", "Resident memory size in bytes.", s.resident_bytes),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtual_bytes),
                ("process_open_fds", "Number of open file descriptors.", s.open_fds),
                ("process_max_fds", "Maximum number of open file descriptors.", s.max_fds),
                ("process_threads", "Number of OS threads in the process.", s.threads),
            ];
            for (name, help, value) in whole {
                if let Some(v) = value {
                    let m = ConstGauge::new(v);
                    m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
                }
            }
            if let Some(v) = s.start_time_seconds {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    None,
                    m.metric_type(),
                )?)?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_are_counted_after_the_command_name() {
            // A command name with spaces and a `)` must not shift the fields.
            let line = "4242 (odd ) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                        250 150 0 0 20 0 7 0 12345 987654321 2000 18446744073709551615 0 0 0";
            let s = parse_stat(line).expect("parse");
            assert_eq!(s, Stat { cpu_ticks: 400, threads: 7, start_ticks: 12345, vsize: 987_654_321 });
            assert_eq!(parse_stat("4242 (cut"), None);
            assert_eq!(parse_stat("1 (x) S 1 2"), None);
        }

        #[test]
        fn status_limits_and_btime() {
            assert_eq!(parse_rss("Name:\tx\nVmSize:\t  2928 kB\nVmRSS:\t    1764 kB\n"), Some(1764 * 1024));
            assert_eq!(parse_rss("Name:\tx\n"), None);
            let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max processes             96365                96365                processes \n\
                          Max open files            20000                524288               files     \n";
            assert_eq!(parse_max_fds(limits), Some(20_000));
            assert_eq!(
                parse_max_fds("Max open files            unlimited            unlimited            files\n"),
                None
            );
            assert_eq!(parse_btime("cpu  1 2 3\nbtime 1796000178\nprocesses 9\n"), Some(1_796_000_178));
        }

        #[test]
        fn this_process_reads_plausibly() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs_f64();
            let s = sample();
            assert!(s.resident_bytes.expect("rss") > 0);
            assert!(s.virtual_bytes.expect("vsize") >= s.resident_bytes.expect("rss"));
            assert!(s.open_fds.expect("fds") >= 3, "stdin, stdout, stderr at least");
            assert!(s.threads.expect("threads") >= 1);
            let start = s.start_time_seconds.expect("start");
            // Started before now, and not before 2020 (the clock and boot
            // time are read from the same kernel).
            assert!(start <= now + 1.0 && start > 1_577_836_800.0, "start {start}, now {now}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_one_series_set_to_one() {
        let m = Metrics::new();
        register(&m, &BuildInfo { version: "1.2.3", commit: "abc123", rustc: "rustc 1.89.0", target: "x86_64-t" });
        let text = m.encode_prometheus().expect("encode");
        assert!(
            text.contains(
                "shardgate_build_info{version=\"1.2.3\",commit=\"abc123\",rustc=\"rustc 1.89.0\",target=\"x86_64-t\"} 1\n"
            ),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
            assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
            assert!(text.contains("\nprocess_open_fds "), "{text}");
            assert!(!text.contains("shardgate_process_"), "{text}");
        }
    }
}
