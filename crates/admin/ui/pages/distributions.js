// Distributions (CloudFront's model): the hosts an edge listener answers,
// their origins, and the behaviors that choose an origin and a cache policy
// by path pattern (in order, then the default behavior).

import {h} from '../dom.js';
import {listPage, editPage, idLink} from './resource.js';

function hosts(v) {
  return v.staging ? 'staging' : (v.hosts || []).join(', ');
}

function behaviors(v) {
  const rows = [...(v.behaviors || []), ...(v.default_behavior ? [{...v.default_behavior, path_pattern: 'default'}] : [])];
  return h('ul', {class: 'plain small'}, rows.map((b) => h('li', {},
    h('span', {class: 'mono'}, b.path_pattern), ' → ',
    b.origin || Object.keys(v.origins || {})[0] || '',
    b.cache_policy_id !== undefined ? [' · ', idLink('cache_policies', String(b.cache_policy_id))] : null,
    b.rewrite && b.rewrite.path_prefix_from_header ? ` · channel ${b.rewrite.path_prefix_from_header}` : null)));
}

const SPEC = {
  kind: 'distributions',
  title: 'Distributions',
  singular: 'distribution',
  intro: 'Asset delivery on the edge listeners: hosts, origins, and behaviors by path pattern (tried in order, then the default behavior).',
  columns: [
    {label: 'Hosts', cell: (it) => h('span', {class: 'mono'}, hosts(it.value))},
    {label: 'Origins', cell: (it) => Object.keys(it.value.origins || {}).join(', ')},
    {label: 'Behaviors', cell: (it) => behaviors(it.value)},
    {label: 'Canary', cell: (it) => it.value.continuous_deployment_policy_id !== undefined ? h('a', {href: '#/canary'}, String(it.value.continuous_deployment_policy_id)) : ''},
    {label: 'Web ACL', cell: (it) => it.value.web_acl_id !== undefined ? idLink('web_acls', String(it.value.web_acl_id)) : ''},
  ],
  text: (it) => `${it.value.name || ''} ${hosts(it.value)} ${Object.keys(it.value.origins || {}).join(' ')}`,
  defaults: {
    hosts: ['assets.example.com'],
    origins: {s3: {upstream: {nodes: {'127.0.0.1:8000': 1}}}},
    default_behavior: {},
  },
  fields: async () => [
    {path: 'name', label: 'Name'},
    {path: 'hosts', label: 'Hosts', type: 'list', placeholder: 'assets.example.com, *.cdn.example.com', help: 'Not for a staging distribution.'},
    {path: 'staging', label: 'Staging (reached only through a canary policy)', type: 'checkbox', omitIfFalse: true},
    {path: 'continuous_deployment_policy_id', label: 'Canary policy', placeholder: 'id of a continuous deployment policy'},
    {path: 'web_acl_id', label: 'Web ACL', placeholder: 'id of a web ACL'},
    {path: 'origins', label: 'Origins (JSON)', type: 'json', rows: 6, wide: true, help: 'By name: {"s3": {"upstream": {"nodes": {"host:port": 1}}, "origin_path": "/prod"}}'},
    {path: 'default_behavior', label: 'Default behavior (JSON)', type: 'json', rows: 4, wide: true, help: '{"cache_policy_id": "vendor", "rewrite": {"path_prefix_from_header": "x-vendor-type"}}'},
    {path: 'behaviors', label: 'Behaviors (JSON, in order)', type: 'json', rows: 6, wide: true, help: '[{"path_pattern": "/patch/*", "cache_policy_id": "patch-notes"}]'},
    {path: 'desc', label: 'Description', type: 'textarea', rows: 2, wide: true},
  ],
};

export function render(main, [id]) {
  return id ? editPage(main, id, SPEC) : listPage(main, SPEC);
}
