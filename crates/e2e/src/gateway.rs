//! Spawning the real binary.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::admin::{AdminClient, http};
use crate::{ADMIN_KEY, ports};

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewayBuilder {
    bin: PathBuf,
    tls_listeners: usize,
    plain_listeners: usize,
    edge_http: usize,
    edge_https: usize,
    fallback_sni: Option<String>,
    stream_web_acl: Option<String>,
    stream_listener_yaml: String,
    plain_listener_yaml: String,
    edge_listener_yaml: String,
    drain_timeout: String,
    drain_delay: Option<String>,
    nofile: Option<u64>,
    extra_yaml: String,
    stream_yaml: String,
    edge_yaml: String,
    admin_yaml: String,
    store_yaml: String,
    data_dir: Option<PathBuf>,
    rust_log: Option<String>,
    env: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// `bin` is `env!("CARGO_BIN_EXE_shardgate")` in the tests.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        GatewayBuilder {
            bin: bin.into(),
            tls_listeners: 1,
            plain_listeners: 0,
            edge_http: 0,
            edge_https: 0,
            fallback_sni: None,
            stream_web_acl: None,
            stream_listener_yaml: String::new(),
            plain_listener_yaml: String::new(),
            edge_listener_yaml: String::new(),
            drain_timeout: "5s".into(),
            drain_delay: None,
            nofile: None,
            extra_yaml: String::new(),
            stream_yaml: String::new(),
            edge_yaml: String::new(),
            admin_yaml: String::new(),
            store_yaml: String::new(),
            data_dir: None,
            rust_log: Some("info".into()),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of the gateway process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Number of TLS stream listeners (default 1).
    pub fn tls_listeners(mut self, n: usize) -> Self {
        self.tls_listeners = n;
        self
    }

    /// Number of plain TCP stream listeners (default 0).
    pub fn plain_listeners(mut self, n: usize) -> Self {
        self.plain_listeners = n;
        self
    }

    /// Number of plain HTTP edge listeners (default 0).
    pub fn edge_http(mut self, n: usize) -> Self {
        self.edge_http = n;
        self
    }

    /// Number of HTTPS edge listeners (default 0).
    pub fn edge_https(mut self, n: usize) -> Self {
        self.edge_https = n;
        self
    }

    /// `web_acl` on every stream listener.
    pub fn stream_web_acl(mut self, id: &str) -> Self {
        self.stream_web_acl = Some(id.to_owned());
        self
    }

    /// Extra YAML in every stream listener's entry, indented by six spaces
    /// (e.g. `      proxy_protocol: true`).
    pub fn stream_listener_yaml(mut self, extra: &str) -> Self {
        self.stream_listener_yaml.push_str(extra);
        self.stream_listener_yaml.push('\n');
        self
    }

    /// Extra YAML in every plain (not TLS) stream listener's entry only,
    /// indented by six spaces (e.g. `      proxy_protocol: true`).
    pub fn plain_listener_yaml(mut self, extra: &str) -> Self {
        self.plain_listener_yaml.push_str(extra);
        self.plain_listener_yaml.push('\n');
        self
    }

    /// Extra YAML in every edge listener's entry, indented by six spaces.
    pub fn edge_listener_yaml(mut self, extra: &str) -> Self {
        self.edge_listener_yaml.push_str(extra);
        self.edge_listener_yaml.push('\n');
        self
    }

    /// `fallback_sni` on every TLS listener.
    pub fn fallback_sni(mut self, sni: &str) -> Self {
        self.fallback_sni = Some(sni.to_owned());
        self
    }

    /// `drain.timeout` (default 5s).
    pub fn drain_timeout(mut self, t: &str) -> Self {
        self.drain_timeout = t.to_owned();
        self
    }

    /// `drain.delay` (default: unset, 0s).
    pub fn drain_delay(mut self, t: &str) -> Self {
        self.drain_delay = Some(t.to_owned());
        self
    }

    /// Starts the process with this open-file limit (soft and hard), as
    /// `ulimit -n` would.
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Extra top-level YAML appended to the generated file (e.g. a `limits:` block).
    pub fn yaml(mut self, extra: &str) -> Self {
        self.extra_yaml.push_str(extra);
        self.extra_yaml.push('\n');
        self
    }

    /// Extra YAML inside the `stream:` block, indented by two spaces (e.g.
    /// `  udp: ["127.0.0.1:15000"]` or `  dns:\n    nameservers: ["127.0.0.1:5353"]`).
    pub fn stream_yaml(mut self, extra: &str) -> Self {
        self.stream_yaml.push_str(extra);
        self.stream_yaml.push('\n');
        self
    }

    /// Extra YAML inside the `edge:` block, indented by two spaces (e.g. `  cache:\n    memory_bytes: 1000`).
    pub fn edge_yaml(mut self, extra: &str) -> Self {
        self.edge_yaml.push_str(extra);
        self.edge_yaml.push('\n');
        self
    }

    /// Extra YAML inside the `admin:` block, indented by two spaces (e.g.
    /// `  refuse_expired_certificates: true`).
    pub fn admin_yaml(mut self, extra: &str) -> Self {
        self.admin_yaml.push_str(extra);
        self.admin_yaml.push('\n');
        self
    }

    /// Keep the configuration in etcd at `endpoints` (URLs) under `prefix`
    /// instead of the embedded store.
    pub fn etcd(mut self, endpoints: &[String], prefix: &str) -> Self {
        let hosts: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        self.store_yaml += &format!(
            "  backend: etcd\n  prefix: \"{prefix}\"\n  etcd:\n    host: [{}]\n    timeout: 2s\n",
            hosts.join(", ")
        );
        self
    }

    /// Extra YAML inside the `store:` block, indented by two spaces.
    pub fn store_yaml(mut self, extra: &str) -> Self {
        self.store_yaml.push_str(extra);
        self.store_yaml.push('\n');
        self
    }

    /// Use this data directory (kept after the gateway stops).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Start without `RUST_LOG`, so the file's `log.level` decides (by
    /// default the process gets `RUST_LOG=info`).
    pub fn log_level_from_file(mut self) -> Self {
        self.rust_log = None;
        self
    }

    /// Writes the config, starts the process and waits until `/readyz` is 200.
    pub async fn spawn(self) -> Gateway {
        let work = tempfile::tempdir().expect("tempdir");
        let data_dir = self.data_dir.clone().unwrap_or_else(|| work.path().join("data"));
        let edge_count = self.edge_http + self.edge_https;
        let mut picked = ports::free_many("127.0.0.1", self.tls_listeners + self.plain_listeners + edge_count + 2);
        let metrics = picked.pop().expect("port");
        let admin = picked.pop().expect("port");
        let mut edge = picked.split_off(self.tls_listeners + self.plain_listeners);
        let edge_tls = edge.split_off(self.edge_http);
        let edge_plain = edge;
        let plain = picked.split_off(self.tls_listeners);
        let tls = picked;

        let only = if edge_count == 0 { "true" } else { "false" };
        let mut yaml = format!("stream:\n  only: {only}\n{}  tcp:\n", self.stream_yaml);
        if tls.is_empty() && plain.is_empty() {
            yaml = format!("stream:\n  only: {only}\n{}  tcp: []\n", self.stream_yaml);
        }
        for a in &tls {
            yaml.push_str(&format!("    - addr: \"{a}\"\n      tls: true\n"));
            if let Some(f) = &self.fallback_sni {
                yaml.push_str(&format!("      fallback_sni: \"{f}\"\n"));
            }
            if let Some(w) = &self.stream_web_acl {
                yaml.push_str(&format!("      web_acl: \"{w}\"\n"));
            }
            yaml.push_str(&self.stream_listener_yaml);
        }
        for a in &plain {
            yaml.push_str(&format!("    - addr: \"{a}\"\n      tls: false\n"));
            yaml.push_str(&self.stream_listener_yaml);
            yaml.push_str(&self.plain_listener_yaml);
        }
        if edge_count > 0 {
            yaml.push_str("edge:\n  http:\n");
            for a in &edge_plain {
                yaml.push_str(&format!("    - addr: \"{a}\"\n"));
                yaml.push_str(&self.edge_listener_yaml);
            }
            for a in &edge_tls {
                yaml.push_str(&format!("    - addr: \"{a}\"\n      tls: true\n"));
                yaml.push_str(&self.edge_listener_yaml);
            }
            yaml.push_str(&self.edge_yaml);
        }
        let delay = self.drain_delay.as_ref().map(|d| format!("  delay: \"{d}\"\n")).unwrap_or_default();
        yaml.push_str(&format!(
            "admin:\n  listen: \"{admin}\"\n{}metrics:\n  listen: \"{metrics}\"\nstore:\n  data_dir: \"{}\"\n{}drain:\n  timeout: \"{}\"\n{delay}{}",
            self.admin_yaml,
            data_dir.display(),
            self.store_yaml,
            self.drain_timeout,
            self.extra_yaml
        ));
        let config_path = work.path().join("shardgate.yaml");
        std::fs::write(&config_path, yaml).expect("write config");

        let mut gw = Gateway {
            bin: self.bin,
            rust_log: self.rust_log,
            env: self.env,
            nofile: self.nofile,
            config_path,
            log_path: work.path().join("shardgate.log"),
            data_dir,
            admin,
            metrics,
            tls,
            plain,
            edge_plain,
            edge_tls,
            child: None,
            starts: 0,
            _work: work,
        };
        gw.start().await;
        gw
    }
}

/// A running gateway process; killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    bin: PathBuf,
    rust_log: Option<String>,
    env: Vec<(String, String)>,
    nofile: Option<u64>,
    config_path: PathBuf,
    log_path: PathBuf,
    /// The store directory.
    pub data_dir: PathBuf,
    /// The Admin API address.
    pub admin: SocketAddr,
    /// The metrics and health address.
    pub metrics: SocketAddr,
    /// TLS stream listeners.
    pub tls: Vec<SocketAddr>,
    /// Plain stream listeners.
    pub plain: Vec<SocketAddr>,
    /// Plain HTTP edge listeners.
    pub edge_plain: Vec<SocketAddr>,
    /// HTTPS edge listeners.
    pub edge_tls: Vec<SocketAddr>,
    child: Option<Child>,
    starts: usize,
    _work: tempfile::TempDir,
}

impl Gateway {
    /// A builder for the binary at `bin`.
    pub fn builder(bin: impl Into<PathBuf>) -> GatewayBuilder {
        GatewayBuilder::new(bin)
    }

    async fn start(&mut self) {
        self.starts += 1;
        let log = File::options().create(true).append(true).open(&self.log_path).expect("log file");
        let mut command = match self.nofile {
            None => Command::new(&self.bin),
            Some(n) => {
                // `exec` keeps the process id: signals and kills reach the gateway.
                let mut c = Command::new("sh");
                c.args(["-c", "ulimit -n \"$1\" && shift && exec \"$@\"", "sh", &n.to_string()]).arg(&self.bin);
                c
            }
        };
        command.args(["run", "--config"]).arg(&self.config_path).env("SHARDGATE_ADMIN_KEY", ADMIN_KEY);
        match &self.rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command.stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().expect("spawn shardgate");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("shardgate exited during start ({status}):\n{}", self.log());
            }
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), async {
                tokio::net::TcpStream::connect(self.metrics).await?;
                Ok::<_, std::io::Error>(http(self.metrics, "GET", "/readyz", &[], None).await)
            })
            .await
                && r.status == 200
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "shardgate not ready after 30s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The bootstrap file the gateway runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// An Admin API client with the right key.
    pub fn admin(&self) -> AdminClient {
        AdminClient { addr: self.admin, key: Some(ADMIN_KEY.to_owned()) }
    }

    /// An Admin API client with a chosen key (or none).
    pub fn admin_with_key(&self, key: Option<&str>) -> AdminClient {
        AdminClient { addr: self.admin, key: key.map(str::to_owned) }
    }

    /// The first TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls[0]
    }

    /// `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = http(self.metrics, "GET", "/metrics", &[], None).await;
        assert_eq!(r.status, 200);
        r.body
    }

    /// The value of one metric series (`name{labels}` exactly as exposed), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Status of `/readyz`.
    pub async fn readyz(&self) -> u16 {
        http(self.metrics, "GET", "/readyz", &[], None).await.status
    }

    /// Everything the process logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGHUP: the gateway reads its bootstrap file again.
    pub fn sighup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// The bootstrap file's text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("read the config")
    }

    /// Replaces the bootstrap file (applied by the next SIGHUP or restart).
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).expect("write the config");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// Waits for the process to exit, at most `secs` seconds.
    pub async fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "shardgate did not exit within {secs}s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (5 s at most) until the gateway serves every write made so
    /// far: its published generation (`shardgate_config_generation`)
    /// reaches the highest `modifiedIndex` of the stream and edge resources.
    pub async fn applied(&self) {
        let admin = self.admin();
        let mut revision = 0u64;
        for kind in ["ssls", "upstreams", "stream_routes", "ip_sets", "web_acls", "distributions"] {
            let list = admin.list(kind).await;
            for item in list["list"].as_array().into_iter().flatten() {
                revision = revision.max(item["modifiedIndex"].as_u64().unwrap_or(0));
            }
        }
        crate::eventually(5, &format!("generation {revision} published"), || async {
            (self.metric("shardgate_config_generation").await >= revision as f64).then_some(())
        })
        .await;
    }

    /// Starts the process again with the same config, ports and data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the gateway before restarting it");
        self.start().await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Only this test's own process, by its handle.
            if c.kill().is_ok() {
                drop(c.wait());
            }
        }
    }
}
