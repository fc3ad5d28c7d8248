// Cluster: the Raft status this node sees (leader, nodes, term, indexes) and its readiness.

import { get } from '../api.js';
import { badge, h, kv, table, fill } from '../dom.js';

export default {
  title: 'Cluster',
  mount(el) {
    const body = h('div', {});
    fill(el, h('h1', {}, 'Cluster'), body);
    return {
      async refresh() {
        const c = await get('/api/v1/cluster');
        let ready = null;
        try {
          const res = await fetch('/readyz', { cache: 'no-store' });
          ready = res.ok;
        } catch { ready = false; }
        const leader = c.leader?.id || '';
        fill(body, 
          h('div', { class: 'tiles' },
            h('div', { class: 'tile' }, h('div', { class: 'n', id: 'cluster-leader' }, leader || '—'), h('div', { class: 'l' }, 'leader')),
            h('div', { class: 'tile' }, h('div', { class: 'n', id: 'cluster-nodes' }, String((c.nodes || []).length)), h('div', { class: 'l' }, 'nodes')),
            h('div', { class: 'tile' }, h('div', { class: 'n' }, String(c.term)), h('div', { class: 'l' }, 'term')),
            h('div', { class: 'tile' }, h('div', { class: 'n', id: 'cluster-applied' }, String(c.applied_index)), h('div', { class: 'l' }, `applied index (commit ${c.commit_index})`))),
          h('section', { class: 'card', 'aria-labelledby': 'h-this' }, h('h2', { id: 'h-this' }, 'This node'),
            kv([['Node', h('code', {}, c.self || '—')], ['Raft state', c.state || '—'],
              ['Ready', ready === null ? '—' : ready ? badge('ready', 'ok') : badge('not ready', 'bad')],
              ['Leader API', c.leader?.http ? h('code', {}, c.leader.http) : 'no leader known']])),
          h('section', { class: 'card', 'aria-labelledby': 'h-nodes' }, h('h2', { id: 'h-nodes' }, 'Nodes'),
            table(['Node', 'Role', 'State', 'Raft address', 'HTTP address'], (c.nodes || []).map((n) => ({
              attrs: { 'data-node': n.id },
              cells: [h('code', {}, n.id), [n.id === leader ? badge('leader', 'ok') : null, ' ', n.voter ? 'voter' : 'non-voter'],
                n.state || '—', h('code', {}, n.raft), h('code', {}, n.http)],
            })), { empty: 'No nodes reported.' })));
      },
    };
  },
};
