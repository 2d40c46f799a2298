//! One entry point for every kind: wire parsing, validation and the stored
//! form. The Admin API and the reconciler both go through here, so what the
//! Admin API accepts is exactly what the data plane can load.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::wire::{SslWire, StreamRouteWire, UpstreamWire};
use crate::{Invalid, ResourceId, ResourceKind, Ssl, StreamRoute, Upstream, json};

/// What validation checks beyond the schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation {
    /// When set, certificates that expired before this time (seconds since
    /// the epoch) are refused. Set by the Admin API; unset when loading
    /// stored resources.
    pub now_unix: Option<i64>,
}

/// A resource in wire form, any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// An SSL object.
    Ssl(SslWire),
    /// An upstream.
    Upstream(UpstreamWire),
    /// A stream route.
    StreamRoute(StreamRouteWire),
}

/// A validated resource, any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// An SSL object.
    Ssl(Arc<Ssl>),
    /// An upstream.
    Upstream(Arc<Upstream>),
    /// A stream route.
    StreamRoute(Arc<StreamRoute>),
}

macro_rules! each_wire {
    ($self:expr, $w:ident => $body:expr) => {
        match $self {
            Wire::Ssl($w) => $body,
            Wire::Upstream($w) => $body,
            Wire::StreamRoute($w) => $body,
        }
    };
}

impl Wire {
    /// Deserializes the JSON of a `kind` (schema check, unknown fields refused).
    pub fn from_value(kind: ResourceKind, value: Value) -> Result<Self, Invalid> {
        if !value.is_object() {
            return Err(Invalid::new(
                "",
                format!("the body must be a JSON object, got {}", crate::id::json_type(&value)),
            ));
        }
        Ok(match kind {
            ResourceKind::Ssls => Wire::Ssl(json::from_value(value)?),
            ResourceKind::Upstreams => Wire::Upstream(json::from_value(value)?),
            ResourceKind::StreamRoutes => Wire::StreamRoute(json::from_value(value)?),
        })
    }

    /// The `id` field, if the body carries one.
    pub fn id(&self) -> Option<&Value> {
        each_wire!(self, w => w.id.as_ref())
    }

    /// Sets `id` (always stored as a string, as APISIX does for ids taken from the URL).
    pub fn set_id(&mut self, id: &ResourceId) {
        each_wire!(self, w => w.id = Some(Value::String(id.to_string())))
    }

    /// `create_time` and `update_time`.
    pub fn times(&self) -> (Option<i64>, Option<i64>) {
        each_wire!(self, w => (w.create_time, w.update_time))
    }

    /// Sets `create_time` and `update_time`.
    pub fn set_times(&mut self, create: i64, update: i64) {
        each_wire!(self, w => { w.create_time = Some(create); w.update_time = Some(update); })
    }

    /// Validates into a domain resource.
    pub fn validate(&self, id: &ResourceId, v: Validation) -> Result<Resource, Invalid> {
        Ok(match self {
            Wire::Ssl(w) => Resource::Ssl(Arc::new(Ssl::from_wire(id.clone(), w, v.now_unix)?)),
            Wire::Upstream(w) => Resource::Upstream(Arc::new(Upstream::from_wire(Some(id.clone()), w)?)),
            Wire::StreamRoute(w) => Resource::StreamRoute(Arc::new(StreamRoute::from_wire(id.clone(), w)?)),
        })
    }

    /// The form returned to clients: private keys removed.
    pub fn redacted(self) -> Self {
        match self {
            Wire::Ssl(w) => Wire::Ssl(w.redacted()),
            other => other,
        }
    }

    /// The canonical JSON value.
    pub fn to_value(&self) -> Value {
        fn ser<T: Serialize>(t: &T) -> Value {
            // Serializing plain structs of strings, numbers and maps cannot fail.
            serde_json::to_value(t).unwrap_or(Value::Null)
        }
        each_wire!(self, w => ser(w))
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_string().into_bytes()
    }
}

impl Resource {
    /// Parses and validates a stored value (no expiry check: see [`Validation`]).
    pub fn parse_stored(kind: ResourceKind, id: &ResourceId, bytes: &[u8]) -> Result<Self, Invalid> {
        let value = json::parse(bytes).map_err(|e| Invalid::new("", format!("stored value is not JSON: {e}")))?;
        Wire::from_value(kind, value)?.validate(id, Validation::default())
    }

    /// The kind.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Ssl(_) => ResourceKind::Ssls,
            Resource::Upstream(_) => ResourceKind::Upstreams,
            Resource::StreamRoute(_) => ResourceKind::StreamRoutes,
        }
    }
}
