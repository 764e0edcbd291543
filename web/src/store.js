// The client's picture of the user's rooms, fed by the realtime
// connection's SyncChannel and RoomChannel messages (both carry /sync's
// room shape) and by /messages scrollback. Views subscribe to its events:
//   'rooms'            the room list changed
//   'room', id         a room's timeline, state, typing or receipts changed
//   'events', id, evs  new live timeline events arrived (the call manager listens)

import { Emitter } from './dom.js';

export class Room {
  constructor(id) {
    this.id = id;
    this.membership = 'join';
    this.state = new Map(); // "type\u0000state_key" -> event
    this.timeline = []; // oldest first
    this.eventIds = new Set();
    this.prevBatch = null; // token for /messages backwards; null: start of room reached or unknown
    this.typing = []; // user IDs typing now
    this.receipts = new Map(); // user ID -> event ID of their m.read receipt
    this.inviteState = [];
    this.summary = {};
  }

  stateEvent(type, key = '') { return this.state.get(`${type}\u0000${key}`); }

  setState(ev) {
    if (ev.state_key === undefined) return;
    this.state.set(`${ev.type}\u0000${ev.state_key}`, ev);
  }

  /** members returns [{userId, membership, name}] from the room state. */
  members() {
    const out = [];
    for (const ev of this.state.values()) {
      if (ev.type !== 'm.room.member') continue;
      out.push({ userId: ev.state_key, membership: ev.content?.membership, name: ev.content?.displayname || ev.state_key });
    }
    return out.sort((a, b) => a.userId.localeCompare(b.userId));
  }

  displayName(me) {
    const find = (type) => this.stateEvent(type)?.content || this.inviteState.find((e) => e.type === type)?.content;
    const name = find('m.room.name')?.name;
    if (name) return name;
    const alias = find('m.room.canonical_alias')?.alias;
    if (alias) return alias;
    const heroes = this.summary['m.heroes'] || this.members()
      .filter((m) => m.userId !== me && (m.membership === 'join' || m.membership === 'invite'))
      .map((m) => m.userId);
    if (heroes.length) return heroes.slice(0, 3).join(', ');
    return this.id;
  }
}

export class Store extends Emitter {
  constructor(userId) {
    super();
    this.userId = userId;
    this.rooms = new Map();
    this.initialDone = false;
  }

  room(id) {
    let r = this.rooms.get(id);
    if (!r) {
      r = new Room(id);
      this.rooms.set(id, r);
    }
    return r;
  }

  /** applySync folds in one SyncChannel message's /sync body. */
  applySync(sync) {
    const rooms = sync.rooms || {};
    let listChanged = false;
    for (const [id, data] of Object.entries(rooms.join || {})) {
      listChanged = this.applyRoom(id, 'join', data) || listChanged;
    }
    for (const [id, data] of Object.entries(rooms.invite || {})) {
      const r = this.room(id);
      listChanged = listChanged || r.membership !== 'invite';
      r.membership = 'invite';
      r.inviteState = data.invite_state?.events || [];
      this.emit('room', id);
    }
    for (const [id, data] of Object.entries(rooms.leave || {})) {
      listChanged = this.applyRoom(id, 'leave', data) || listChanged;
    }
    this.initialDone = true;
    if (listChanged) this.emit('rooms');
  }

  /**
   * applyRoom folds in one room's part of sync (a SyncChannel room or a
   * RoomChannel message). It returns whether the room list changed.
   */
  applyRoom(id, membership, data) {
    const r = this.room(id);
    const changed = r.membership !== membership;
    r.membership = membership;
    if (data.summary) r.summary = { ...r.summary, ...data.summary };
    for (const ev of data.state?.events || []) r.setState(ev);
    const tl = data.timeline || {};
    const fresh = [];
    const now = Date.now();
    if (tl.limited && tl.events?.length && !tl.events.some((e) => r.eventIds.has(e.event_id))) {
      // A gap: the events between ours and these are missing. Start the
      // timeline afresh from here; scrollback fills the rest.
      r.timeline = [];
      r.eventIds.clear();
      r.prevBatch = tl.prev_batch || null;
    } else if (r.timeline.length === 0 && tl.prev_batch) {
      r.prevBatch = tl.prev_batch;
    }
    for (const ev of tl.events || []) {
      if (r.eventIds.has(ev.event_id)) continue;
      ev._receivedAt = now;
      r.eventIds.add(ev.event_id);
      r.timeline.push(ev);
      r.setState(ev);
      fresh.push(ev);
    }
    for (const ev of data.ephemeral?.events || []) this.applyEphemeral(r, ev);
    this.emit('room', id);
    if (fresh.length) this.emit('events', id, fresh);
    return changed;
  }

  applyEphemeral(r, ev) {
    if (ev.type === 'm.typing') {
      r.typing = (ev.content?.user_ids || []).filter((u) => u !== this.userId);
    } else if (ev.type === 'm.receipt') {
      for (const [eventId, kinds] of Object.entries(ev.content || {})) {
        for (const kind of ['m.read', 'm.read.private']) {
          for (const user of Object.keys(kinds[kind] || {})) r.receipts.set(user, eventId);
        }
      }
    }
  }

  /** prepend adds scrollback (from /messages, newest first) to the start of a timeline. */
  prepend(id, chunk, end) {
    const r = this.room(id);
    const older = [];
    for (const ev of chunk) {
      if (r.eventIds.has(ev.event_id)) continue;
      r.eventIds.add(ev.event_id);
      older.unshift(ev);
    }
    r.timeline = older.concat(r.timeline);
    r.prevBatch = end || null;
    this.emit('room', id);
  }

  /** sortedRooms lists invites first, then joined rooms by latest activity. */
  sortedRooms() {
    const last = (r) => r.timeline.at(-1)?.origin_server_ts || 0;
    const invited = (r) => (r.membership === 'invite' ? 1 : 0);
    return [...this.rooms.values()]
      .filter((r) => r.membership === 'join' || r.membership === 'invite')
      .sort((a, b) => invited(b) - invited(a) || last(b) - last(a));
  }
}
