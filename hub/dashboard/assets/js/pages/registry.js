// Registry: models and their versions (status, approvals, aliases, metrics, training data) and
// datasets and their versions; approve and alias actions for the roles that may take them.

import { can, get, listAll, post, put } from '../api.js';
import { badge, bytes, h, num, shortDigest, table, when, fill } from '../dom.js';

const MAX_MODELS = 50;

const statusTone = { approved: 'ok', registered: 'info', deprecated: 'idle' };

function aliasesByVersion(model) {
  const m = new Map();
  for (const [a, v] of Object.entries(model.aliases || {})) m.set(v, [...(m.get(v) || []), a]);
  return m;
}

function metrics(mv) {
  const e = Object.entries(mv.metrics || {}).sort();
  return e.length ? e.map(([k, v]) => h('div', {}, h('span', { class: 'muted' }, `${k} `), num(v, 4))) : '—';
}

export default {
  title: 'Registry',
  mount(el, ctx) {
    const body = h('div', {});
    const forms = h('div', { class: 'grid2' });
    const mayApprove = can('approve');
    const mayAlias = can('alias');

    const approveModel = h('select', { id: 'approve-model', name: 'model', required: true });
    const approveVersion = h('input', { id: 'approve-version', name: 'version', type: 'number', min: 1, required: true, size: 5 });
    const approveComment = h('input', { id: 'approve-comment', name: 'comment', placeholder: 'why it may ship', size: 24 });
    const approveForm = h('form', { class: 'inline', 'aria-label': 'Approve a model version' },
      h('label', { for: 'approve-model' }, 'Model', approveModel),
      h('label', { for: 'approve-version' }, 'Version', approveVersion),
      h('label', { for: 'approve-comment' }, 'Comment', approveComment),
      h('button', { type: 'submit' }, 'Approve'));
    approveForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await post(`/api/v1/models/${encodeURIComponent(approveModel.value)}/versions/${Number(approveVersion.value)}/approve`, { comment: approveComment.value });
        approveComment.value = '';
        await ctx.refresh();
      } catch (err) { ctx.report(err); }
    });

    const aliasModel = h('select', { id: 'alias-model', name: 'model', required: true });
    const aliasName = h('input', { id: 'alias-name', name: 'alias', placeholder: 'production', required: true, size: 12 });
    const aliasVersion = h('input', { id: 'alias-version', name: 'version', type: 'number', min: 1, required: true, size: 5 });
    const aliasForm = h('form', { class: 'inline', 'aria-label': 'Point an alias at a version' },
      h('label', { for: 'alias-model' }, 'Model', aliasModel),
      h('label', { for: 'alias-name' }, 'Alias', aliasName),
      h('label', { for: 'alias-version' }, 'Version', aliasVersion),
      h('button', { type: 'submit' }, 'Set alias'));
    aliasForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await put(`/api/v1/models/${encodeURIComponent(aliasModel.value)}/aliases/${encodeURIComponent(aliasName.value.trim())}`, { version: Number(aliasVersion.value) });
        await ctx.refresh();
      } catch (err) { ctx.report(err); }
    });
    if (mayApprove) forms.append(h('section', { class: 'card', 'aria-labelledby': 'h-approve' }, h('h2', { id: 'h-approve' }, 'Approve'), approveForm));
    if (mayAlias) forms.append(h('section', { class: 'card', 'aria-labelledby': 'h-alias' }, h('h2', { id: 'h-alias' }, 'Aliases'), aliasForm));
    fill(el, h('h1', {}, 'Registry'), forms, body);

    const fillSelect = (sel, names) => {
      const keep = sel.value;
      fill(sel, ...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(keep)) sel.value = keep;
    };

    return {
      async refresh() {
        const [{ items: models }, { items: datasets }] = await Promise.all([listAll('/api/v1/models', 1), listAll('/api/v1/datasets', 1)]);
        models.sort((a, b) => a.name.localeCompare(b.name));
        datasets.sort((a, b) => a.name.localeCompare(b.name));
        fillSelect(approveModel, models.map((m) => m.name));
        fillSelect(aliasModel, models.map((m) => m.name));
        const shown = models.slice(0, MAX_MODELS);
        const versions = await Promise.all(shown.map((m) => listAll(`/api/v1/models/${encodeURIComponent(m.name)}/versions`, 1)));
        const dversions = await Promise.all(datasets.slice(0, MAX_MODELS).map((d) => listAll(`/api/v1/datasets/${encodeURIComponent(d.name)}/versions`, 1)));
        fill(body, 
          h('h2', {}, `Models (${models.length})`),
          models.length ? null : h('p', { class: 'muted' }, 'No models yet: driftline model create NAME.'),
          shown.map((m, i) => modelCard(m, versions[i].items, mayApprove, (v) => {
            approveModel.value = m.name;
            approveVersion.value = v;
            approveComment.focus();
          })),
          h('h2', {}, `Datasets (${datasets.length})`),
          datasets.length ? null : h('p', { class: 'muted' }, 'No datasets yet: driftline dataset create NAME.'),
          datasets.slice(0, MAX_MODELS).map((d, i) => datasetCard(d, dversions[i].items)));
      },
    };
  },
};

function modelCard(m, versions, mayApprove, pickApprove) {
  const aliases = aliasesByVersion(m);
  versions.sort((a, b) => b.version - a.version);
  return h('section', { class: 'card', 'data-model': m.name, 'aria-label': `model ${m.name}` },
    h('h3', {}, h('code', {}, m.name), ' ', h('span', { class: 'muted' }, m.description || '')),
    table(['Version', 'Status', 'Aliases', 'Digest', 'Size', 'Trained on', 'Metrics', 'Approvals', 'Registered', ''],
      versions.map((v) => ({
        attrs: { 'data-version': v.version },
        cells: [
          h('a', { href: `#/lineage?node=${encodeURIComponent(`model:${m.name}@${v.version}`)}`, title: 'lineage' }, `v${v.version}`),
          badge(v.status, statusTone[v.status] || 'idle'),
          (aliases.get(v.version) || []).map((a) => h('span', { class: 'label' }, a)),
          shortDigest(v.digest), bytes(v.size),
          (v.trained_on || []).map((t) => h('div', {}, h('a', { href: `#/lineage?node=${encodeURIComponent(`dataset:${t.dataset}@${t.version}`)}` }, `${t.dataset}@${t.version}`))),
          metrics(v),
          (v.approvals || []).map((a) => h('div', {}, `${a.by}, ${when(a.at)}`, a.comment ? h('span', { class: 'muted' }, ` “${a.comment}”`) : null)),
          [v.created_by, h('br', {}), h('span', { class: 'muted' }, when(v.created_at))],
          mayApprove && v.status === 'registered'
            ? h('button', { type: 'button', class: 'secondary', onclick: () => pickApprove(v.version), 'aria-label': `approve ${m.name} version ${v.version}` }, 'Approve…')
            : '',
        ],
      })), { empty: 'No versions yet.' }));
}

function datasetCard(d, versions) {
  versions.sort((a, b) => b.version - a.version);
  return h('section', { class: 'card', 'data-dataset': d.name, 'aria-label': `dataset ${d.name}` },
    h('h3', {}, h('code', {}, d.name), ' ', h('span', { class: 'muted' }, d.description || '')),
    table(['Version', 'Rows', 'Invalid rows', 'Sample', 'Contract', 'Profile', 'Parents', 'Registered'],
      versions.map((v) => [
        h('a', { href: `#/lineage?node=${encodeURIComponent(`dataset:${d.name}@${v.version}`)}` }, `v${v.version}`),
        String(v.sample_rows ?? 0), String(v.invalid_rows ?? 0),
        [bytes(v.sample_bytes), ' ', shortDigest(v.sample_sha256)],
        shortDigest(v.contract_digest), shortDigest(v.profile_digest),
        (v.parents || []).map((p) => h('div', {}, `${p.dataset}@${p.version}`)),
        [v.created_by, h('br', {}), h('span', { class: 'muted' }, when(v.created_at))],
      ]), { empty: 'No versions yet.', numeric: [1, 2] }));
}
