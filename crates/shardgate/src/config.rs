//! The bootstrap file: what cannot live in the store (listeners, the admin
//! listener and key, the store, limits, logging, trace export). Every field has a default;
//! unknown fields are refused with their path named; the admin key may come
//! from `SHARDGATE_ADMIN_KEY` instead of the file.
//!
//! Stream listeners are written as in APISIX's `config.yaml`
//! (`apisix.stream_proxy.tcp`, and the Helm chart's `stream.tcp` that seed 000
//! uses): `- addr: 8888` with `tls: true`, where `addr` is a port, an
//! `ip:port` or `[v6]:port`. UDP listeners (`stream.udp`, APISIX's
//! `apisix.stream_proxy.udp`) are a list of the same address forms, bare
//! (`- 9200`, `- "127.0.0.1:9211"`) or as `- addr: 9200` with a `web_acl`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use shardgate_core::{ConfigDuration, Limits};

pub mod trace;

/// The environment variable that holds the admin key (it wins over the file).
pub const ADMIN_KEY_ENV: &str = "SHARDGATE_ADMIN_KEY";
/// The environment variable that holds the viewer key (it wins over the file).
pub const VIEWER_KEY_ENV: &str = "SHARDGATE_ADMIN_VIEWER_KEY";
/// APISIX's old built-in admin key, exploited on the internet (apache/apisix#5070).
const APISIX_DEFAULT_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";
/// Keys printed in documentation, which anyone can look up: APISIX's
/// default admin and viewer keys (`conf/config-default.yaml`, `deployment.admin.admin_key`)
/// and the placeholder in shardgate's README.
const DOCUMENTED_KEYS: [(&str, &str); 3] = [
    (APISIX_DEFAULT_KEY, "APISIX's published default admin key (apache/apisix#5070)"),
    ("4054f7cf07e344346cd3f287985e76a2", "APISIX's published default viewer key"),
    ("replace-with-a-long-random-secret", "the placeholder in shardgate's README"),
];
/// Keyring entries published in APISIX's default `config.yaml`
/// (`apisix.data_encryption.keyring`, and the older `key_encrypt_salt`).
const PUBLIC_KEYRING_ENTRIES: [&str; 2] = ["qeddd145sfvddff3", "edd1c9f0985e76a2"];
/// Shortest admin key accepted.
const MIN_KEY_LEN: usize = 16;

/// The whole bootstrap file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Stream (L4) listeners and their defaults.
    pub stream: StreamConfig,
    /// The game-resource edge (L7): HTTP listeners and the cache.
    pub edge: EdgeConfig,
    /// The web application firewall.
    pub waf: WafConfig,
    /// The Admin API.
    pub admin: AdminConfig,
    /// Metrics and health endpoints.
    pub metrics: MetricsConfig,
    /// Where configuration lives.
    pub store: StoreConfig,
    /// Encryption of SSL private keys at rest (APISIX's `apisix.data_encryption`).
    pub data_encryption: DataEncryptionConfig,
    /// TLS settings shared by every listener.
    pub tls: TlsConfig,
    /// Graceful stop.
    pub drain: DrainConfig,
    /// Logging.
    pub log: LogConfig,
    /// Spans per connection and request, exported over OTLP (see [`trace`]).
    pub tracing: trace::TracingConfig,
    /// Bounds on network input.
    pub limits: Limits,
    /// The web dashboard on the Admin listener: sign-in and sessions.
    pub dashboard: DashboardConfig,
}

/// `stream:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// TCP listeners. Default: one TLS listener on port 8888 (seed 000).
    pub tcp: Vec<TcpListenerConfig>,
    /// UDP listeners: per-client sessions to the routes' upstreams.
    /// Default: none. A UDP and a TCP listener may share a port.
    pub udp: Vec<UdpListenerConfig>,
    /// APISIX's "stream only" switch: `true` runs no edge listener even if
    /// `edge.http` lists some (an error, to be explicit). Default: stream
    /// only unless `edge.http` lists listeners.
    pub only: Option<bool>,
    /// Idle timeout of proxied connections when neither the route nor the
    /// upstream sets one. Games hold sessions open through quiet spells
    /// (menus, matchmaking), so the default is 30 minutes, longer than
    /// nginx's 10; TCP keepalive finds dead peers sooner.
    pub idle_timeout: ConfigDuration,
    /// Connect timeout to game servers when the upstream sets none. Default 5s.
    pub connect_timeout: ConfigDuration,
    /// How long a game server that refused a connect is skipped. Default 10s.
    pub fail_timeout: ConfigDuration,
    /// TCP keepalive idle time on both sides. Default 60s.
    pub keepalive: ConfigDuration,
    /// How long a DNS answer for a node name is used before it is resolved
    /// again. Default 30s.
    pub dns_ttl: ConfigDuration,
    /// A UDP session with no datagram either way for this long ends (its
    /// entry and upstream socket are freed; the client's next datagram
    /// starts a new session, which the balancer may send elsewhere), unless
    /// the route or its upstream sets a timeout. UDP has no close, so this
    /// is how a session ends. Default 120s: RFC 4787 (REQ-5) has NATs keep
    /// a UDP mapping at least two minutes, so a game client that keeps its
    /// own NAT mapping open keeps its session (and its server) here too.
    pub udp_idle_timeout: ConfigDuration,
    /// Which DNS servers node names are asked of. Default: the system's.
    pub dns: DnsConfig,
}

/// `stream.dns`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Nameservers asked over UDP, in order (`"192.0.2.53"` for port 53,
    /// `"127.0.0.1:5353"`, `"[fd00::10]:53"`), instead of the system
    /// resolver: names are then asked as absolute names, with no search
    /// list and no `/etc/hosts`. Default: empty, the system resolver.
    pub nameservers: Vec<String>,
}

impl DnsConfig {
    /// The nameservers' addresses; the error names the entry.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let max = shardgate_upstream::resolver::MAX_NAMESERVERS;
        if self.nameservers.len() > max {
            return Err(ConfigError(format!("stream.dns.nameservers: at most {max} nameservers")));
        }
        self.nameservers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let addr = s
                    .parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        ConfigError(format!(
                            "stream.dns.nameservers[{i}]: {s:?} is not an IP address with an optional port (e.g. \"192.0.2.53\" or \"127.0.0.1:5353\")"
                        ))
                    })?;
                if addr.port() == 0 {
                    return Err(ConfigError(format!("stream.dns.nameservers[{i}]: port 0 cannot be asked")));
                }
                Ok(addr)
            })
            .collect()
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            tcp: vec![TcpListenerConfig {
                addr: ListenAddr(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8888)),
                tls: true,
                fallback_sni: None,
                web_acl: None,
                proxy_protocol: false,
                proxy_protocol_to_upstream: false,
            }],
            udp: Vec::new(),
            only: None,
            idle_timeout: ConfigDuration::from_secs(30 * 60),
            connect_timeout: ConfigDuration::from_secs(5),
            fail_timeout: ConfigDuration::from_secs(10),
            keepalive: ConfigDuration::from_secs(60),
            dns_ttl: ConfigDuration::from_secs(30),
            dns: DnsConfig::default(),
            udp_idle_timeout: ConfigDuration::from_secs(120),
        }
    }
}

/// One stream listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// `8888`, `"127.0.0.1:8888"` or `"[::]:8888"`.
    pub addr: ListenAddr,
    /// Terminate TLS and route by SNI. Default false.
    #[serde(default)]
    pub tls: bool,
    /// A name that stands in for a missing SNI, or one that nothing serves.
    /// Default: none (such handshakes are refused with an alert).
    #[serde(default)]
    pub fallback_sni: Option<String>,
    /// The id of a `web_acls` resource run on each client address at
    /// accept, before TLS (IP sets, rate-based rules). Default: none.
    #[serde(default)]
    pub web_acl: Option<String>,
    /// Every connection must start with a PROXY protocol header, v1 or v2
    /// (HAProxy's `proxy-protocol.txt`), as a load balancer in front sends
    /// it (APISIX's per-port `proxy_protocol`, apache/apisix PR #13561). Its
    /// client address replaces the socket's everywhere. A connection
    /// without a valid header within `limits.handshake_timeout` is closed.
    /// Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Connections to game servers start with a v1 PROXY protocol header
    /// (APISIX's `proxy_protocol_to_upstream`, what nginx sends), unless
    /// the route's or upstream's `send_proxy_protocol` says otherwise.
    /// Default false.
    #[serde(default)]
    pub proxy_protocol_to_upstream: bool,
}

/// One UDP listener: `9200`, `"127.0.0.1:9211"`, `"[::]:9200"` (APISIX's
/// `stream_proxy.udp` entries), or `{addr: 9200, web_acl: players}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UdpListenerConfig {
    /// Where to listen.
    pub addr: ListenAddr,
    /// The id of a `web_acls` resource run on the client address when a
    /// session is created. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_acl: Option<String>,
}

impl<'de> Deserialize<'de> for UdpListenerConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            addr: ListenAddr,
            #[serde(default)]
            web_acl: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UdpListenerConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (9200), an address with a port (\"127.0.0.1:9200\"), or {addr, web_acl}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let addr = ListenAddr::deserialize(de::value::U64Deserializer::<E>::new(v))?;
                Ok(UdpListenerConfig { addr, web_acl: None })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let addr = ListenAddr::deserialize(de::value::I64Deserializer::<E>::new(v))?;
                Ok(UdpListenerConfig { addr, web_acl: None })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let addr = ListenAddr::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(UdpListenerConfig { addr, web_acl: None })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UdpListenerConfig { addr: long.addr, web_acl: long.web_acl })
            }
        }
        d.deserialize_any(V)
    }
}

/// `waf:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafConfig {
    /// A country database in MaxMind's format (GeoLite2-Country, or the CC0
    /// `ip-location-db` country databases) for `GeoMatchStatement`s. Default: none.
    pub geoip_database: Option<PathBuf>,
}

/// `edge:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// HTTP listeners (HTTP/1.1; with `tls: true` also HTTP/2 by ALPN).
    /// Default: none.
    pub http: Vec<HttpListenerConfig>,
    /// The memory cache tier.
    pub cache: CacheConfig,
    /// Time to receive a request head, and the idle time of a keep-alive
    /// connection between requests. Default 10s.
    pub header_read_timeout: ConfigDuration,
    /// A connection with no request in progress for this long is closed;
    /// this is what bounds an idle HTTP/2 connection (GOAWAY). A response
    /// still being sent counts as in progress. Default 60s.
    pub idle_timeout: ConfigDuration,
    /// HTTP/2: a PING after this long without hearing from the client.
    /// Default 30s.
    pub h2_keepalive_interval: ConfigDuration,
    /// HTTP/2: the connection is closed when a PING is not answered within
    /// this. Default 20s.
    pub h2_keepalive_timeout: ConfigDuration,
    /// One log line per viewer request.
    pub access_log: AccessLogConfig,
}

/// Longest `edge.access_log.edge_location`.
const MAX_EDGE_LOCATION: usize = 64;

/// `edge.access_log`: one line per viewer request, in the fields of
/// CloudFront's standard log (see `shardgate_http::access_log`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write the lines (to the log output, target `shardgate::access` at
    /// `info`, so `log.level: info,shardgate::access=off` silences them, as
    /// it does the stream sessions' lines). Default true, as nginx's
    /// `access_log`.
    pub enabled: bool,
    /// `fields` (default): each CloudFront field is a field of the log event
    /// (one JSON object per request with `log.format: json`); `tsv`:
    /// CloudFront's tab-separated line as the message, after `#Version` and
    /// `#Fields` lines logged at start.
    pub format: AccessLogFormat,
    /// `x-edge-location`: this instance's name in every line (up to 64
    /// printable ASCII characters, no spaces). Default: the host's name (in
    /// Kubernetes, the pod's).
    pub edge_location: Option<String>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { enabled: true, format: AccessLogFormat::Fields, edge_location: None }
    }
}

/// `edge.access_log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// CloudFront's field names as log fields.
    Fields,
    /// CloudFront's tab-separated line.
    Tsv,
}

impl AccessLogConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.edge_location
            && (l.is_empty() || l.len() > MAX_EDGE_LOCATION || !l.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError(format!(
                "edge.access_log.edge_location: {l:?} must be 1 to {MAX_EDGE_LOCATION} printable ASCII characters without spaces"
            )));
        }
        Ok(())
    }

    /// The settings the edge runs with; the location defaults to the host's name.
    pub fn settings(&self) -> shardgate_http::AccessLogSettings {
        shardgate_http::AccessLogSettings {
            enabled: self.enabled,
            format: match self.format {
                AccessLogFormat::Fields => shardgate_http::AccessLogFormat::Fields,
                AccessLogFormat::Tsv => shardgate_http::AccessLogFormat::Tsv,
            },
            edge_location: self.edge_location.clone().unwrap_or_else(host_name),
        }
    }
}

/// This host's name, cleaned to what `edge_location` accepts; `shardgate`
/// when there is none.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw.trim().chars().filter(char::is_ascii_graphic).take(MAX_EDGE_LOCATION).collect();
    if name.is_empty() { "shardgate".into() } else { name }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http: Vec::new(),
            cache: CacheConfig::default(),
            header_read_timeout: ConfigDuration::from_secs(10),
            idle_timeout: ConfigDuration::from_secs(60),
            h2_keepalive_interval: ConfigDuration::from_secs(30),
            h2_keepalive_timeout: ConfigDuration::from_secs(20),
            access_log: AccessLogConfig::default(),
        }
    }
}

/// One edge listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    /// `8080`, `"127.0.0.1:8080"` or `"[::]:443"`.
    pub addr: ListenAddr,
    /// HTTPS with certificates from the `ssls` resources. Default false.
    #[serde(default)]
    pub tls: bool,
    /// Every connection must start with a PROXY protocol header (v1 or
    /// v2); its client address is the viewer's address for the WAF,
    /// rate-based rules and logs. Default false.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `edge.cache:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes the memory tier holds at most. Default 256 MiB.
    pub memory_bytes: u64,
    /// Objects up to this size live in memory; larger ones go to the disk
    /// tier. Default 8 MiB.
    pub max_object_bytes: u64,
    /// Bytes of bodies the disk tier holds at most; 0 turns the tier off
    /// (larger objects are then passed through). Default 4 GiB.
    pub disk_bytes: u64,
    /// Largest object the disk tier stores. Default 1 GiB, or `disk_bytes`
    /// if that is smaller.
    pub disk_max_object_bytes: Option<u64>,
    /// The disk tier's directory. Default `<store.data_dir>/cache`.
    pub disk_path: Option<PathBuf>,
    /// Targeted cache-control fields (RFC 9213) this cache obeys instead of
    /// `Cache-Control` and `Expires`, in priority order: the first one a
    /// response carries with a valid value wins. `[]` turns them off.
    /// Default `["CDN-Cache-Control"]`.
    pub targeted_cache_control: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 256 << 20,
            max_object_bytes: 8 << 20,
            disk_bytes: 4 << 30,
            disk_max_object_bytes: None,
            disk_path: None,
            targeted_cache_control: vec!["CDN-Cache-Control".to_owned()],
        }
    }
}

impl CacheConfig {
    /// The largest object the disk tier stores.
    pub fn disk_max_object(&self) -> u64 {
        self.disk_max_object_bytes.unwrap_or((1 << 30u64).min(self.disk_bytes))
    }

    /// `targeted_cache_control` as field names, or the first bad entry.
    pub fn targeted_fields(&self) -> Result<Vec<shardgate_cache::freshness::FieldName>, ConfigError> {
        if self.targeted_cache_control.len() > shardgate_cache::freshness::MAX_TARGETED_FIELDS {
            return Err(ConfigError(format!(
                "edge.cache.targeted_cache_control: at most {} field names",
                shardgate_cache::freshness::MAX_TARGETED_FIELDS
            )));
        }
        let mut out = Vec::with_capacity(self.targeted_cache_control.len());
        for (i, name) in self.targeted_cache_control.iter().enumerate() {
            let field = shardgate_cache::freshness::targeted_field(name)
                .map_err(|why| ConfigError(format!("edge.cache.targeted_cache_control[{i}]: {name:?} {why}")))?;
            if out.contains(&field) {
                return Err(ConfigError(format!("edge.cache.targeted_cache_control[{i}]: {name:?} is listed twice")));
            }
            out.push(field);
        }
        Ok(out)
    }
}

impl Config {
    /// The disk tier's directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.edge.cache.disk_path.clone().unwrap_or_else(|| self.store.data_dir.join("cache"))
    }
}

/// A listen address: a bare port means all IPv4 addresses, as in APISIX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (8888) or an address with a port (\"127.0.0.1:8888\", \"[::]:8888\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ListenAddr, E> {
                let port =
                    u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| E::custom("a port must be 1 to 65535"))?;
                Ok(ListenAddr(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ListenAddr, E> {
                u64::try_from(v).map_err(|_| E::custom("a port must be 1 to 65535")).and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenAddr, E> {
                if let Ok(port) = v.parse::<u64>() {
                    return self.visit_u64(port);
                }
                v.parse::<SocketAddr>()
                    .map(ListenAddr)
                    .map_err(|_| E::custom(format!("{v:?} is not a port or an ip:port address")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// `admin:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where the Admin API listens. Default 127.0.0.1:9180 (APISIX's port, localhost only).
    pub listen: SocketAddr,
    /// The API key; `SHARDGATE_ADMIN_KEY` wins over it. Required: there is no built-in key.
    pub key: Option<String>,
    /// A second key that may only read (APISIX's `viewer` role: `GET`
    /// only, and never private keys); `SHARDGATE_ADMIN_VIEWER_KEY` wins over
    /// it. Default none.
    pub viewer_key: Option<String>,
    /// APISIX's `enable_admin_cors`: answer CORS preflights (`OPTIONS`) and
    /// add APISIX's `Access-Control-*` headers to every answer. Default true,
    /// as APISIX.
    pub cors: bool,
    /// Refuse `ssls` whose certificate has already expired. APISIX accepts
    /// them, and so does shardgate by default (with a warning in the log and
    /// the expiry in `shardgate_tls_certificate_expiry_timestamp_seconds`).
    /// Default false.
    pub refuse_expired_certificates: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
            key: None,
            viewer_key: None,
            cors: true,
            refuse_expired_certificates: false,
        }
    }
}

/// Most dashboard users.
const MAX_DASHBOARD_USERS: usize = 1000;
/// Most dashboard users with a plaintext `password:`: each is hashed
/// (600,000 PBKDF2-HMAC-SHA256 iterations, a fraction of a second of CPU)
/// at every start, `validate` and reload. More users give `password_hash`.
pub const MAX_PLAINTEXT_DASHBOARD_USERS: usize = 16;
/// Longest dashboard session.
const MAX_SESSION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// `dashboard:`: the web dashboard's sign-in, in the vocabulary of the
/// APISIX Dashboard's `conf.yaml` (`authentication.secret`,
/// `authentication.expire_time`, `authentication.users`) that seed 000's
/// Helm values carry.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard's sign-in and `/ui/api/*`, and accept its session
    /// cookie on the Admin API. Default true.
    pub enabled: bool,
    /// Who may sign in with a name and password (besides the admin key,
    /// and the viewer key as a viewer). Default none.
    pub users: Vec<DashboardUser>,
    /// How long a session lasts from sign-in (APISIX Dashboard's
    /// `authentication.expire_time`). Default 3600s; at most 7 days.
    pub session_ttl: ConfigDuration,
    /// Signs session and CSRF tokens (APISIX Dashboard's
    /// `authentication.secret`), at least 16 characters. Replicas with the
    /// same secret accept each other's sessions. Default: derived from the
    /// admin key (replicas sharing the key share sessions; rotating the key
    /// ends every session). Serialized only as a fingerprint.
    #[serde(serialize_with = "fingerprint")]
    pub secret: Option<String>,
    /// Add `Secure` to the session cookie, for a dashboard reached over
    /// HTTPS (a TLS proxy in front of the Admin listener). Default false.
    pub secure_cookie: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            users: Vec::new(),
            session_ttl: ConfigDuration::from_secs(3600),
            secret: None,
            secure_cookie: false,
        }
    }
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("enabled", &self.enabled)
            .field("users", &self.users)
            .field("session_ttl", &self.session_ttl)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secure_cookie", &self.secure_cookie)
            .finish()
    }
}

/// A secret as a fingerprint that changes with it (so a reload sees the
/// change) and gives nothing of it away.
fn fingerprint<S: serde::Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        None => s.serialize_none(),
        Some(v) => {
            let key = shardgate_admin::dashboard::SessionKey::from_source(v.as_bytes());
            let print: String = key.derive("config fingerprint", b"", 8).iter().map(|b| format!("{b:02x}")).collect();
            s.serialize_str(&print)
        }
    }
}

/// One `dashboard.users` entry. `Debug` leaves the password and hash out.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    /// The sign-in name (1 to 64 bytes, no spaces or control characters).
    pub username: String,
    /// The password as a PHC string from `shardgate dashboard hash-password`
    /// (`$pbkdf2-sha256$i=600000$<salt>$<hash>`).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// The password in plain text, as the APISIX Dashboard's `users` block
    /// holds it: accepted (with a warning) and hashed when the file is
    /// loaded; the plain text is not kept. Give `password_hash` instead.
    #[serde(default, skip_serializing)]
    pub password: Option<Plaintext>,
    /// A viewer: may read, never change anything. Default false.
    #[serde(default)]
    pub read_only: bool,
    /// The hash was made from `password` at load.
    #[serde(skip)]
    pub from_plaintext: bool,
}

impl fmt::Debug for DashboardUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardUser")
            .field("username", &self.username)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A plaintext password from the file: never printed, its bytes zeroed
/// when dropped (best effort: the parser's own buffers are not ours).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Plaintext(String);

impl Plaintext {
    /// The password's bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

impl DashboardConfig {
    /// `dashboard.*` checks, naming the field at fault.
    fn check(&self) -> Result<(), ConfigError> {
        let ttl = self.session_ttl.get();
        if ttl.as_secs() < 1 || ttl > MAX_SESSION_TTL {
            return Err(ConfigError(format!(
                "dashboard.session_ttl must be between 1s and {}h",
                MAX_SESSION_TTL.as_secs() / 3600
            )));
        }
        if let Some(secret) = &self.secret
            && secret.len() < MIN_KEY_LEN
        {
            return Err(ConfigError(format!(
                "dashboard.secret is shorter than {MIN_KEY_LEN} characters: anyone holding one session token could guess it offline and sign their own sessions; use a random one (e.g. `openssl rand -hex 32`) or leave it out to derive one from the admin key"
            )));
        }
        if self.users.len() > MAX_DASHBOARD_USERS {
            return Err(ConfigError(format!("dashboard.users: at most {MAX_DASHBOARD_USERS} users")));
        }
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut plaintext = 0usize;
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("dashboard.users[{i}]");
            let max = shardgate_admin::dashboard::MAX_USERNAME_BYTES;
            if u.username.is_empty() {
                return Err(ConfigError(format!("{at}.username is empty")));
            }
            if u.username.len() > max {
                return Err(ConfigError(format!("{at}.username is longer than {max} bytes")));
            }
            if u.username.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(ConfigError(format!("{at}.username {:?} holds a space or control character", u.username)));
            }
            if let Some(j) = seen.insert(&u.username, i) {
                return Err(ConfigError(format!(
                    "{at}.username {:?} is listed twice (also dashboard.users[{j}])",
                    u.username
                )));
            }
            match (&u.password_hash, &u.password) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError(format!(
                        "{at}.password_hash: give password_hash or password, not both (keep password_hash)"
                    )));
                }
                (None, None) => {
                    return Err(ConfigError(format!(
                        "{at}.password_hash is missing: give the output of `shardgate dashboard hash-password`"
                    )));
                }
                (Some(phc), None) => {
                    shardgate_admin::dashboard::PasswordHash::parse(phc)
                        .map_err(|e| ConfigError(format!("{at}.password_hash: {e}")))?;
                }
                (None, Some(p)) => {
                    plaintext += 1;
                    if plaintext > MAX_PLAINTEXT_DASHBOARD_USERS {
                        return Err(ConfigError(format!(
                            "{at}.password: at most {MAX_PLAINTEXT_DASHBOARD_USERS} users may have a plaintext password (each is hashed with {} PBKDF2 iterations at every start and reload); give password_hash instead, the output of `shardgate dashboard hash-password`",
                            shardgate_admin::dashboard::password::ITERATIONS
                        )));
                    }
                    if p.expose().is_empty() {
                        return Err(ConfigError(format!("{at}.password is empty")));
                    }
                    if p.expose().len() > shardgate_admin::dashboard::password::MAX_PASSWORD_BYTES {
                        return Err(ConfigError(format!(
                            "{at}.password is longer than {} bytes",
                            shardgate_admin::dashboard::password::MAX_PASSWORD_BYTES
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `metrics:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` listen. Default 127.0.0.1:9091.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: SocketAddr::from(([127, 0, 0, 1], 9091)) }
    }
}

/// Store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file in `data_dir`, nothing else to run.
    Embedded,
    /// An etcd v3 cluster (`store.etcd`), shared by every gateway instance.
    Etcd,
}

/// `store:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The backend. Default `embedded`.
    pub backend: Backend,
    /// The embedded store's directory (and the disk cache's, by default).
    /// Default `./data`.
    pub data_dir: PathBuf,
    /// Key prefix, as APISIX's `etcd.prefix`. Default `/apisix`.
    pub prefix: String,
    /// The etcd cluster, for `backend: etcd` (APISIX's `deployment.etcd`).
    pub etcd: EtcdConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Embedded,
            data_dir: PathBuf::from("./data"),
            prefix: "/apisix".into(),
            etcd: EtcdConfig::default(),
        }
    }
}

/// `store.etcd:`, in APISIX's `deployment.etcd` vocabulary. `Debug`
/// leaves the password out.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// The members' client URLs, e.g. `http://192.0.2.1:2379` (APISIX's
    /// `host`; `endpoints` is accepted as the same list).
    #[serde(alias = "endpoints")]
    pub host: Vec<String>,
    /// Per-request timeout (APISIX's `timeout`, seconds there). Default 5s.
    pub timeout: ConfigDuration,
    /// User for etcd's authentication, if enabled.
    pub user: Option<String>,
    /// Its password (or the `SHARDGATE_ETCD_PASSWORD` environment variable,
    /// which wins, so the file need not hold it).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// TLS to etcd (for `https://` members).
    pub tls: Option<EtcdTlsConfig>,
    /// Largest answer read from etcd: the listing of everything at start
    /// and after a compaction, or one watch batch. Default 64 MiB (about
    /// 30,000 SSL objects with 2 KiB certificates).
    pub max_response_bytes: usize,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            host: Vec::new(),
            timeout: ConfigDuration(Duration::from_secs(5)),
            user: None,
            password: None,
            tls: None,
            max_response_bytes: shardgate_etcd::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// `store.etcd.tls:` (APISIX's `deployment.etcd.tls`, plus the CA).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdTlsConfig {
    /// CA bundle (PEM) that signs the members' certificates (required:
    /// etcd clusters run on private CAs, so no system roots are trusted).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for members that require one.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Verify the members' certificates. Default true, and only true is
    /// supported (give `ca` instead of turning it off).
    pub verify: bool,
}

impl Default for EtcdTlsConfig {
    fn default() -> Self {
        EtcdTlsConfig { ca: None, cert: None, key: None, verify: true }
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("host", &self.host)
            .field("timeout", &self.timeout)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl fmt::Debug for DataEncryptionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataEncryptionConfig")
            .field("enable_encrypt_fields", &self.enable_encrypt_fields)
            .field("keyring_entries", &self.keyring.len())
            .finish()
    }
}

/// The environment variable that holds the etcd password (it wins over the file).
pub const ETCD_PASSWORD_ENV: &str = "SHARDGATE_ETCD_PASSWORD";

/// `data_encryption:` (APISIX's `apisix.data_encryption`): SSL private
/// keys are stored AES-CBC encrypted under the first keyring entry, as
/// APISIX 3.x stores them, and read with any entry. `Debug` leaves the
/// entries out.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataEncryptionConfig {
    /// Encrypt SSL private keys at rest. Default true.
    pub enable_encrypt_fields: bool,
    /// Entries of 16 (AES-128) or 32 (AES-256) characters; the first
    /// encrypts, all decrypt (rotation). Without one, the embedded store
    /// uses a key generated into `<data_dir>/keyring` on first start, and
    /// etcd values are written in plain text (with a warning).
    #[serde(skip_serializing, deserialize_with = "one_or_many")]
    pub keyring: Vec<String>,
}

/// A list, or one string as a list of one (APISIX accepts both for the keyring).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Default for DataEncryptionConfig {
    fn default() -> Self {
        DataEncryptionConfig { enable_encrypt_fields: true, keyring: Vec::new() }
    }
}

/// `tls:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// TLS 1.2 session-id cache entries (players reconnect often). Default 65,536.
    pub session_cache: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { session_cache: 65_536 }
    }
}

/// `drain:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    /// After SIGTERM, `/readyz` answers 503 at once but the listeners keep
    /// accepting for this long, so that a load balancer's health check takes
    /// the instance out of rotation before any player is refused (HAProxy's
    /// `grace`; the `sleep` in a Kubernetes preStop hook). Default 0s.
    pub delay: ConfigDuration,
    /// Once the listeners have closed, how long open connections may keep
    /// running before they are cut. Default 30s.
    pub timeout: ConfigDuration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig { delay: ConfigDuration::from_secs(0), timeout: ConfigDuration::from_secs(30) }
    }
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `log:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,shardgate::access=warn`. `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// The level names a log filter directive may use.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `log.level` filter: comma-separated directives, each a level
/// (`info`) or `target=level` (`shardgate::access=warn`). A bare word that is
/// not a level would be read by the filter as a target name and silence
/// every other log line, so `verbose` or `information` is refused, naming
/// what is allowed.
pub fn check_log_level(filter: &str) -> Result<(), String> {
    check_log_filter("log.level", filter)
}

/// [`check_log_level`] for a filter from `source` (`log.level`, or the
/// `RUST_LOG` environment variable, which wins over it and would silence
/// the log just the same).
pub fn check_log_filter(source: &str, filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!("{source} is empty; use one of {}", LOG_LEVELS.join(", ")));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(format!("{source}: {directive:?} has no target before '='")),
            None => directive,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim())) {
            return Err(format!(
                "{source}: {level:?} is not a level; use one of {} or target=level (e.g. info,shardgate::access=warn)",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(normalized_log_filter(filter))
        .map_err(|e| format!("{source}: {filter:?}: {e}"))?;
    Ok(())
}

/// A `log.level` filter without the spaces people put after commas, which
/// the filter parser does not accept.
pub fn normalized_log_filter(filter: &str) -> String {
    filter.split(',').map(str::trim).filter(|d| !d.is_empty()).collect::<Vec<_>>().join(",")
}

/// A config error with the file and the field path.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a file without the cross-field checks (for `store check`, which
    /// needs only the data directory); `None` gives the defaults.
    pub fn load_unchecked(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                Config::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", p.display())))
            }
        }
    }

    /// Reads and checks a file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Config::load_unchecked(path)?;
        if let Ok(key) = std::env::var(ADMIN_KEY_ENV)
            && !key.is_empty()
        {
            config.admin.key = Some(key);
        }
        if let Ok(key) = std::env::var(VIEWER_KEY_ENV)
            && !key.is_empty()
        {
            config.admin.viewer_key = Some(key);
        }
        if let Ok(headers) = std::env::var(trace::HEADERS_ENV) {
            config.tracing.add_env_headers(&headers)?;
        }
        config.check()?;
        config.hash_plaintext_passwords();
        Ok(config)
    }

    /// The key that signs dashboard sessions: from `dashboard.secret`, else
    /// from the admin key; `None` without either.
    pub fn session_key(&self) -> Option<shardgate_admin::dashboard::SessionKey> {
        let source = self.dashboard.secret.as_deref().or(self.admin.key.as_deref()).filter(|s| !s.is_empty())?;
        Some(shardgate_admin::dashboard::SessionKey::from_source(source.as_bytes()))
    }

    /// Replaces every `dashboard.users[].password` by its hash and drops
    /// the plain text. The salt is derived from the session key and the
    /// user name, so replicas that share the file and key compute the same
    /// hash (and accept each other's sessions of that user).
    pub fn hash_plaintext_passwords(&mut self) {
        let key = self.session_key();
        for u in &mut self.dashboard.users {
            let Some(plain) = u.password.take() else { continue };
            let hash = match &key {
                Some(k) => {
                    let salt = k.derive(
                        "plaintext password salt",
                        u.username.as_bytes(),
                        shardgate_admin::dashboard::password::SALT_LEN,
                    );
                    shardgate_admin::dashboard::PasswordHash::derive(plain.expose(), &salt)
                }
                // No key: this process cannot run anyway (no admin key).
                None => match shardgate_admin::dashboard::PasswordHash::new_random(plain.expose()) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hash a dashboard password");
                        continue;
                    }
                },
            };
            u.password_hash = Some(hash.to_phc());
            u.from_plaintext = true;
        }
    }

    /// The dashboard's settings for the Admin API; `None` when it is off.
    pub fn dashboard_settings(&self) -> Result<Option<shardgate_admin::dashboard::DashboardSettings>, ConfigError> {
        use shardgate_admin::dashboard::{DashboardSettings, PasswordHash, User};
        if !self.dashboard.enabled {
            return Ok(None);
        }
        let key = self.session_key().ok_or_else(|| ConfigError("the dashboard needs the admin key".into()))?;
        let mut config = self.clone();
        config.hash_plaintext_passwords();
        let users = config
            .dashboard
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let phc = u.password_hash.as_deref().unwrap_or_default();
                let password_hash = PasswordHash::parse(phc)
                    .map_err(|e| ConfigError(format!("dashboard.users[{i}].password_hash: {e}")))?;
                Ok(User { username: u.username.clone(), password_hash, read_only: u.read_only })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Some(DashboardSettings {
            users,
            session_ttl: self.dashboard.session_ttl.get(),
            key,
            secure_cookie: self.dashboard.secure_cookie,
            body_timeout: self.limits.admin_body_read_timeout.get(),
            read_timeout: self.limits.admin_request_timeout.get(),
        }))
    }

    /// Parses YAML, naming the path of the first bad field.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ConfigError(inner.to_string())
            } else {
                ConfigError(format!("{path}: {inner}"))
            }
        })
    }

    /// Checks what the types cannot.
    fn check(&self) -> Result<(), ConfigError> {
        self.limits.validate().map_err(ConfigError)?;
        check_log_level(&self.log.level).map_err(ConfigError)?;
        if let Ok(env) = std::env::var("RUST_LOG")
            && !env.is_empty()
        {
            check_log_filter("RUST_LOG", &env).map_err(ConfigError)?;
        }
        if let Some(path) = &self.waf.geoip_database
            && let Err(e) = std::fs::File::open(path)
        {
            return Err(ConfigError(format!("waf.geoip_database: {}: {e}", path.display())));
        }
        self.tracing.check()?;
        let mut seen = HashSet::new();
        for (i, l) in self.stream.tcp.iter().enumerate() {
            if !seen.insert(l.addr.0) {
                return Err(ConfigError(format!("stream.tcp[{i}].addr: {} is listed twice", l.addr.0)));
            }
            if let Some(id) = &l.web_acl
                && shardgate_model::ResourceId::parse(id).is_err()
            {
                return Err(ConfigError(format!("stream.tcp[{i}].web_acl: {id:?} is not a resource id")));
            }
            if l.fallback_sni.is_some() && !l.tls {
                return Err(ConfigError(format!("stream.tcp[{i}].fallback_sni: only TLS listeners have an SNI")));
            }
        }
        self.check_udp()?;
        for (i, l) in self.edge.http.iter().enumerate() {
            if !seen.insert(l.addr.0) {
                return Err(ConfigError(format!("edge.http[{i}].addr: {} is also another listener", l.addr.0)));
            }
        }
        if self.stream.only == Some(true) && !self.edge.http.is_empty() {
            return Err(ConfigError(
                "stream.only: true runs no edge listener, but edge.http lists some; remove one of them".into(),
            ));
        }
        if self.edge.cache.max_object_bytes > self.edge.cache.memory_bytes {
            return Err(ConfigError("edge.cache.max_object_bytes cannot exceed edge.cache.memory_bytes".into()));
        }
        if self.edge.cache.disk_bytes > 0 && self.edge.cache.disk_max_object() > self.edge.cache.disk_bytes {
            return Err(ConfigError("edge.cache.disk_max_object_bytes cannot exceed edge.cache.disk_bytes".into()));
        }
        for (name, d) in [
            ("header_read_timeout", &self.edge.header_read_timeout),
            ("idle_timeout", &self.edge.idle_timeout),
            ("h2_keepalive_interval", &self.edge.h2_keepalive_interval),
            ("h2_keepalive_timeout", &self.edge.h2_keepalive_timeout),
        ] {
            if d.get().is_zero() {
                return Err(ConfigError(format!("edge.{name} must be greater than 0")));
            }
        }
        self.edge.cache.targeted_fields()?;
        self.edge.access_log.check()?;
        let others = [("admin.listen", self.admin.listen), ("metrics.listen", self.metrics.listen)];
        let listeners: Vec<SocketAddr> =
            self.stream.tcp.iter().map(|l| l.addr.0).chain(self.edge.http.iter().map(|l| l.addr.0)).collect();
        for (name, addr) in others {
            if listeners.iter().any(|l| {
                l.port() == addr.port() && addr.port() != 0 && (l.ip().is_unspecified() || l.ip() == addr.ip())
            }) {
                return Err(ConfigError(format!("{name}: {addr} is also a stream or edge listener")));
            }
        }
        if self.admin.listen == self.metrics.listen && self.admin.listen.port() != 0 {
            return Err(ConfigError("admin.listen and metrics.listen are the same address".into()));
        }
        if let Some(viewer) = self.admin.viewer_key.as_deref().filter(|k| !k.is_empty()) {
            if viewer.len() < MIN_KEY_LEN {
                return Err(ConfigError(format!("admin.viewer_key is shorter than {MIN_KEY_LEN} characters")));
            }
            if self.admin.key.as_deref() == Some(viewer) {
                return Err(ConfigError("admin.viewer_key is the admin key; give the viewer a key of its own".into()));
            }
        }
        if !self.store.prefix.starts_with('/') || self.store.prefix.ends_with('/') {
            return Err(ConfigError("store.prefix must start with '/' and not end with one (e.g. /apisix)".into()));
        }
        self.check_etcd()?;
        for (i, entry) in self.data_encryption.keyring.iter().enumerate() {
            if entry.len() != 16 && entry.len() != 32 {
                return Err(ConfigError(format!(
                    "data_encryption.keyring[{i}] is {} bytes long; an entry must be 16 (AES-128) or 32 (AES-256) bytes",
                    entry.len()
                )));
            }
        }
        if self.stream.idle_timeout.get().is_zero() || self.stream.connect_timeout.get().is_zero() {
            return Err(ConfigError("stream.idle_timeout and stream.connect_timeout must be greater than 0".into()));
        }
        self.stream.dns.addrs()?;
        if self.stream.udp_idle_timeout.get().is_zero() {
            return Err(ConfigError("stream.udp_idle_timeout must be greater than 0".into()));
        }
        if self.tls.session_cache == 0 {
            return Err(ConfigError("tls.session_cache must be greater than 0".into()));
        }
        self.dashboard.check()?;
        Ok(())
    }

    /// `stream.udp`: no address twice, and no two that the kernel would
    /// refuse to bind together (a wildcard and a specific address on one
    /// port). UDP and TCP have separate ports: a UDP listener may share its
    /// port with a TCP, edge, admin or metrics listener.
    fn check_udp(&self) -> Result<(), ConfigError> {
        for (i, l) in self.stream.udp.iter().enumerate() {
            let a = l.addr.0;
            if let Some((j, other)) = self.stream.udp[..i].iter().enumerate().find(|(_, o)| {
                let b = o.addr.0;
                b.port() == a.port() && (b.ip() == a.ip() || b.ip().is_unspecified() || a.ip().is_unspecified())
            }) {
                let why = if other.addr.0 == a {
                    "is listed twice".to_owned()
                } else {
                    format!("overlaps stream.udp[{j}] ({})", other.addr.0)
                };
                return Err(ConfigError(format!("stream.udp[{i}].addr: {a} {why}")));
            }
            if let Some(id) = &l.web_acl
                && shardgate_model::ResourceId::parse(id).is_err()
            {
                return Err(ConfigError(format!("stream.udp[{i}].web_acl: {id:?} is not a resource id")));
            }
        }
        Ok(())
    }

    /// `store.etcd`, when the backend is etcd: at least one endpoint, each
    /// an `http://` or `https://` URL with a host and a port; `https://`
    /// ones only with `tls`; a user with a password.
    fn check_etcd(&self) -> Result<(), ConfigError> {
        let etcd = &self.store.etcd;
        if self.store.backend != Backend::Etcd {
            return Ok(());
        }
        if etcd.host.is_empty() {
            return Err(ConfigError(
                "store.etcd.host: list at least one etcd endpoint, e.g. [\"http://127.0.0.1:2379\"]".into(),
            ));
        }
        for (i, url) in etcd.host.iter().enumerate() {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(|| {
                ConfigError(format!(
                    "store.etcd.host[{i}] {url:?}: an endpoint is a URL starting with http:// or https://"
                ))
            })?;
            let authority = rest.trim_end_matches('/');
            let port = authority.rsplit_once(':').map(|(_, p)| p);
            if authority.is_empty() || authority.contains('/') || port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(ConfigError(format!(
                    "store.etcd.host[{i}] {url:?}: expected scheme://host:port, e.g. http://127.0.0.1:2379"
                )));
            }
            if url.starts_with("https://") && etcd.tls.is_none() {
                return Err(ConfigError(format!(
                    "store.etcd.host[{i}] {url:?} is https:// but store.etcd.tls is not set (set `tls: {{ca: <the members' CA bundle>}}`)"
                )));
            }
        }
        if etcd.timeout.get().is_zero() {
            return Err(ConfigError("store.etcd.timeout must be greater than 0".into()));
        }
        if etcd.max_response_bytes < 4 << 20 {
            return Err(ConfigError("store.etcd.max_response_bytes must be at least 4 MiB (4194304)".into()));
        }
        if etcd.user.is_some() != self.etcd_password().is_some() {
            return Err(ConfigError(format!(
                "store.etcd.user and store.etcd.password (or {ETCD_PASSWORD_ENV}) go together"
            )));
        }
        if let Some(tls) = &etcd.tls {
            if tls.ca.is_none() {
                return Err(ConfigError(
                    "store.etcd.tls.ca: name the CA bundle (PEM) that signs the etcd members' certificates".into(),
                ));
            }
            if !tls.verify {
                return Err(ConfigError(
                    "store.etcd.tls.verify: false is not supported; give the members' CA in store.etcd.tls.ca instead"
                        .into(),
                ));
            }
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(ConfigError("store.etcd.tls.cert and store.etcd.tls.key go together".into()));
            }
            for (name, path) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(path) = path
                    && let Err(e) = std::fs::metadata(path)
                {
                    return Err(ConfigError(format!("store.etcd.tls.{name}: {}: {e}", path.display())));
                }
            }
        }
        Ok(())
    }

    /// The etcd password: the environment wins over the file.
    pub fn etcd_password(&self) -> Option<String> {
        std::env::var(ETCD_PASSWORD_ENV).ok().filter(|p| !p.is_empty()).or_else(|| self.store.etcd.password.clone())
    }

    /// The admin key, or why the process must not start.
    pub fn admin_key(&self) -> Result<&str, ConfigError> {
        let key = self.admin.key.as_deref().unwrap_or_default();
        if key.is_empty() {
            return Err(ConfigError(format!(
                "no admin key: set admin.key in the config file or the {ADMIN_KEY_ENV} environment variable (the Admin API never runs without one)"
            )));
        }
        if key.len() < MIN_KEY_LEN {
            return Err(ConfigError(format!("the admin key is shorter than {MIN_KEY_LEN} characters")));
        }
        Ok(key)
    }

    /// Where a key was published, if it is one of [`DOCUMENTED_KEYS`].
    fn documented_key(key: Option<&str>) -> Option<&'static str> {
        let key = key?;
        DOCUMENTED_KEYS.iter().find(|(k, _)| *k == key).map(|(_, source)| *source)
    }

    /// Warnings about settings that work but expose something: the Admin API
    /// reachable beyond this host, or a key anyone can look up. Printed by
    /// `validate` and logged by `run`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.admin.listen.ip().is_loopback() {
            out.push(format!(
                "admin.listen is {}: the Admin API (which can reroute every player) is reachable beyond this host; keep it on 127.0.0.1 or behind a private network and firewall",
                self.admin.listen
            ));
        }
        for (name, key) in
            [("admin key", self.admin.key.as_deref()), ("admin.viewer_key", self.admin.viewer_key.as_deref())]
        {
            if let Some(source) = Self::documented_key(key) {
                out.push(format!(
                    "the {name} is {source}; anyone who can reach the Admin API can look it up: use a random one (e.g. `openssl rand -hex 24`)"
                ));
            }
        }
        for (i, u) in self.dashboard.users.iter().enumerate() {
            if u.from_plaintext || u.password.is_some() {
                out.push(format!(
                    "dashboard.users[{i}].password: user {:?} has a plaintext password in the file; it is hashed at start and not kept, but the file still holds it: replace it by password_hash (`shardgate dashboard hash-password`)",
                    u.username
                ));
            }
        }
        if self.dashboard.enabled && !self.admin.listen.ip().is_loopback() && !self.dashboard.secure_cookie {
            out.push(
                "the dashboard is reachable beyond this host over plain HTTP: passwords and session cookies cross the network in clear; put TLS in front of the Admin listener and set dashboard.secure_cookie: true".into(),
            );
        }
        for (i, entry) in self.data_encryption.keyring.iter().enumerate() {
            if PUBLIC_KEYRING_ENTRIES.contains(&entry.as_str()) {
                out.push(format!(
                    "data_encryption.keyring[{i}] is a value published in APISIX's default config.yaml: private keys encrypted under it are readable by anyone with the store; use a random entry (e.g. `openssl rand -hex 8`)"
                ));
            }
        }
        out.extend(self.tracing.warnings());
        out
    }

    /// Every listener the gateway would open, one line each, for `validate`.
    pub fn describe_listeners(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.stream.tcp {
            let mut line = format!("stream {} {}", if l.tls { "tls" } else { "tcp" }, l.addr.0);
            if let Some(f) = &l.fallback_sni {
                line.push_str(&format!(" fallback_sni={f}"));
            }
            if let Some(w) = &l.web_acl {
                line.push_str(&format!(" web_acl={w}"));
            }
            if l.proxy_protocol {
                line.push_str(" proxy_protocol");
            }
            if l.proxy_protocol_to_upstream {
                line.push_str(" proxy_protocol_to_upstream");
            }
            out.push(line);
        }
        for l in &self.stream.udp {
            let acl = l.web_acl.as_ref().map(|w| format!(" web_acl={w}")).unwrap_or_default();
            out.push(format!("stream udp {}{acl}", l.addr.0));
        }
        for l in &self.edge.http {
            let pp = if l.proxy_protocol { " proxy_protocol" } else { "" };
            out.push(format!("edge {} {}{pp}", if l.tls { "https" } else { "http" }, l.addr.0));
        }
        out.push(format!("admin {}", self.admin.listen));
        out.push(format!("metrics {} (/metrics, /healthz, /readyz)", self.metrics.listen));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_listener_shape_parses() {
        let c = Config::parse(
            "stream:\n  only: true\n  tcp:\n    - addr: 8888\n      tls: true\n    - addr: \"127.0.0.1:9100\"\n",
        )
        .expect("parse");
        assert_eq!(c.stream.tcp[0].addr.0, "0.0.0.0:8888".parse().expect("addr"));
        assert!(c.stream.tcp[0].tls);
        assert_eq!(c.stream.tcp[1].addr.0, "127.0.0.1:9100".parse().expect("addr"));
        assert!(!c.stream.tcp[1].tls);
        assert_eq!(c.admin.listen, "127.0.0.1:9180".parse().expect("addr"));
    }

    #[test]
    fn proxy_protocol_switches_parse_per_listener() {
        let c = Config::parse(
            "stream:\n  tcp:\n    - addr: 9443\n      tls: true\n      proxy_protocol: true\n    - addr: 9100\n      proxy_protocol_to_upstream: true\nedge:\n  http:\n    - addr: 8080\n      proxy_protocol: true\n",
        )
        .expect("parse");
        assert!(c.stream.tcp[0].proxy_protocol && !c.stream.tcp[0].proxy_protocol_to_upstream);
        assert!(!c.stream.tcp[1].proxy_protocol && c.stream.tcp[1].proxy_protocol_to_upstream);
        assert!(c.edge.http[0].proxy_protocol);
        let lines = c.describe_listeners();
        assert!(
            lines[0].ends_with("9443 proxy_protocol") && lines[1].ends_with("proxy_protocol_to_upstream"),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("8080 proxy_protocol"), "{lines:?}");
        // Edge listeners send nothing upstream over PROXY protocol.
        let e = Config::parse("edge:\n  http:\n    - addr: 8080\n      proxy_protocol_to_upstream: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("edge.http[0]") && e.contains("proxy_protocol_to_upstream"), "{e}");
    }

    #[test]
    fn udp_listeners_take_apisix_entries_and_the_long_form() {
        let c = Config::parse(
            "stream:\n  udp:\n    - 9200\n    - \"127.0.0.1:9211\"\n    - \"9300\"\n    - addr: \"[::1]:9400\"\n      web_acl: players\n  udp_idle_timeout: 30s\nlimits:\n  udp_max_sessions: 10\n",
        )
        .expect("parse");
        let addrs: Vec<String> = c.stream.udp.iter().map(|l| l.addr.0.to_string()).collect();
        assert_eq!(addrs, ["0.0.0.0:9200", "127.0.0.1:9211", "0.0.0.0:9300", "[::1]:9400"]);
        assert_eq!(c.stream.udp[3].web_acl.as_deref(), Some("players"));
        assert_eq!(c.stream.udp_idle_timeout.get(), Duration::from_secs(30));
        assert_eq!(c.limits.udp_max_sessions, 10);
        c.check().expect("valid");
        assert!(c.describe_listeners().iter().any(|l| l == "stream udp [::1]:9400 web_acl=players"));
        let d = Config::default();
        assert!(d.stream.udp.is_empty());
        assert_eq!(d.stream.udp_idle_timeout.get(), Duration::from_secs(120));

        for (yaml, names) in [
            ("stream:\n  udp: [70000]\n", "stream.udp[0]"),
            ("stream:\n  udp: [\"nowhere\"]\n", "stream.udp[0]"),
            ("stream:\n  udp:\n    - addr: 9200\n      tls: true\n", "tls"),
            ("stream:\n  udp: [true]\n", "stream.udp[0]"),
        ] {
            let e = Config::parse(yaml).expect_err(yaml).to_string();
            assert!(e.contains(names), "{yaml}: {e}");
        }
        for (yaml, names) in [
            ("stream:\n  udp: [9200, \"0.0.0.0:9200\"]\n", "stream.udp[1].addr: 0.0.0.0:9200 is listed twice"),
            (
                "stream:\n  udp: [9200, \"127.0.0.1:9200\"]\n",
                "stream.udp[1].addr: 127.0.0.1:9200 overlaps stream.udp[0]",
            ),
            ("stream:\n  udp:\n    - addr: 9200\n      web_acl: \"a b\"\n", "stream.udp[0].web_acl"),
            ("stream:\n  udp_idle_timeout: 0s\n", "stream.udp_idle_timeout"),
            ("limits:\n  udp_max_sessions: 0\n", "limits.udp_max_sessions"),
        ] {
            let e = Config::parse(yaml).expect("parse").check().expect_err(yaml).0;
            assert!(e.contains(names), "{yaml}: {e}");
        }
        // UDP and TCP ports are separate: sharing one is fine, with the Admin API's too.
        let c = Config::parse(
            "stream:\n  tcp:\n    - addr: 9200\n  udp: [9200, 9180, \"127.0.0.1:9201\", \"127.0.0.2:9201\"]\n",
        )
        .expect("parse");
        c.check().expect("a UDP listener may share a TCP listener's port");
    }

    #[test]
    fn unknown_and_wrong_fields_are_named_with_their_path() {
        let e = Config::parse("stream:\n  tcp:\n    - addr: 8888\n      tsl: true\n").unwrap_err().to_string();
        assert!(e.starts_with("stream.tcp[0]"), "{e}");
        assert!(e.contains("tsl"), "{e}");
        let e = Config::parse("admin:\n  listen: nowhere\n").unwrap_err().to_string();
        assert!(e.starts_with("admin.listen"), "{e}");
        let e = Config::parse("limits:\n  handshake_timeout: 5 parsecs\n").unwrap_err().to_string();
        assert!(e.starts_with("limits.handshake_timeout"), "{e}");
        let e = Config::parse("stream:\n  tcp:\n    - addr: 70000\n").unwrap_err().to_string();
        assert!(e.contains("stream.tcp[0].addr"), "{e}");
    }

    #[test]
    fn cross_field_checks() {
        let c = Config::parse("stream:\n  tcp:\n    - addr: 9180\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("admin.listen"));
        let c = Config::parse("stream:\n  tcp:\n    - addr: 1\n    - addr: \"0.0.0.0:1\"\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("twice"));
        let c = Config::parse("stream:\n  tcp:\n    - addr: 1\n      fallback_sni: a.com\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("fallback_sni"));
        let c = Config::parse("stream:\n  only: true\nedge:\n  http:\n    - addr: 8080\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("stream.only"));
        let c = Config::parse("stream:\n  tcp:\n    - addr: 8080\nedge:\n  http:\n    - addr: 8080\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("edge.http[0].addr"));
        let c = Config::default();
        assert!(c.admin_key().is_err(), "no built-in key");
        let c = Config::parse("admin:\n  viewer_key: short\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("admin.viewer_key is shorter"));
        let c =
            Config::parse("admin:\n  key: same-key-0123456789\n  viewer_key: same-key-0123456789\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("admin.viewer_key is the admin key"));
        let c =
            Config::parse("admin:\n  key: admin-key-0123456789\n  viewer_key: viewer-key-0123456789\n").expect("parse");
        assert!(c.check().is_ok());
    }

    #[test]
    fn the_seed_dashboard_block_loads_hashed_and_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "admin:\n  key: admin-key-0123456789\ndashboard:\n  session_ttl: 3600\n  users:\n    - username: admin # dashboard 用户名\n      password: Admin@2025\n",
        )
        .expect("write");
        let c = Config::load(Some(&path)).expect("the seed's users block loads");
        let u = &c.dashboard.users[0];
        assert!(u.password.is_none(), "no plain text kept");
        let phc = u.password_hash.as_deref().expect("hashed");
        let hash = shardgate_admin::dashboard::PasswordHash::parse(phc).expect("a PHC string");
        assert!(hash.verify(b"Admin@2025") && !hash.verify(b"Admin@2024"));
        let again = Config::load(Some(&path)).expect("load");
        assert_eq!(again.dashboard.users[0].password_hash.as_deref(), Some(phc), "the same hash on every load");
        let w = c.warnings();
        assert!(
            w.iter().any(|w| w.starts_with("dashboard.users[0].password: user \"admin\" has a plaintext password")),
            "{w:?}"
        );
        assert!(!format!("{c:?}").contains("Admin@2025") && !format!("{c:?}").contains(phc));
        let settings = c.dashboard_settings().expect("settings").expect("enabled");
        assert_eq!(settings.users.len(), 1);
        assert_eq!(settings.session_ttl, Duration::from_secs(3600));
        let off = Config::parse("dashboard:\n  enabled: false\n").expect("parse");
        assert!(off.dashboard_settings().expect("settings").is_none());
    }

    #[test]
    fn dashboard_users_are_checked_with_their_path() {
        let hash = shardgate_admin::dashboard::PasswordHash::derive(b"pw", &[9u8; 16]).to_phc();
        let ok = Config::parse(&format!(
            "dashboard:\n  secret: 0123456789abcdef0123\n  users:\n    - username: ops\n      password_hash: \"{hash}\"\n      read_only: true\n"
        ))
        .expect("parse");
        ok.check().expect("valid");
        assert!(ok.warnings().is_empty(), "{:?}", ok.warnings());
        for (users, names) in [
            (
                format!(
                    "    - username: a\n      password: x\n    - username: b\n      password_hash: \"{hash}\"\n      password: y\n"
                ),
                "dashboard.users[1].password_hash: give password_hash or password, not both",
            ),
            ("    - username: a\n".to_owned(), "dashboard.users[0].password_hash is missing"),
            ("    - username: \"\"\n      password: x\n".to_owned(), "dashboard.users[0].username is empty"),
            (
                "    - username: a\n      password: x\n    - username: a\n      password: y\n".to_owned(),
                "dashboard.users[1].username \"a\" is listed twice (also dashboard.users[0])",
            ),
            (
                "    - username: a\n      password_hash: Admin@2025\n".to_owned(),
                "dashboard.users[0].password_hash: does not start with '$'",
            ),
            ("    - username: a\n      password: \"\"\n".to_owned(), "dashboard.users[0].password is empty"),
            (
                "    - username: \"a b\"\n      password: x\n".to_owned(),
                "dashboard.users[0].username \"a b\" holds a space",
            ),
        ] {
            let yaml = format!("dashboard:\n  users:\n{users}");
            let e = Config::parse(&yaml).expect("parse").check().expect_err(&yaml).0;
            assert!(e.contains(names), "{yaml}: {e}");
        }
        for (yaml, names) in [
            ("dashboard:\n  secret: Admin@2025\n", "dashboard.secret is shorter than 16"),
            ("dashboard:\n  session_ttl: 0s\n", "dashboard.session_ttl"),
            ("dashboard:\n  session_ttl: 30d\n", "dashboard.session_ttl"),
        ] {
            let e = match Config::parse(yaml) {
                Ok(c) => c.check().expect_err(yaml).0,
                Err(e) => e.0,
            };
            assert!(e.contains(names), "{yaml}: {e}");
        }
        let e = Config::parse("dashboard:\n  users:\n    - username: a\n      pasword: x\n").expect_err("typo").0;
        assert!(e.starts_with("dashboard.users[0]") && e.contains("pasword"), "{e}");
        let e = Config::parse("dashboard:\n  expire_time: 3600\n").expect_err("unknown").0;
        assert!(e.starts_with("dashboard") && e.contains("expire_time"), "{e}");
    }

    #[test]
    fn plaintext_dashboard_passwords_are_capped_and_hashed_ones_are_not() {
        let hash = shardgate_admin::dashboard::PasswordHash::derive(b"pw", &[9u8; 16]).to_phc();
        let plain =
            |n: usize| -> String { (0..n).map(|i| format!("    - username: u{i}\n      password: pw{i}\n")).collect() };
        let hashed: String =
            (0..40).map(|i| format!("    - username: h{i}\n      password_hash: \"{hash}\"\n")).collect();
        let users = |list: String| Config::parse(&format!("dashboard:\n  users:\n{list}")).expect("parse");
        users(plain(MAX_PLAINTEXT_DASHBOARD_USERS)).check().expect("at the cap");
        users(format!("{hashed}{}", plain(MAX_PLAINTEXT_DASHBOARD_USERS))).check().expect("hashed users do not count");
        let e = users(format!("{hashed}{}", plain(MAX_PLAINTEXT_DASHBOARD_USERS + 1))).check().expect_err("over").0;
        let at = 40 + MAX_PLAINTEXT_DASHBOARD_USERS;
        assert!(e.starts_with(&format!("dashboard.users[{at}].password: at most 16 users")), "{e}");
        assert!(e.contains("password_hash") && e.contains("shardgate dashboard hash-password"), "{e}");
        assert!(!e.contains(&format!("pw{}", MAX_PLAINTEXT_DASHBOARD_USERS)), "no password in the error: {e}");
    }

    #[test]
    fn dns_nameservers_are_addresses_with_an_optional_port() {
        let c = Config::parse("stream:\n  dns:\n    nameservers: [\"192.0.2.53\", \"127.0.0.1:5353\", \"[::1]:53\"]\n")
            .expect("parse");
        c.check().expect("valid");
        let addrs = c.stream.dns.addrs().expect("addrs");
        assert_eq!(addrs[0], "192.0.2.53:53".parse().expect("addr"));
        assert_eq!(addrs[1], "127.0.0.1:5353".parse().expect("addr"));
        assert!(Config::default().stream.dns.addrs().expect("none").is_empty(), "default: the system resolver");
        let c =
            Config::parse("stream:\n  dns:\n    nameservers: [\"127.0.0.1:5353\", \"dns.example\"]\n").expect("parse");
        assert!(c.check().unwrap_err().0.starts_with("stream.dns.nameservers[1]"));
        let e = Config::parse("stream:\n  dns:\n    servers: []\n").unwrap_err().to_string();
        assert!(e.starts_with("stream.dns"), "{e}");
    }

    #[test]
    fn the_etcd_store_reads_apisix_deployment_vocabulary_and_is_checked() {
        let c = Config::parse(
            "store:\n  backend: etcd\n  prefix: /apisix\n  etcd:\n    host:\n      - \"http://127.0.0.1:2379\"\n      - \"http://127.0.0.2:2379\"\n    timeout: 30\n",
        )
        .expect("parse");
        c.check().expect("valid");
        assert_eq!(c.store.etcd.host.len(), 2);
        assert_eq!(c.store.etcd.timeout.get(), Duration::from_secs(30));
        let c = Config::parse("store:\n  backend: etcd\n  etcd:\n    endpoints: [\"http://192.0.2.1:2379\"]\n")
            .expect("`endpoints` is accepted for `host`");
        c.check().expect("valid");

        for (yaml, names) in [
            ("store:\n  backend: etcd\n", "store.etcd.host"),
            ("store:\n  backend: etcd\n  etcd:\n    host: [\"127.0.0.1:2379\"]\n", "store.etcd.host[0]"),
            ("store:\n  backend: etcd\n  etcd:\n    host: [\"http://127.0.0.1\"]\n", "scheme://host:port"),
            ("store:\n  backend: etcd\n  etcd:\n    host: [\"https://etcd:2379\"]\n", "store.etcd.tls"),
            ("store:\n  backend: etcd\n  etcd:\n    host: [\"http://e:2379\"]\n    user: root\n", "password"),
            (
                "store:\n  backend: etcd\n  etcd:\n    host: [\"https://e:2379\"]\n    tls:\n      ca: /nonexistent/ca.pem\n",
                "store.etcd.tls.ca: /nonexistent/ca.pem",
            ),
            ("data_encryption:\n  keyring: [\"short\"]\n", "data_encryption.keyring[0] is 5 bytes"),
        ] {
            let e = Config::parse(yaml).expect("parse").check().expect_err(yaml).0;
            assert!(e.contains(names), "{yaml}: {e}");
        }
        let e = Config::parse("store:\n  backend: consul\n").expect_err("unknown backend").to_string();
        assert!(e.contains("store.backend"), "{e}");
        let c = Config::parse("store:\n  etcd:\n    user: root\n    password: hunter2-secret\ndata_encryption:\n  keyring: edd1c9f0985e76a2\n")
            .expect("one keyring string");
        assert_eq!(c.data_encryption.keyring, ["edd1c9f0985e76a2"]);
        assert!(c.warnings().iter().any(|w| w.contains("data_encryption.keyring[0] is a value published")));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-secret") && !shown.contains("edd1c9f0985e76a2"), "{shown}");
    }

    #[test]
    fn log_levels_are_levels_or_target_directives() {
        for ok in ["info", "WARN", "info,shardgate::access=warn", "shardgate=debug", "off", "error, tower=off"] {
            assert!(check_log_level(ok).is_ok(), "{ok}: {:?}", check_log_level(ok));
        }
        for bad in ["verbose", "information", "", "info,loud", "=info", "shardgate=verbose"] {
            let e = check_log_level(bad).expect_err(bad);
            assert!(e.starts_with("log.level"), "{e}");
        }
        let c = Config::parse("log:\n  level: verbose\n").expect("parse");
        let e = c.check().unwrap_err().0;
        assert!(e.contains("\"verbose\" is not a level"), "{e}");
    }

    #[test]
    fn an_admin_api_beyond_loopback_is_warned_about() {
        let c = Config::parse("admin:\n  listen: \"0.0.0.0:9180\"\n").expect("parse");
        assert!(c.warnings().iter().any(|w| w.contains("beyond this host")), "{:?}", c.warnings());
        assert!(Config::default().warnings().is_empty());
    }

    #[test]
    fn edge_cache_and_connection_settings() {
        let c = Config::default();
        assert_eq!(c.edge.cache.targeted_fields().expect("default").len(), 1);
        assert_eq!(c.edge.idle_timeout.get(), std::time::Duration::from_secs(60));
        let c = Config::parse("edge:\n  cache:\n    targeted_cache_control: []\n").expect("parse");
        assert!(c.check().is_ok() && c.edge.cache.targeted_fields().expect("empty").is_empty(), "[] turns it off");
        let c =
            Config::parse("edge:\n  cache:\n    targeted_cache_control: [Fastly-Cache-Control, CDN-Cache-Control]\n")
                .expect("parse");
        assert_eq!(c.edge.cache.targeted_fields().expect("two").len(), 2);
        for (bad, why) in [
            ("[\"bad name\"]", "targeted_cache_control[0]"),
            ("[Cache-Control]", "targeted_cache_control[0]"),
            ("[cdn-cache-control, CDN-Cache-Control]", "targeted_cache_control[1]"),
            ("[\"\"]", "targeted_cache_control[0]"),
        ] {
            let c = Config::parse(&format!("edge:\n  cache:\n    targeted_cache_control: {bad}\n")).expect("parse");
            let e = c.check().unwrap_err().0;
            assert!(e.contains(why), "{bad}: {e}");
        }
        let c = Config::parse("edge:\n  idle_timeout: 0s\n").expect("parse");
        assert!(c.check().unwrap_err().0.contains("edge.idle_timeout"));
    }

    #[test]
    fn edge_access_log_settings() {
        // On by default, CloudFront's fields as log fields, named after the host.
        let settings = Config::default().edge.access_log.settings();
        assert!(settings.enabled);
        assert_eq!(settings.format, shardgate_http::AccessLogFormat::Fields);
        assert!(!settings.edge_location.is_empty() && settings.edge_location.bytes().all(|b| b.is_ascii_graphic()));
        let c = Config::parse("edge:\n  access_log:\n    enabled: false\n    format: tsv\n    edge_location: fra-1\n")
            .expect("parse");
        assert!(c.check().is_ok());
        let settings = c.edge.access_log.settings();
        assert!(!settings.enabled);
        assert_eq!((settings.format, settings.edge_location.as_str()), (shardgate_http::AccessLogFormat::Tsv, "fra-1"));
        // A location that would break a tab-separated line, or too long.
        for bad in ["\"edge 1\"", "\"\"", "\"edge\\tone\"", &"x".repeat(65)] {
            let c = Config::parse(&format!("edge:\n  access_log:\n    edge_location: {bad}\n")).expect("parse");
            let e = c.check().unwrap_err().0;
            assert!(e.starts_with("edge.access_log.edge_location"), "{bad}: {e}");
        }
        let e = Config::parse("edge:\n  access_log:\n    format: json\n").unwrap_err().0;
        assert!(e.contains("edge.access_log.format") && e.contains("fields") && e.contains("tsv"), "{e}");
        let e = Config::parse("edge:\n  access_log:\n    enable: false\n").unwrap_err().0;
        assert!(e.contains("edge.access_log") && e.contains("enable"), "{e}");
    }
}
