// The MatrixRTC session of one room in this tab: the group call panel and
// the 3D scene share it. Joining is Element Call's legacy per-device form
// of MSC3401/MSC4143:
//   1. schedule a delayed "leave" (MSC4140) so a crashed tab drops out of
//      the call by itself, and keep restarting it while we live;
//   2. announce the device with an org.matrix.msc3401.call.member state
//      event naming the LiveKit focus;
//   3. pick the call's focus: MSC4143's "oldest_membership" selection,
//      the first preferred focus of the oldest membership, or our own
//      server's when no one is in the call yet (focusInUse below);
//   4. prove who we are to that focus's token service (MSC4195) with an
//      OpenID token of our server and get a LiveKit URL and JWT from
//      {livekit_service_url}/sfu/get: in a call started on another
//      server, that server's token service and SFU;
//   5. connect to the SFU with livekit-client and publish.
//
// Steps 4 and 5 come before the membership (with its delayed leave
// ahead of it, step 1), so that the membership names the focus we
// really reached: when another server's service or SFU refuses us, we
// fall back to our own server's and say so (.notice).
//
// session = rtcSession(app, roomId) is an Emitter with
//   .state  'idle' | 'joining' | 'joined' | 'leaving'
//   .room   the livekit-client Room while joined, else null
//   .focus  while joined, {service, alias, url, own}: the token service
//           and SFU URL in use, own when they are our server's
//   .notice a sentence for the user about the last join (a fallback), or ''
//   join({audio, video}), leave(), publishData(topic, bytes, {reliable}),
//   setMicEnabled(on), setCameraEnabled(on), micEnabled, cameraEnabled
//   .world  the call's shared world (scene/tracker.js), fed from the
//           moment a connection starts, whether or not the scene is open
// and emits 'state' (state), 'participants' (), 'data' ({topic, payload,
// identity}), 'speakers' (identities), 'notice' (text), 'error' (err).

import { Room, RoomEvent, VideoPresets, Track } from 'livekit-client';
import { Emitter } from '../dom.js';
import { WorldTracker } from '../scene/tracker.js';

export const MEMBER_TYPE = 'org.matrix.msc3401.call.member';

// The membership lives 4 h (Element Call's default); the delayed leave
// ends it within DELAY_MS of the tab dying, so we restart that timer
// every HEARTBEAT_MS, well inside the delay.
const MEMBERSHIP_EXPIRES_MS = 4 * 60 * 60 * 1000;
const DELAY_MS = 10000;
const HEARTBEAT_MS = 5000;
const REFRESH_BEFORE_MS = 10 * 60 * 1000;

const sessions = new Map(); // Matrix room ID -> RtcSession, one per tab

// A closing tab cannot wait for a leave to finish: fire each joined
// session's delayed leave now (MSC4140 action "send") with a keepalive
// request, which outlives the page, rather than show a ghost in the call
// for DELAY_MS.
window.addEventListener('pagehide', () => {
  for (const s of sessions.values()) s.leaveNow();
});

/** rtcSession returns this tab's session for roomId, making it on first use. */
export function rtcSession(app, roomId) {
  let s = sessions.get(roomId);
  if (!s) {
    s = new RtcSession(app, roomId);
    sessions.set(roomId, s);
  }
  return s;
}

/** memberStateKey is the legacy per-device state key, "_@user:server_DEVICE_m.call". */
export function memberStateKey(userId, deviceId) {
  return `_${userId}_${deviceId}_m.call`;
}

/**
 * liveMemberships lists the devices in a store Room's call from its
 * membership state: [{userId, deviceId, stateKey}], by user then device.
 */
export function liveMemberships(room, now = Date.now()) {
  return callMemberships(room, now)
    .map(({ userId, deviceId, stateKey }) => ({ userId, deviceId, stateKey }))
    .sort((a, b) => a.userId.localeCompare(b.userId) || a.deviceId.localeCompare(b.deviceId));
}

// callMemberships reads the live call memberships of a store Room, as
// matrix-js-sdk's MatrixRTCSession does: empty content is a device that
// left, a membership past created_ts (or the event's timestamp) +
// expires is gone, and one whose sender is known not to be joined to
// the room does not count. Each is {userId, deviceId, stateKey, created,
// content}.
function callMemberships(room, now) {
  const out = [];
  for (const ev of room.state.values()) {
    if (ev.type !== MEMBER_TYPE) continue;
    const c = ev.content || {};
    if (!c.application || !c.device_id) continue;
    const created = c.created_ts || ev.origin_server_ts || 0;
    if (c.expires && created + c.expires < now) continue;
    // The store may not hold every member event (lazy loading): only a
    // member event saying otherwise rules a sender out.
    const member = room.stateEvent?.('m.room.member', ev.sender);
    if (member && member.content?.membership !== 'join') continue;
    out.push({ userId: ev.sender, deviceId: c.device_id, stateKey: ev.state_key, created, content: c });
  }
  return out;
}

/**
 * focusInUse is the LiveKit focus of the call in a store Room, for a
 * device about to join it: MSC4143's "oldest_membership" selection as
 * matrix-js-sdk reads it (MatrixRTCSession.getFocusInUse): the oldest
 * membership by created_ts (ties by state key, so that every client
 * agrees), and if its focus_active asks for oldest_membership, the first
 * of its foci_preferred. It returns {type, livekit_service_url,
 * livekit_alias}, or null when no one is in the call, the oldest
 * membership selects its focus some other way, or its first preferred
 * focus is not a LiveKit one we can reach over HTTP(S). The membership
 * under exceptKey (our own, a leftover of an earlier join) is skipped.
 */
export function focusInUse(room, exceptKey = null, now = Date.now()) {
  const ms = callMemberships(room, now).filter((m) => m.stateKey !== exceptKey);
  if (!ms.length) return null;
  ms.sort((a, b) => a.created - b.created || (a.stateKey < b.stateKey ? -1 : a.stateKey > b.stateKey ? 1 : 0));
  const c = ms[0].content;
  if (c.focus_active?.type !== 'livekit' || c.focus_active.focus_selection !== 'oldest_membership') return null;
  const f = Array.isArray(c.foci_preferred) ? c.foci_preferred[0] : null;
  if (!f || f.type !== 'livekit' || typeof f.livekit_service_url !== 'string' || typeof f.livekit_alias !== 'string' || !f.livekit_alias) {
    return null;
  }
  let url;
  try {
    url = new URL(f.livekit_service_url);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  return { type: 'livekit', livekit_service_url: url.href.replace(/\/$/, ''), livekit_alias: f.livekit_alias };
}

/** identityUser maps a LiveKit identity "@user:server:DEVICE" to "@user:server". */
export function identityUser(identity) {
  const m = /^(@[^:]+:.+):[^:]+$/.exec(identity || '');
  return m ? m[1] : identity;
}

// sameFocus reports whether two LiveKit foci are the same service and alias.
function sameFocus(a, b) {
  return !!a && !!b && a.livekit_service_url === b.livekit_service_url && a.livekit_alias === b.livekit_alias;
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

// reason is a short account of why a token service or SFU failed us.
function reason(err) {
  if (err?.status) return `${err.status}${err.errcode ? ' ' + err.errcode : ''}`;
  // fetch rejects with a TypeError when the service cannot be reached or
  // CORS forbids reading its answer.
  if (err instanceof TypeError) return 'it could not be reached';
  return err?.message || String(err);
}

class RtcSession extends Emitter {
  constructor(app, roomId) {
    super();
    this.app = app;
    this.roomId = roomId;
    this.state = 'idle';
    this.room = null;
    this.speakers = [];
    this.pending = null; // the running join or leave, so calls queue behind it
    this.delayId = null;
    this.heartbeat = null;
    this.stateKey = null;
    this.membership = null;
    this.focus = null;
    this.notice = '';
    this.world = new WorldTracker();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  get micEnabled() { return !!this.room?.localParticipant.isMicrophoneEnabled; }
  get cameraEnabled() { return !!this.room?.localParticipant.isCameraEnabled; }

  /**
   * join enters the call (or, already in it, publishes what it did not
   * yet): join({audio: false, video: false}) is a data-only member, and a
   * later join({video: true}) adds the camera.
   */
  join({ audio = true, video = true } = {}) {
    return this.serial(async () => {
      if (this.state !== 'joined') await this.connect();
      await this.publish(audio, video);
    });
  }

  /** leave unpublishes, disconnects, and ends the membership. */
  leave() {
    return this.serial(() => this.disconnect());
  }

  // serial runs joins and leaves one after another, in call order.
  serial(fn) {
    const run = (this.pending || Promise.resolve()).catch(() => {}).then(fn);
    this.pending = run;
    run.finally(() => { if (this.pending === run) this.pending = null; }).catch(() => {});
    return run;
  }

  async connect() {
    // A new call's world is the SFU's snapshot and what follows it, from
    // the first packet on.
    this.world.reset();
    this.setNotice('');
    this.setState('joining');
    const { api } = this.app;
    let room = null;
    try {
      const who = await api.whoami();
      this.stateKey = memberStateKey(who.user_id, who.device_id);
      const ownUrl = await api.rtcFocus();
      const own = ownUrl ? { type: 'livekit', livekit_service_url: ownUrl, livekit_alias: this.roomId } : null;
      const inUse = focusInUse(this.app.store.room(this.roomId), this.stateKey);
      const reached = await this.reach(who, inUse, own);
      room = reached.room;
      const focus = reached.focus;
      // The delayed leave first: from the moment the membership exists,
      // something removes it if we vanish.
      const delayed = await api.sendStateDelayed(this.roomId, MEMBER_TYPE, this.stateKey, {}, DELAY_MS);
      this.delayId = delayed.delay_id;
      this.startHeartbeat();
      // The focus we reached comes first in foci_preferred, as Element
      // Call does: should the member whose focus it is leave, and we
      // become the oldest member, later joiners still pick the SFU the
      // call is on.
      const preferred = [focus];
      if (own && !sameFocus(own, focus)) preferred.push(own);
      this.membership = {
        application: 'm.call', call_id: '', scope: 'm.room', device_id: who.device_id,
        expires: MEMBERSHIP_EXPIRES_MS,
        focus_active: { type: 'livekit', focus_selection: 'oldest_membership' },
        foci_preferred: preferred,
        created_ts: Date.now(),
      };
      await api.sendState(this.roomId, MEMBER_TYPE, this.stateKey, this.membership);
      this.room = room;
      this.focus = { service: focus.livekit_service_url, alias: focus.livekit_alias, url: reached.url, own: sameFocus(own, focus) };
      this.setState('joined');
      this.emit('participants');
    } catch (err) {
      // A Room that failed to connect is not this.room yet, which
      // cleanup disconnects: end it here, or a half-made connection
      // could still deliver packets into the world after its reset.
      if (room && this.room !== room) await room.disconnect(true).catch(() => {});
      await this.cleanup().catch(() => {});
      this.setState('idle');
      throw err;
    }
  }

  // reach gets a token from the call's focus (inUse, or own when no one
  // is in the call) and connects to its SFU, and returns {room, focus,
  // url}. When another server's focus fails us (its token service
  // refuses or cannot be reached, or its SFU will not take us), it falls
  // back to our own server's and says so in the notice: we are then in a
  // call of our own, apart from the members on that SFU, as any two
  // clients who pick different foci are in MatrixRTC.
  async reach(who, inUse, own) {
    const focus = inUse || own;
    if (!focus) throw new Error('this server offers no LiveKit focus for calls (no rtc_foci in .well-known)');
    try {
      return await this.connectTo(who, focus);
    } catch (err) {
      if (!own || sameFocus(own, focus)) throw err;
      const host = hostOf(focus.livekit_service_url);
      console.warn(`the call's focus at ${focus.livekit_service_url} failed us; using our own`, err);
      // Nothing of the failed connection stays in the world.
      this.world.reset();
      const fell = await this.connectTo(who, own);
      this.setNotice(`The call runs on ${host}, which would not let you in (${reason(err)}). ` +
        `You joined through your own server instead: people connected through ${host} cannot see or hear you.`);
      return fell;
    }
  }

  // connectTo asks focus's token service for a token (with a fresh
  // OpenID token of our server: the service may be another server's,
  // which checks it through federation) and connects to the SFU it names.
  async connectTo(who, focus) {
    const { api } = this.app;
    const openid = await api.openIdToken(who.user_id);
    const grant = await api.sfuToken(focus.livekit_service_url,
      { room: focus.livekit_alias, openid_token: openid, device_id: who.device_id });
    const room = new Room({
      adaptiveStream: true,
      dynacast: true,
      // The SFU speaks LiveKit's two-peer-connection protocol; skip the
      // single-connection attempt it would refuse.
      singlePeerConnection: false,
      videoCaptureDefaults: { resolution: VideoPresets.h540.resolution },
      publishDefaults: {
        simulcast: true,
        videoSimulcastLayers: [VideoPresets.h180, VideoPresets.h360],
        red: true,
      },
    });
    this.wire(room);
    try {
      await room.connect(grant.url, grant.jwt);
    } catch (err) {
      await room.disconnect(true).catch(() => {});
      throw err;
    }
    return { room, focus, url: grant.url };
  }

  setNotice(text) {
    if (this.notice === text) return;
    this.notice = text;
    this.emit('notice', text);
  }

  async publish(audio, video) {
    const lp = this.room.localParticipant;
    if (audio && !lp.isMicrophoneEnabled) await lp.setMicrophoneEnabled(true);
    if (video && !lp.isCameraEnabled) await lp.setCameraEnabled(true);
    this.emit('participants');
  }

  async setMicEnabled(on) {
    if (!this.room) return;
    await this.room.localParticipant.setMicrophoneEnabled(on);
    this.emit('participants');
  }

  async setCameraEnabled(on) {
    if (!this.room) return;
    await this.room.localParticipant.setCameraEnabled(on);
    this.emit('participants');
  }

  /** publishData sends bytes to the call on topic (reliable: the ordered, retransmitted channel). */
  publishData(topic, bytes, { reliable = true } = {}) {
    if (!this.room || this.state !== 'joined') return Promise.reject(new Error('not in the call'));
    return this.room.localParticipant.publishData(bytes, { topic, reliable });
  }

  wire(room) {
    const changed = () => this.emit('participants');
    for (const ev of [RoomEvent.ParticipantConnected, RoomEvent.ParticipantDisconnected,
      RoomEvent.TrackSubscribed, RoomEvent.TrackUnsubscribed, RoomEvent.TrackMuted, RoomEvent.TrackUnmuted,
      RoomEvent.LocalTrackPublished, RoomEvent.LocalTrackUnpublished, RoomEvent.ParticipantNameChanged]) {
      room.on(ev, changed);
    }
    // Remote audio plays from the session, not from a panel: the call
    // stays audible while the chat (or no room) is on screen.
    room.on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind !== Track.Kind.Audio) return;
      const el = track.attach();
      el.hidden = true;
      document.body.append(el);
    });
    room.on(RoomEvent.TrackUnsubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) for (const el of track.detach()) el.remove();
    });
    room.on(RoomEvent.ActiveSpeakersChanged, (speakers) => {
      this.speakers = speakers.map((p) => p.identity);
      this.emit('speakers', this.speakers);
    });
    room.on(RoomEvent.DataReceived, (payload, participant, _kind, topic, _enc, identity) => {
      const from = participant?.identity ?? identity ?? '';
      // The world first, and during connect too (this.room is set only
      // once connect returns): the SFU's snapshot comes at the join.
      this.world.receive(topic || '', payload, from, room.localParticipant?.identity || null);
      this.emit('data', { topic: topic || '', payload, identity: from });
    });
    room.on(RoomEvent.Disconnected, () => {
      // The SFU dropped us for good (the SDK's reconnects failed, or we
      // were removed): leave the Matrix call too, unless we are leaving.
      if (this.room === room && this.state === 'joined') {
        this.leave().catch((err) => this.emit('error', err));
      }
    });
  }

  async disconnect() {
    if (this.state === 'idle') return;
    this.setNotice('');
    this.setState('leaving');
    try {
      await this.cleanup();
    } finally {
      this.speakers = [];
      this.setState('idle');
      this.emit('participants');
    }
  }

  // cleanup undoes whatever connect got done: the SFU connection, the
  // membership (content {} is "left"), the delayed leave and heartbeat.
  async cleanup() {
    this.stopHeartbeat();
    const room = this.room;
    this.room = null;
    this.focus = null;
    if (room) await room.disconnect(true).catch((err) => console.warn('livekit disconnect', err));
    // The call's world ends with it (after the disconnect: no packet of
    // it comes later).
    this.world.reset();
    const { api } = this.app;
    if (this.membership) {
      this.membership = null;
      await api.sendState(this.roomId, MEMBER_TYPE, this.stateKey, {})
        .catch((err) => console.warn('ending the call membership', err));
    }
    if (this.delayId) {
      const id = this.delayId;
      this.delayId = null;
      // Already fired or cancelled (404) is fine.
      await api.delayedEvent(id, 'cancel').catch(() => {});
    }
  }

  // leaveNow sends the delayed leave at once, from a page being unloaded.
  leaveNow() {
    if (!this.delayId || !this.membership) return;
    const { api } = this.app;
    fetch(`${api.base}/_matrix/client/unstable/org.matrix.msc4140/delayed_events/${encodeURIComponent(this.delayId)}`, {
      method: 'POST', keepalive: true,
      headers: { Authorization: `Bearer ${api.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'send' }),
    }).catch(() => {});
    this.room?.disconnect(true);
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  async beat() {
    const id = this.delayId;
    if (!id) return;
    const m = this.membership;
    if (m && Date.now() > m.created_ts + m.expires - REFRESH_BEFORE_MS) {
      // Still here near the end of the membership's life: extend it, as
      // matrix-js-sdk does, by raising expires (created_ts stays).
      m.expires += MEMBERSHIP_EXPIRES_MS;
      this.app.api.sendState(this.roomId, MEMBER_TYPE, this.stateKey, m).catch((err) => this.emit('error', err));
    }
    try {
      await this.app.api.delayedEvent(id, 'restart');
    } catch (err) {
      if (err.status !== 404 || this.delayId !== id || !this.membership) return;
      // The leave already fired (the tab was frozen past the delay): we
      // are out of the call in the room's eyes, so schedule a new leave
      // and announce ourselves again.
      try {
        const d = await this.app.api.sendStateDelayed(this.roomId, MEMBER_TYPE, this.stateKey, {}, DELAY_MS);
        this.delayId = d.delay_id;
        await this.app.api.sendState(this.roomId, MEMBER_TYPE, this.stateKey, this.membership);
      } catch (err2) {
        this.emit('error', err2);
      }
    }
  }
}

/**
 * callStats reports, per remote identity in every joined session of this
 * tab, the video frames decoded so far (from getStats): the browser tests
 * read it as window.plexusDebug.callStats().
 */
export async function callStats() {
  const out = {};
  for (const s of sessions.values()) {
    if (!s.room) continue;
    for (const p of s.room.remoteParticipants.values()) {
      let frames = 0;
      for (const pub of p.trackPublications.values()) {
        const rx = pub.track?.kind === Track.Kind.Video ? pub.track.receiver : null;
        if (!rx) continue;
        const report = await rx.getStats();
        report.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
      }
      out[p.identity] = frames;
    }
  }
  return out;
}

/**
 * callWorlds describes, per room with a session in this tab, the world
 * its call keeps: {state, entries, attached, snapshots}. The browser
 * tests read it as window.plexusDebug.callWorlds(), with the scene
 * closed as well as open.
 */
export function callWorlds() {
  const out = {};
  for (const [roomId, s] of sessions) {
    const w = s.world;
    out[roomId] = { state: s.state, entries: w.world.entries.size, attached: w.attached, snapshots: w.snapshots };
  }
  return out;
}

/**
 * callFoci describes, per room with a joined session in this tab, the
 * focus its call goes through: {service, alias, url, own}. The browser
 * tests read it as window.plexusDebug.callFoci().
 */
export function callFoci() {
  const out = {};
  for (const [roomId, s] of sessions) if (s.focus) out[roomId] = { ...s.focus };
  return out;
}
