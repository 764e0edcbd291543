// Debug only: window.plexusDebug.calls, through which the browser tests
// (and anyone debugging a 1:1 call) see the calls this tab has had and
// stage a glare. Nothing in the client calls it.

import { State } from './call.js';

/** installCallDebug exposes the manager's calls and its debug controls. */
export function installCallDebug(manager) {
  const calls = []; // every call this manager has made current, oldest first
  manager.on('call', (call) => {
    if (call && !calls.includes(call)) calls.push(call);
  });
  const describe = (c) => ({
    callId: c.callId,
    partyId: c.partyId,
    outgoing: c.outgoing,
    state: c.state,
    endReason: c.endReason,
    localStreamId: c.localStream?.id || '',
  });
  const hook = {
    /** list describes the calls, oldest first. */
    list: () => calls.map(describe),
    /** current describes the current call, or null. */
    current: () => (manager.current ? describe(manager.current) : null),
    /** hold and release: see CallManager.holdEvents. */
    hold: () => manager.holdEvents(),
    release: () => manager.releaseEvents(),
    /** setNextCallId fixes the call_id of the next call placed (an opaque ID). */
    setNextCallId: (id) => { manager.nextCallId = id; },
    /** inviteSent reports that the current call is outgoing and the server took its invite. */
    inviteSent: () => {
      const c = manager.current;
      return !!c && c.outgoing && c.state === State.InviteSent && c.localSignalled;
    },
  };
  window.plexusDebug = Object.assign(window.plexusDebug || {}, { calls: hook });
}
