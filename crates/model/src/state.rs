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

use shardgate_waf::json::WebAclJson;
use shardgate_waf::{IpSet, RegexPatternSet};

use crate::{
    CachePolicy, CdPolicy, Distribution, Invalid, Invalidation, Keyring, Problem, Resource, ResourceId, ResourceKind,
    Ssl, StreamRoute, Upstream,
};

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

/// Every resource, keyed by id (ids order as etcd lists keys: APISIX's
/// "config order"), plus the problems of rejected versions.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    /// SSL objects.
    pub ssls: BTreeMap<ResourceId, Entry<Ssl>>,
    /// Upstreams.
    pub upstreams: BTreeMap<ResourceId, Entry<Upstream>>,
    /// Stream routes.
    pub stream_routes: BTreeMap<ResourceId, Entry<StreamRoute>>,
    /// Cache policies.
    pub cache_policies: BTreeMap<ResourceId, Entry<CachePolicy>>,
    /// Distributions.
    pub distributions: BTreeMap<ResourceId, Entry<Distribution>>,
    /// Continuous deployment policies.
    pub cd_policies: BTreeMap<ResourceId, Entry<CdPolicy>>,
    /// Invalidations.
    pub invalidations: BTreeMap<ResourceId, Entry<Invalidation>>,
    /// WAF IP sets.
    pub ip_sets: BTreeMap<ResourceId, Entry<IpSet>>,
    /// WAF regex pattern sets.
    pub regex_sets: BTreeMap<ResourceId, Entry<RegexPatternSet>>,
    /// WAF web ACLs (JSON, compiled by the snapshot).
    pub web_acls: BTreeMap<ResourceId, Entry<WebAclJson>>,
    problems: BTreeMap<(ResourceKind, ResourceId), Problem>,
    revision: u64,
    keyring: Option<Arc<Keyring>>,
}

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
                match kind {
                    ResourceKind::Ssls => drop(self.ssls.remove(&id)),
                    ResourceKind::Upstreams => drop(self.upstreams.remove(&id)),
                    ResourceKind::StreamRoutes => drop(self.stream_routes.remove(&id)),
                    ResourceKind::CachePolicies => drop(self.cache_policies.remove(&id)),
                    ResourceKind::Distributions => drop(self.distributions.remove(&id)),
                    ResourceKind::CdPolicies => drop(self.cd_policies.remove(&id)),
                    ResourceKind::Invalidations => drop(self.invalidations.remove(&id)),
                    ResourceKind::IpSets => drop(self.ip_sets.remove(&id)),
                    ResourceKind::RegexPatternSets => drop(self.regex_sets.remove(&id)),
                    ResourceKind::WebAcls => drop(self.web_acls.remove(&id)),
                }
                Ok(())
            }
        }
    }

    fn insert(&mut self, id: ResourceId, revision: u64, resource: Resource) {
        match resource {
            Resource::Ssl(value) => drop(self.ssls.insert(id, Entry { revision, value })),
            Resource::Upstream(value) => drop(self.upstreams.insert(id, Entry { revision, value })),
            Resource::StreamRoute(value) => drop(self.stream_routes.insert(id, Entry { revision, value })),
            Resource::CachePolicy(value) => drop(self.cache_policies.insert(id, Entry { revision, value })),
            Resource::Distribution(value) => drop(self.distributions.insert(id, Entry { revision, value })),
            Resource::CdPolicy(value) => drop(self.cd_policies.insert(id, Entry { revision, value })),
            Resource::Invalidation(value) => drop(self.invalidations.insert(id, Entry { revision, value })),
            Resource::IpSet(value) => drop(self.ip_sets.insert(id, Entry { revision, value })),
            Resource::RegexSet(value) => drop(self.regex_sets.insert(id, Entry { revision, value })),
            Resource::WebAcl(value) => drop(self.web_acls.insert(id, Entry { revision, value })),
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

    /// How many resources of a kind are present.
    pub fn len(&self, kind: ResourceKind) -> usize {
        match kind {
            ResourceKind::Ssls => self.ssls.len(),
            ResourceKind::Upstreams => self.upstreams.len(),
            ResourceKind::StreamRoutes => self.stream_routes.len(),
            ResourceKind::CachePolicies => self.cache_policies.len(),
            ResourceKind::Distributions => self.distributions.len(),
            ResourceKind::CdPolicies => self.cd_policies.len(),
            ResourceKind::Invalidations => self.invalidations.len(),
            ResourceKind::IpSets => self.ip_sets.len(),
            ResourceKind::RegexPatternSets => self.regex_sets.len(),
            ResourceKind::WebAcls => self.web_acls.len(),
        }
    }

    /// What changed from `old` to `self`.
    pub fn diff(&self, old: &ConfigState) -> Changes {
        let mut changes = Changes::default();
        diff_map(ResourceKind::Ssls, &self.ssls, &old.ssls, &mut changes);
        diff_map(ResourceKind::Upstreams, &self.upstreams, &old.upstreams, &mut changes);
        diff_map(ResourceKind::StreamRoutes, &self.stream_routes, &old.stream_routes, &mut changes);
        diff_map(ResourceKind::CachePolicies, &self.cache_policies, &old.cache_policies, &mut changes);
        diff_map(ResourceKind::Distributions, &self.distributions, &old.distributions, &mut changes);
        diff_map(ResourceKind::CdPolicies, &self.cd_policies, &old.cd_policies, &mut changes);
        diff_map(ResourceKind::Invalidations, &self.invalidations, &old.invalidations, &mut changes);
        diff_map(ResourceKind::IpSets, &self.ip_sets, &old.ip_sets, &mut changes);
        diff_map(ResourceKind::RegexPatternSets, &self.regex_sets, &old.regex_sets, &mut changes);
        diff_map(ResourceKind::WebAcls, &self.web_acls, &old.web_acls, &mut changes);
        changes
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
