// Vigil's console: plain JavaScript over the server's own /v1 API, with the same bearer
// token (kept for the tab's life in sessionStorage). Nothing is loaded from another host.
'use strict';

const TOKEN_KEY = 'vigil-token';
const POLL_MS = 1000;
const VALIDATE_DELAY_MS = 250;
const MAX_TABLE_ROWS = 500;
const DRAW_MS = 200;
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---- the API ----------------------------------------------------------------------------

class Unauthorized extends Error {}

class ApiFailure extends Error {
  constructor(body) {
    super(body.message);
    this.body = body;
  }
}

function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function api(method, path, body) {
  const headers = authHeaders({ Accept: 'application/json' });
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    askForToken(sessionStorage.getItem(TOKEN_KEY) ? 'That token was refused.' : '');
    throw new Unauthorized('unauthorized');
  }
  const data = await response.json();
  if (!response.ok) throw new ApiFailure(data.error || { message: response.statusText });
  return data;
}

// Server-Sent Events read with fetch, which (unlike EventSource) can send the token.
async function streamEvents(path, signal, onEvent) {
  const response = await fetch(path, {
    headers: authHeaders({ Accept: 'text/event-stream' }),
    signal,
  });
  if (response.status === 401) {
    askForToken('');
    throw new Unauthorized('unauthorized');
  }
  if (!response.ok) throw new ApiFailure((await response.json()).error);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = parseSse(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
    }
  }
}

function parseSse(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue; // a keep-alive comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return data.length ? { type, data: JSON.parse(data.join('\n')) } : null;
}

// ---- building the page ------------------------------------------------------------------

function build(make, tag, attrs, children) {
  const node = make(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function el(tag, attrs, ...children) {
  return build((t) => document.createElement(t), tag, attrs, children);
}

function svg(tag, attrs, ...children) {
  return build((t) => document.createElementNS(SVG_NS, t), tag, attrs, children);
}

const numberFormat = new Intl.NumberFormat('en-US');

function numberCell(value) {
  return el('td', { class: 'num', 'data-value': value }, numberFormat.format(value));
}

function statusLabel(status) {
  return status.reason ? `${status.state}: ${status.reason}` : status.state;
}

function errorText(error) {
  const body = error.body || { message: error.message };
  const at = body.line ? `line ${body.line}, column ${body.column}: ` : '';
  return `${at}${body.message}`;
}

// Runs `task` now and again `ms` after each run ends, until the returned function is called.
function every(ms, task, onError) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try {
      await task();
      onError(null);
    } catch (error) {
      if (error instanceof Unauthorized) stopped = true;
      else onError(error);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function problemLine() {
  const line = el('p', { class: 'error problem' });
  const show = (error) => {
    line.textContent = error ? errorText(error) : '';
  };
  return { line, show };
}

// ---- queries ----------------------------------------------------------------------------

// How far event time lags the wall clock, for a running query with a watermark.
function watermarkLag(query) {
  const watermark = query.metrics.watermark;
  if (!watermark || query.status.state !== 'running') return '—';
  const seconds = (Date.now() - Date.parse(watermark.replace(/(\.\d{3})\d+/, '$1'))) / 1000;
  return Number.isFinite(seconds) ? `${seconds.toFixed(1)} s` : '—';
}

function queryRow(query) {
  const m = query.metrics;
  return el('tr', { 'data-query-id': query.id },
    el('td', {}, query.id),
    el('td', {}, el('a', { href: `#/queries/${query.id}`, class: 'query-name' }, query.name)),
    el('td', {}, query.kind),
    el('td', { class: `status ${query.status.state}` }, statusLabel(query.status)),
    numberCell(m.events_in),
    numberCell(m.events_per_second),
    el('td', { class: 'num' }, watermarkLag(query)),
    numberCell(m.late_events),
    numberCell(m.dead_letters),
    numberCell(m.rows_out));
}

function queriesPage(view) {
  const body = el('tbody');
  const heads = ['Id', 'Name', 'Kind', 'Status', 'Events in', 'Events/s', 'Watermark lag',
    'Late', 'Dead letters', 'Rows out'];
  const problem = problemLine();
  view.append(el('h1', {}, 'Queries'), problem.line,
    el('table', { id: 'queries' },
      el('thead', {}, el('tr', {}, heads.map((h) => el('th', {}, h)))), body));
  return every(POLL_MS, async () => {
    const { queries } = await api('GET', '/v1/queries');
    body.replaceChildren(...queries.map(queryRow));
    if (!queries.length) {
      body.append(el('tr', {}, el('td', { colspan: heads.length, class: 'muted' },
        'No queries yet: deploy a rule, or run a statement on the SQL page.')));
    }
  }, problem.show);
}

// ---- one query: summary, operator graph, live results and chart --------------------------

function summary(query) {
  const m = query.metrics;
  const facts = [['status', statusLabel(query.status)], ['kind', query.kind],
    ['events in', numberFormat.format(m.events_in)],
    ['events/s', numberFormat.format(m.events_per_second)],
    ['watermark', m.watermark || '—'], ['watermark lag', watermarkLag(query)],
    ['late', numberFormat.format(m.late_events)],
    ['dead letters', numberFormat.format(m.dead_letters)],
    ['state', `${numberFormat.format(m.state_rows)} rows`]];
  return el('dl', { class: 'facts' }, facts.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

// Operators in columns by their distance from the sources, edges from inputs to readers.
function layoutGraph(operators) {
  const byId = new Map(operators.map((o) => [o.id, o]));
  const depth = new Map();
  const depthOf = (o) => {
    if (!depth.has(o.id)) {
      const inputs = o.inputs.map((i) => byId.get(i)).filter(Boolean);
      depth.set(o.id, inputs.length ? 1 + Math.max(...inputs.map(depthOf)) : 0);
    }
    return depth.get(o.id);
  };
  const columns = [];
  for (const o of operators) (columns[depthOf(o)] ||= []).push(o);
  return { byId, columns };
}

const NODE = { width: 250, height: 78, gapX: 50, gapY: 18 };

function operatorNode(o, x, y) {
  const detail = o.detail.length > 38 ? `${o.detail.slice(0, 37)}…` : o.detail;
  const line = (dy, text, cls) => svg('text', { x: x + 8, y: y + dy, class: cls }, text);
  return svg('g', { class: 'operator', 'data-operator-id': o.id, 'data-rows-out': o.rows_out },
    svg('title', {}, `${o.operator}: ${o.detail}`),
    svg('rect', { x, y, width: NODE.width, height: NODE.height, rx: 6 }),
    line(18, o.operator, 'name'),
    line(34, detail, 'detail'),
    line(52, `in ${numberFormat.format(o.rows_in)} · out ${numberFormat.format(o.rows_out)}`),
    line(68, `state ${numberFormat.format(o.state_rows)} · late ${numberFormat.format(o.late_rows)}`));
}

function drawGraph(target, operators) {
  const { byId, columns } = layoutGraph(operators);
  const at = new Map();
  columns.forEach((column, cx) => column.forEach((o, cy) => at.set(o.id, {
    x: 10 + cx * (NODE.width + NODE.gapX),
    y: 10 + cy * (NODE.height + NODE.gapY),
  })));
  const edges = operators.flatMap((o) => o.inputs.filter((i) => byId.has(i)).map((i) => {
    const from = at.get(i);
    const to = at.get(o.id);
    const [x1, y1] = [from.x + NODE.width, from.y + NODE.height / 2];
    const [x2, y2] = [to.x, to.y + NODE.height / 2];
    const mid = (x1 + x2) / 2;
    return svg('path', { class: 'edge', d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` });
  }));
  const nodes = operators.map((o) => operatorNode(o, at.get(o.id).x, at.get(o.id).y));
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  target.setAttribute('width', 20 + columns.length * (NODE.width + NODE.gapX));
  target.setAttribute('height', 20 + tallest * (NODE.height + NODE.gapY));
  target.replaceChildren(...edges, ...nodes);
}

// The rows a changelog currently holds: inserts add a row, retractions take one away.
class CurrentAnswer {
  constructor() {
    this.rows = new Map();
  }

  apply(row) {
    const { op, ...values } = row;
    const key = JSON.stringify(values);
    const held = this.rows.get(key);
    if (op === '-U' || op === '-D') {
      if (held && held.count > 1) held.count -= 1;
      else this.rows.delete(key);
    } else if (held) held.count += 1;
    else this.rows.set(key, { values, count: 1 });
  }

  values() {
    return [...this.rows.values()].flatMap(({ values, count }) => Array(count).fill(values));
  }
}

class ResultsTable {
  constructor() {
    this.received = 0;
    this.columns = null;
    this.head = el('thead');
    this.body = el('tbody');
    this.count = el('p', { class: 'muted', id: 'result-count', 'data-rows': 0 }, 'No rows yet.');
    this.scroller = el('div', { class: 'scroller' },
      el('table', { id: 'results' }, this.head, this.body));
  }

  // Rows are added a batch at a time: one layout per batch, however fast they come.
  add(rows) {
    if (!rows.length) return;
    if (!this.columns) {
      this.columns = Object.keys(rows[0]).filter((k) => k !== 'op');
      this.head.append(el('tr', {}, el('th', {}, 'op'), this.columns.map((c) => el('th', {}, c))));
    }
    const atBottom = this.scroller.scrollTop + this.scroller.clientHeight >=
      this.scroller.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    for (const row of rows.slice(-MAX_TABLE_ROWS)) {
      fragment.append(el('tr', { class: `op-${opClass(row.op)}` }, el('td', { class: 'op' }, row.op),
        this.columns.map((c) => el('td', {}, cellText(row[c])))));
    }
    this.body.append(fragment);
    while (this.body.rows.length > MAX_TABLE_ROWS) this.body.deleteRow(0);
    if (atBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
    this.received += rows.length;
    this.count.dataset.rows = this.received;
    this.count.textContent = `${numberFormat.format(this.received)} rows received` +
      (this.received > MAX_TABLE_ROWS ? ` (the last ${MAX_TABLE_ROWS} shown)` : '');
  }
}

function opClass(op) {
  return { '+I': 'insert', '-U': 'retract', '+U': 'update', '-D': 'delete' }[op] || 'insert';
}

function cellText(value) {
  if (value === null || value === undefined) return 'NULL';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

const SERIES_COLORS = ['#2f6fde', '#d9534f', '#3a9d5d', '#b07cc6', '#e38d2f', '#3bb3c3'];
const CHART = { width: 860, height: 260, left: 60, right: 150, top: 12, bottom: 36 };

// A chart of one numeric column over window_start, one line per group of the other columns.
class WindowChart {
  constructor() {
    this.picker = el('select', { id: 'chart-column', onchange: () => this.draw() });
    this.canvas = svg('svg', { id: 'chart', width: CHART.width, height: CHART.height });
    this.node = el('section', { id: 'chart-section', hidden: '' },
      el('h2', {}, 'Chart over window_start ', this.picker), this.canvas);
    this.answer = new CurrentAnswer();
  }

  add(rows) {
    const windowed = rows.filter((row) => 'window_start' in row);
    if (!windowed.length) return;
    if (!this.picker.options.length) this.offerColumns(windowed[0]);
    for (const row of windowed) this.answer.apply(row);
    this.draw();
  }

  offerColumns(row) {
    const numeric = Object.keys(row).filter((k) => typeof row[k] === 'number');
    for (const column of numeric) this.picker.append(el('option', { value: column }, column));
    if (numeric.length) this.node.hidden = false;
  }

  draw() {
    const column = this.picker.value;
    if (!column) return;
    const points = this.answer.values()
      .filter((v) => typeof v[column] === 'number')
      .map((v) => ({ x: Date.parse(v.window_start), y: v[column], group: groupOf(v), row: v }));
    this.canvas.replaceChildren(...chartShapes(points, column));
  }
}

function groupOf(values) {
  return Object.entries(values)
    .filter(([k, v]) => typeof v === 'string' && !k.startsWith('window_'))
    .map(([, v]) => v).join(' · ');
}

function scale(values, from, to) {
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  return { low, high, at: (v) => from + ((v - low) / span) * (to - from) };
}

function chartShapes(points, column) {
  if (!points.length) return [];
  const x = scale(points.map((p) => p.x), CHART.left, CHART.width - CHART.right);
  const y = scale(points.map((p) => p.y), CHART.height - CHART.bottom, CHART.top);
  const groups = [...new Set(points.map((p) => p.group))].sort();
  const color = (g) => SERIES_COLORS[groups.indexOf(g) % SERIES_COLORS.length];
  const lines = groups.map((g) => {
    const line = points.filter((p) => p.group === g).sort((a, b) => a.x - b.x);
    return svg('polyline', { class: 'series', stroke: color(g),
      points: line.map((p) => `${x.at(p.x)},${y.at(p.y)}`).join(' ') });
  });
  const dots = points.map((p) => svg('circle', { class: 'point', r: 3, fill: color(p.group),
    cx: x.at(p.x), cy: y.at(p.y), 'data-window-start': p.row.window_start, 'data-value': p.y },
  svg('title', {}, `${p.group} ${p.row.window_start}: ${column} = ${p.y}`)));
  const label = (tx, ty, text, anchor) => svg('text', { x: tx, y: ty, class: 'axis', 'text-anchor': anchor }, text);
  const bottom = CHART.height - CHART.bottom;
  return [
    svg('line', { class: 'axis', x1: CHART.left, y1: bottom, x2: CHART.width - CHART.right, y2: bottom }),
    svg('line', { class: 'axis', x1: CHART.left, y1: CHART.top, x2: CHART.left, y2: bottom }),
    label(CHART.left - 6, bottom, numberFormat.format(y.low), 'end'),
    label(CHART.left - 6, CHART.top + 10, numberFormat.format(y.high), 'end'),
    label(CHART.left, bottom + 16, new Date(x.low).toISOString().slice(11, 19), 'start'),
    label(CHART.width - CHART.right, bottom + 16, new Date(x.high).toISOString().slice(11, 19), 'end'),
    ...lines, ...dots,
    ...groups.map((g, i) => svg('text', { class: 'legend', fill: color(g),
      x: CHART.width - CHART.right + 12, y: CHART.top + 12 + i * 14 }, g)),
  ];
}

function queryPage(view, id) {
  const head = el('div');
  const graph = svg('svg', { id: 'graph' });
  const table = new ResultsTable();
  const chart = new WindowChart();
  const streamState = el('p', { class: 'muted', id: 'stream-state' }, 'Connecting…');
  const problem = problemLine();
  view.append(head, problem.line, el('h2', {}, 'Operators'), el('div', { class: 'scroller' }, graph),
    chart.node, el('h2', {}, 'Results'), streamState, table.count, table.scroller);
  const stopPolling = every(POLL_MS, async () => {
    const [query, plan] = await Promise.all([api('GET', `/v1/queries/${id}`),
      api('GET', `/v1/queries/${id}/graph`)]);
    head.replaceChildren(el('h1', {}, `Query ${query.id}: `, el('span', { id: 'query-name' }, query.name)),
      summary(query), el('pre', { class: 'sql' }, query.sql));
    drawGraph(graph, plan.operators);
  }, problem.show);
  const aborter = new AbortController();
  let arrived = [];
  let drawing = null;
  const draw = () => {
    drawing = null;
    table.add(arrived);
    chart.add(arrived);
    arrived = [];
  };
  const onEvent = ({ type, data }) => {
    if (type === 'row') {
      arrived.push(data);
      drawing ||= setTimeout(draw, DRAW_MS);
      streamState.textContent = 'Live.';
    } else if (type === 'gap') {
      streamState.textContent = `This page fell behind: ${data.skipped} rows were skipped.`;
    } else if (type === 'end') {
      streamState.textContent = `The query ended (${data.status}).`;
    }
  };
  streamEvents(`/v1/queries/${id}/results`, aborter.signal, onEvent)
    .catch((error) => {
      if (error.name !== 'AbortError' && !(error instanceof Unauthorized)) {
        streamState.textContent = `Results stream: ${errorText(error)}`;
      }
    });
  return () => {
    stopPolling();
    aborter.abort();
    clearTimeout(drawing);
  };
}

// ---- rules ------------------------------------------------------------------------------

function ruleSection(rule) {
  const queries = rule.queries.map((q) => el('a', { href: `#/queries/${q}` }, `query ${q}`));
  return el('section', { class: 'rule', 'data-rule': rule.name },
    el('h2', {}, rule.name),
    el('dl', { class: 'facts' },
      el('dt', {}, 'hash'), el('dd', { class: 'hash' }, rule.hash),
      el('dt', {}, 'deployed'), el('dd', {}, rule.deployed_at),
      el('dt', {}, 'queries'), el('dd', {}, queries.length ? queries : '—'),
      el('dt', {}, 'sinks'), el('dd', {}, rule.sinks.join(', ') || '—')),
    el('pre', { class: 'sql' }, rule.sql));
}

function rulesPage(view) {
  const list = el('div', { id: 'rules' });
  const problem = problemLine();
  view.append(el('h1', {}, 'Deployed rules'), problem.line, list);
  let shown = '';
  return every(POLL_MS * 5, async () => {
    const { rules } = await api('GET', '/v1/rules');
    const text = JSON.stringify(rules);
    if (text === shown) return; // unchanged: keep the reader's scroll and selection
    shown = text;
    list.replaceChildren(...rules.map(ruleSection));
    if (!rules.length) list.append(el('p', { class: 'muted' }, 'No rules deployed (vigil deploy).'));
  }, problem.show);
}

// ---- the SQL box ------------------------------------------------------------------------

// The offending line with a caret under the column.
function pointAt(sql, error) {
  if (!error.line) return null;
  const text = sql.split('\n')[error.line - 1] ?? '';
  return el('pre', { class: 'caret' }, `${text}\n${' '.repeat(Math.max(0, error.column - 1))}^`);
}

function showVerdict(target, sql, verdict) {
  if (verdict.valid) {
    target.className = 'verdict ok';
    target.replaceChildren('Valid.');
    return;
  }
  target.className = 'verdict error';
  target.replaceChildren(...verdict.errors.map((e) => el('div', { class: 'sql-error' },
    el('span', { class: 'message' }, errorText({ body: e })), pointAt(sql, e))));
}

function describe(result) {
  switch (result.result) {
    case 'started':
      return el('li', {}, `started ${result.kind} query `,
        el('a', { href: `#/queries/${result.query_id}`, class: 'started' },
          `${result.query_id} (${result.name})`));
    case 'explained':
      return el('li', {}, el('pre', {}, result.plan));
    default:
      return el('li', {}, `${result.result} ${result.object || ''} ${result.name || ''}`);
  }
}

// What statements can read and write: the catalog's sources, views and sinks.
function catalogList(catalog) {
  const kinds = [['sources', catalog.sources], ['views', catalog.views], ['sinks', catalog.sinks]];
  return kinds.filter(([, objects]) => objects.length).map(([kind, objects]) => el('div', {},
    el('h3', {}, kind),
    el('ul', {}, objects.map((o) => el('li', { 'data-object': o.name }, el('code', {}, o.name),
      o.columns.length ? ` (${o.columns.map((c) => `${c.name} ${c.type}`).join(', ')})` : '')))));
}

function sqlPage(view) {
  const box = el('textarea', { id: 'sql', rows: 10, spellcheck: 'false',
    placeholder: 'SELECT ... ; CREATE SOURCE ... ; CREATE SINK ... AS SELECT ...' });
  const verdict = el('div', { id: 'verdict', class: 'verdict' });
  const outcome = el('div', { id: 'outcome' });
  let asked = 0;
  let timer;
  const validate = async () => {
    const sql = box.value;
    const mine = ++asked;
    if (!sql.trim()) return verdict.replaceChildren();
    const answer = await api('POST', '/v1/validate', { sql });
    if (mine === asked) showVerdict(verdict, sql, answer); // a later keystroke wins
  };
  box.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => validate().catch((e) => showVerdict(verdict, box.value,
      { valid: false, errors: [e.body || { message: e.message }] })), VALIDATE_DELAY_MS);
  });
  const run = async () => {
    outcome.replaceChildren();
    try {
      const { results } = await api('POST', '/v1/statements', { sql: box.value });
      outcome.append(el('ul', {}, results.map(describe)));
      const started = results.filter((r) => r.result === 'started');
      if (started.length === 1 && started[0].kind === 'transient') {
        location.hash = `#/queries/${started[0].query_id}`; // watch it, or it stops
      }
    } catch (error) {
      if (!(error instanceof Unauthorized)) {
        outcome.append(el('p', { class: 'error' }, errorText(error)),
          pointAt(box.value, error.body || {}) || '');
      }
    }
  };
  const catalog = el('aside', { id: 'catalog' });
  const problem = problemLine();
  view.append(el('h1', {}, 'SQL'), problem.line,
    el('p', { class: 'muted' }, 'Checked as you type; Run submits the statements to the server.'),
    box, verdict, el('button', { id: 'run', onclick: run }, 'Run'), outcome,
    el('h2', {}, 'Catalog'), catalog);
  box.focus();
  api('GET', '/v1/catalog')
    .then((answer) => catalog.replaceChildren(...catalogList(answer)))
    .catch((error) => {
      if (!(error instanceof Unauthorized)) problem.show(error);
    });
  return () => clearTimeout(timer);
}

// ---- routing and the token --------------------------------------------------------------

function askForToken(message) {
  document.getElementById('token-form').hidden = false;
  document.getElementById('token-error').textContent = message;
  document.getElementById('token').focus();
}

let leavePage = () => {};

function route() {
  leavePage();
  const [, page = 'queries', id] = (location.hash || '#/queries').split('/');
  document.querySelectorAll('[data-nav]')
    .forEach((a) => a.classList.toggle('active', a.dataset.nav === page));
  const view = document.getElementById('view');
  view.replaceChildren();
  const pages = {
    queries: (v) => (id ? queryPage(v, Number(id)) : queriesPage(v)),
    rules: rulesPage,
    sql: sqlPage,
  };
  leavePage = (pages[page] || pages.queries)(view) || (() => {});
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById('token').value);
    document.getElementById('token-form').hidden = true;
    route();
  });
  window.addEventListener('hashchange', route);
  route();
});
