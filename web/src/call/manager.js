// CallManager routes the rooms' m.call.* events to calls, rings for
// incoming invites, resolves glare and hands out the ICE configuration
// (TURN credentials from /voip/turnServer, the "relay only" setting).
// It holds at most one call at a time: these are 1:1 calls.
// Events: 'call' (call | null) when the current call changes.

import { Emitter, randomId } from '../dom.js';
import { Call, State } from './call.js';

const CALL_EVENTS = new Set([
  'm.call.invite', 'm.call.answer', 'm.call.candidates', 'm.call.select_answer',
  'm.call.reject', 'm.call.hangup',
]);

export class CallManager extends Emitter {
  /**
   * @param {import('../api.js').Api} api
   * @param {import('../store.js').Store} store
   * @param {() => {relayOnly: boolean}} settings
   */
  constructor(api, store, settings) {
    super();
    this.api = api;
    this.store = store;
    this.settings = settings;
    this.partyId = randomId(9); // this device's party in every call (spec: party_id)
    this.current = null;
    this.seen = new Set(); // call IDs already handled, so a repeated invite never rings again
    this.turn = null; // {value, expires}
    // Debug only (call/debug.js, for the browser tests): the call events
    // held back while this is an array, and the call_id of the next call
    // placed.
    this.held = null;
    this.nextCallId = null;
    store.on('events', (roomId, evs) => this.onEvents(roomId, evs));
  }

  get userId() { return this.store.userId; }

  setCurrent(call) {
    if (this.current === call) return;
    this.current = call;
    if (call) {
      call.on('state', (s) => {
        if (s === State.Ended) this.emit('ended', call);
      });
    }
    this.emit('call', call);
  }

  newCall(roomId, callId, outgoing, peer) {
    this.seen.add(callId);
    return new Call({
      roomId, callId, outgoing, peer, partyId: this.partyId,
      send: (type, content) => this.api.send(roomId, type, content),
      rtcConfig: () => this.rtcConfig(),
    });
  }

  /** placeCall calls the other member of roomId. */
  async placeCall(roomId) {
    const cur = this.current;
    if (cur && cur.state !== State.Ended) {
      // Pressing call while that room's call rings answers it: the spec's
      // glare rule for an invite that arrives while preparing ours.
      if (cur.roomId === roomId && cur.state === State.Ringing) return cur.answer();
      throw new Error('already in a call');
    }
    const room = this.store.room(roomId);
    const peer = room.members().find((m) => m.userId !== this.userId && m.membership === 'join')?.userId;
    const callId = this.nextCallId || Call.newCallId();
    this.nextCallId = null;
    const call = this.newCall(roomId, callId, true, peer);
    this.setCurrent(call);
    try {
      await call.placeCall();
    } catch (err) {
      call.hangup('user_media_failed');
      throw err;
    }
    return call;
  }

  /** rtcConfig builds the peer connection's configuration for a new call. */
  async rtcConfig() {
    const { relayOnly } = this.settings();
    const turn = await this.turnServer();
    const iceServers = turn?.uris?.length
      ? [{ urls: turn.uris, username: turn.username, credential: turn.password }]
      : [];
    if (relayOnly && !iceServers.length) {
      throw new Error('"Relay only" is on, but this server offers no TURN relay');
    }
    return { iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' };
  }

  async turnServer() {
    const now = Date.now();
    if (this.turn && this.turn.expires > now) return this.turn.value;
    let value = null;
    try {
      value = await this.api.turnServer();
    } catch (err) {
      console.warn('no TURN server', err);
    }
    // Refresh at half the credentials' lifetime (ttl seconds).
    this.turn = { value, expires: now + ((value?.ttl || 60) * 1000) / 2 };
    return value;
  }

  /**
   * holdEvents keeps the call events that arrive from being handled until
   * releaseEvents. Debug only: a test holds both sides while each sends
   * its invite, for a glare in which each has sent its invite before it
   * sees the other's.
   */
  holdEvents() {
    this.held ??= [];
  }

  releaseEvents() {
    const held = this.held || [];
    this.held = null;
    for (const [roomId, evs] of held) this.onEvents(roomId, evs);
  }

  onEvents(roomId, evs) {
    if (this.held) {
      this.held.push([roomId, evs]);
      return;
    }
    for (const ev of evs) {
      if (!CALL_EVENTS.has(ev.type) || !ev.content?.call_id) continue;
      const c = ev.content;
      if (c.party_id === this.partyId) continue; // our own echo
      this.handle(roomId, ev).catch((err) => console.warn(`handling ${ev.type} failed`, err));
    }
  }

  async handle(roomId, ev) {
    const c = ev.content;
    const call = this.current?.callId === c.call_id ? this.current : null;
    const mine = ev.sender === this.userId; // another device of ours
    switch (ev.type) {
      case 'm.call.invite':
        if (!mine) await this.onInvite(roomId, ev);
        return;
      case 'm.call.answer':
        if (!call) return;
        if (mine && call.state === State.Ringing) call.terminate('answered_elsewhere');
        else if (!mine) await call.onAnswer(c);
        return;
      case 'm.call.candidates':
        if (call && !mine) await call.onCandidates(c);
        return;
      case 'm.call.select_answer':
        if (call && !call.outgoing && c.selected_party_id !== this.partyId) call.terminate('answered_elsewhere');
        return;
      case 'm.call.reject':
      case 'm.call.hangup':
        if (!call) return;
        // A reject or hangup from another callee device matters only
        // if it is the party we are talking to (or we are the callee).
        if (call.outgoing && call.opponentParty && c.party_id !== call.opponentParty) return;
        if (call.outgoing && !call.opponentParty && ev.type === 'm.call.hangup' && mine) return;
        if (ev.type === 'm.call.reject') call.terminate('rejected');
        // No reason is user_hangup (version 0); the user at the other end
        // hanging up reads as "the other side hung up" here.
        else call.terminate(!c.reason || c.reason === 'user_hangup' ? 'remote_hangup' : c.reason);
    }
  }

  async onInvite(roomId, ev) {
    const c = ev.content;
    if (this.seen.has(c.call_id)) return;
    this.seen.add(c.call_id);
    // Call Event Liveness: the event's age when the server sent it plus
    // the time since we received it, against the invite's lifetime.
    const age = (ev.unsigned?.age || 0) + (Date.now() - (ev._receivedAt || Date.now()));
    if (age >= (c.lifetime || 0)) return;
    const cur = this.current && this.current.state !== State.Ended ? this.current : null;
    let adopt = null;
    let glare = false;
    if (cur) {
      if (cur.roomId !== roomId || !cur.outgoing) return; // busy with another call
      // Glare (spec "Glare"): an invite to the room we are calling.
      // Preparing ours: drop ours and take theirs. Ours sent: the call
      // with the lesser call_id wins on both sides.
      if (cur.state === State.InviteSent && cur.callId < c.call_id) {
        console.info(`glare: keeping our call ${cur.callId}, dropping ${c.call_id}`);
        return;
      }
      console.info(`glare: taking call ${c.call_id} instead of ours (${cur.callId}, ${cur.state})`);
      if (cur.state !== State.Preparing && cur.state !== State.InviteSent) return;
      // The media already set up moves to the call that replaces ours.
      adopt = cur.localStream;
      glare = true;
      // Ours went out: hang it up, so that the other side's other devices
      // stop ringing for it (the schema has no reason for glare).
      if (cur.state === State.InviteSent) cur.hangup('user_hangup', { keepMedia: true, endReason: 'replaced' });
      else cur.terminate('replaced', { keepMedia: true });
    }
    const call = this.newCall(roomId, c.call_id, false, ev.sender);
    call.onInvite(c);
    setTimeout(() => {
      if (call.state === State.Ringing) call.terminate('invite_timeout');
    }, c.lifetime - age);
    this.setCurrent(call);
    if (glare) {
      call.adoptMedia(adopt);
      await call.answer(); // glare: accept on the user's behalf
    }
  }
}
