// Invalidations (CloudFront's CreateInvalidation): remove cached objects of
// a distribution by path (`*` at the end for a prefix). The list shows each
// one's status, InProgress until every gateway runs the revision that
// holds it, then Completed; it refreshes by itself while one is in progress,
// more slowly the longer it lasts, and stops when the page is left.

import {h, replace, toast, pageHead, fmtDate, badge} from '../dom.js';
import * as api from '../api.js';
import {dataTable} from '../table.js';
import {resourceForm} from '../form.js';
import {idLink} from './resource.js';
import {repeat} from '../stats.js';

/** Milliseconds to the first refresh while an invalidation is in progress. */
const REFRESH_MS = 2000;
/** The longest wait between two refreshes: each one waits 1.5 times the last, up to this. */
const REFRESH_MAX_MS = 30000;

function progress(status) {
  const done = status === 'Completed';
  const bar = h('span', {class: `progress${done ? ' done' : ''}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': done ? 100 : 50},
    h('span', {class: 'progress-fill'}));
  return h('span', {class: 'progress-cell', 'data-test': 'invalidation-status'}, bar, ' ', badge(status || 'unknown', done ? 'ok' : 'warn'));
}

export async function render(main) {
  const [items, dists] = await Promise.all([api.list('invalidations'), api.list('distributions').catch(() => [])]);
  const newestFirst = (list) => list.slice().sort((a, b) => (b.value.create_time || 0) - (a.value.create_time || 0));
  const table = dataTable({
    columns: [
      {label: 'ID', cell: (it) => h('span', {class: 'mono'}, api.idOf(it))},
      {label: 'Distribution', cell: (it) => idLink('distributions', String(it.value.distribution_id))},
      {label: 'Paths', cell: (it) => h('span', {class: 'mono'}, (it.value.paths || []).join(', '))},
      {label: 'Status', cell: (it) => progress(it.value.status)},
      {label: 'Created', cell: (it) => fmtDate(it.value.create_time)},
      {label: 'Reference', cell: (it) => it.value.caller_reference || ''},
    ],
    rows: newestFirst(items),
    text: (it) => `${api.idOf(it)} ${it.value.distribution_id} ${(it.value.paths || []).join(' ')} ${it.value.status} ${it.value.caller_reference || ''}`,
    empty: 'No invalidations yet.',
    test: 'invalidations-table',
    placeholder: 'Search invalidations',
  });

  // Refreshes the list until nothing is in progress; a new invalidation
  // starts it again from REFRESH_MS. Never after the page was left.
  let closed = false;
  let stopRefresh = () => {};
  const refresh = () => {
    stopRefresh();
    if (closed) return;
    let wait = REFRESH_MS;
    stopRefresh = repeat(async (alive) => {
      let fresh;
      try {
        fresh = await api.list('invalidations');
      } catch (e) {
        if (alive() && e.status !== 401) toast(e.message, 'bad');
        return null;
      }
      if (!alive()) return null;
      table.update(newestFirst(fresh));
      if (!fresh.some((it) => it.value.status !== 'Completed')) return null;
      const next = wait;
      wait = Math.min(wait * 1.5, REFRESH_MAX_MS);
      return next;
    });
  };

  const form = api.canWrite() ? resourceForm({
    fields: [
      {path: 'distribution_id', label: 'Distribution', type: 'select', required: true,
        options: [['', '— choose —'], ...dists.map((d) => [api.idOf(d), `${api.idOf(d)}${d.value.hosts ? ` (${d.value.hosts.join(', ')})` : ''}`])]},
      {path: 'paths', label: 'Paths', type: 'list', required: true, wide: true, placeholder: '/example.file, /patch/*', help: 'Comma or line separated; * only at the end, for every path with that prefix. Every channel of a path is invalidated.'},
      {path: 'caller_reference', label: 'Reference', placeholder: 'patch 1.4.2'},
    ],
    submitLabel: 'Create invalidation',
    test: 'invalidation-form',
    submit: async (resource) => {
      const answer = await api.save('invalidations', null, resource);
      toast(`Invalidation ${api.idOf(answer)} created.`);
      form.reset();
      refresh();
    },
  }) : null;

  replace(main,
    pageHead('Invalidations'),
    h('p', {class: 'intro'}, 'Cached objects stay until they expire unless invalidated. An invalidation cannot change once created.'),
    form ? h('div', {class: 'card'}, h('h2', {}, 'New invalidation'), form) : null,
    table.element);
  refresh();
  return () => {
    closed = true;
    stopRefresh();
  };
}
