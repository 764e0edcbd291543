// The MatrixRTC session of one room in this tab: the group call panel and
// the 3D scene share it. Joining is Element Call's legacy per-device form
// of MSC3401/MSC4143:
//   1. schedule a delayed "leave" (MSC4140) so a crashed tab drops out of
//      the call by itself, and keep restarting it while we live;
//   2. announce the device with an org.matrix.msc3401.call.member state
//      event naming the LiveKit focus;
//   3. prove who we are to the token service (MSC4195) with an OpenID
//      token and get a LiveKit URL and JWT from {livekit_service_url}/sfu/get;
//   4. connect to the SFU with livekit-client and publish.
//
// session = rtcSession(app, roomId) is an Emitter with
//   .state  'idle' | 'joining' | 'joined' | 'leaving'
//   .room   the livekit-client Room while joined, else null
//   join({audio, video}), leave(), publishData(topic, bytes, {reliable}),
//   setMicEnabled(on), setCameraEnabled(on), micEnabled, cameraEnabled
//   .world  the call's shared world (scene/tracker.js), fed from the
//           moment a connection starts, whether or not the scene is open
// and emits 'state' (state), 'participants' (), 'data' ({topic, payload,
// identity}), 'speakers' (identities), 'error' (err).

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
 * membership state: [{userId, deviceId, stateKey}]. As matrix-js-sdk's
 * CallMembership reads them: empty content is a device that left, and a
 * membership past created_ts (or the event's timestamp) + expires is gone.
 */
export function liveMemberships(room, now = Date.now()) {
  const out = [];
  for (const ev of room.state.values()) {
    if (ev.type !== MEMBER_TYPE) continue;
    const c = ev.content || {};
    if (!c.application || !c.device_id) continue;
    const created = c.created_ts || ev.origin_server_ts || 0;
    if (c.expires && created + c.expires < now) continue;
    out.push({ userId: ev.sender, deviceId: c.device_id, stateKey: ev.state_key });
  }
  return out.sort((a, b) => a.userId.localeCompare(b.userId) || a.deviceId.localeCompare(b.deviceId));
}

/** identityUser maps a LiveKit identity "@user:server:DEVICE" to "@user:server". */
export function identityUser(identity) {
  const m = /^(@[^:]+:.+):[^:]+$/.exec(identity || '');
  return m ? m[1] : identity;
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
    this.setState('joining');
    const { api } = this.app;
    let room = null;
    try {
      const who = await api.whoami();
      const focus = await api.rtcFocus();
      if (!focus) throw new Error('this server offers no LiveKit focus for calls (no rtc_foci in .well-known)');
      this.stateKey = memberStateKey(who.user_id, who.device_id);
      // The delayed leave first: from the moment the membership exists,
      // something removes it if we vanish.
      const delayed = await api.sendStateDelayed(this.roomId, MEMBER_TYPE, this.stateKey, {}, DELAY_MS);
      this.delayId = delayed.delay_id;
      this.startHeartbeat();
      this.membership = {
        application: 'm.call', call_id: '', scope: 'm.room', device_id: who.device_id,
        expires: MEMBERSHIP_EXPIRES_MS,
        focus_active: { type: 'livekit', focus_selection: 'oldest_membership' },
        foci_preferred: [{ type: 'livekit', livekit_service_url: focus, livekit_alias: this.roomId }],
        created_ts: Date.now(),
      };
      await api.sendState(this.roomId, MEMBER_TYPE, this.stateKey, this.membership);
      const openid = await api.openIdToken(who.user_id);
      const grant = await api.sfuToken(focus, { room: this.roomId, openid_token: openid, device_id: who.device_id });
      room = new Room({
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
      await room.connect(grant.url, grant.jwt);
      this.room = room;
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

/** publishedLayers is the number of encodings our camera goes out in (simulcast: more than one). */
export function publishedLayers() {
  let n = 0;
  for (const s of sessions.values()) {
    const track = s.room?.localParticipant.getTrackPublication(Track.Source.Camera)?.track;
    const sender = track?.sender;
    if (sender) n = Math.max(n, sender.getParameters().encodings?.length || 0);
  }
  return n;
}
