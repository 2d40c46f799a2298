//! Wiring and lifecycle of `shardgate run`.
//!
//! ```text
//! SIGHUP, SIGTERM and SIGINT handled (before the file is read: a SIGHUP
//! never kills, and a stop signal is never lost, not even by PID 1)
//!   -> config -> logging (and the span layer, when tracing.otlp is set)
//!   -> admin key check -> pid file -> store (embedded,
//!   or etcd: a member must answer) -> keyring -> reconciler.load (first
//!   snapshot) -> bind every listener (fail fast, naming the address) -> ready
//!      (SIGTERM/SIGINT before ready: nothing is served, so nothing to
//!      drain: logged, pid file removed, exit 0)
//!   -> serve; each SIGHUP reloads the bootstrap file (see `reload`), a
//!      SIGHUP received while starting is applied once started
//!   -> SIGTERM/SIGINT: /readyz unready; listeners keep accepting for
//!      drain.delay (another SIGTERM meanwhile changes nothing, SIGINT ends
//!      the delay) -> drain: listeners stop accepting, connections run until
//!      they end or the drain deadline -> admin/metrics stop -> queued trace
//!      spans sent (bounded) -> pid file removed -> exit 0
//! ```
//!
//! In a container the gateway is PID 1, and the kernel delivers no signal
//! to a PID 1 that has no handler for it (signal(7), pid_namespaces(7)):
//! the stop signals are handled from the first line for that reason, or a
//! pod stuck starting (etcd unreachable) would ignore its preStop hook and
//! the kubelet's SIGTERM until SIGKILL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shardgate_admin::{AdminState, HealthcheckStatus, ServeSettings, health_router, healthcheck_router, router};
use shardgate_control::{ControlMetrics, Reconciler, ReconcilerSettings};
use shardgate_core::{Drain, Health, Metrics};
use shardgate_snapshot::{CompileDefaults, Snapshot, SnapshotHandle, TlsShared};
use shardgate_store::Store;
use shardgate_stream::{StreamMetrics, UdpMetrics};
use shardgate_upstream::{ConnectDefaults, Registry, Resolver, UpstreamMetrics};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Semaphore;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::listeners::{Listeners, Shared};
use crate::reload::{LogControl, Reloader};

/// Extra time after the drain deadline for cut connections to unwind.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What `shardgate_build_info` reports (values from `build.rs`).
const BUILD_INFO: shardgate_core::process::BuildInfo = shardgate_core::process::BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("SHARDGATE_BUILD_COMMIT"),
    rustc: env!("SHARDGATE_BUILD_RUSTC"),
    target: env!("SHARDGATE_BUILD_TARGET"),
};

/// Starts logging with a filter that a reload can replace (`log.level`;
/// `RUST_LOG` wins over it), and, when `tracing.otlp` is set, the layer
/// that records spans for export (its own filter: the log filter never
/// enables or shows spans, and a reload of it leaves tracing alone). The
/// export task it returns is started once the runtime's metrics exist.
fn init_logging(config: &Config) -> anyhow::Result<(LogControl, Option<crate::trace_export::ExportTask>)> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => (EnvFilter::try_new(v).context("RUST_LOG")?, true),
        _ => (EnvFilter::try_new(crate::config::normalized_log_filter(&config.log.level)).context("log.level")?, false),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match config.log.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let export = match &config.tracing.otlp {
        None => None,
        Some(otlp) => Some(crate::trace_export::TraceExport::new(&config.tracing, otlp)?),
    };
    let (spans, task) = match export {
        None => (None, None),
        Some(e) => (Some(e.layer.with_filter(shardgate_core::trace::span_filter())), Some(e.task)),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter.and(shardgate_core::trace::log_filter())))
        .with(spans)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok((LogControl::new(handle, from_env), task))
}

/// The signals `run` answers, handled for the rest of the process's life.
pub struct Signals {
    /// SIGHUP: reload the bootstrap file.
    hup: Signal,
    /// SIGTERM: stop (drain); during `drain.delay`, nothing more.
    term: Signal,
    /// SIGINT: stop (drain); during `drain.delay`, drain now.
    int: Signal,
}

impl Signals {
    /// Installs the handlers. Call it first thing: from then on a SIGHUP is
    /// recorded for the reload loop instead of ending the process (its
    /// default action), and a SIGTERM or SIGINT for the stop, also while
    /// starting and also as PID 1 (which the kernel would otherwise spare
    /// from them).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// What is running once the gateway is ready.
struct Serving {
    listeners: Listeners,
    reloader: Reloader,
    stop_tx: tokio::sync::watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics_task: tokio::task::JoinHandle<std::io::Result<()>>,
    reconciler_task: tokio::task::JoinHandle<()>,
}

/// Where the bootstrap file came from and where the pid file goes.
#[derive(Debug, Default)]
pub struct RunArgs {
    /// `--config`: the file a SIGHUP reads again.
    pub config_path: Option<PathBuf>,
    /// `--pid-file`; default `<store.data_dir>/shardgate.pid`.
    pub pid_file: Option<PathBuf>,
}

/// Runs the gateway until a signal and the drain that follows. `signals`
/// were installed before the file was read.
pub async fn run(config: Config, args: RunArgs, mut signals: Signals) -> anyhow::Result<()> {
    let (log, trace_export) = init_logging(&config)?;
    let key = config.admin_key()?.to_owned();
    let _pid_file = match &args.pid_file {
        // Asked for by name: not writing it is an error.
        Some(path) => crate::pidfile::PidFile::create(path).map_err(|e| anyhow::anyhow!("--pid-file {e}"))?,
        None => crate::pidfile::PidFile::create(&crate::pidfile::default_path(&config)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot write the pid file; `shardgate reload` will not find this gateway (kill -HUP still reloads)");
            None
        }),
    };
    for warning in config.warnings() {
        tracing::warn!(warning = %warning, "configuration warning");
    }
    // The Admin API and metrics listeners may each hold their own connection
    // cap on top of the reserve.
    let reserve = config.limits.fd_reserve.saturating_add(config.limits.admin_max_connections.saturating_mul(2));
    let fds = crate::fds::plan(config.limits.max_connections, reserve);
    if fds.lowered(config.limits.max_connections) {
        tracing::warn!(
            configured = config.limits.max_connections,
            allowed = fds.max_connections,
            open_file_limit = fds.nofile,
            reserved = reserve,
            "limits.max_connections cannot be met with this open-file limit (two descriptors per connection, plus the reserve); serving fewer connections at once: raise `ulimit -n` or systemd's LimitNOFILE"
        );
    } else {
        tracing::info!(max_connections = fds.max_connections, open_file_limit = fds.nofile, "connection budget");
    }

    let metrics = Metrics::new();
    shardgate_core::process::register(&metrics, &BUILD_INFO);
    let trace_export = trace_export.map(|task| {
        task.register(&metrics);
        task.spawn()
    });
    let health = Arc::new(Health::default());
    let drain = Drain::new();
    // `/status/drain`: what `shardgate drain --wait` follows.
    let drain_status = crate::drain_cli::StatusCell::default();

    // Everything up to ready, given up as soon as a stop signal arrives:
    // nothing is served yet, so there is nothing to drain (and a gateway
    // waiting for etcd must not outlive its pod's grace period).
    let starting = async {
        let store: Arc<dyn Store> = crate::open::open_store(&config).await?;
        let keyring = crate::secrets::keyring(&config)?;

        let registry = Arc::new(Registry::new(
            Arc::new(
                Resolver::new(config.stream.dns_ttl.get(), Duration::from_secs(5))
                    .with_nameservers(&config.stream.dns.addrs()?),
            ),
            UpstreamMetrics::register(&metrics),
            ConnectDefaults {
                connect_timeout: config.stream.connect_timeout.get(),
                fail_timeout: config.stream.fail_timeout.get(),
                keepalive: config.stream.keepalive.get(),
            },
        ));
        let geo = match &config.waf.geoip_database {
            None => None,
            Some(path) => {
                let db = shardgate_waf::GeoDb::open(path).map_err(|e| anyhow::anyhow!("waf.geoip_database: {e}"))?;
                tracing::info!(file = %path.display(), "country database loaded");
                Some(Arc::new(db))
            }
        };
        let handle = Arc::new(SnapshotHandle::new(Snapshot::default()));
        let tls = TlsShared::new(config.tls.session_cache).context("setting up TLS session resumption")?;
        let mut reconciler = Reconciler::new(
            Arc::clone(&store),
            Arc::clone(&handle),
            Arc::clone(&registry),
            tls,
            ReconcilerSettings {
                prefix: config.store.prefix.clone(),
                debounce: Duration::from_millis(5),
                defaults: CompileDefaults { idle_timeout: config.stream.idle_timeout.get(), geo: geo.clone() },
            },
            ControlMetrics::register(&metrics),
            Arc::clone(&health),
        )
        .with_keyring(keyring.clone());
        reconciler.load().await.context("loading the configuration from the store")?;

        let samples = Arc::new(shardgate_waf::Samples::default());
        // Bind everything before serving anything: a taken port fails the start.
        let stream_metrics = StreamMetrics::register(&metrics);
        // A UDP session holds a connection slot (its socket's descriptor) for as
        // long as it idles: at most half of them, so datagrams from spoofed
        // addresses cannot take every slot from TCP players.
        let udp_sessions = config.limits.udp_max_sessions.min(fds.max_connections / 2).max(1);
        if !config.stream.udp.is_empty() && udp_sessions < config.limits.udp_max_sessions {
            tracing::warn!(
                configured = config.limits.udp_max_sessions,
                allowed = udp_sessions,
                max_connections = fds.max_connections,
                "limits.udp_max_sessions is above half of the connection budget; UDP sessions are capped there so TCP players keep the other half"
            );
        }
        let mut listeners = Listeners::new(
            Shared {
                handle: Arc::clone(&handle),
                metrics: metrics.clone(),
                stream_metrics: stream_metrics.clone(),
                max_connections: Arc::new(Semaphore::new(fds.max_connections)),
                samples: Arc::clone(&samples),
                geo: geo.clone(),
                limit_conn: Arc::default(),
                udp_max_sessions: Arc::new(Semaphore::new(udp_sessions)),
                udp_metrics: UdpMetrics::register(&metrics, stream_metrics),
            },
            &config,
        );
        let plan = listeners.prepare(&config)?;
        let reloader = Reloader::new(args.config_path, &config, log, &metrics);
        let admin_socket = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("binding the Admin API on {}", config.admin.listen))?;
        let metrics_socket = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .with_context(|| format!("binding the metrics listener on {}", config.metrics.listen))?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop too.
            if rx.wait_for(|stop| *stop).await.is_err() {
                tracing::debug!("stop signal sender dropped");
            }
        };

        let checkers = (Arc::clone(&registry), config.store.prefix.clone());
        let healthchecks: HealthcheckStatus =
            Arc::new(move |target| checkers.0.healthcheck_status(&checkers.1, target));
        let dashboard = config.dashboard_settings()?.map(|settings| {
            shardgate_admin::dashboard::Dashboard::new(settings, &key, config.admin.viewer_key.as_deref())
                .with_metrics(metrics.clone())
                .with_health(Arc::clone(&healthchecks))
        });
        let admin = AdminState::new(Arc::clone(&store), config.store.prefix.clone(), key, config.limits.clone())
            .with_dashboard(dashboard)
            .with_viewer_key(config.admin.viewer_key.clone())
            .with_keyring(keyring)
            .with_applied_generation(handle.subscribe())
            .with_samples(Arc::clone(&samples))
            .with_cors(config.admin.cors)
            .with_refuse_expired_certificates(config.admin.refuse_expired_certificates)
            .with_warmer(Arc::new(EdgeWarm(shardgate_http::warm::EdgeWarmer::new(listeners.edge()))));
        let admin_addr = admin_socket.local_addr().context("admin address")?;
        let serve_settings = ServeSettings::from_limits(&config.limits);
        let admin_task = tokio::spawn(shardgate_admin::serve(
            admin_socket,
            router(admin.clone()).merge(shardgate_admin::dashboard::router(admin)),
            serve_settings.clone(),
            stopped(stop_rx.clone()),
        ));
        let metrics_addr = metrics_socket.local_addr().context("metrics address")?;
        let metrics_task = tokio::spawn(shardgate_admin::serve(
            metrics_socket,
            health_router(Arc::clone(&health), metrics.clone())
                .merge(reloader.status().router())
                .merge(drain_status.router())
                .merge(healthcheck_router(healthchecks)),
            serve_settings,
            stopped(stop_rx.clone()),
        ));
        let reconciler_task = tokio::spawn(reconciler.run(stopped(stop_rx.clone())));

        listeners.commit(plan, &drain).await;
        health.set_listeners_bound();
        tracing::info!(admin = %admin_addr, metrics = %metrics_addr, generation = handle.load().generation, "shardgate ready");
        Ok::<_, anyhow::Error>(Serving { listeners, reloader, stop_tx, admin_task, metrics_task, reconciler_task })
    };
    let Serving { mut listeners, mut reloader, stop_tx, admin_task, metrics_task, reconciler_task } = tokio::select! {
        serving = starting => serving?,
        Some(()) = signals.term.recv() => return stopped_while_starting("SIGTERM", trace_export).await,
        Some(()) = signals.int.recv() => return stopped_while_starting("SIGINT", trace_export).await,
    };

    // One reload at a time: SIGHUPs that arrive meanwhile are coalesced by
    // the handler into one more turn of this loop. The handlers stay
    // installed until the process exits, so a SIGHUP during the drain is
    // ignored rather than fatal, and so is a SIGTERM once draining.
    let which = loop {
        tokio::select! {
            _ = signals.term.recv() => break "SIGTERM",
            _ = signals.int.recv() => break "SIGINT",
            _ = signals.hup.recv() => reloader.reload(&mut listeners, &drain).await,
        }
    };

    let timeout = reloader.drain_config().timeout.get();
    let delay = reloader.drain_config().delay.get();
    health.set_draining();
    drain_status.delaying(which, delay);
    if !delay.is_zero() {
        // Not ready, still accepting: a load balancer that polls /readyz
        // stops sending players before any of them is refused.
        tracing::info!(
            signal = which,
            delay_ms = delay.as_millis() as u64,
            "not ready; listeners keep accepting until the drain delay ends"
        );
        // Another SIGTERM changes nothing: a preStop hook delivered twice,
        // or the kubelet's own SIGTERM after a hook that gave up early, must
        // not refuse players the load balancer still sends. SIGINT (Ctrl-C
        // again) is the way to stop waiting.
        let accepting_until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(accepting_until) => break,
                Some(()) = signals.term.recv() => tracing::info!(
                    remaining_ms = accepting_until.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
                    "SIGTERM while already draining: the listeners keep accepting until the drain delay ends (SIGINT drains now)"
                ),
                Some(()) = signals.int.recv() => {
                    tracing::info!("SIGINT: draining now");
                    break;
                }
            }
        }
    }
    tracing::info!(signal = which, drain_timeout_ms = timeout.as_millis() as u64, open = drain.holders(), "draining");
    drain.start(tokio::time::Instant::now() + timeout);
    let deadline = std::time::SystemTime::now() + timeout;
    listeners.drained().await;
    drain_status.draining(deadline);
    tokio::select! {
        () = drain.released() => tracing::info!("every connection has finished"),
        () = tokio::time::sleep(timeout + DRAIN_GRACE) => tracing::warn!(open = drain.holders(), "connections still open after the drain deadline; exiting anyway"),
    }

    if stop_tx.send(true).is_err() {
        tracing::debug!("nothing was waiting for the stop signal");
    }
    for (name, task) in [("admin", admin_task), ("metrics", metrics_task)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(server = name, error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(server = name, error = %e, "server task failed"),
        }
    }
    if let Err(e) = reconciler_task.await {
        tracing::warn!(error = %e, "reconciler task failed");
    }
    if let Some(export) = trace_export {
        // The drained connections' spans are in the queue: send them.
        export.shutdown().await;
    }
    tracing::info!("shardgate stopped");
    Ok(())
}

/// The Admin API's cache warm jobs (`shardgate cache warm`), fetched by the edge.
struct EdgeWarm(shardgate_http::warm::EdgeWarmer);

fn edge_variant(v: shardgate_admin::WarmVariant) -> shardgate_http::canary::Variant {
    match v {
        shardgate_admin::WarmVariant::Primary => shardgate_http::canary::Variant::Primary,
        shardgate_admin::WarmVariant::Staging => shardgate_http::canary::Variant::Staging,
    }
}

impl shardgate_admin::Warmer for EdgeWarm {
    fn check(&self, distribution: &str, variant: shardgate_admin::WarmVariant) -> Result<(), String> {
        self.0.plan(distribution, edge_variant(variant)).map(drop)
    }

    fn warm<'a>(
        &'a self,
        distribution: &'a str,
        path: &'a str,
        variant: shardgate_admin::WarmVariant,
    ) -> shardgate_admin::WarmFuture<'a> {
        use shardgate_admin::WarmOutcome;
        use shardgate_http::warm::Warmed;
        Box::pin(async move {
            match self.0.warm(distribution, path, edge_variant(variant)).await {
                Warmed::Fetched => WarmOutcome::Fetched,
                Warmed::Fresh => WarmOutcome::Fresh,
                Warmed::Failed(why) => WarmOutcome::Failed(why),
            }
        })
    }
}

/// A stop signal before ready: nothing was served, so nothing drains. The
/// exit is 0, as after a drain: the stop was asked for and nothing was lost
/// (a failure status would mark a `systemctl stop` or a scale-down as a
/// failed unit or pod).
async fn stopped_while_starting(
    which: &'static str,
    trace_export: Option<crate::trace_export::ExportHandle>,
) -> anyhow::Result<()> {
    tracing::info!(
        signal = which,
        "stop signal while starting: nothing is served yet, so there is nothing to drain; exiting"
    );
    if let Some(export) = trace_export {
        export.shutdown().await;
    }
    tracing::info!("shardgate stopped");
    Ok(())
}
