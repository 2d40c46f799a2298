//! shardgate-control is the writer side of configuration: the [`Reconciler`]
//! reads the store, keeps a `ConfigState`, compiles it into snapshots and
//! publishes them. It is the only publisher of snapshots.
//!
//! ```text
//! Store.list(prefix) ──► ConfigState ──► compile ──► SnapshotHandle.publish   (start, and every resync)
//! Store.watch(rev+1) ──► apply events (batched for a few ms) ──► compile ──► publish
//!   compacted / lagged / watch error ──► full resync, with backoff on store errors
//! ```
//!
//! A resource that fails to validate or compile is left out alone, with a
//! `warn` log and a metric; its last good version keeps serving (linkerd's
//! `INVALID_POLICY` fallback, rpxy's `last_good`). Store outages keep the last
//! published snapshot serving.
//!
//! # Layout
//! - [`reconciler`]: [`Reconciler`] and its loop.
//! - [`metrics`]: `shardgate_config_*` metrics.

pub mod metrics;
pub mod reconciler;

pub use metrics::ControlMetrics;
pub use reconciler::{Reconciler, ReconcilerSettings};
