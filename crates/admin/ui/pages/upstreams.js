// Upstreams (APISIX `upstreams`): game servers with their balancer and
// health checks; each node shows what its checker says (/ui/api/health,
// APISIX's Control API `/v1/healthcheck`).

import {h, badge} from '../dom.js';
import * as api from '../api.js';
import {listPage, editPage} from './resource.js';
import {nodesToText} from '../form.js';

const HEALTH_KIND = {healthy: 'ok', unhealthy: 'bad', mostly_healthy: 'warn', mostly_unhealthy: 'warn'};

/** Node health by upstream id: Map(id -> Map("host:port" -> status)). */
async function healthById() {
  const byId = new Map();
  let checkers = [];
  try {
    checkers = await api.dashboard('health');
  } catch {
    return byId;
  }
  for (const c of Array.isArray(checkers) ? checkers : []) {
    const m = /\/upstreams\/([^/]+)$/.exec(c.name || '');
    if (!m) continue;
    const nodes = new Map();
    for (const n of c.nodes || []) {
      nodes.set(`${n.hostname}:${n.port}`, n.status);
      nodes.set(`${n.ip}:${n.port}`, n.status);
    }
    byId.set(m[1], nodes);
  }
  return byId;
}

function nodeList(item) {
  const text = nodesToText(item.value.nodes);
  const health = item.health;
  return h('ul', {class: 'nodes'}, text.split('\n').filter((l) => l).map((line) => {
    const [addr, weight] = line.split(' ');
    const status = health ? health.get(addr) : undefined;
    return h('li', {'data-test': `node-${addr}`},
      h('span', {class: 'mono'}, addr), ' ',
      h('span', {class: 'muted'}, `×${weight}`), ' ',
      status ? badge(status.replaceAll('_', ' '), HEALTH_KIND[status] || 'muted') : badge(health ? 'unknown' : 'no checks', 'muted'));
  }));
}

const SPEC = {
  kind: 'upstreams',
  title: 'Upstreams',
  singular: 'upstream',
  intro: 'Game servers behind the gateway. Nodes with active checks show their health as the checker sees it.',
  async decorate(items) {
    const health = await healthById();
    for (const it of items) it.health = health.get(api.idOf(it));
  },
  columns: [
    {label: 'Name', cell: (it) => it.value.name || ''},
    {label: 'Balancer', cell: (it) => it.value.type || 'roundrobin'},
    {label: 'Nodes', cell: nodeList},
    {label: 'Checks', cell: (it) => it.value.checks ? badge(it.value.checks.active ? (it.value.checks.active.type || 'http') : 'passive', 'info') : ''},
  ],
  text: (it) => `${it.value.name || ''} ${it.value.type || ''} ${nodesToText(it.value.nodes)}`,
  defaults: {type: 'roundrobin'},
  fields: async () => [
    {path: 'name', label: 'Name'},
    {path: 'type', label: 'Balancer', type: 'select', options: [['roundrobin', 'round robin'], ['chash', 'consistent hash'], ['least_conn', 'least connections']]},
    {path: 'nodes', label: 'Nodes', type: 'nodes', required: true, wide: true, placeholder: '127.0.0.1:9000 1\n127.0.0.1:9001 1',
      help: 'One per line: host:port weight [priority]. A host may be a template such as {sni_label_1}.rooms.example.com.'},
    {path: 'key', label: 'Hash key (consistent hash)', placeholder: 'remote_addr'},
    {path: 'scheme', label: 'Scheme', type: 'select', options: [['', 'tcp (default)'], ['tcp', 'tcp'], ['udp', 'udp']]},
    {path: 'retries', label: 'Retries', type: 'number', min: 0, step: 1},
    {path: 'timeout.connect', label: 'Connect timeout (s)', type: 'number', min: 0},
    {path: 'timeout.send', label: 'Send timeout (s)', type: 'number', min: 0},
    {path: 'timeout.read', label: 'Read timeout (s)', type: 'number', min: 0},
    {path: 'send_proxy_protocol', label: 'PROXY protocol to the game server', type: 'select', options: [['', 'listener default'], ['v1', 'v1'], ['v2', 'v2'], ['off', 'off']]},
    {path: 'checks', label: 'Health checks (JSON, APISIX checks)', type: 'json', rows: 8, wide: true,
      placeholder: '{"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 2}, "unhealthy": {"interval": 1, "tcp_failures": 2}}}'},
    {path: 'desc', label: 'Description', type: 'textarea', rows: 2, wide: true},
  ],
};

export function render(main, [id]) {
  return id ? editPage(main, id, SPEC) : listPage(main, SPEC);
}
