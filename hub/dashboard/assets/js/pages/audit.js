// Audit: the hash-chained log, filterable by actor and time, with the chain checked in the
// browser (see ../auditchain.js).

import { listAll } from '../api.js';
import { badge, h, table, when, fill } from '../dom.js';
import { verifyChain } from '../auditchain.js';

const SHOWN = 300;

function localToISO(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function isoToLocal(v) {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export default {
  title: 'Audit',
  mount(el, ctx) {
    const actor = ctx.query.get('actor') || '';
    const since = ctx.query.get('since') || '';
    const actorIn = h('input', { id: 'audit-actor', name: 'actor', value: actor, placeholder: 'admin', size: 16 });
    const sinceIn = h('input', { id: 'audit-since', name: 'since', type: 'datetime-local', value: isoToLocal(since) });
    const form = h('form', { class: 'toolbar', role: 'search' },
      h('label', { for: 'audit-actor' }, 'Actor', actorIn),
      h('label', { for: 'audit-since' }, 'Since', sinceIn),
      h('button', { type: 'submit' }, 'Filter'),
      actor || since ? h('button', { type: 'button', class: 'secondary', onclick: () => ctx.setQuery({ actor: '', since: '' }) }, 'Clear') : null);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      ctx.setQuery({ actor: actorIn.value.trim(), since: localToISO(sinceIn.value) });
    });
    const mark = h('p', { id: 'audit-verified', 'aria-live': 'polite' });
    const body = h('div', {});
    fill(el, h('h1', {}, 'Audit log'), form, mark, body);
    return {
      async refresh() {
        const q = new URLSearchParams();
        if (actor) q.set('actor', actor);
        if (since) q.set('since', since);
        const qs = q.toString();
        const { items, truncated } = await listAll(`/api/v1/audit${qs ? `?${qs}` : ''}`);
        const v = await verifyChain(items);
        const filtered = Boolean(actor || since);
        mark.dataset.ok = String(v.ok);
        fill(mark, v.ok
          ? [badge('✓ chain verified', 'ok'), ' ', h('span', { class: 'muted' },
            `${v.hashes} entry hashes recomputed with SHA-256 in this browser, ${v.links} links checked`
            + `${filtered ? ' (the filter hides the entries between the ones shown)' : ''}${truncated ? '; only the first 20,000 entries were read' : ''}.`)]
          : [badge('✗ chain broken', 'bad'), ' ', v.reason]);
        mark.className = 'verified';
        const rows = [...items].sort((a, b) => b.seq - a.seq).slice(0, SHOWN);
        fill(body, 
          items.length > SHOWN ? h('p', { class: 'muted' }, `Showing the newest ${SHOWN} of ${items.length} entries.`) : null,
          table(['Seq', 'Time', 'Actor', 'Action', 'Object', 'Detail', 'Raft index', 'Hash'], rows.map((e) => ({
            attrs: { 'data-seq': e.seq, class: v.bad === e.seq ? 'bad' : null },
            cells: [String(e.seq), when(e.ts),
              h('a', { href: `#/audit?actor=${encodeURIComponent(e.actor)}` }, e.actor), e.action, h('code', {}, e.object), e.detail || '',
              String(e.raft_index), h('code', { title: e.hash }, e.hash.slice(0, 10))],
          })), { empty: 'No audit entries match.', numeric: [0, 6] }));
      },
    };
  },
};
