// The History panel: the room's event graph drawn as SVG from Plexus's
// GET /_plexus/client/v1/rooms/{roomId}/graph (newest first, `next`
// pages older). Forks show as events side by side in one row, merges as
// an event with edges into two columns; rejected, soft-failed and
// outlier events carry a colour, a symbol and a word. Hovering or
// focusing an event shows its type, sender, time and status.

import '../graph.css';
import { h, replace, localpart } from '../dom.js';
import { s } from './svg.js';
import { layout, statusMark } from './layout.js';

const PAGE = 100; // events per request: a few screens of drawing
const REFRESH_DELAY = 1500; // ms to gather a burst of new events into one refresh

// Geometry, in SVG user units (CSS pixels).
const COL = 22;
const ROW = 30;
const RADIUS = 7;
const PAD = 16;
const GUTTER = 40; // the depth of each band

const x = (col) => GUTTER + PAD + col * COL;
const y = (row) => PAD + row * ROW;

/** graphPanel mounts the History panel (a panel of panels.js). */
export function graphPanel(el, { room, app }) {
  const count = h('span', { class: 'muted', id: 'graph-count', role: 'status' });
  const error = h('p', { class: 'error', role: 'alert' });
  const refreshButton = h('button', { id: 'graph-refresh', 'aria-label': 'Reload the event graph', onclick: () => refresh() }, 'Refresh');
  const olderButton = h('button', { id: 'graph-older', 'aria-label': 'Load older events', onclick: () => loadOlder() }, 'Load older');
  const canvas = h('div', { class: 'graph-canvas', id: 'graph-canvas' });
  const details = h('div', { class: 'graph-details', id: 'graph-details', 'aria-live': 'polite' },
    h('p', { class: 'muted' }, 'Hover over or focus an event to see it.'));
  const legend = h('ul', { class: 'graph-legend', 'aria-label': 'Legend' },
    ['accepted', 'rejected', 'soft_failed', 'outlier'].map((st) => {
      const m = statusMark(st);
      return h('li', {}, h('span', { class: `dot s-${st}`, 'aria-hidden': 'true' }, m.symbol), m.word || 'accepted');
    }),
    h('li', {}, h('span', { class: 'dot head', 'aria-hidden': 'true' }), 'latest (forward extremity)'));
  replace(el, h('div', { class: 'graph-panel' },
    h('div', { class: 'graph-bar' }, refreshButton, olderButton, count, legend),
    error, canvas, details));

  const events = new Map(); // event ID -> graph event
  let extremities = new Set();
  let next = null; // token of the next older page; null: none
  let loaded = false; // the first page has arrived
  let selected = null; // event ID shown in details
  let busy = false;
  let again = false; // refresh once the request in flight is done
  let closed = false;
  let timer = null;

  const fetchPage = (from) => app.api.request('GET', `/_plexus/client/v1/rooms/${encodeURIComponent(room.id)}/graph`,
    undefined, { query: { limit: PAGE, from } });

  async function run(fn) {
    if (busy) {
      again = true; // a refresh asked for while loading: run it after
      return;
    }
    busy = true;
    refreshButton.disabled = olderButton.disabled = true;
    error.textContent = '';
    try {
      await fn();
    } catch (err) {
      error.textContent = `Cannot load the event graph: ${err.message || err}`;
    } finally {
      busy = false;
      refreshButton.disabled = false;
      olderButton.disabled = !next;
    }
    if (closed) return;
    draw();
    if (again) {
      again = false;
      refresh();
    }
  }

  /** refresh loads the newest page and merges it with what is loaded. */
  function refresh() {
    return run(async () => {
      const page = await fetchPage(undefined);
      if (closed) return;
      // A page sharing no event with what is loaded leaves a gap below
      // it: start over from it rather than draw a false join.
      const joins = page.events.some((e) => events.has(e.event_id));
      if (!joins || !loaded) {
        events.clear();
        next = page.next || null;
      }
      for (const e of page.events) events.set(e.event_id, e);
      extremities = new Set(page.forward_extremities || []);
      loaded = true;
    });
  }

  function loadOlder() {
    if (!next) return Promise.resolve();
    return run(async () => {
      const page = await fetchPage(next);
      if (closed) return;
      for (const e of page.events) events.set(e.event_id, e);
      next = page.next || null;
    });
  }

  function draw() {
    const g = layout([...events.values()]);
    olderButton.hidden = !next;
    count.textContent = `${g.nodes.length} events, ${extremities.size} latest` + (next ? ', more below' : '');
    const labelX = x(Math.max(g.cols, 1)) + PAD;
    const height = y(g.rows) + (next ? ROW : 0);
    const width = labelX + 560;
    const edges = g.edges.map((e) => s('path', {
      class: `gedge ${e.kind}`, d: edgePath(e, g), dataset: { from: e.from, to: e.to },
    }));
    const nodes = g.nodes.map((n) => nodeEl(n, labelX));
    // The layers: a shaded band per depth, every other one, its depth in
    // the gutter.
    const bands = g.bands.map((b, i) => s('g', { class: `band${i % 2 ? ' odd' : ''}` },
      s('rect', { x: 0, y: y(b.first) - ROW / 2, width, height: (b.last - b.first + 1) * ROW }),
      s('text', { class: 'depth', x: GUTTER - 6, y: y(b.first) + 4, 'text-anchor': 'end' }, String(b.depth))));
    const svg = s('svg', {
      class: 'graph', id: 'graph-svg', width, height, viewBox: `0 0 ${width} ${height}`,
      role: 'group', 'aria-label': `Event graph of the room, ${g.nodes.length} events, newest first`,
    }, s('g', { class: 'bands', 'aria-hidden': 'true' }, bands,
      s('text', { class: 'depth', x: GUTTER - 6, y: 11, 'text-anchor': 'end' }, 'depth')),
    s('g', { class: 'gedges' }, edges), s('g', { class: 'gnodes' }, nodes));
    const top = canvas.scrollTop;
    replace(canvas, svg);
    canvas.scrollTop = top;
    if (selected && events.has(selected)) {
      show(selected);
    } else if (selected) {
      selected = null;
      replace(details, h('p', { class: 'muted' }, 'Hover over or focus an event to see it.'));
    }
  }

  function nodeEl(n, labelX) {
    const ev = n.ev;
    const m = statusMark(ev.status);
    const head = extremities.has(ev.event_id);
    // The status first, where a narrow screen still shows it.
    const label = (m.word ? `${m.symbol} ${m.word} · ` : '') + [
      ev.type + (ev.state_key ? ` ${ev.state_key}` : ''),
      localpart(ev.sender),
      new Date(ev.origin_server_ts).toLocaleTimeString(),
    ].join(' · ') + (head ? ' · latest' : '');
    const cx = x(n.col);
    const cy = y(n.row);
    return s('g', {
      class: `gnode s-${ev.status}${head ? ' head' : ''}${selected === ev.event_id ? ' selected' : ''}`,
      tabindex: '0', role: 'button', dataset: { eventId: ev.event_id, status: ev.status },
      'aria-label': describe(ev, head),
      onfocus: () => show(ev.event_id), onmouseenter: () => show(ev.event_id), onclick: () => show(ev.event_id),
    },
    s('title', {}, describe(ev, head)),
    s('line', { class: 'guide', x1: cx + RADIUS, y1: cy, x2: labelX - 4, y2: cy }),
    head ? s('circle', { class: 'ring', cx, cy, r: RADIUS + 3 }) : null,
    s('circle', { class: 'dot', cx, cy, r: RADIUS }),
    m.symbol ? s('text', { class: 'symbol', x: cx, y: cy + 4, 'text-anchor': 'middle', 'aria-hidden': 'true' }, m.symbol) : null,
    s('text', { class: 'label', x: labelX, y: cy + 4 }, label));
  }

  function show(id) {
    selected = id;
    const ev = events.get(id);
    for (const g of canvas.querySelectorAll('.gnode.selected')) g.classList.remove('selected');
    canvas.querySelector(`.gnode[data-event-id="${CSS.escape(id)}"]`)?.classList.add('selected');
    for (const p of canvas.querySelectorAll('.gedge')) {
      p.classList.toggle('hl', p.dataset.from === id || p.dataset.to === id);
    }
    const m = statusMark(ev.status);
    const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    replace(details, h('dl', {},
      row('Type', ev.type + (ev.state_key !== undefined && ev.state_key !== null ? ` (state key "${ev.state_key}")` : '')),
      row('Sender', ev.sender),
      row('Sent', new Date(ev.origin_server_ts).toLocaleString()),
      row('Status', (m.word || 'accepted') + (ev.rejected_reason ? `: ${ev.rejected_reason}` : '')),
      row('Depth', String(ev.depth)),
      row('Event ID', h('code', {}, ev.event_id)),
      row('Prev events', ev.prev_events.length ? ev.prev_events.map((p) => h('code', {}, p, events.has(p) ? '' : ' (not loaded)')) : 'none'),
      row('Auth events', String(ev.auth_events?.length ?? 0))));
  }

  // New events in the room: refresh, once per burst.
  const off = app.store.on('events', (id) => {
    if (id !== room.id || closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => { if (!closed) refresh(); }, REFRESH_DELAY);
  });
  refresh();
  return () => {
    closed = true;
    clearTimeout(timer);
    off();
  };
}

/** describe is an event's one-line description for screen readers and the tooltip. */
function describe(ev, head) {
  const m = statusMark(ev.status);
  return `${ev.type}${ev.state_key ? ` (${ev.state_key})` : ''} by ${ev.sender} at ` +
    `${new Date(ev.origin_server_ts).toLocaleString()}, ${m.word || 'accepted'}` +
    (ev.rejected_reason ? ` (${ev.rejected_reason})` : '') + (head ? ', latest' : '');
}

/**
 * edgePath draws an edge from a child down to its prev event: a bend
 * into the edge's lane below the child, straight down the lane, a bend
 * into the prev event above it; a short dashed stub for a prev event not
 * loaded; a straight line for a malformed one pointing up or sideways.
 */
function edgePath(e, g) {
  const from = g.byId.get(e.from);
  const x1 = x(from.col);
  const y1 = y(from.row);
  if (e.kind === 'missing') return `M${x1} ${y1}L${x1 + COL / 2} ${y1 + ROW * 0.7}`;
  const to = g.byId.get(e.to);
  const x2 = x(to.col);
  const y2 = y(to.row);
  if (e.kind === 'backwards') return `M${x1} ${y1}L${x2} ${y2}`;
  const xl = x(e.lane);
  if (to.row === from.row + 1) {
    // Adjacent rows: one curve (or a line).
    return x1 === x2 ? `M${x1} ${y1}L${x2} ${y2}` : `M${x1} ${y1}C${x1} ${y1 + ROW / 2} ${x2} ${y2 - ROW / 2} ${x2} ${y2}`;
  }
  let d = `M${x1} ${y1}`;
  d += xl === x1 ? `L${xl} ${y1 + ROW}` : `C${x1} ${y1 + ROW / 2} ${xl} ${y1 + ROW / 2} ${xl} ${y1 + ROW}`;
  d += `L${xl} ${y2 - ROW}`;
  d += xl === x2 ? `L${x2} ${y2}` : `C${xl} ${y2 - ROW / 2} ${x2} ${y2 - ROW / 2} ${x2} ${y2}`;
  return d;
}
