// The operator page (admins only): rooms, live calls and their members,
// the SFU's rooms and participants, the TURN relay, federation
// destinations and their backoff, and charts of the last ten minutes.
// It reads GET /_plexus/admin/v1/status and .../status/history every
// 10 s; a section the server could not fill comes back as {"error"} and
// says so, without hiding the others.

import '../admin.css';
import { h, replace } from '../dom.js';
import { lineChart, fmt } from './charts.js';

export const REFRESH_MS = 10000;

const PATH_STATUS = '/_plexus/admin/v1/status';
const PATH_HISTORY = '/_plexus/admin/v1/status/history';

/** operatorPage builds the page; close() stops its refreshes. */
export function operatorPage(app, { onBack }) {
  const updated = h('span', { class: 'muted', id: 'admin-updated', role: 'status' }, 'Loading…');
  const error = h('p', { class: 'error', role: 'alert' });
  const content = h('div', { class: 'admin-content', id: 'admin-content' });
  const el = h('div', { class: 'admin-page', id: 'admin-page' },
    h('header', { class: 'admin-header' },
      h('button', { class: 'icon', id: 'admin-back', 'aria-label': 'Back to rooms', onclick: onBack }, '‹ Rooms'),
      h('h2', { id: 'admin-title' }, 'Operator'),
      updated,
      h('button', { id: 'admin-refresh', 'aria-label': 'Refresh the operator page', onclick: () => tick() }, 'Refresh')),
    error, content);

  let closed = false;
  let timer = null;
  let busy = false;

  async function tick() {
    if (busy || closed) return;
    busy = true;
    clearTimeout(timer);
    try {
      const [st, hist] = await Promise.all([
        app.api.request('GET', PATH_STATUS),
        app.api.request('GET', PATH_HISTORY),
      ]);
      if (closed) return;
      error.textContent = '';
      render(st, hist);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}, every ${REFRESH_MS / 1000} s`;
    } catch (err) {
      if (closed) return;
      if (err.status === 403) {
        // Not an admin: say so once, and stop asking.
        replace(content, h('p', { class: 'admin-denied', id: 'admin-denied', role: 'alert' },
          'The operator page is for server admins only. Your account is not a server admin.'));
        updated.textContent = '';
        busy = false;
        return;
      }
      error.textContent = `Cannot read the server's status: ${err.message || err}`;
    } finally {
      busy = false;
    }
    if (!closed) timer = setTimeout(tick, REFRESH_MS);
  }

  function render(st, hist) {
    const src = hist?.sources || {};
    const interval = hist?.interval_ms || REFRESH_MS;
    replace(content,
      h('section', { class: 'admin-charts', 'aria-label': 'Charts' },
        lineChart({ title: 'SFU participants', id: 'chart-participants', samples: src.sfu, key: 'participants', intervalMs: interval, unavailable: sectionError(st.sfu) }),
        lineChart({ title: 'TURN allocations', id: 'chart-allocations', samples: src.turn, key: 'allocations', intervalMs: interval, unavailable: sectionError(st.turn) }),
        lineChart({ title: 'Pending PDUs', id: 'chart-pending', samples: src.federation, key: 'pending_pdus', intervalMs: interval, unavailable: sectionError(st.federation) })),
      section('rooms', 'Rooms', st.rooms, roomsSection),
      section('calls', 'Calls', st.calls, (c) => callsSection(c, app)),
      section('sfu', 'SFU', st.sfu, sfuSection),
      section('turn', 'TURN relay', st.turn, turnSection),
      section('federation', 'Federation', st.federation, federationSection));
  }

  tick();
  return {
    el,
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}

function sectionError(v) {
  if (v === undefined) return 'Not running on this server.';
  return v?.error ? `Unavailable: ${v.error}` : undefined;
}

/** section wraps one part of the status: its body, or why it has none. */
function section(id, title, value, body) {
  const headingId = `admin-${id}-title`;
  let inner;
  if (value === undefined) inner = h('p', { class: 'muted' }, 'Not running on this server.');
  else if (value && !Array.isArray(value) && typeof value.error === 'string') inner = h('p', { class: 'error section-error' }, `Unavailable: ${value.error}`);
  else inner = body(value);
  return h('section', { class: 'admin-section', id: `admin-${id}`, 'aria-labelledby': headingId },
    h('h3', { id: headingId }, title), inner);
}

/** figures is a row of labelled numbers. */
function figures(pairs) {
  return h('dl', { class: 'figures' }, pairs.map(([label, v]) =>
    h('div', { class: 'figure' }, h('dt', {}, label), h('dd', {}, typeof v === 'number' ? fmt(v) : v))));
}

/** table is a plain table, or a line saying there is nothing. */
function table(caption, headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '–');
const bytes = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB`
  : n >= 1 << 10 ? `${(n / (1 << 10)).toFixed(1)} KiB` : `${n ?? 0} B`);

function roomsSection(r) {
  return figures([
    ['Rooms', r.total], ['With local members', r.rooms_with_local_members], ['Joined members', r.joined_members],
    ['Local joined', r.local_joined_members], ['Invited', r.invited_members],
  ]);
}

function callsSection(calls, app) {
  const name = (id) => {
    const room = app.store?.rooms.get(id);
    return room ? `${room.displayName(app.store.userId)} (${id})` : id;
  };
  const rows = [];
  for (const c of calls) {
    for (const m of c.members || []) {
      rows.push([name(c.room_id), m.user_id, m.device_id, time(m.created_ts), time(m.expires_ts)]);
    }
  }
  return h('div', {},
    figures([['Calls', calls.length], ['Participants', calls.reduce((n, c) => n + (c.participants || 0), 0)]]),
    table('Call members (MatrixRTC memberships)', ['Room', 'User', 'Device', 'Joined', 'Expires'], rows, 'No calls right now.'));
}

/** widths are the widths of a video track's layers as the SFU receives them (" 320/640/960 px"), or nothing. */
function widths(t) {
  const w = (t.layers || []).filter((l) => l.width).map((l) => l.width);
  return w.length ? ` ${w.join('/')} px` : '';
}

function sfuSection(st) {
  const rows = [];
  for (const r of st.room_list || []) {
    const parts = r.participants || [];
    if (!parts.length) rows.push([r.name, '–', '–', '–']);
    for (const p of parts) {
      const tracks = (p.tracks || []).map((t) => `${t.kind}${widths(t)}${t.muted ? ' (muted)' : ''} → ${t.subscribers}`).join(', ') || 'none';
      rows.push([r.name, p.identity, time(p.joined_at), tracks]);
    }
  }
  return h('div', {},
    figures([
      ['Rooms', st.rooms], ['Participants', st.participants], ['Tracks', st.tracks], ['Down tracks', st.down_tracks],
      ['Packets in', st.received_packets], ['Packets forwarded', st.forwarded_packets], ['Forwarded', bytes(st.forwarded_bytes)],
      ['NACKs', st.nacks], ['PLIs', st.plis], ['Data relayed', st.data_relayed],
    ]),
    table('SFU rooms and participants', ['Room', 'Participant', 'Joined', 'Tracks → subscribers'], rows, 'No SFU rooms right now.'));
}

function turnSection(st) {
  const users = Object.entries(st.allocations_per_user || {}).sort((a, b) => b[1] - a[1]).map(([u, n]) => [u, String(n)]);
  const q = st.quota || {};
  return h('div', {},
    figures([
      ['Allocations', st.allocations], ['Connections', st.connections], ['Relayed', bytes(st.relayed_bytes)],
      ['Packets relayed', st.relayed_packets], ['Packets denied', st.denied_packets], ['Throttled', st.throttled_packets],
      ['Expired', st.expired_allocations],
    ]),
    h('p', { class: 'muted' }, `Quota: ${q.per_user || 'no cap'} per user, ${q.total || 'no cap'} in all, ` +
      `lifetime ${q.max_lifetime_secs ? `${q.max_lifetime_secs} s` : 'no cap'}, ${q.max_connections || 'no cap'} TCP connections.`),
    table('Allocations per user', ['User', 'Allocations'], users, 'No allocations right now.'));
}

function federationSection(st) {
  const now = Date.now();
  const rows = (st.destinations || []).map((d) => [
    d.destination, String(d.pending_pdus), String(d.pending_edus), String(d.failures),
    d.backing_off ? 'backing off' : d.sending ? 'sending' : d.catching_up ? 'catching up' : 'idle',
    d.retry_at ? `${time(d.retry_at)}${d.retry_at > now ? ` (in ${Math.ceil((d.retry_at - now) / 1000)} s)` : ''}` : '–',
    time(d.last_success), d.last_error || '–',
  ]);
  return h('div', {},
    figures([['Pending PDUs', st.pending_pdus], ['Pending EDUs', st.pending_edus], ['Backing off', st.destinations_backing_off],
      ['Destinations', (st.destinations || []).length + (st.more_destinations || 0)]]),
    table('Federation destinations', ['Destination', 'PDUs', 'EDUs', 'Failures', 'State', 'Retry at', 'Last success', 'Last error'],
      rows, 'No federation destinations yet.'));
}
