//! The `functions` resource on the wire: a CloudFront Function (the
//! CloudFront API Reference, `CreateFunction`/`FunctionConfig`), with its two
//! stages: the fields at the top are the DEVELOPMENT stage a user edits,
//! `live` the LIVE stage behaviors run, written by publishing
//! (`POST /apisix/admin/functions/<id>/publish`, CloudFront's
//! `PublishFunction`) or carried whole by configuration as code.

use serde::{Deserialize, Serialize};

common_fields! {
    /// A function: its runtime and code (DEVELOPMENT), and what was last published (LIVE).
    pub struct FunctionWire {
        /// `cloudfront-js-1.0` or `cloudfront-js-2.0` (CloudFront `FunctionConfig.Runtime`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub runtime: Option<String>,
        /// The JavaScript, at most 10 KB, defining `function handler(event)`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub code: Option<String>,
        /// CloudFront `FunctionConfig.Comment`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub comment: Option<String>,
        /// The LIVE stage: set by publishing; a PUT without it keeps the stored one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub live: Option<FunctionStageWire>,
    }
}

/// A published stage.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionStageWire {
    /// The runtime the code was published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The published code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When it was published (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<i64>,
}

/// One function of a behavior (CloudFront `FunctionAssociation`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionAssociationWire {
    /// `viewer-request` or `viewer-response` (CloudFront `EventType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The id of a `functions` resource; its LIVE stage runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<serde_json::Value>,
}
