// Fleet: every device (or those a label selector picks), online or not, what it runs, when it
// was last seen.

import { listAll } from '../api.js';
import { ago, badge, h, labels, table, tile, fill } from '../dom.js';

const MAX_ROWS = 500;

/** runningVersions counts devices by "model@version" they report active. */
export function runningVersions(devices) {
  const counts = new Map();
  for (const d of devices) {
    for (const [name, m] of Object.entries(d.reported?.models || {})) {
      if (m.active === null || m.active === undefined) continue;
      const k = `${name}@${m.active}`;
      counts.set(k, (counts.get(k) || 0) + 1);
    }
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** modelCell renders a device's reported models: name@active and state. */
export function modelCell(d) {
  const ms = Object.entries(d.reported?.models || {}).sort();
  if (!ms.length) return h('span', { class: 'muted' }, 'none');
  return ms.map(([name, m]) => h('div', {}, h('code', {}, `${name}@${m.active ?? '—'}`), ' ',
    m.state ? badge(m.state, m.state === 'active' ? 'ok' : m.state === 'failed' ? 'bad' : 'info') : null));
}

export default {
  title: 'Fleet',
  mount(el, ctx) {
    const selector = ctx.query.get('selector') || '';
    const input = h('input', { id: 'selector', name: 'selector', value: selector, placeholder: 'site=berlin,tier=edge', size: 28 });
    const form = h('form', { class: 'toolbar', role: 'search' },
      h('label', { for: 'selector' }, 'Label selector', input),
      h('button', { type: 'submit' }, 'Filter'),
      selector ? h('button', { type: 'button', class: 'secondary', onclick: () => ctx.setQuery({ selector: '' }) }, 'Clear') : null);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); ctx.setQuery({ selector: input.value.trim() }); });
    const body = h('div', {});
    fill(el, h('h1', {}, 'Fleet'), form, body);
    return {
      async refresh() {
        const q = selector ? `?selector=${encodeURIComponent(selector)}` : '';
        const { items, truncated } = await listAll(`/api/v1/devices${q}`);
        const online = items.filter((d) => d.online).length;
        const versions = runningVersions(items);
        fill(body, 
          h('div', { class: 'tiles' },
            tile(items.length, selector ? `devices matching ${selector}` : 'devices', 'fleet-total'),
            tile(online, 'online', 'fleet-online'),
            tile(items.length - online, 'offline', 'fleet-offline'),
            tile(versions.length, 'model versions running', 'fleet-versions')),
          truncated ? h('p', { class: 'muted' }, 'Showing the first 20,000 devices.') : null,
          h('div', { class: 'grid2' },
            h('section', { class: 'card', 'aria-labelledby': 'h-versions' }, h('h2', { id: 'h-versions' }, 'Versions running'),
              table(['Model version', 'Devices'], versions.map(([k, n]) => [h('code', {}, k), String(n)]),
                { empty: 'No device reports an active model yet.', numeric: [1] })),
            h('section', { class: 'card', 'aria-labelledby': 'h-agents' }, h('h2', { id: 'h-agents' }, 'Agent versions'),
              table(['Agent version', 'Devices'], agentVersions(items), { empty: 'No device has reported yet.', numeric: [1] }))),
          h('section', { class: 'card', 'aria-labelledby': 'h-devices' }, h('h2', { id: 'h-devices' }, 'Devices'),
            items.length > MAX_ROWS ? h('p', { class: 'muted' }, `Listing the first ${MAX_ROWS} of ${items.length}; narrow the list with a label selector.`) : null,
            table(['Device', 'Status', 'Labels', 'Models', 'Agent', 'Last seen'], items.slice(0, MAX_ROWS).map((d) => ({
              attrs: { 'data-device': d.id },
              cells: [
                h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id),
                d.online ? badge('online', 'ok') : badge('offline', 'idle'),
                labels(d.labels), modelCell(d), d.reported?.agent_version || h('span', { class: 'muted' }, '—'), ago(d.last_seen),
              ],
            })), { empty: selector ? 'No device matches this selector.' : 'No devices yet: add one with driftline device add.' })));
      },
    };
  },
};

function agentVersions(devices) {
  const c = new Map();
  for (const d of devices) {
    const v = d.reported?.agent_version;
    if (v) c.set(v, (c.get(v) || 0) + 1);
  }
  return [...c.entries()].sort().map(([v, n]) => [h('code', {}, v), String(n)]);
}
