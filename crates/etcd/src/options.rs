//! Settings of the etcd backend, named after APISIX's `etcd` block in
//! `config.yaml` (`host`, `prefix`, `timeout`, `user`, `password`, `tls`),
//! and their checks: every mistake is reported before the first RPC,
//! naming the endpoint, the setting or the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shardgate_store::StoreError;

/// Where, under the prefix, shardgate keeps its own bookkeeping (the write
/// fence's guard key): `<prefix>/shardgate/...`. Not configuration: backups
/// and exports leave it out, and no resource kind is named `shardgate`.
pub const BOOKKEEPING: &str = "/shardgate/";

/// Default bound on one RPC. APISIX's `etcd.timeout` defaults to 30 s; a
/// gateway's Admin API should answer "unreachable" well before a client
/// gives up, so 5 s here.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default largest value accepted, as the embedded store's; under etcd's
/// own default request limit (`--max-request-bytes`, 1.5 MiB), which a
/// fenced write (the value, the guard key and the compares) must fit in.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Default largest response read from etcd: a listing of every key under
/// a prefix, or one watch batch. gRPC's own default (4 MiB) is too small
/// for a few thousand certificates.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// TLS to etcd (APISIX's `etcd.tls`). With it, every endpoint must be
/// `https://` (or a bare `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA(s) that signed etcd's server certificates. The
    /// backend trusts no system roots: etcd clusters run on private CAs.
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Verify etcd's certificate (APISIX's `etcd.tls.verify`). Only `true`
    /// is supported: the gRPC client has no switch to turn checks off, and
    /// the fix is to give `ca`.
    pub verify: bool,
}

/// How to reach etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379` (APISIX's `etcd.host`).
    pub endpoints: Vec<String>,
    /// The key prefix the configuration lives under, e.g. `/apisix`
    /// (APISIX's `etcd.prefix`). Callers pass whole keys; the backend uses
    /// the prefix for its own guard key, `<prefix>/shardgate/write_fence`.
    pub prefix: String,
    /// Bound on each RPC, retries included ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// etcd user (with `password`), when etcd has auth enabled.
    pub user: Option<String>,
    /// The user's password. Never logged or shown by `Debug`.
    pub password: Option<String>,
    /// TLS settings; `None` for plain `http://` endpoints.
    pub tls: Option<EtcdTls>,
    /// Largest value accepted ([`DEFAULT_MAX_VALUE_BYTES`]); a larger one
    /// fails with [`StoreError::TooLarge`] before anything is sent.
    pub max_value_bytes: usize,
    /// Largest response accepted ([`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl EtcdOptions {
    /// Defaults for `endpoints` and `prefix`: no auth, no TLS, the default limits.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>, prefix: impl Into<String>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            timeout: DEFAULT_TIMEOUT,
            user: None,
            password: None,
            tls: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The endpoints, comma-separated, as errors name them.
    pub fn endpoints_csv(&self) -> String {
        self.endpoints.join(",")
    }

    /// The guard key of the write fence.
    pub fn fence_key(&self) -> String {
        format!("{}{BOOKKEEPING}write_fence", self.prefix.trim_end_matches('/'))
    }

    /// Checks the settings and builds the client's options, reading the
    /// TLS files.
    pub(crate) fn connect_options(&self) -> Result<etcd_client::ConnectOptions, StoreError> {
        let bad = |reason: String| StoreError::Backend { context: "etcd settings".into(), reason };
        if self.endpoints.is_empty() {
            return Err(bad("no endpoint given".into()));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be above 0".into()));
        }
        if !self.prefix.starts_with('/') {
            return Err(bad(format!("prefix {:?} must start with '/'", self.prefix)));
        }
        for e in &self.endpoints {
            let https = e.starts_with("https://");
            if !https && !e.starts_with("http://") && e.contains("://") {
                return Err(bad(format!("endpoint {e}: only http:// and https:// are supported")));
            }
            if https && self.tls.is_none() {
                return Err(bad(format!("endpoint {e} is https://: set tls (at least tls.ca)")));
            }
            if e.starts_with("http://") && self.tls.is_some() {
                return Err(bad(format!("endpoint {e} is plain http:// but tls is set: use https://")));
            }
        }
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, self.timeout)
            .with_keep_alive_while_idle(true)
            // A member cut off from the others refuses requests (and ends
            // watches) instead of serving what it last knew.
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => opts = opts.with_user(user.clone(), password.clone()),
            (None, None) => {}
            (Some(user), None) => return Err(bad(format!("user {user:?} is set without a password"))),
            (None, Some(_)) => return Err(bad("password is set without a user".into())),
        }
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(tls.client_config()?);
        }
        Ok(opts)
    }
}

/// HTTP/2 ping interval on every connection, so a peer that vanished (a
/// cut network, a frozen VM) is noticed within `interval + timeout` even on
/// an idle watch. Above etcd's `--grpc-keepalive-min-time` (5 s), below
/// which etcd closes the connection for pinging too often.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Io {
        context: format!("read the etcd TLS {what} file {}", path.display()),
        source,
    })
}

fn bad_file(what: &str, path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { context: format!("etcd TLS {what} file {}", path.display()), reason: reason.to_string() }
}

/// The certificates in a PEM file, at least one.
fn certificates(what: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    let pem = read_file(what, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| bad_file(what, path, format!("not a PEM certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad_file(what, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(pem)
}

impl EtcdTls {
    /// The client's TLS settings. The crypto provider needs no setup: tonic
    /// (feature `tls-aws-lc`) uses the process default if one is installed,
    /// else aws-lc-rs's, the workspace's provider; nothing is installed
    /// globally here.
    fn client_config(&self) -> Result<etcd_client::TlsOptions, StoreError> {
        let bad = |reason: &str| StoreError::Backend { context: "etcd TLS settings".into(), reason: reason.into() };
        if !self.verify {
            return Err(bad(
                "tls.verify: false is not supported: give tls.ca, the CA that signed etcd's certificate, instead",
            ));
        }
        let mut tls = etcd_client::TlsOptions::new();
        match &self.ca {
            Some(ca) => tls = tls.ca_certificate(etcd_client::Certificate::from_pem(certificates("CA", ca)?)),
            None => return Err(bad("tls.ca is required: the CA that signed etcd's server certificate")),
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert_pem = certificates("client certificate", cert)?;
                let key_pem = read_file("client key", key)?;
                // The key's PEM is checked, never shown.
                PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| bad_file("client key", key, format!("no PEM private key in it ({e})")))?;
                tls = tls.identity(etcd_client::Identity::from_pem(cert_pem, key_pem));
            }
            (None, None) => {}
            (Some(_), None) => return Err(bad("tls.cert is set without tls.key")),
            (None, Some(_)) => return Err(bad("tls.key is set without tls.cert")),
        }
        Ok(tls)
    }
}
