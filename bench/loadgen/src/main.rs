//! shardgate-loadgen: the load side of `bench/run.sh`, and the reference
//! servers it needs. Every load loop is bounded in count and time and stops
//! by itself; it only talks to addresses given on the command line (the
//! script uses 127.0.0.1).
//!
//! - `echo`: a plain TCP echo server (the game servers behind the proxy).
//! - `tls-echo`: a bare rustls echo server, the lower bound for a proxy that
//!   terminates TLS.
//! - `tls-proxy`: the floor for a TLS-terminating proxy: rustls, one
//!   upstream, a plain bidirectional copy (see [`floor`]).
//! - `handshakes`: full TLS handshakes (resumption off), each followed by one
//!   64-byte echo and a close; prints the count. With `--proxy-v2`, each
//!   connection starts with a PROXY protocol v2 header (see [`proxy_v2`]).
//! - `rtt`: N long-lived TLS connections sending S-byte messages at R per
//!   second each; prints round-trip latency percentiles.
//! - `bulk`: N TLS connections each writing continuously and reading the
//!   echo back; prints the bytes echoed (see [`bulk`]).
//! - `speed`: a fixed CPU workload, the machine-speed probe the scripts run
//!   each round (see [`speed`]).
//! - `idle`: opens N TLS connections, does one round trip on each, prints
//!   `ready`, holds them for a while.
//! - `http`: N keep-alive HTTP/1.1 connections sending GETs back to back
//!   (the edge's cache-hit benchmark); prints the count and bytes.
//! - `propagate`: configuration changes through several instances' Admin
//!   APIs at a fixed rate, and how long until every instance serves each
//!   (`bench/cluster.sh`; see [`cluster`]).
//! - `seed-etcd`: N stream routes and N SSL objects written straight into
//!   etcd in the Admin API's stored form; `cold-start`: a new instance's
//!   time from process start to ready on them (see [`seed`]).
//! - `nodes`: many upstream nodes, for health probes; `probe-floor`: bare
//!   TCP connects to them at the probes' rate, the floor to compare the
//!   gateway's checker with (`bench/health.sh`; see [`nodes`]).
//! - `udp-echo`: a UDP echo server; `udp`: N client sockets (one session
//!   each) sending datagrams at a fixed rate, with round-trip percentiles
//!   (`bench/udp.sh`; see [`udp`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shardgate_e2e::TlsClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod bulk;
mod cluster;
mod floor;
mod http1;
mod nodes;
mod proxy_v2;
mod seed;
mod speed;
mod udp;

#[derive(Debug, Parser)]
#[command(name = "shardgate-loadgen")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Plain TCP echo server.
    Echo {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Bare rustls echo server (one certificate).
    TlsEcho {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Minimal TLS-terminating proxy (one certificate, one upstream): the floor.
    TlsProxy {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// The one upstream every connection goes to.
        #[arg(long)]
        upstream: SocketAddr,
        /// Copy buffer per direction, bytes (tokio's copy_bidirectional default).
        #[arg(long, default_value_t = floor::DEFAULT_COPY_BUFFER)]
        copy_buffer: usize,
    },
    /// Bulk transfer: each connection writes continuously and reads the echo back.
    Bulk {
        #[arg(long)]
        target: SocketAddr,
        /// Comma-separated SNIs, used in turn.
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Bytes per write.
        #[arg(long, default_value_t = 16 * 1024)]
        chunk: usize,
    },
    /// Machine-speed probe: a fixed CPU workload, timed.
    Speed,
    /// Full handshakes, each with one echo.
    Handshakes {
        #[arg(long)]
        target: SocketAddr,
        /// Comma-separated SNIs, used in turn.
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Send a PROXY protocol v2 header before each ClientHello, in
        /// the same segment (a listener with `proxy_protocol: true`).
        #[arg(long)]
        proxy_v2: bool,
    },
    /// Round trips on long-lived connections.
    Rtt {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Messages per second per connection.
        #[arg(long, default_value_t = 20)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Keep-alive GETs, back to back on each connection.
    Http {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        host: String,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Requests per second over all connections; 0: as fast as answered.
        /// A fixed rate compares proxies at the same load, where their
        /// wake-ups per request are alike.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Configuration changes through the Admin APIs, and their propagation.
    Propagate {
        /// Admin API of every instance (comma-separated); writes go to each in turn.
        #[arg(long, value_delimiter = ',', required = true)]
        admin: Vec<SocketAddr>,
        /// The admin key.
        #[arg(long, env = "SHARDGATE_ADMIN_KEY")]
        key: String,
        /// Changes per second over all instances.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// etcd endpoint, to read each write's revision (without it: writes only).
        #[arg(long)]
        etcd: Option<String>,
        /// The instances' store prefix.
        #[arg(long, default_value = "/apisix")]
        prefix: String,
        /// Metrics listener of every instance, in the order of --admin.
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<SocketAddr>,
        /// JSON log file of every instance, in the order of --admin.
        #[arg(long, value_delimiter = ',')]
        log: Vec<PathBuf>,
        /// TLS stream listener of every instance, in the order of --admin.
        #[arg(long, value_delimiter = ',')]
        stream: Vec<SocketAddr>,
        /// /metrics polling interval in µs (0: no polling).
        #[arg(long, default_value_t = 1000)]
        poll_us: u64,
        /// New routes checked through every instance at the end.
        #[arg(long, default_value_t = 20)]
        verify: usize,
        /// Unique to this run: SNIs (and ids, without --ids) carry it.
        #[arg(long)]
        tag: String,
        /// Prefix of the ids, to replace the objects of an earlier run with the same --ids.
        #[arg(long)]
        ids: Option<String>,
    },
    /// Stream routes and SSL objects (own ECDSA certificate each) straight into etcd.
    SeedEtcd {
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value = "/apisix")]
        prefix: String,
        /// Stream routes and SSL objects, as many of each.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The keyring entry (16 or 32 bytes) SSL keys are sealed under.
        #[arg(long)]
        keyring: String,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The routes' upstream node, host:port.
        #[arg(long)]
        upstream: String,
        /// SNIs are `s<i>.<zone>`.
        #[arg(long, default_value = "cold.bench.test")]
        zone: String,
    },
    /// Starts an instance and times it to /readyz 200.
    ColdStart {
        #[arg(long)]
        shardgate: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        metrics: SocketAddr,
        /// Where the instance's stderr goes.
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Many nodes for health probes: accept, answer an HTTP request 200.
    Nodes {
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        #[arg(long, default_value_t = 3000)]
        count: u16,
        /// Where the ports go, one a line, once all listen.
        #[arg(long)]
        ports_file: PathBuf,
    },
    /// TCP connects to every port of a file at a fixed interval: the floor
    /// of what TCP health probes cost.
    ProbeFloor {
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        #[arg(long)]
        ports_file: PathBuf,
        #[arg(long, default_value_t = 2)]
        interval_seconds: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// UDP echo server.
    UdpEcho {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// UDP clients at a fixed rate each, timing round trips.
    Udp {
        #[arg(long)]
        target: SocketAddr,
        /// Client sockets (each one session on the proxy).
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Datagrams per second per client.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Idle connections held open.
    Idle {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 8000)]
        conns: usize,
        #[arg(long, default_value_t = 30)]
        hold_seconds: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardgate-loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn run(cmd: Cmd) -> Res<()> {
    match cmd {
        Cmd::Echo { listen } => echo(listen).await,
        Cmd::Nodes { ip, count, ports_file } => nodes::nodes(ip, count, &ports_file).await,
        Cmd::ProbeFloor { ip, ports_file, interval_seconds, seconds } => {
            nodes::probe_floor(ip, &ports_file, Duration::from_secs(interval_seconds), seconds).await
        }
        Cmd::TlsEcho { listen, cert, key } => tls_echo(listen, &cert, &key).await,
        Cmd::TlsProxy { listen, cert, key, upstream, copy_buffer } => {
            floor::tls_proxy(listen, &cert, &key, upstream, copy_buffer).await
        }
        Cmd::Bulk { target, sni, conns, seconds, chunk } => bulk::bulk(target, &sni, conns, seconds, chunk).await,
        Cmd::Speed => speed::speed(),
        Cmd::Handshakes { target, sni, concurrency, seconds, proxy_v2 } => {
            handshakes(target, sni, concurrency, seconds, proxy_v2).await
        }
        Cmd::Rtt { target, sni, conns, rate, seconds, size } => rtt(target, sni, conns, rate, seconds, size).await,
        Cmd::Idle { target, sni, conns, hold_seconds } => idle(target, sni, conns, hold_seconds).await,
        Cmd::UdpEcho { listen } => udp::echo(listen).await,
        Cmd::Udp { target, clients, rate, seconds, size } => udp::load(target, clients, rate, seconds, size).await,
        Cmd::Http { target, host, path, conns, seconds, rate } => {
            http_load(target, host, path, conns, seconds, rate).await
        }
        Cmd::Propagate { admin, key, rate, seconds, etcd, prefix, metrics, log, stream, poll_us, verify, tag, ids } => {
            cluster::propagate(cluster::Settings {
                admin,
                key,
                rate,
                seconds,
                etcd,
                prefix,
                metrics,
                logs: log,
                stream,
                poll_us,
                verify,
                tag,
                ids,
            })
            .await
        }
        Cmd::SeedEtcd { etcd, prefix, count, keyring, concurrency, upstream, zone } => {
            seed::seed(seed::SeedSettings { etcd, prefix, count, keyring, concurrency, upstream, zone }).await
        }
        Cmd::ColdStart { shardgate, config, metrics, log, timeout_seconds } => {
            seed::cold_start(seed::ColdSettings {
                shardgate,
                config,
                metrics,
                log,
                timeout: Duration::from_secs(timeout_seconds),
            })
            .await
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns the body length.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Res<usize> {
    // `buf` may hold bytes of this response already; it never holds the next one
    // (requests are not pipelined).
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed before a response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {}", head.lines().next().unwrap_or_default()).into());
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
        })
        .ok_or("no Content-Length")?;
    let mut have = buf.len() - head_end;
    let mut chunk = vec![0u8; 64 * 1024];
    while have < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        have += n;
    }
    buf.clear();
    Ok(len)
}

async fn http_load(target: SocketAddr, host: String, path: String, conns: usize, seconds: u64, rate: u64) -> Res<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shardgate-loadgen\r\n\r\n");
    let started = Instant::now();
    // Each connection's share of the rate, as a period between its requests.
    let period = (rate > 0).then(|| Duration::from_secs_f64(conns as f64 / rate as f64));
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (stop, ops, bytes, errors, request) =
            (Arc::clone(&stop), Arc::clone(&ops), Arc::clone(&bytes), Arc::clone(&errors), request.clone());
        // Connections start spread over one period.
        let mut next =
            tokio::time::Instant::now() + period.map_or(Duration::ZERO, |p| p.mul_f64(i as f64 / conns as f64));
        tasks.push(tokio::spawn(async move {
            let mut s = match TcpStream::connect(target).await {
                Ok(s) => s,
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let _ = s.set_nodelay(true);
            let mut buf = Vec::with_capacity(64 * 1024);
            while !stop.load(Ordering::Relaxed) {
                if let Some(p) = period {
                    // Late requests go out at once (the timer ticks in
                    // milliseconds), so the rate holds on average.
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                if s.write_all(request.as_bytes()).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match read_response(&mut s, &mut buf).await {
                    Ok(n) => {
                        ops.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("http: {e}");
                        }
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let ops = ops.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({"ops": ops, "rate": ops as f64 / secs, "bytes": bytes.load(Ordering::Relaxed),
                           "errors": errors.load(Ordering::Relaxed), "seconds": secs})
    );
    Ok(())
}

async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn echo(listen: SocketAddr) -> Res<()> {
    let l = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(echo_loop(s));
    }
}

/// The TLS server side of `tls-echo` and `tls-proxy`: one certificate,
/// aws-lc-rs with its default suites, TLS 1.2 and 1.3.
fn tls_acceptor(cert: &Path, key: &Path) -> Res<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn tls_echo(listen: SocketAddr, cert: &Path, key: &Path) -> Res<()> {
    let acceptor = tls_acceptor(cert, key)?;
    let l = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(s).await {
                echo_loop(tls).await;
            }
        });
    }
}

/// Sends `msg` and reads until as many bytes came back.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8], buf: &mut [u8]) -> std::io::Result<()> {
    s.write_all(msg).await?;
    s.flush().await?;
    let mut got = 0;
    while got < msg.len() {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

async fn handshakes(target: SocketAddr, sni: String, concurrency: usize, seconds: u64, proxy_v2: bool) -> Res<()> {
    let snis: Arc<Vec<String>> = Arc::new(sni.split(',').map(str::to_owned).collect());
    let client = TlsClient::default().without_resumption();
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, snis, ops, errors) = (client.clone(), Arc::clone(&snis), Arc::clone(&ops), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let msg = [b'x'; 64];
            let mut buf = [0u8; 256];
            let mut i = w;
            // At least one operation per worker, then until the deadline.
            loop {
                i += 1;
                let sni = &snis[i % snis.len()];
                let done = if proxy_v2 {
                    match proxy_v2::Prefixed::connect(target).await {
                        Ok(tcp) => match client.connect_over(tcp, sni).await {
                            Ok(mut s) => echo_once(&mut s, &msg, &mut buf).await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                } else {
                    match client.connect(target, Some(sni)).await {
                        Ok(mut s) => echo_once(&mut s, &msg, &mut buf).await,
                        Err(e) => Err(e),
                    }
                };
                let counter = if done.is_ok() { &ops } else { &errors };
                counter.fetch_add(1, Ordering::Relaxed);
                if Instant::now() >= deadline {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let ops = ops.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({"ops": ops, "errors": errors.load(Ordering::Relaxed), "seconds": secs, "rate": ops as f64 / secs})
    );
    Ok(())
}

/// How long a new connection's first echo may take (the TLS client bounds
/// the handshake itself).
const FIRST_ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `conns` TLS connections (SNIs in turn), each checked by one echo.
async fn connect_many(
    target: SocketAddr,
    snis: &[String],
    conns: usize,
) -> Res<Vec<tokio_rustls::client::TlsStream<TcpStream>>> {
    let client = TlsClient::default();
    let mut out = Vec::with_capacity(conns);
    // Opened in batches of 100 so the ramp itself is not a handshake storm.
    for chunk in (0..conns).collect::<Vec<_>>().chunks(100) {
        let mut batch = Vec::new();
        for &i in chunk {
            let client = client.clone();
            let sni = snis[i % snis.len()].clone();
            batch.push(tokio::spawn(async move {
                let mut s = client.connect(target, Some(&sni)).await?;
                let mut buf = [0u8; 128];
                tokio::time::timeout(FIRST_ECHO_TIMEOUT, echo_once(&mut s, &[b'o'; 16], &mut buf))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo through the proxy"))??;
                Ok::<_, std::io::Error>(s)
            }));
        }
        for b in batch {
            out.push(b.await??);
        }
    }
    Ok(out)
}

async fn rtt(target: SocketAddr, sni: String, conns: usize, rate: u64, seconds: u64, size: usize) -> Res<()> {
    let snis: Vec<String> = sni.split(',').map(str::to_owned).collect();
    let streams = connect_many(target, &snis, conns).await?;
    eprintln!("rtt: {} connections open", streams.len());
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_micros(1_000_000 / rate.max(1));
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            // Spread the connections' phases over one period.
            let phase = period.mul_f64((i % 1000) as f64 / 1000.0);
            let mut tick = tokio::time::interval_at(started + phase, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let msg = vec![b'g'; size];
            let mut buf = vec![0u8; size + 64];
            let mut samples: Vec<u32> = Vec::with_capacity(((seconds * rate) as usize) + 8);
            let mut errors = 0u64;
            loop {
                let at = tick.tick().await;
                if at >= deadline || stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                match echo_once(&mut s, &msg, &mut buf).await {
                    Ok(()) => samples.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (samples, errors)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await?;
        all.extend(s);
        errors += e;
    }
    all.sort_unstable();
    let pct =
        |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "count": all.len(), "errors": errors, "seconds": started.elapsed().as_secs_f64(),
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "p999_us": pct(0.999),
            "max_us": all.last().copied().unwrap_or(0)
        })
    );
    Ok(())
}

async fn idle(target: SocketAddr, sni: String, conns: usize, hold_seconds: u64) -> Res<()> {
    let snis: Vec<String> = sni.split(',').map(str::to_owned).collect();
    let streams = connect_many(target, &snis, conns).await?;
    println!("ready {}", streams.len());
    tokio::time::sleep(Duration::from_secs(hold_seconds)).await;
    drop(streams);
    Ok(())
}
