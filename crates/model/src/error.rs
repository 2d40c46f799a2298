//! Validation errors that name the field, and problems that name the resource.

use std::fmt;

use crate::{ResourceId, ResourceKind};

/// One invalid field: its JSON path (`upstream.nodes["a:b"]`, `snis[1]`) and why.
///
/// Displayed the way APISIX words schema errors, so scripts that grep for
/// `property "..." validation failed` keep working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the offending field; empty for the whole document.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Invalid {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid { field: field.into(), reason: reason.into() }
    }

    /// Prefixes the path with `parent` (e.g. an inline `upstream`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = join_path(parent, &self.field);
        self
    }
}

/// Joins two JSON path pieces: `join_path("upstream", "nodes")` is
/// `upstream.nodes`, `join_path("snis", "[0]")` is `snis[0]`.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => parent.to_owned(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "property \"{}\" validation failed: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for Invalid {}

/// A resource that could not be used: which one, which field, why, and the
/// store revision of the rejected version. Reported by the reconciler and the
/// snapshot compiler; the resource's last good version (if any) keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Kind of the rejected resource.
    pub kind: ResourceKind,
    /// Its id.
    pub id: ResourceId,
    /// Store revision of the rejected version (0 when not from the store).
    pub revision: u64,
    /// The invalid field and reason.
    pub invalid: Invalid,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind.singular(), self.id, self.invalid)
    }
}
