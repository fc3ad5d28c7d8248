// The dashboard's shell: sign-in, hash routing (#/page/arg?query), the poll loop and the status
// line. Each page module exports {title, mount(el, ctx)} where mount builds the page's fixed
// parts and returns {refresh()}, which reloads its data; the shell calls refresh every
// POLL_MS while the tab is visible.

import { clearSession, detectRole, role, setSession, token } from './api.js';
import { h } from './dom.js';
import fleet from './pages/fleet.js';
import device from './pages/device.js';
import registry from './pages/registry.js';
import lineage from './pages/lineage.js';
import rollouts from './pages/rollouts.js';
import drift from './pages/drift.js';
import audit from './pages/audit.js';
import cluster from './pages/cluster.js';

/** POLL_MS is how often the page on screen reloads its data from the API. */
export const POLL_MS = 5000;

const pages = { fleet, device, registry, lineage, rollouts, drift, audit, cluster };
const navFor = { device: 'fleet' };

const $ = (id) => document.getElementById(id);
let current = null; // {name, arg, query, view}
let timer = null;
let busy = false;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q = ''] = raw.split('?');
  const [name, ...rest] = path.split('/');
  return { name: pages[name] ? name : 'fleet', arg: rest.map(decodeURIComponent).join('/'), query: new URLSearchParams(q) };
}

/** report shows an error in the status line (or clears it with null). */
function report(err) {
  const st = $('status');
  st.replaceChildren();
  if (err) st.append(h('p', { role: 'alert' }, err.title && err.title !== err.message ? `${err.title}: ${err.message}` : err.message || String(err)));
}

async function refresh() {
  if (!current || busy) return;
  busy = true;
  const page = current;
  try {
    await page.view.refresh();
    if (page === current) {
      report(null);
      $('updated').textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${POLL_MS / 1000} s`;
      $('page').dataset.ready = String(Number($('page').dataset.ready || 0) + 1);
    }
  } catch (err) {
    if (page === current) report(err);
  } finally {
    busy = false;
  }
}

function setQuery(obj) {
  const q = new URLSearchParams(current.query);
  for (const [k, v] of Object.entries(obj)) {
    if (v === '' || v === null || v === undefined) q.delete(k);
    else q.set(k, v);
  }
  const qs = q.toString();
  const path = current.arg ? `${current.name}/${encodeURIComponent(current.arg)}` : current.name;
  location.hash = `#/${path}${qs ? `?${qs}` : ''}`;
}

function route() {
  if (!token()) { showLogin(); return; }
  const { name, arg, query } = parseHash();
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === (navFor[name] || name)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const el = h('div', { class: `page page-${name}` });
  $('page').replaceWith(Object.assign(el, { id: 'page' }));
  current = { name, arg, query, view: null };
  const ctx = { arg, query, report, setQuery, refresh, navigate: (hash) => { location.hash = hash; } };
  current.view = pages[name].mount(el, ctx);
  document.title = `${pages[name].title}${arg ? ` ${arg}` : ''} · Driftline`;
  report(null);
  refresh();
}

function showLogin(message) {
  current = null;
  $('login').hidden = false;
  $('nav').hidden = true;
  $('who').hidden = true;
  $('page').replaceChildren();
  $('login-error').textContent = message || '';
  $('token').focus();
}

function showApp() {
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('role').textContent = role();
  route();
}

function start() {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = $('token').value.trim();
    $('login-error').textContent = '';
    try {
      const r = await detectRole(tok);
      setSession(tok, r);
      $('token').value = '';
      showApp();
    } catch (err) {
      $('login-error').textContent = `Sign-in failed: ${err.message}`;
    }
  });
  $('logout').addEventListener('click', () => { clearSession(); showLogin(); });
  window.addEventListener('driftline:unauthorized', () => { clearSession(); showLogin('The hub no longer accepts this token; sign in again.'); });
  window.addEventListener('hashchange', () => { if (token()) route(); });
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
  timer = setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, POLL_MS);
  if (token()) showApp();
  else showLogin();
}

start();
