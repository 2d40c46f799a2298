// Sign-in: a user name and password from the bootstrap file's
// `dashboard.users`, or an Admin API key (the admin key, or the viewer key
// for a read-only session). When a session ended by itself (expired, or
// signed out elsewhere), the form says so above its fields.

import {h, replace} from '../dom.js';
import {signIn} from '../api.js';

export function render(main, reason, onSignedIn) {
  let mode = 'password';
  const error = h('p', {class: 'form-error', role: 'alert', 'data-test': 'signin-error', hidden: true});
  const user = h('input', {id: 'signin-user', name: 'username', type: 'text', autocomplete: 'username', required: true, 'data-test': 'signin-user'});
  const pass = h('input', {id: 'signin-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-test': 'signin-password'});
  const key = h('input', {id: 'signin-key', name: 'key', type: 'password', autocomplete: 'off', required: true, 'data-test': 'signin-key'});
  const fields = h('div', {class: 'fields'});
  const button = h('button', {type: 'submit', class: 'btn btn-primary btn-block', 'data-test': 'signin-submit'}, 'Sign in');
  const tabPassword = h('button', {type: 'button', role: 'tab', class: 'tab', 'data-test': 'signin-tab-password'}, 'User');
  const tabKey = h('button', {type: 'button', role: 'tab', class: 'tab', 'data-test': 'signin-tab-key'}, 'Admin key');

  function showMode() {
    tabPassword.setAttribute('aria-selected', String(mode === 'password'));
    tabKey.setAttribute('aria-selected', String(mode === 'key'));
    replace(fields, ...(mode === 'password'
      ? [h('div', {class: 'field'}, h('label', {for: 'signin-user'}, 'User name'), user),
        h('div', {class: 'field'}, h('label', {for: 'signin-password'}, 'Password'), pass)]
      : [h('div', {class: 'field'}, h('label', {for: 'signin-key'}, 'Admin API key'), key,
        h('p', {class: 'help'}, 'The admin key, or the viewer key for a read-only session.'))]));
    error.hidden = true;
  }
  tabPassword.addEventListener('click', () => { mode = 'password'; showMode(); user.focus(); });
  tabKey.addEventListener('click', () => { mode = 'key'; showMode(); key.focus(); });

  const form = h('form', {class: 'signin card', 'data-test': 'signin-form', novalidate: true},
    h('h1', {}, 'Sign in'),
    h('p', {class: 'muted'}, 'shardgate dashboard'),
    reason ? h('p', {class: 'notice', role: 'status', 'data-test': 'signin-reason'}, reason) : null,
    h('div', {class: 'tabs', role: 'tablist'}, tabPassword, tabKey),
    error, fields, button);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    const credentials = mode === 'password' ? {username: user.value, password: pass.value} : {key: key.value};
    button.disabled = true;
    try {
      await signIn(credentials);
      pass.value = '';
      key.value = '';
      onSignedIn();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      (mode === 'password' ? pass : key).select();
    } finally {
      button.disabled = false;
    }
  });
  showMode();
  replace(main, h('div', {class: 'signin-wrap'}, form));
  user.focus();
}
