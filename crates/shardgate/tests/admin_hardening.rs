//! The Admin API bounds slow clients: a connection that
//! trickles its request head is closed after the head timeout, a body that
//! does not arrive in time gets 408, and slow bodies hold no budget, so
//! reads, other writes and the health listener keep answering.
//!
//! Every wait below is generous (tens of seconds) and bounds a test that
//! would otherwise hang; no assertion is on elapsed time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::ADMIN_KEY;
use shardgate_e2e::admin::try_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Sends `head` then one more byte of `rest` every 200 ms; returns how many
/// bytes of `rest` went out before the server closed the connection, or
/// `None` if it was still open after [`PATIENCE`].
async fn trickle(addr: SocketAddr, head: &str, rest: &[u8]) -> Option<usize> {
    let sock = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = sock.into_split();
    wr.write_all(head.as_bytes()).await.expect("send the start");
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut sent = 0;
    for b in rest.iter().cycle() {
        if closed.is_finished() {
            return Some(sent);
        }
        if tokio::time::Instant::now() > deadline || wr.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::timeout(Duration::from_secs(2), closed).await.ok().map(|_| sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_trickling_its_head_is_closed_after_the_head_timeout() {
    let gw = gateway().yaml("limits:\n  admin_header_read_timeout: 1s").spawn().await;
    for (listener, addr) in [("admin", gw.admin), ("metrics", gw.metrics)] {
        let sent = trickle(addr, "GET /apisix/admin/upstreams HTTP/1.1\r\n", b"X-Slow: ab\r\n").await;
        assert!(sent.is_some(), "the {listener} listener still held a trickling connection after {PATIENCE:?}");
    }
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(gw.admin).await.expect("connect");
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 16];
        matches!(idle.read(&mut buf).await, Ok(0) | Err(_))
    })
    .await;
    assert_eq!(closed, Ok(true), "an idle connection is closed");
    assert_eq!(gw.admin().get("/apisix/admin/upstreams").await.status, 200, "others are served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let gw = gateway().yaml("limits:\n  admin_body_read_timeout: 1s").spawn().await;
    let mut sock = TcpStream::connect(gw.admin).await.expect("connect");
    let head = format!(
        "PUT /apisix/admin/upstreams/slow HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Length: 1000\r\n\r\n{{\"nodes\""
    );
    sock.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, sock.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer and no close within {PATIENCE:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("invalid request body: not received within 1s"), "{text}");
    assert_eq!(gw.admin().get("/apisix/admin/upstreams/slow").await.status, 404, "nothing stored");
}

/// Starts a PUT whose body never finishes; keeps the socket open.
async fn slow_put(addr: SocketAddr, id: &str) -> TcpStream {
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "PUT /apisix/admin/upstreams/{id} HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"nodes\": "
    );
    sock.write_all(head.as_bytes()).await.expect("send");
    sock
}

async fn answers(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> u16 {
    let headers = [("X-API-KEY", ADMIN_KEY)];
    let r = tokio::time::timeout(PATIENCE, try_http(addr, method, path, &headers, body.map(str::as_bytes))).await;
    match r {
        Ok(Ok(r)) => r.status,
        Ok(Err(e)) => panic!("{method} {path}: {e}"),
        Err(_) => panic!("{method} {path}: no answer within {PATIENCE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_over_the_request_budget_block_no_read_and_no_write() {
    // Six writes still sending their bodies, over a budget of four.
    let gw = gateway()
        .yaml("limits:\n  admin_max_concurrency: 4\n  admin_body_read_timeout: 60s\n  admin_request_timeout: 60s")
        .spawn()
        .await;
    gw.admin().put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {"127.0.0.1:9001": 1}})).await;
    let mut slow = Vec::new();
    for i in 0..6 {
        slow.push(slow_put(gw.admin, &format!("slow{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answers(gw.admin, "GET", "/apisix/admin/upstreams/u", None).await, 200);
    assert_eq!(answers(gw.admin, "GET", "/apisix/admin/upstreams", None).await, 200);
    let body = json!({"nodes": {"127.0.0.1:9002": 1}}).to_string();
    assert_eq!(answers(gw.admin, "PUT", "/apisix/admin/upstreams/fast", Some(&body)).await, 201);
    assert_eq!(answers(gw.metrics, "GET", "/healthz", None).await, 200);

    // The slow writers were not cut: one that finishes its body is stored.
    let mut first = slow.remove(0);
    // 10 bytes sent, 30 to go (Content-Length: 40); trailing spaces are JSON whitespace.
    let rest = format!("{:<30}", r#"{"127.0.0.1:9003": 1}}"#);
    first.write_all(rest.as_bytes()).await.expect("finish the body");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(PATIENCE, first.read(&mut answer)).await.expect("an answer").expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_many_slow_bodies_as_write_turns_leave_writes_working() {
    let gw = gateway()
        .yaml("limits:\n  admin_max_writes: 2\n  admin_body_read_timeout: 60s\n  admin_request_timeout: 60s")
        .spawn()
        .await;
    let mut slow = Vec::new();
    for i in 0..2 {
        slow.push(slow_put(gw.admin, &format!("slow{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"nodes": {"127.0.0.1:9002": 1}}).to_string();
    for i in 0..3 {
        assert_eq!(answers(gw.admin, "PUT", &format!("/apisix/admin/upstreams/fast{i}"), Some(&body)).await, 201);
    }
    assert_eq!(answers(gw.admin, "DELETE", "/apisix/admin/upstreams/fast0", None).await, 200);
    assert_eq!(answers(gw.admin, "GET", "/apisix/admin/upstreams", None).await, 200);
    drop(slow);
}
