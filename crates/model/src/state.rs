//! The whole configuration as plain data.
//!
//! [`ConfigState`] is built by applying store events one at a time
//! ([`ConfigState::apply`]). A change whose value does not validate is
//! rejected alone: it becomes a [`Problem`] and the resource's last good
//! version, if there was one, stays in the state (the reconciler must
//! tolerate bad data written to etcd by other writers). [`ConfigState::diff`]
//! says what changed between two states, for logs and for the compiler.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kind::kind_table;
use crate::{Invalid, Keyring, Problem, Resource, ResourceId, ResourceKind};

/// One resource at a store revision.
#[derive(Debug)]
pub struct Entry<T> {
    /// Store revision of this version (etcd `mod_revision`).
    pub revision: u64,
    /// The validated resource.
    pub value: Arc<T>,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry { revision: self.revision, value: Arc::clone(&self.value) }
    }
}

/// A store event as the state sees it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A resource was created or replaced.
    Put {
        /// Kind.
        kind: ResourceKind,
        /// Id.
        id: ResourceId,
        /// Store revision of the write.
        revision: u64,
        /// The stored JSON.
        value: Vec<u8>,
    },
    /// A resource was deleted.
    Delete {
        /// Kind.
        kind: ResourceKind,
        /// Id.
        id: ResourceId,
        /// Store revision of the delete.
        revision: u64,
    },
}

/// What differs between two states, by resource.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Present now, absent before.
    pub added: Vec<(ResourceKind, ResourceId)>,
    /// Present in both at different revisions.
    pub changed: Vec<(ResourceKind, ResourceId)>,
    /// Absent now, present before.
    pub removed: Vec<(ResourceKind, ResourceId)>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Generates [`ConfigState`] (one map per kind) and its per-kind dispatch
/// from the kind table.
macro_rules! define_state {
    ($(
        $(#[$doc:meta])*
        $kind:ident {
            plural: $plural:literal, singular: $singular:literal, label: $label:literal,
            wire: $var:ident($wire:ty) => $domain:ty,
            state: $field:ident $(,)?
        }
    ),* $(,)?) => {
        /// Every resource, keyed by id (ids order as etcd lists keys: APISIX's
        /// "config order"), plus the problems of rejected versions.
        #[derive(Debug, Clone, Default)]
        pub struct ConfigState {
            $(
                #[doc = concat!("Every `", $plural, "` resource (", $singular, "), by id.")]
                pub $field: BTreeMap<ResourceId, Entry<$domain>>,
            )*
            problems: BTreeMap<(ResourceKind, ResourceId), Problem>,
            revision: u64,
            keyring: Option<Arc<Keyring>>,
        }

        impl ConfigState {
            fn remove(&mut self, kind: ResourceKind, id: &ResourceId) {
                match kind {
                    $(ResourceKind::$kind => drop(self.$field.remove(id)),)*
                }
            }

            fn insert(&mut self, id: ResourceId, revision: u64, resource: Resource) {
                match resource {
                    $(Resource::$var(value) => drop(self.$field.insert(id, Entry { revision, value })),)*
                }
            }

            /// How many resources of a kind are present.
            pub fn len(&self, kind: ResourceKind) -> usize {
                match kind {
                    $(ResourceKind::$kind => self.$field.len(),)*
                }
            }

            /// What changed from `old` to `self`, kind by kind in
            /// [`ResourceKind::ALL`] order, ids in order within a kind.
            pub fn diff(&self, old: &ConfigState) -> Changes {
                let mut changes = Changes::default();
                $(diff_map(ResourceKind::$kind, &self.$field, &old.$field, &mut changes);)*
                changes
            }
        }
    };
}

kind_table!(define_state);

impl ConfigState {
    /// An empty state that decrypts SSL private keys encrypted by APISIX's
    /// `data_encryption` with `keyring` (`None`: such keys are refused as
    /// problems, plaintext keys load either way).
    pub fn with_keyring(keyring: Option<Arc<Keyring>>) -> Self {
        ConfigState { keyring, ..ConfigState::default() }
    }

    /// The keyring stored SSL private keys are decrypted with, if any; a
    /// fresh state for a full reload takes it over:
    /// `ConfigState::with_keyring(old.keyring().cloned())`.
    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    /// Applies one change. On `Err`, the state keeps the last good version of
    /// the resource and records the problem (also returned).
    pub fn apply(&mut self, change: Change) -> Result<(), Problem> {
        match change {
            Change::Put { kind, id, revision, value } => {
                self.revision = self.revision.max(revision);
                match Resource::parse_stored_with(kind, &id, &value, self.keyring.as_deref()) {
                    Ok(resource) => {
                        self.problems.remove(&(kind, id.clone()));
                        self.insert(id, revision, resource);
                        Ok(())
                    }
                    Err(invalid) => {
                        let problem = Problem { kind, id: id.clone(), revision, invalid };
                        self.problems.insert((kind, id), problem.clone());
                        Err(problem)
                    }
                }
            }
            Change::Delete { kind, id, revision } => {
                self.revision = self.revision.max(revision);
                self.problems.remove(&(kind, id.clone()));
                self.remove(kind, &id);
                Ok(())
            }
        }
    }

    /// Records that the store is at `revision` even if no resource changed.
    pub fn set_revision(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
    }

    /// The newest store revision applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Problems of rejected versions, in kind and id order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.values()
    }

    /// Records a problem found outside parsing (e.g. by the compiler).
    pub fn problem(kind: ResourceKind, id: &ResourceId, revision: u64, invalid: Invalid) -> Problem {
        Problem { kind, id: id.clone(), revision, invalid }
    }
}

fn diff_map<T>(
    kind: ResourceKind,
    new: &BTreeMap<ResourceId, Entry<T>>,
    old: &BTreeMap<ResourceId, Entry<T>>,
    out: &mut Changes,
) {
    for (id, entry) in new {
        match old.get(id) {
            None => out.added.push((kind, id.clone())),
            Some(prev) if prev.revision != entry.revision => out.changed.push((kind, id.clone())),
            Some(_) => {}
        }
    }
    for id in old.keys().filter(|id| !new.contains_key(*id)) {
        out.removed.push((kind, id.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Validation, Wire};

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).expect("id")
    }

    fn put(kind: ResourceKind, i: &str, revision: u64, json: &str) -> Change {
        Change::Put { kind, id: id(i), revision, value: json.as_bytes().to_vec() }
    }

    #[test]
    fn a_bad_version_keeps_the_last_good_one() {
        let mut state = ConfigState::default();
        state.apply(put(ResourceKind::Upstreams, "u1", 2, r#"{"nodes":{"127.0.0.1:9000":1}}"#)).expect("good");
        let before = state.clone();
        let problem =
            state.apply(put(ResourceKind::Upstreams, "u1", 3, r#"{"nodes":{"127.0.0.1:nope":1}}"#)).unwrap_err();
        assert_eq!(problem.invalid.field, "nodes[\"127.0.0.1:nope\"]");
        assert_eq!(state.upstreams[&id("u1")].revision, 2, "last good version kept");
        assert_eq!(state.problems().count(), 1);
        assert!(state.diff(&before).is_empty());
        assert_eq!(state.revision(), 3);

        state.apply(put(ResourceKind::Upstreams, "u1", 4, r#"{"nodes":{"127.0.0.1:9001":1}}"#)).expect("fixed");
        assert_eq!(state.problems().count(), 0, "a good version clears the problem");
        assert_eq!(state.diff(&before).changed, vec![(ResourceKind::Upstreams, id("u1"))]);
    }

    /// An `ssls` value whose keys APISIX encrypted loads with the keyring
    /// that encrypted them, and is a problem on `key` without it.
    #[test]
    fn encrypted_ssl_keys_load_with_the_keyring() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["gs-1.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (keyring, _) = Keyring::generate().expect("keyring");
        let mut value = serde_json::json!({"cert": cert.pem(), "key": key.serialize_pem(), "snis": ["gs-1.example"]});
        crate::keyring::seal_ssl_value(&keyring, &mut value).expect("seal");
        let stored = value.to_string();
        assert!(!stored.contains("PRIVATE KEY"), "the stored key is encrypted");

        let keyring = Arc::new(keyring);
        let mut state = ConfigState::with_keyring(Some(Arc::clone(&keyring)));
        state.apply(put(ResourceKind::Ssls, "s1", 1, &stored)).expect("decrypted and loaded");
        assert_eq!(state.ssls[&id("s1")].value.snis.len(), 1);
        let reloaded = ConfigState::with_keyring(state.keyring().cloned());
        assert!(reloaded.keyring().is_some_and(|k| Arc::ptr_eq(k, &keyring)), "a fresh state keeps the keyring");

        let (other, _) = Keyring::generate().expect("keyring");
        for mut state in [ConfigState::default(), ConfigState::with_keyring(Some(Arc::new(other)))] {
            let problem = state.apply(put(ResourceKind::Ssls, "s1", 1, &stored)).unwrap_err();
            assert_eq!(problem.invalid.field, "key");
            assert_eq!(problem.invalid.reason, crate::keyring::UNDECRYPTABLE);
            assert!(state.ssls.is_empty());
        }
    }

    /// A valid value of each kind. The match has no wildcard: a kind added
    /// to the table does not compile here until it has a sample, and then
    /// the test below takes it through every generated path.
    fn sample(kind: ResourceKind) -> serde_json::Value {
        use serde_json::json;
        let visibility = |name: &str| json!({"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": name});
        match kind {
            ResourceKind::Ssls => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
                let params = rcgen::CertificateParams::new(vec!["gs-1.example".to_owned()]).expect("params");
                let cert = params.self_signed(&key).expect("cert");
                json!({"cert": cert.pem(), "key": key.serialize_pem(), "snis": ["gs-1.example"]})
            }
            ResourceKind::Upstreams => json!({"nodes": {"127.0.0.1:9000": 1}}),
            ResourceKind::StreamRoutes => json!({"sni": "gs-1.example", "upstream_id": "u1", "web_acl_id": "a1"}),
            ResourceKind::IpSets => json!({"Addresses": ["192.0.2.0/24"]}),
            ResourceKind::RegexPatternSets => json!({"RegularExpressionList": [{"RegexString": "^bot"}]}),
            ResourceKind::WebAcls => json!({"Name": "a", "DefaultAction": {"Allow": {}},
                "VisibilityConfig": visibility("a"),
                "Rules": [{"Name": "deny", "Priority": 0, "Action": {"Block": {}}, "VisibilityConfig": visibility("deny"),
                    "Statement": {"OrStatement": {"Statements": [
                        {"IPSetReferenceStatement": {"ARN": "arn:aws:wafv2:us-east-1:1:global/ipset/s/ip1"}},
                        {"RegexPatternSetReferenceStatement": {
                            "ARN": "arn:aws:wafv2:us-east-1:1:global/regexpatternset/r/re1",
                            "FieldToMatch": {"UriPath": {}}, "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}]}}}]}),
            ResourceKind::CachePolicies => json!({"min_ttl": 10}),
            ResourceKind::OriginRequestPolicies => json!({"headers": {"behavior": "allViewer"}}),
            ResourceKind::Distributions => json!({"hosts": ["a.example"], "origins": {"o": {"upstream_id": "u1"}},
                "default_behavior": {"origin": "o", "cache_policy_id": "c1", "origin_request_policy_id": "o1"},
                "web_acl_id": "a1"}),
            ResourceKind::CdPolicies => json!({"staging_distribution_id": "d1", "enabled": true,
                "traffic": {"type": "single_header", "header": "aws-cf-cd-resource", "value": "d1"}}),
            ResourceKind::Invalidations => json!({"distribution_id": "d1", "paths": ["/images/*"]}),
        }
    }

    /// Every kind of the table goes through each generated path: wire
    /// parsing, validation, the stored form, the state's map, counts, diff
    /// and delete; and refers only to kinds before it in `ALL`.
    #[test]
    fn every_kind_goes_through_wire_validation_and_state() {
        let mut state = ConfigState::default();
        for (revision, kind) in (1..).zip(ResourceKind::ALL) {
            let wire = Wire::from_value(kind, sample(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(wire.kind(), kind);
            for r in wire.references() {
                assert!(r.kind < kind, "{kind} refers to {} ({}), which ALL lists after it", r.kind, r.field);
            }
            let resource = wire.validate(&id("r1"), Validation::default()).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(resource.kind(), kind);
            assert_eq!(Resource::parse_stored(kind, &id("r1"), &wire.to_bytes()), Ok(resource), "{kind}");

            let before = state.clone();
            state
                .apply(Change::Put { kind, id: id("r1"), revision, value: wire.to_bytes() })
                .unwrap_or_else(|p| panic!("{p}"));
            assert_eq!(state.len(kind), 1, "{kind}");
            let diff = state.diff(&before);
            assert_eq!((diff.added, diff.changed, diff.removed), (vec![(kind, id("r1"))], vec![], vec![]));
        }
        assert!(ResourceKind::ALL.into_iter().all(|k| state.len(k) == 1), "each kind has its own map");
        for kind in ResourceKind::ALL {
            state.apply(Change::Delete { kind, id: id("r1"), revision: 100 }).expect("delete");
            assert_eq!(state.len(kind), 0, "{kind}");
        }
        assert_eq!(state.diff(&ConfigState::default()), Changes::default());
    }

    #[test]
    fn diff_reports_added_changed_removed() {
        let mut old = ConfigState::default();
        old.apply(put(ResourceKind::StreamRoutes, "a", 1, r#"{"upstream_id":"u"}"#)).expect("a");
        old.apply(put(ResourceKind::StreamRoutes, "b", 2, r#"{"upstream_id":"u"}"#)).expect("b");
        let mut new = old.clone();
        new.apply(Change::Delete { kind: ResourceKind::StreamRoutes, id: id("a"), revision: 3 }).expect("delete");
        new.apply(put(ResourceKind::StreamRoutes, "b", 4, r#"{"upstream_id":"v"}"#)).expect("b2");
        new.apply(put(ResourceKind::StreamRoutes, "c", 5, r#"{"upstream_id":"u"}"#)).expect("c");
        let d = new.diff(&old);
        assert_eq!(d.added, vec![(ResourceKind::StreamRoutes, id("c"))]);
        assert_eq!(d.changed, vec![(ResourceKind::StreamRoutes, id("b"))]);
        assert_eq!(d.removed, vec![(ResourceKind::StreamRoutes, id("a"))]);
    }
}
