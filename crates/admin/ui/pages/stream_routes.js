// Stream routes (APISIX `stream_routes`): which game server a player's
// connection goes to, by SNI, listener port or client address.

import {h} from '../dom.js';
import * as api from '../api.js';
import {listPage, editPage, idLink} from './resource.js';
import {nodesToText} from '../form.js';

const SPEC = {
  kind: 'stream_routes',
  title: 'Stream routes',
  singular: 'stream route',
  intro: 'A player connection is routed by its SNI (exact beats wildcard), then the listener port and client address, to an upstream.',
  columns: [
    {label: 'Name', cell: (it) => it.value.name || ''},
    {label: 'SNI', cell: (it) => h('span', {class: 'mono'}, snis(it.value))},
    {label: 'Match', cell: (it) => match(it.value)},
    {label: 'Upstream', cell: (it) => it.value.upstream_id !== undefined
      ? idLink('upstreams', String(it.value.upstream_id))
      : h('span', {class: 'mono'}, nodesToText(it.value.upstream && it.value.upstream.nodes).replaceAll('\n', ', '))},
  ],
  text: (it) => `${it.value.name || ''} ${snis(it.value)} ${match(it.value)} ${it.value.upstream_id || ''}`,
  defaults: {},
  fields: async () => {
    const ups = await api.list('upstreams').catch(() => []);
    return [
      {path: 'name', label: 'Name'},
      {path: 'sni', label: 'SNI', placeholder: 'gs-1.example.com or *.rooms.example.com', help: 'The TLS server name this route takes; empty for routes by port or address only.'},
      {path: 'server_port', label: 'Listener port', type: 'number', min: 1, max: 65535, step: 1},
      {path: 'remote_addr', label: 'Client address', placeholder: '203.0.113.0/24'},
      {path: 'upstream_id', label: 'Upstream', type: 'select',
        options: [['', '— the nodes below —'], ...ups.map((u) => [api.idOf(u), `${api.idOf(u)}${u.value.name ? ` (${u.value.name})` : ''}`])]},
      {path: 'upstream.nodes', label: 'Nodes (when no upstream is chosen)', type: 'nodes', placeholder: '127.0.0.1:9000 1',
        help: 'One per line: host:port weight. Used when no upstream is chosen above.'},
      {path: 'upstream.type', label: 'Balancer', type: 'select', options: [['roundrobin', 'round robin'], ['chash', 'consistent hash'], ['least_conn', 'least connections']]},
      {path: 'idle_timeout', label: 'Idle timeout (s)', type: 'number', min: 0},
      {path: 'tls_passthrough', label: 'TLS passthrough (the game server terminates TLS)', type: 'checkbox', omitIfFalse: true},
      {path: 'web_acl_id', label: 'Web ACL', placeholder: 'id of a web ACL'},
      {path: 'desc', label: 'Description', type: 'textarea', rows: 2, wide: true},
      {path: 'plugins', label: 'Plugins (JSON)', type: 'json', rows: 4, wide: true, help: 'APISIX stream plugins: ip-restriction, limit-conn.'},
    ];
  },
  prepare(resource) {
    // With an upstream chosen, the inline one is not sent at all.
    if (resource.upstream_id !== undefined || !resource.upstream || resource.upstream.nodes === undefined) delete resource.upstream;
  },
};

function snis(v) {
  return v.sni || (Array.isArray(v.snis) ? v.snis.join(', ') : '');
}

function match(v) {
  const parts = [];
  if (v.server_port !== undefined) parts.push(`port ${v.server_port}`);
  if (v.server_addr) parts.push(`to ${v.server_addr}`);
  if (v.remote_addr) parts.push(`from ${v.remote_addr}`);
  if (v.tls_passthrough) parts.push('passthrough');
  return parts.join(' · ');
}

export function render(main, [id]) {
  return id ? editPage(main, id, SPEC) : listPage(main, SPEC);
}
