//! Wiring and lifecycle of `shardgate run`.
//!
//! ```text
//! config -> logging -> admin key check -> store (embedded, or etcd: a
//!   member must answer) -> keyring -> reconciler.load (first snapshot)
//!   -> bind every listener (fail fast, naming the address) -> ready
//!   -> serve until SIGTERM/SIGINT
//!   -> drain: /readyz unready, listeners stop accepting, connections run until
//!      they end or the drain deadline -> admin/metrics stop -> exit 0
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shardgate_admin::{AdminState, ServeSettings, health_router, router};
use shardgate_cache::{Cache, CacheSettings, DiskSettings};
use shardgate_control::{ControlMetrics, Reconciler, ReconcilerSettings};
use shardgate_core::{Drain, Health, Metrics};
use shardgate_http::{EdgeMetrics, EdgeService, HttpListenerSpec, HttpSettings};
use shardgate_snapshot::{CompileDefaults, Snapshot, SnapshotHandle, TlsShared};
use shardgate_store::Store;
use shardgate_stream::{ListenerSpec, StreamMetrics, StreamSettings, UdpListenerSpec, UdpMetrics, UdpSettings};
use shardgate_upstream::{ConnectDefaults, Registry, Resolver, UpstreamMetrics};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Extra time after the drain deadline for cut connections to unwind.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).context("RUST_LOG")?,
        _ => EnvFilter::try_new(crate::config::normalized_log_filter(&config.log.level)).context("log.level")?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// Runs the gateway until a signal and the drain that follows.
pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config)?;
    let key = config.admin_key()?.to_owned();
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
        Arc::new(Resolver::new(config.stream.dns_ttl.get(), Duration::from_secs(5))),
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

    // Bind everything before serving anything: a taken port fails the start.
    let stream_metrics = StreamMetrics::register(&metrics);
    let mut stream_listeners = Vec::new();
    for l in &config.stream.tcp {
        let socket = shardgate_stream::bind(l.addr.0, config.stream.keepalive.get())
            .with_context(|| format!("binding stream listener {} (tls: {})", l.addr.0, l.tls))?;
        let local = socket.local_addr().context("stream listener address")?;
        stream_listeners.push((
            socket,
            ListenerSpec { addr: local, tls: l.tls, fallback_sni: l.fallback_sni.clone(), web_acl: l.web_acl.clone() },
        ));
    }
    let mut udp_listeners = Vec::new();
    for l in &config.stream.udp {
        let socket = shardgate_stream::bind_udp(l.addr.0)
            .with_context(|| format!("binding UDP stream listener {}", l.addr.0))?;
        let addr = socket.local_addr().context("UDP stream listener address")?;
        udp_listeners.push((socket, UdpListenerSpec { addr, web_acl: l.web_acl.clone() }));
    }
    let mut edge_listeners = Vec::new();
    for l in &config.edge.http {
        let socket = shardgate_stream::bind(l.addr.0, config.stream.keepalive.get())
            .with_context(|| format!("binding edge listener {} (tls: {})", l.addr.0, l.tls))?;
        let local = socket.local_addr().context("edge listener address")?;
        edge_listeners.push((socket, HttpListenerSpec { addr: local, tls: l.tls }));
    }
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

    let samples = Arc::new(shardgate_waf::Samples::default());
    let admin = AdminState::new(Arc::clone(&store), config.store.prefix.clone(), key, config.limits.clone())
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
        router(admin),
        serve_settings.clone(),
        stopped(stop_rx.clone()),
    ));
    let metrics_addr = metrics_socket.local_addr().context("metrics address")?;
    let metrics_task = tokio::spawn(shardgate_admin::serve(
        metrics_socket,
        health_router(Arc::clone(&health), metrics.clone()),
        serve_settings,
        stopped(stop_rx.clone()),
    ));
    let reconciler_task = tokio::spawn(reconciler.run(stopped(stop_rx.clone())));

    let settings = StreamSettings {
        max_connections: Arc::new(Semaphore::new(fds.max_connections)),
        handshake_timeout: config.limits.handshake_timeout.get(),
        client_hello_max_bytes: config.limits.client_hello_max_bytes,
    };
    let mut listener_tasks = Vec::new();
    for (socket, spec) in stream_listeners {
        tracing::info!(listener = %spec.label(), "stream listener bound");
        listener_tasks.push(tokio::spawn(shardgate_stream::serve(
            socket,
            spec,
            Arc::clone(&handle),
            settings.clone(),
            stream_metrics.clone(),
            drain.watch(),
        )));
    }
    if !udp_listeners.is_empty() {
        let udp_settings = UdpSettings {
            idle_timeout: config.stream.udp_idle_timeout.get(),
            max_sessions: Arc::new(Semaphore::new(config.limits.udp_max_sessions)),
            max_connections: Arc::clone(&settings.max_connections),
        };
        let udp_metrics = UdpMetrics::register(&metrics, stream_metrics.clone());
        for (socket, spec) in udp_listeners {
            tracing::info!(listener = %spec.label(), "UDP stream listener bound");
            listener_tasks.push(tokio::spawn(shardgate_stream::serve_udp(
                socket,
                spec,
                Arc::clone(&handle),
                udp_settings.clone(),
                udp_metrics.clone(),
                drain.watch(),
                std::future::pending(),
            )));
        }
    }
    if !edge_listeners.is_empty() {
        let c = &config.edge.cache;
        let cache_settings = CacheSettings { memory_bytes: c.memory_bytes, max_object_bytes: c.max_object_bytes };
        let cache = if c.disk_bytes == 0 {
            Cache::new(cache_settings)
        } else {
            let dir = config.cache_dir();
            let disk =
                DiskSettings { dir: dir.clone(), max_bytes: c.disk_bytes, max_object_bytes: c.disk_max_object() };
            let (cache, found) = Cache::with_disk(cache_settings, disk)
                .with_context(|| format!("opening the disk cache in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), objects = found, bytes = cache.disk_usage(), "disk cache tier opened");
            cache
        };
        let edge = Arc::new(EdgeService {
            snapshots: Arc::clone(&handle),
            cache,
            metrics: EdgeMetrics::register(&metrics),
            samples: Arc::clone(&samples),
            geo: geo.clone(),
            targeted_cache_control: config.edge.cache.targeted_fields()?,
        });
        tokio::spawn(shardgate_http::purge_invalidated(
            Arc::clone(&handle),
            Arc::clone(&edge.cache),
            edge.metrics.clone(),
        ));
        let http_settings = HttpSettings {
            max_connections: Arc::clone(&settings.max_connections),
            handshake_timeout: config.limits.handshake_timeout.get(),
            header_read_timeout: config.edge.header_read_timeout.get(),
            client_hello_max_bytes: config.limits.client_hello_max_bytes,
            idle_timeout: config.edge.idle_timeout.get(),
            h2_keepalive_interval: config.edge.h2_keepalive_interval.get(),
            h2_keepalive_timeout: config.edge.h2_keepalive_timeout.get(),
        };
        for (socket, spec) in edge_listeners {
            tracing::info!(listener = %spec.label(), "edge listener bound");
            listener_tasks.push(tokio::spawn(shardgate_http::serve(
                socket,
                spec,
                Arc::clone(&edge),
                http_settings.clone(),
                drain.watch(),
            )));
        }
    }
    health.set_listeners_bound();
    tracing::info!(admin = %admin_addr, metrics = %metrics_addr, generation = handle.load().generation, "shardgate ready");

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };

    let timeout = config.drain.timeout.get();
    let delay = config.drain.delay.get();
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
    for t in listener_tasks {
        if let Err(e) = t.await {
            tracing::warn!(error = %e, "a stream listener task failed");
        }
    }
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
