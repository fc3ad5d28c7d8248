// The drift page's two drawings of one model version: the heatmap of devices x features
// (GET /api/v1/drift/heatmap: each device's latest score against its threshold) and one
// feature's reference vs current distribution (GET /api/v1/drift/distribution: sketch
// quantiles as two CDF lines, or frequent values as paired bars). Both are tables or SVG with
// the numbers in text too, so colour is never the only signal.

import { h, s, num, pct, ago } from '../dom.js';

/** level maps score/threshold to a colour step 0..4 (4: twice the threshold or more). */
export function level(rel) {
  if (!Number.isFinite(rel)) return 'na';
  if (rel < 0.5) return 0;
  if (rel < 0.8) return 1;
  if (rel < 1) return 2;
  if (rel < 2) return 3;
  return 4;
}

const LEGEND = [[0, 'under half the threshold'], [1, '50–80%'], [2, '80–100%'], [3, 'over (drift)'], [4, 'over twice']];

function cell(device, feature, c) {
  if (!c) return h('td', { class: 'hm hm-na', title: `${device} · ${feature}: not in the report` }, '—');
  if (c.skipped) return h('td', { class: 'hm hm-na', title: `${device} · ${feature}: skipped (${c.skipped})` }, 'skipped');
  const lv = c.threshold > 0 ? level(c.relative) : 'na';
  const verdict = c.drift ? 'drift' : 'ok';
  return h('td', { class: `hm hm-${lv}${c.drift ? ' hm-drift' : ''}`, 'data-level': lv, 'data-label': feature,
    title: `${device} · ${feature}: ${c.method} score ${num(c.score, 4)}, threshold ${num(c.threshold, 4)} (${num(c.relative, 2)}× the threshold), ${verdict}` },
  num(c.score, 3), c.drift ? h('span', { class: 'hm-mark' }, ' ▲') : null);
}

/** heatmap renders a GET /api/v1/drift/heatmap answer as a table, one row per device. */
export function heatmap(view) {
  const title = h('h3', {}, 'Devices × features');
  if (!view || !(view.devices || []).length || !(view.features || []).length) {
    return h('div', { class: 'heatmap' }, title, h('p', { class: 'muted no-heatmap' }, 'No device profile of this version scored in the last hour.'));
  }
  const more = view.total > view.devices.length ? ` (first ${view.devices.length} of ${view.total})` : '';
  return h('div', { class: 'heatmap' }, title,
    h('p', { class: 'muted' }, `Each device's latest window: the score per feature, coloured by its ratio to the threshold; ▲ marks drift${more}.`),
    h('div', { class: 'legend' }, LEGEND.map(([lv, text]) => h('span', {}, h('i', { class: `hm-${lv}` }), text))),
    h('div', { class: 'tablewrap' }, h('table', { class: 'hm-table' },
      h('caption', { class: 'muted' }, `Latest drift score per device and feature of ${view.model}@${view.version}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Device'), view.features.map((f) => h('th', { scope: 'col', class: 'num' }, f)),
        h('th', { scope: 'col' }, 'Reported'))),
      h('tbody', {}, view.devices.map((d) => h('tr', { 'data-device': d.device },
        h('th', { scope: 'row' }, h('a', { href: `#/device/${encodeURIComponent(d.device)}` }, d.device),
          d.dataset_drift ? h('span', { class: 'hm-mark', title: `dataset drift, share ${pct(d.drift_share)}` }, ' ▲') : null),
        view.features.map((f, i) => cell(d.device, f, d.cells[i])),
        h('td', {}, ago(d.ts))))))));
}

const W = 420;
const H = 180;
const PAD = { l: 44, r: 10, t: 10, b: 28 };

/** cdfChart draws two quantile functions (reference dashed, current solid) as CDF lines. */
function cdfChart(feature, ref, cur) {
  const rq = ref?.quantiles || [];
  const cq = cur?.quantiles || [];
  const xs = [...rq, ...cq].map((q) => q.value);
  if (!xs.length) return h('p', { class: 'muted' }, 'No values on either side.');
  let lo = Math.min(...xs);
  let hi = Math.max(...xs);
  if (hi === lo) { lo -= 1; hi += 1; }
  const x = (v) => PAD.l + ((v - lo) / (hi - lo)) * (W - PAD.l - PAD.r);
  const y = (p) => H - PAD.b - p * (H - PAD.t - PAD.b);
  // A quantile function read as a CDF: a step up at each quantile value.
  const path = (qs) => qs.map((q, i) => `${i ? 'L' : 'M'}${x(q.value).toFixed(1)},${y(q.p).toFixed(1)}`).join(' ');
  const ticks = [lo, (lo + hi) / 2, hi];
  return s('svg', { class: 'dist', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': `Cumulative distribution of ${feature}: reference median ${num(median(rq))}, current median ${cq.length ? num(median(cq)) : 'none'}` },
  s('line', { class: 'axis', x1: PAD.l, x2: W - PAD.r, y1: y(0), y2: y(0) }),
  s('line', { class: 'axis', x1: PAD.l, x2: PAD.l, y1: y(0), y2: y(1) }),
  [0, 0.5, 1].map((p) => s('text', { class: 'tick', x: PAD.l - 4, y: y(p) + 4, 'text-anchor': 'end' }, pct(p).replace('.0', ''))),
  ticks.map((v, i) => s('text', { class: 'tick', x: x(v), y: H - 8, 'text-anchor': ['start', 'middle', 'end'][i] }, num(v, 2))),
  rq.length ? s('path', { class: 'ref', d: path(rq) }, s('title', {}, 'reference')) : null,
  cq.length ? s('path', { class: 'cur', d: path(cq) }, s('title', {}, 'current')) : null);
}

function median(qs) {
  const m = qs.find((q) => q.p >= 0.5);
  return m ? m.value : undefined;
}

/** barChart draws each value's share in the reference and the current window side by side. */
function barChart(feature, ref, cur) {
  const items = ref?.items || [];
  if (!items.length) return h('p', { class: 'muted' }, 'No frequent values on either side.');
  const rowH = 22;
  const height = items.length * rowH + 8;
  const lab = 90;
  const max = Math.max(...items.map((it, i) => Math.max(it.share, cur?.items?.[i]?.share || 0)), 1e-9);
  const wx = (v) => (v / max) * (W - lab - 110);
  return s('svg', { class: 'dist', viewBox: `0 0 ${W} ${height}`, width: W, height, role: 'img',
    'aria-label': `Share of each value of ${feature}, reference and current` },
  items.map((it, i) => {
    const c = cur?.items?.[i];
    const top = 4 + i * rowH;
    return s('g', {},
      s('text', { class: 'tick', x: lab - 6, y: top + 14, 'text-anchor': 'end' }, it.value.length > 14 ? `${it.value.slice(0, 13)}…` : it.value),
      s('rect', { class: 'ref', x: lab, y: top + 2, width: Math.max(wx(it.share), 0.5), height: 8 }, s('title', {}, `${it.value}: reference ${pct(it.share)}`)),
      c ? s('rect', { class: 'cur', x: lab, y: top + 11, width: Math.max(wx(c.share), 0.5), height: 8 }, s('title', {}, `${it.value}: current ${pct(c.share)}`)) : null,
      s('text', { class: 'tick', x: lab + Math.max(wx(it.share), wx(c?.share || 0)) + 4, y: top + 14 }, `${pct(it.share)} → ${c ? pct(c.share) : '—'}`));
  }));
}

/** numbers lists the drawn values as a table (quartiles, or every value's shares). */
function numbers(view) {
  const ref = view.reference;
  const cur = view.current;
  if (view.kind === 'categorical') {
    return h('table', { class: 'dist-table' }, h('thead', {}, h('tr', {}, ['Value', 'Reference', 'Current'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, (ref.items || []).map((it, i) => h('tr', {}, h('td', {}, h('code', {}, it.value)), h('td', { class: 'num' }, pct(it.share)),
        h('td', { class: 'num' }, cur ? pct(cur.items?.[i]?.share) : '—')))));
  }
  const at = (side, p) => side?.quantiles?.find((q) => Math.abs(q.p - p) < 1e-9)?.value;
  return h('table', { class: 'dist-table' }, h('thead', {}, h('tr', {}, ['Quantile', 'Reference', 'Current'].map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1].map((p) => h('tr', {},
      h('td', {}, p === 0 ? 'min' : p === 1 ? 'max' : `p${Math.round(p * 100)}`),
      h('td', { class: 'num' }, num(at(ref, p), 3)), h('td', { class: 'num' }, cur ? num(at(cur, p), 3) : '—')))));
}

/**
 * distribution renders a GET /api/v1/drift/distribution answer: the chart, the numbers and
 * what "current" is. picker, when given, is the feature selector placed above the chart.
 */
export function distribution(view, picker) {
  const title = h('h3', {}, 'Reference vs current distribution', picker ? [' of ', picker] : null);
  if (!view) return h('div', { class: 'distribution' }, title, h('p', { class: 'muted' }, 'No reference profile to compare with.'));
  const cur = view.current;
  const ref = view.dataset ? `${view.dataset.dataset}@${view.dataset.version}` : 'the reference';
  const what = cur
    ? `Current: ${cur.partial ? 'the open window' : 'the last closed window'} (${cur.devices} devices, ${cur.rows} rows) against ${ref} (${view.reference.rows} rows)`
    : `Reference ${ref} (${view.reference.rows} rows); no device profile merged yet.`;
  const v = cur?.verdict;
  return h('div', { class: 'distribution', 'data-feature': view.feature, 'data-kind': view.kind }, title,
    h('p', { class: 'muted' }, what, v ? ` · ${v.method} ${num(v.score, 4)} / ${num(v.threshold, 4)}${v.drift ? ' — drift' : ' — no drift'}` : null),
    h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'l-ref' }), 'reference'), h('span', {}, h('i', { class: 'l-cur' }), 'current')),
    h('div', { class: 'dist-wrap' }, view.kind === 'categorical' ? barChart(view.feature, view.reference, cur) : cdfChart(view.feature, view.reference, cur),
      numbers(view)));
}
