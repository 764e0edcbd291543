// The shared world of one call, as this tab knows it. The call session
// (rtc/session.js) owns a WorldTracker and feeds it every data packet
// from the moment it starts connecting, however the call was joined:
// the SFU sends its snapshot only once, at the join, so a tracker that
// started listening when the scene first opened (after a join from the
// call panel) would miss it and every change before, and have only the
// world last saved into the room (org.plexus.world) to go on, which
// lags the call. The scene panel attaches while it is open.
//
// A world lasts as long as its call: the session resets the tracker
// when a connection starts and when the call ends, so nothing of one
// call (values, tombstones, our own writes, the debug logs) is kept in
// the tab after it or carried into the next.

import { Emitter } from '../dom.js';
import { WorldState, TOPIC, SNAPSHOT_TOPIC } from './world.js';

const SEND_LOG = 500; // sends remembered for the debug hook

/** WorldTracker holds a call's WorldState and emits 'change' (keys) when it changes. */
export class WorldTracker extends Emitter {
  constructor() {
    super();
    this.world = new WorldState();
    this.attached = 0; // scene panels attached
    this.clearLogs();
  }

  // clearLogs empties what the debug hook (and the browser tests) read,
  // on the clock that is comparable across tabs: performance.timeOrigin +
  // performance.now().
  clearLogs() {
    this.sentAt = new Map(); // key -> when we last sent it
    this.changedAt = new Map(); // key -> when a received change to it was applied
    this.sends = []; // the last SEND_LOG sends: [time, reliable]
    this.snapshots = 0; // SFU snapshots received in this call
    this.received = {}; // world topic -> packets received in this call
  }

  /**
   * receive applies one data packet of the call (identity: its sender;
   * mine: ours, whose writes a snapshot does not undo, see
   * WorldState.applySnapshot). Other topics are ignored.
   */
  receive(topic, payload, identity, mine) {
    const changed = this.world.handle(topic, payload, identity, mine);
    if (changed === null) return;
    if (topic === SNAPSHOT_TOPIC) this.snapshots++;
    if (topic.startsWith(TOPIC)) this.received[topic] = (this.received[topic] || 0) + 1;
    if (!changed.length) return;
    const t = performance.timeOrigin + performance.now();
    for (const k of changed) this.changedAt.set(k, t);
    this.emit('change', changed);
  }

  /** reset forgets the world and its logs, and tells an attached scene what vanished. */
  reset() {
    const gone = this.world.clear();
    this.clearLogs();
    if (gone.length) this.emit('change', gone);
  }

  /** attach calls onChange(keys) on every change until the returned detach is called (once is enough; more are no-ops). */
  attach(onChange) {
    const off = this.on('change', onChange);
    this.attached++;
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      this.attached--;
      off();
    };
  }

  /** sent notes that keys went out at time t. */
  sent(keys, t, reliable) {
    for (const k of keys) this.sentAt.set(k, t);
    this.sends.push([t, reliable]);
    if (this.sends.length > SEND_LOG) this.sends.splice(0, this.sends.length - SEND_LOG);
  }
}
