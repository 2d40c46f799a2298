//! Certificates by SNI, ready to serve.
//!
//! Every SNI pattern maps to one [`CertEntry`]: a rustls `ServerConfig` whose
//! resolver holds the key pairs of every SSL object naming that pattern (so
//! RSA and ECDSA can be offered together, whether they come from one object's
//! `cert`+`certs` or from two objects), ECDSA and Ed25519 before RSA: the
//! client gets the first pair its `signature_algorithms` allow. Configs are
//! built once per change of the SSL objects behind them and reused across
//! snapshots otherwise; all of them share one session cache and one ticket
//! key rotation ([`TlsShared`]), so a player resumes across config changes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm};
use shardgate_model::ssl::{TlsVersions, provider};
use shardgate_model::state::Entry;
use shardgate_model::{Invalid, Problem, ResourceId, ResourceKind, SniPattern, Ssl};

use crate::SniTable;

/// TLS state shared by every generation's configs.
#[derive(Clone)]
pub struct TlsShared {
    /// TLS 1.2 session-id cache (TLS 1.3 and ticket-capable TLS 1.2 clients
    /// use tickets instead).
    pub session_storage: Arc<dyn StoresServerSessions>,
    /// Ticket keys, rotated by rustls (AEAD, lifetime 6 h, previous key kept).
    pub ticketer: Arc<dyn ProducesTickets>,
}

impl fmt::Debug for TlsShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsShared").finish_non_exhaustive()
    }
}

impl TlsShared {
    /// A session cache of `cache_entries` and a fresh ticket key rotation.
    pub fn new(cache_entries: usize) -> Result<Self, rustls::Error> {
        Ok(TlsShared {
            session_storage: ServerSessionMemoryCache::new(cache_entries),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        })
    }
}

/// What serves one SNI pattern.
#[derive(Debug)]
pub struct CertEntry {
    /// The rustls config to start the handshake with.
    pub config: Arc<ServerConfig>,
    /// The same for HTTP listeners: ALPN offers `h2` and `http/1.1`.
    pub http_config: Arc<ServerConfig>,
    /// The SSL objects behind it, in id order.
    pub ssl_ids: Vec<ResourceId>,
}

type GroupKey = Vec<(ResourceId, u64)>;

/// SNI → certificate configs for one generation.
#[derive(Debug, Default)]
pub struct CertStore {
    table: SniTable<Arc<CertEntry>>,
    by_group: HashMap<GroupKey, Arc<CertEntry>>,
    /// The serving SSL objects it was built from (id, revision), in id
    /// order: when the next generation's are the same, it is reused whole.
    source: Vec<(ResourceId, u64)>,
    /// What building it refused, reported again by every generation that
    /// reuses it.
    problems: Vec<Problem>,
}

struct PairResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl fmt::Debug for PairResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairResolver").field("keys", &self.keys.len()).finish()
    }
}

impl ResolvesServerCert for PairResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.signature_schemes();
        // No key the client can verify: still hand rustls one, so that it
        // refuses with `handshake_failure` (no signature scheme or cipher
        // suite in common, RFC 8446 §4.4.2.2 / RFC 5246 §7.4.1.4.1) rather
        // than the `access_denied` it sends when a resolver finds nothing,
        // which TLS scanners and clients read as an authorisation refusal.
        self.keys.iter().find(|k| k.key.choose_scheme(offered).is_some()).or(self.keys.first()).cloned()
    }
}

impl CertStore {
    /// The config for an SNI (lower-cased): exact, else one-label wildcard, else `*`.
    pub fn find(&self, sni: &str) -> Option<&Arc<CertEntry>> {
        self.table.find_cert(sni)
    }

    /// Number of SNI patterns served.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `prev` itself when the serving SSL objects are those it was built
    /// from (a change of routes, upstreams or the edge rebuilds no
    /// certificate table: with 10,000 certificates that was most of a
    /// publish), otherwise [`CertStore::build`]. Its problems go to
    /// `problems` either way.
    pub fn build_or_reuse(
        ssls: &BTreeMap<ResourceId, Entry<Ssl>>,
        shared: &TlsShared,
        prev: &Arc<CertStore>,
        problems: &mut Vec<Problem>,
    ) -> Arc<CertStore> {
        let serving = || ssls.iter().filter(|(_, e)| e.value.serves());
        let same = serving().count() == prev.source.len()
            && serving().zip(&prev.source).all(|((id, e), (pid, prev))| id == pid && e.revision == *prev);
        if same {
            problems.extend(prev.problems.iter().cloned());
            return Arc::clone(prev);
        }
        let mut own = Vec::new();
        let mut store = CertStore::build(ssls, shared, prev, &mut own);
        store.source = serving().map(|(id, e)| (id.clone(), e.revision)).collect();
        problems.extend(own.iter().cloned());
        store.problems = own;
        Arc::new(store)
    }

    /// Builds the store from the SSL objects, reusing configs of `prev` whose
    /// objects are unchanged. Objects whose config cannot be built are left
    /// out and reported.
    pub fn build(
        ssls: &BTreeMap<ResourceId, Entry<Ssl>>,
        shared: &TlsShared,
        prev: &CertStore,
        problems: &mut Vec<Problem>,
    ) -> CertStore {
        let mut groups: HashMap<&SniPattern, Vec<(&ResourceId, &Entry<Ssl>)>> = HashMap::new();
        for (id, entry) in ssls.iter().filter(|(_, e)| e.value.serves()) {
            for sni in &entry.value.snis {
                groups.entry(sni).or_default().push((id, entry));
            }
        }
        let mut store = CertStore::default();
        for (pattern, members) in groups {
            let key: GroupKey = members.iter().map(|(id, e)| ((*id).clone(), e.revision)).collect();
            let entry = match store.by_group.get(&key).or_else(|| prev.by_group.get(&key)) {
                Some(e) => Arc::clone(e),
                None => match build_entry(&members, shared) {
                    Ok(e) => Arc::new(e),
                    Err(invalid) => {
                        let (id, e) = members[0];
                        problems.push(Problem {
                            kind: ResourceKind::Ssls,
                            id: id.clone(),
                            revision: e.revision,
                            invalid,
                        });
                        continue;
                    }
                },
            };
            store.by_group.insert(key, Arc::clone(&entry));
            let slot = store.table.entry(pattern, || Arc::clone(&entry));
            *slot = entry;
        }
        store
    }
}

fn build_entry(members: &[(&ResourceId, &Entry<Ssl>)], shared: &TlsShared) -> Result<CertEntry, Invalid> {
    let mut pairs: Vec<_> = members.iter().flat_map(|(_, e)| e.value.pairs.iter()).collect();
    // ECDSA and Ed25519 first: cheaper handshakes for every client that can
    // verify them; RSA remains for the others.
    pairs.sort_by_key(|p| p.algorithm == SignatureAlgorithm::RSA);
    let keys = pairs.into_iter().map(|p| Arc::clone(&p.certified)).collect();
    // The lowest id decides the protocol versions when several objects share an SNI.
    let versions = members[0].1.value.versions;
    let config = server_config(versions, Arc::new(PairResolver { keys }), shared)?;
    let mut http = (*config).clone();
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(CertEntry {
        config,
        http_config: Arc::new(http),
        ssl_ids: members.iter().map(|(id, _)| (*id).clone()).collect(),
    })
}

/// The server's cipher suites, in the server's order of preference (the
/// server decides: `ignore_client_order`). AES-128-GCM comes first: it is as
/// safe as AES-256 for this use, every current phone and PC has AES
/// instructions, and its SHA-256 handshake hash runs on SHA instructions
/// where SHA-384 (the AES-256 suites' hash) has none, which made SHA-384 the
/// single largest cost of a full handshake in profiles. AES-256 and
/// ChaCha20-Poly1305 remain for clients that offer nothing else.
fn server_provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        use rustls::crypto::aws_lc_rs::cipher_suite as cs;
        let mut p = (**provider()).clone();
        p.cipher_suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        Arc::new(p)
    })
}

fn server_config(
    versions: TlsVersions,
    resolver: Arc<dyn ResolvesServerCert>,
    shared: &TlsShared,
) -> Result<Arc<ServerConfig>, Invalid> {
    let mut list: Vec<&'static rustls::SupportedProtocolVersion> = Vec::with_capacity(2);
    if versions.tls13 {
        list.push(&rustls::version::TLS13);
    }
    if versions.tls12 {
        list.push(&rustls::version::TLS12);
    }
    let mut config = ServerConfig::builder_with_provider(Arc::clone(server_provider()))
        .with_protocol_versions(&list)
        .map_err(|e| Invalid::new("ssl_protocols", e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.session_storage = Arc::clone(&shared.session_storage);
    config.ticketer = Arc::clone(&shared.ticketer);
    // 0-RTT data is replayable; a game gateway never needs it.
    config.max_early_data_size = 0;
    config.ignore_client_order = true;
    // One TLS 1.3 ticket per handshake: a player holds one connection and
    // each (re)connection hands out a fresh ticket; rustls's default of two
    // serves clients that open parallel connections, at a handshake cost.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}
