//! `bulk`: bulk transfer through the proxy, for `bench/run.sh`. N TLS
//! connections to the echo game servers behind the proxy; on each, one task
//! writes fixed-size chunks back to back while another reads the echo back
//! (the stream split in two halves), both until the deadline. The count is
//! the bytes echoed back within the window; each of them crossed the proxy
//! once in each direction (decrypted on the way in, encrypted on the way
//! out), which is how `bench/run.sh` turns it into CPU per MiB moved.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Res;

/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// Largest write the load makes at once.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// What the load (or one half of a connection) moved.
#[derive(Debug, Default)]
struct Moved {
    /// Bytes written.
    sent: u64,
    /// Bytes read back.
    echoed: u64,
    /// Connections that failed or were closed before the deadline.
    errors: u64,
}

/// Runs the load for `seconds` on `conns` connections and prints one JSON
/// line: `bytes` (echoed back), `sent`, `seconds`, `errors`, `mib_per_s`
/// (of `bytes`).
pub async fn bulk(target: SocketAddr, sni: &str, conns: usize, seconds: u64, chunk: usize) -> Res<()> {
    let started = Instant::now();
    let total = transfer(target, sni, conns, Duration::from_secs(seconds), chunk).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bytes": total.echoed, "sent": total.sent, "seconds": secs, "errors": total.errors,
            "mib_per_s": total.echoed as f64 / secs / (1024.0 * 1024.0)
        })
    );
    Ok(())
}

/// The load itself: opens the connections, then writes and reads on each
/// until `window` has passed.
async fn transfer(target: SocketAddr, sni: &str, conns: usize, window: Duration, chunk: usize) -> Res<Moved> {
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(format!("--chunk must be 1 to {MAX_CHUNK} bytes, not {chunk}").into());
    }
    let snis: Vec<String> = sni.split(',').map(str::to_owned).collect();
    // Every connection is open (and has echoed once) before the clock starts.
    let streams = crate::connect_many(target, &snis, conns).await?;
    let deadline = tokio::time::Instant::now() + window;
    let mut tasks = Vec::with_capacity(streams.len());
    for s in streams {
        let (mut rd, mut wr) = tokio::io::split(s);
        let writer = tokio::spawn(async move {
            let data = vec![b'b'; chunk];
            let mut moved = Moved::default();
            loop {
                match tokio::time::timeout_at(deadline, wr.write_all(&data)).await {
                    Err(_) => break,
                    Ok(Ok(())) => moved.sent += chunk as u64,
                    Ok(Err(e)) => {
                        eprintln!("bulk: write: {e}");
                        moved.errors += 1;
                        break;
                    }
                }
            }
            moved
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            let mut moved = Moved::default();
            loop {
                match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
                    Err(_) => break,
                    Ok(Ok(0)) => {
                        eprintln!("bulk: the proxy closed a connection before the deadline");
                        moved.errors += 1;
                        break;
                    }
                    Ok(Ok(n)) => moved.echoed += n as u64,
                    Ok(Err(e)) => {
                        eprintln!("bulk: read: {e}");
                        moved.errors += 1;
                        break;
                    }
                }
            }
            moved
        });
        tasks.push((writer, reader));
    }
    let mut total = Moved::default();
    for (writer, reader) in tasks {
        for m in [writer.await?, reader.await?] {
            total.sent += m.sent;
            total.echoed += m.echoed;
            total.errors += m.errors;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echoed_bytes_are_counted_and_a_dead_target_is_an_error() {
        let (proxy, _dir) = crate::floor::tests::floor_to_echo().await;
        let moved = transfer(proxy, "gs-1.com", 2, Duration::from_millis(500), 4096).await.expect("transfer");
        assert_eq!(moved.errors, 0, "{moved:?}");
        assert!(moved.echoed > 0, "{moved:?}");
        assert!(moved.echoed <= moved.sent, "more echoed than sent: {moved:?}");

        let nobody = shardgate_e2e::ports::free("127.0.0.1");
        assert!(transfer(nobody, "gs-1.com", 1, Duration::from_millis(100), 4096).await.is_err());
        assert!(transfer(proxy, "gs-1.com", 1, Duration::from_millis(100), 0).await.is_err());
    }
}
