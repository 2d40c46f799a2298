// The dashboard's shell: finds the session (or shows sign-in), draws the
// navigation, and renders the page the URL's hash names (#/upstreams,
// #/upstreams/gs-1, ...). A page module exports render(main, params) and
// may return a function that stops what it started (polling). Leaving a
// page (navigation, sign-out, a lost session) stops its polls, every other
// poll still registered (stats.js) and any open confirmation dialog. Once a
// page is drawn, <main> carries its hash in data-route.

import {h, replace, errorBox, toast, closeDialogs} from './dom.js';
import {loadSession, signOut, dropSession, currentSession} from './api.js';
import {stopAll} from './stats.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as streamRoutes from './pages/stream_routes.js';
import * as upstreams from './pages/upstreams.js';
import * as ssls from './pages/ssls.js';
import * as distributions from './pages/distributions.js';
import * as cachePolicies from './pages/cache_policies.js';
import * as canary from './pages/canary.js';
import * as invalidations from './pages/invalidations.js';
import * as webAcls from './pages/web_acls.js';

const PAGES = {
  overview,
  stream_routes: streamRoutes,
  upstreams,
  ssls,
  distributions,
  cache_policies: cachePolicies,
  canary,
  invalidations,
  web_acls: webAcls,
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const toggle = document.getElementById('nav-toggle');
let stopPage = null;
/** Counts navigations, so a page that finishes loading late is dropped. */
let navigation = 0;
/** Why the last session ended, shown above the sign-in form; '' if signed out on purpose. */
let endedBecause = '';

function setNavOpen(open) {
  nav.classList.toggle('open', open);
  toggle.setAttribute('aria-expanded', String(open));
}

function showShell(signedIn) {
  nav.hidden = !signedIn;
  toggle.hidden = !signedIn;
  document.getElementById('session').hidden = !signedIn;
  document.body.classList.toggle('signed-out', !signedIn);
  const s = currentSession();
  if (s) {
    replace(document.getElementById('who'), s.user, ' ',
      h('span', {class: `badge ${s.role === 'admin' ? 'badge-info' : 'badge-muted'}`, 'data-test': 'role'}, s.role === 'admin' ? 'admin' : 'read-only'));
  }
}

/**
 * The page and its parameters from the hash: #/web_acls/acl-1 → ['web_acls', ['acl-1']].
 * A part that is not valid percent-encoding (#/x/%E0) gives null.
 */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '').split('/').filter((p) => p !== '');
  try {
    const parts = raw.map(decodeURIComponent);
    return [parts[0] || 'overview', parts.slice(1)];
  } catch {
    return null;
  }
}

/** Ends the shown page: its polls, every poll still running, open dialogs, a page still loading. */
function leavePage() {
  navigation += 1;
  if (stopPage) {
    stopPage();
    stopPage = null;
  }
  stopAll();
  closeDialogs();
}

/** Shows `view` as the page for the current hash. */
function show(view) {
  replace(main, view);
  main.dataset.route = location.hash || '#/';
}

async function route() {
  leavePage();
  setNavOpen(false);
  const seq = navigation;
  if (!currentSession()) {
    showShell(false);
    signin.render(main, endedBecause, () => {
      endedBecause = '';
      showShell(true);
      if (location.hash === '' || location.hash.startsWith('#/signin')) location.hash = '#/overview';
      else route();
    });
    main.dataset.route = '#/signin';
    return;
  }
  showShell(true);
  const parsed = parseHash();
  const [name, params] = parsed || ['', []];
  const page = parsed && Object.hasOwn(PAGES, name) ? PAGES[name] : null;
  for (const a of nav.querySelectorAll('a')) {
    if (page && a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!page) {
    show(errorBox(`There is no page "${parsed ? name : location.hash}".`));
    return;
  }
  // The page draws into its own view, shown once it is ready, and only if
  // no other navigation started meanwhile (a slow page never covers a newer one).
  const view = h('div', {class: 'view'});
  replace(main, h('p', {class: 'loading'}, 'Loading…'));
  delete main.dataset.route;
  let stop = null;
  try {
    stop = await page.render(view, params);
  } catch (e) {
    replace(view, errorBox(e));
  }
  if (seq !== navigation) {
    if (typeof stop === 'function') stop();
    return;
  }
  stopPage = typeof stop === 'function' ? stop : null;
  show(view);
  main.focus({preventScroll: true});
}

toggle.addEventListener('click', () => setNavOpen(!nav.classList.contains('open')));
nav.addEventListener('click', (e) => {
  if (e.target instanceof HTMLAnchorElement) setNavOpen(false);
});
document.getElementById('sign-out').addEventListener('click', async () => {
  // Nothing of the page may ask the gateway once sign-out has started.
  leavePage();
  endedBecause = '';
  try {
    await signOut();
  } catch (e) {
    toast(`Sign-out: ${e.message}`, 'bad');
  }
  location.hash = '#/overview';
  route();
});
window.addEventListener('session-lost', (e) => {
  dropSession();
  endedBecause = `Your session ended (the gateway said: ${e.detail}). Sign in again to go on.`;
  route();
});
window.addEventListener('hashchange', route);

(async () => {
  try {
    await loadSession();
  } catch (e) {
    replace(main, errorBox(e));
    return;
  }
  route();
})();
