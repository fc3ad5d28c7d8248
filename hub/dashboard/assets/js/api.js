// The hub API client: bearer token from session storage, JSON in and out, RFC 7807 problems
// turned into ApiError, list pages followed through next_cursor.

const TOKEN_KEY = 'driftline.token';
const ROLE_KEY = 'driftline.role';

/** ApiError is a failed API call: HTTP status, the problem document's type, title and detail. */
export class ApiError extends Error {
  constructor(status, problem, path) {
    const p = problem || {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.status = status;
    this.type = p.type || '';
    this.title = p.title || '';
    this.path = path;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function role() { return sessionStorage.getItem(ROLE_KEY) || ''; }
export function setSession(tok, r) {
  sessionStorage.setItem(TOKEN_KEY, tok);
  sessionStorage.setItem(ROLE_KEY, r);
}
export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROLE_KEY);
}

/**
 * call sends one request to the hub's API (path starts with /api/v1) and returns the decoded
 * JSON answer. A non-2xx answer throws ApiError; 401 also fires 'driftline:unauthorized' on
 * window so the app can go back to the sign-in form.
 */
export async function call(path, { method = 'GET', body, tok } = {}) {
  const headers = { Accept: 'application/json' };
  const t = tok ?? token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: 'network error', detail: `the hub did not answer (${err.message})` }, path);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 200) }; }
  }
  if (!res.ok) {
    if (res.status === 401 && tok === undefined) window.dispatchEvent(new CustomEvent('driftline:unauthorized'));
    throw new ApiError(res.status, data, path);
  }
  return data;
}

/** get is call with GET. */
export const get = (path) => call(path);

/** post sends a JSON body with POST. */
export const post = (path, body) => call(path, { method: 'POST', body });

/** put sends a JSON body with PUT. */
export const put = (path, body) => call(path, { method: 'PUT', body });

/**
 * listAll reads every page of a list endpoint (items and next_cursor), at most maxPages pages of
 * 1000. It returns {items, truncated}.
 */
export async function listAll(path, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await get(url);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor) return { items, truncated: false };
  }
  return { items, truncated: true };
}

/**
 * detectRole finds the role of tok without changing anything: an admin-only read (GET
 * /api/v1/tokens), then two writes with empty bodies that a permitted role sees refused as
 * invalid (400) before anything is proposed, while other roles get 403. A token that cannot
 * list devices is a device token, which the dashboard does not serve.
 */
export async function detectRole(tok) {
  const status = async (path, method, body) => {
    try {
      await call(path, { method, body, tok });
      return 200;
    } catch (err) {
      if (err.status === 0 || err.status >= 500) throw err; // no answer, or no leader: retry later
      return err.status;
    }
  };
  const tokens = await status('/api/v1/tokens?limit=1', 'GET');
  if (tokens === 401) throw new ApiError(401, { detail: 'the hub does not know this token' });
  if (tokens === 200) return 'admin';
  if ((await status('/api/v1/devices?limit=1', 'GET')) !== 200) {
    throw new ApiError(403, { detail: 'this token cannot read the fleet (a device token?)' });
  }
  if ((await status('/api/v1/rollouts', 'POST', {})) === 400) return 'approver';
  if ((await status('/api/v1/models', 'POST', {})) === 400) return 'publisher';
  return 'viewer';
}

/** can says whether the signed-in role may take an action: approve, alias, rollout. */
export function can(action) {
  const r = role();
  if (r === 'admin') return true;
  switch (action) {
    case 'approve': case 'rollout': return r === 'approver';
    case 'alias': return r === 'approver' || r === 'publisher';
    default: return false;
  }
}
