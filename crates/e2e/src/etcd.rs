//! Real etcd clusters for tests: [`EtcdCluster`] runs Debian's
//! `/usr/bin/etcd` (3.4) members on loopback ports from [`crate::ports`],
//! each with its own data directory in one temporary directory, and drives
//! them with `etcdctl` (API v3). Members can be killed (SIGKILL), stopped
//! (SIGTERM) and started again on the same data and ports; every process
//! started is killed by PID when the cluster is dropped.
//!
//! Timing flags: `--heartbeat-interval 50 --election-timeout 500` (etcd's
//! defaults are 100 and 1000 ms) so a killed leader is replaced within about
//! a second; the election timeout stays ten heartbeats, as etcd's tuning
//! guide advises, so a busy shared machine does not trigger elections.
//! `--snapshot-count 1000` (default 100,000) keeps the log a restarted
//! member replays short.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ports;

/// The etcd server binary (Debian `etcd-server`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// The etcd client binary (Debian `etcd-client`).
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// Longest a cluster (or a restarted member) may take to become healthy.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a stopped member may take to exit on SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of a TLS cluster (all PEM, in the cluster's directory).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The members' certificate (for `127.0.0.1` and `localhost`).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (CN `shardgate`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA the members do not trust, to test refusals.
    pub other_ca: PathBuf,
    /// Whether members require client certificates (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

impl EtcdTlsFiles {
    /// A CA, a server certificate for loopback and a client certificate,
    /// written to `dir`.
    fn generate(dir: &Path, client_cert_auth: bool) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_for = |name: &str| {
            let key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("self-sign CA");
            (cert.pem(), Issuer::new(params, key))
        };
        let (ca_pem, ca) = ca_for("shardgate test etcd CA");
        let (other_pem, _) = ca_for("another CA");
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).expect("sign leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key) =
            leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key) = leaf(Vec::new(), "shardgate", ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write TLS file");
            path
        };
        EtcdTlsFiles {
            ca: write("ca.pem", &ca_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key),
            other_ca: write("other-ca.pem", &other_pem),
            client_cert_auth,
        }
    }
}

struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster on loopback; every member is killed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    token: String,
    tls: Option<EtcdTlsFiles>,
    user: Option<String>,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster").field("endpoints", &self.endpoints()).finish_non_exhaustive()
    }
}

fn require(bin: &str, package: &str) {
    assert!(Path::new(bin).exists(), "{bin} is missing: install {package} (scripts/test does)");
}

impl EtcdCluster {
    /// Starts `members` members (1 or 3 in the tests) over plain HTTP and
    /// waits until every one is healthy.
    pub async fn start(members: usize) -> Self {
        Self::launch(members, None).await
    }

    /// Like [`EtcdCluster::start`], with TLS on the client URLs (a fresh
    /// CA, see [`EtcdTlsFiles`]); with `client_cert_auth` members require a
    /// client certificate signed by that CA.
    pub async fn start_tls(members: usize, client_cert_auth: bool) -> Self {
        Self::launch(members, Some(client_cert_auth)).await
    }

    async fn launch(members: usize, tls: Option<bool>) -> Self {
        require(ETCD_BIN, "etcd-server");
        require(ETCDCTL_BIN, "etcd-client");
        assert!(members > 0, "a cluster needs at least one member");
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls.map(|client_cert_auth| EtcdTlsFiles::generate(dir.path(), client_cert_auth));
        let picked = ports::free_many("127.0.0.1", members * 2);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let token = format!("shardgate-test-{}-{nanos}", std::process::id());
        let members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client: picked[2 * i],
                peer: picked[2 * i + 1],
                data: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { dir, members, token, tls, user: None };
        for i in 0..cluster.members.len() {
            cluster.spawn(i);
        }
        cluster.wait_healthy(&(0..cluster.members.len()).collect::<Vec<_>>()).await;
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn spawn(&mut self, i: usize) {
        let scheme = self.scheme();
        let initial: Vec<String> = self.members.iter().map(|m| format!("{}=http://{}", m.name, m.peer)).collect();
        let m = &self.members[i];
        assert!(m.child.is_none(), "member {i} is already running");
        let client_url = format!("{scheme}://{}", m.client);
        let peer_url = format!("http://{}", m.peer);
        let log = OpenOptions::new().create(true).append(true).open(&m.log).expect("open member log");
        let mut cmd = Command::new(ETCD_BIN);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", &self.token, "--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500", "--snapshot-count", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.server_cert).arg("--key-file").arg(&tls.server_key);
            if tls.client_cert_auth {
                cmd.arg("--client-cert-auth").arg("--trusted-ca-file").arg(&tls.ca);
            }
        }
        let child = cmd.spawn().expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    /// Waits until the members `which` answer `etcdctl endpoint health`;
    /// panics with their logs otherwise.
    async fn wait_healthy(&mut self, which: &[usize]) {
        let endpoints: Vec<String> = which.iter().map(|&i| self.endpoint(i)).collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for &i in which {
                if let Some(status) = self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("etcd member {i} exited with {status} while starting:\n{}", self.log_tail(i));
                }
            }
            let out = self.etcdctl(&["--endpoints", &endpoints.join(","), "endpoint", "health"]).await;
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = which.iter().map(|&i| self.log_tail(i)).collect();
                panic!(
                    "etcd members {which:?} not healthy after {READY_TIMEOUT:?}: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- etcd member {i} log (tail) ---\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never: [`EtcdCluster::start`] needs one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://{}", self.scheme(), self.members[i].client)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// [`EtcdCluster::endpoints`], comma-separated (etcdctl's `--endpoints`).
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// The TLS files of a cluster started with [`EtcdCluster::start_tls`].
    pub fn tls(&self) -> Option<&EtcdTlsFiles> {
        self.tls.as_ref()
    }

    /// The cluster's temporary directory (member data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes every later `etcdctl` call authenticate as `user:password`
    /// (after `auth enable`), or not (`None`).
    pub fn set_etcdctl_user(&mut self, user_password: Option<&str>) {
        self.user = user_password.map(str::to_owned);
    }

    /// Runs `etcdctl` (API v3) against every member with `args` (later
    /// flags override: pass `--endpoints` to aim at one member).
    pub async fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(ETCDCTL_BIN);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints_csv()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert").arg(&tls.ca).arg("--cert").arg(&tls.client_cert).arg("--key").arg(&tls.client_key);
        }
        if let Some(user) = &self.user {
            cmd.arg(format!("--user={user}"));
        }
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true).output().await.expect("run etcdctl")
    }

    async fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args).await;
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `etcdctl put key value`; panics if it fails.
    pub async fn put(&self, key: &str, value: &str) {
        self.etcdctl_ok(&["put", "--", key, value]).await;
    }

    /// The value of `key` (`etcdctl get`), `None` when absent.
    pub async fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl_ok(&["get", "--", key]).await;
        let mut lines = out.lines();
        (lines.next()? == key).then(|| lines.collect::<Vec<_>>().join("\n"))
    }

    /// `etcdctl compact --physical revision`: history before `revision` is gone.
    pub async fn compact(&self, revision: u64) {
        self.etcdctl_ok(&["compact", "--physical", &revision.to_string()]).await;
    }

    /// The index of the current leader, waiting (up to [`READY_TIMEOUT`])
    /// for the running members to agree on one.
    pub async fn leader(&self) -> usize {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect();
        let csv = running.iter().map(|&i| self.endpoint(i)).collect::<Vec<_>>().join(",");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self.etcdctl(&["--endpoints", &csv, "endpoint", "status", "-w", "json"]).await;
            let statuses: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
            for s in &statuses {
                let own = s["Status"]["header"]["member_id"].as_u64();
                let leader = s["Status"]["leader"].as_u64();
                if own.is_some() && own == leader {
                    let endpoint = s["Endpoint"].as_str().unwrap_or_default();
                    if let Some(&i) = running.iter().find(|&&i| self.endpoint(i) == endpoint) {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no etcd leader among {csv} after {READY_TIMEOUT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether member `i` is running (started and not killed or stopped).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// SIGKILLs member `i` (by PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().expect("SIGKILL etcd");
            child.wait().expect("reap etcd");
        }
    }

    /// Stops member `i` with SIGTERM (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.take() else { return };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM etcd member {i} failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().expect("wait for etcd").is_none() {
            if Instant::now() >= deadline {
                child.kill().expect("SIGKILL etcd");
                child.wait().expect("reap etcd");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts member `i` again on its data directory and ports, and waits
    /// until it is healthy (which needs a quorum of running members).
    /// (`start` is taken by the constructor.)
    pub async fn start_member(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(&[i]).await;
    }

    /// Stops every member.
    pub async fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i).await;
        }
    }

    /// Starts every stopped member and waits until all are healthy.
    pub async fn start_all(&mut self) {
        let stopped: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].child.is_none()).collect();
        for &i in &stopped {
            self.spawn(i);
        }
        self.wait_healthy(&(0..self.members.len()).collect::<Vec<_>>()).await;
    }

    /// Member `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                // Already gone is fine: the point is that nothing is left running.
                if child.kill().is_ok() && child.wait().is_err() {
                    eprintln!("could not reap etcd member {}", m.name);
                }
            }
        }
    }
}
