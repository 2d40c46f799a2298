//! `speed`: the machine-speed probe the benchmark scripts run at the start
//! of every round, pinned to the proxy's core. A fixed, deterministic
//! workload (a dependent multiply-rotate chain over a 64 KiB buffer, which
//! stays in the core's cache) whose CPU time per iteration moves with the
//! core's clock and with what shares the core's caches, and whose wall time
//! also grows with time lost to other processes on that core. Rounds whose
//! probe differs are rounds the machine ran at a different speed; compare
//! figures within a round, or their medians.

use std::hint::black_box;
use std::time::Instant;

use crate::Res;

/// Words in the buffer (64 KiB).
const WORDS: usize = 8 * 1024;
/// Passes over the buffer: about 0.3 s of CPU (1.2 ns per iteration on the
/// 2-core AMD EPYC the figures in bench/README.md come from).
const PASSES: usize = 30_000;
/// The multiplier of the chain (odd, so the chain never collapses).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// This thread's CPU time so far, ns (`/proc/thread-self/schedstat`'s first
/// field).
fn thread_cpu_ns() -> Res<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let first = text.split_whitespace().next().ok_or("/proc/thread-self/schedstat is empty")?;
    Ok(first.parse()?)
}

/// Runs the workload once and prints one JSON line: `iters`, `cpu_ms`,
/// `wall_ms`, `ns_per_iter` (CPU time), `check` (the chain's end, the same
/// on every run).
pub fn speed() -> Res<()> {
    let mut buf: Vec<u64> = (0..WORDS as u64).map(|i| i.wrapping_mul(MIX) ^ i).collect();
    let cpu0 = thread_cpu_ns()?;
    let wall0 = Instant::now();
    let mut x = 0u64;
    for _ in 0..PASSES {
        for w in buf.iter_mut() {
            x = (x ^ *w).rotate_left(23).wrapping_mul(MIX);
            *w = x;
        }
        black_box(&mut buf);
    }
    let wall = wall0.elapsed();
    let cpu_ns = thread_cpu_ns()?.saturating_sub(cpu0);
    let iters = (WORDS * PASSES) as u64;
    println!(
        "{}",
        serde_json::json!({
            "iters": iters, "cpu_ms": cpu_ns as f64 / 1e6, "wall_ms": wall.as_secs_f64() * 1e3,
            "ns_per_iter": cpu_ns as f64 / iters as f64, "check": black_box(x)
        })
    );
    Ok(())
}
