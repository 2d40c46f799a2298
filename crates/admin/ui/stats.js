// The gateway's own metrics, read from /ui/api/stats every 2 s. Counters
// become rates from two polls (the change over the time between them); a
// counter that went down (the gateway restarted) gives no point rather
// than a negative one.

import {dashboard} from './api.js';

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

/**
 * Polls /ui/api/stats every POLL_MS and calls `onStats(current, previous)`
 * (or `onError(error)`); returns a function that stops it. One poll at a
 * time: the next starts POLL_MS after the previous answered.
 */
export function pollStats(onStats, onError = () => {}) {
  let prev = null;
  let timer = null;
  let stopped = false;
  async function tick() {
    try {
      const cur = await dashboard('stats');
      if (stopped) return;
      onStats(cur, prev);
      prev = cur;
    } catch (e) {
      if (stopped) return;
      onError(e);
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
