//! Wiring and lifecycle of `shardgate run`.
//!
//! ```text
//! SIGHUP handled (before the file is read: a SIGHUP never kills)
//!   -> config -> logging -> admin key check -> pid file -> store (embedded,
//!   or etcd: a member must answer) -> keyring -> reconciler.load (first
//!   snapshot) -> bind every listener (fail fast, naming the address) -> ready
//!   -> serve; each SIGHUP reloads the bootstrap file (see `reload`), a
//!      SIGHUP received while starting is applied once started
//!   -> SIGTERM/SIGINT: drain: /readyz unready, listeners stop accepting,
//!      connections run until they end or the drain deadline -> admin/metrics
//!      stop -> pid file removed -> exit 0
//! ```

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
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::listeners::{Listeners, Shared};
use crate::reload::{LogControl, Reloader};

/// Extra time after the drain deadline for cut connections to unwind.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Starts logging with a filter that a reload can replace (`log.level`;
/// `RUST_LOG` wins over it).
fn init_logging(config: &Config) -> anyhow::Result<LogControl> {
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
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok(LogControl::new(handle, from_env))
}

/// Installs the SIGHUP handler. Call it first thing: from then on a SIGHUP
/// is recorded for the reload loop instead of ending the process (its
/// default action), for the rest of the process's life.
pub fn handle_sighup() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Where the bootstrap file came from and where the pid file goes.
#[derive(Debug, Default)]
pub struct RunArgs {
    /// `--config`: the file a SIGHUP reads again.
    pub config_path: Option<PathBuf>,
    /// `--pid-file`; default `<store.data_dir>/shardgate.pid`.
    pub pid_file: Option<PathBuf>,
}

/// Runs the gateway until a signal and the drain that follows. `hup` is
/// the SIGHUP handler, installed before the file was read.
pub async fn run(config: Config, args: RunArgs, mut hup: Signal) -> anyhow::Result<()> {
    let log = init_logging(&config)?;
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
    let health = Arc::new(Health::default());
    let drain = Drain::new();

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
    let mut reloader = Reloader::new(args.config_path, &config, log, &metrics);
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
    let healthchecks: HealthcheckStatus = Arc::new(move |target| checkers.0.healthcheck_status(&checkers.1, target));
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
        .with_refuse_expired_certificates(config.admin.refuse_expired_certificates);
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
            .merge(healthcheck_router(healthchecks)),
        serve_settings,
        stopped(stop_rx.clone()),
    ));
    let reconciler_task = tokio::spawn(reconciler.run(stopped(stop_rx.clone())));

    listeners.commit(plan, &drain).await;
    health.set_listeners_bound();
    tracing::info!(admin = %admin_addr, metrics = %metrics_addr, generation = handle.load().generation, "shardgate ready");

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // One reload at a time: SIGHUPs that arrive meanwhile are coalesced by
    // the handler into one more turn of this loop. The handler stays
    // installed until the process exits, so a SIGHUP during the drain is
    // ignored rather than fatal.
    let which = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => reloader.reload(&mut listeners, &drain).await,
        }
    };

    let timeout = reloader.drain_config().timeout.get();
    let delay = reloader.drain_config().delay.get();
    health.set_draining();
    if !delay.is_zero() {
        // Not ready, still accepting: a load balancer that polls /readyz
        // stops sending players before any of them is refused.
        tracing::info!(
            signal = which,
            delay_ms = delay.as_millis() as u64,
            "not ready; listeners keep accepting until the drain delay ends"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = term.recv() => tracing::info!("second SIGTERM: draining now"),
            _ = int.recv() => tracing::info!("SIGINT: draining now"),
        }
    }
    tracing::info!(signal = which, drain_timeout_ms = timeout.as_millis() as u64, open = drain.holders(), "draining");
    drain.start(tokio::time::Instant::now() + timeout);
    listeners.drained().await;
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
    tracing::info!("shardgate stopped");
    Ok(())
}
