// One world per call session, kept while the tab lives: switching to the
// chat and back does not lose the scene, and the session's data is
// watched from the first time the scene is opened.

import { Emitter } from '../dom.js';
import { WorldState, TOPIC, SNAPSHOT_TOPIC } from './world.js';

/** WORLD_EVENT is the room state the SFU saves the world into (signalling/rtc_world.go). */
export const WORLD_EVENT = 'org.plexus.world';

const SEND_LOG = 500; // sends remembered for the debug hook

const trackers = new WeakMap(); // RtcSession -> Tracker

class Tracker extends Emitter {
  constructor(session, room) {
    super();
    this.world = new WorldState();
    // For the debug hook (and the browser tests), on the clock that is
    // comparable across tabs: performance.timeOrigin + performance.now().
    this.sentAt = new Map(); // key -> when we last sent it
    this.changedAt = new Map(); // key -> when a received change to it was applied
    this.sends = []; // the last SEND_LOG sends: [time, reliable]
    this.snapshots = 0; // SFU snapshots received
    this.received = {}; // world topic -> packets received
    session.on('data', ({ topic, payload, identity }) => {
      if (topic === SNAPSHOT_TOPIC) this.snapshots++;
      if (topic.startsWith(TOPIC)) this.received[topic] = (this.received[topic] || 0) + 1;
      const changed = this.world.handle(topic, payload, identity, session.room?.localParticipant.identity ?? null);
      if (!changed?.length) return;
      const t = performance.timeOrigin + performance.now();
      for (const k of changed) this.changedAt.set(k, t);
      this.emit('change', changed);
    });
    // Joined before the scene first opened (from the call panel), we
    // missed the SFU's snapshot; the one it last saved into the room is
    // the best start there is, and live changes merge over it.
    if (session.state === 'joined') {
      const saved = room.stateEvent(WORLD_EVENT)?.content;
      if (saved?.entries) this.world.applySnapshot(saved);
    }
  }

  /** sent notes that keys went out at time t. */
  sent(keys, t, reliable) {
    for (const k of keys) this.sentAt.set(k, t);
    this.sends.push([t, reliable]);
    if (this.sends.length > SEND_LOG) this.sends.splice(0, this.sends.length - SEND_LOG);
  }
}

/** worldFor returns the session's tracker ({world, sentAt, changedAt, sends, ...}), emitting 'change' (keys). */
export function worldFor(session, room) {
  let t = trackers.get(session);
  if (!t) {
    t = new Tracker(session, room);
    trackers.set(session, t);
  }
  return t;
}
