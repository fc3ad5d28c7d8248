// One device: labels, presence, what it runs and should run, and its latest health and drift.

import { ApiError, get } from '../api.js';
import { ago, badge, h, kv, labels, num, pct, sparkline, table, when, fill } from '../dom.js';
import { remember } from './history.js';

export default {
  title: 'Device',
  mount(el, ctx) {
    const id = ctx.arg;
    const body = h('div', {});
    fill(el, h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')), h('h1', {}, 'Device ', h('code', {}, id)), body);
    return {
      async refresh() {
        const d = await get(`/api/v1/devices/${encodeURIComponent(id)}`);
        let drift = null;
        try {
          drift = await get(`/api/v1/devices/${encodeURIComponent(id)}/drift`);
        } catch (err) {
          if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 405)) throw err;
        }
        const hs = d.health;
        const shares = hs ? remember(`device:${id}:drift_share`, hs.at, hs.drift_share) : [];
        const os = d.outputs;
        const rel = os && os.labels > 0 ? remember(`device:${id}:relative`, os.at, os.relative) : [];
        const models = Object.entries(d.reported?.models || {}).sort();
        const desired = Object.entries(d.desired || {}).sort();
        fill(body, 
          h('div', { class: 'grid2' },
            h('section', { class: 'card', 'aria-labelledby': 'h-dev' }, h('h2', { id: 'h-dev' }, 'Presence'),
              kv([
                ['Status', d.online ? badge('online', 'ok') : badge('offline', 'idle')],
                ['Labels', labels(d.labels)],
                ['Agent version', d.reported?.agent_version || '—'],
                ['First seen', when(d.first_seen)], ['Last seen', ago(d.last_seen)],
                ['Registered', when(d.created_at)], ['Desired revision', String(d.desired_rev ?? 0)],
                ['Acknowledged revision', String(d.reported?.rev ?? 0)],
              ])),
            h('section', { class: 'card', 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health' }, 'Health and drift'),
              hs ? kv([
                ['Model', hs.model ? h('code', {}, `${hs.model}@${hs.version}`) : '—'],
                ['Rows in the last window', String(hs.rows)],
                ['Invalid rows', `${hs.invalid} (${pct(hs.rows ? hs.invalid / hs.rows : 0)})`],
                ['Dataset drift', hs.dataset_drift ? badge('drift', 'bad') : badge('no drift', 'ok')],
                ['Drift share', [pct(hs.drift_share), ' ', sparkline(shares, { label: 'drift share' })]],
                ['Reported', ago(hs.at)],
              ]) : h('p', { class: 'muted' }, 'No validation or drift report from this device yet.'))),
          os ? h('section', { class: 'card', 'aria-labelledby': 'h-outputs' }, h('h2', { id: 'h-outputs' }, 'Predictions and performance'),
            kv([
              ['Model', h('code', {}, `${os.model}@${os.version}`)],
              ['Prediction drift', os.prediction_windows
                ? [os.prediction_drift ? badge('drift', 'bad') : badge('no drift', 'ok'), ` ${os.prediction_drifted} of ${os.prediction_windows} windows drifted`]
                : '—'],
              ['Performance', os.labels > 0
                ? [`${os.metric} ${num(os.value)}, ${pct(os.relative)} of the reference `, sparkline(rel, { threshold: 1, label: 'relative performance' })]
                : 'no label joined yet'],
              ['Labels joined', String(os.labels)],
              ['Reported', ago(os.at)],
            ])) : null,
          h('section', { class: 'card', 'aria-labelledby': 'h-models' }, h('h2', { id: 'h-models' }, 'Reported models'),
            table(['Model', 'Active', 'Previous', 'Target', 'State', 'Last error'], models.map(([name, m]) => [
              h('code', {}, name), m.active ?? '—', m.previous ?? '—', m.target || '—',
              m.state ? badge(m.state, m.state === 'active' ? 'ok' : m.state === 'failed' ? 'bad' : 'info') : '—',
              m.last_error || '',
            ]), { empty: 'The device has not reported any model.' })),
          h('section', { class: 'card', 'aria-labelledby': 'h-desired' }, h('h2', { id: 'h-desired' }, 'Desired models'),
            table(['Model', 'Version', 'Rollout', 'Set'], desired.map(([name, m]) => [
              h('code', {}, name), String(m.version),
              m.rollout_id ? h('a', { href: `#/rollouts?id=${encodeURIComponent(m.rollout_id)}` }, m.rollout_id) : 'pinned',
              when(m.set_at),
            ]), { empty: 'Nothing is desired for this device.' })),
          drift ? h('section', { class: 'card', 'aria-labelledby': 'h-drift' }, h('h2', { id: 'h-drift' }, 'Drift by feature'),
            driftModels(drift)) : null);
      },
    };
  },
};

/**
 * driftModels renders GET /api/v1/devices/{id}/drift: per model version the latest window's
 * verdict per feature, with each feature's score over the device's recent windows.
 */
export function driftModels(view) {
  const models = view?.models || [];
  if (!models.length) return h('p', { class: 'muted' }, 'The hub has not scored a profile from this device yet.');
  return models.map((m) => {
    const hist = m.history || [];
    const idx = new Map((m.features || []).map((f, i) => [f, i]));
    const feats = Object.entries(m.latest?.features || {}).sort((a, b) => a[0].localeCompare(b[0]));
    return h('div', { 'data-drift-model': `${m.model}@${m.version}` },
      h('h3', {}, h('code', {}, `${m.model}@${m.version}`), m.reference ? h('span', { class: 'muted' }, ` against ${m.reference.dataset}@${m.reference.version}`) : null),
      h('p', {}, m.latest?.dataset_drift ? badge('dataset drift', 'bad') : badge('no dataset drift', 'ok'),
        ` drift share ${pct(m.latest?.drift_share)} `, sparkline(hist.map((p) => p.drift_share), { threshold: 0.5, label: 'drift share' }),
        h('span', { class: 'muted' }, ` · ${hist.length} windows`)),
      table(['Feature', 'Method', 'Score', 'Threshold', 'Over time', 'Drift'], feats.map(([name, f]) => [
        h('code', {}, name), f.method || '—', f.skipped ? h('span', { class: 'muted', title: f.skipped }, 'skipped') : num(f.score, 4), num(f.threshold, 4),
        sparkline(hist.map((p) => p.scores?.[idx.get(name)]), { threshold: f.threshold, label: `${name} score` }),
        f.drift ? badge('drift', 'bad') : badge('ok', 'ok'),
      ]), { empty: 'No per-feature drift yet.', numeric: [2, 3] }));
  });
}
