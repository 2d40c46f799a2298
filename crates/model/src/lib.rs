//! shardgate-model owns the configuration model: what a resource looks like on
//! the wire (APISIX Admin API JSON), what it means once validated (domain
//! types), and the whole configuration as plain data ([`ConfigState`]) that
//! changes by applying store events. No tokio, no network: everything here is
//! pure and unit-tested in milliseconds.
//!
//! The pipeline for every resource, used both by the Admin API before storing
//! and by the reconciler after reading the store:
//!
//! ```text
//! bytes --json::parse--> serde_json::Value --wire (serde, deny_unknown_fields)-->
//!   wire::SslWire / UpstreamWire / StreamRouteWire --from_wire (checks)--> Ssl / Upstream / StreamRoute
//! ```
//! Every failure is an [`Invalid`] that names the JSON path of the field.
//!
//! # Layout
//! - [`error`]: [`Invalid`] (field + reason) and [`Problem`] (a rejected resource).
//! - [`json`]: lenient JSON parsing (raw newlines inside strings, as curl sends PEM) with paths.
//! - [`keyring`]: APISIX-compatible encryption of SSL private keys at rest.
//! - [`id`]: resource ids.
//! - [`kind`]: the table of resource kinds, one row each (the rest of the
//!   per-kind code is generated from it), and the store key layout.
//! - [`sni`]: SNI patterns (exact, `*.wildcard`, `*`).
//! - [`node_template`]: node hosts made from each connection's SNI
//!   (`{sni_label_1}.rooms.game.svc.cluster.local`), for room fleets.
//! - [`wire`]: serde structs that mirror APISIX's schema.
//! - [`ssl`], [`upstream`], [`stream_route`]: validated domain types of the stream plane.
//! - [`health`]: an upstream's health checks (`checks`), APISIX's schema.
//! - [`edge`]: validated edge resources (distributions, cache policies,
//!   continuous deployment policies, invalidations).
//! - [`function`]: CloudFront Functions (`functions`), compiled with
//!   `shardgate_functions` so code errors are refused with their position.
//! - [`stream_plugins`]: the stream plugins `ip-restriction` and `limit-conn`
//!   in APISIX's schemas; every other plugin refused with a reason.
//! - [`proxy_protocol`]: `send_proxy_protocol` on upstreams and stream routes.
//! - [`resource`]: one entry point to parse any kind; one `WireKind` impl per
//!   kind says how its wire form validates and what it refers to.
//! - [`state`]: [`ConfigState`], `apply` and `diff`.

pub mod edge;
pub mod error;
pub mod function;
pub mod health;
pub mod id;
pub mod json;
pub mod keyring;
pub mod kind;
pub mod node_template;
pub mod proxy_protocol;
pub mod resource;
pub mod sni;
pub mod ssl;
pub mod state;
pub mod stream_plugins;
pub mod stream_route;
pub mod upstream;
pub mod wire;

pub use edge::{CachePolicy, CdPolicy, Distribution, Invalidation};
pub use error::{Invalid, Problem};
pub use function::Function;
pub use health::HealthChecks;
pub use id::ResourceId;
pub use keyring::{Keyring, KeyringError};
pub use kind::ResourceKind;
pub use node_template::NodeTemplate;
pub use proxy_protocol::SendProxyProtocol;
pub use resource::{Reference, Resource, Validation};
pub use sni::SniPattern;
pub use ssl::Ssl;
pub use state::{Change, Changes, ConfigState};
pub use stream_plugins::StreamPlugins;
pub use stream_route::{StreamRoute, UpstreamRef};
pub use upstream::{Balance, HashKey, Host, Node, Upstream};
