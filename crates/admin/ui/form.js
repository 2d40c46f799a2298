// Forms over Admin API resources. A form is a list of fields, each bound to
// a JSON path of the resource; submitting collects the resource, and a 400
// from the Admin API is shown next to the field whose path its `error_msg`
// names (the longest field path that is a prefix of it), or at the top of
// the form when it names none of them.

import {h, replace} from './dom.js';
import {ApiError, pathSegments} from './api.js';

function getPath(obj, segments) {
  let v = obj;
  for (const s of segments) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[s];
  }
  return v;
}

function setPath(obj, segments, value) {
  let o = obj;
  segments.slice(0, -1).forEach((s) => {
    if (o[s] === null || typeof o[s] !== 'object') o[s] = {};
    o = o[s];
  });
  o[segments[segments.length - 1]] = value;
}

function deletePath(obj, segments) {
  const parent = getPath(obj, segments.slice(0, -1));
  if (parent && typeof parent === 'object') delete parent[segments[segments.length - 1]];
}

/** Splits `host:port` (also `[v6]:port`) at the last colon. */
function splitHostPort(addr) {
  const i = addr.lastIndexOf(':');
  if (i <= 0) return {host: addr, port: NaN};
  return {host: addr.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(addr.slice(i + 1))};
}

/** Upstream nodes as lines `host:port weight [priority]`. */
export function nodesToText(nodes) {
  if (Array.isArray(nodes)) {
    return nodes.map((n) => {
      const host = String(n.host).includes(':') ? `[${n.host}]` : n.host;
      const parts = [`${host}:${n.port}`, n.weight ?? 1];
      if (n.priority !== undefined) parts.push(n.priority);
      return parts.join(' ');
    }).join('\n');
  }
  if (nodes && typeof nodes === 'object') {
    return Object.entries(nodes).map(([addr, w]) => `${addr} ${w}`).join('\n');
  }
  return '';
}

/**
 * Lines `host:port weight [priority]` as APISIX nodes: the hash form
 * {"host:port": weight} unless a line has a priority or a template
 * (`{sni_label_1}`), which need the array form. Malformed lines are kept as
 * written, so the Admin API names them in its answer.
 */
export function textToNodes(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const rows = lines.map((l) => l.split(/\s+/));
  const arrayForm = rows.some((r) => r.length > 2 || r[0].includes('{'));
  if (arrayForm) {
    return rows.map((r) => {
      const {host, port} = splitHostPort(r[0]);
      const node = {host, port: Number.isNaN(port) ? r[0] : port, weight: r[1] === undefined ? 1 : Number(r[1])};
      if (r[2] !== undefined) node.priority = Number(r[2]);
      return node;
    });
  }
  const out = {};
  for (const r of rows) out[r[0]] = r[1] === undefined ? 1 : (Number.isNaN(Number(r[1])) ? r[1] : Number(r[1]));
  return out;
}

function inputFor(field, value) {
  const id = `f-${field.path.replace(/[^a-zA-Z0-9_-]/g, '-')}`;
  const common = {id, name: field.path, 'data-test': `field-${field.path}`, placeholder: field.placeholder || null,
    required: field.required || null, readonly: field.readonly || null, 'aria-describedby': `${id}-help ${id}-error`};
  switch (field.type) {
    case 'select': {
      const select = h('select', common, ...field.options.map(([v, label]) => h('option', {value: v}, label)));
      select.value = value === undefined ? (field.default ?? field.options[0][0]) : String(value);
      return select;
    }
    case 'checkbox': {
      const box = h('input', {...common, type: 'checkbox', required: null, placeholder: null});
      box.checked = value === undefined ? Boolean(field.default) : Boolean(value);
      return box;
    }
    case 'textarea':
    case 'pem':
      return textarea(common, value === undefined ? '' : String(value), field.rows || 6);
    case 'json':
      return textarea({...common, class: 'mono', spellcheck: 'false'}, value === undefined ? '' : JSON.stringify(value, null, 2), field.rows || 8);
    case 'nodes':
      return textarea({...common, class: 'mono', spellcheck: 'false'}, nodesToText(value), field.rows || 4);
    case 'list':
      return h('input', {...common, type: 'text', value: Array.isArray(value) ? value.join(', ') : (value ?? '')});
    case 'number':
      return h('input', {...common, type: 'number', step: field.step || 'any', min: field.min ?? null, max: field.max ?? null, value: value ?? ''});
    default:
      return h('input', {...common, type: 'text', autocomplete: 'off', spellcheck: 'false', value: value ?? ''});
  }
}

function textarea(attrs, text, rows) {
  const t = h('textarea', {...attrs, rows});
  t.value = text;
  return t;
}

/** Reads one field's input: undefined means "leave it out". */
function readField(field, input) {
  const raw = input.type === 'checkbox' ? input.checked : input.value;
  switch (field.type) {
    case 'checkbox':
      return !raw && field.omitIfFalse ? undefined : raw;
    case 'number': {
      if (raw.trim() === '') return undefined;
      const n = Number(raw);
      return Number.isNaN(n) ? raw : n;
    }
    case 'list': {
      const items = raw.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '');
      return items.length ? items : undefined;
    }
    case 'json': {
      if (raw.trim() === '') return undefined;
      try {
        return JSON.parse(raw);
      } catch (e) {
        throw new FieldError(field.path, `not valid JSON: ${e.message}`);
      }
    }
    case 'nodes':
      return raw.trim() === '' ? undefined : textToNodes(raw);
    case 'select':
      return raw === '' ? undefined : raw;
    default:
      return raw.trim() === '' ? undefined : (field.type === 'pem' ? raw.trim() + '\n' : raw.trim());
  }
}

/** A mistake found before sending (bad JSON in an editor). */
class FieldError extends Error {
  constructor(path, message) {
    super(message);
    this.field = path;
  }
}

/**
 * Builds a form. `fields`: [{path, label, type, help, options, ...}];
 * `value`: the resource being edited (fields it has that the form does not
 * show are kept); `submit(resource)`: an async function that writes it.
 * Returns the <form>.
 */
export function resourceForm({fields, value = {}, submit, submitLabel = 'Save', cancelHref = null, test = 'resource-form'}) {
  const inputs = new Map();
  const top = h('div', {class: 'form-error', role: 'alert', 'data-test': 'form-error', hidden: true});
  const rows = fields.map((field) => {
    const input = inputFor(field, getPath(value, pathSegments(field.path)));
    inputs.set(field.path, input);
    const helpId = `${input.id}-help`;
    const errId = `${input.id}-error`;
    const label = h('label', {for: input.id}, field.label);
    const extra = field.type === 'pem' ? fileLoader(input) : null;
    return h('div', {class: `field field-${field.type || 'text'}${field.wide ? ' field-wide' : ''}`, 'data-field': field.path},
      field.type === 'checkbox' ? h('div', {class: 'check'}, input, label) : [label, input],
      extra,
      field.help ? h('p', {class: 'help', id: helpId}, field.help) : null,
      h('p', {class: 'field-error', id: errId, role: 'alert', 'data-test': `error-${field.path}`, hidden: true}));
  });
  const button = h('button', {type: 'submit', class: 'btn btn-primary', 'data-test': 'submit'}, submitLabel);
  const form = h('form', {class: 'form', novalidate: true, 'data-test': test},
    top, h('div', {class: 'fields'}, rows),
    h('div', {class: 'actions'}, cancelHref ? h('a', {href: cancelHref, class: 'btn'}, 'Cancel') : null, button));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    let resource;
    try {
      resource = structuredClone(value);
      for (const field of fields) {
        const segs = pathSegments(field.path);
        const v = readField(field, inputs.get(field.path));
        if (v === undefined) deletePath(resource, segs);
        else setPath(resource, segs, v);
      }
    } catch (e) {
      showError(form, fields, e);
      return;
    }
    button.disabled = true;
    try {
      await submit(resource);
    } catch (e) {
      showError(form, fields, e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function fileLoader(textareaEl) {
  const input = h('input', {type: 'file', accept: '.pem,.crt,.key,.cer,text/plain', class: 'file'});
  input.addEventListener('change', async () => {
    const file = input.files && input.files[0];
    if (file) textareaEl.value = await file.text();
  });
  return h('div', {class: 'file-row'}, h('span', {class: 'muted'}, 'or load a file: '), input);
}

/** Removes every error shown on `form`. */
export function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error, .form-error')) {
    p.hidden = true;
    p.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/**
 * Shows `err` next to the field it names (an ApiError's JSON path, or a
 * FieldError's), else at the top of the form.
 */
export function showError(form, fields, err) {
  const message = err && err.message ? err.message : String(err);
  const target = err instanceof ApiError || err instanceof FieldError ? bestField(fields, err.field) : null;
  if (target) {
    const row = form.querySelector(`[data-field="${CSS.escape(target.path)}"]`);
    const p = row.querySelector('.field-error');
    p.textContent = message;
    p.hidden = false;
    const input = row.querySelector('input, select, textarea');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    row.scrollIntoView({block: 'center'});
    return;
  }
  const top = form.querySelector('.form-error');
  replace(top, message);
  top.hidden = false;
  top.scrollIntoView({block: 'center'});
}

/** The field whose path is the longest prefix of `path`. */
function bestField(fields, path) {
  if (!path) return null;
  const want = pathSegments(path);
  let best = null;
  let bestLen = 0;
  for (const f of fields) {
    const segs = pathSegments(f.path);
    if (segs.length > want.length || segs.length <= bestLen) continue;
    if (segs.every((s, i) => s === want[i])) {
      best = f;
      bestLen = segs.length;
    }
  }
  return best;
}
