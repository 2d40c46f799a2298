use std::time::Duration;

use shardgate_core::{Drain, Metrics};
use shardgate_model::{Change, ConfigState, ResourceId, ResourceKind};
use shardgate_snapshot::{CompileDefaults, Snapshot, TlsShared, compile};
use shardgate_upstream::{ConnectDefaults, Registry, Resolver, UpstreamMetrics};

use super::*;
use crate::StreamMetrics;
use crate::udp::metrics::SessionCloseLabels;

/// A snapshot with one stream route (no SNI) to `node`, idle timeout 1 s.
fn snapshot(node: SocketAddr) -> Snapshot {
    let mut state = ConfigState::default();
    let route = format!(r#"{{"idle_timeout": 1, "upstream": {{"nodes": {{"{node}": 1}}}}}}"#);
    state
        .apply(Change::Put {
            kind: ResourceKind::StreamRoutes,
            id: ResourceId::parse("r").expect("id"),
            revision: 1,
            value: route.into_bytes(),
        })
        .expect("valid route");
    let registry = Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::default(),
        ConnectDefaults::default(),
    );
    let tls = TlsShared::new(16).expect("tls");
    let defaults = CompileDefaults { idle_timeout: Duration::from_secs(600), geo: None };
    compile(&state, &registry, &tls, &Snapshot::default(), &defaults)
}

/// A UDP echo server.
async fn echo() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if sock.send_to(&buf[..n], from).await.is_err() {
                break;
            }
        }
    });
    addr
}

async fn roundtrip(c: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    c.send_to(msg, to).await.expect("send");
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(Duration::from_millis(500), c.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, to, "replies leave from the listener's address");
            Some(buf[..n].to_vec())
        }
        _ => None,
    }
}

/// What a reload does to a removed listener: `stop` completes. Open sessions
/// keep flowing both ways until idle, no new one is created, and the
/// listener returns once the last session has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_listener_serves_its_open_sessions_until_idle_and_opens_none() {
    let node = echo().await;
    let handle = Arc::new(SnapshotHandle::new(snapshot(node)));
    let registry = Metrics::new();
    let metrics = UdpMetrics::register(&registry, StreamMetrics::register(&registry));
    let settings = UdpSettings {
        idle_timeout: Duration::from_secs(600),
        max_sessions: Arc::new(Semaphore::new(10)),
        max_connections: Arc::new(Semaphore::new(10)),
        limit_conn: Arc::default(),
    };
    let socket = bind_udp("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = socket.local_addr().expect("addr");
    let spec = UdpListenerSpec { addr, web_acl: None };
    let label = spec.label();
    let drain = Drain::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        if stop_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let listener =
        tokio::spawn(serve_udp(socket, spec, handle, settings.clone(), metrics.clone(), drain.watch(), stop));

    let player = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(roundtrip(&player, addr, b"one").await.as_deref(), Some(&b"one"[..]));
    stop_tx.send(()).expect("stop");
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(roundtrip(&player, addr, b"two").await.as_deref(), Some(&b"two"[..]), "the open session goes on");
    let newcomer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(roundtrip(&newcomer, addr, b"hello").await, None, "no new session");
    let stopped =
        metrics.dropped.get_or_create(&DropLabels { listener: label.clone(), reason: DropReason::listener_stopped });
    assert!(stopped.get() >= 1);

    // The route's idle timeout (1 s) ends the session; then the listener returns.
    tokio::time::timeout(Duration::from_secs(10), listener).await.expect("the listener returns").expect("task");
    let idle = SessionCloseLabels { listener: label, route: "r".into(), reason: SessionEnd::idle_timeout };
    assert_eq!(metrics.sessions_closed.get_or_create(&idle).get(), 1);
    assert_eq!(settings.max_sessions.available_permits(), 10, "the session's permits are back");
    assert_eq!(settings.max_connections.available_permits(), 10);
}
