// Overview: live charts from the gateway's own metrics (polled every 2 s)
// and a count of each resource.

import {h, replace, fmtNum, badge, pageHead} from '../dom.js';
import * as api from '../api.js';
import {lineChart} from '../chart.js';
import {pollStats, overview} from '../stats.js';

const KINDS = [
  ['stream_routes', 'Stream routes'],
  ['upstreams', 'Upstreams'],
  ['ssls', 'SSLs'],
  ['distributions', 'Distributions'],
  ['web_acls', 'Web ACLs'],
];

export async function render(main) {
  const charts = {
    connections: lineChart({title: 'Active connections', format: (v) => fmtNum(v, 0), integer: true, test: 'chart-connections'}),
    handshakes: lineChart({title: 'TLS handshakes', unit: '/s', test: 'chart-handshakes'}),
    requests: lineChart({title: 'Edge requests', unit: '/s', test: 'chart-requests'}),
    hitRatio: lineChart({title: 'Cache hit ratio', max: 1, format: (v) => `${fmtNum(v * 100, 0)} %`, tick: (v) => `${fmtNum(v * 100, 0)} %`, test: 'chart-hit-ratio'}),
    originMs: lineChart({title: 'Origin latency (mean)', unit: 'ms', test: 'chart-origin'}),
  };
  const status = h('p', {class: 'muted poll-status', 'data-test': 'poll-status'}, 'Waiting for the first sample…');
  const tiles = h('div', {class: 'tiles'}, KINDS.map(([kind, label]) =>
    h('a', {class: 'card tile', href: `#/${kind}`, 'data-test': `tile-${kind}`}, h('span', {class: 'tile-n'}, '…'), h('span', {class: 'tile-label'}, label))));
  const expiry = h('div', {class: 'card expiry', 'data-test': 'expiry'}, h('h2', {}, 'Certificates expiring first'), h('p', {class: 'muted'}, 'Loading…'));

  replace(main,
    pageHead('Overview', status),
    tiles,
    h('div', {class: 'charts'}, Object.values(charts).map((c) => c.element)),
    expiry);

  loadCounts(tiles);
  loadExpiry(expiry);
  const stop = pollStats((cur, prev) => {
    const figures = overview(prev, cur);
    for (const [name, chart] of Object.entries(charts)) chart.push(cur.time, figures[name]);
    status.textContent = `Live · every 2 s · ${new Date(cur.time * 1000).toLocaleTimeString([], {hour12: false})}`;
    status.classList.remove('bad');
  }, (e) => {
    status.textContent = `Stats unavailable: ${e.message}`;
    status.classList.add('bad');
  });
  return () => {
    stop();
    for (const c of Object.values(charts)) c.destroy();
  };
}

async function loadCounts(tiles) {
  await Promise.all(KINDS.map(async ([kind]) => {
    const n = tiles.querySelector(`[data-test="tile-${kind}"] .tile-n`);
    try {
      n.textContent = fmtNum(await api.count(kind), 0);
    } catch {
      n.textContent = '—';
    }
  }));
}

async function loadExpiry(box) {
  try {
    const {list} = await api.dashboard('certificates');
    const first = list.slice(0, 5);
    replace(box, h('h2', {}, 'Certificates expiring first'),
      first.length === 0 ? h('p', {class: 'muted'}, 'No SSL objects yet.') :
        h('ul', {class: 'plain'}, first.map((c) => h('li', {},
          daysBadge(c), ' ', h('a', {href: '#/ssls'}, (c.snis || []).join(', ') || c.id)))));
  } catch (e) {
    replace(box, h('h2', {}, 'Certificates expiring first'), h('p', {class: 'muted'}, e.message));
  }
}

/** A badge with a certificate's days left: red within 7 days, amber within 30. */
export function daysBadge(cert) {
  if (cert.error) return badge('unreadable', 'bad');
  const d = cert.days_left;
  if (d < 0) return badge('expired', 'bad');
  return badge(`${fmtNum(d, 0)} ${d === 1 ? 'day' : 'days'}`, d <= 7 ? 'bad' : d <= 30 ? 'warn' : 'ok');
}
