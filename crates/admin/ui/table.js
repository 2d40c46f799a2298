// A table with a search box and pages of 50 rows, so a gateway with
// thousands of routes renders 50 rows at a time. Filtering happens in the
// browser over the list the Admin API returned. On a phone each row becomes
// a card (CSS), so nothing scrolls sideways.

import {h, replace, fmtNum} from './dom.js';

/** Rows per page. */
export const PAGE_SIZE = 50;

/**
 * columns: [{label, cell(row) -> Node|string, class}]; rows: any[];
 * text(row): the text the search box matches (case-insensitive).
 * Returns {element, update(rows)}.
 */
export function dataTable({columns, rows, text, empty = 'Nothing here yet.', test = 'table', placeholder = 'Search'}) {
  let all = rows;
  let page = 0;
  let query = '';
  const search = h('input', {type: 'search', class: 'search', placeholder, 'aria-label': placeholder, 'data-test': `${test}-search`});
  const count = h('span', {class: 'muted count', 'data-test': `${test}-count`});
  const body = h('tbody');
  const prev = h('button', {type: 'button', class: 'btn btn-small', 'data-test': `${test}-prev`}, '‹ Previous');
  const next = h('button', {type: 'button', class: 'btn btn-small', 'data-test': `${test}-next`}, 'Next ›');
  const where = h('span', {class: 'muted', 'data-test': `${test}-page`});
  const table = h('table', {class: 'table', 'data-test': test},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col', class: c.class || null}, c.label)))),
    body);

  function filtered() {
    if (!query) return all;
    return all.filter((row) => text(row).toLowerCase().includes(query));
  }

  function render() {
    const list = filtered();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const start = page * PAGE_SIZE;
    const shown = list.slice(start, start + PAGE_SIZE);
    replace(body, shown.length === 0
      ? h('tr', {class: 'empty'}, h('td', {colspan: columns.length}, all.length === 0 ? empty : 'No match.'))
      : shown.map((row) => h('tr', {}, columns.map((c) => h('td', {'data-label': c.label, class: c.class || null}, c.cell(row))))));
    replace(count, query ? `${fmtNum(list.length, 0)} of ${fmtNum(all.length, 0)}` : `${fmtNum(all.length, 0)} total`);
    replace(where, list.length ? `${fmtNum(start + 1, 0)}–${fmtNum(start + shown.length, 0)} · page ${page + 1} of ${pages}` : '');
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  search.addEventListener('input', () => {
    query = search.value.trim().toLowerCase();
    page = 0;
    render();
  });
  prev.addEventListener('click', () => { page -= 1; render(); });
  next.addEventListener('click', () => { page += 1; render(); });
  render();

  const element = h('div', {class: 'table-box'},
    h('div', {class: 'table-tools'}, search, count),
    h('div', {class: 'table-wrap'}, table),
    h('div', {class: 'pager'}, prev, where, next));
  return {element, update(rows2) { all = rows2; render(); }};
}
