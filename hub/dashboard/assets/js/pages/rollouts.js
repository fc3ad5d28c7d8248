// Rollouts: state, wave progress (each wave's devices by per-device state), gate values against
// their thresholds, per-device states, and the operator actions pause, resume, abort, rollback.

import { can, get, listAll, post } from '../api.js';
import { ago, badge, h, num, sparkline, table, when, fill } from '../dom.js';
import { remember } from './history.js';

const MAX_SHOWN = 20;
const MAX_ROWS = 500;
const STATES = ['pending', 'notified', 'downloading', 'activating', 'active', 'failed', 'rolled_back'];
const stateTone = { running: 'info', paused: 'warn', completed: 'ok', aborted: 'idle', rolled_back: 'bad' };
const devTone = { active: 'ok', failed: 'bad', rolled_back: 'warn', pending: 'idle' };
const opened = new Set();

/** waveBars groups a rollout's devices by wave and counts them by state. */
export function waveCounts(rollout, devices) {
  const waves = (rollout.wave_sizes || []).map(() => Object.fromEntries(STATES.map((s) => [s, 0])));
  for (const d of devices) {
    const w = waves[d.wave - 1];
    if (w && w[d.state] !== undefined) w[d.state]++;
  }
  return waves;
}

function bar(counts, total, label) {
  const b = h('div', { class: 'bar', role: 'img', 'aria-label': `${label}: ${STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(', ') || 'no devices'}` });
  for (const s of STATES) {
    if (!counts[s] || !total) continue;
    const seg = h('span', { class: `s-${s}`, title: `${counts[s]} ${s}` });
    seg.style.width = `${(100 * counts[s]) / total}%`;
    b.append(seg);
  }
  return b;
}

function legend() {
  return h('div', { class: 'legend', 'aria-hidden': 'true' }, STATES.map((s) => h('span', {}, h('i', { class: `s-${s}` }), s.replace('_', ' '))));
}

function gateRows(r) {
  const names = new Set([...Object.keys(r.gate_thresholds || {}), ...Object.keys(r.gates || {})]);
  return [...names].sort().map((name) => {
    const g = (r.gates || {})[name];
    const threshold = g ? g.threshold : r.gate_thresholds[name];
    return {
      attrs: { 'data-gate': name },
      cells: [name.replace(/^max_/, '').replaceAll('_', ' '), g ? num(g.value, 4) : h('span', { class: 'muted' }, 'not measured yet'),
        `≤ ${num(threshold, 4)}`, g ? String(g.evidence ?? '') : '',
        g ? (g.failed ? badge('failed', 'bad') : badge('passing', 'ok')) : badge('waiting', 'idle'),
        // The gate's value over time (in this tab), against its threshold.
        sparkline(remember(`rollout:${r.id}:${name}`, r.updated_at, g ? g.value : NaN), { threshold, label: `${name} over time` })],
    };
  });
}

/** confirmButton needs a second click within 5 s, for actions that cannot be undone. */
function confirmButton(text, fn, report) {
  const b = h('button', { type: 'button', class: 'danger', 'data-action': text.toLowerCase() }, text);
  let armed = null;
  b.addEventListener('click', async () => {
    if (!armed) {
      b.textContent = `Confirm ${text.toLowerCase()}`;
      armed = setTimeout(() => { armed = null; b.textContent = text; }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    try { await fn(); } catch (err) { report(err); } finally { b.disabled = false; b.textContent = text; }
  });
  return b;
}

function actions(r, ctx) {
  if (!can('rollout')) return null;
  const act = (a) => async () => {
    await post(`/api/v1/rollouts/${encodeURIComponent(r.id)}/${a}`, { reason: `${a} from the dashboard` });
    await ctx.refresh();
  };
  const simple = (text, a) => {
    const b = h('button', { type: 'button', 'data-action': a }, text);
    b.addEventListener('click', async () => { b.disabled = true; try { await act(a)(); } catch (err) { ctx.report(err); } finally { b.disabled = false; } });
    return b;
  };
  const active = r.state === 'running' || r.state === 'paused';
  return h('div', { class: 'actions', role: 'group', 'aria-label': `actions for rollout ${r.id}` },
    r.state === 'running' ? simple('Pause', 'pause') : null,
    r.state === 'paused' ? simple('Resume', 'resume') : null,
    active ? confirmButton('Abort', act('abort'), ctx.report) : null,
    active || r.state === 'completed' ? confirmButton('Rollback', act('rollback'), ctx.report) : null);
}

/**
 * card renders one rollout. devices is its per-device list, or null when it was not read (a
 * finished rollout whose list is closed): then only the overall bar shows.
 */
function card(r, devices, ctx) {
  const waves = devices ? waveCounts(r, devices) : [];
  const sizes = r.wave_sizes || [];
  const total = r.total || sizes[sizes.length - 1] || 0;
  const overall = Object.fromEntries(STATES.map((s) => [s, (r.devices || {})[s] || 0]));
  const det = h('details', { 'data-devices': r.id },
    h('summary', {}, `Devices (${devices ? devices.length : r.total ?? '…'})`),
    devices && devices.length > MAX_ROWS ? h('p', { class: 'muted' }, `Showing the first ${MAX_ROWS}.`) : null,
    table(['Device', 'Wave', 'State', 'Since', 'Previous version', 'Error'], (devices || []).slice(0, MAX_ROWS).map((d) => [
      h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id), String(d.wave || '—'),
      badge(d.state, devTone[d.state] || 'info'), ago(d.since), d.previous ? `v${d.previous}` : 'none', d.error || '',
    ]), { empty: 'No devices.' }));
  det.open = opened.has(r.id);
  det.addEventListener('toggle', () => {
    if (det.open === opened.has(r.id)) return;
    if (det.open) opened.add(r.id); else opened.delete(r.id);
    if (det.open && !devices) ctx.refresh();
  });
  return h('section', { class: 'card', 'data-rollout': r.id, 'aria-label': `rollout ${r.id}` },
    h('h2', {}, 'Rollout ', h('code', {}, r.id), ' ', h('span', { class: 'rollout-state', 'data-state': r.state }, badge(r.state, stateTone[r.state] || 'idle'))),
    h('p', {}, h('a', { href: `#/lineage?node=${encodeURIComponent(`model:${r.model}@${r.version}`)}` }, `${r.model}@${r.version}`),
      h('span', { class: 'muted' }, ` · selector ${r.selector || '(all devices)'} · wave `), h('strong', { class: 'rollout-wave' }, `${r.wave} of ${sizes.length}`),
      h('span', { class: 'muted' }, ` · bake ${r.bake_seconds} s · on gate failure ${r.on_gate_failure} · by ${r.created_by}, ${when(r.created_at)}`)),
    r.reason ? h('p', {}, h('span', { class: 'muted' }, 'Reason: '), r.reason) : null,
    h('div', { class: 'wave' }, h('strong', {}, 'All'), bar(overall, total, 'all waves'), h('span', { class: 'muted' }, `${overall.active}/${total} active`)),
    waves.map((c, i) => {
      const n = sizes[i] - (i ? sizes[i - 1] : 0);
      const cur = i + 1 === r.wave;
      return h('div', { class: 'wave', 'data-wave': i + 1 },
        h('span', {}, `Wave ${i + 1}`, cur ? h('span', { class: 'muted' }, ' (current)') : null),
        bar(c, n, `wave ${i + 1}`), h('span', { class: 'muted' }, `${c.active}/${n} active`));
    }),
    legend(),
    r.wave_done_at && r.state === 'running' && r.wave < sizes.length
      ? h('p', { class: 'muted' }, `Wave ${r.wave} settled ${new Date(r.wave_done_at).toLocaleTimeString()}; the next wave starts after the bake, at ${new Date(r.wave_done_at + r.bake_seconds * 1000).toLocaleTimeString()}.`)
      : null,
    h('h3', {}, 'Gates'),
    table(['Gate', 'Value', 'Threshold', 'Evidence', 'Result', 'Over time'], gateRows(r), { empty: 'This rollout has no gates.', numeric: [1, 3] }),
    actions(r, ctx), det);
}

export default {
  title: 'Rollouts',
  mount(el, ctx) {
    const only = ctx.query.get('id');
    const body = h('div', {});
    fill(el, h('h1', {}, 'Rollouts'),
      only ? h('p', {}, `Showing rollout ${only}. `, h('a', { href: '#/rollouts' }, 'Show all')) : null,
      body);
    return {
      async refresh() {
        let items;
        if (only) items = [await get(`/api/v1/rollouts/${encodeURIComponent(only)}`)];
        else ({ items } = await listAll('/api/v1/rollouts', 1));
        items.sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
        const shown = items.slice(0, MAX_SHOWN);
        // Per-device lists are read for rollouts still under way and for lists opened on screen.
        const devs = await Promise.all(shown.map((r) => (r.state === 'running' || r.state === 'paused' || opened.has(r.id) || only
          ? get(`/api/v1/rollouts/${encodeURIComponent(r.id)}/devices`).then((p) => p.items || [])
          : null)));
        const running = items.filter((r) => r.state === 'running').length;
        const paused = items.filter((r) => r.state === 'paused').length;
        fill(body, 
          h('p', { class: 'muted' }, `${items.length} rollouts · `, h('span', { id: 'rollouts-running' }, String(running)), ' running · ',
            h('span', { id: 'rollouts-paused' }, String(paused)), ' paused',
            items.length > MAX_SHOWN ? ` · showing the ${MAX_SHOWN} newest` : ''),
          shown.length ? shown.map((r, i) => card(r, devs[i], ctx))
            : h('p', { class: 'muted' }, 'No rollouts yet: driftline rollout create MODEL VERSION.'));
      },
    };
  },
};
