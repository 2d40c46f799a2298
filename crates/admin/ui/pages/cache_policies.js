// Cache policies (CloudFront's CachePolicyConfig): TTL bounds and what
// joins the cache key.

import {listPage, editPage} from './resource.js';

const KEY_BEHAVIORS = [['', '— none set —'], ['none', 'none'], ['all', 'all'], ['whitelist', 'whitelist'], ['all_except', 'all except']];

function keyItems(k) {
  if (!k) return '';
  return k.items && k.items.length ? `${k.behavior}: ${k.items.join(', ')}` : k.behavior;
}

function ttl(v) {
  return v === undefined ? 'default' : `${v} s`;
}

const SPEC = {
  kind: 'cache_policies',
  title: 'Cache policies',
  singular: 'cache policy',
  intro: 'TTLs bound what origins say (CloudFront rules: default when the origin says nothing), and the headers, query strings and cookies that join the cache key.',
  columns: [
    {label: 'Name', cell: (it) => it.value.name || ''},
    {label: 'TTL min / default / max', cell: (it) => `${ttl(it.value.min_ttl)} / ${ttl(it.value.default_ttl)} / ${ttl(it.value.max_ttl)}`},
    {label: 'Headers in key', cell: (it) => (it.value.headers || []).join(', ')},
    {label: 'Query strings', cell: (it) => keyItems(it.value.query_strings)},
    {label: 'Cookies', cell: (it) => keyItems(it.value.cookies)},
  ],
  text: (it) => `${it.value.name || ''} ${(it.value.headers || []).join(' ')}`,
  defaults: {},
  fields: async () => [
    {path: 'name', label: 'Name'},
    {path: 'min_ttl', label: 'Minimum TTL (s)', type: 'number', min: 0, step: 1, placeholder: '0'},
    {path: 'default_ttl', label: 'Default TTL (s)', type: 'number', min: 0, step: 1, placeholder: '86400'},
    {path: 'max_ttl', label: 'Maximum TTL (s)', type: 'number', min: 0, step: 1, placeholder: '31536000'},
    {path: 'headers', label: 'Headers in the cache key', type: 'list', placeholder: 'x-vendor-type'},
    {path: 'query_strings.behavior', label: 'Query strings in the key', type: 'select', options: KEY_BEHAVIORS},
    {path: 'query_strings.items', label: 'Query string names', type: 'list', placeholder: 'v, lang'},
    {path: 'cookies.behavior', label: 'Cookies in the key', type: 'select', options: KEY_BEHAVIORS},
    {path: 'cookies.items', label: 'Cookie names', type: 'list'},
    {path: 'desc', label: 'Description', type: 'textarea', rows: 2, wide: true},
  ],
  prepare(resource) {
    // An empty key part is left out rather than sent half-filled.
    for (const part of ['query_strings', 'cookies']) {
      if (resource[part] && Object.keys(resource[part]).length === 0) delete resource[part];
    }
  },
};

export function render(main, [id]) {
  return id ? editPage(main, id, SPEC) : listPage(main, SPEC);
}
