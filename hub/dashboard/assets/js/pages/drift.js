// Drift: fleet-wide drift per model version and feature (GET /api/v1/drift, the merged device
// profiles against the training reference) and each device's latest health summary, with the
// values seen since the tab opened drawn as sparklines.

import { ApiError, get, listAll } from '../api.js';
import { ago, badge, h, num, pct, sparkline, table, fill } from '../dom.js';
import { remember } from './history.js';

/** versionsInUse lists the model versions the fleet reports, from health summaries and active models. */
export function versionsInUse(devices) {
  const seen = new Map();
  const add = (model, version) => { if (model && version) seen.set(`${model}@${version}`, { model, version }); };
  for (const d of devices) {
    add(d.health?.model, d.health?.version);
    for (const [name, m] of Object.entries(d.reported?.models || {})) add(name, m.active);
  }
  return [...seen.values()].sort((a, b) => a.model.localeCompare(b.model) || a.version - b.version);
}

function features(report) {
  const fs = report.features;
  return (Array.isArray(fs) ? fs.map((f) => [f.feature || f.name, f]) : Object.entries(fs || {}))
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

/** hasData says whether a fleet drift answer holds any scored window. */
export function hasData(report) {
  if (!report) return false;
  if (report.latest || report.current || (report.series || []).length) return true;
  return Object.keys(report.features || {}).length > 0 && report.latest !== null;
}

const count = (x) => (Array.isArray(x) ? x.length : x);
const names = (x) => (Array.isArray(x) ? (x.length ? x.join(', ') : '—') : String(x ?? '—'));

/**
 * history returns the values of pick over the answer's closed windows (series, oldest first),
 * or, when the answer carries none, the values this tab has seen at each poll.
 */
function history(report, key, pick) {
  const series = (report.series || []).map(pick).filter((v) => Number.isFinite(v));
  if (series.length >= 2) return series;
  const p = report.latest || report.current || {};
  return remember(key, p.end ?? report.ts ?? Date.now(), pick(report.latest || report.current || report));
}

/** fleetCard renders one model version's GET /api/v1/drift answer (or its absence). */
export function fleetCard(mv, report) {
  const key = `fleet:${mv.model}@${mv.version}`;
  const title = h('h2', {}, 'Fleet drift of ', h('code', {}, `${mv.model}@${mv.version}`));
  if (!hasData(report)) {
    return h('section', { class: 'card', 'data-drift': `${mv.model}@${mv.version}` }, title,
      h('p', { class: 'muted no-fleet-drift' }, 'No fleet drift data yet for this model version: the hub has not merged any device profile of it.'));
  }
  const shares = history(report, `${key}:share`, (p) => p.drift_share);
  const ref = report.reference ? ` against ${report.reference.dataset}@${report.reference.version}` : '';
  const open = !report.latest && report.current ? ' (window still open)' : '';
  return h('section', { class: 'card', 'data-drift': `${mv.model}@${mv.version}` }, title,
    h('p', {},
      report.dataset_drift ? badge('dataset drift', 'bad') : badge('no dataset drift', 'ok'),
      ` drift share ${pct(report.drift_share)}${ref}${open} `, sparkline(shares, { label: 'fleet drift share', threshold: 0.5 }),
      h('span', { class: 'muted' }, ` · ${count(report.devices) ?? 0} devices merged · drifting: ${names(report.drifting_devices)}`)),
    table(['Feature', 'Method', 'Score', 'Threshold', 'Over time', 'Devices drifting', 'Drift'],
      features(report).map(([name, f]) => [
        h('code', {}, name), f.method || '—', f.skipped ? h('span', { class: 'muted', title: f.skipped }, 'skipped') : num(f.score, 4),
        [num(f.threshold, 4), f.calibrated ? h('span', { class: 'muted' }, ' (calibrated)') : null],
        sparkline(history(report, `${key}:${name}`, (p) => p.features?.[name]?.score), { threshold: f.threshold, label: `${name} score` }),
        names(f.devices),
        f.drift ? badge('drift', 'bad') : badge('ok', 'ok'),
      ]), { empty: 'No features in the report.', numeric: [2, 3] }));
}

export default {
  title: 'Drift',
  mount(el, ctx) {
    const fleetBox = h('div', {});
    const devBox = h('div', {});
    fill(el, h('h1', {}, 'Drift'), fleetBox, devBox);
    return {
      async refresh() {
        const { items: devices } = await listAll('/api/v1/devices');
        const mvs = versionsInUse(devices);
        const reports = await Promise.all(mvs.map(async (mv) => {
          try {
            const r = await get(`/api/v1/drift?model=${encodeURIComponent(mv.model)}&version=${mv.version}`);
            return Array.isArray(r?.items) ? r.items[0] || null : r;
          } catch (err) {
            if (err instanceof ApiError && [404, 405, 501, 503].includes(err.status)) return null;
            throw err;
          }
        }));
        fill(fleetBox, mvs.length
          ? mvs.map((mv, i) => fleetCard(mv, reports[i]))
          : h('section', { class: 'card' }, h('h2', {}, 'Fleet drift'),
            h('p', { class: 'muted no-fleet-drift' }, 'No fleet drift data yet: no device reports a model version.')));
        // Drifting devices first, then by id; at most 500 rows.
        const healthy = devices.filter((d) => d.health)
          .sort((a, b) => Number(b.health.dataset_drift) - Number(a.health.dataset_drift) || a.id.localeCompare(b.id)).slice(0, 500);
        fill(devBox, h('section', { class: 'card', 'aria-labelledby': 'h-devhealth' },
          h('h2', { id: 'h-devhealth' }, 'Per device'),
          table(['Device', 'Model', 'Rows', 'Invalid', 'Dataset drift', 'Drift share', 'Over time', 'Reported'], healthy.map((d) => {
            const hs = d.health;
            return [
              h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id),
              hs.model ? h('code', {}, `${hs.model}@${hs.version}`) : '—',
              String(hs.rows), `${hs.invalid} (${pct(hs.rows ? hs.invalid / hs.rows : 0)})`,
              hs.dataset_drift ? badge('drift', 'bad') : badge('no drift', 'ok'), pct(hs.drift_share),
              sparkline(remember(`device:${d.id}:drift_share`, hs.at, hs.drift_share), { threshold: 0.5, label: `${d.id} drift share` }),
              ago(hs.at),
            ];
          }), { empty: 'No device has sent a validation or drift report yet.', numeric: [2] })));
      },
    };
  },
};
