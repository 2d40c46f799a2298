//! shardgate-cache owns the HTTP cache of the edge, independent of any
//! server: when a response may be stored and for how long ([`freshness`],
//! with the field parsers it needs: [`date`] for HTTP-dates and
//! [`structured`] for targeted fields such as `CDN-Cache-Control`),
//! how a stored object answers `Range` and conditional requests
//! ([`conditional`]), the body that many viewers read while one origin
//! fetch writes it ([`fill`]), and the memory tier with its coalescing lock
//! and LRU budget ([`memory`]), variants made from a stored object
//! rather than fetched, such as compressed ones ([`memory::derived`]), what
//! becomes of an origin's response: stored, refreshed by a 304, or passed
//! through ([`admit`]), how long an origin's error is cached ([`errors`]), and how a
//! request was answered ([`CachePhase`], for `X-Cache` and metrics).
//!
//! What goes into a cache key, which distribution and variant a request
//! belongs to, and how invalidations are matched are decided by the caller
//! (`shardgate-http`); this crate stores opaque keys.
//!
//! Two tiers: small objects live in memory; objects larger than
//! `max_object_bytes` go to the disk tier ([`disk`]), whose bodies are read
//! back by offset (never loaded whole) and which survives restarts.

pub mod admit;
pub mod conditional;
pub mod date;
pub mod disk;
pub mod errors;
pub mod fill;
pub mod freshness;
pub mod memory;
pub mod phase;
pub mod structured;

pub use admit::{Admitted, Exchange, FillWriter, Placement, Refresh};
pub use conditional::StoredDates;
pub use disk::{DiskRef, DiskSettings};
pub use fill::{Fill, FillEnd, Read};
pub use freshness::{CacheControl, Freshness, Storability, Timing, TtlBounds, age_of, storability};
pub use memory::derived::Derived;
pub use memory::{Cache, CacheSettings, Leader, Lookup, Object, Outcome, Pending, vary_values};
pub use phase::CachePhase;
