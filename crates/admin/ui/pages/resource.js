// The list and edit pages every Admin API kind shares: a searchable,
// paginated table with edit and delete (with confirmation), and a form that
// PUTs (with an id) or POSTs (without) and shows the Admin API's errors
// next to their field. Read-only users get the table and a JSON view, no
// write controls.

import {h, replace, toast, confirmDialog, pageHead, linkButton, pretty} from '../dom.js';
import * as api from '../api.js';
import {dataTable} from '../table.js';
import {resourceForm} from '../form.js';

/** A link to a resource's page. */
export function idLink(kind, id) {
  return h('a', {href: `#/${kind}/${encodeURIComponent(id)}`, class: 'mono', 'data-test': `link-${kind}-${id}`}, id);
}

/** The delete button of a resource; `after()` runs once it is gone. */
export function deleteButton(kind, id, singular, after, cls = 'btn btn-small btn-danger') {
  return h('button', {type: 'button', class: cls, 'data-test': `delete-${id}`, onclick: async () => {
    const ok = await confirmDialog({
      title: `Delete ${singular} ${id}?`,
      message: `The ${singular} ${id} is removed from the gateway at once. This cannot be undone.`,
      confirm: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await api.remove(kind, id);
      toast(`Deleted ${singular} ${id}.`);
      after();
    } catch (e) {
      toast(e.message, 'bad');
    }
  }}, 'Delete');
}

/**
 * A list page. spec: {kind, title, singular, columns, text(item), intro,
 * decorate(items) -> Promise (extra data before drawing), editHref(id)}.
 */
export async function listPage(main, spec) {
  const items = await api.list(spec.kind);
  if (spec.decorate) await spec.decorate(items);
  const columns = [
    {label: 'ID', cell: (it) => idLink(spec.kind, api.idOf(it))},
    ...spec.columns,
  ];
  const write = api.canWrite();
  let table;
  const reload = async () => {
    const fresh = await api.list(spec.kind);
    if (spec.decorate) await spec.decorate(fresh);
    table.update(fresh);
  };
  if (write) {
    columns.push({label: '', class: 'row-actions', cell: (it) => h('div', {class: 'actions'},
      linkButton(spec.editHref ? spec.editHref(api.idOf(it)) : `#/${spec.kind}/${encodeURIComponent(api.idOf(it))}`, 'Edit', 'btn btn-small', `edit-${api.idOf(it)}`),
      deleteButton(spec.kind, api.idOf(it), spec.singular, () => reload().catch((e) => toast(e.message, 'bad'))))});
  }
  table = dataTable({
    columns,
    rows: items,
    text: (it) => `${api.idOf(it)} ${spec.text(it)}`,
    empty: `No ${spec.title.toLowerCase()} yet.`,
    test: `${spec.kind}-table`,
    placeholder: `Search ${spec.title.toLowerCase()}`,
  });
  replace(main,
    pageHead(spec.title, write ? linkButton(`#/${spec.kind}/new`, `New ${spec.singular}`, 'btn btn-primary', `new-${spec.kind}`) : null),
    spec.intro ? h('p', {class: 'intro'}, spec.intro) : null,
    table.element);
}

/**
 * An edit page (`id` is 'new' to create). spec: {kind, title, singular,
 * fields(existing) -> field list, defaults, prepare(resource) (last changes
 * before sending), after(id)}.
 */
export async function editPage(main, id, spec) {
  const isNew = id === 'new';
  const value = isNew ? structuredClone(spec.defaults || {}) : api.editable(await api.get(spec.kind, id));
  const back = `#/${spec.kind}`;
  const heading = isNew ? `New ${spec.singular}` : `${spec.singular[0].toUpperCase()}${spec.singular.slice(1)} ${id}`;
  if (!api.canWrite()) {
    replace(main, pageHead(heading, linkButton(back, 'Back', 'btn')),
      h('pre', {class: 'json card', 'data-test': 'resource-json'}, pretty(value)));
    return;
  }
  const fields = await spec.fields(value, isNew);
  if (isNew) fields.unshift({path: 'id', label: 'ID', help: 'Optional: without one the gateway picks a numeric id.', placeholder: 'e.g. gs-1'});
  const form = resourceForm({
    fields,
    value,
    cancelHref: back,
    submitLabel: isNew ? `Create ${spec.singular}` : 'Save changes',
    submit: async (resource) => {
      const target = isNew ? resource.id : id;
      delete resource.id;
      if (spec.prepare) spec.prepare(resource);
      const answer = await api.save(spec.kind, target, resource);
      const saved = target || api.idOf(answer);
      toast(`${isNew ? 'Created' : 'Saved'} ${spec.singular} ${saved}.`);
      location.hash = spec.after ? spec.after(saved) : back;
    },
  });
  replace(main,
    pageHead(heading, isNew ? null : deleteButton(spec.kind, id, spec.singular, () => { location.hash = back; }, 'btn btn-danger')),
    spec.intro ? h('p', {class: 'intro'}, spec.intro) : null,
    h('div', {class: 'card'}, form));
}
