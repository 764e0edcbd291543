// The group call panel: who is in the room's call (from the call
// membership state, before joining too), Join and Leave, microphone and
// camera toggles, and a grid of video tiles, one per participant and a
// self view, the active speaker highlighted.
//
// The call itself lives in rtc/session.js and outlives this panel: switch
// to the chat and the call (and its audio) goes on; come back and the grid
// is rebuilt from the session.

import { Track } from 'livekit-client';
import { h, replace, localpart } from '../dom.js';
import { rtcSession, liveMemberships, identityUser, callStats, callWorlds, callFoci } from '../rtc/session.js';
import '../groupcall.css';

// The browser tests (and anyone debugging a call) read the decoded frames
// per remote participant, and the world each call keeps, through this
// hook. Merge: other panels add theirs.
window.plexusDebug = Object.assign(window.plexusDebug || {}, { callStats, callWorlds, callFoci });

const STATUS = { joining: 'Joining the call…', leaving: 'Leaving the call…' };

export function groupCallPanel(el, { room, app }) {
  const session = rtcSession(app, room.id);
  const me = app.store.userId;

  const status = h('p', { class: 'gc-status', id: 'gc-status', role: 'status' });
  const present = h('p', { class: 'gc-present muted', id: 'gc-present', 'aria-live': 'polite' });
  const error = h('p', { class: 'error', role: 'alert' });
  // What the last join had to settle for (the call's server would not
  // let us in, so we joined through our own).
  const notice = h('p', { class: 'gc-notice', id: 'gc-notice', role: 'status', hidden: true });
  const fail = (err) => { console.warn(err); error.textContent = err.message || String(err); };

  const join = h('button', {
    class: 'primary', id: 'gc-join', 'aria-label': 'Join the call',
    onclick: () => { error.textContent = ''; session.join().catch(fail); },
  }, 'Join');
  const leave = h('button', {
    class: 'danger', id: 'gc-leave', 'aria-label': 'Leave the call',
    onclick: () => session.leave().catch(fail),
  }, 'Leave');
  const mic = h('button', {
    class: 'icon', id: 'gc-mic', 'aria-pressed': 'false', 'aria-label': 'Mute microphone',
    onclick: () => session.setMicEnabled(!session.micEnabled).catch(fail).finally(render),
  }, 'Mic');
  const cam = h('button', {
    class: 'icon', id: 'gc-cam', 'aria-pressed': 'false', 'aria-label': 'Turn camera off',
    onclick: () => session.setCameraEnabled(!session.cameraEnabled).catch(fail).finally(render),
  }, 'Camera');
  const grid = h('div', { class: 'gc-grid', id: 'gc-grid', role: 'list', 'aria-label': 'Call participants' });

  const tiles = new Map(); // LiveKit identity -> {el, video, label, track}

  function tileFor(identity, name, self) {
    let t = tiles.get(identity);
    if (!t) {
      const video = h('video', { autoplay: true, playsinline: true, muted: true, 'aria-hidden': 'true' });
      video.muted = true; // audio plays through the session, not the tiles
      const label = h('span', { class: 'gc-name' });
      const badge = h('span', { class: 'gc-badge', hidden: true }, 'muted');
      const el = h('div', { class: 'gc-tile' + (self ? ' self' : ''), role: 'listitem', dataset: { identity } },
        video, h('div', { class: 'gc-caption' }, label, badge));
      t = { el, video, label, badge, track: null };
      tiles.set(identity, t);
    }
    t.label.textContent = name;
    return t;
  }

  function dropTile(identity) {
    const t = tiles.get(identity);
    if (!t) return;
    t.track?.detach(t.video);
    t.el.remove();
    tiles.delete(identity);
  }

  // showTrack puts the participant's camera into its tile (or a
  // placeholder when it has none or it is muted).
  function showTrack(t, participant) {
    const pub = participant.getTrackPublication(Track.Source.Camera);
    const track = pub && !pub.isMuted ? pub.track || null : null;
    if (t.track !== track) {
      t.track?.detach(t.video);
      t.track = track;
      track?.attach(t.video);
    }
    t.el.classList.toggle('no-video', !track);
    const micPub = participant.getTrackPublication(Track.Source.Microphone);
    t.badge.hidden = !!(micPub && !micPub.isMuted);
  }

  function renderGrid() {
    const lk = session.room;
    if (!lk || session.state !== 'joined') {
      for (const id of [...tiles.keys()]) dropTile(id);
      grid.hidden = true;
      return;
    }
    grid.hidden = false;
    const want = [lk.localParticipant, ...[...lk.remoteParticipants.values()]
      .sort((a, b) => a.identity.localeCompare(b.identity))];
    const ids = new Set(want.map((p) => p.identity));
    for (const id of [...tiles.keys()]) if (!ids.has(id)) dropTile(id);
    const speaking = new Set(session.speakers);
    const order = [];
    for (const p of want) {
      const self = p === lk.localParticipant;
      const name = self ? 'You' : (p.name || localpart(identityUser(p.identity)));
      const t = tileFor(p.identity, name, self);
      showTrack(t, p);
      const on = speaking.has(p.identity);
      t.el.classList.toggle('speaking', on);
      t.el.dataset.speaking = String(on);
      t.el.setAttribute('aria-label', on ? `${name}, speaking` : name);
      order.push(t.el);
    }
    // Re-append only on a change of order: moving a playing <video>
    // through the DOM makes it restart.
    if (order.some((e, i) => grid.children[i] !== e)) replace(grid, order);
    grid.dataset.count = String(order.length);
  }

  function render() {
    const s = session.state;
    const joined = s === 'joined';
    status.textContent = joined ? 'In the call' : STATUS[s] || 'Not in the call';
    join.hidden = joined || s === 'leaving';
    join.disabled = s === 'joining';
    leave.hidden = !joined;
    for (const b of [mic, cam]) b.hidden = !joined;
    const micOff = joined && !session.micEnabled;
    mic.setAttribute('aria-pressed', String(micOff));
    mic.setAttribute('aria-label', micOff ? 'Unmute microphone' : 'Mute microphone');
    mic.classList.toggle('off', micOff);
    const camOff = joined && !session.cameraEnabled;
    cam.setAttribute('aria-pressed', String(camOff));
    cam.setAttribute('aria-label', camOff ? 'Turn camera on' : 'Turn camera off');
    cam.classList.toggle('off', camOff);
    notice.textContent = session.notice;
    notice.hidden = !session.notice;
    // Which server's SFU carries the call, for whoever looks closer.
    if (joined && session.focus) status.title = `Media through ${session.focus.url}`;
    else status.removeAttribute('title');
    renderPresent();
    renderGrid();
  }

  // The call as the room's state has it: every device with a live
  // membership, whether or not we are connected to the SFU.
  function renderPresent() {
    const users = [...new Set(liveMemberships(room).map((m) => m.userId))];
    present.dataset.users = users.join(' ');
    present.textContent = users.length
      ? `Participants: ${users.map((u) => (u === me ? 'you' : localpart(u))).join(', ')}`
      : 'No one is in the call.';
  }

  const offs = [
    session.on('state', render),
    session.on('participants', render),
    session.on('speakers', renderGrid),
    session.on('notice', render),
    session.on('error', fail),
    app.store.on('room', (id) => { if (id === room.id) renderPresent(); }),
  ];

  replace(el, h('div', { class: 'gc' },
    h('div', { class: 'gc-bar' }, status, present),
    h('div', { class: 'gc-controls', role: 'toolbar', 'aria-label': 'Call controls' }, join, mic, cam, leave),
    notice, error, grid));
  render();

  return () => {
    for (const off of offs) off();
    for (const id of [...tiles.keys()]) dropTile(id);
  };
}
