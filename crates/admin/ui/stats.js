// The gateway's own metrics, read from /ui/api/stats every 2 s. Counters
// become rates from two polls (the change over the time between them); a
// counter that went down (the gateway restarted) gives no point rather
// than a negative one.
//
// Every poll or refresh timer a page starts goes through repeat(), which
// keeps a register of them: the shell stops them all when it leaves a page,
// on sign-out and when the session is lost, and none runs without a session.

import {dashboard, currentSession} from './api.js';

/** Milliseconds between two polls. */
export const POLL_MS = 2000;

/** The sum of every sample named `name` whose labels pass `where`. */
export function total(stats, name, where = () => true) {
  let sum = 0;
  for (const s of stats.samples) {
    if (s.name === name && where(s.labels || {})) sum += Number(s.value) || 0;
  }
  return sum;
}

/** A counter's sum: counters are exposed as `<name>_total`; both spellings are accepted. */
export function counter(stats, name, where) {
  return total(stats, `${name}_total`, where) + total(stats, name, where);
}

/** Per-second rate of `value(stats)` between two polls, or null. */
export function rate(prev, cur, value) {
  if (!prev) return null;
  const dt = cur.time - prev.time;
  const dv = value(cur) - value(prev);
  if (!(dt > 0) || dv < 0) return null;
  return dv / dt;
}

/** Change of `value(stats)` between two polls, or null on a reset. */
export function delta(prev, cur, value) {
  if (!prev) return null;
  const dv = value(cur) - value(prev);
  return dv < 0 ? null : dv;
}

const HIT = new Set(['hit', 'refresh_hit', 'stale_hit']);
const CACHEABLE = new Set(['hit', 'refresh_hit', 'stale_hit', 'miss']);

/**
 * The five figures of the overview between two polls:
 * active connections, TLS handshakes/s, edge requests/s, cache hit ratio
 * (hits over cacheable requests, CloudFront's CacheHitRate), origin latency (ms, mean).
 */
export function overview(prev, cur) {
  const hits = (s) => counter(s, 'shardgate_edge_requests', (l) => HIT.has(l.cache));
  const cacheable = (s) => counter(s, 'shardgate_edge_requests', (l) => CACHEABLE.has(l.cache));
  const dHits = delta(prev, cur, hits);
  const dCacheable = delta(prev, cur, cacheable);
  const dSum = delta(prev, cur, (s) => total(s, 'shardgate_edge_origin_response_seconds_sum'));
  const dCount = delta(prev, cur, (s) => total(s, 'shardgate_edge_origin_response_seconds_count'));
  return {
    connections: total(cur, 'shardgate_stream_connections_active'),
    handshakes: rate(prev, cur, (s) => total(s, 'shardgate_stream_tls_handshake_duration_seconds_count')),
    requests: rate(prev, cur, (s) => counter(s, 'shardgate_edge_requests')),
    hitRatio: dCacheable ? dHits / dCacheable : null,
    originMs: dCount ? (dSum / dCount) * 1000 : null,
  };
}

/** The stop function of every repeat() still running. */
const running = new Set();

/**
 * Runs `task(alive)` now and again each time the delay in milliseconds it
 * returns has passed; a task that returns anything else, or throws, is not
 * run again. One run at a time. `alive()` is false once stopped: a task
 * checks it after each await before it touches the page. Stops by itself
 * when there is no session (signed out, or a 401 made api.js drop it).
 * Returns the function that stops it.
 */
export function repeat(task) {
  let timer = null;
  let stopped = false;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    running.delete(stop);
  };
  const alive = () => !stopped;
  async function run() {
    if (stopped) return;
    if (!currentSession()) {
      stop();
      return;
    }
    let next = null;
    try {
      next = await task(alive);
    } catch {
      next = null;
    }
    if (stopped) return;
    if (typeof next === 'number') timer = setTimeout(run, next);
    else stop();
  }
  running.add(stop);
  run();
  return stop;
}

/** Stops every repeat() still running: a page was left, or the session ended. */
export function stopAll() {
  for (const stop of [...running]) stop();
}

/** How many repeat() loops are running (for tests and the console). */
export function runningCount() {
  return running.size;
}

/**
 * Polls /ui/api/stats every POLL_MS and calls `onStats(current, previous)`
 * (or `onError(error)`); returns a function that stops it. One poll at a
 * time: the next starts POLL_MS after the previous answered. A 401 stops
 * it (the session is gone).
 */
export function pollStats(onStats, onError = () => {}) {
  let prev = null;
  return repeat(async (alive) => {
    try {
      const cur = await dashboard('stats');
      if (!alive()) return null;
      onStats(cur, prev);
      prev = cur;
    } catch (e) {
      if (!alive() || e.status === 401) return null;
      onError(e);
    }
    return POLL_MS;
  });
}
