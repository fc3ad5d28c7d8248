// Small DOM helpers. Text always goes in as text nodes, never as HTML, so API data cannot
// inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h creates an HTML element: h('a', {href: '#/x'}, 'text', child, [more]). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

/** s creates an SVG element. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

/** table builds a table from column headers and rows of cells; cells carry data-label for the phone layout. */
export function table(headers, rows, { caption, empty = 'Nothing yet.', numeric = [] } = {}) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  const num = new Set(numeric);
  return h('div', { class: 'tablewrap' }, h('table', { class: 'stack' },
    caption ? h('caption', { class: 'muted' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x, i) => h('th', { scope: 'col', class: num.has(i) ? 'num' : null }, x)))),
    h('tbody', {}, rows.map((r) => {
      const attrs = r.attrs || {};
      const cells = r.cells || r;
      return h('tr', attrs, cells.map((c, i) => h('td', { 'data-label': headers[i], class: num.has(i) ? 'num' : null }, c)));
    }))));
}

/** badge renders a state word with a colour class: ok, warn, bad, idle or info. */
export const badge = (text, tone = 'idle', label) => h('span', { class: `badge b-${tone}`, 'aria-label': label || null }, text);

/** tile is one big number with a caption. */
export const tile = (n, label, id) => h('div', { class: 'tile' }, h('div', { class: 'n', id: id || null }, n), h('div', { class: 'l' }, label));

/** kv renders a definition list from [term, value] pairs. */
export const kv = (pairs) => h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));

/** ago renders Unix milliseconds as "12 s ago" with the full time as a tooltip. */
export function ago(ms) {
  if (!ms) return h('span', { class: 'muted' }, 'never');
  const d = Math.max(0, (Date.now() - ms) / 1000);
  let t;
  if (d < 60) t = `${Math.round(d)} s ago`;
  else if (d < 3600) t = `${Math.round(d / 60)} min ago`;
  else if (d < 86400) t = `${Math.round(d / 3600)} h ago`;
  else t = `${Math.round(d / 86400)} d ago`;
  const iso = new Date(ms).toISOString();
  return h('time', { datetime: iso, title: iso }, t);
}

/** when renders Unix milliseconds as a local date and time. */
export const when = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

/** bytes renders a size in B, KiB, MiB or GiB. */
export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${u[i]}`;
}

/** pct renders a share 0..1 as a percentage. */
export const pct = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : `${(x * 100).toFixed(1)}%`);

/** num renders a number with at most digits decimals. */
export const num = (x, digits = 3) => (x === undefined || x === null ? '—' : Number(x).toFixed(digits).replace(/\.?0+$/, ''));

/** shortDigest shortens "sha256:abcdef..." for display. */
export const shortDigest = (d) => (d ? h('code', { title: d }, d.replace(/^sha256:/, '').slice(0, 12)) : '—');

/** labels renders a label map as chips. */
export const labels = (m) => {
  const e = Object.entries(m || {}).sort();
  return e.length ? e.map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`)) : h('span', { class: 'muted' }, 'none');
};

/**
 * sparkline draws values as a small SVG line, with an optional dashed threshold line, once there
 * are two values to join. It is labelled for screen readers with the latest value.
 */
export function sparkline(values, { width = 120, height = 28, threshold, label = 'trend' } = {}) {
  const vs = values.filter((v) => Number.isFinite(v));
  if (vs.length < 2) {
    return h('span', { class: 'muted spark-wait', title: 'Values are collected while this page is open; the line appears from the second report.' }, 'collecting…');
  }
  const hi = Math.max(...vs, threshold ?? -Infinity, 1e-9);
  const lo = Math.min(0, ...vs);
  const y = (v) => height - 2 - ((v - lo) / (hi - lo || 1)) * (height - 4);
  const x = (i) => (vs.length < 2 ? width / 2 : (i / (vs.length - 1)) * (width - 4) + 2);
  const d = vs.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const last = vs.length ? vs[vs.length - 1] : undefined;
  return s('svg', { class: 'spark', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `${label}: ${vs.length} samples, latest ${last === undefined ? 'none' : num(last)}` },
  threshold !== undefined ? s('line', { x1: 0, x2: width, y1: y(threshold), y2: y(threshold) }) : null,
  s('path', { d }));
}

/** actionButton runs fn on click, disables itself meanwhile and reports failures through report. */
export function actionButton(text, fn, report, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs }, text);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await fn();
    } catch (err) {
      report(err);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** fill replaces el's children with children, flattened, skipping null, undefined and false. */
export function fill(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}
