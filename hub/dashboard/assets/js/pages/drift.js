// Drift: fleet-wide drift per model version and feature (GET /api/v1/drift, the merged device
// profiles against the training reference) with its series as sparklines, the devices x
// features heatmap and one feature's reference vs current distribution (driftviews.js), and
// each device's latest health summary.

import { ApiError, get, listAll } from '../api.js';
import { ago, badge, h, num, pct, sparkline, table, fill } from '../dom.js';
import { remember } from './history.js';
import { distribution, heatmap } from './driftviews.js';

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

/** fleetCard renders one model version's GET /api/v1/drift answer (or its absence); more (the heatmap and distribution) goes below the features. */
export function fleetCard(mv, report, more) {
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
      ]), { empty: 'No features in the report.', numeric: [2, 3] }),
    more || null);
}

/** defaultFeature picks the feature to draw first: the one furthest over (or nearest) its threshold. */
export function defaultFeature(report) {
  let best = null;
  let bestRel = -Infinity;
  for (const [name, f] of features(report)) {
    const rel = !f.skipped && f.threshold > 0 ? f.score / f.threshold : -1;
    if (best === null || rel > bestRel) { best = name; bestRel = rel; }
  }
  return best;
}

const q = (mv) => `model=${encodeURIComponent(mv.model)}&version=${mv.version}`;

/** optional reads an API path, answering null where the route or the data is absent. */
async function optional(path) {
  try {
    return await get(path);
  } catch (err) {
    if (err instanceof ApiError && [404, 405, 501, 503].includes(err.status)) return null;
    throw err;
  }
}

/** loadDistribution reads one feature's reference vs current distribution. */
const loadDistribution = (mv, feature) => optional(`/api/v1/drift/distribution?${q(mv)}&feature=${encodeURIComponent(feature)}`);

export default {
  title: 'Drift',
  mount(el, ctx) {
    const fleetBox = h('div', {});
    const devBox = h('div', {});
    fill(el, h('h1', {}, 'Drift'), fleetBox, devBox);
    // One feature picker per model version, kept across polls so an open list is not replaced.
    const pickers = new Map();
    const picker = (mv, report) => {
      const key = `${mv.model}@${mv.version}`;
      const names = features(report).map(([name]) => name);
      let p = pickers.get(key);
      if (!p) {
        const select = h('select', { 'aria-label': `Feature of ${key} to compare`, class: 'feature-pick' });
        const box = h('div', {});
        p = { select, box, names: '' };
        select.addEventListener('change', async () => {
          try {
            fill(box, distribution(await loadDistribution(mv, select.value), select));
          } catch (err) {
            ctx.report(err);
          }
        });
        pickers.set(key, p);
      }
      if (p.names !== names.join('\n')) {
        const keep = names.includes(p.select.value) ? p.select.value : defaultFeature(report);
        p.names = names.join('\n');
        fill(p.select, names.map((n) => h('option', { value: n }, n)));
        p.select.value = keep;
      }
      return p;
    };
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
        const extras = await Promise.all(mvs.map(async (mv, i) => {
          if (!hasData(reports[i]) || !features(reports[i]).length) return null;
          const p = picker(mv, reports[i]);
          const [hm, dist] = await Promise.all([optional(`/api/v1/drift/heatmap?${q(mv)}`), loadDistribution(mv, p.select.value)]);
          fill(p.box, distribution(dist, p.select));
          return h('div', { class: 'drift-more' }, heatmap(hm), p.box);
        }));
        fill(fleetBox, mvs.length
          ? mvs.map((mv, i) => fleetCard(mv, reports[i], extras[i]))
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
          }), { empty: 'No device has sent a validation or drift report yet.', numeric: [2] })),
          outputsCard(devices, await fleetPredictions(devices)));
      },
    };
  },
};

/**
 * fleetPredictions reads the fleet view of predictions (the devices' prediction profiles merged
 * per model version and scored against its output reference) of every version devices report
 * outputs for: [{mv, view}] with view null where the hub has none.
 */
async function fleetPredictions(devices) {
  const seen = new Map();
  for (const d of devices) {
    if (d.outputs) seen.set(`${d.outputs.model}@${d.outputs.version}`, { model: d.outputs.model, version: d.outputs.version });
  }
  const mvs = [...seen.values()].sort((a, b) => a.model.localeCompare(b.model) || a.version - b.version);
  return Promise.all(mvs.map(async (mv) => ({ mv, view: await optional(`/api/v1/drift/predictions?${q(mv)}`) })));
}

/** fleetPredictionRows renders one row per model version of the merged prediction verdict. */
function fleetPredictionRows(fleet) {
  return fleet.map(({ mv, view }) => {
    const pt = view && (view.latest || view.current);
    const feats = pt && pt.features ? Object.entries(pt.features) : [];
    const [name, f] = feats.length ? feats[0] : [null, null];
    return [
      h('code', {}, `${mv.model}@${mv.version}`),
      pt ? String(pt.devices) : '—', pt ? String(pt.rows || 0) : '—',
      f ? `${name}: ${f.method} ${num(f.score)} (threshold ${num(f.threshold)})` : '—',
      f ? (f.drift ? badge('drift', 'bad') : badge('no drift', 'ok')) : '—',
    ];
  });
}

/** outputsCard lists the fleet's merged prediction drift, then the devices' prediction drift and performance beside their input drift. */
function outputsCard(devices, fleet) {
  const rows = devices.filter((d) => d.outputs)
    .sort((a, b) => Number(b.outputs.prediction_drift) - Number(a.outputs.prediction_drift) || a.id.localeCompare(b.id)).slice(0, 500);
  if (!rows.length) return null;
  return h('section', { class: 'card', 'aria-labelledby': 'h-devoutputs' },
    h('h2', { id: 'h-devoutputs' }, 'Predictions and performance'),
    h('h3', {}, 'Fleet (merged prediction profiles against the output reference)'),
    table(['Model', 'Devices', 'Predictions', 'Score', 'Merged verdict'], fleetPredictionRows(fleet),
      { empty: 'No merged prediction window yet.', numeric: [1, 2] }),
    h('h3', {}, 'Per device'),
    table(['Device', 'Model', 'Prediction drift', 'Drifted windows', 'Performance', 'Relative', 'Labels', 'Reported'], rows.map((d) => {
      const o = d.outputs;
      return [
        h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id),
        h('code', {}, `${o.model}@${o.version}`),
        o.prediction_windows ? (o.prediction_drift ? badge('drift', 'bad') : badge('no drift', 'ok')) : '—',
        `${o.prediction_drifted} of ${o.prediction_windows}`,
        o.labels > 0 ? `${o.metric} ${num(o.value)}` : '—',
        o.labels > 0 ? pct(o.relative) : '—',
        String(o.labels), ago(o.at),
      ];
    }), { numeric: [6] }));
}
