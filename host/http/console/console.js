// The Waymark console: a single page on the HTTP API of `waymark serve`.
//
// No framework and no build step. Every element is built with `h()` and
// filled with text nodes, never with HTML, so a run's vars or a guest's
// output cannot inject markup. The bearer token lives in this tab's
// sessionStorage and goes out only in the Authorization header of our own
// API calls (live streams included: they are read with fetch, since
// EventSource cannot send headers); there is no cookie to ride along on a
// cross-site request.
'use strict';

const TOKEN_KEY = 'waymark.token';
const RANKS = { read: 0, operate: 1, admin: 2 };
const LIST_PAGE = 50;
const LEDGER_PAGE = 100;
const STATUSES = ['queued', 'running', 'waiting', 'completed', 'failed', 'cancelled'];

const session = { token: null, name: null, role: null };
let leaveView = () => {};

// ---- small helpers -------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (typeof value === 'boolean') el[key] = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const can = (role) => RANKS[session.role] >= RANKS[role];
const json = (value) => JSON.stringify(value, null, 2);

function when(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function badge(status, paused) {
  return h('span', { class: `badge s-${paused ? 'paused' : status}`, dataset: { status } },
    paused ? `${status} (paused)` : status);
}

function notify(message, ok) {
  const box = $('#notice');
  box.textContent = message;
  box.className = ok ? 'notice ok' : 'notice';
  box.hidden = !message;
}

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${session.token}` };
  let payload;
  if (body instanceof Blob) {
    headers['content-type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, {
    method, headers, body: payload, credentials: 'omit', cache: 'no-store',
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Reads a Server-Sent Events stream with fetch, reconnecting (with
// Last-Event-ID) after a dropped connection; `onEvent` returning 'stop'
// ends it. Returns a handle whose close() ends it too.
function openStream(path, onEvent) {
  const abort = new AbortController();
  let lastId = null;
  let stopped = false;
  const stop = () => { stopped = true; abort.abort(); };
  (async () => {
    let delay = 250;
    while (!stopped) {
      try {
        const headers = { authorization: `Bearer ${session.token}`, accept: 'text/event-stream' };
        if (lastId != null) headers['last-event-id'] = lastId;
        const response = await fetch(path, {
          headers, signal: abort.signal, credentials: 'omit', cache: 'no-store',
        });
        if (response.status >= 400 && response.status < 500) return;
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        delay = 250;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        let event = { event: 'message', data: [], id: null };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, end).replace(/\r$/, '');
            buffer = buffer.slice(end + 1);
            if (line === '') {
              if (event.data.length) {
                if (event.id != null) lastId = event.id;
                const data = event.data.join('\n');
                if (onEvent({ event: event.event, id: event.id, data }) === 'stop') return stop();
              }
              event = { event: 'message', data: [], id: null };
            } else if (!line.startsWith(':')) {
              const colon = line.indexOf(':');
              const field = colon < 0 ? line : line.slice(0, colon);
              const value2 = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
              if (field === 'event') event.event = value2;
              else if (field === 'data') event.data.push(value2);
              else if (field === 'id') event.id = value2;
            }
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  })();
  return { close: stop };
}

// ---- sign-in and routing -------------------------------------------------

function takeTokenFromUrl() {
  // `serve` prints the console's URL with the token in the fragment, which
  // never reaches a server; it is moved to sessionStorage at once.
  const match = location.hash.match(/^#token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, '', `${location.pathname}#/runs`);
  }
  session.token = sessionStorage.getItem(TOKEN_KEY);
}

async function signIn() {
  try {
    const me = await api('GET', '/v1/whoami');
    session.name = me.name;
    session.role = me.role;
    $('#who').textContent = `${me.name} · ${me.role}`;
    $('#who').dataset.role = me.role;
    $('#nav').hidden = false;
    $('#sign-out').hidden = false;
    return true;
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.token = null;
    notify(e.status === 401 ? 'That token is not valid here.' : `Cannot sign in: ${e.message}`);
    return false;
  }
}

function signInView() {
  const input = h('input', { id: 'token', type: 'password', size: 50, autocomplete: 'off',
    placeholder: 'wmk_…', 'aria-label': 'API token' });
  const submit = async () => {
    if (!input.value.trim()) return;
    session.token = input.value.trim();
    sessionStorage.setItem(TOKEN_KEY, session.token);
    if (await signIn()) { notify(''); route(); }
  };
  return h('div', { class: 'panel' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API token (`waymark token new`, or the one `waymark serve` printed).'),
    h('div', { class: 'row' }, input,
      h('button', { id: 'sign-in', class: 'primary', onclick: submit }, 'Sign in')));
}

async function route() {
  leaveView();
  leaveView = () => {};
  const view = $('#view');
  if (!session.token) {
    view.replaceChildren(signInView());
    return;
  }
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === (parts[0] || 'runs'));
  }
  try {
    if (parts[0] === 'runs' && parts[1]) {
      await showRun(view, decodeURIComponent(parts[1]));
    } else if (parts[0] === 'workflows') {
      await showWorkflows(view);
    } else {
      await showRuns(view, params);
    }
  } catch (e) {
    view.replaceChildren(h('div', { class: 'panel error' }, e.message));
  }
}

// ---- the run list --------------------------------------------------------

function waitReason(run) {
  return typeof run.waiting === 'string' ? run.waiting : run.waiting && run.waiting.reason;
}

function runRow(run) {
  return h('tr', { dataset: { runId: run.run_id } },
    h('td', { class: 'mono' }, h('a', { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
    h('td', {}, run.workflow_id),
    h('td', {}, badge(run.status, run.paused)),
    h('td', {}, run.current_node, waitReason(run) ? h('span', { class: 'muted' }, ` · ${waitReason(run)}`) : ''),
    h('td', {}, run.steps),
    h('td', { class: 'muted' }, when(run.created_at_ms)),
    h('td', { class: 'muted' }, when(run.updated_at_ms)));
}

function listQuery(filters) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  return q;
}

async function showRuns(view, params) {
  const filters = {
    status: params.get('status') || '',
    workflow: params.get('workflow') || '',
    session: params.get('session') || '',
  };
  const after = params.get('after');
  const rows = new Map();
  const body = h('tbody', { id: 'runs-body' });
  const older = h('button', { id: 'older', hidden: true }, 'Older →');
  const count = h('span', { class: 'muted' });

  const render = () => {
    const runs = [...rows.values()].sort((a, b) =>
      b.created_at_ms - a.created_at_ms || (b.run_id < a.run_id ? -1 : b.run_id > a.run_id ? 1 : 0));
    const shown = runs.slice(0, LIST_PAGE);
    body.replaceChildren(...shown.map(runRow));
    if (!shown.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No runs.')));
    older.hidden = shown.length < LIST_PAGE;
    const last = shown[shown.length - 1];
    older.onclick = () => {
      const q = listQuery(filters);
      q.set('after', `${last.created_at_ms}-${last.run_id}`);
      location.hash = `#/runs?${q}`;
    };
    count.textContent = after ? 'older runs' : 'live';
  };

  const form = filterForm(filters);
  const search = h('input', { id: 'search', placeholder: 'run id', size: 38, 'aria-label': 'Run id' });
  const go = () => { if (search.value.trim()) location.hash = `#/runs/${encodeURIComponent(search.value.trim())}`; };
  search.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
  view.replaceChildren(
    h('h1', {}, 'Runs'),
    h('div', { class: 'panel row' }, form, h('span', { class: 'spacer' }), search, h('button', { onclick: go }, 'Open')),
    can('operate') ? await startForm() : '',
    h('div', { class: 'row pager' }, count, after ? h('a', { href: `#/runs?${listQuery(filters)}` }, '← Newest') : '', older),
    h('table', { id: 'runs' },
      h('thead', {}, h('tr', {}, ...['Run', 'Workflow', 'Status', 'Node', 'Steps', 'Created', 'Updated'].map((t) => h('th', {}, t)))),
      body));

  if (after) {
    const q = listQuery(filters);
    q.set('after', after);
    q.set('limit', LIST_PAGE);
    const page = await api('GET', `/v1/runs?${q}`);
    for (const run of page.runs) rows.set(run.run_id, run);
    render();
    return;
  }
  render();
  const q = listQuery(filters);
  q.set('limit', LIST_PAGE);
  const stream = openStream(`/v1/stream/runs?${q}`, (event) => {
    if (event.event !== 'run') return;
    const run = JSON.parse(event.data);
    rows.set(run.run_id, run);
    render();
  });
  leaveView = () => stream.close();
}

function filterForm(filters) {
  const status = h('select', { id: 'filter-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const workflow = h('input', { id: 'filter-workflow', placeholder: 'workflow', value: filters.workflow, size: 14 });
  const sessionInput = h('input', { id: 'filter-session', placeholder: 'session', value: filters.session, size: 14 });
  const apply = () => {
    location.hash = `#/runs?${listQuery({ status: status.value, workflow: workflow.value.trim(), session: sessionInput.value.trim() })}`;
  };
  return h('div', { class: 'row' }, status, workflow, sessionInput, h('button', { id: 'filter', onclick: apply }, 'Filter'));
}

async function startForm() {
  let workflows = [];
  try { workflows = (await api('GET', '/v1/workflows')).workflows; } catch { /* no catalog */ }
  if (!workflows.length) return '';
  const pick = h('select', { id: 'start-workflow', 'aria-label': 'Workflow' },
    workflows.map((w) => h('option', { value: w.workflow_id }, `${w.workflow_id} ${w.version}`)));
  const vars = h('input', { id: 'start-vars', placeholder: 'vars as JSON, e.g. {"customer": "c-1"}', size: 40 });
  const start = async () => {
    let parsed;
    try { parsed = vars.value.trim() ? JSON.parse(vars.value) : undefined; } catch (e) {
      notify(`The vars are not JSON: ${e.message}`);
      return;
    }
    try {
      const run = await api('POST', '/v1/runs', { workflow: pick.value, vars: parsed });
      notify('');
      location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
    } catch (e) { notify(e.message); }
  };
  return h('div', { class: 'panel row' }, h('strong', {}, 'Start a run'), pick, vars,
    h('button', { id: 'start', class: 'primary', onclick: start }, 'Start'));
}

// ---- one run -------------------------------------------------------------

async function showRun(view, runId) {
  const base = `/v1/runs/${encodeURIComponent(runId)}`;
  const page = { from: 0, follow: true };
  let run = await api('GET', base);
  let total = run.ledger.next_seq;

  const header = h('div');
  const waitPanel = h('div', { id: 'wait-panel' });
  const children = h('div', { id: 'children' });
  const timelineBody = h('tbody', { id: 'timeline-body' });
  const pager = h('div', { class: 'row pager', id: 'timeline-pager' });
  const verified = h('span', { id: 'verified' });

  const refreshVerify = async () => {
    try {
      const v = await api('GET', `${base}/verify`);
      verified.replaceChildren(v.ok
        ? h('span', { class: 'badge verified', dataset: { verified: 'true' } }, `✓ chain verified (${v.records})`)
        : h('span', { class: 'badge broken', dataset: { verified: 'false' } },
          `✗ chain broken at ${v.first_bad && v.first_bad.seq}`));
    } catch (e) { verified.textContent = e.message; }
  };

  const details = h('div');
  // The wait panel is redrawn only when the wait changes, so that choices
  // being made in it survive the run's other updates.
  let shownWait = null;
  const renderHeader = () => {
    header.replaceChildren(
      h('h1', {}, 'Run ', h('span', { class: 'mono', id: 'run-id' }, run.run_id)),
      h('div', { class: 'row' }, h('span', { id: 'run-status' }, badge(run.status, run.paused)), verified),
      actions(run, base, reload));
    const wait = run.status === 'waiting' && run.waiting ? run.waiting.wait_key : '';
    if (wait !== shownWait) {
      shownWait = wait;
      waitPanel.replaceChildren(...waitView(run, base, reload));
    }
    details.replaceChildren(h('div', { class: 'panel' }, h('dl', { class: 'grid' },
      info('Workflow', `${run.workflow_id} ${run.workflow_version || ''}`),
      info('Node', h('span', { id: 'run-node' }, run.current_node)),
      info('Session', run.session_id),
      run.parent_run_id ? info('Parent', h('a', { href: `#/runs/${encodeURIComponent(run.parent_run_id)}` }, run.parent_run_id)) : '',
      info('Steps', run.steps),
      info('Created', when(run.created_at_ms)),
      info('Updated', when(run.updated_at_ms)),
      run.component_digest ? info('Component', h('span', { class: 'mono' }, run.component_digest)) : '',
      run.output !== undefined ? info('Output', h('pre', { id: 'run-output' }, json(run.output))) : '',
      run.error ? info('Error', h('span', { class: 'error' }, `${run.error.kind}: ${run.error.message}`)) : '',
      info('Vars', h('details', {}, h('summary', {}, `${Object.keys(run.vars || {}).length} keys`), h('pre', {}, json(run.vars)))))));
  };

  // One reload at a time; a request for one while another is under way
  // makes that one read the run again when it is done, so the last
  // request always sees the newest state.
  let reloading = null;
  let again = false;
  function reload() {
    if (reloading) {
      again = true;
      return reloading;
    }
    reloading = (async () => {
      try {
        do {
          again = false;
          run = await api('GET', base);
          total = Math.max(total, run.ledger.next_seq);
          renderHeader();
        } while (again);
      } finally { reloading = null; }
    })();
    return reloading;
  }

  const loadPage = async () => {
    if (page.follow) page.from = Math.max(0, Math.floor((total - 1) / LEDGER_PAGE) * LEDGER_PAGE);
    const data = await api('GET', `${base}/ledger?from=${page.from}&limit=${LEDGER_PAGE}`);
    timelineBody.replaceChildren(...data.records.map((r) => recordRows(r, base)).flat());
    renderPager();
  };

  const renderPager = () => {
    const last = Math.max(0, Math.floor((total - 1) / LEDGER_PAGE) * LEDGER_PAGE);
    const to = Math.min(total, page.from + LEDGER_PAGE);
    const goto = (from) => () => { page.from = from; page.follow = from === last; loadPage(); };
    pager.replaceChildren(
      h('button', { onclick: goto(0), disabled: page.from === 0 }, '⇤ First'),
      h('button', { id: 'timeline-prev', onclick: goto(Math.max(0, page.from - LEDGER_PAGE)), disabled: page.from === 0 }, '← Previous'),
      h('span', { id: 'timeline-range' }, `records ${total ? page.from : 0}–${Math.max(0, to - 1)} of ${total}`),
      h('button', { id: 'timeline-next', onclick: goto(page.from + LEDGER_PAGE), disabled: page.from >= last }, 'Next →'),
      h('button', { onclick: goto(last), disabled: page.from >= last }, 'Last ⇥'),
      page.follow ? h('span', { class: 'muted' }, 'following live') : '');
  };

  renderHeader();
  view.replaceChildren(header, waitPanel, details,
    h('h2', {}, 'Children'), children,
    h('h2', {}, 'Timeline'), pager,
    h('table', { id: 'timeline' },
      h('thead', {}, h('tr', {}, ...['#', 'Kind', 'Status', 'Node', 'Effect', 'Result key', 'Fuel', 'ms', 'Error'].map((t) => h('th', {}, t)))),
      timelineBody));
  refreshVerify();
  showChildren(children, run.run_id);
  await loadPage();

  // New records as they commit: appended while following the last page.
  const stream = openStream(`${base}/stream?from=${total}`, (event) => {
    if (event.event === 'record') {
      const record = JSON.parse(event.data);
      total = Math.max(total, record.seq + 1);
      if (page.follow) {
        if (record.seq >= page.from + LEDGER_PAGE) loadPage();
        else if (!$(`[data-seq="${record.seq}"]`, timelineBody)) {
          timelineBody.append(...recordRows(record, base));
        }
      }
      renderPager();
      reload();
    } else if (event.event === 'end') {
      reload().then(refreshVerify);
      return 'stop';
    }
    return undefined;
  });
  leaveView = () => stream.close();
}

function info(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function effectName(effect) {
  return effect ? effect.type : '';
}

function recordRows(record, base) {
  const duration = record.ended_at_ms && record.started_at_ms ? record.ended_at_ms - record.started_at_ms : '';
  const node = record.node_id && record.next_node && record.node_id !== record.next_node
    ? `${record.node_id} → ${record.next_node}` : (record.node_id || record.next_node || '');
  const detail = h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 9 }, recordDetail(record, base)));
  const row = h('tr', { dataset: { seq: record.seq, kind: record.kind }, class: 'record',
    onclick: () => { detail.hidden = !detail.hidden; } },
    h('td', {}, record.seq),
    h('td', { class: `k-${record.kind}` }, record.kind),
    h('td', {}, record.status),
    h('td', {}, node),
    h('td', {}, effectName(record.effect)),
    h('td', { class: 'mono' }, record.result_key || ''),
    h('td', {}, record.fuel_consumed == null ? '' : record.fuel_consumed.toLocaleString()),
    h('td', {}, duration),
    h('td', { class: 'error' }, record.error ? `${record.error.kind}: ${record.error.message}` : ''));
  return [row, detail];
}

function recordDetail(record, base) {
  const changes = (record.writes || []).map((w) =>
    w.op === 'remove' ? `− ${w.path}` : `${w.path} = ${JSON.stringify(w.value)}`);
  if (record.result_key && record.result !== undefined) {
    changes.push(`${record.result_key} = ${JSON.stringify(record.result)} (result)`);
  }
  const varsBox = h('div');
  const showVars = async () => {
    try {
      const data = await api('GET', `${base}/vars?after=${record.seq}`);
      varsBox.replaceChildren(h('pre', { class: 'vars-after' }, json(data.vars)));
    } catch (e) { varsBox.replaceChildren(h('span', { class: 'error' }, e.message)); }
  };
  return h('div', {},
    h('div', {}, h('strong', {}, 'Changed: '), changes.length ? h('pre', {}, changes.join('\n')) : h('span', { class: 'muted' }, 'no vars')),
    record.effect ? h('div', {}, h('strong', {}, 'Effect'), h('pre', {}, json(record.effect))) : '',
    record.result !== undefined && !record.result_key ? h('div', {}, h('strong', {}, 'Result'), h('pre', {}, json(record.result))) : '',
    record.wait ? h('div', {}, h('strong', {}, 'Wait'), h('pre', {}, json(record.wait))) : '',
    record.output !== undefined ? h('div', {}, h('strong', {}, 'Output'), h('pre', {}, json(record.output))) : '',
    (record.logs || []).length ? h('div', {}, h('strong', {}, 'Logs'), h('pre', {}, record.logs.map((l) => `${l.level} ${l.message}`).join('\n'))) : '',
    h('div', { class: 'row' }, h('button', { class: 'show-vars', onclick: (e) => { e.stopPropagation(); showVars(); } }, 'Vars after this record'),
      h('span', { class: 'muted mono' }, record.record_hash ? `hash ${record.record_hash.slice(0, 16)}…` : '')),
    varsBox);
}

function actions(run, base, reload) {
  if (!can('operate')) return h('div', { id: 'actions', class: 'row muted' }, `Your role (${session.role}) can look but not act.`);
  const ended = ['completed', 'failed', 'cancelled'].includes(run.status);
  const post = (path, body, done) => async () => {
    try {
      await api('POST', `${base}${path}`, body);
      notify(done, true);
      reload();
    } catch (e) { notify(e.message); }
  };
  const cancel = h('button', { id: 'action-cancel', class: 'danger', disabled: ended });
  cancel.textContent = 'Cancel';
  cancel.onclick = () => {
    if (cancel.dataset.armed) return post('/cancel', { reason: `cancelled from the console by ${session.name}` }, 'Cancelled.')();
    cancel.dataset.armed = 'yes';
    cancel.textContent = 'Really cancel?';
    setTimeout(() => { delete cancel.dataset.armed; cancel.textContent = 'Cancel'; }, 4000);
    return undefined;
  };
  const exportRun = async () => {
    try {
      const doc = await api('GET', `${base}/export`);
      const link = h('a', { href: URL.createObjectURL(new Blob([json(doc)], { type: 'application/json' })), download: `run-${run.run_id}.json` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    } catch (e) { notify(e.message); }
  };
  return h('div', { id: 'actions', class: 'row' },
    cancel,
    run.paused
      ? h('button', { id: 'action-resume', onclick: post('/resume', {}, 'Resumed.'), disabled: ended }, 'Resume run')
      : h('button', { id: 'action-pause', onclick: post('/pause', {}, 'Paused.'), disabled: ended }, 'Pause'),
    h('button', { id: 'action-snapshot', onclick: post('/snapshots', { name: `console ${when(Date.now())}` }, 'Snapshot saved.') }, 'Snapshot'),
    h('button', { id: 'action-export', onclick: exportRun }, 'Export'));
}

function waitView(run, base, reload) {
  const wait = run.waiting;
  if (run.status !== 'waiting' || !wait) return [];
  const respond = async (payload) => {
    try {
      await api('POST', `${base}/respond`, { wait_key: wait.wait_key, payload });
      notify('Answered.', true);
      reload();
    } catch (e) { notify(e.message); }
  };
  const answerable = can('operate');
  const parts = [h('h2', {}, `Waiting: ${wait.reason}`)];
  if (wait.reason === 'user') {
    parts.push(h('p', { id: 'wait-prompt' }, wait.prompt || ''));
    if (answerable) {
      const row = h('div', { class: 'row' });
      for (const choice of wait.choices || []) {
        row.append(h('button', { class: 'primary choice', dataset: { choice }, onclick: () => respond({ text: choice }) }, choice));
      }
      if (wait.allow_free_text || !(wait.choices || []).length) {
        const text = h('input', { id: 'answer-text', size: 40, placeholder: 'your answer' });
        row.append(text, h('button', { id: 'answer-send', onclick: () => respond({ text: text.value }) }, 'Send'));
      }
      parts.push(row);
    }
  } else if (wait.reason === 'approval') {
    parts.push(approvalView(wait, base, reload, answerable));
  } else if (wait.reason === 'until') {
    parts.push(h('p', {}, `Sleeps until ${when(wait.wake_at_ms)}.`));
  } else if (wait.reason === 'event') {
    parts.push(h('p', {}, `Waits for event “${wait.event_name}” in ${wait.event_scope}`,
      wait.wake_at_ms ? `, at most until ${when(wait.wake_at_ms)}` : '', '.'));
  } else if (wait.reason === 'subworkflow' && wait.child_run_id) {
    parts.push(h('p', {}, 'Waits for its child ', h('a', { href: `#/runs/${encodeURIComponent(wait.child_run_id)}` }, wait.child_run_id), '.'));
  } else {
    parts.push(h('pre', {}, json(wait)));
  }
  if (!answerable && ['user', 'approval'].includes(wait.reason)) {
    parts.push(h('p', { class: 'muted' }, `Your role (${session.role}) cannot answer.`));
  }
  return [h('div', { class: 'panel' }, parts)];
}

function approvalView(wait, base, reload, answerable) {
  const calls = (wait.details && wait.details.calls) || [];
  const decisions = {};
  const gated = calls.filter((c) => c.approval !== 'auto');
  const submit = h('button', { id: 'approval-submit', class: 'primary', disabled: true }, 'Submit decisions');
  const reason = h('input', { id: 'approval-reason', size: 40, placeholder: 'reason (given to the workflow for denials)' });
  const refresh = () => { submit.disabled = gated.some((c) => decisions[c.call_id] === undefined); };
  submit.onclick = async () => {
    try {
      await api('POST', `${base}/approve`, {
        wait_key: wait.wait_key, approve: false, calls: decisions, reason: reason.value || undefined,
      });
      notify('Decided.', true);
      reload();
    } catch (e) { notify(e.message); }
  };
  const list = h('div', { id: 'approval-calls' }, calls.map((call) => {
    const needs = call.approval !== 'auto';
    const choose = (approve) => (e) => {
      decisions[call.call_id] = approve;
      for (const b of e.target.parentNode.querySelectorAll('button')) b.classList.toggle('primary', b === e.target);
      refresh();
    };
    return h('div', { class: 'call', dataset: { callId: call.call_id } },
      h('div', { class: 'row' }, h('strong', {}, call.name), h('span', { class: 'muted mono' }, call.call_id),
        call.known ? '' : h('span', { class: 'error' }, 'unknown tool'),
        needs ? '' : h('span', { class: 'muted' }, 'runs without approval')),
      h('pre', {}, json(call.arguments)),
      needs && answerable ? h('div', { class: 'row' },
        h('button', { class: 'approve', onclick: choose(true) }, 'Approve'),
        h('button', { class: 'deny danger', onclick: choose(false) }, 'Deny')) : '');
  }));
  return h('div', {}, h('p', { id: 'wait-prompt' }, wait.prompt || ''), list,
    answerable ? h('div', { class: 'row' }, reason, submit) : '');
}

async function showChildren(box, runId, depth = 0) {
  const page = await api('GET', `/v1/runs?parent=${encodeURIComponent(runId)}&limit=100`);
  if (!page.runs.length) {
    if (depth === 0) box.replaceChildren(h('p', { class: 'muted' }, 'None.'));
    return;
  }
  const list = h('ul', { class: 'tree' }, page.runs.map((child) => {
    const below = h('div');
    const expand = h('button', { class: 'link', onclick: () => { expand.hidden = true; showChildren(below, child.run_id, depth + 1); } }, '▸ children');
    return h('li', { dataset: { runId: child.run_id } },
      h('a', { class: 'mono', href: `#/runs/${encodeURIComponent(child.run_id)}` }, child.run_id), ' ',
      child.workflow_id, ' ', badge(child.status, child.paused), ' ',
      child.children_started ? expand : '', below);
  }));
  box.replaceChildren(list, page.next ? h('p', { class: 'muted' }, 'More children than shown (100).') : '');
}

// ---- workflows and tools -------------------------------------------------

async function showWorkflows(view) {
  const [workflows, tools] = await Promise.all([api('GET', '/v1/workflows'), api('GET', '/v1/tools')]);
  const details = await Promise.all(workflows.workflows.map((w) =>
    api('GET', `/v1/workflows/${encodeURIComponent(w.workflow_id)}`).catch((e) => ({ error: e.message }))));
  const mib = (bytes) => `${(bytes / (1024 * 1024)).toFixed(0)} MiB`;
  const granted = (list) => (list == null ? 'any' : list.join(', ') || 'none');
  view.replaceChildren(
    h('h1', {}, 'Workflows'),
    h('table', { id: 'workflows' },
      h('thead', {}, h('tr', {}, ...['Workflow', 'Version', 'Component', 'Bundle', 'Limits per step', 'Effects', 'Children'].map((t) => h('th', {}, t)))),
      h('tbody', {}, workflows.workflows.map((w, i) => {
        const d = details[i];
        const limits = d.limits
          ? `${d.limits.fuel.toLocaleString()} fuel · ${mib(d.limits.max_memory_bytes)} · ${d.limits.timeout_ms} ms`
          : (d.error || '');
        return h('tr', { dataset: { workflowId: w.workflow_id } },
          h('td', {}, h('a', { href: `#/runs?workflow=${encodeURIComponent(w.workflow_id)}` }, w.workflow_id)),
          h('td', {}, w.version),
          h('td', { class: 'mono', title: w.digest }, `${w.digest.slice(0, 16)}…`),
          h('td', {}, w.bundle || ''),
          h('td', {}, limits),
          h('td', {}, d.limits ? granted(d.effects) : ''),
          h('td', {}, d.limits ? granted(d.child_workflows) : ''));
      }))),
    h('h2', {}, 'Tools'),
    h('table', { id: 'tools' },
      h('thead', {}, h('tr', {}, ...['Tool', 'Description', 'Read only', 'Approval', 'Bundle'].map((t) => h('th', {}, t)))),
      h('tbody', {}, tools.tools.map((t) => h('tr', {},
        h('td', { class: 'mono' }, t.name), h('td', {}, t.description || ''), h('td', {}, t.read_only ? 'yes' : 'no'),
        h('td', {}, t.approval), h('td', {}, `${t.bundle || ''} ${t.bundle_version || ''}`))))),
    can('admin') ? uploadForm() : '');
}

function uploadForm() {
  const file = h('input', { id: 'bundle-file', type: 'file', accept: '.wmb' });
  const upload = async () => {
    if (!file.files.length) return;
    try {
      const loaded = await api('POST', '/v1/bundles', file.files[0]);
      notify(`Loaded ${loaded.bundle} ${loaded.version}: ${loaded.workflows.map((w) => w.workflow_id).join(', ')}.`, true);
      route();
    } catch (e) { notify(e.message); }
  };
  return h('div', { class: 'panel row' }, h('strong', {}, 'Load a bundle'), file,
    h('button', { id: 'bundle-upload', class: 'primary', onclick: upload }, 'Upload'));
}

// ---- start ---------------------------------------------------------------

window.addEventListener('hashchange', () => { notify(''); route(); });
window.addEventListener('DOMContentLoaded', async () => {
  $('#sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = '#/runs';
    location.reload();
  });
  takeTokenFromUrl();
  if (session.token && !(await signIn())) session.token = null;
  route();
});
