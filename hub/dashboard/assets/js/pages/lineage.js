// Lineage: the subgraph around one node from GET /api/v1/lineage, laid out in layers from
// sources (left) to what was made from them (right). Clicking a node re-centres the graph on it.

import { get, listAll } from '../api.js';
import { h, s, table, when, fill } from '../dom.js';

const NODE_W = 180;
const NODE_H = 34;
const COL_GAP = 80;
const ROW_GAP = 14;
const PAD = 16;
const kindOrder = { dataset: 0, job: 1, model: 2, rollout: 3, device: 4, window: 5 };
/** MAX_PER_KIND is how many nodes of one kind a column shows before they fold into one. */
export const MAX_PER_KIND = 25;
const MAX_EDGE_ROWS = 500;

/**
 * flow returns an edge as data flows: from the source to what was made from it. Stored edges
 * point from the derived object to its source (model trained_on dataset), except produced,
 * which points from the job to its output.
 */
export function flow(e) {
  return e.kind === 'produced' ? [e.from, e.to] : [e.to, e.from];
}

/**
 * layout places the nodes of graph in columns: breadth-first from focus, one column further
 * right per flow edge followed forward and one further left per edge followed backward. It
 * returns positioned nodes, edges and the drawing's size.
 */
export function layout(graph, focus) {
  const layer = new Map();
  const adj = new Map();
  const link = (a, b, d) => { if (!adj.has(a)) adj.set(a, []); adj.get(a).push([b, d]); };
  for (const e of graph.edges) {
    const [src, dst] = flow(e);
    link(src, dst, 1);
    link(dst, src, -1);
  }
  const start = graph.nodes.some((n) => n.id === focus) ? focus : graph.nodes[0]?.id;
  const queue = start ? [start] : [];
  if (start) layer.set(start, 0);
  while (queue.length) {
    const a = queue.shift();
    for (const [b, d] of adj.get(a) || []) {
      if (!layer.has(b)) { layer.set(b, layer.get(a) + d); queue.push(b); }
    }
  }
  for (const n of graph.nodes) if (!layer.has(n.id)) layer.set(n.id, 0);
  const min = Math.min(0, ...layer.values());
  const cols = new Map();
  for (const n of graph.nodes) {
    const c = layer.get(n.id) - min;
    if (!cols.has(c)) cols.set(c, []);
    cols.get(c).push(n);
  }
  // Fold a crowd (a model deployed to thousands of devices) into one node per kind and column.
  const folded = new Map(); // node id -> id of the node it folded into
  for (const [c, ns] of cols) {
    const byKind = new Map();
    for (const n of ns) if (n.id !== start) byKind.set(n.kind, [...(byKind.get(n.kind) || []), n]);
    for (const [kind, group] of byKind) {
      if (group.length <= MAX_PER_KIND) continue;
      const id = `${kind}:…${group.length}@${c}`;
      for (const n of group) folded.set(n.id, id);
      cols.set(c, [...cols.get(c).filter((n) => n.kind !== kind || n.id === start), { id, kind, folded: group.length }]);
    }
  }
  const placed = new Map();
  let rows = 0;
  for (const [c, ns] of cols) {
    ns.sort((a, b) => (kindOrder[a.kind] ?? 9) - (kindOrder[b.kind] ?? 9) || a.id.localeCompare(b.id));
    ns.forEach((n, i) => placed.set(n.id, { ...n, col: c, row: i, x: PAD + c * (NODE_W + COL_GAP), y: PAD + i * (NODE_H + ROW_GAP) }));
    rows = Math.max(rows, ns.length);
  }
  const ncols = cols.size ? Math.max(...cols.keys()) + 1 : 0;
  const seen = new Set();
  const edges = [];
  for (const e of graph.edges) {
    const from = folded.get(e.from) || e.from;
    const to = folded.get(e.to) || e.to;
    const key = `${from}|${to}|${e.kind}`;
    if (!placed.has(from) || !placed.has(to) || seen.has(key)) continue;
    seen.add(key);
    edges.push({ ...e, from, to });
  }
  return {
    nodes: [...placed.values()],
    edges,
    width: PAD * 2 + ncols * NODE_W + Math.max(0, ncols - 1) * COL_GAP,
    height: PAD * 2 + rows * NODE_H + Math.max(0, rows - 1) * ROW_GAP,
    placed,
  };
}

/**
 * label is the text a node shows: its id without the kind, cut to 24 characters; a drifted
 * window (window:DEVICE/MODEL@V/START, START in Unix ms) shows its device and start time (UTC).
 */
export function label(n) {
  if (n.folded) return `${n.folded} ${n.kind}s`;
  const w = /^window:(.+)\/[^/]+\/(\d+)$/.exec(n.id);
  if (w) return `${w[1]} ${new Date(Number(w[2])).toISOString().slice(5, 19).replace('T', ' ')}`.slice(0, 24);
  const t = n.id.replace(/^(dataset|model|rollout|device|job|window):/, '');
  return t.length > 24 ? `${t.slice(0, 23)}…` : t;
}

function draw(lay, focus, onPick) {
  const svg = s('svg', { width: Math.max(lay.width, 200), height: Math.max(lay.height, 60), role: 'group', 'aria-label': 'lineage graph' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead', fill: 'currentColor' }))));
  for (const e of lay.edges) {
    const [src, dst] = flow(e).map((id) => lay.placed.get(id));
    const forward = dst.x > src.x;
    const x1 = forward ? src.x + NODE_W : src.x;
    const x2 = forward ? dst.x : dst.x + NODE_W;
    const y1 = src.y + NODE_H / 2;
    const y2 = dst.y + NODE_H / 2;
    const bend = Math.max(30, Math.abs(x2 - x1) / 2) * (forward ? 1 : -1);
    svg.append(s('g', { class: 'edgegroup' },
      s('path', { class: 'edge', d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' },
        s('title', {}, `${e.from} ${e.kind} ${e.to}`)),
      s('text', { class: 'elabel', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, e.kind)));
  }
  for (const n of lay.nodes) {
    if (n.folded) {
      svg.append(s('g', { class: `node folded k-${n.kind}`, 'data-folded': n.folded, transform: `translate(${n.x},${n.y})` },
        s('title', {}, `${n.folded} ${n.kind}s, folded; the table below lists them`),
        s('rect', { width: NODE_W, height: NODE_H }),
        s('text', { x: 10, y: NODE_H / 2 + 4 }, `${n.kind[0].toUpperCase()} ${label(n)}`)));
      continue;
    }
    const g = s('g', { class: `node k-${n.kind}${n.id === focus ? ' focus' : ''}`, tabindex: 0, role: 'button', 'data-node': n.id,
      'aria-label': `${n.id}${n.id === focus ? ' (centre)' : ''}: show its lineage`, transform: `translate(${n.x},${n.y})` },
    s('title', {}, n.id),
    s('rect', { width: NODE_W, height: NODE_H }),
    s('text', { x: 10, y: NODE_H / 2 + 4 }, `${n.kind[0].toUpperCase()} ${label(n)}`));
    g.addEventListener('click', () => onPick(n.id));
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onPick(n.id); } });
    svg.append(g);
  }
  return svg;
}

async function defaultNode() {
  const { items } = await listAll('/api/v1/models', 1);
  const m = items.find((x) => x.latest_version > 0);
  if (m) return `model:${m.name}@${m.latest_version}`;
  const { items: ds } = await listAll('/api/v1/datasets', 1);
  const d = ds.find((x) => x.latest_version > 0);
  return d ? `dataset:${d.name}@${d.latest_version}` : '';
}

export default {
  title: 'Lineage',
  mount(el, ctx) {
    let node = ctx.query.get('node') || '';
    const direction = ctx.query.get('direction') || 'both';
    const depth = ctx.query.get('depth') || '3';
    const nodeIn = h('input', { id: 'lin-node', name: 'node', value: node, placeholder: 'model:NAME@V', size: 30, spellcheck: 'false' });
    const dirIn = h('select', { id: 'lin-dir', name: 'direction' }, ['both', 'up', 'down'].map((d) => h('option', { value: d, selected: d === direction }, d)));
    const depthIn = h('input', { id: 'lin-depth', name: 'depth', type: 'number', min: 1, max: 50, value: depth, size: 3 });
    const form = h('form', { class: 'toolbar', role: 'search' },
      h('label', { for: 'lin-node' }, 'Node (KIND:NAME@VERSION)', nodeIn),
      h('label', { for: 'lin-dir' }, 'Direction', dirIn),
      h('label', { for: 'lin-depth' }, 'Depth', depthIn),
      h('button', { type: 'submit' }, 'Show'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      ctx.setQuery({ node: nodeIn.value.trim(), direction: dirIn.value, depth: depthIn.value });
    });
    const graphBox = h('div', { class: 'graph', id: 'lineage-graph' });
    const info = h('div', {});
    fill(el, h('h1', {}, 'Lineage'), form,
      h('p', { class: 'muted' }, 'Arrows follow the data: dataset → model → rollout and device → drifted window → the candidate dataset sampled from it. Select a node to centre the graph on it.'),
      graphBox, info);
    let last = '';
    return {
      async refresh() {
        if (!node) {
          node = await defaultNode();
          nodeIn.value = node;
          if (!node) {
            fill(graphBox, h('p', { class: 'muted' }, 'The registry is empty: push a dataset or a model version first.'));
            return;
          }
        }
        const g = await get(`/api/v1/lineage?node=${encodeURIComponent(node)}&direction=${encodeURIComponent(direction)}&depth=${encodeURIComponent(depth)}`);
        const key = JSON.stringify(g);
        if (key === last) return;
        last = key;
        const lay = layout(g, node);
        fill(graphBox, draw(lay, node, (id) => ctx.setQuery({ node: id })));
        fill(info, h('section', { class: 'card', 'aria-labelledby': 'h-edges' },
          h('h2', { id: 'h-edges' }, `Edges (${g.edges.length})`),
          g.edges.length > MAX_EDGE_ROWS ? h('p', { class: 'muted' }, `Listing the first ${MAX_EDGE_ROWS}.`) : null,
          table(['From', 'Edge', 'To', 'Since', 'Until'], g.edges.slice(0, MAX_EDGE_ROWS).map((e) => [
            h('a', { href: `#/lineage?node=${encodeURIComponent(e.from)}` }, e.from), e.kind,
            h('a', { href: `#/lineage?node=${encodeURIComponent(e.to)}` }, e.to), when(e.since), e.until ? when(e.until) : '',
          ]), { empty: 'This node has no edges within the depth.' })));
      },
    };
  },
};
