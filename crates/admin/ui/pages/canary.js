// Canary: continuous deployment policies (CloudFront's model). Each policy
// shows its current split between the primary distributions that use it
// and its staging distribution, the requests each side served (from the
// gateway's metrics), a weight control, and promote / discard behind a
// confirmation.

import {h, replace, toast, confirmDialog, pageHead, linkButton, fmtNum, badge} from '../dom.js';
import * as api from '../api.js';
import {editPage, idLink} from './resource.js';
import {pollStats, counter, rate} from '../stats.js';

const KIND = 'continuous_deployment_policies';

const SPEC = {
  kind: KIND,
  title: 'Canary',
  singular: 'canary policy',
  intro: 'A continuous deployment policy sends part of a primary distribution\'s requests to a staging distribution: those with a header, or a weighted share with session stickiness.',
  defaults: {enabled: true, traffic: {type: 'single_weight', weight: 0.05}},
  fields: async () => {
    const dists = await api.list('distributions').catch(() => []);
    return [
      {path: 'name', label: 'Name'},
      {path: 'staging_distribution_id', label: 'Staging distribution', type: 'select', required: true,
        options: [['', '— choose —'], ...dists.filter((d) => d.value.staging).map((d) => [api.idOf(d), api.idOf(d)])]},
      {path: 'enabled', label: 'Enabled', type: 'checkbox'},
      {path: 'traffic.type', label: 'Traffic', type: 'select', options: [['single_weight', 'a weighted share'], ['single_header', 'requests with a header']]},
      {path: 'traffic.weight', label: 'Weight (0 to 1; 0.05 is 5 %)', type: 'number', min: 0, max: 1, step: 0.01},
      {path: 'traffic.session_stickiness', label: 'Session stickiness (JSON)', type: 'json', rows: 3, wide: true, placeholder: '{"idle_ttl": 300, "maximum_ttl": 600}'},
      {path: 'traffic.header', label: 'Header (single_header)', placeholder: 'aws-cf-cd-resource'},
      {path: 'traffic.value', label: 'Header value (single_header)', placeholder: 'b'},
    ];
  },
  prepare(resource) {
    const t = resource.traffic || {};
    if (t.type === 'single_weight') {
      delete t.header;
      delete t.value;
    } else {
      delete t.weight;
      delete t.session_stickiness;
    }
  },
  after: () => '#/canary',
};

/** The staging share of a policy, 0..1, or null when it goes by header. */
function share(policy) {
  if (!policy.enabled) return 0;
  const t = policy.traffic || {};
  return t.type === 'single_weight' || t.type === 'SingleWeight' ? Number(t.weight) || 0 : null;
}

function splitBar(policy) {
  const s = share(policy);
  if (s === null) {
    const t = policy.traffic || {};
    return h('p', {class: 'split-text', 'data-test': 'split'}, 'Requests with ', h('code', {}, `${t.header}: ${t.value}`), ' go to staging; all others to the primary.');
  }
  const pct = Math.round(s * 1000) / 10;
  const bar = h('div', {class: 'split-bar', role: 'img', 'aria-label': `${pct} % staging`},
    h('span', {class: 'split-primary'}), h('span', {class: 'split-staging'}));
  bar.style.setProperty('--staging', `${pct}%`);
  return h('div', {class: 'split', 'data-test': 'split'}, bar,
    h('p', {class: 'split-legend'},
      h('span', {}, h('i', {class: 'dot dot-primary'}), `Primary ${fmtNum(100 - pct, 1)} %`),
      h('span', {}, h('i', {class: 'dot dot-staging'}), `Staging ${fmtNum(pct, 1)} %`)));
}

function weightControl(id, policy, reload) {
  const current = share(policy) ?? 0;
  const range = h('input', {type: 'range', min: 0, max: 100, step: 0.5, value: current * 100, 'aria-label': 'Staging share in percent', 'data-test': `weight-range-${id}`});
  const number = h('input', {type: 'number', min: 0, max: 100, step: 0.5, value: current * 100, class: 'weight-number', 'aria-label': 'Staging share in percent', 'data-test': `weight-input-${id}`});
  const error = h('p', {class: 'field-error', role: 'alert', hidden: true, 'data-test': `weight-error-${id}`});
  range.addEventListener('input', () => { number.value = range.value; });
  number.addEventListener('input', () => { range.value = number.value; });
  const apply = h('button', {type: 'button', class: 'btn btn-primary btn-small', 'data-test': `weight-apply-${id}`}, 'Apply weight');
  apply.addEventListener('click', async () => {
    error.hidden = true;
    const value = api.editable(policy);
    const old = value.traffic || {};
    value.traffic = {type: 'single_weight', weight: Number(number.value) / 100};
    if (old.session_stickiness) value.traffic.session_stickiness = old.session_stickiness;
    value.enabled = true;
    apply.disabled = true;
    try {
      await api.save(KIND, id, value);
      toast(`Canary ${id}: ${number.value} % of requests go to staging.`);
      reload();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      apply.disabled = false;
    }
  });
  return h('div', {class: 'weight'},
    h('label', {}, 'Staging share'),
    h('div', {class: 'weight-row'}, range, h('span', {class: 'weight-box'}, number, ' %'), apply),
    share(policy) === null ? h('p', {class: 'help'}, 'Applying a weight turns this header policy into a weighted one.') : null,
    error);
}

function actionButton(id, policy, what, primaries, reload) {
  const promote = what === 'promote';
  const staging = String(policy.staging_distribution_id);
  const target = primaries.join(', ') || 'its primary distribution';
  return h('button', {type: 'button', class: promote ? 'btn btn-primary' : 'btn btn-danger', 'data-test': `${what}-${id}`, onclick: async () => {
    const ok = await confirmDialog(promote ? {
      title: `Promote ${staging}?`,
      message: `The configuration of staging distribution ${staging} becomes the configuration of ${target}, for every player. The policy is disabled and the primary's cache is invalidated.`,
      confirm: 'Promote',
    } : {
      title: `Discard ${staging}?`,
      message: `Policy ${id} is disabled: every request goes to ${target} again, and the staging cache is invalidated. ${target} is not changed.`,
      confirm: 'Discard',
      danger: true,
    });
    if (!ok) return;
    try {
      await api.action(KIND, id, what);
      toast(promote ? `Promoted ${staging} into ${target}.` : `Discarded ${staging}.`);
      reload();
    } catch (e) {
      toast(e.message, 'bad');
    }
  }}, promote ? 'Promote' : 'Discard');
}

function card(item, dists, reload) {
  const id = api.idOf(item);
  const p = item.value;
  const primaries = dists.filter((d) => d.value.continuous_deployment_policy_id !== undefined && String(d.value.continuous_deployment_policy_id) === id).map(api.idOf);
  const staging = String(p.staging_distribution_id);
  const hits = h('dl', {class: 'hits', 'data-test': `hits-${id}`},
    h('dt', {}, 'Staging requests'), h('dd', {'data-test': `staging-hits-${id}`}, '…'),
    h('dt', {}, 'Primary requests'), h('dd', {'data-test': `primary-hits-${id}`}, '…'),
    h('dt', {}, 'Observed share'), h('dd', {'data-test': `observed-${id}`}, '…'));
  const write = api.canWrite();
  return {
    id, staging, primaries, hits,
    element: h('section', {class: 'card canary', 'data-test': `canary-${id}`},
      h('div', {class: 'card-head'},
        h('h2', {}, p.name || id),
        p.enabled ? badge('enabled', 'ok') : badge('disabled', 'muted'),
        write ? linkButton(`#/canary/${encodeURIComponent(id)}`, 'Edit', 'btn btn-small', `edit-${id}`) : null),
      h('p', {class: 'muted small'}, 'Primary: ', primaries.length ? primaries.map((d, i) => [i ? ', ' : '', idLink('distributions', d)]) : 'none yet',
        ' · Staging: ', idLink('distributions', staging)),
      splitBar(p),
      hits,
      write ? weightControl(id, p, reload) : null,
      write ? h('div', {class: 'actions'}, actionButton(id, p, 'discard', primaries, reload), actionButton(id, p, 'promote', primaries, reload)) : null),
  };
}

async function renderList(main) {
  let stop = () => {};
  // The page was left: nothing may draw or poll any more. Each reload has a
  // generation; one that finishes after a newer one started is dropped, so
  // two quick actions (apply, then promote) never leave two polls running.
  let closed = false;
  let generation = 0;
  const reload = async () => {
    const mine = ++generation;
    stop();
    stop = () => {};
    if (closed) return;
    const [policies, dists] = await Promise.all([api.list(KIND), api.list('distributions')]);
    if (closed || mine !== generation) return;
    const again = () => reload().catch((e) => {
      if (!closed) toast(e.message, 'bad');
    });
    const cards = policies.map((it) => card(it, dists, again));
    replace(main,
      pageHead('Canary', api.canWrite() ? linkButton('#/canary/new', 'New policy', 'btn btn-primary', 'new-canary') : null),
      h('p', {class: 'intro'}, SPEC.intro),
      cards.length ? h('div', {class: 'canaries'}, cards.map((c) => c.element)) : h('p', {class: 'muted'}, 'No continuous deployment policies yet.'));
    stop = pollStats((cur, prev) => {
      for (const c of cards) {
        const staged = (s) => counter(s, 'shardgate_edge_requests', (l) => l.variant === 'staging' && l.distribution === c.staging);
        const primary = (s) => counter(s, 'shardgate_edge_requests', (l) => l.variant !== 'staging' && c.primaries.includes(l.distribution));
        const sRate = rate(prev, cur, staged);
        const pRate = rate(prev, cur, primary);
        c.hits.querySelector(`[data-test="staging-hits-${c.id}"]`).textContent = `${fmtNum(staged(cur), 0)}${sRate === null ? '' : ` · ${fmtNum(sRate, 1)}/s`}`;
        c.hits.querySelector(`[data-test="primary-hits-${c.id}"]`).textContent = `${fmtNum(primary(cur), 0)}${pRate === null ? '' : ` · ${fmtNum(pRate, 1)}/s`}`;
        // The staging share of the requests of the last poll interval.
        if (sRate !== null && pRate !== null) {
          const both = sRate + pRate;
          c.hits.querySelector(`[data-test="observed-${c.id}"]`).textContent = both > 0 ? `${fmtNum((sRate / both) * 100, 1)} % to staging (last 2 s)` : 'no requests in the last 2 s';
        }
      }
    });
  };
  await reload();
  return () => {
    closed = true;
    generation += 1;
    stop();
  };
}

export function render(main, [id]) {
  return id ? editPage(main, id, SPEC) : renderList(main);
}
