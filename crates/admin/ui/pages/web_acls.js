// Web ACLs (AWS WAF v2 JSON, as AWS writes it): the list, and for each ACL
// its rules with live counters (shardgate_waf_requests_total by rule) and
// the requests it sampled over the last minutes, as the AWS console shows
// them (GET /apisix/admin/web_acls/<id>/sampled_requests).

import {h, replace, pageHead, linkButton, fmtNum, fmtClock, badge} from '../dom.js';
import * as api from '../api.js';
import {dataTable} from '../table.js';
import {listPage, editPage, deleteButton} from './resource.js';
import {pollStats, counter, rate, repeat} from '../stats.js';

const KIND = 'web_acls';
/** Milliseconds between two reads of the sampled requests. */
const SAMPLES_MS = 5000;
const WINDOWS = [[3, 'Last 3 minutes'], [10, 'Last 10 minutes'], [60, 'Last hour'], [180, 'Last 3 hours']];

function actionOf(a) {
  if (!a) return '';
  return Object.keys(a)[0] || '';
}

function actionBadge(name) {
  const n = String(name).toUpperCase();
  return badge(n, n === 'BLOCK' ? 'bad' : n === 'COUNT' ? 'warn' : n === 'ALLOW' ? 'ok' : 'muted');
}

function statementKind(s) {
  return s ? Object.keys(s)[0] || '' : '';
}

const SPEC = {
  kind: KIND,
  title: 'Web ACLs',
  singular: 'web ACL',
  intro: 'AWS WAF v2 web ACLs, in AWS\'s own JSON. A distribution (web_acl_id), a stream route or a stream listener names the ACL that inspects its traffic.',
  columns: [
    {label: 'Name', cell: (it) => it.value.Name || ''},
    {label: 'Default action', cell: (it) => actionBadge(actionOf(it.value.DefaultAction))},
    {label: 'Rules', cell: (it) => (it.value.Rules || []).map((r) => r.Name).join(', ')},
  ],
  text: (it) => `${it.value.Name || ''} ${(it.value.Rules || []).map((r) => r.Name).join(' ')}`,
  defaults: {
    Name: 'game-assets',
    DefaultAction: {Allow: {}},
    VisibilityConfig: {SampledRequestsEnabled: true, CloudWatchMetricsEnabled: true, MetricName: 'game-assets'},
    Rules: [],
  },
  fields: async () => [
    {path: 'Name', label: 'Name'},
    {path: 'DefaultAction', label: 'Default action (JSON)', type: 'json', rows: 2, wide: true, placeholder: '{"Allow": {}}'},
    {path: 'VisibilityConfig', label: 'Visibility (JSON)', type: 'json', rows: 5, wide: true},
    {path: 'Rules', label: 'Rules (JSON, AWS WAF v2)', type: 'json', rows: 16, wide: true},
    {path: 'CustomResponseBodies', label: 'Custom response bodies (JSON)', type: 'json', rows: 3, wide: true},
    {path: 'Description', label: 'Description', type: 'textarea', rows: 2, wide: true},
  ],
  after: (id) => `#/web_acls/${encodeURIComponent(id)}`,
  editHref: (id) => `#/web_acls/${encodeURIComponent(id)}/edit`,
};

function headerValue(sample, name) {
  const hd = (sample.Request.Headers || []).find((x) => x.Name.toLowerCase() === name);
  return hd ? hd.Value : '';
}

async function detail(main, id) {
  const acl = await api.get(KIND, id);
  const rules = (acl.Rules || []).slice().sort((a, b) => a.Priority - b.Priority);
  const rows = [...rules.map((r) => ({name: r.Name, priority: r.Priority, action: actionOf(r.Action || r.OverrideAction), statement: statementKind(r.Statement)})),
    {name: 'default', priority: '—', action: actionOf(acl.DefaultAction), statement: 'Default action'}];
  const counterCells = new Map();
  const rulesTable = h('table', {class: 'table', 'data-test': 'rules-table'},
    h('thead', {}, h('tr', {}, ['Priority', 'Rule', 'Action', 'Statement', 'Requests', 'Rate'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, rows.map((r) => {
      const count = h('span', {'data-test': `rule-count-${r.name}`}, '…');
      const per = h('span', {class: 'muted', 'data-test': `rule-rate-${r.name}`}, '');
      counterCells.set(r.name, [count, per]);
      return h('tr', {},
        h('td', {'data-label': 'Priority'}, String(r.priority)),
        h('td', {'data-label': 'Rule', class: 'mono'}, r.name),
        h('td', {'data-label': 'Action'}, actionBadge(r.action)),
        h('td', {'data-label': 'Statement', class: 'small'}, r.statement),
        h('td', {'data-label': 'Requests'}, count),
        h('td', {'data-label': 'Rate'}, per));
    })));

  let windowMin = 3;
  let ruleFilter = '';
  const ruleSelect = h('select', {'aria-label': 'Rule', 'data-test': 'samples-rule'},
    h('option', {value: ''}, 'All rules'), rows.map((r) => h('option', {value: r.name}, r.name === 'default' ? 'Default action' : r.name)));
  const population = h('span', {class: 'muted', 'data-test': 'samples-population'});
  const windowSelect = h('select', {'aria-label': 'Time range', 'data-test': 'samples-window'}, WINDOWS.map(([m, label]) => h('option', {value: m}, label)));
  let samples = [];
  const samplesTable = dataTable({
    columns: [
      {label: 'Time', cell: (s) => fmtClock(s.Timestamp)},
      {label: 'Client', cell: (s) => h('span', {class: 'mono'}, s.Request.ClientIP + (s.Request.Country ? ` (${s.Request.Country})` : ''))},
      {label: 'Request', cell: (s) => h('span', {class: 'mono break'}, `${s.Request.Method} ${s.Request.URI}`)},
      {label: 'Rule', cell: (s) => s.RuleName || 'default'},
      {label: 'Action', cell: (s) => actionBadge(s.Action)},
      {label: 'User-Agent', cell: (s) => h('span', {class: 'small break'}, headerValue(s, 'user-agent'))},
      {label: 'Headers', cell: (s) => h('details', {}, h('summary', {}, `${(s.Request.Headers || []).length} headers`),
        h('dl', {class: 'headers'}, (s.Request.Headers || []).map((x) => [h('dt', {}, x.Name), h('dd', {class: 'break'}, x.Value)])))},
    ],
    rows: [],
    text: (s) => `${s.Request.ClientIP} ${s.Request.Method} ${s.Request.URI} ${s.RuleName || 'default'} ${s.Action} ${headerValue(s, 'user-agent')}`,
    empty: 'No sampled requests in this time range.',
    test: 'samples-table',
    placeholder: 'Search samples',
  });
  const showSamples = () => {
    const since = Date.now() / 1000 - windowMin * 60;
    samplesTable.update(samples
      .filter((s) => s.Timestamp >= since && (!ruleFilter || (s.RuleName || 'default') === ruleFilter))
      .sort((a, b) => b.Timestamp - a.Timestamp));
  };
  windowSelect.addEventListener('change', () => { windowMin = Number(windowSelect.value); showSamples(); });
  ruleSelect.addEventListener('change', () => { ruleFilter = ruleSelect.value; showSamples(); });

  // The samples are read every SAMPLES_MS until the page is left; Refresh
  // reads them at once and starts the interval again.
  let closed = false;
  let stopSamples = () => {};
  const loadSamples = () => {
    stopSamples();
    if (closed) return;
    stopSamples = repeat(async (alive) => {
      try {
        const answer = await api.getSub(KIND, id, 'sampled_requests');
        if (!alive()) return null;
        samples = answer.SampledRequests || [];
        population.textContent = `${fmtNum(answer.PopulationSize || 0, 0)} matching requests since start, ${fmtNum(samples.length, 0)} kept`;
        showSamples();
      } catch (e) {
        if (!alive() || e.status === 401) return null;
        population.textContent = e.message;
      }
      return SAMPLES_MS;
    });
  };
  const refresh = h('button', {type: 'button', class: 'btn btn-small', 'data-test': 'samples-refresh', onclick: loadSamples}, 'Refresh');

  const write = api.canWrite();
  replace(main,
    pageHead(`Web ACL ${acl.Name || id}`,
      linkButton('#/web_acls', 'All web ACLs', 'btn'),
      write ? linkButton(`#/web_acls/${encodeURIComponent(id)}/edit`, 'Edit', 'btn', 'edit-acl') : null,
      write ? deleteButton(KIND, id, 'web ACL', () => { location.hash = '#/web_acls'; }, 'btn btn-danger') : null),
    h('section', {class: 'card'}, h('h2', {}, 'Rules'), h('p', {class: 'muted small'}, 'Requests each rule decided (or counted) since the gateway started, and the rate over the last 2 s.'),
      h('div', {class: 'table-wrap'}, rulesTable)),
    h('section', {class: 'card', 'data-test': 'samples'},
      h('div', {class: 'card-head'}, h('h2', {}, 'Sampled requests'), ruleSelect, windowSelect, refresh),
      h('p', {}, population),
      samplesTable.element));

  const stopStats = pollStats((cur, prev) => {
    for (const [rule, [count, per]] of counterCells) {
      const value = (s) => counter(s, 'shardgate_waf_requests', (l) => l.web_acl === id && l.rule === rule);
      count.textContent = fmtNum(value(cur), 0);
      const r = rate(prev, cur, value);
      per.textContent = r === null ? '' : `${fmtNum(r, 1)}/s`;
    }
  });
  loadSamples();
  return () => {
    closed = true;
    stopSamples();
    stopStats();
  };
}

export function render(main, [id, sub]) {
  if (!id) return listPage(main, SPEC);
  if (id === 'new' || sub === 'edit') return editPage(main, id, SPEC);
  return detail(main, id);
}
