//! shardgate-core owns what every other crate shares and nothing that does
//! network I/O: the data-plane error vocabulary, the drain (graceful shutdown)
//! signal, the named limits, the health state behind `/healthz` and `/readyz`,
//! durations as written in config files, the handle to the metrics registry,
//! the process metrics (read from `/proc/self` when scraped), and the tracing
//! spans with their recording for export (the export itself, which does
//! network I/O, is the binary's).
//!
//! # Layout
//! - [`error`]: [`ErrorSource`] (downstream, upstream, internal) and retry hints.
//! - [`drain`]: [`Drain`] fans a shutdown out to tasks and waits for them.
//! - [`limits`]: [`Limits`], every bound on network input with its default.
//! - [`health`]: [`Health`], liveness and readiness flags.
//! - [`duration`]: [`ConfigDuration`], `"30s"`/`"5m"`/`250` in config files.
//! - [`metrics`]: [`Metrics`], the shared Prometheus registry.
//! - [`throttle`]: [`LogThrottle`], one `warn` per interval for events the
//!   network can repeat at will.
//! - [`process`]: `process_*` metrics and `shardgate_build_info`.
//! - [`trace`]: span target, W3C Trace Context, [`trace::SpanLayer`], OTLP/JSON encoding.

pub mod drain;
pub mod duration;
pub mod error;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod throttle;
pub mod trace;

pub use drain::{Drain, DrainWatch, Draining};
pub use duration::ConfigDuration;
pub use error::ErrorSource;
pub use health::Health;
pub use limits::Limits;
pub use metrics::Metrics;
pub use throttle::LogThrottle;
