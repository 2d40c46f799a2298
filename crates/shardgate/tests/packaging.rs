//! Packaging: `shardgate healthcheck` and `shardgate drain` run as the
//! container image and the Kubernetes chart run them, against the real
//! binary; then the Dockerfile, the Helm chart and the systemd unit, checked
//! with the tools `scripts/test` installs into `target/packaging-tools`
//! (`SHARDGATE_PACKAGING_TOOLS`): Helm 3 and Helm 4 (lint, template),
//! kubernetes-validate (Kubernetes' OpenAPI schemas), prometheus-operator's
//! ServiceMonitor schema, yamllint, hadolint and systemd-analyze; and what the
//! manifests say checked against what the gateway does (the rendered
//! bootstrap file goes through `shardgate validate`, probes and hooks point
//! at its listeners).
//!
//! Not exercised here (no container engine or cluster on this machine): an
//! image build, a pod's life on a kubelet, a load balancer's deregistration.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{gateway, text};
use serde_json::{Value, json};
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, Gateway, eventually};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_shardgate");

/// Runs the binary on a blocking thread (the test's servers keep serving).
async fn shardgate(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().expect("run shardgate"))
        .await
        .expect("join")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A plain stream session to the gateway's game server, proven by one echo.
async fn session(addr: SocketAddr) -> TcpStream {
    eventually(5, "routed", || async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[gs] hi")).then_some(s)
    })
    .await
}

async fn routed_gateway(delay: &str, timeout: &str) -> (Gateway, GameServer) {
    let gw = gateway().tls_listeners(0).plain_listeners(1).drain_delay(delay).drain_timeout(timeout).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    (gw, gs)
}

// ---------------------------------------------------------------------------
// shardgate healthcheck
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_answers_from_readyz_and_says_why_not() {
    let mut gw = gateway().tls_listeners(0).plain_listeners(1).drain_delay("30s").drain_timeout("5s").spawn().await;
    let config = gw.config_path().to_str().expect("utf-8").to_owned();
    let url = format!("http://{}", gw.metrics);

    let ok = shardgate(&["healthcheck", "--config", &config]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    assert!(text(&ok).contains("/readyz answered 200: ready"), "{}", text(&ok));
    let ok = shardgate(&["healthcheck", "--url", &url, "--path", "/healthz"]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    let ok = shardgate(&["healthcheck", "--url", &format!("{url}/readyz")]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));

    // Draining (`shardgate drain` without --wait returns once the gateway
    // has taken the signal): not ready (exit 1, the gateway's reason), still alive.
    let drain = shardgate(&["drain", "--config", &config]).await;
    assert_eq!(code(&drain), 0, "{}", text(&drain));
    assert!(text(&drain).contains("listeners still accept for"), "{}", text(&drain));
    assert_eq!(gw.readyz().await, 503, "unready once `drain` has returned");
    let not_ready = shardgate(&["healthcheck", "--config", &config]).await;
    assert_eq!(code(&not_ready), 1, "{}", text(&not_ready));
    let err = String::from_utf8_lossy(&not_ready.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("answered 503 Service Unavailable: not ready: draining"), "{err}");
    let alive = shardgate(&["healthcheck", "--config", &config, "--path", "/healthz"]).await;
    assert_eq!(code(&alive), 0, "alive while draining: {}", text(&alive));
    gw.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fails_fast_on_a_closed_port_a_silent_one_and_bad_arguments() {
    let closed = shardgate_e2e::ports::free("127.0.0.1");
    let o = shardgate(&["healthcheck", "--url", &format!("http://{closed}")]).await;
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("cannot connect to {closed}")), "{}", text(&o));

    // A listener that accepts and never answers: bounded by --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let started = Instant::now();
    let o = shardgate(&["healthcheck", "--url", &format!("http://{addr}"), "--timeout", "1"]).await;
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no answer from"), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(30), "bounded: {:?}", started.elapsed());
    drop(silent);

    for (args, why) in [
        (vec!["healthcheck", "--path", "readyz"], "must start with /"),
        (vec!["healthcheck", "--url", "https://127.0.0.1:9091"], "not supported"),
        (vec!["healthcheck", "--config", "/nonexistent/shardgate.yaml"], "invalid config"),
    ] {
        let o = shardgate(&args).await;
        assert_eq!(code(&o), 1, "{args:?}: {}", text(&o));
        assert!(text(&o).contains(why), "{args:?}: {}", text(&o));
    }
    let o = shardgate(&["healthcheck", "--config", "x.yaml", "--url", "http://127.0.0.1:1"]).await;
    assert_eq!(code(&o), 2, "clap refuses both: {}", text(&o));
}

// ---------------------------------------------------------------------------
// shardgate drain (the chart's preStop hook)
// ---------------------------------------------------------------------------

/// The Kubernetes sequence: the preStop hook runs `drain
/// --wait=listeners-closed`, which starts the drain and returns once the
/// listeners have closed (not before drain.delay, during which players are
/// still accepted); the hook delivered twice signals once; a SIGTERM during
/// the delay or the kubelet's after the hook changes nothing; the open
/// session plays on and the gateway exits 0 when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prestop_drain_waits_out_the_delay_and_the_kubelets_sigterm_changes_nothing() {
    // 10 s covers two CLI runs, a /readyz poll and a late connect on a busy
    // machine, all of which must happen before the delay ends.
    let (mut gw, _gs) = routed_gateway("10s", "60s").await;
    let addr = gw.plain[0];
    let config = gw.config_path().to_str().expect("utf-8").to_owned();
    let mut playing = session(addr).await;

    let started = Instant::now();
    let hook = tokio::spawn({
        let config = config.clone();
        async move { shardgate(&["drain", "--config", &config, "--wait=listeners-closed", "--timeout", "30"]).await }
    });
    eventually(5, "/readyz unready", || async { (gw.readyz().await == 503).then_some(()) }).await;
    let status = shardgate_e2e::admin::http(gw.metrics, "GET", "/status/drain", &[], None).await;
    let status: Value = serde_json::from_str(&status.body).expect("json");
    assert_eq!(status["state"], "delaying", "{status}");
    assert_eq!(status["signal"], "SIGTERM", "{status}");

    // Delivered again ("at least once"): not signalled again; and a SIGTERM
    // that does arrive during the delay (the kubelet's, after a hook that
    // gave up early) does not cut it short: a late player is still served.
    let again = shardgate(&["drain", "--config", &config]).await;
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert!(text(&again).contains("already draining"), "{}", text(&again));
    gw.sigterm();
    eventually(10, "the early SIGTERM is logged", || async {
        gw.log().contains("SIGTERM while already draining").then_some(())
    })
    .await;
    let mut late = TcpStream::connect(addr).await.expect("still accepting during drain.delay");
    assert_eq!(roundtrip(&mut late, "late").await, "[gs] late");
    drop(late);

    let hook = hook.await.expect("hook");
    let waited = started.elapsed();
    assert_eq!(code(&hook), 0, "{}", text(&hook));
    assert!(text(&hook).contains("sent SIGTERM"), "{}", text(&hook));
    assert!(text(&hook).contains("listeners closed"), "{}", text(&hook));
    assert!(waited >= Duration::from_secs(10), "returned before drain.delay ended: {waited:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed when the hook returns");

    // The kubelet's SIGTERM, once the hook has returned: the session plays on.
    gw.sigterm();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gw.is_running(), "still draining after the kubelet's SIGTERM");
    assert_eq!(roundtrip(&mut playing, "still").await, "[gs] still");
    drop(playing);
    let exit = gw.wait_exit(15).await;
    assert!(exit.success(), "exit 0 when the last session ends: {exit}");
}

/// A gateway that cannot get ready (its etcd is a closed loopback port,
/// retried for `store.etcd.timeout`) stops on SIGTERM at once, exit 0, also
/// as PID 1 of its own PID namespace, as in a container, where the kernel
/// drops a signal PID 1 has no handler for. Without that, a pod stuck
/// starting ignores its preStop hook and the kubelet's SIGTERM until SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_gateway_still_starting_also_as_pid_1() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let closed = shardgate_e2e::ports::free("127.0.0.1");
    let [admin, metrics] = shardgate_e2e::ports::free_many("127.0.0.1", 2)[..] else { panic!("two ports") };
    let config = scratch.path().join("shardgate.yaml");
    std::fs::write(
        &config,
        format!(
            "stream:\n  only: true\n  tcp: []\nadmin:\n  listen: \"{admin}\"\nmetrics:\n  listen: \"{metrics}\"\n\
             store:\n  data_dir: \"{}\"\n  backend: etcd\n  etcd:\n    host: [\"http://{closed}\"]\n    timeout: 300s\n",
            scratch.path().join("data").display()
        ),
    )
    .expect("write config");

    // As PID 1 when this machine allows a PID namespace (`unshare`, from
    // util-linux, with a user namespace so that no privilege is needed).
    let pid_1 = Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--fork", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pid_1 {
        eprintln!("unshare --user --pid is not available here: only the run as an ordinary process is checked");
    }
    for as_pid_1 in [false, true].into_iter().filter(|p| !p || pid_1) {
        let what = if as_pid_1 { "as PID 1" } else { "as a child process" };
        let log_path = scratch.path().join(format!("shardgate-{as_pid_1}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = if as_pid_1 {
            let mut c = Command::new("unshare");
            c.args(["--user", "--map-root-user", "--pid", "--fork", "--kill-child"]).arg(BIN);
            c
        } else {
            Command::new(BIN)
        };
        let mut child = command
            .args(["run", "--config"])
            .arg(&config)
            .env("SHARDGATE_ADMIN_KEY", "an-admin-key-for-a-gateway-that-never-gets-ready")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn");
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        // Started, and waiting for etcd.
        eventually(20, "the gateway logs its start", || async {
            read_log().contains("pid file written").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(child.try_wait().expect("try_wait").is_none(), "{what}: still starting:\n{}", read_log());
        assert!(TcpStream::connect(metrics).await.is_err(), "{what}: not serving yet");

        let gateway_pid = if as_pid_1 { only_child(child.id()) } else { child.id() };
        let sent = Command::new("kill").args(["-TERM", &gateway_pid.to_string()]).status().expect("kill");
        assert!(sent.success(), "{what}: kill -TERM {gateway_pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                panic!("{what}: SIGTERM while starting was ignored for 20 s:\n{}", read_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.code(), Some(0), "{what}: exit 0, not killed by the signal ({status}):\n{}", read_log());
        assert!(read_log().contains("stop signal while starting"), "{what}: the stop is logged:\n{}", read_log());
    }
}

/// The one child of `parent` (the process `unshare --fork` started).
fn only_child(parent: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).expect("children");
    let pids: Vec<u32> = children.split_whitespace().map(|p| p.parse().expect("pid")).collect();
    assert_eq!(pids.len(), 1, "one child of unshare: {pids:?}");
    pids[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_wait_follows_the_gateway_to_its_exit_or_says_it_timed_out() {
    let (mut gw, _gs) = routed_gateway("0s", "60s").await;
    let config = gw.config_path().to_str().expect("utf-8").to_owned();
    let playing = session(gw.plain[0]).await;

    // The session holds the drain open for 60 s: a 2 s wait times out (exit 3).
    let o = shardgate(&["drain", "--config", &config, "--wait", "--timeout", "2"]).await;
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("did not see the process exit"), "{}", text(&o));
    assert!(gw.is_running());

    // It ends: the next wait sees the exit (and does not signal again).
    let waiter = tokio::spawn({
        let config = config.clone();
        async move { shardgate(&["drain", "--config", &config, "--wait", "--timeout", "30"]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(playing);
    let o = waiter.await.expect("waiter");
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("already draining"), "{}", text(&o));
    assert!(text(&o).contains("has exited"), "{}", text(&o));
    assert!(gw.wait_exit(10).await.success());

    // No gateway any more: exit 2, nothing signalled.
    let o = shardgate(&["drain", "--config", &config]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("nothing was signalled"), "{}", text(&o));
}

// ---------------------------------------------------------------------------
// The tools scripts/test installs, and running them
// ---------------------------------------------------------------------------

fn tools() -> PathBuf {
    PathBuf::from(std::env::var("SHARDGATE_PACKAGING_TOOLS").unwrap_or_else(|_| {
        panic!(
            "SHARDGATE_PACKAGING_TOOLS is not set: run the suite with scripts/test, which installs Helm, \
             kubernetes-validate, yamllint and hadolint into target/packaging-tools"
        )
    }))
}

fn tool(rel: &str) -> PathBuf {
    let path = tools().join(rel);
    assert!(path.exists(), "{} is missing: run scripts/test (it installs the packaging tools)", path.display());
    path
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/shardgate")
}

/// Both Helm majors a studio may run.
const HELMS: [&str; 2] = ["helm3", "helm4"];

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Helm with its state in a scratch directory and no cluster to reach.
fn helm(which: &str, args: &[&str], scratch: &Path) -> Output {
    run(Command::new(tool(&format!("bin/{which}")))
        .args(args)
        .env("HELM_CACHE_HOME", scratch.join("cache"))
        .env("HELM_CONFIG_HOME", scratch.join("config"))
        .env("HELM_DATA_HOME", scratch.join("data"))
        .env("KUBECONFIG", scratch.join("no-kubeconfig")))
}

/// A set of values the chart is checked with.
struct Case {
    name: &'static str,
    /// A values file of the chart, or YAML written to a scratch file.
    values: Option<Values>,
    /// The bootstrap file needs a binary that knows its every section.
    validate_config: bool,
}

enum Values {
    File(&'static str),
    Yaml(&'static str),
}

/// Everything the chart can switch on at once.
const FULL_VALUES: &str = r#"
replicaCount: 3
image:
  tag: "1.2.3"
stream:
  only: false
  tcp:
    - addr: 8888
      tls: true
      servicePort: 443
      proxy_protocol: true
    - addr: "0.0.0.0:9100"
  udp:
    - 9200
    - addr: 9300
etcd:
  endpoints: ["https://etcd-0.etcd:2379", "etcd-1.etcd:2379"]
  prefix: /games
  timeout: 10
  user: shardgate
  existingSecret: etcd-credentials
  tls:
    existingSecret: etcd-tls
    clientCertificate: true
dataEncryption:
  keyring: ["0123456789abcdef", "fedcba9876543210fedcba9876543210"]
edge:
  http:
    - addr: 8080
    - addr: 8443
      tls: true
admin:
  existingSecret: shardgate-keys
  viewerKey:
    existingSecret: shardgate-keys
  ingress:
    enabled: true
    className: alb
    annotations:
      alb.ingress.kubernetes.io/scheme: internal
    hosts:
      - host: gateway-admin.example.com
        paths: ["/"]
    tls:
      - secretName: gateway-admin-tls
        hosts: [gateway-admin.example.com]
metrics:
  serviceMonitor:
    enabled: true
    labels:
      release: kube-prometheus-stack
service:
  loadBalancerSourceRanges: ["192.0.2.0/24"]
  externalTrafficPolicy: Local
drain:
  delaySeconds: 20
  timeoutSeconds: 600
terminationGracePeriodSeconds: 700
config:
  limits:
    max_connections: 50000
  log:
    level: "info,shardgate::access=warn"
autoscaling:
  enabled: true
  minReplicas: 3
  maxReplicas: 12
  targetMemoryUtilizationPercentage: 80
persistence:
  enabled: true
  storageClass: gp3
podDisruptionBudget:
  minAvailable: 2
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
priorityClassName: game-critical
extraEnv:
  - name: RUST_BACKTRACE
    value: "1"
"#;

/// Dashboard users, hashed (their section is checked by the dashboard's own tests).
const DASHBOARD_VALUES: &str = r#"
dashboard:
  users:
    - username: admin
      password_hash: "$pbkdf2-sha256$i=600000$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
    - username: oncall
      password_hash: "$pbkdf2-sha256$i=600000$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
      read_only: true
"#;

fn cases() -> Vec<Case> {
    vec![
        Case { name: "default", values: None, validate_config: true },
        Case { name: "seed", values: Some(Values::File("values-seed.yaml")), validate_config: true },
        Case { name: "full", values: Some(Values::Yaml(FULL_VALUES)), validate_config: true },
        Case {
            name: "embedded-persistent",
            values: Some(Values::Yaml("persistence:\n  enabled: true\n  existingClaim: gateway-data\n")),
            validate_config: true,
        },
        Case { name: "dashboard", values: Some(Values::Yaml(DASHBOARD_VALUES)), validate_config: true },
    ]
}

/// `-f` arguments for a case.
fn values_args(case: &Case, scratch: &Path) -> Vec<String> {
    match &case.values {
        None => Vec::new(),
        Some(Values::File(f)) => vec!["-f".into(), chart().join(f).display().to_string()],
        Some(Values::Yaml(y)) => {
            let path = scratch.join(format!("values-{}.yaml", case.name));
            std::fs::write(&path, y).expect("write values");
            vec!["-f".into(), path.display().to_string()]
        }
    }
}

/// `helm template` of a case: the manifests' text.
fn template(which: &str, case: &Case, extra: &[&str], scratch: &Path) -> Result<String, String> {
    let chart = chart().display().to_string();
    let mut args: Vec<String> =
        ["template", "gw", chart.as_str(), "--namespace", "games"].iter().map(|s| (*s).to_owned()).collect();
    args.extend(values_args(case, scratch));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = helm(which, &args, scratch);
    if o.status.success() { Ok(String::from_utf8_lossy(&o.stdout).into_owned()) } else { Err(text(&o)) }
}

fn docs(manifests: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(manifests)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{manifests}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds(docs)))
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"].as_str().unwrap_or("?")))
        .collect()
}

/// The bootstrap file the pods run with, from the config Secret.
fn bootstrap(docs: &[Value]) -> (String, Value) {
    let text = find(docs, "Secret", "gw-shardgate-config")["stringData"]["shardgate.yaml"]
        .as_str()
        .expect("stringData shardgate.yaml")
        .to_owned();
    let parsed: Value = serde_yaml_ng::from_str(&text).expect("bootstrap file parses");
    (text, parsed)
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "gw-shardgate")["spec"]["template"]["spec"]["containers"][0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().expect("a list").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
}

/// Seconds of a duration the bootstrap file writes ("15s").
fn secs(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{v}"))
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{listen}"))
}

// ---------------------------------------------------------------------------
// Helm chart
// ---------------------------------------------------------------------------

#[test]
fn the_chart_lints_clean_on_helm_3_and_4_with_every_value_set() {
    let scratch = tempfile::tempdir().expect("tempdir");
    for which in HELMS {
        for case in cases() {
            let chart = chart().display().to_string();
            let mut args = vec!["lint".to_owned(), "--strict".to_owned(), chart];
            args.extend(values_args(&case, scratch.path()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = helm(which, &args, scratch.path());
            assert!(o.status.success(), "{which} lint, {}: {}", case.name, text(&o));
            assert!(text(&o).contains("0 chart(s) failed"), "{which} lint, {}: {}", case.name, text(&o));
        }
    }
}

/// Every manifest the chart renders, on both Helm majors and every value
/// set, against Kubernetes' own schemas (strict: an unknown field is an
/// error) for the oldest and a recent supported version, the ServiceMonitor
/// against the Prometheus Operator's; and the YAML itself through yamllint
/// (duplicate keys, which Kubernetes would silently resolve).
#[test]
fn rendered_manifests_validate_against_kubernetes_and_prometheus_operator_schemas() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let validator = tool("venv/bin/kubernetes-validate");
    for which in HELMS {
        for case in cases() {
            let manifests = template(which, &case, &[], scratch.path())
                .unwrap_or_else(|e| panic!("{which} template, {}: {e}", case.name));
            let all = docs(&manifests);
            let crds: Vec<&Value> = all.iter().filter(|d| d["apiVersion"] == "monitoring.coreos.com/v1").collect();
            // Helm's own text (YAML 1.1, as Kubernetes reads it: 0440 is octal), CRDs aside.
            let core: Vec<&str> = manifests
                .split("\n---\n")
                .filter(|d| !d.lines().any(|l| l == "apiVersion: monitoring.coreos.com/v1"))
                .collect();
            let file = scratch.path().join(format!("{which}-{}.yaml", case.name));
            std::fs::write(&file, core.join("\n---\n")).expect("write manifests");
            for version in ["1.25.0", "1.33.0"] {
                let o = run(Command::new(&validator).args(["--strict", "--quiet", "-k", version]).arg(&file));
                assert!(
                    o.status.success() && text(&o).trim().is_empty(),
                    "{which} {} against Kubernetes {version}: {}",
                    case.name,
                    text(&o)
                );
            }
            validate_servicemonitors(&crds, &format!("{which} {}", case.name));

            let raw = scratch.path().join(format!("{which}-{}-raw.yaml", case.name));
            std::fs::write(&raw, &manifests).expect("write");
            yamllint(&[&raw], &format!("{which} {}", case.name));

            let expected: &[&str] = match case.name {
                "full" => &[
                    "Deployment/gw-shardgate",
                    "HorizontalPodAutoscaler/gw-shardgate",
                    "Ingress/gw-shardgate-admin",
                    "PersistentVolumeClaim/gw-shardgate-data",
                    "PodDisruptionBudget/gw-shardgate",
                    "Secret/gw-shardgate-config",
                    "Service/gw-shardgate",
                    "Service/gw-shardgate-admin",
                    "Service/gw-shardgate-metrics",
                    "ServiceAccount/gw-shardgate",
                    "ServiceMonitor/gw-shardgate",
                ],
                "embedded-persistent" => &[
                    "Deployment/gw-shardgate",
                    "PodDisruptionBudget/gw-shardgate",
                    "Secret/gw-shardgate-admin",
                    "Secret/gw-shardgate-config",
                    "Service/gw-shardgate",
                    "Service/gw-shardgate-admin",
                    "Service/gw-shardgate-metrics",
                    "ServiceAccount/gw-shardgate",
                ],
                _ => &[
                    "Deployment/gw-shardgate",
                    "PodDisruptionBudget/gw-shardgate",
                    "Secret/gw-shardgate-admin",
                    "Secret/gw-shardgate-config",
                    "Service/gw-shardgate",
                    "Service/gw-shardgate-admin",
                    "Service/gw-shardgate-metrics",
                    "ServiceAccount/gw-shardgate",
                ],
            };
            let got = kinds(&all);
            let want: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(got, want, "{which} {}: the objects rendered", case.name);
        }
    }
}

/// prometheus-operator's ServiceMonitor schema (@kubernetes-models/prometheus-operator).
fn validate_servicemonitors(monitors: &[&Value], what: &str) {
    if monitors.is_empty() {
        return;
    }
    let script = r#"
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { readFileSync } from "node:fs";
let failed = 0;
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  try { new ServiceMonitor(doc).validate(); } catch (e) { failed++; console.error(doc.metadata.name + ": " + e.message); }
}
process.exit(failed ? 1 : 0);
"#;
    let mut child = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(tool("npm/node_modules/@kubernetes-models/prometheus-operator").join("../../.."))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(serde_json::to_string(monitors).expect("json").as_bytes()).expect("write");
    }
    let o = child.wait_with_output().expect("node");
    assert!(o.status.success(), "{what}: ServiceMonitor schema: {}", text(&o));
}

const YAMLLINT_CONFIG: &str = "{extends: default, rules: {line-length: {max: 160}, document-start: disable, \
     indentation: {indent-sequences: whatever}, comments: {min-spaces-from-content: 1}, \
     comments-indentation: disable, truthy: {check-keys: false}}}";

fn yamllint(files: &[&Path], what: &str) {
    let o = run(Command::new(tool("venv/bin/yamllint"))
        .args(["--strict", "-f", "parsable", "-d", YAMLLINT_CONFIG])
        .args(files));
    assert!(o.status.success(), "yamllint, {what}: {}", text(&o));
}

#[test]
fn the_charts_values_and_the_shipped_configs_pass_yamllint() {
    let chart = chart();
    let repo = repo();
    let files = [
        chart.join("Chart.yaml"),
        chart.join("values.yaml"),
        chart.join("values-seed.yaml"),
        repo.join("deploy/docker/shardgate.yaml"),
        repo.join("deploy/systemd/shardgate.yaml"),
    ];
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    yamllint(&refs, "chart values and shipped configs");
}

/// The bootstrap file the chart renders is one `shardgate validate`
/// accepts, given the environment the Deployment gives the container (its
/// Secret references filled with stand-ins), and the listeners it opens are
/// the ports the pod and its Services declare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_bootstrap_file_passes_shardgate_validate_and_matches_the_ports() {
    let scratch = tempfile::tempdir().expect("tempdir");
    for case in cases().into_iter().filter(|c| c.validate_config) {
        let all = docs(&template("helm4", &case, &[], scratch.path()).expect("template"));
        let (file_text, config) = bootstrap(&all);
        let c = container(&all);
        // Files the pod mounts from Secrets it does not create (etcd's TLS
        // files): stand-ins at the same names under a scratch directory.
        let mut file_text = file_text;
        let pod = &find(&all, "Deployment", "gw-shardgate")["spec"]["template"]["spec"];
        for m in c["volumeMounts"].as_array().expect("mounts") {
            let v = volume(pod, m["name"].as_str().expect("name"));
            let Some(secret) = v["secret"]["secretName"].as_str() else { continue };
            if secret.starts_with("gw-shardgate") {
                continue;
            }
            let mount = m["mountPath"].as_str().expect("path");
            let stand_in = scratch.path().join(case.name).join(secret);
            std::fs::create_dir_all(&stand_in).expect("mkdir");
            let cert = shardgate_e2e::TestCert::ecdsa(&["etcd.example.com"]);
            for (file, pem) in [("ca.crt", &cert.cert), ("tls.crt", &cert.cert), ("tls.key", &cert.key)] {
                std::fs::write(stand_in.join(file), pem).expect("write stand-in");
            }
            file_text = file_text.replace(&format!("{mount}/"), &format!("{}/", stand_in.display()));
        }
        let path = scratch.path().join(format!("{}-shardgate.yaml", case.name));
        std::fs::write(&path, &file_text).expect("write");
        let mut command = Command::new(BIN);
        command.args(["validate", "--config"]).arg(&path);
        for var in ["SHARDGATE_ADMIN_KEY", "SHARDGATE_ADMIN_VIEWER_KEY", "SHARDGATE_ETCD_PASSWORD"] {
            command.env_remove(var);
        }
        let mut env_names = Vec::new();
        for e in c["env"].as_array().expect("env") {
            let name = e["name"].as_str().expect("name");
            env_names.push(name.to_owned());
            if e["valueFrom"]["secretKeyRef"].is_object() {
                command.env(name, format!("stand-in-for-{}-{}", e["valueFrom"]["secretKeyRef"]["key"], "x".repeat(24)));
            } else if let Some(v) = e["value"].as_str() {
                command.env(name, v);
            }
        }
        assert!(
            env_names.contains(&"SHARDGATE_ADMIN_KEY".to_owned()),
            "{}: the admin key comes from a Secret",
            case.name
        );
        let o = tokio::task::spawn_blocking(move || run(&mut command)).await.expect("join");
        assert!(
            o.status.success(),
            "{}: shardgate validate refuses the rendered file:\n{file_text}\n{}",
            case.name,
            text(&o)
        );

        // "listeners it would open": each one has its container port, and the
        // players' ones a Service port.
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let ports = c["ports"].as_array().expect("ports");
        let service = find(&all, "Service", "gw-shardgate");
        let mut opened = 0;
        for line in out.lines().skip_while(|l| !l.starts_with("listeners it would open")).skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (kind, addr) = match words.as_slice() {
                ["stream", proto, addr, ..] => (*proto, *addr),
                ["edge", proto, addr, ..] => (*proto, *addr),
                ["admin", addr, ..] => ("admin", *addr),
                ["metrics", addr, ..] => ("metrics", *addr),
                _ => panic!("{}: unexpected listener line {line:?}", case.name),
            };
            assert!(addr.starts_with("0.0.0.0:"), "{}: {line}: pods are reached on their own address", case.name);
            let port = port_of(addr);
            let protocol = if kind == "udp" { "UDP" } else { "TCP" };
            let declared = ports
                .iter()
                .find(|p| p["containerPort"] == port && p["protocol"] == protocol)
                .unwrap_or_else(|| panic!("{}: {line}: no container port {port}/{protocol} in {ports:?}", case.name));
            let name = declared["name"].as_str().expect("port name");
            if kind != "admin" && kind != "metrics" {
                let svc = service["spec"]["ports"]
                    .as_array()
                    .expect("service ports")
                    .iter()
                    .find(|p| p["targetPort"] == name)
                    .unwrap_or_else(|| panic!("{}: {line}: not on the players' Service", case.name));
                assert_eq!(svc["protocol"], protocol, "{}: {line}", case.name);
            } else {
                assert_eq!(name, kind, "{}: {line}", case.name);
            }
            opened += 1;
        }
        let listeners = config["stream"]["tcp"].as_array().map_or(0, Vec::len)
            + config["stream"]["udp"].as_array().map_or(0, Vec::len)
            + config["edge"]["http"].as_array().map_or(0, Vec::len);
        assert_eq!(opened, listeners + 2, "{}: every listener checked:\n{out}", case.name);
        assert_eq!(
            service["spec"]["ports"].as_array().map_or(0, Vec::len),
            listeners,
            "{}: one Service port per listener",
            case.name
        );
    }
}

/// What the Deployment must say for the gateway to stop without dropping a
/// player, be probed where it answers, and run unprivileged.
#[test]
fn the_deployment_drains_on_stop_probes_the_metrics_listener_and_runs_unprivileged() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dockerfile = Dockerfile::read();
    for which in HELMS {
        for case in cases() {
            let what = format!("{which} {}", case.name);
            let all = docs(&template(which, &case, &[], scratch.path()).expect("template"));
            let (_, config) = bootstrap(&all);
            let deployment = find(&all, "Deployment", "gw-shardgate");
            let pod = &deployment["spec"]["template"]["spec"];
            let c = container(&all);

            // The bootstrap file: given with --config, mounted from the config Secret.
            let args = strs(&c["args"]);
            assert_eq!(args[..2], ["run", "--config"], "{what}");
            let config_path = Path::new(&args[2]);
            let mount = mount_of(c, config_path).unwrap_or_else(|| panic!("{what}: {} is not mounted", args[2]));
            let config_volume = volume(pod, mount["name"].as_str().expect("name"));
            assert_eq!(config_volume["secret"]["secretName"], "gw-shardgate-config", "{what}");
            let key = config_path.strip_prefix(mount["mountPath"].as_str().expect("path")).expect("under the mount");
            assert_eq!(key, Path::new("shardgate.yaml"), "{what}: the Secret's key");

            // The preStop hook: the drain, waiting for the listeners to close.
            let hook = strs(&c["lifecycle"]["preStop"]["exec"]["command"]);
            assert_eq!(hook[0], dockerfile.entrypoint(), "{what}: the image's binary");
            assert_eq!(
                hook[1..6],
                ["drain", "--config", args[2].as_str(), "--wait=listeners-closed", "--timeout"],
                "{what}"
            );
            let delay = secs(&config["drain"]["delay"]);
            let timeout = secs(&config["drain"]["timeout"]);
            let hook_timeout: u64 = hook[6].parse().expect("seconds");
            assert!(hook_timeout > delay, "{what}: the hook may wait out drain.delay ({delay} s): {hook_timeout}");
            assert!(delay > 0, "{what}: a delay for the load balancer to deregister the pod");
            let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("grace");
            assert!(grace > delay + timeout + 5, "{what}: grace {grace} s <= drain {delay} + {timeout} + 5");

            // Probes on the metrics listener: alive /healthz, ready /readyz.
            let metrics_port = port_of(config["metrics"]["listen"].as_str().expect("metrics.listen"));
            let named =
                c["ports"].as_array().expect("ports").iter().find(|p| p["name"] == "metrics").expect("metrics port");
            assert_eq!(named["containerPort"], metrics_port, "{what}");
            for (probe, path) in
                [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
            {
                assert_eq!(c[probe]["httpGet"]["path"], path, "{what}: {probe}");
                assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{what}: {probe}");
            }

            // Unprivileged, read-only root, the data directory on a volume.
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{what}");
            assert!(psc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{what}");
            assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
            assert!(sc["capabilities"]["add"].is_null(), "{what}");
            let data_dir = config["store"]["data_dir"].as_str().expect("data_dir");
            let data = mount_of(c, Path::new(data_dir)).unwrap_or_else(|| panic!("{what}: {data_dir} not on a volume"));
            assert_ne!(data["readOnly"], true, "{what}: {data_dir} must be writable");
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");

            // No admin key in any manifest: it comes from a Secret.
            let admin_env =
                c["env"].as_array().expect("env").iter().find(|e| e["name"] == "SHARDGATE_ADMIN_KEY").expect("key");
            assert!(admin_env["value"].is_null(), "{what}: the admin key is never a literal");
            assert!(config["admin"]["key"].is_null(), "{what}: the admin key is never in the bootstrap file");

            // The pods the Services, PDB and HPA mean are this Deployment's.
            let labels = &deployment["spec"]["template"]["metadata"]["labels"];
            for d in &all {
                let selector = match d["kind"].as_str() {
                    Some("Service") => &d["spec"]["selector"],
                    Some("PodDisruptionBudget") => &d["spec"]["selector"]["matchLabels"],
                    _ => continue,
                };
                for (k, v) in selector.as_object().expect("selector") {
                    assert_eq!(&labels[k], v, "{what}: {} selects {k}={v}", d["metadata"]["name"]);
                }
            }
            if case.name == "full" {
                assert!(deployment["spec"]["replicas"].is_null(), "{what}: the HPA owns replicas");
                let hpa = find(&all, "HorizontalPodAutoscaler", "gw-shardgate");
                assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gw-shardgate", "{what}");
                let monitor = find(&all, "ServiceMonitor", "gw-shardgate");
                let metrics_svc = find(&all, "Service", "gw-shardgate-metrics");
                for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("labels") {
                    assert_eq!(&metrics_svc["metadata"]["labels"][k], v, "{what}: the ServiceMonitor selects {k}");
                }
                assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics", "{what}");
                assert_eq!(c["image"], "ghcr.io/shardgate/shardgate:1.2.3", "{what}");
                assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "{what}: one RWO volume");
                assert_eq!(
                    find(&all, "Service", "gw-shardgate")["spec"]["ports"][0]["port"],
                    443,
                    "{what}: servicePort"
                );
                assert!(config["stream"]["tcp"][0]["servicePort"].is_null(), "{what}: chart keys stay out of the file");
                assert_eq!(
                    strs(&config["store"]["etcd"]["host"]),
                    ["https://etcd-0.etcd:2379", "http://etcd-1.etcd:2379"],
                    "{what}: http:// added when no scheme"
                );
                let tls = &config["store"]["etcd"]["tls"];
                for file in ["ca", "cert", "key"] {
                    let p = Path::new(tls[file].as_str().expect("tls path"));
                    let m = mount_of(c, p).unwrap_or_else(|| panic!("{what}: etcd tls {file} not mounted"));
                    assert_eq!(
                        volume(pod, m["name"].as_str().expect("name"))["secret"]["secretName"],
                        "etcd-tls",
                        "{what}"
                    );
                }
            } else {
                assert_eq!(c["image"], "ghcr.io/shardgate/shardgate:0.1.0", "{what}: the chart's appVersion");
            }
            if case.name == "seed" {
                assert_eq!(deployment["spec"]["replicas"], 2, "{what}");
                assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "arm64", "{what}");
                let svc = find(&all, "Service", "gw-shardgate");
                assert_eq!(svc["spec"]["type"], "LoadBalancer", "{what}");
                assert_eq!(
                    svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"], "nlb",
                    "{what}"
                );
                assert_eq!(svc["spec"]["ports"][0]["port"], 8888, "{what}");
                assert_eq!(find(&all, "Service", "gw-shardgate-admin")["spec"]["type"], "ClusterIP", "{what}");
                assert_eq!(config["store"]["backend"], "etcd", "{what}");
                assert_eq!(strs(&config["store"]["etcd"]["host"]), ["http://apisix-etcd:2379"], "{what}");
                assert_eq!(config["store"]["prefix"], "/apisix", "{what}");
            }
            // Behind the Ingress's TLS, the dashboard's session cookie is Secure.
            let behind_tls = case.name == "full";
            assert_eq!(
                config["dashboard"]["secure_cookie"].as_bool(),
                behind_tls.then_some(true),
                "{what}: dashboard.secure_cookie"
            );
            if case.name == "dashboard" {
                assert_eq!(config["dashboard"]["users"][1]["read_only"], true, "{what}");
                assert!(!all.iter().any(|d| d["kind"] == "ConfigMap"), "{what}: password hashes never in a ConfigMap");
            }
        }
    }
}

/// The volume mount whose path holds `path`.
fn mount_of<'a>(container: &'a Value, path: &Path) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("\0")))
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("volume {name}"))
}

#[test]
fn the_chart_refuses_a_short_grace_period_a_user_without_password_and_config_keys_it_owns() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let default = Case { name: "refusals", values: None, validate_config: false };
    for which in HELMS {
        let e = template(which, &default, &["--set", "terminationGracePeriodSeconds=60"], scratch.path())
            .expect_err("60 s < 15 + 60 + 5");
        assert!(
            e.contains(
                "terminationGracePeriodSeconds (60) must exceed drain.delaySeconds + drain.timeoutSeconds + 5 (80)"
            ),
            "{which}: {e}"
        );
        let ok = template(which, &default, &["--set", "terminationGracePeriodSeconds=81"], scratch.path());
        assert!(ok.is_ok(), "{which}: {ok:?}");
        let e = template(
            which,
            &default,
            &["--set", "etcd.endpoints[0]=etcd:2379", "--set", "etcd.user=root"],
            scratch.path(),
        )
        .expect_err("user without a password Secret");
        assert!(e.contains("etcd.user needs etcd.existingSecret"), "{which}: {e}");

        // Keys the chart writes from its own values are refused under
        // `config`, naming the value to set instead.
        for (set, owned, instead) in [
            ("config.drain.timeout=300s", "config.drain.timeout", "drain.timeoutSeconds"),
            ("config.drain.delay=0s", "config.drain.delay", "drain.delaySeconds"),
            ("config.metrics.listen=0.0.0.0:9999", "config.metrics.listen", "metrics.port"),
            ("config.admin.listen=0.0.0.0:9999", "config.admin.listen", "admin.port"),
            ("config.store.data_dir=/elsewhere", "config.store.data_dir", "persistence."),
            ("config.stream.tcp[0].addr=9000", "config.stream.tcp", "stream.tcp"),
        ] {
            let e = template(which, &default, &["--set", set], scratch.path()).expect_err(set);
            assert!(
                e.contains(&format!("{owned}: the chart writes this key from {instead}")),
                "{which}: --set {set}: {e}"
            );
        }
        // The rest of a section the chart writes in part is still the user's.
        let ok = template(
            which,
            &default,
            &["--set", "etcd.endpoints[0]=etcd:2379", "--set", "config.store.etcd.max_response_bytes=1048576"],
            scratch.path(),
        )
        .unwrap_or_else(|e| panic!("{which}: {e}"));
        let (_, config) = bootstrap(&docs(&ok));
        assert_eq!(config["store"]["etcd"]["max_response_bytes"], 1048576, "{which}");
        assert_eq!(strs(&config["store"]["etcd"]["host"]), ["http://etcd:2379"], "{which}");
    }
}

/// A changed bootstrap file rolls the pods; a changed replica count does not.
#[test]
fn the_config_checksum_follows_the_bootstrap_file_only() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let case = Case { name: "checksum", values: None, validate_config: false };
    let sum = |extra: &[&str]| -> String {
        let all = docs(&template("helm4", &case, extra, scratch.path()).expect("template"));
        find(&all, "Deployment", "gw-shardgate")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .expect("checksum")
            .to_owned()
    };
    let base = sum(&[]);
    assert_eq!(base.len(), 64, "sha256: {base}");
    assert_eq!(sum(&["--set", "replicaCount=1", "--set", "podAnnotations.a=b"]), base);
    assert_ne!(sum(&["--set", "drain.timeoutSeconds=61"]), base);
    assert_ne!(sum(&["--set", "config.log.level=debug"]), base);
}

/// NOTES (Helm 4 renders them without a cluster): the embedded store's
/// limits are said where they bite.
#[test]
fn the_notes_warn_about_several_replicas_or_an_emptydir_on_the_embedded_store() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let install = |extra: &[&str]| -> String {
        let chart = chart().display().to_string();
        let mut args = vec!["install", "gw", chart.as_str(), "--namespace", "games", "--dry-run=client"];
        args.extend_from_slice(extra);
        let o = helm("helm4", &args, scratch.path());
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out[out.find("NOTES:").expect("NOTES")..].to_owned()
    };
    let notes = install(&["--set", "replicaCount=2"]);
    assert!(notes.contains("WARNING: replicaCount is 2 without etcd.endpoints"), "{notes}");
    assert!(notes.contains("WARNING: the embedded store is on an emptyDir"), "{notes}");
    assert!(notes.contains("kubectl get secret -n games gw-shardgate-admin"), "{notes}");
    let notes = install(&["-f", &chart().join("values-seed.yaml").display().to_string()]);
    assert!(!notes.contains("WARNING"), "{notes}");
    assert!(notes.contains("NOTE: no dataEncryption.keyring"), "{notes}");
    assert!(notes.contains("terminationGracePeriodSeconds is 90"), "{notes}");
}

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

/// The Dockerfile's instructions (continuations joined, comments dropped).
struct Dockerfile {
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    fn read() -> Dockerfile {
        let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            current.push_str(trimmed.trim_end_matches('\\'));
            current.push(' ');
            if !trimmed.ends_with('\\') {
                let (word, rest) = current.trim().split_once(' ').unwrap_or((current.trim(), ""));
                instructions.push((word.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
        Dockerfile { instructions }
    }

    /// The runtime stage's instructions (after the last FROM).
    fn last_stage(&self) -> &[(String, String)] {
        let start = self.instructions.iter().rposition(|(i, _)| i == "FROM").expect("FROM");
        &self.instructions[start..]
    }

    fn one(&self, instruction: &str) -> &str {
        let all: Vec<&str> =
            self.last_stage().iter().filter(|(i, _)| i == instruction).map(|(_, a)| a.as_str()).collect();
        assert_eq!(all.len(), 1, "one {instruction} in the runtime stage: {all:?}");
        all[0]
    }

    /// An exec-form (JSON) argument list.
    fn exec_form(args: &str) -> Vec<String> {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("exec form expected: {args}: {e}"))
    }

    fn entrypoint(&self) -> String {
        let e = Self::exec_form(self.one("ENTRYPOINT"));
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }
}

#[test]
fn the_dockerfile_lints_clean_and_builds_for_both_architectures() {
    let o = run(Command::new(tool("venv/bin/hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(repo().join("Dockerfile")));
    assert!(o.status.success() && text(&o).trim().is_empty(), "hadolint: {}", text(&o));

    let d = Dockerfile::read();
    let froms: Vec<&str> = d.instructions.iter().filter(|(i, _)| i == "FROM").map(|(_, a)| a.as_str()).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(froms[0].starts_with("--platform=$BUILDPLATFORM rust:"), "the builder runs natively: {}", froms[0]);
    let suite =
        d.instructions.iter().find(|(i, a)| i == "ARG" && a.starts_with("DEBIAN_SUITE=")).expect("ARG DEBIAN_SUITE");
    assert_eq!(suite.1, "DEBIAN_SUITE=bookworm", "the builder's glibc is the runtime's (distroless cc-debian12)");
    assert!(froms[1].starts_with("gcr.io/distroless/cc-debian12"), "{}", froms[1]);
    let build = d
        .instructions
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, a)| a.as_str())
        .find(|a| a.contains("cargo build"))
        .expect("the cargo build");
    assert!(build.contains("cargo build --release --locked -p shardgate --target \"$rust_target\""), "{build}");
    // The commit build.rs reads (.git is not in the context): an ARG of the
    // builder stage, declared before the build, is in that RUN's environment.
    let position = |pred: &dyn Fn(&(String, String)) -> bool| d.instructions.iter().position(pred);
    let runtime_from = d.instructions.iter().rposition(|(i, _)| i == "FROM").expect("FROM");
    let build_at = position(&|(i, a)| i == "RUN" && a.contains("cargo build")).expect("build");
    let arg_at = position(&|(i, a)| i == "ARG" && a.split('=').next() == Some("SHARDGATE_BUILD_COMMIT"))
        .expect("ARG SHARDGATE_BUILD_COMMIT");
    let builder_from = position(&|(i, _)| i == "FROM").expect("FROM");
    assert!(
        builder_from < arg_at && arg_at < build_at && build_at < runtime_from,
        "ARG SHARDGATE_BUILD_COMMIT must be in the builder stage before the cargo build"
    );
    let build_rs = std::fs::read_to_string(repo().join("crates/shardgate/build.rs")).expect("build.rs");
    assert!(build_rs.contains("std::env::var(\"SHARDGATE_BUILD_COMMIT\")"), "build.rs reads the same name");
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    assert!(
        text.contains("--build-arg SHARDGATE_BUILD_COMMIT=$(git rev-parse --short=12 HEAD)"),
        "the header says how to pass it"
    );
    let setup = d
        .instructions
        .iter()
        .map(|(_, a)| a.as_str())
        .find(|a| a.contains("case \"$TARGETARCH\""))
        .expect("arch setup");
    for arch in ["amd64) rust_target=x86_64-unknown-linux-gnu", "arm64) rust_target=aarch64-unknown-linux-gnu"] {
        assert!(setup.contains(arch), "{arch}: {setup}");
    }
    assert!(setup.contains("protobuf-compiler libprotobuf-dev"), "protoc for the etcd client: {setup}");
}

/// The runtime stage agrees with the bootstrap file it ships: non-root
/// numeric user, the data directory is the volume and belongs to that user,
/// the listeners are exposed, the health check asks the metrics listener of
/// the file the gateway runs with, and `shardgate validate` accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_unprivileged_with_a_config_validate_accepts() {
    let d = Dockerfile::read();
    let user = d.one("USER");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let uid: u32 = uid.parse().unwrap_or_else(|_| panic!("USER must be numeric (runAsNonRoot checks it): {user}"));
    assert!(uid > 0 && gid.parse::<u32>().is_ok_and(|g| g > 0), "{user}");

    let cmd = Dockerfile::exec_form(d.one("CMD"));
    assert_eq!(cmd[..2], ["run", "--config"], "{cmd:?}");
    let config_in_image = cmd[2].clone();
    let health = d.one("HEALTHCHECK");
    let health_cmd = Dockerfile::exec_form(health.split_once("CMD ").expect("HEALTHCHECK CMD").1);
    assert_eq!(health_cmd, [d.entrypoint(), "healthcheck".into(), "--config".into(), config_in_image.clone()]);

    let copy = d
        .last_stage()
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, a)| a.as_str())
        .find(|a| a.ends_with(&config_in_image))
        .expect("the config is copied in");
    let source = copy.split_whitespace().next().expect("source");
    let shipped = repo().join(source);
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore keeps target/ out of the context");
    assert!(
        !ignore
            .lines()
            .any(|l| source.starts_with(l.trim().trim_end_matches('/')) && !l.trim().is_empty() && !l.starts_with('#')),
        "{source} is excluded by .dockerignore"
    );

    let o = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&shipped)
        .env("SHARDGATE_ADMIN_KEY", "an-admin-key-given-at-docker-run-time")
        .output()
        .expect("validate");
    assert!(o.status.success(), "{}", text(&o));
    let missing = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&shipped)
        .env_remove("SHARDGATE_ADMIN_KEY")
        .output()
        .expect("validate");
    assert!(!missing.status.success() && text(&missing).contains("no admin key"), "no default key: {}", text(&missing));

    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&shipped).expect("read")).expect("parse");
    let volume = Dockerfile::exec_form(d.one("VOLUME"));
    assert_eq!(volume, [config["store"]["data_dir"].as_str().expect("data_dir")], "the store is on the volume");
    let owned = d
        .last_stage()
        .iter()
        .any(|(i, a)| i == "COPY" && a.contains(&format!("--chown={user}")) && a.ends_with(&volume[0]));
    assert!(owned, "{} belongs to {user}", volume[0]);

    let exposed: BTreeSet<String> = d.one("EXPOSE").split_whitespace().map(str::to_owned).collect();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut listed = BTreeSet::new();
    for line in out.lines().skip_while(|l| !l.starts_with("listeners it would open")).skip(1) {
        let proto = if line.contains(" udp ") { "udp" } else { "tcp" };
        let addr = line.split_whitespace().find(|w| w.contains(':')).expect("address");
        listed.insert(format!("{}/{proto}", port_of(addr)));
    }
    assert_eq!(exposed, listed, "EXPOSE lists what the shipped file opens");

    // The health check against a gateway running the shipped file's
    // listeners (on free loopback ports here).
    let gw = gateway().tls_listeners(1).spawn().await;
    let health_args: Vec<String> =
        ["healthcheck".into(), "--config".into(), gw.config_path().display().to_string()].into();
    let args: Vec<&str> = health_args.iter().map(String::as_str).collect();
    let o = shardgate(&args).await;
    assert_eq!(code(&o), 0, "{}", text(&o));
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

fn unit() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/shardgate.service")).expect("unit")
}

fn directives(unit: &str, key: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
}

fn directive(unit: &str, key: &str) -> String {
    let all = directives(unit, key);
    assert_eq!(all.len(), 1, "one {key}: {all:?}");
    all[0].clone()
}

/// `systemd-analyze verify` (no diagnostic at all: an unknown or misspelt
/// directive is only a warning to systemd) and `security` (exposure at most
/// 2.0 of 10), on the unit with its binary pointed at the one built here.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("shardgate.service");
    let unit = unit()
        .replace("/usr/local/bin/shardgate", BIN)
        .replace("EnvironmentFile=/etc/shardgate/shardgate.env", "EnvironmentFile=-/etc/shardgate/shardgate.env");
    std::fs::write(&path, &unit).expect("write unit");
    let o = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(o.status.success() && text(&o).trim().is_empty(), "systemd-analyze verify: {}", text(&o));
    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path));
    assert!(o.status.success(), "systemd-analyze security (exposure above 2.0): {}", text(&o));

    let unit = self::unit();
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(directive(&unit, key), value, "{key}");
    }
    assert!(directives(&unit, "SystemCallFilter").contains(&"@system-service".to_owned()));
    assert!(
        directive(&unit, "RestrictAddressFamilies")
            .split_whitespace()
            .all(|f| ["AF_INET", "AF_INET6", "AF_UNIX"].contains(&f))
    );
    assert!(directive(&unit, "LimitNOFILE").parse::<u64>().is_ok_and(|n| n >= 65536));
}

/// The unit and its example file agree: reload and validate read the file
/// the gateway runs with, the store is the unit's StateDirectory, systemd
/// waits longer than the drain, and the file is one `validate` accepts.
#[test]
fn the_systemd_unit_agrees_with_its_bootstrap_file() {
    let unit = unit();
    let start = directive(&unit, "ExecStart");
    let config = start.strip_prefix("/usr/local/bin/shardgate run --config ").expect("run --config FILE");
    assert_eq!(directive(&unit, "ExecReload"), format!("/usr/local/bin/shardgate reload --config {config}"));
    assert_eq!(directive(&unit, "ExecStartPre"), format!("/usr/local/bin/shardgate validate --config {config}"));
    assert_eq!(config, "/etc/shardgate/shardgate.yaml");

    let example = repo().join("deploy/systemd/shardgate.yaml");
    let file: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&example).expect("read")).expect("parse");
    assert_eq!(
        file["store"]["data_dir"].as_str().expect("data_dir"),
        format!("/var/lib/{}", directive(&unit, "StateDirectory")),
        "the only writable place"
    );
    let stop = directive(&unit, "TimeoutStopSec").parse::<u64>().expect("seconds");
    let drain = secs(&file["drain"]["delay"]) + secs(&file["drain"]["timeout"]) + 5;
    assert!(stop > drain, "TimeoutStopSec {stop} s must exceed the drain's {drain} s");

    let o = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&example)
        .env("SHARDGATE_ADMIN_KEY", "an-admin-key-from-the-environment-file")
        .output()
        .expect("validate");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("warning"), "loopback admin, no warning: {}", text(&o));
}
