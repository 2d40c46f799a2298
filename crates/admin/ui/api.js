// Talking to the gateway: the session (/ui/api/*) and the Admin API
// (/apisix/admin/*). The session cookie is HttpOnly and SameSite=Strict, so
// the browser sends it by itself; every request that can change something
// also carries the session's CSRF token in X-CSRF-Token.

const ADMIN = '/apisix/admin';

/** The signed-in session: {user, role, csrf, expires_at}, or null. */
let session = null;

/** An answer that was not 2xx, with the gateway's `error_msg` and the field it names. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
    this.field = fieldOf(message);
  }
}

/**
 * The JSON path an Admin API error names, or '' when it names none:
 * `invalid configuration: property "upstream.nodes["a:b"]" validation failed: …`
 * gives `upstream.nodes["a:b"]`; serde's `unknown field `nodez`` gives `nodez`.
 */
export function fieldOf(message) {
  if (typeof message !== 'string') return '';
  const property = /property "(.*)" validation failed/.exec(message);
  if (property) return property[1];
  const unknown = /unknown field `([^`]+)`/.exec(message);
  if (unknown) return unknown[1];
  const forbidden = /the property is forbidden:\s+(\S+)/.exec(message);
  if (forbidden) return forbidden[1];
  return '';
}

/**
 * Splits a JSON path into its segments: `upstream.nodes["a:b"]` is
 * ['upstream', 'nodes', 'a:b'], `Rules[0].Name` is ['Rules', '0', 'Name'].
 */
export function pathSegments(path) {
  const out = [];
  const re = /([^.[\]]+)|\[("(?:[^"\\]|\\.)*"|[^\]]*)\]/g;
  let m;
  while ((m = re.exec(path)) !== null) {
    if (m[1] !== undefined) out.push(m[1]);
    else out.push(m[2].startsWith('"') ? m[2].slice(1, -1) : m[2]);
  }
  return out;
}

async function call(method, url, body) {
  // The session this request belongs to: a 401 that arrives after a newer
  // sign-in (or after sign-out) says nothing about the current session.
  const asked = session;
  const headers = {Accept: 'application/json'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session) headers['X-CSRF-Token'] = session.csrf;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `the gateway did not answer (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error_msg === 'string' ? data.error_msg : `${response.status} ${response.statusText}`;
    const err = new ApiError(response.status, message);
    // A session that expired (or was signed out elsewhere): back to sign-in.
    // Sign-in and sign-out report their own 401s to their caller.
    if (response.status === 401 && asked !== null && asked === session &&
        !url.startsWith('/ui/api/login') && !url.startsWith('/ui/api/logout')) {
      window.dispatchEvent(new CustomEvent('session-lost', {detail: message}));
    }
    throw err;
  }
  if (data === null) throw new ApiError(response.status, 'the gateway answered something that is not JSON');
  return data;
}

/** The current session, or null. */
export function currentSession() {
  return session;
}

/** True when the signed-in user may write. */
export function canWrite() {
  return session !== null && session.role === 'admin';
}

/** Finds an existing session (a reloaded page); null when signed out. */
export async function loadSession() {
  try {
    session = await call('GET', '/ui/api/session');
  } catch (e) {
    if (e.status === 401) session = null;
    else throw e;
  }
  return session;
}

/** Signs in with {username, password} or {key}. */
export async function signIn(credentials) {
  session = await call('POST', '/ui/api/login', credentials);
  return session;
}

/** Signs out (the cookie is cleared by the gateway). */
export async function signOut() {
  try {
    if (session) await call('POST', '/ui/api/logout', {});
  } finally {
    session = null;
  }
}

/** Forgets the session without asking the gateway (it is already gone). */
export function dropSession() {
  session = null;
}

/** GET /ui/api/<what>: stats, health, certificates. */
export function dashboard(what) {
  return call('GET', `/ui/api/${what}`);
}

function kindPath(kind, id, sub) {
  let p = `${ADMIN}/${kind}`;
  if (id !== undefined && id !== null && id !== '') p += `/${encodeURIComponent(id)}`;
  if (sub) p += `/${sub}`;
  return p;
}

/** Every resource of a kind, as the Admin API lists them: [{key, value, ...}]. */
export async function list(kind) {
  const data = await call('GET', kindPath(kind));
  return Array.isArray(data.list) ? data.list : [];
}

/** How many resources of a kind there are (one small page, its `total`). */
export async function count(kind) {
  const data = await call('GET', `${kindPath(kind)}?page=1&page_size=10`);
  return typeof data.total === 'number' ? data.total : 0;
}

/** One resource's value. */
export async function get(kind, id) {
  const data = await call('GET', kindPath(kind, id));
  return data.value;
}

/** A sub resource, e.g. sampled_requests of a web ACL. */
export function getSub(kind, id, sub) {
  return call('GET', kindPath(kind, id, sub));
}

/** Creates or replaces: PUT with an id, POST without one. */
export function save(kind, id, value) {
  return id ? call('PUT', kindPath(kind, id), value) : call('POST', kindPath(kind), value);
}

/** Merge-patches a resource. */
export function patch(kind, id, value) {
  return call('PATCH', kindPath(kind, id), value);
}

/** Deletes a resource. */
export function remove(kind, id) {
  return call('DELETE', kindPath(kind, id));
}

/** POSTs an action: promote or discard of a continuous deployment policy. */
export function action(kind, id, what) {
  return call('POST', kindPath(kind, id, what));
}

/** The id part of an Admin API key (`/apisix/upstreams/gs-1` is `gs-1`). */
export function idOf(item) {
  if (item.value && item.value.id !== undefined) return String(item.value.id);
  const key = String(item.key || '');
  return key.slice(key.lastIndexOf('/') + 1);
}

/** A stored value without the server's fields, ready to PUT back. */
export function editable(value) {
  const copy = structuredClone(value || {});
  delete copy.create_time;
  delete copy.update_time;
  delete copy.id;
  return copy;
}
