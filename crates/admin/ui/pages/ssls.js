// SSLs (APISIX `ssls`): certificates by SNI, the soonest to expire first
// (/ui/api/certificates parses each certificate), and an upload form for a
// PEM certificate and its private key. Private keys are never shown: the
// Admin API does not return them.

import {h, replace, fmtDate, pageHead, linkButton, errorBox} from '../dom.js';
import * as api from '../api.js';
import {dataTable} from '../table.js';
import {editPage, idLink, deleteButton} from './resource.js';
import {daysBadge} from './overview.js';

const SPEC = {
  kind: 'ssls',
  title: 'SSLs',
  singular: 'SSL',
  intro: 'The certificate and key the gateway presents for these SNIs (stream and edge listeners). The private key is stored encrypted when a keyring is configured, and never shown again.',
  fields: async (value, isNew) => [
    {path: 'snis', label: 'SNIs', type: 'list', required: true, placeholder: 'gs-1.example.com, *.rooms.example.com', help: 'Comma separated; a wildcard covers one label.'},
    {path: 'cert', label: 'Certificate (PEM)', type: 'pem', rows: 8, wide: true, required: true, placeholder: '-----BEGIN CERTIFICATE-----'},
    {path: 'key', label: 'Private key (PEM)', type: 'pem', rows: 6, wide: true, required: isNew, placeholder: isNew ? '-----BEGIN PRIVATE KEY-----' : 'Leave empty to keep the stored key (same certificate only)'},
    {path: 'desc', label: 'Description', type: 'textarea', rows: 2, wide: true},
  ],
};

export async function render(main, [id]) {
  if (id) return editPage(main, id, SPEC);
  let certs;
  try {
    certs = (await api.dashboard('certificates')).list;
  } catch (e) {
    replace(main, pageHead('SSLs'), errorBox(e));
    return;
  }
  const write = api.canWrite();
  const columns = [
    {label: 'ID', cell: (c) => idLink('ssls', c.id)},
    {label: 'SNIs', cell: (c) => h('span', {class: 'mono'}, (c.snis || []).join(', '))},
    {label: 'Expires', cell: (c) => c.error ? h('span', {class: 'bad'}, c.error) : h('span', {'data-test': `expires-${c.id}`}, fmtDate(c.not_after))},
    {label: 'Days left', cell: (c) => h('span', {'data-test': `days-${c.id}`}, daysBadge(c))},
    {label: 'Issuer', cell: (c) => h('span', {class: 'small'}, c.issuer || '')},
  ];
  let table;
  if (write) {
    columns.push({label: '', class: 'row-actions', cell: (c) => h('div', {class: 'actions'},
      linkButton(`#/ssls/${encodeURIComponent(c.id)}`, 'Replace', 'btn btn-small', `edit-${c.id}`),
      deleteButton('ssls', c.id, 'SSL', async () => table.update((await api.dashboard('certificates')).list)))});
  }
  table = dataTable({
    columns,
    rows: certs,
    text: (c) => `${c.id} ${(c.snis || []).join(' ')} ${c.issuer || ''} ${c.subject || ''}`,
    empty: 'No SSL objects yet.',
    test: 'ssls-table',
    placeholder: 'Search SNIs',
  });
  replace(main,
    pageHead('SSLs', write ? linkButton('#/ssls/new', 'Upload certificate', 'btn btn-primary', 'new-ssls') : null),
    h('p', {class: 'intro'}, 'Sorted by expiry, soonest first. Expired certificates keep serving (as APISIX); renew them before players see warnings.'),
    table.element);
}
