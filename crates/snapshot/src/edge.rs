//! The edge's compiled tables: host → distribution, each distribution with
//! its origins bound to upstream runtimes, its behaviors' cache policies,
//! origin request policies and the LIVE stage of their functions resolved, its canary (continuous deployment policy and staging
//! distribution) attached, and the invalidations that apply to its cache.
//!
//! Host lookup follows the SNI rules (exact, then one-label `*.wildcard`,
//! then `*`), so a host and the certificate that serves it match the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use shardgate_model::edge::{Behavior, OriginRequestPolicy, Traffic};
use shardgate_model::{
    CachePolicy, ConfigState, Distribution, Invalid, Invalidation, Problem, ResourceId, ResourceKind, UpstreamRef,
};
use shardgate_upstream::{Registry, Upstream, UpstreamKey};
use shardgate_waf::{GeoDb, IpSet, RegexPatternSet, Sets, WebAcl};

use crate::SniTable;

/// One origin, ready to fetch from.
#[derive(Debug)]
pub struct EdgeOrigin {
    /// Its name in the distribution.
    pub name: String,
    /// Its configuration.
    pub config: shardgate_model::edge::Origin,
    /// Nodes, balancer and connect logic.
    pub upstream: Arc<Upstream>,
    /// The distribution's id, for metric labels.
    pub distribution: Arc<str>,
    /// The TLS client configuration when the origin may be fetched over
    /// HTTPS (`protocol_policy` other than `http-only`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The system's trust anchors, loaded once per process (blocking file
/// I/O, at the first snapshot with an HTTPS origin without `ca_bundle`).
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| Arc::new(shardgate_upstream::system_roots())))
}

/// Most TLS client configurations the origin TLS cache keeps for reuse: one per
/// distinct trust store (each distinct `ca_bundle`, and the system's) in
/// use. Past it, a new trust store gets a configuration of its own on each
/// compile, as before sharing.
pub const MAX_SHARED_ORIGIN_TLS: usize = 256;

/// The trust store of an origin's TLS client configuration: its
/// `ca_bundle`'s text, or `None` for the system's.
type TrustKey = Option<Arc<str>>;

/// The TLS client configurations in use, by trust store. Held weakly: a
/// configuration lives as long as a snapshot or a pooled origin connection
/// holds it, and a compile while the previous snapshot is live finds it.
fn shared_origin_tls() -> std::sync::MutexGuard<'static, HashMap<TrustKey, std::sync::Weak<rustls::ClientConfig>>> {
    static SHARED: std::sync::OnceLock<std::sync::Mutex<HashMap<TrustKey, std::sync::Weak<rustls::ClientConfig>>>> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The TLS client configuration of an origin fetched over HTTPS: its
/// `ca_bundle`'s certificates, else the system's, as trust anchors; ALPN
/// `http/1.1` (origin connections are HTTP/1.1). `Err` names what is wrong
/// with the bundle.
///
/// Origins with the same trust store share one configuration, across
/// distributions and across compiles: the origin connection pool keys
/// connections on the configuration's identity, so a new one for an
/// unchanged origin (on any configuration change, an invalidation
/// included) would leave its idle HTTPS connections unused and lose the
/// TLS sessions the configuration resumes.
fn origin_tls(origin: &shardgate_model::edge::Origin) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if origin.protocol_policy == shardgate_model::edge::ProtocolPolicy::HttpOnly {
        return Ok(None);
    }
    let key: TrustKey = origin.ca_bundle.clone();
    // Held while building, so that one trust store is built once.
    let mut shared = shared_origin_tls();
    if let Some(config) = shared.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(Some(config));
    }
    let config = Arc::new(build_origin_tls(origin.ca_bundle.as_deref())?);
    shared.retain(|_, c| c.strong_count() > 0);
    if shared.len() < MAX_SHARED_ORIGIN_TLS {
        shared.insert(key, Arc::downgrade(&config));
    }
    Ok(Some(config))
}

/// A new TLS client configuration trusting `ca_bundle`'s certificates, else
/// the system's.
fn build_origin_tls(ca_bundle: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots = match ca_bundle {
        None => system_roots(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok);
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("none of its {ignored} certificate(s) is usable as a trust anchor"));
            }
            Arc::new(roots)
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("the TLS provider offers no protocol version: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A function a behavior runs: the LIVE stage of a `functions` resource.
#[derive(Debug)]
pub struct EdgeFunction {
    /// The function's id.
    pub id: ResourceId,
    /// The id as a shared string, for metric labels.
    pub label: Arc<str>,
    /// The LIVE code, checked and ready to run.
    pub compiled: shardgate_functions::CompiledFunction,
}

/// The functions of one behavior, by event type (CloudFront's
/// `FunctionAssociations`, at most one per type).
#[derive(Debug, Default, Clone)]
pub struct BehaviorFunctions {
    /// Runs before the cache, on the viewer's request.
    pub viewer_request: Option<Arc<EdgeFunction>>,
    /// Runs on the response before it goes to the viewer.
    pub viewer_response: Option<Arc<EdgeFunction>>,
}

/// A distribution ready to serve.
#[derive(Debug)]
pub struct EdgeDistribution {
    /// Resource id; also the cache namespace of its objects.
    pub id: ResourceId,
    /// Store revision of the distribution.
    pub revision: u64,
    /// The validated configuration.
    pub config: Arc<Distribution>,
    /// Origins by name.
    pub origins: BTreeMap<String, Arc<EdgeOrigin>>,
    /// The cache policy of `config.behaviors[i]`, then of the default behavior (last).
    pub policies: Vec<Arc<CachePolicy>>,
    /// The origin request policy of each behavior, indexed like `policies`
    /// (`None`: the behavior names none).
    pub request_policies: Vec<Option<Arc<OriginRequestPolicy>>>,
    /// The functions of `config.behaviors[i]`, then of the default behavior
    /// (last): indexed like `policies`.
    pub functions: Vec<BehaviorFunctions>,
    /// Canary routing, on a primary with an enabled policy.
    pub canary: Option<Canary>,
    /// Invalidations of this distribution, oldest first, by store revision.
    pub invalidations: Vec<(u64, Arc<Invalidation>)>,
    /// The web ACL that inspects its requests.
    pub waf: Option<Arc<CompiledAcl>>,
    /// The id as a shared string, for metric labels.
    pub id_label: Arc<str>,
    /// Metric labels of the behaviors (their path patterns), then `default`.
    pub behavior_labels: Vec<Arc<str>>,
}

impl EdgeDistribution {
    /// The behavior for a path and its cache policy.
    pub fn behavior_for(&self, path: &str) -> (&Behavior, &Arc<CachePolicy>, usize) {
        let cfg = &self.config;
        let index = cfg
            .behaviors
            .iter()
            .position(|b| b.pattern.as_ref().is_some_and(|p| p.matches(path)))
            .unwrap_or(cfg.behaviors.len());
        let behavior = cfg.behaviors.get(index).unwrap_or(&cfg.default_behavior);
        (behavior, &self.policies[index], index)
    }

    /// The origin request policy of the behavior at `index` (as returned by
    /// [`EdgeDistribution::behavior_for`]), if it names one.
    pub fn request_policy(&self, index: usize) -> Option<&Arc<OriginRequestPolicy>> {
        self.request_policies.get(index).and_then(Option::as_ref)
    }

    /// Whether an object fetched at `generation` for these targets is still
    /// valid: no invalidation stored after that generation covers it.
    pub fn still_valid(&self, generation: u64, viewer_target: &str, origin_target: &str) -> bool {
        !self
            .invalidations
            .iter()
            .rev()
            .take_while(|(revision, _)| *revision > generation)
            .any(|(_, inv)| inv.paths.iter().any(|p| p.covers(viewer_target) || p.covers(origin_target)))
    }
}

/// A web ACL compiled with the sets it refers to.
#[derive(Debug)]
pub struct CompiledAcl {
    /// The `web_acls` resource id.
    pub id: ResourceId,
    /// Its id as a shared string, for metric labels.
    pub id_label: Arc<str>,
    /// The evaluator.
    pub acl: WebAcl,
}

struct StateSets<'a>(&'a ConfigState, Option<&'a Arc<GeoDb>>);

impl Sets for StateSets<'_> {
    fn geo(&self) -> Result<Option<Arc<GeoDb>>, String> {
        match self.1 {
            Some(db) => Ok(Some(Arc::clone(db))),
            None => {
                Err("GeoMatchStatement needs a country database: set waf.geoip_database in the bootstrap file".into())
            }
        }
    }

    fn ip_set(&self, id: &str) -> Option<Arc<IpSet>> {
        let id = ResourceId::parse(id).ok()?;
        self.0.ip_sets.get(&id).map(|e| Arc::clone(&e.value))
    }
    fn regex_set(&self, id: &str) -> Option<Arc<RegexPatternSet>> {
        let id = ResourceId::parse(id).ok()?;
        self.0.regex_sets.get(&id).map(|e| Arc::clone(&e.value))
    }
}

/// Compiles every web ACL of `state` with its sets; failures are problems.
/// Rate-based counts carry over from `prev` (the previous generation's ACLs).
///
/// An ACL that compiled before and fails now (a set it refers to was deleted
/// with `?force=true`, or another writer stored something the Admin API
/// would refuse) keeps serving its previous compiled version, and the
/// problem says so: its distributions and routes stay protected as they
/// were. An ACL that never compiled stays out, and so do its users (fail
/// closed, see [`EdgeRouter::build`]).
pub fn compile_acls(
    state: &ConfigState,
    geo: Option<&Arc<GeoDb>>,
    prev: &HashMap<ResourceId, Arc<CompiledAcl>>,
    problems: &mut Vec<Problem>,
) -> HashMap<ResourceId, Arc<CompiledAcl>> {
    let mut out = HashMap::new();
    for (id, entry) in &state.web_acls {
        match WebAcl::compile(&entry.value, &StateSets(state, geo)) {
            Ok(mut acl) => {
                if let Some(old) = prev.get(id) {
                    acl.keep_rate_counts(&old.acl);
                }
                out.insert(id.clone(), Arc::new(CompiledAcl { id: id.clone(), id_label: Arc::from(id.as_str()), acl }));
            }
            Err(e) => {
                let last_good = prev.get(id).map(Arc::clone);
                let reason = match &last_good {
                    Some(_) => format!("{}; the last good version keeps serving", e.reason),
                    None => format!("{}; the web ACL is not loaded and what uses it is left out", e.reason),
                };
                problems.push(Problem {
                    kind: ResourceKind::WebAcls,
                    id: id.clone(),
                    revision: entry.revision,
                    invalid: Invalid::new(e.path, reason),
                });
                if let Some(acl) = last_good {
                    out.insert(id.clone(), acl);
                }
            }
        }
    }
    out
}

/// A primary's continuous deployment policy with its staging distribution.
#[derive(Debug)]
pub struct Canary {
    /// The policy's id.
    pub policy_id: ResourceId,
    /// The policy's store revision: sticky sessions reset when it changes.
    pub revision: u64,
    /// Which requests go to staging.
    pub traffic: Traffic,
    /// The staging distribution.
    pub staging: Arc<EdgeDistribution>,
}

/// Host → distribution, and every distribution by id.
#[derive(Debug, Default)]
pub struct EdgeRouter {
    hosts: SniTable<Arc<EdgeDistribution>>,
    by_id: HashMap<ResourceId, Arc<EdgeDistribution>>,
}

impl EdgeRouter {
    /// The distribution answering `host` (lower-case, without port).
    pub fn find(&self, host: &str) -> Option<&Arc<EdgeDistribution>> {
        self.hosts.find_cert(host)
    }

    /// A distribution by id (primaries and staging).
    pub fn get(&self, id: &ResourceId) -> Option<&Arc<EdgeDistribution>> {
        self.by_id.get(id)
    }

    /// Every distribution, primaries and staging.
    pub fn distributions(&self) -> impl Iterator<Item = &Arc<EdgeDistribution>> {
        self.by_id.values()
    }

    /// Number of distributions served.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no distribution is served.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Compiles the distributions of `state`. Upstream runtimes used are
    /// added to `used`; problems are appended.
    pub fn build(
        state: &ConfigState,
        registry: &Registry,
        acls: &HashMap<ResourceId, Arc<CompiledAcl>>,
        used: &mut HashSet<UpstreamKey>,
        problems: &mut Vec<Problem>,
    ) -> Self {
        let mut invalidations: HashMap<&ResourceId, Vec<(u64, Arc<Invalidation>)>> = HashMap::new();
        for entry in state.invalidations.values() {
            invalidations
                .entry(&entry.value.distribution)
                .or_default()
                .push((entry.revision, Arc::clone(&entry.value)));
        }
        for list in invalidations.values_mut() {
            list.sort_by_key(|(rev, _)| *rev);
        }

        // Staging distributions first: primaries attach them.
        let mut compiled: HashMap<ResourceId, Arc<EdgeDistribution>> = HashMap::new();
        let order = state
            .distributions
            .iter()
            .filter(|(_, e)| e.value.staging)
            .chain(state.distributions.iter().filter(|(_, e)| !e.value.staging));
        for (id, entry) in order {
            let problem = |invalid: Invalid| Problem {
                kind: ResourceKind::Distributions,
                id: id.clone(),
                revision: entry.revision,
                invalid,
            };
            let dist = &entry.value;
            let mut origins = BTreeMap::new();
            let mut failed = None;
            for (name, origin) in &dist.origins {
                let (key, config) = match &origin.upstream {
                    UpstreamRef::Inline(u) => (UpstreamKey::InlineOrigin(id.clone(), name.clone()), Arc::clone(u)),
                    UpstreamRef::Id(uid) => match state.upstreams.get(uid) {
                        Some(u) => (UpstreamKey::Named(uid.clone()), Arc::clone(&u.value)),
                        None => {
                            failed = Some(Invalid::new(
                                format!("origins.{name}.upstream_id"),
                                format!("upstream {uid} does not exist"),
                            ));
                            break;
                        }
                    },
                };
                let tls = match origin_tls(origin) {
                    Ok(t) => t,
                    Err(why) => {
                        failed = Some(Invalid::new(format!("origins.{name}.ca_bundle"), why));
                        break;
                    }
                };
                let upstream = registry.get_or_create(key.clone(), &config);
                used.insert(key);
                origins.insert(
                    name.clone(),
                    Arc::new(EdgeOrigin {
                        name: name.clone(),
                        config: origin.clone(),
                        upstream,
                        distribution: Arc::from(id.as_str()),
                        tls,
                    }),
                );
            }
            let mut policies = Vec::with_capacity(dist.behaviors.len() + 1);
            for (i, b) in dist.behaviors.iter().chain(std::iter::once(&dist.default_behavior)).enumerate() {
                let policy = match &b.cache_policy {
                    None => Arc::new(CachePolicy::builtin()),
                    Some(pid) => match state.cache_policies.get(pid) {
                        Some(p) => Arc::clone(&p.value),
                        None => {
                            let field = if i < dist.behaviors.len() {
                                format!("behaviors[{i}].cache_policy_id")
                            } else {
                                "default_behavior.cache_policy_id".into()
                            };
                            failed.get_or_insert(Invalid::new(field, format!("cache policy {pid} does not exist")));
                            break;
                        }
                    },
                };
                policies.push(policy);
            }
            let mut request_policies = Vec::with_capacity(dist.behaviors.len() + 1);
            for (i, b) in dist.behaviors.iter().chain(std::iter::once(&dist.default_behavior)).enumerate() {
                let policy = match &b.origin_request_policy {
                    None => None,
                    Some(pid) => match state.origin_request_policies.get(pid) {
                        Some(p) => Some(Arc::clone(&p.value)),
                        None => {
                            let field = if i < dist.behaviors.len() {
                                format!("behaviors[{i}].origin_request_policy_id")
                            } else {
                                "default_behavior.origin_request_policy_id".into()
                            };
                            failed.get_or_insert(Invalid::new(
                                field,
                                format!("origin request policy {pid} does not exist"),
                            ));
                            break;
                        }
                    },
                };
                request_policies.push(policy);
            }
            let mut functions = Vec::with_capacity(dist.behaviors.len() + 1);
            for (i, b) in dist.behaviors.iter().chain(std::iter::once(&dist.default_behavior)).enumerate() {
                match behavior_functions(state, b, i, dist.behaviors.len()) {
                    Ok(f) => functions.push(f),
                    Err(invalid) => {
                        failed.get_or_insert(invalid);
                        break;
                    }
                }
            }
            let waf = match &dist.web_acl {
                None => None,
                Some(aid) => match acls.get(aid) {
                    Some(a) => Some(Arc::clone(a)),
                    None => {
                        failed.get_or_insert(Invalid::new(
                            "web_acl_id",
                            format!("web ACL {aid} does not exist or does not compile; the distribution is left out rather than served unprotected"),
                        ));
                        None
                    }
                },
            };
            if let Some(invalid) = failed {
                problems.push(problem(invalid));
                continue;
            }
            let canary = match &dist.cd_policy {
                None => None,
                Some(pid) => match state.cd_policies.get(pid) {
                    None => {
                        problems.push(problem(Invalid::new(
                            "continuous_deployment_policy_id",
                            format!("continuous deployment policy {pid} does not exist; serving without it"),
                        )));
                        None
                    }
                    Some(p) if !p.value.enabled => None,
                    Some(p) => match compiled.get(&p.value.staging) {
                        Some(staging) if staging.config.staging => Some(Canary {
                            policy_id: pid.clone(),
                            revision: p.revision,
                            traffic: p.value.traffic.clone(),
                            staging: Arc::clone(staging),
                        }),
                        _ => {
                            problems.push(Problem {
                                kind: ResourceKind::CdPolicies,
                                id: pid.clone(),
                                revision: p.revision,
                                invalid: Invalid::new(
                                    "staging_distribution_id",
                                    format!(
                                        "{} is not a usable staging distribution; serving the primary only",
                                        p.value.staging
                                    ),
                                ),
                            });
                            None
                        }
                    },
                },
            };
            let behavior_labels = dist
                .behaviors
                .iter()
                .map(|b| Arc::from(b.pattern.as_ref().map_or("default", |p| p.as_str())))
                .chain(std::iter::once(Arc::from("default")))
                .collect();
            let compiled_dist = Arc::new(EdgeDistribution {
                waf,
                id_label: Arc::from(id.as_str()),
                behavior_labels,
                id: id.clone(),
                revision: entry.revision,
                config: Arc::clone(dist),
                origins,
                policies,
                request_policies,
                functions,
                canary,
                invalidations: invalidations.remove(id).unwrap_or_default(),
            });
            compiled.insert(id.clone(), compiled_dist);
        }

        let mut router = EdgeRouter::default();
        // Hosts in id order; a host claimed twice goes to the lowest id.
        for (id, entry) in &state.distributions {
            let Some(dist) = compiled.get(id) else { continue };
            for host in &entry.value.hosts {
                let mut taken = true;
                router.hosts.entry(host, || {
                    taken = false;
                    Arc::clone(dist)
                });
                if taken {
                    problems.push(Problem {
                        kind: ResourceKind::Distributions,
                        id: id.clone(),
                        revision: entry.revision,
                        invalid: Invalid::new("hosts", format!("{host} is already served by another distribution")),
                    });
                }
            }
        }
        router.by_id = compiled;
        router
    }
}

/// The LIVE functions of behavior `index` (the default behavior when
/// `index == behaviors`); a function that does not exist or was never
/// published leaves the distribution out, as a missing cache policy does.
fn behavior_functions(
    state: &ConfigState,
    behavior: &Behavior,
    index: usize,
    behaviors: usize,
) -> Result<BehaviorFunctions, Invalid> {
    let mut out = BehaviorFunctions::default();
    for (j, a) in behavior.function_associations.iter().enumerate() {
        let field = if index < behaviors {
            format!("behaviors[{index}].function_associations[{j}].function")
        } else {
            format!("default_behavior.function_associations[{j}].function")
        };
        let Some(entry) = state.functions.get(&a.function) else {
            return Err(Invalid::new(field, format!("function {} does not exist", a.function)));
        };
        let Some(live) = &entry.value.live else {
            return Err(Invalid::new(
                field,
                format!("function {} has never been published (no LIVE stage)", a.function),
            ));
        };
        let function = Arc::new(EdgeFunction {
            id: a.function.clone(),
            label: Arc::from(a.function.as_str()),
            compiled: live.stage.compiled.with_identity(a.function.as_str(), "LIVE"),
        });
        match a.event_type {
            shardgate_functions::EventType::ViewerRequest => out.viewer_request = Some(function),
            shardgate_functions::EventType::ViewerResponse => out.viewer_response = Some(function),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_model::Change;

    fn put(state: &mut ConfigState, kind: ResourceKind, id: &str, revision: u64, v: serde_json::Value) {
        let id = ResourceId::parse(id).expect("id");
        state.apply(Change::Put { kind, id, revision, value: v.to_string().into_bytes() }).expect("valid");
    }

    fn acl(set: &str) -> serde_json::Value {
        serde_json::json!({"Name": "a", "DefaultAction": {"Allow": {}},
            "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "a"},
            "Rules": [{"Name": "deny", "Priority": 0, "Action": {"Block": {}},
                "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "deny"},
                "Statement": {"RateBasedStatement": {"Limit": 100, "AggregateKeyType": "IP",
                    "ScopeDownStatement": {"IPSetReferenceStatement": {"ARN": set}}}}}]})
    }

    /// A set deleted from under a compiled ACL (another writer, or
    /// `?force=true`): the last good compiled ACL keeps serving and the
    /// problem says so; an ACL that never compiled stays out.
    #[test]
    fn a_web_acl_that_stops_compiling_keeps_its_last_good_version() {
        let mut state = ConfigState::default();
        put(&mut state, ResourceKind::IpSets, "bad", 1, serde_json::json!({"Addresses": ["192.0.2.0/24"]}));
        put(&mut state, ResourceKind::WebAcls, "a", 2, acl("bad"));
        let mut problems = Vec::new();
        let first = compile_acls(&state, None, &HashMap::new(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let good = Arc::clone(&first[&ResourceId::parse("a").expect("id")]);

        state
            .apply(Change::Delete {
                kind: ResourceKind::IpSets,
                id: ResourceId::parse("bad").expect("id"),
                revision: 3,
            })
            .expect("delete");
        let second = compile_acls(&state, None, &first, &mut problems);
        let kept = second.get(&ResourceId::parse("a").expect("id")).expect("the last good version is kept");
        assert!(Arc::ptr_eq(kept, &good), "the same compiled ACL, counters and all");
        assert_eq!(problems.len(), 1);
        let p = &problems[0];
        assert_eq!(
            p.invalid.field,
            "Rules[0].Statement.RateBasedStatement.ScopeDownStatement.IPSetReferenceStatement.ARN"
        );
        assert!(
            p.invalid.reason.contains("does not exist; the last good version keeps serving"),
            "{}",
            p.invalid.reason
        );

        // Never compiled: not loaded, and said so.
        put(&mut state, ResourceKind::WebAcls, "b", 4, acl("missing"));
        let mut problems = Vec::new();
        let third = compile_acls(&state, None, &second, &mut problems);
        assert!(!third.contains_key(&ResourceId::parse("b").expect("id")));
        assert!(third.contains_key(&ResourceId::parse("a").expect("id")), "still kept a generation later");
        let b = problems.iter().find(|p| p.id.as_str() == "b").expect("b's problem");
        assert!(b.invalid.reason.contains("not loaded and what uses it is left out"), "{}", b.invalid.reason);
    }

    /// A behavior's functions are the LIVE stage of the functions it names;
    /// a function never published leaves the distribution out, naming it.
    #[test]
    fn behaviors_carry_their_live_functions() {
        let mut state = ConfigState::default();
        let code = |uri: &str| format!("function handler(e) {{ e.request.uri = '{uri}'; return e.request; }}");
        put(
            &mut state,
            ResourceKind::Functions,
            "live",
            1,
            serde_json::json!({"runtime": "cloudfront-js-1.0", "code": code("/dev"),
            "live": {"runtime": "cloudfront-js-1.0", "code": code("/live"), "published_at": 1}}),
        );
        put(
            &mut state,
            ResourceKind::Functions,
            "draft",
            2,
            serde_json::json!({"runtime": "cloudfront-js-1.0", "code": code("/dev")}),
        );
        let dist = |function: &str| {
            serde_json::json!({"hosts": [format!("{function}.example")], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}},
            "behaviors": [{"path_pattern": "/a/*"}],
            "default_behavior": {"function_associations": [{"event_type": "viewer-response", "function": function}]}})
        };
        put(&mut state, ResourceKind::Distributions, "d1", 3, dist("live"));
        put(&mut state, ResourceKind::Distributions, "d2", 4, dist("draft"));
        let mut problems = Vec::new();
        let registry = Registry::new(
            Arc::new(shardgate_upstream::Resolver::new(
                std::time::Duration::from_secs(30),
                std::time::Duration::from_secs(5),
            )),
            shardgate_upstream::UpstreamMetrics::default(),
            shardgate_upstream::ConnectDefaults::default(),
        );
        let router = EdgeRouter::build(&state, &registry, &HashMap::new(), &mut HashSet::new(), &mut problems);
        let d1 = router.get(&ResourceId::parse("d1").expect("id")).expect("d1 served");
        assert_eq!(d1.functions.len(), 2, "one entry per behavior, default last");
        assert!(d1.functions[0].viewer_request.is_none() && d1.functions[0].viewer_response.is_none());
        let f = d1.functions[1].viewer_response.as_ref().expect("default behavior's viewer-response function");
        assert_eq!(&*f.label, "live");
        assert!(f.compiled.code().contains("/live"), "the LIVE stage runs, not DEVELOPMENT");
        assert!(router.get(&ResourceId::parse("d2").expect("id")).is_none(), "left out");
        let p = problems.iter().find(|p| p.id.as_str() == "d2").expect("d2's problem");
        assert_eq!(p.invalid.field, "default_behavior.function_associations[0].function");
        assert!(p.invalid.reason.contains("function draft has never been published"), "{}", p.invalid.reason);
    }
}

#[cfg(test)]
mod request_policy_tests {
    use super::*;
    use shardgate_model::Change;
    use shardgate_upstream::{ConnectDefaults, Resolver, UpstreamMetrics};
    use std::time::Duration;

    fn put(state: &mut ConfigState, kind: ResourceKind, id: &str, revision: u64, v: serde_json::Value) {
        let id = ResourceId::parse(id).expect("id");
        state.apply(Change::Put { kind, id, revision, value: v.to_string().into_bytes() }).expect("valid");
    }

    fn build(state: &ConfigState, problems: &mut Vec<Problem>) -> EdgeRouter {
        let registry = Registry::new(
            Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
            UpstreamMetrics::default(),
            ConnectDefaults::default(),
        );
        EdgeRouter::build(state, &registry, &HashMap::new(), &mut HashSet::new(), problems)
    }

    /// Each behavior's origin request policy is resolved next to its cache
    /// policy; a distribution naming a missing one is left out with a
    /// problem naming the field, as for a missing cache policy.
    #[test]
    fn origin_request_policies_resolve_per_behavior() {
        let mut state = ConfigState::default();
        put(
            &mut state,
            ResourceKind::OriginRequestPolicies,
            "fwd",
            1,
            serde_json::json!({
            "headers": {"behavior": "whitelist", "items": ["X-Player-Id"]}}),
        );
        put(
            &mut state,
            ResourceKind::Distributions,
            "d",
            2,
            serde_json::json!({
            "hosts": ["a.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}},
            "behaviors": [{"path_pattern": "/api/*", "origin_request_policy_id": "fwd",
                "allowed_methods": ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"]}]}),
        );
        put(
            &mut state,
            ResourceKind::Distributions,
            "broken",
            3,
            serde_json::json!({
            "hosts": ["b.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}},
            "default_behavior": {"origin_request_policy_id": "missing"}}),
        );
        let mut problems = Vec::new();
        let router = build(&state, &mut problems);
        let d = router.find("a.example").expect("served");
        let (_, _, api) = d.behavior_for("/api/login");
        let policy = d.request_policy(api).expect("the /api/* behavior's policy");
        assert!(policy.headers.forwards("x-player-id") && !policy.headers.forwards("x-other"));
        let (_, _, default) = d.behavior_for("/index.html");
        assert!(d.request_policy(default).is_none(), "the default behavior names none");

        assert!(router.find("b.example").is_none(), "left out rather than served without its policy");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].id.as_str(), "broken");
        assert_eq!(problems[0].invalid.field, "default_behavior.origin_request_policy_id");
        assert!(problems[0].invalid.reason.contains("origin request policy missing does not exist"));
    }
}

#[cfg(test)]
mod origin_tls_tests {
    use super::*;
    use shardgate_model::Change;
    use shardgate_upstream::{ConnectDefaults, Resolver, UpstreamMetrics};
    use std::time::Duration;

    fn put(state: &mut ConfigState, kind: ResourceKind, id: &str, revision: u64, v: serde_json::Value) {
        let id = ResourceId::parse(id).expect("id");
        state.apply(Change::Put { kind, id, revision, value: v.to_string().into_bytes() }).expect("valid");
    }

    fn build(state: &ConfigState) -> EdgeRouter {
        let registry = Registry::new(
            Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
            UpstreamMetrics::default(),
            ConnectDefaults::default(),
        );
        let mut problems = Vec::new();
        let router = EdgeRouter::build(state, &registry, &HashMap::new(), &mut HashSet::new(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        router
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("CA").pem()
    }

    fn https(id: &str, ca: &str) -> serde_json::Value {
        serde_json::json!({"hosts": [format!("{id}.example")], "origins": {"o": {
            "upstream": {"nodes": {"127.0.0.1:1": 1}}, "protocol_policy": "https-only", "ca_bundle": ca}}})
    }

    fn tls(router: &EdgeRouter, id: &str) -> Arc<rustls::ClientConfig> {
        let dist = router.get(&ResourceId::parse(id).expect("id")).expect("served");
        Arc::clone(dist.origins["o"].tls.as_ref().expect("an HTTPS origin has a TLS configuration"))
    }

    /// An unchanged origin keeps its TLS client configuration across
    /// compiles (the origin pool keys idle connections on it), and origins
    /// with the same bundle share one; another bundle gets its own.
    #[test]
    fn origins_share_one_tls_configuration_per_ca_bundle_across_compiles() {
        let (ca_a, ca_b) = (ca_pem(), ca_pem());
        let mut state = ConfigState::default();
        put(&mut state, ResourceKind::Distributions, "a1", 1, https("a1", &ca_a));
        put(&mut state, ResourceKind::Distributions, "a2", 2, https("a2", &ca_a));
        put(&mut state, ResourceKind::Distributions, "b", 3, https("b", &ca_b));
        let first = build(&state);
        // An unrelated change (another distribution), then a compile again.
        put(
            &mut state,
            ResourceKind::Distributions,
            "other",
            4,
            serde_json::json!({
            "hosts": ["other.example"], "origins": {"o": {"upstream": {"nodes": {"127.0.0.1:1": 1}}}}}),
        );
        let second = build(&state);

        assert!(Arc::ptr_eq(&tls(&first, "a1"), &tls(&second, "a1")), "the same configuration after a recompile");
        assert!(Arc::ptr_eq(&tls(&first, "b"), &tls(&second, "b")));
        assert!(Arc::ptr_eq(&tls(&second, "a1"), &tls(&second, "a2")), "one per bundle");
        assert!(!Arc::ptr_eq(&tls(&second, "a1"), &tls(&second, "b")), "another bundle, another trust store");
        assert!(second.get(&ResourceId::parse("other").expect("id")).expect("served").origins["o"].tls.is_none());

        // A changed bundle is a new configuration.
        let ca_c = ca_pem();
        put(&mut state, ResourceKind::Distributions, "b", 5, https("b", &ca_c));
        let third = build(&state);
        assert!(!Arc::ptr_eq(&tls(&second, "b"), &tls(&third, "b")));
        assert!(Arc::ptr_eq(&tls(&second, "a1"), &tls(&third, "a1")));
    }

    /// Once nothing holds a configuration, it is not kept: the cache holds
    /// configurations weakly.
    #[test]
    fn a_configuration_nothing_holds_is_let_go() {
        let ca = ca_pem();
        let mut state = ConfigState::default();
        put(&mut state, ResourceKind::Distributions, "gone", 1, https("gone", &ca));
        let weak = Arc::downgrade(&tls(&build(&state), "gone"));
        assert_eq!(weak.strong_count(), 0, "dropped with the only snapshot holding it");
        let key: TrustKey = Some(Arc::from(ca.as_str()));
        let again = tls(&build(&state), "gone");
        assert!(
            shared_origin_tls().get(&key).and_then(std::sync::Weak::upgrade).is_some_and(|c| Arc::ptr_eq(&c, &again))
        );
    }
}
