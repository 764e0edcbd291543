// The chat panel: the live timeline (from the realtime connection),
// scrollback through /messages, read receipts, typing notifications and
// the composer, which sends over the room's channel.

import { h, replace, localpart } from '../dom.js';

const TYPING_REFRESH = 10000; // re-announce typing before the 30 s timeout runs out

/** describe turns an event into a timeline line, or null for events not shown. */
function describe(ev) {
  const who = localpart(ev.sender);
  const c = ev.content || {};
  switch (ev.type) {
    case 'm.room.message':
      if (c.msgtype === 'm.emote') return { kind: 'emote', text: `* ${who} ${c.body || ''}` };
      return { kind: 'message', text: c.body ?? '' };
    case 'm.room.member': {
      const target = localpart(ev.state_key);
      const m = c.membership;
      const text = m === 'join' ? `${target} joined` : m === 'invite' ? `${who} invited ${target}`
        : m === 'leave' ? (ev.sender === ev.state_key ? `${target} left` : `${who} removed ${target}`)
          : m === 'ban' ? `${who} banned ${target}` : null;
      return text ? { kind: 'notice', text } : null;
    }
    case 'm.room.name': return { kind: 'notice', text: `${who} named the room "${c.name || ''}"` };
    case 'm.room.create': return { kind: 'notice', text: `${who} created the room` };
    case 'm.call.invite': return { kind: 'notice', text: `${who} started a video call` };
    case 'm.call.answer': return { kind: 'notice', text: `${who} answered the call` };
    case 'm.call.reject': return { kind: 'notice', text: `${who} declined the call` };
    case 'm.call.hangup': return { kind: 'notice', text: `${who} ended the call` };
    default: return null;
  }
}

export function chatPanel(el, { room, app }) {
  const me = app.store.userId;
  const log = h('ol', { class: 'timeline', role: 'log', 'aria-label': 'Messages', tabindex: '0' });
  const older = h('button', { class: 'older', id: 'load-older', onclick: () => loadOlder() }, 'Load older messages');
  const scroller = h('div', { class: 'scroller' }, older, log);
  const typing = h('p', { class: 'typing muted', 'aria-live': 'polite', id: 'typing' });
  const input = h('input', { id: 'composer', 'aria-label': 'Message', placeholder: 'Message', autocomplete: 'off' });
  const sendError = h('p', { class: 'error', role: 'alert' });
  const composer = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); send(); } },
    input, h('button', { type: 'submit', class: 'primary', id: 'send' }, 'Send'));
  replace(el, scroller, typing, sendError, composer);

  let loading = false;
  let typingSent = 0; // when we last told the server we type; 0: not typing
  let receiptSent = null;

  function render() {
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    // Nothing older than the room's creation event.
    older.hidden = !room.prevBatch || room.timeline[0]?.type === 'm.room.create';
    // Receipts: who has read up to which event (not the event's own sender, not us).
    const readers = new Map();
    for (const [user, eventId] of room.receipts) {
      if (user === me) continue;
      if (!readers.has(eventId)) readers.set(eventId, []);
      readers.get(eventId).push(user);
    }
    const items = [];
    for (const ev of room.timeline) {
      const d = describe(ev);
      if (!d) continue;
      const mine = ev.sender === me;
      const seen = (readers.get(ev.event_id) || []).filter((u) => u !== ev.sender);
      items.push(h('li', { class: `ev ${d.kind}${mine && d.kind !== 'notice' ? ' mine' : ''}`, dataset: { eventId: ev.event_id } },
        d.kind === 'message' ? h('span', { class: 'sender' }, localpart(ev.sender)) : null,
        h('span', { class: 'body' }, d.text),
        h('time', { datetime: new Date(ev.origin_server_ts).toISOString(), class: 'muted' },
          new Date(ev.origin_server_ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
        seen.length ? h('span', { class: 'receipt muted', 'aria-label': `Seen by ${seen.join(', ')}` },
          `Seen by ${seen.map(localpart).join(', ')}`) : null));
    }
    replace(log, items);
    typing.textContent = room.typing.length
      ? `${room.typing.map(localpart).join(', ')} ${room.typing.length === 1 ? 'is' : 'are'} typing…` : '';
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
    markRead();
  }

  // Read receipts (Client-Server API, "Receipts"): mark the latest event
  // by someone else read while the room is on screen.
  function markRead() {
    if (document.visibilityState !== 'visible') return;
    const last = room.timeline.findLast((e) => e.sender !== me);
    if (!last || last.event_id === receiptSent || room.receipts.get(me) === last.event_id) return;
    receiptSent = last.event_id;
    app.realtime.receipt(room.id, last.event_id);
  }

  async function loadOlder() {
    if (loading || older.hidden) return;
    loading = true;
    older.disabled = true;
    const before = scroller.scrollHeight;
    try {
      const res = await app.api.messages(room.id, room.prevBatch);
      app.store.prepend(room.id, res.chunk || [], res.chunk?.length ? res.end : null);
      scroller.scrollTop += scroller.scrollHeight - before; // keep the reader's place
    } catch (err) {
      sendError.textContent = `Could not load older messages: ${err.message}`;
    } finally {
      loading = false;
      older.disabled = false;
    }
  }

  function setTyping(on) {
    const now = Date.now();
    if (on && typingSent && now - typingSent < TYPING_REFRESH) return;
    if (!on && !typingSent) return;
    typingSent = on ? now : 0;
    app.realtime.typing(room.id, on);
  }

  async function send() {
    const body = input.value.trim();
    if (!body) return;
    input.value = '';
    setTyping(false);
    sendError.textContent = '';
    try {
      await app.realtime.sendMessage(room.id, { msgtype: 'm.text', body });
    } catch (err) {
      input.value = body;
      sendError.textContent = `Not sent: ${err.message}`;
    }
  }

  input.addEventListener('input', () => setTyping(input.value.length > 0));
  input.addEventListener('blur', () => setTyping(false));
  scroller.addEventListener('scroll', () => { if (scroller.scrollTop < 10) loadOlder(); });
  const onVisible = () => markRead();
  document.addEventListener('visibilitychange', onVisible);
  const off = app.store.on('room', (id) => { if (id === room.id) render(); });
  render();
  scroller.scrollTop = scroller.scrollHeight;
  input.focus();
  return () => {
    off();
    document.removeEventListener('visibilitychange', onVisible);
    setTyping(false);
  };
}
