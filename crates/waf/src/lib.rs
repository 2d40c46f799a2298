//! shardgate-waf owns the web application firewall: AWS WAF v2 web ACLs,
//! IP sets and regex pattern sets in AWS's own JSON ([`json`]), compiled
//! once into an evaluator ([`acl`]) that takes a view of a request and gives
//! a verdict. Pure and bounded: no I/O, linear-time regexes with size
//! limits, headers, cookies and bodies inspected up to AWS's limits,
//! statement nesting bounded.
//!
//! # Layout
//! - [`json`]: the AWS JSON shapes (PascalCase, unknown fields refused).
//! - [`acl`]: compile (errors name the JSON path) and evaluate.
//! - [`transform`]: text transformations.
//! - [`sample`]: bounded recent samples per web ACL, for the Admin API.
//! - [`geo`]: the country database behind `GeoMatchStatement`.
//! - [`detect`]: the SQL-injection and XSS detectors behind `SqliMatch` and `XssMatch`.
//! - [`fingerprint`]: JA3 and JA4 from a ClientHello, once per connection.

pub mod acl;
pub mod detect;
pub mod fingerprint;
pub mod geo;
pub mod json;
pub mod sample;
pub mod transform;

pub use acl::{
    Action, BlockResponse, IpSet, NoSets, RegexPatternSet, RequestView, Sets, Verdict, WafError, WebAcl, arn_id,
};
pub use fingerprint::{ClientHelloInfo, HelloParse, TlsFingerprint, parse_client_hello};
pub use geo::GeoDb;
pub use sample::{Sample, Samples};
