// DOM helpers. Every piece of data reaches the page as a text node or an
// attribute value, never as HTML, so nothing the gateway stores (a route's
// name, a sampled request's headers) can inject markup or script.

/**
 * Creates an element: h('a', {href: '#/x', class: 'btn', onclick: fn}, 'text', child).
 * Attribute values are set with setAttribute; `on*` keys add listeners;
 * children that are strings or numbers become text nodes; null and false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Removes every child of `el` and appends `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A date from unix seconds, as `2026-06-17 14:03 UTC`. */
export function fmtDate(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '—';
  const d = new Date(secs * 1000);
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

/** A time of day from unix seconds, local time, `14:03:22`. */
export function fmtClock(secs) {
  return new Date(secs * 1000).toLocaleTimeString([], {hour12: false});
}

/** A number with at most `digits` decimals and thousands separators. */
export function fmtNum(n, digits = 1) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', {maximumFractionDigits: digits});
}

/** A status badge: kind is one of ok, warn, bad, info, muted. */
export function badge(text, kind = 'muted') {
  return h('span', {class: `badge badge-${kind}`}, text);
}

/** Shows a short message in the corner for a few seconds. */
export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div', {class: `toast toast-${kind}`, role: kind === 'bad' ? 'alert' : 'status'}, message);
  box.appendChild(t);
  setTimeout(() => t.remove(), 5000);
}

/**
 * Asks for confirmation in a modal <dialog>. Resolves true when the user
 * confirms, false on cancel or Escape.
 */
export function confirmDialog({title, message, confirm = 'Confirm', danger = false}) {
  return new Promise((resolve) => {
    const ok = h('button', {type: 'submit', class: danger ? 'btn btn-danger' : 'btn btn-primary', value: 'ok', 'data-test': 'confirm-ok'}, confirm);
    const cancel = h('button', {type: 'submit', class: 'btn', value: 'cancel', 'data-test': 'confirm-cancel'}, 'Cancel');
    const dialog = h('dialog', {class: 'dialog', 'aria-labelledby': 'dialog-title'},
      h('form', {method: 'dialog'},
        h('h2', {id: 'dialog-title'}, title),
        h('p', {class: 'dialog-message'}, message),
        h('div', {class: 'actions'}, cancel, ok)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/**
 * Cancels every open confirmation (navigation, sign-out, a lost session):
 * a dialog about the page that was left must not act later. Each one's
 * promise resolves false.
 */
export function closeDialogs() {
  for (const dialog of document.querySelectorAll('dialog')) {
    if (dialog.open) dialog.close('cancel');
  }
}

/** The JSON of `value`, indented, for <pre> blocks and editors. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A page heading with optional action buttons on the right. */
export function pageHead(title, ...actions) {
  return h('div', {class: 'page-head'}, h('h1', {}, title), h('div', {class: 'actions'}, ...actions));
}

/** A link styled as a button. */
export function linkButton(href, text, cls = 'btn btn-primary', test = null) {
  return h('a', {href, class: cls, 'data-test': test}, text);
}

/** An error box for a failed load. */
export function errorBox(err) {
  return h('p', {class: 'error-box', role: 'alert'}, err && err.message ? err.message : String(err));
}
